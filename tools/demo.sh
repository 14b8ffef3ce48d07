#!/usr/bin/env bash
# The Orthrus demo, end to end, with a real Active Directory test domain:
#
#   device (curl + client certificate)
#     --TLS--> orthrus-edge --mutual-TLS gRPC--> orthrus-broker
#                                                  |-- LDAP (Samba AD): certificate -> account
#                                                  |-- Kerberos S4U2Self + S4U2Proxy (KCD)
#                                                  '-- HTTPS + Negotiate --> Apache/mod_auth_gssapi ("Exchange")
#
# It installs the packages, builds, provisions a throwaway Samba AD domain (CORP.TEST) in a private
# network namespace, starts broker and edge there, sends device requests through them, prints what
# the backend saw, and stops and deletes everything it started. Usage: sudo tools/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$(pwd)

if [ "$(id -u)" -ne 0 ]; then
  echo "tools/demo.sh: run as root (sudo tools/demo.sh): it installs packages and creates a network namespace" >&2
  exit 1
fi
deploy/install-deps.sh >/dev/null
export CCACHE_BASEDIR="$SRC" CCACHE_NOHASHDIR=1
echo "== building (the first build takes a few minutes on 2 cores)"
cmake -G Ninja -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target orthrus-edge orthrus-broker >/dev/null

WORK=$(mktemp -d /tmp/orthrus-demo.XXXXXX)
chmod 755 "$WORK"   # the backend's www-data workers must traverse it
export ROOT=$WORK/domain NS=orthrus-demo-$$
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  tests/domain/domain-down.sh "$ROOT" >/dev/null 2>&1 || true
  echo "== stopped edge, broker and the test domain; logs kept in $WORK"
}
trap cleanup EXIT INT TERM

echo "== provisioning the test domain CORP.TEST (Samba AD DC + Kerberos-protected backend) in netns $NS"
tests/domain/domain-up.sh >"$WORK/domain-up.log" 2>&1 || { tail -20 "$WORK/domain-up.log"; exit 1; }
grep -E "TOTAL" "$WORK/domain-up.log" | sed 's/^/   /'
# shellcheck disable=SC1091
. "$ROOT/env.sh"
IN_NS=(ip netns exec "$NS" env KRB5_CONFIG="$KRB5_CONFIG")

wait_listening() {  # prints host:port from a process's JSON "listening" log line
  local log=$1
  for _ in $(seq 1 300); do
    if [ -f "$log" ] && grep -q '"event":"listening"' "$log"; then
      grep -o '"event":"listening","address":"[^"]*"' "$log" | tail -1 | sed 's/.*"address":"\([^"]*\)"/\1/'
      return 0
    fi
    sleep 0.05
  done
  echo "demo: $log never reported listening:" >&2
  cat "${log%.log}.stderr" >&2 2>/dev/null || true
  exit 1
}

echo "== edge<->broker PKI in $WORK/pki; device certificates come from the domain's CA"
tests/support/make_pki.sh "$WORK/pki" >/dev/null
P=$WORK/pki

cat >"$WORK/broker.conf" <<CONF
broker_id: "demo-broker"
listen {
  address: "127.0.0.1:0"
  certificate_chain_file: "$P/broker.pem"
  private_key_file: "$P/broker.key"
  edge_ca_file: "$P/internal-ca.pem"
  allowed_edge: "edge-1"
}
device_ca_file: "$TD_CA"
kerberos {
  keytab_file: "$TD_BROKER_KEYTAB"
  principal: "$TD_BROKER_PRINCIPAL"
}
directory {
  uri: "$TD_LDAP_URI"
  base_dn: "$TD_BASE_DN"
  mapping: "altsec-issuer-serial"
  mapping: "upn"
  allow_weak_mappings: true
}
rule {
  name: "exchange-activesync"
  host: "edge.test"
  path_prefix: "/Microsoft-Server-ActiveSync"
  backend_url: "$TD_BACKEND_URL"
  backend_ca_file: "$TD_CA"
  spn: "$TD_BACKEND_SPN"
}
rule {
  name: "exchange-owa"
  host: "owa.edge.test"
  path_prefix: "/owa"
  authentication: "password"
  backend_url: "$TD_BACKEND_URL"
  backend_ca_file: "$TD_CA"
  spn: "$TD_BACKEND_SPN"
}
log { output: "$WORK/broker.log" }
CONF
"${IN_NS[@]}" "$SRC/build/broker/orthrus-broker" --config "$WORK/broker.conf" 2>"$WORK/broker.stderr" &
PIDS+=($!)
BROKER=$(wait_listening "$WORK/broker.log")

