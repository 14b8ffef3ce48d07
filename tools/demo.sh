#!/usr/bin/env bash
# The Orthrus demo, end to end on loopback:
#   device (curl + client certificate) --TLS--> orthrus-edge --mTLS gRPC--> orthrus-broker --HTTPS--> backend
# It installs the packages, builds, makes a throwaway PKI, starts a backend, a broker and an edge,
# sends a request through them, prints what the backend saw, and stops everything it started.
# Usage: sudo tools/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$(pwd)

if [ "$(id -u)" -ne 0 ]; then
  echo "tools/demo.sh: run as root (sudo tools/demo.sh): it installs Debian packages" >&2
  exit 1
fi
deploy/install-deps.sh >/dev/null
export CCACHE_BASEDIR="$SRC" CCACHE_NOHASHDIR=1
echo "== building (first build takes a few minutes on 2 cores)"
cmake -G Ninja -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target orthrus-edge orthrus-broker >/dev/null

WORK=$(mktemp -d /tmp/orthrus-demo.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "== stopped backend, broker and edge; logs kept in $WORK"
}
trap cleanup EXIT INT TERM

# Prints "host:port" from a process's JSON "listening" log line once it appears.
wait_listening() {
  local log=$1
  for _ in $(seq 1 200); do
    if [ -f "$log" ] && grep -q '"event":"listening"' "$log"; then
      grep -o '"event":"listening","address":"[^"]*"' "$log" | tail -1 | sed 's/.*"address":"\([^"]*\)"/\1/'
      return 0
    fi
    sleep 0.05
  done
  echo "demo: $log never reported listening" >&2
  exit 1
}

echo "== throwaway PKI in $WORK/pki"
tests/support/make_pki.sh "$WORK/pki" >/dev/null
P=$WORK/pki

/usr/bin/python3 tests/support/echo_backend.py --cert "$P/backend.pem" --key "$P/backend.key" \
  --port-file "$WORK/backend.port" --events "$WORK/backend.events" >"$WORK/backend.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 200); do [ -f "$WORK/backend.port" ] && break; sleep 0.05; done
BACKEND_PORT=$(cat "$WORK/backend.port")

cat >"$WORK/broker.conf" <<CONF
broker_id: "demo-broker"
listen {
  address: "127.0.0.1:0"
  certificate_chain_file: "$P/broker.pem"
  private_key_file: "$P/broker.key"
  edge_ca_file: "$P/internal-ca.pem"
  allowed_edge: "edge-1"
}
device_ca_file: "$P/device-ca.pem"
rule {
  name: "activesync"
  path_prefix: "/Microsoft-Server-ActiveSync"
  backend_url: "https://backend.test:$BACKEND_PORT"
  pinned_ip: "127.0.0.1"
  backend_ca_file: "$P/internal-ca.pem"
  identity_headers: true
}
log { output: "$WORK/broker.log" }
CONF
build/broker/orthrus-broker --config "$WORK/broker.conf" 2>>"$WORK/broker.stderr" &
PIDS+=($!)
BROKER=$(wait_listening "$WORK/broker.log")

cat >"$WORK/edge.conf" <<CONF
edge_id: "demo-edge"
listen {
  address: "127.0.0.1:0"
  certificate_chain_file: "$P/edge-server.pem"
  private_key_file: "$P/edge-server.key"
  client_ca_file: "$P/device-ca.pem"
}
broker { address: "$BROKER" server_name: "broker.test" }
broker_tls {
  certificate_chain_file: "$P/edge-1.pem"
  private_key_file: "$P/edge-1.key"
  ca_file: "$P/internal-ca.pem"
}
log { output: "$WORK/edge.log" }
CONF
build/edge/orthrus-edge --config "$WORK/edge.conf" 2>>"$WORK/edge.stderr" &
PIDS+=($!)
EDGE=$(wait_listening "$WORK/edge.log")
EDGE_PORT=${EDGE##*:}
echo "== backend on 127.0.0.1:$BACKEND_PORT, broker on $BROKER, edge on $EDGE"

URL="https://edge.test:$EDGE_PORT/Microsoft-Server-ActiveSync?Cmd=Ping&User=alice&DeviceId=DEMO0001&DeviceType=iPhone"
echo "== device 'alice' (client certificate with UPN alice@corp.test) sends: POST $URL"
curl -sS --fail-with-body --resolve "edge.test:$EDGE_PORT:127.0.0.1" --cacert "$P/device-ca.pem" \
  --cert "$P/alice.pem" --key "$P/alice.key" -H 'Content-Type: application/vnd.ms-sync.wbxml' \
  --data-binary '<Ping/>' "$URL" -o "$WORK/response.json"
echo "== the backend saw:"
/usr/bin/python3 - "$WORK/response.json" <<'PY'
import json, sys
seen = json.load(open(sys.argv[1]))
h = seen["headers"]
print(f"   method:   {seen['method']}")
print(f"   path:     {seen['path']}")
print(f"   body:     {seen['body_len']} bytes")
for k in ("X-Orthrus-Client-Subject", "X-Orthrus-Client-Issuer", "X-Orthrus-Client-Serial",
          "X-Orthrus-Client-UPN", "X-Orthrus-Client-Email", "X-Orthrus-Client-Cert-Sha256",
          "X-Orthrus-Edge", "X-Forwarded-For"):
    print(f"   {k + ':':32s} {h.get(k, '-')}")
PY

echo "== a device without a certificate is refused in the TLS handshake:"
if curl -sS --resolve "edge.test:$EDGE_PORT:127.0.0.1" --cacert "$P/device-ca.pem" "$URL" -o /dev/null 2>"$WORK/nocert.err"; then
  echo "   unexpected: request without a certificate succeeded" >&2
  exit 1
fi
echo "   curl: $(head -c 160 "$WORK/nocert.err")"
sleep 0.2
echo "   edge log: $(grep '"event":"tls_refused"' "$WORK/edge.log" | tail -1)"
