#!/bin/bash
# Stops everything domain-up.sh started for ROOT (recorded pids, then anything left inside the netns),
# deletes the netns and /etc/netns/$NS. Idempotent: exits 0 even if everything is already gone.
# usage (as root):  ROOT=/scratch/dir [NS=name] domain-down.sh     or:  domain-down.sh ROOT [NS]
# NS defaults to the name recorded in $ROOT/ns. $ROOT itself (logs, keytabs, PKI) is kept for post-mortems;
# the next domain-up.sh with the same ROOT wipes it.
set -uo pipefail
HERE=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
ROOT=${ROOT:-${1:-}}
NS=${NS:-${2:-}}
if [ -z "$ROOT" ]; then echo "usage: ROOT=/scratch/dir $0" >&2; exit 0; fi
if [ "$(id -u)" != 0 ]; then echo "domain-down: must run as root" >&2; exit 1; fi
ROOT=$(realpath -m -- "$ROOT")
T0=$(td_now)
REC_NS=$(td_ns_of "$ROOT")
td_teardown "$ROOT" "${NS:-$REC_NS}"
[ -n "$REC_NS" ] && [ "$REC_NS" != "${NS:-$REC_NS}" ] && td_teardown "$ROOT" "$REC_NS"
rm -f "$ROOT"/cc.* 2>/dev/null
td_lap domain-down "$T0"
exit 0
