#!/bin/bash
# End-to-end checks of a running Orthrus test domain (see domain-up.sh). Exit status = number of failures.
# usage (as root):  smoke.sh ROOT        (or ROOT=... smoke.sh)
set -uo pipefail
ROOT=${1:-${ROOT:-}}
[ -n "$ROOT" ] && [ -f "$ROOT/env.sh" ] || { echo "usage: $0 ROOT  (ROOT/env.sh from domain-up.sh)" >&2; exit 1; }
# shellcheck source=/dev/null
. "$ROOT/env.sh"
X=(ip netns exec "$NS")
W=$ROOT/smoke
rm -rf "$W"; mkdir -p "$W"
unset KRB5_CLIENT_KTNAME KRB5_KTNAME KRB5CCNAME
T0=$EPOCHREALTIME
fail=0 n=0
pass() { n=$((n + 1)); echo "PASS $1"; }
bad()  { n=$((n + 1)); fail=$((fail + 1)); echo "FAIL $1"; shift; [ $# -gt 0 ] && printf '     %s\n' "$@" | head -c 2000; }
# want_in WHAT NEEDLE HAYSTACK  /  want_not_in WHAT NEEDLE HAYSTACK
want_in()     { if [[ "$3" == *"$2"* ]]; then pass "$1"; else bad "$1" "want: $2" "got: $3"; fi; }
want_not_in() { if [[ "$3" != *"$2"* ]]; then pass "$1"; else bad "$1" "must not contain: $2" "got: $3"; fi; }
# want_rc WHAT EXPECTED(0|nonzero) RC OUTPUT NEEDLE
want_rc() {
  local ok=0
  if [ "$2" = 0 ]; then [ "$3" = 0 ] && ok=1; else [ "$3" != 0 ] && ok=1; fi
  if [ $ok = 1 ] && [[ "$4" == *"$5"* ]]; then pass "$1"; else bad "$1" "want rc $2 and '$5'" "got rc $3: $4"; fi
}
run() { "${X[@]}" "$@" 2>&1; }
# HTTP helpers: print body + " HTTP=<code> RC=<curl rc>"
http() { local out rc; out=$("${X[@]}" curl -sS --max-time 20 --cacert "$TD_CA" -w '\nHTTP=%{http_code} WWWAUTH=%header{www-authenticate}' "$@" 2>&1); rc=$?; echo "$out RC=$rc"; }
ldap_gssapi() { "${X[@]}" ldapsearch -LLL -Q -Y GSSAPI -N -o ldif-wrap=no -H "$TD_LDAP_URI" -b "$TD_BASE_DN" "$@" 2>&1 | grep -v '^# refldap'; }
count_dn() { grep -c '^dn: ' <<<"$1" || true; }

# ------------------------------------------------------------------ PKI
out=""
for c in alice bob carol dave shared nobody broker-bridge exchange edge broker dc1 alice-wrong-eku; do
  out+=$(openssl verify -CAfile "$TD_CA" "$TD_PKI/$c.pem" 2>&1)$'\n'
done
if [ "$(grep -c ': OK$' <<<"$out")" = 12 ]; then pass "pki: 12 certificates verify against Corp CA"; else bad "pki: verify" "$out"; fi
want_rc "pki: alice-rogue (same issuer DN, rogue key) does NOT verify" 1 \
  "$(openssl verify -CAfile "$TD_CA" "$TD_PKI/alice-rogue.pem" >/dev/null 2>&1; echo $?)" "" ""
serial=$(openssl x509 -in "$TD_PKI/carol.pem" -noout -serial)
want_in "pki: carol serial 0A1B2C3D4E, altSecurityIdentities <SR> reversed" \
  "$serial <SR>4e3d2c1b0a" "$serial ${TD_CAROL_ALTSECID_ISSUER_SERIAL#*>DC=test,DC=corp,CN=Corp CA}"
want_not_in "pki: carol.pem has no SAN" "Subject Alternative Name" "$(openssl x509 -in "$TD_PKI/carol.pem" -noout -text)"
want_in "pki: alice.pem has UPN otherName + email" "UPN::alice@corp.test, email:alice@corp.test" \
  "$(openssl x509 -in "$TD_PKI/alice.pem" -noout -ext subjectAltName 2>&1)"

# ------------------------------------------------------------------ backend without ticket
export KRB5CCNAME=FILE:$W/cc.none
r=$(http "$TD_BACKEND_EAS_URL?Cmd=Sync&User=alice&DeviceId=T1&DeviceType=Test")
want_in "backend :443 EAS without ticket -> 401 Negotiate" "HTTP=401 WWWAUTH=Negotiate" "$r"
r=$(http "$TD_BACKEND_OWA_URL/")
want_in "backend :443 OWA without ticket -> 401 Negotiate" "HTTP=401 WWWAUTH=Negotiate" "$r"
r=$(http "$TD_BACKEND_URL/other")
want_in "backend :443 unknown path -> 404 (no auth)" "HTTP=404" "$r"

# ------------------------------------------------------------------ alice with a ticket
export KRB5CCNAME=FILE:$W/cc.alice
r=$(echo 'AlicePass1!' | run kinit alice@CORP.TEST); rc=$?
want_rc "kinit alice (password)" 0 $rc "$r" ""
r=$(http --negotiate -u : "$TD_BACKEND_EAS_URL?Cmd=Sync&User=alice&DeviceId=T1&DeviceType=Test")
want_in "backend :443 EAS GET with ticket -> 200 REMOTE_USER=alice@CORP.TEST" \
  $'REMOTE_USER=alice@CORP.TEST\nAUTH_TYPE=Negotiate\nREQUEST_METHOD=GET\nREQUEST_URI=/Microsoft-Server-ActiveSync?Cmd=Sync&User=alice&DeviceId=T1&DeviceType=Test\nSSL_CLIENT_S_DN=\n' "$r"
want_in "backend :443 EAS -> HTTP 200" "HTTP=200" "$r"
head -c 1000 /dev/zero | tr '\0' 'a' > "$W/body"
r=$(http --negotiate -u : --data-binary @"$W/body" -H 'Content-Type: application/vnd.ms-sync.wbxml' "$TD_BACKEND_OWA_URL/a/b?x=1")
want_in "backend :443 OWA POST subpath with ticket -> alice, body length 1000" \
  $'REMOTE_USER=alice@CORP.TEST\nAUTH_TYPE=Negotiate\nREQUEST_METHOD=POST\nREQUEST_URI=/owa/a/b?x=1\nSSL_CLIENT_S_DN=\nBODY_LENGTH=1000\n' "$r"

# ------------------------------------------------------------------ :8443 (client certificate required)
r=$(http --negotiate -u : "$TD_BACKEND_MTLS_URL/Microsoft-Server-ActiveSync?Cmd=Ping")
if [[ "$r" != *"HTTP=200"* && "$r" != *"RC=0" ]]; then pass "backend :8443 without client cert -> refused"; else bad "backend :8443 without client cert -> refused" "$r"; fi
r=$(http --cert "$TD_CERT_BROKER_BRIDGE" --key "$TD_KEY_BROKER_BRIDGE" --negotiate -u : "$TD_BACKEND_MTLS_URL/Microsoft-Server-ActiveSync?Cmd=Ping")
want_in "backend :8443 broker-bridge cert + ticket -> 200 alice, SSL_CLIENT_S_DN=CN=broker.corp.test" \
  $'REMOTE_USER=alice@CORP.TEST\nAUTH_TYPE=Negotiate\nREQUEST_METHOD=GET\nREQUEST_URI=/Microsoft-Server-ActiveSync?Cmd=Ping\nSSL_CLIENT_S_DN=CN=broker.corp.test\n' "$r"
r=$(KRB5CCNAME=FILE:$W/cc.none http --cert "$TD_CERT_BROKER_BRIDGE" --key "$TD_KEY_BROKER_BRIDGE" "$TD_BACKEND_MTLS_URL/owa/")
want_in "backend :8443 broker-bridge cert without ticket -> 401" "HTTP=401" "$r"
r=$(http --cert "$TD_CERT_ALICE_ROGUE" --key "$TD_KEY_ALICE_ROGUE" --negotiate -u : "$TD_BACKEND_MTLS_URL/owa/")
if [[ "$r" != *"HTTP=200"* ]]; then pass "backend :8443 rogue-CA client cert -> refused"; else bad "backend :8443 rogue-CA client cert -> refused" "$r"; fi

# ------------------------------------------------------------------ KCD (S4U2Self + S4U2Proxy) via kvno
export KRB5CCNAME=FILE:$W/cc.broker
m=$("$TD_TOOLS/kdc-requests.sh" "$ROOT" mark)
r=$(run kinit -k -t "$TD_BROKER_KEYTAB" svc-broker@CORP.TEST); rc=$?
want_rc "kinit -k broker.keytab svc-broker" 0 $rc "$r" ""
want_in "broker TGT is forwardable" "Flags: F" "$(run klist -f)"
r=$(run kvno -U alice -P HTTP/exchange.corp.test); rc=$?
want_rc "kvno S4U2Self+S4U2Proxy alice -> HTTP/exchange.corp.test ok" 0 $rc "$r" "kvno ="
want_in "kdc-requests counts kinit -k + kvno -U -P exactly" \
  "as_req=3 tgs_req=2 s4u2self=1 s4u2proxy=1 as_ok=1 as_preauth_required=2 as_err=0 tgs_ok=2 tgs_err=0 s4u2self_ok=1 s4u2proxy_ok=1" \
  "$("$TD_TOOLS/kdc-requests.sh" "$ROOT" "$m")"
r=$(run kvno -U bob -P HTTP/exchange.corp.test); rc=$?
want_rc "kvno S4U disabled bob refused (KDC policy rejects request)" 1 $rc "$r" "KDC policy rejects request"
r=$(run kvno -U dave -P HTTP/exchange.corp.test); rc=$?
want_rc "kvno S4U NOT_DELEGATED dave refused (constrained delegation failed)" 1 $rc "$r" "KDC can't fulfill requested option"
want_in "  ... dave: 'constrained delegation failed'" "constrained delegation failed" "$r"
r=$(run kvno -U alice -P HTTP/other.corp.test); rc=$?
want_rc "kvno S4U alice -> HTTP/other.corp.test refused (not in msDS-AllowedToDelegateTo)" 1 $rc "$r" "constrained delegation failed"
r=$(run kvno -U nosuchuser -P HTTP/exchange.corp.test); rc=$?
want_rc "kvno S4U unknown user refused" 1 $rc "$r" "not found in Kerberos database"
r=$(run kvno HTTP/rc4.corp.test); rc=$?
want_rc "svc-rc4 service ticket is issued" 0 $rc "$r" "kvno ="
want_in "  ... and is RC4 (arcfour-hmac)" "arcfour-hmac" "$(run klist -e | grep -A1 'HTTP/rc4.corp.test' | tail -1)"

# ------------------------------------------------------------------ LDAP (GSSAPI, broker's TGT)
r=$(ldap_gssapi '(userPrincipalName=alice@corp.test)' sAMAccountName)
want_in "ldap GSSAPI: UPN alice@corp.test -> alice" "sAMAccountName: alice" "$r"
r=$(ldap_gssapi '(mail=shared@corp.test)' sAMAccountName)
if [ "$(count_dn "$r")" = 2 ] && [[ "$r" == *"sAMAccountName: erin"* && "$r" == *"sAMAccountName: frank"* ]]; then
  pass "ldap GSSAPI: mail shared@corp.test -> 2 entries (erin, frank)"; else bad "ldap GSSAPI: mail shared@corp.test -> 2 entries" "$r"; fi
r=$(ldap_gssapi "(altSecurityIdentities=$TD_CAROL_ALTSECID_ISSUER_SERIAL)" sAMAccountName userPrincipalName mail)
if [ "$(count_dn "$r")" = 1 ] && [[ "$r" == *"sAMAccountName: carol"* && "$r" != *"mail:"* ]]; then
  pass "ldap GSSAPI: altSecurityIdentities X509:<I>..<SR>4e3d2c1b0a -> carol (no mail)"; else bad "ldap GSSAPI: carol by <I><SR>" "$r"; fi
r=$(ldap_gssapi "(altSecurityIdentities=$TD_CAROL_ALTSECID_SKI)" sAMAccountName)
want_in "ldap GSSAPI: altSecurityIdentities X509:<SKI>.. -> carol" "sAMAccountName: carol" "$r"
r=$(ldap_gssapi '(altSecurityIdentities=X509:<I>DC=test,DC=corp,CN=Corp CA<SR>0a1b2c3d4e)' sAMAccountName)
want_not_in "ldap GSSAPI: non-reversed serial <SR>0a1b2c3d4e finds nobody" "dn:" "$r"
r=$(ldap_gssapi '(|(userPrincipalName=carol@corp.test)(mail=carol@corp.test))' sAMAccountName)
want_not_in "ldap GSSAPI: carol not findable by carol@corp.test" "dn:" "$r"
r=$(ldap_gssapi '(userAccountControl:1.2.840.113556.1.4.803:=1048576)' sAMAccountName)
want_in "ldap GSSAPI: dave has NOT_DELEGATED" "sAMAccountName: dave" "$r"
r=$(ldap_gssapi '(sAMAccountName=svc-broker)' msDS-AllowedToDelegateTo userAccountControl)
uac=$(sed -n 's/^userAccountControl: //p' <<<"$r")
if [ "$(grep -c '^msDS-AllowedToDelegateTo: ' <<<"$r")" = 1 ] && [[ "$r" == *"msDS-AllowedToDelegateTo: HTTP/exchange.corp.test"* ]] \
   && [ -n "$uac" ] && (( uac & 0x1000000 )); then
  pass "ldap GSSAPI: svc-broker has T2A4D and may delegate only to HTTP/exchange.corp.test"
else bad "ldap GSSAPI: svc-broker delegation settings" "$r"; fi
r=$("${X[@]}" env LDAPTLS_CACERT="$TD_CA" ldapsearch -LLL -x -o ldif-wrap=no -H "$TD_LDAPS_URI" -D svc-broker@corp.test \
  -w 'BrokerPass1!' -b "CN=Users,$TD_BASE_DN" '(userPrincipalName=bob@corp.test)' userAccountControl 2>&1)
uac=$(sed -n 's/^userAccountControl: //p' <<<"$r")
if [ -n "$uac" ] && (( uac & 2 )); then pass "ldaps simple bind (Corp CA verified): bob is disabled (UF_ACCOUNTDISABLE)"
else bad "ldaps simple bind: bob disabled" "$r"; fi

# ------------------------------------------------------------------ KDC control (reject is instant; block/delay are in README)
"$TD_TOOLS/kdc-control.sh" "$ROOT" reject
export KRB5CCNAME=FILE:$W/cc.kdcdown
r=$(echo 'AlicePass1!' | run kinit alice@CORP.TEST); rc=$?
want_rc "kdc-control reject: kinit fails (Cannot contact any KDC)" 1 $rc "$r" "Cannot contact any KDC"
r=$(KRB5CCNAME=FILE:$W/cc.broker ldap_gssapi '(sAMAccountName=alice)' dn)
want_in "kdc-control reject: LDAP still answers" "dn: CN=alice" "$r"
"$TD_TOOLS/kdc-control.sh" "$ROOT" unblock
r=$(echo 'AlicePass1!' | run kinit alice@CORP.TEST); rc=$?
want_rc "kdc-control unblock: kinit works again" 0 $rc "$r" ""

rm -rf "$W"
awk -v n="$n" -v f="$fail" -v s="$T0" -v e="$EPOCHREALTIME" 'BEGIN { printf "smoke: %d checks, %d failed, %.2fs\n", n, f, e - s }'
exit $fail
