#!/usr/bin/env bash
# Benchmark: requests/s through edge + broker with KCD against a throwaway test domain, warm vs cold.
# Usage (root, after a build in build/): sudo tests/bench/kcd_bench.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
SRC=$(pwd)
WORK=$(mktemp -d /tmp/orthrus-bench.XXXXXX)
chmod 755 "$WORK"
export ROOT=$WORK/domain NS=orthrus-bench-$$
trap 'tests/domain/domain-down.sh "$ROOT" >/dev/null 2>&1 || true' EXIT INT TERM
tests/domain/domain-up.sh >"$WORK/domain-up.log" 2>&1 || { tail -20 "$WORK/domain-up.log"; exit 1; }
# shellcheck disable=SC1091
. "$ROOT/env.sh"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%F)"
BUILD_DIR=$(realpath "${ORTHRUS_BUILD_DIR:-$SRC/build}")
ip netns exec "$NS" env KRB5_CONFIG="$KRB5_CONFIG" ORTHRUS_BUILD_DIR="$BUILD_DIR" PYTHONDONTWRITEBYTECODE=1 \
  /usr/bin/python3 tests/bench/kcd_bench.py