cat >"$WORK/edge.conf" <<CONF
edge_id: "demo-edge"
listen {
  address: "127.0.0.1:0"
  certificate_chain_file: "$P/edge-server.pem"
  private_key_file: "$P/edge-server.key"
  client_ca_file: "$TD_CA"
}
broker { address: "$BROKER" server_name: "broker.test" }
broker_tls {
  certificate_chain_file: "$P/edge-1.pem"
  private_key_file: "$P/edge-1.key"
  ca_file: "$P/internal-ca.pem"
}
# One listener, two sites: ActiveSync needs a device certificate, OWA a password.
rule { name: "activesync" host: "edge.test" path_prefix: "/Microsoft-Server-ActiveSync" }
rule { name: "owa" host: "owa.edge.test" path_prefix: "/owa" authentication: "password" }
log { output: "$WORK/edge.log" }
CONF
"${IN_NS[@]}" "$SRC/build/edge/orthrus-edge" --config "$WORK/edge.conf" 2>"$WORK/edge.stderr" &
PIDS+=($!)
EDGE=$(wait_listening "$WORK/edge.log")
PORT=${EDGE##*:}
echo "== broker on $BROKER, edge on $EDGE (inside netns $NS)"

device() {  # user, then curl args
  local user=$1
  shift
  local u
  u=$(echo "$user" | tr 'a-z' 'A-Z')
  local cert="TD_CERT_$u" key="TD_KEY_$u"
  "${IN_NS[@]}" curl -sS --resolve "edge.test:$PORT:127.0.0.1" --cacert "$P/device-ca.pem" \
    --cert "${!cert}" --key "${!key}" "$@"
}
URL="https://edge.test:$PORT/Microsoft-Server-ActiveSync?Cmd=Ping&User=alice&DeviceId=DEMO0001&DeviceType=iPhone"

echo
echo "== device 'alice' (certificate with UPN alice@corp.test) sends POST $URL"
device alice -H 'Content-Type: application/vnd.ms-sync.wbxml' --data-binary '<Ping/>' "$URL" -o "$WORK/alice.out" \
  -w "   HTTP %{http_code}\n"
echo "   the backend (Apache + mod_auth_gssapi, real ticket verification) saw:"
grep -E "^(REMOTE_USER|AUTH_TYPE|REQUEST_METHOD|REQUEST_URI)=" "$WORK/alice.out" | sed 's/^/     /'
echo "   broker: $(grep '"event":"request"' "$WORK/broker.log" | tail -1 | grep -o '"user":"[^"]*"\|"rule":"[^"]*"\|"reason":"[^"]*"' | tr '\n' ' ')"

echo
echo "== device 'carol' (no UPN in her certificate; strong altSecurityIdentities mapping):"
device carol "$URL" -o "$WORK/carol.out" -w "   HTTP %{http_code}\n"
grep -E "^REMOTE_USER=" "$WORK/carol.out" | sed 's/^/     /'

echo
echo "== device 'bob' (AD account disabled) is refused, with a reason in the log:"
device bob "$URL" -o /dev/null -w "   HTTP %{http_code}\n" || true
sleep 0.2
echo "   broker: $(grep '"event":"request"' "$WORK/broker.log" | tail -1 | grep -o '"reason":"[^"]*"\|"hint":"[^"]*"' | tr '\n' ' ')"

echo
echo "== a device without a certificate is refused in the TLS handshake:"
if "${IN_NS[@]}" curl -sS --resolve "edge.test:$PORT:127.0.0.1" --cacert "$P/device-ca.pem" "$URL" -o /dev/null 2>"$WORK/nocert.err"; then
  echo "   unexpected: request without a certificate succeeded" >&2
  exit 1
fi
echo "   curl: $(head -c 150 "$WORK/nocert.err")"
sleep 0.2
echo "   edge: $(grep '"event":"tls_refused"' "$WORK/edge.log" | tail -1 | grep -o '"reason":"[^"]*"')"

OWA="https://owa.edge.test:$PORT/owa/"
browser() {  # a browser: no certificate, Basic credentials
  "${IN_NS[@]}" curl -sS --resolve "owa.edge.test:$PORT:127.0.0.1" --cacert "$P/device-ca.pem" "$@"
}
echo
echo "== a browser without a certificate opens $OWA with alice's password (checked at the KDC):"
browser -u 'alice:AlicePass1!' "$OWA" -o "$WORK/owa.out" -w "   HTTP %{http_code}\n"
grep -E "^REMOTE_USER=" "$WORK/owa.out" | sed 's/^/     /'
echo "== ... and with a wrong password:"
browser -u 'alice:guess' "$OWA" -o /dev/null -D "$WORK/owa-wrong.hdr" -w "   HTTP %{http_code}\n" || true
echo "   $(grep -i '^WWW-Authenticate' "$WORK/owa-wrong.hdr" | tr -d '\r')"
sleep 0.2
echo "   broker: $(grep '"event":"request"' "$WORK/broker.log" | tail -1 | grep -o '"reason":"[^"]*"' | tr '\n' ' ')"
grep -q "REMOTE_USER=alice@CORP.TEST" "$WORK/alice.out"
grep -q "REMOTE_USER=alice@CORP.TEST" "$WORK/owa.out"
