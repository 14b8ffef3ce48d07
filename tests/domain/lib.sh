# Shared helpers for the Orthrus throwaway AD test domain (sourced, not executed).
# Used by domain-up.sh, domain-down.sh, kdc-control.sh, kdc-requests.sh and smoke.sh.

# shellcheck disable=SC2034  # constants used by the scripts that source this file
# Fixed layout of the test domain (inside the network namespace; nothing listens outside it).
TD_REALM=CORP.TEST
TD_DNS_DOMAIN=corp.test
TD_NETBIOS=CORP
TD_BASE_DN=DC=corp,DC=test
TD_DC_IP=127.0.0.10        # dc1.corp.test       Samba AD DC: KDC 88, LDAP 389/636, GC 3268/3269
TD_EXCHANGE_IP=127.0.0.20  # exchange.corp.test  Apache + mod_auth_gssapi: 443 (server TLS), 8443 (mTLS)
TD_EDGE_IP=127.0.0.30      # edge.corp.test      reserved for the Orthrus edge under test
TD_BROKER_IP=127.0.0.40    # broker.corp.test    reserved for the Orthrus broker under test
TD_MARKER=.orthrus-test-domain

td_now() { echo "$EPOCHREALTIME"; }
# td_lap <label> <start>: one timing line per phase
td_lap() { awk -v l="$1" -v s="$2" -v e="$EPOCHREALTIME" 'BEGIN { printf "td-time %-24s %6.2fs\n", l, e - s }'; }
td_log() { echo "td: $*" >&2; }

# td_ns_of ROOT: netns name recorded by domain-up (empty if none)
td_ns_of() { [ -f "$1/ns" ] && cat "$1/ns" || true; }

# td_pid_alive PID: true if PID exists and is not a zombie
td_pid_alive() {
  local st
  [ -r "/proc/$1/stat" ] || return 1
  st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# td_wait_gone TIMEOUT_S PID...: wait until all PIDs are gone; false if some remain
td_wait_gone() {
  local t=$1 p left i; shift
  for ((i = 0; i < t * 20; i++)); do
    left=0
    for p in "$@"; do td_pid_alive "$p" && left=1; done
    [ $left = 0 ] && return 0
    sleep 0.05
  done
  return 1
}

# td_stop_pid PIDFILE MUST_CONTAIN: TERM (then KILL) the recorded pid, but only if its command line
# still mentions MUST_CONTAIN (protects against pid reuse). Removes the pid file.
td_stop_pid() {
  local f=$1 want=$2 p
  [ -f "$f" ] || return 0
  p=$(cat "$f" 2>/dev/null || true)
  if [[ "$p" =~ ^[0-9]+$ ]] && td_pid_alive "$p" && tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | grep -qF -- "$want"; then
    kill -TERM "$p" 2>/dev/null || true
    if ! td_wait_gone 10 "$p"; then
      td_log "pid $p ($(basename "$f")) ignored SIGTERM, sending SIGKILL"
      kill -KILL "$p" 2>/dev/null || true
      td_wait_gone 5 "$p" || true
    fi
  fi
  rm -f "$f"
}

# td_teardown ROOT NS: stop everything a domain-up run started for ROOT and delete netns NS.
# Idempotent; never fails.
td_teardown() {
  local root=$1 ns=$2 pids p
  if [ -d "$root" ]; then
    td_stop_pid "$root/kdc-delay.pid" kdc-delay-proxy.py
    td_stop_pid "$root/apache.pid" "$root/apache/httpd.conf"
    td_stop_pid "$root/samba.pid" "$root/dc/etc/smb.conf"
  fi
  if [ -n "$ns" ] && ip netns list 2>/dev/null | awk '{print $1}' | grep -qxF -- "$ns"; then
    # anything still running inside the namespace (test processes, apache/cgid children) was started
    # for this domain: stop it by pid before deleting the namespace
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    if [ -n "$pids" ]; then
      for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
      # shellcheck disable=SC2086
      if ! td_wait_gone 5 $pids; then
        for p in $pids; do td_pid_alive "$p" && kill -KILL "$p" 2>/dev/null || true; done
        # shellcheck disable=SC2086
        td_wait_gone 5 $pids || true
      fi
    fi
    ip netns del "$ns" 2>/dev/null || true
  fi
  if [ -n "$ns" ] && [[ "$ns" != */* ]] && [ "$ns" != . ] && [ "$ns" != .. ]; then
    rm -rf "/etc/netns/$ns"
  fi
  return 0
}
