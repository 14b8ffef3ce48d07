#!/usr/bin/env bash
# Benchmark: Orthrus (edge + broker) against nginx and HAProxy as mutual-TLS reverse proxies, and the
# backend alone, on the same load; prints one table with ratios to nginx and writes JSON.
# Usage (root): sudo tests/bench/peer_bench.sh
#   BENCH_SECONDS=3 BENCH_LONGPOLL=1000 sudo -E tests/bench/peer_bench.sh   # a quick smoke run
# Everything runs on 127.0.0.1; see docs/performance.md and tests/bench/peers/peer_bench.py (the
# other BENCH_* knobs). Needs: nginx, haproxy (installed with apt-get when missing), a build of
# orthrus-edge, orthrus-broker and orthrus-loadgen (made here unless BENCH_BUILD=0).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" != 0 ]; then
  echo "peer_bench.sh: run as root (it may install nginx/haproxy and raises descriptor limits)" >&2
  exit 1
fi

missing=()
command -v nginx >/dev/null || missing+=(nginx)
command -v haproxy >/dev/null || missing+=(haproxy)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The packages' own services (if the init system started them) are not used by the benchmark.
fi

BUILD=${ORTHRUS_BUILD_DIR:-build}
export ORTHRUS_BUILD_DIR=$BUILD
if [ "${BENCH_BUILD:-1}" = 1 ]; then
  cmake -S . -B "$BUILD" -G Ninja >/dev/null
  ninja -C "$BUILD" -j2 orthrus-edge orthrus-broker orthrus-loadgen
fi

# 10 000 held long-polls need 2 descriptors each in a proxy: raise the limit where allowed.
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt 65536 ]; then ulimit -Hn 65536 2>/dev/null || true; fi
ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || true

env PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 tests/bench/peers/peer_bench.py

# Orthrus with Kerberos constrained delegation (warm) has no peer (nginx and HAProxy cannot do KCD):
# the same run provisions the test domain and measures it against static files behind mod_auth_gssapi,
# KCD and certificate-only side by side (tests/bench/kcd_bench.sh). BENCH_KCD=0 skips it.
if [ "${BENCH_KCD:-1}" = 1 ]; then
  echo
  echo "== Orthrus + KCD against the test domain (no peer can do this)"
  deploy/install-deps.sh >/dev/null  # samba, apache2, mod_auth_gssapi (idempotent)
  BENCH_SECONDS=${BENCH_SECONDS:-10} BENCH_REQUESTS=${BENCH_KCD_REQUESTS:-100} \
    BENCH_COLD_REPEATS=${BENCH_KCD_COLD_REPEATS:-5} tests/bench/kcd_bench.sh
fi
