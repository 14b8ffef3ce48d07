#!/usr/bin/env bash
# PKI for tests/bench/peer_bench.sh: tests/support/make_pki.sh (internal CA, broker, edge-1, backend)
# plus, per key type, a device CA, a server certificate and a client certificate:
#   bench-ec-ca  / server-ec  / client-ec    ECDSA P-256 (ecdsa-with-SHA256)
#   bench-rsa-ca / server-rsa / client-rsa   RSA-2048 (sha256WithRSAEncryption)
#   revoked-ec   a client certificate listed on bench-ec-ca's CRL (to check every peer checks the CRL)
# bench-cas.pem bundles both device CAs; bench-ec-ca.crl, bench-rsa-ca.crl and bench-crls.pem (both)
# are the CRLs (PEM, valid 2 days). Server certificates name bench.test, localhost and 127.0.0.1.
#   make_bench_pki.sh OUT_DIR
set -euo pipefail
OUT=${1:?usage: make_bench_pki.sh OUT_DIR}
SRC=$(cd "$(dirname "$0")/../../.." && pwd)
"$SRC/tests/support/make_pki.sh" "$OUT" >/dev/null
cd "$OUT"
umask 077

key() {  # name type
  if [ "$2" = ec ]; then
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null
  else
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1.key" 2>/dev/null
  fi
}

ca() {  # name type subject
  key "$1" "$2"
  openssl req -x509 -new -key "$1.key" -sha256 -days 3650 -out "$1.pem" -subj "$3" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}

leaf() {  # name type issuer subject serial extensions...
  local name=$1 type=$2 issuer=$3 subject=$4 serial=$5
  shift 5
  key "$name" "$type"
  openssl req -new -key "$name.key" -sha256 -out "$name.csr" -subj "$subject" 2>/dev/null
  printf '%s\n' "basicConstraints=CA:FALSE" "$@" >"$name.ext"
  openssl x509 -req -in "$name.csr" -CA "$issuer.pem" -CAkey "$issuer.key" -set_serial "$serial" \
    -days 825 -sha256 -extfile "$name.ext" -out "$name.pem" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

SERVER_EXT=("keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth"
  "subjectAltName=DNS:bench.test,DNS:localhost,IP:127.0.0.1")
for t in ec rsa; do
  ca "bench-$t-ca" "$t" "/O=Orthrus Bench/CN=Orthrus Bench Device CA $t"
  leaf "server-$t" "$t" "bench-$t-ca" "/CN=bench.test" 0x3001 "${SERVER_EXT[@]}"
  leaf "client-$t" "$t" "bench-$t-ca" "/O=Corp/CN=alice-$t" 0x3002 \
    "keyUsage=critical,digitalSignature" "extendedKeyUsage=clientAuth" \
    "subjectAltName=otherName:1.3.6.1.4.1.311.20.2.3;UTF8:alice@corp.test,email:alice@corp.test"
done
leaf revoked-ec ec bench-ec-ca "/O=Corp/CN=revoked-ec" 0x3003 \
  "keyUsage=critical,digitalSignature" "extendedKeyUsage=clientAuth"
"$SRC/tests/support/make_crl.sh" "$OUT" bench-ec-ca "$OUT/bench-ec-ca.crl" 172800 "$OUT/revoked-ec.pem"
"$SRC/tests/support/make_crl.sh" "$OUT" bench-rsa-ca "$OUT/bench-rsa-ca.crl" 172800
cat bench-ec-ca.pem bench-rsa-ca.pem >bench-cas.pem
cat bench-ec-ca.crl bench-rsa-ca.crl >bench-crls.pem
chmod 600 ./*.key
chmod 644 ./*.pem ./*.crl
echo "bench PKI ready in $OUT"
