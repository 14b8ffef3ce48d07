#!/usr/bin/env bash
# Makes the CAs, certificates and CRLs the revocation unit tests use, with the openssl CLI.
#   make_revocation_pki.sh OUT_DIR
# CAs:    device-ca (signs CRLs), impostor-ca (same subject, other key: forged CRLs),
#         nosign-ca (keyUsage without cRLSign), other-ca (not trusted by the tests' verifier).
# Leaves: alice (0x0a1b2c, UPN alice@corp.test), bob (0x0b0b), carol (0x0c0c) from device-ca.
# CRLs:   crl-v1.pem (alice; cRLNumber 0x10; thisUpdate now-2h), crl-v2.der (alice+bob; 0x11;
#         now-1h), crl-empty.pem, crl-forged.pem (impostor key), crl-stale.pem (2020), crl-other.pem,
#         crl-nosign.pem, crl-100k.der (100 000 16-octet serials 0x5a00..00 + i, plus carol's 0x0c0c).
set -euo pipefail
OUT=${1:?usage: make_revocation_pki.sh OUT_DIR}
mkdir -p "$OUT"
cd "$OUT"
umask 077

ca() {  # name subject keyusage
  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -keyout "$1.key" -out "$1.pem" \
    -subj "$2" -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,$3" 2>/dev/null
}

leaf() {  # name ca subject serial extensions...
  local name=$1 issuer=$2 subject=$3 serial=$4
  shift 4
  openssl req -newkey rsa:2048 -nodes -sha256 -keyout "$name.key" -out "$name.csr" -subj "$subject" 2>/dev/null
  printf '%s\n' "basicConstraints=CA:FALSE" "$@" > "$name.ext"
  openssl x509 -req -in "$name.csr" -CA "$issuer.pem" -CAkey "$issuer.key" -set_serial "$serial" \
    -days 825 -sha256 -extfile "$name.ext" -out "$name.pem" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

stamp() { date -u -d "$1" +%Y%m%d%H%M%SZ; }

# crl NAME CA OUT_FORMAT CRLNUMBER LASTUPDATE NEXTUPDATE INDEX_FILE
crl() {
  local name=$1 ca=$2 format=$3 number=$4 last=$5 next=$6 index=$7
  local work
  work=$(mktemp -d)
  cp "$index" "$work/index.txt"
  echo "unique_subject = no" >"$work/index.txt.attr"
  echo "$number" >"$work/crlnumber"
  cat >"$work/ca.cnf" <<CNF
[ ca ]
default_ca = ca_default
[ ca_default ]
database = $work/index.txt
crlnumber = $work/crlnumber
default_md = sha256
CNF
  openssl ca -batch -config "$work/ca.cnf" -cert "$ca.pem" -keyfile "$ca.key" -gencrl \
    -crl_lastupdate "$last" -crl_nextupdate "$next" -out "$work/crl.pem" 2>/dev/null
  if [ "$format" = der ]; then
    openssl crl -in "$work/crl.pem" -outform DER -out "$name"
  else
    cp "$work/crl.pem" "$name"
  fi
  rm -rf "$work"
}

ca device-ca "/O=Orthrus Test/CN=Orthrus Revocation Test CA" "keyCertSign,cRLSign"
ca impostor-ca "/O=Orthrus Test/CN=Orthrus Revocation Test CA" "keyCertSign,cRLSign"
ca nosign-ca "/O=Orthrus Test/CN=No CRL Sign CA" "keyCertSign"
ca other-ca "/O=Other/CN=Other CA" "keyCertSign,cRLSign"

leaf alice device-ca "/O=Corp/CN=alice" 0x0a1b2c \
  "keyUsage=critical,digitalSignature" "extendedKeyUsage=clientAuth" \
  "subjectAltName=otherName:1.3.6.1.4.1.311.20.2.3;UTF8:alice@corp.test"
leaf bob device-ca "/O=Corp/CN=bob" 0x0b0b "keyUsage=critical,digitalSignature" "extendedKeyUsage=clientAuth"
leaf carol device-ca "/O=Corp/CN=carol" 0x0c0c "keyUsage=critical,digitalSignature" "extendedKeyUsage=clientAuth"

# index.txt lines: status, expiry, revocation date, serial (upper-case hex), file, subject
rev() { printf 'R\t301231235959Z\t240101000000Z\t%s\tunknown\t%s\n' "$1" "$2"; }
: >empty.idx
rev 0A1B2C /CN=alice >v1.idx
{ rev 0A1B2C /CN=alice; rev 0B0B /CN=bob; } >v2.idx
{
  # 16-octet serials like real CAs issue (0x5A then 15 octets): 0x5a000000000000000000000000000000 + i
  awk 'BEGIN { for (i = 0; i < 100000; i++) printf "R\t301231235959Z\t240101000000Z\t5A%030X\tunknown\t/CN=d%d\n", i, i }'
  rev 0C0C /CN=carol
} >100k.idx

now_minus_2h=$(stamp '-2 hours')
now_minus_1h=$(stamp '-1 hour')
far=$(stamp '+3650 days')
crl crl-v1.pem device-ca pem 10 "$now_minus_2h" "$far" v1.idx
crl crl-v2.der device-ca der 11 "$now_minus_1h" "$far" v2.idx
crl crl-empty.pem device-ca pem 12 "$now_minus_1h" "$far" empty.idx
crl crl-forged.pem impostor-ca pem 13 "$now_minus_1h" "$far" empty.idx
crl crl-stale.pem device-ca pem 09 20200101000000Z 20200102000000Z v1.idx
crl crl-other.pem other-ca pem 01 "$now_minus_1h" "$far" empty.idx
crl crl-nosign.pem nosign-ca pem 01 "$now_minus_1h" "$far" empty.idx
crl crl-100k.der device-ca der 20 "$now_minus_1h" "$far" 100k.idx
rm -f ./*.idx
chmod 600 ./*.key
chmod 644 ./*.pem ./*.der
echo "revocation test PKI ready in $OUT"
