#!/usr/bin/env bash
# Makes a corpus of bad device (client) certificates for the edge's refusal tests, with the openssl CLI.
#   make_bad_certs.sh OUT_DIR
# Every bad certificate has exactly ONE defect, so the edge's refusal reason is unambiguous (OpenSSL
# reports only the first verification error it finds). Everything else is RSA-2048 / SHA-256,
# clientAuth, keyUsage digitalSignature, valid now.
#
# Trust:  bad-ca (root; ca-bundle.pem = the file the edge's listen.client_ca_file points to)
#           nc-ca       intermediate with nameConstraints permitted email:.corp.test, DNS:.corp.test
#           int1 -> int2 -> int3   a chain of intermediates (edge runs with listen.max_chain_depth 2)
#         rogue-ca (nobody trusts it)
# Files:  NAME.pem (leaf), NAME.key, NAME.chain.pem (leaf + intermediates: what the device sends).
#
#   good             the control: must be accepted
#   good-nc          leaf under nc-ca with a permitted e-mail SAN: must be accepted
#   good-depth2      leaf under int2 (2 intermediates = exactly max_chain_depth): must be accepted
#   expired          notBefore/notAfter both in the past                 client_certificate_expired
#   not-yet-valid    notBefore in the future                             client_certificate_not_yet_valid
#   fresh            notBefore 10 minutes from now (a device clock behind) not_yet_valid unless skew >= 600 s
#   recently-expired notAfter 10 minutes ago                             expired unless skew >= 600 s
#   rogue            leaf of rogue-ca, sent alone                        untrusted_client_certificate
#   rogue-with-root  leaf of rogue-ca, sent with rogue-ca                untrusted_client_certificate
#   self-signed      a self-signed leaf                                  client_certificate_self_signed
#   no-client-eku    extendedKeyUsage serverAuth only                    client_certificate_wrong_purpose
#   no-digsig        keyUsage keyEncipherment only (no digitalSignature) client_certificate_wrong_purpose
#   weak-key         RSA-1024                                            client_certificate_weak_key
#   weak-sig         signed with SHA-1                                   client_certificate_weak_signature
#   too-deep         leaf under int3 (3 intermediates > 2)               client_certificate_chain_too_deep
#   bad-upn          UPN otherName as IA5String (identity extraction)    client_certificate_malformed
#   too-large        ~110 KB non-critical private extension (> 100 KiB)  client_certificate_too_large
#   nc-violation     leaf under nc-ca with SAN email:eve@evil.test       client_certificate_name_constraints
#   unknown-critical a critical private extension                       client_certificate_unknown_critical_extension
set -euo pipefail
OUT=${1:?usage: make_bad_certs.sh OUT_DIR}
mkdir -p "$OUT"
cd "$OUT"
umask 077

GOOD_EXT=("keyUsage=critical,digitalSignature" "extendedKeyUsage=clientAuth")

root() {  # name subject
  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -keyout "$1.key" -out "$1.pem" \
    -subj "$2" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}

