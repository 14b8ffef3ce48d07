#!/usr/bin/env bash
# Makes a CRL with the openssl CLI.
#   make_crl.sh PKI_DIR CA_NAME OUT VALID_SECONDS [CERT_TO_REVOKE.pem ...]
# CA_NAME.pem / CA_NAME.key are read from PKI_DIR; OUT is written in PEM.
set -euo pipefail
dir=$1 ca=$2 out=$3 secs=$4
shift 4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
touch "$work/index.txt"
echo 1000 >"$work/crlnumber"
cat >"$work/ca.cnf" <<CNF
[ ca ]
default_ca = ca_default
[ ca_default ]
database = $work/index.txt
crlnumber = $work/crlnumber
default_md = sha256
default_crl_days = 1
CNF
for cert in "$@"; do
  openssl ca -config "$work/ca.cnf" -cert "$dir/$ca.pem" -keyfile "$dir/$ca.key" -revoke "$cert" 2>/dev/null
done
openssl ca -config "$work/ca.cnf" -cert "$dir/$ca.pem" -keyfile "$dir/$ca.key" -gencrl -crlsec "$secs" \
  -out "$out.tmp" 2>/dev/null
mv "$out.tmp" "$out"
