#!/usr/bin/env bash
# Makes a throwaway PKI for the tests and the demo with the openssl CLI.
#   make_pki.sh OUT_DIR
# Device side:  device-ca (trusted by edge and broker), alice (UPN + e-mail SANs), bob (no SANs),
#               rogue-ca + mallory (a CA nobody trusts).
# Internal:     internal-ca issues broker (server), edge-1 (edge client), edge-unknown (right CA,
#               not on the broker's allow list), backend (server for the stand-in backend).
set -euo pipefail
OUT=${1:?usage: make_pki.sh OUT_DIR}
mkdir -p "$OUT"
cd "$OUT"
umask 077

ca() {  # name subject
  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -keyout "$1.key" -out "$1.pem" \
    -subj "$2" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
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

ca device-ca "/O=Orthrus Test/CN=Orthrus Test Device CA"
ca rogue-ca "/O=Rogue/CN=Rogue CA"
ca internal-ca "/O=Orthrus Test/CN=Orthrus Test Internal CA"

leaf alice device-ca "/O=Corp/CN=alice" 0x0a1b2c \
  "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=clientAuth" \
  "subjectAltName=otherName:1.3.6.1.4.1.311.20.2.3;UTF8:alice@corp.test,email:alice@corp.test"
leaf bob device-ca "/O=Corp/CN=bob" 0x0b0b \
  "keyUsage=critical,digitalSignature" "extendedKeyUsage=clientAuth"
leaf mallory rogue-ca "/O=Rogue/CN=mallory" 0x66 \
  "keyUsage=critical,digitalSignature" "extendedKeyUsage=clientAuth" \
  "subjectAltName=otherName:1.3.6.1.4.1.311.20.2.3;UTF8:alice@corp.test"
# UPN otherName encoded as IA5String instead of UTF8String: must be refused, not half-read.
leaf bad-upn device-ca "/O=Corp/CN=bad-upn" 0x0bad \
  "keyUsage=critical,digitalSignature" "extendedKeyUsage=clientAuth" \
  "subjectAltName=otherName:1.3.6.1.4.1.311.20.2.3;IA5:bad@corp.test"
leaf edge-server device-ca "/CN=edge.test" 0x1001 \
  "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" \
  "subjectAltName=DNS:edge.test,DNS:*.edge.test,DNS:localhost,IP:127.0.0.1"

leaf broker internal-ca "/CN=broker.test" 0x2001 \
  "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" \
  "subjectAltName=DNS:broker.test,IP:127.0.0.1"
leaf edge-1 internal-ca "/CN=edge-1" 0x2002 \
  "keyUsage=critical,digitalSignature" "extendedKeyUsage=clientAuth" "subjectAltName=DNS:edge-1"
leaf edge-unknown internal-ca "/CN=edge-unknown" 0x2003 \
  "keyUsage=critical,digitalSignature" "extendedKeyUsage=clientAuth" "subjectAltName=DNS:edge-unknown"
leaf backend internal-ca "/CN=backend.test" 0x2004 \
  "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" \
  "subjectAltName=DNS:backend.test,IP:127.0.0.1"

chmod 600 ./*.key
chmod 644 ./*.pem
echo "PKI ready in $OUT"