intermediate() {  # name issuer subject serial extra-extensions...
  local name=$1 issuer=$2 subject=$3 serial=$4
  shift 4
  openssl req -newkey rsa:2048 -nodes -sha256 -keyout "$name.key" -out "$name.csr" -subj "$subject" 2>/dev/null
  printf '%s\n' "basicConstraints=critical,CA:TRUE" "keyUsage=critical,keyCertSign,cRLSign" "$@" > "$name.ext"
  openssl x509 -req -in "$name.csr" -CA "$issuer.pem" -CAkey "$issuer.key" -set_serial "$serial" \
    -days 3650 -sha256 -extfile "$name.ext" -out "$name.pem" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

# leaf NAME ISSUER SUBJECT SERIAL [extensions...]; env: BITS (2048), MD (sha256), CHAIN (issuer
# intermediates to append, leaf first, in NAME.chain.pem).
leaf() {
  local name=$1 issuer=$2 subject=$3 serial=$4
  shift 4
  openssl req -newkey "rsa:${BITS:-2048}" -nodes -sha256 -keyout "$name.key" -out "$name.csr" \
    -subj "$subject" 2>/dev/null
  printf '%s\n' "basicConstraints=CA:FALSE" "$@" > "$name.ext"
  openssl x509 -req -in "$name.csr" -CA "$issuer.pem" -CAkey "$issuer.key" -set_serial "$serial" \
    -days 825 "-${MD:-sha256}" -extfile "$name.ext" -out "$name.pem" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
  chain "$name" ${CHAIN:-}
}

chain() {  # name intermediates...
  local name=$1
  shift
  cat "$name.pem" > "$name.chain.pem"
  for c in "$@"; do cat "$c.pem" >> "$name.chain.pem"; done
}

# Leaf with explicit validity dates: `openssl x509 -req` (3.0) cannot set them, `openssl ca` can.
dated_leaf() {  # name issuer subject serial startdate enddate
  local name=$1 issuer=$2 subject=$3 serial=$4 start=$5 end=$6
  local db
  db=$(mktemp -d "ca-db.XXXXXX")
  : > "$db/index.txt"
  echo "${serial#0x}" > "$db/serial"  # hex, even number of digits
  cat > "$db/ca.cnf" <<EOF
[ca]
default_ca = dated
[dated]
database = $db/index.txt
new_certs_dir = $db
serial = $db/serial
default_md = sha256
policy = any
unique_subject = no
copy_extensions = none
[any]
organizationName = optional
commonName = supplied
EOF
  openssl req -newkey rsa:2048 -nodes -sha256 -keyout "$name.key" -out "$name.csr" -subj "$subject" 2>/dev/null
  printf '%s\n' "basicConstraints=CA:FALSE" "${GOOD_EXT[@]}" > "$name.ext"
  openssl ca -batch -config "$db/ca.cnf" -cert "$issuer.pem" -keyfile "$issuer.key" -in "$name.csr" \
    -out "$name.pem" -startdate "$start" -enddate "$end" -extfile "$name.ext" -notext -preserveDN \
    2>/dev/null
  rm -rf "$name.csr" "$name.ext" "$db"
  chain "$name"
}

root bad-ca "/O=Orthrus Bad-Cert Test/CN=Bad-Cert Test Device CA"
root rogue-ca "/O=Rogue/CN=Rogue CA"
intermediate nc-ca bad-ca "/O=Orthrus Bad-Cert Test/CN=Name-Constrained CA" 0x100 \
  "nameConstraints=critical,permitted;email:.corp.test,permitted;DNS:.corp.test"
intermediate int1 bad-ca "/O=Orthrus Bad-Cert Test/CN=Intermediate 1" 0x101
intermediate int2 int1 "/O=Orthrus Bad-Cert Test/CN=Intermediate 2" 0x102
intermediate int3 int2 "/O=Orthrus Bad-Cert Test/CN=Intermediate 3" 0x103
cp bad-ca.pem ca-bundle.pem

leaf good bad-ca "/O=Corp/CN=good" 0x1000 "${GOOD_EXT[@]}" \
  "subjectAltName=email:good@corp.test"
CHAIN=nc-ca leaf good-nc nc-ca "/O=Corp/CN=good-nc" 0x1001 "${GOOD_EXT[@]}" \
  "subjectAltName=email:good@mail.corp.test"
CHAIN="int2 int1" leaf good-depth2 int2 "/O=Corp/CN=good-depth2" 0x1002 "${GOOD_EXT[@]}"

dated_leaf expired bad-ca "/O=Corp/CN=expired" 0x2001 20200101000000Z 20210101000000Z
dated_leaf not-yet-valid bad-ca "/O=Corp/CN=not-yet-valid" 0x2002 20990101000000Z 21000101000000Z
dated_leaf fresh bad-ca "/O=Corp/CN=fresh" 0x2010 "$(date -u -d '+10 minutes' +%Y%m%d%H%M%SZ)" \
  "$(date -u -d '+400 days' +%Y%m%d%H%M%SZ)"
dated_leaf recently-expired bad-ca "/O=Corp/CN=recently-expired" 0x2011 \
  "$(date -u -d '-400 days' +%Y%m%d%H%M%SZ)" "$(date -u -d '-10 minutes' +%Y%m%d%H%M%SZ)"

leaf rogue rogue-ca "/O=Rogue/CN=rogue" 0x2003 "${GOOD_EXT[@]}"
CHAIN=rogue-ca leaf rogue-with-root rogue-ca "/O=Rogue/CN=rogue-with-root" 0x2004 "${GOOD_EXT[@]}"

openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 825 -keyout self-signed.key \
  -out self-signed.pem -subj "/O=Corp/CN=self-signed" -addext "basicConstraints=CA:FALSE" \
  -addext "keyUsage=critical,digitalSignature" -addext "extendedKeyUsage=clientAuth" 2>/dev/null
chain self-signed

leaf no-client-eku bad-ca "/O=Corp/CN=no-client-eku" 0x2005 \
  "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth"
leaf no-digsig bad-ca "/O=Corp/CN=no-digsig" 0x2006 \
  "keyUsage=critical,keyEncipherment" "extendedKeyUsage=clientAuth"
BITS=1024 leaf weak-key bad-ca "/O=Corp/CN=weak-key" 0x2007 "${GOOD_EXT[@]}"
MD=sha1 leaf weak-sig bad-ca "/O=Corp/CN=weak-sig" 0x2008 "${GOOD_EXT[@]}"
CHAIN="int3 int2 int1" leaf too-deep int3 "/O=Corp/CN=too-deep" 0x2009 "${GOOD_EXT[@]}"
leaf bad-upn bad-ca "/O=Corp/CN=bad-upn" 0x200a "${GOOD_EXT[@]}" \
  "subjectAltName=otherName:1.3.6.1.4.1.311.20.2.3;IA5:bad@corp.test"
# 110,000 bytes of payload in a non-critical private extension: well over OpenSSL's default
# max_cert_list (100 KiB) for the whole Certificate message.
BIG=$(head -c 110000 /dev/zero | od -An -v -tx1 | tr -d ' \n')
leaf too-large bad-ca "/O=Corp/CN=too-large" 0x200b "${GOOD_EXT[@]}" \
  "1.3.6.1.4.1.55555.1.1=ASN1:FORMAT:HEX,OCTETSTRING:$BIG"
CHAIN=nc-ca leaf nc-violation nc-ca "/O=Corp/CN=nc-violation" 0x200c "${GOOD_EXT[@]}" \
  "subjectAltName=email:eve@evil.test"
leaf unknown-critical bad-ca "/O=Corp/CN=unknown-critical" 0x200d "${GOOD_EXT[@]}" \
  "1.3.6.1.4.1.55555.1.2=critical,ASN1:UTF8String:orthrus-test"

chmod 600 ./*.key
chmod 644 ./*.pem
echo "bad-certificate corpus ready in $OUT"
