#!/usr/bin/env bash
# Regenerates corpus/identity (the committed seed corpus) from a test PKI made by
# tests/support/make_pki.sh, plus one self-signed certificate that carries every SAN type the
# extractor maps. Usage: tests/fuzz/make_corpus.sh <test-pki-dir>   (e.g. build/test-pki)
set -euo pipefail
pki=${1:?usage: make_corpus.sh <test-pki-dir>}
out="$(cd "$(dirname "$0")" && pwd)/corpus/identity"
mkdir -p "$out"
# alice: UPN + e-mail SANs; bob: no SANs; bad-upn: IA5String UPN (refused); edge-server: DNS + IP;
# device-ca: a CA certificate.
for name in alice bob bad-upn edge-server device-ca; do
  openssl x509 -in "$pki/$name.pem" -outform DER -out "$out/$name.der"
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tmp/k.pem" \
  -subj "/CN=all, \"sans\"+UID=x/O=Corp\\, Inc./C=DE" -days 1 -set_serial 0x00ff00 -outform DER \
  -out "$out/all-sans.der" \
  -addext "subjectAltName=DNS:a.test,email:a@corp.test,URI:https://a.test/x,IP:10.0.0.1,IP:2001:db8::1,otherName:1.3.6.1.4.1.311.20.2.3;UTF8:a@corp.test,otherName:1.2.3.4;UTF8:other,dirName:dir_sect,RID:1.2.3" \
  -config <(printf '[req]\ndistinguished_name=dn\n[dn]\n[dir_sect]\nCN=dir\n') 2>/dev/null
ls -l "$out"
