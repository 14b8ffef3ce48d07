#!/usr/bin/env bash
# Runs every Orthrus test on this machine: installs the Debian packages, builds, runs ctest twice
# (a RelWithDebInfo build, then an ASan+UBSan build). Needs root (apt-get, network namespaces for the
# test domain). Usage: sudo tools/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT_DIR=$(pwd)
JOBS=${JOBS:-$(nproc)}

if [ "$(id -u)" -ne 0 ]; then
  echo "tools/test.sh: run as root (sudo tools/test.sh): it installs packages and creates network namespaces" >&2
  exit 1
fi
deploy/install-deps.sh

# ccache: the same cache hits from any checkout path.
export CCACHE_BASEDIR="$ROOT_DIR" CCACHE_NOHASHDIR=1
command -v ccache >/dev/null && ccache -M 2G >/dev/null

build_and_test() {  # dir, cmake args...
  local dir=$1
  shift
  echo "== configure $dir"
  cmake -G Ninja -S . -B "$dir" "$@" >/dev/null
  echo "== build $dir"
  local t0=$SECONDS
  cmake --build "$dir" -j "$JOBS"
  echo "== built $dir in $((SECONDS - t0)) s"
  echo "== test $dir"
  (cd "$dir" && ctest --output-on-failure --timeout 900 ${CTEST_ARGS:-})
}

build_and_test build -DCMAKE_BUILD_TYPE=RelWithDebInfo
# Everything again under AddressSanitizer + UndefinedBehaviorSanitizer, the test domain included
# (the Kerberos and LDAP code runs only there).
build_and_test build-asan -DCMAKE_BUILD_TYPE=Debug -DORTHRUS_SANITIZE=ON

# Bounded libFuzzer pass over certificate identity extraction (tests/fuzz: a standalone clang project,
# the main build has no libFuzzer). Mutates a temp copy of the seed corpus; a crash, leak or UBSan
# finding fails the script, and the reproducer is kept in build-fuzz/artifacts.
echo "== fuzz identity extraction (${FUZZ_SECONDS:=30} s)"
CC=clang CXX=clang++ cmake -G Ninja -S tests/fuzz -B build-fuzz >/dev/null
cmake --build build-fuzz -j "$JOBS"
fuzz_corpus=$(mktemp -d)
cp tests/fuzz/corpus/identity/* "$fuzz_corpus"/
mkdir -p build-fuzz/artifacts
fuzz_rc=0
build-fuzz/orthrus_identity_fuzz -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -timeout=25 \
  -print_final_stats=1 -artifact_prefix=build-fuzz/artifacts/ "$fuzz_corpus" >build-fuzz/fuzz.log 2>&1 ||
  fuzz_rc=$?
rm -rf "$fuzz_corpus"
if [ "$fuzz_rc" -ne 0 ]; then
  tail -n 80 build-fuzz/fuzz.log >&2
  echo "tools/test.sh: identity fuzzer failed (exit $fuzz_rc); log build-fuzz/fuzz.log, reproducer in build-fuzz/artifacts" >&2
  exit 1
fi
grep -E "^#[0-9]+[[:space:]]+DONE|^stat::" build-fuzz/fuzz.log
command -v ccache >/dev/null && ccache -s | grep -E "hit|miss" || true
