#!/bin/bash
# Degrades the test domain's KDC (127.0.0.10:88) WITHOUT stopping Samba, so LDAP keeps working.
# Rules live in an nftables table inside the domain's netns only (the host firewall is not touched).
# usage (as root):  kdc-control.sh ROOT block|reject|delay MS|unblock|status
#   block     silently DROP tcp+udp port 88 ("KDC unreachable": clients hang until their own timeout;
#             MIT kinit gives up after ~15 s with "Cannot contact any KDC for realm 'CORP.TEST'")
#   reject    answer port 88 with TCP RST / ICMP port-unreachable ("KDC down": clients fail at once)
#   delay MS  "KDC slow": every TCP connection to port 88 is DNATed to a relay (kdc-delay-proxy.py on
#             127.0.0.10:10088) that waits MS milliseconds before forwarding it; udp 88 is dropped so MIT
#             clients cannot bypass the delay over UDP. Every KDC exchange then takes >= MS.
#   unblock   back to normal (idempotent; also stops the relay)
#   status    prints open | blocked | rejected | delayed MS
# Other ports (LDAP 389/636, GC 3268/3269, kpasswd 464) are never affected.
set -euo pipefail
HERE=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
usage() { echo "usage: $0 ROOT block|reject|delay MS|unblock|status" >&2; exit 2; }
ROOT=${1:-}; ACTION=${2:-}
[ -n "$ROOT" ] && [ -n "$ACTION" ] || usage
ROOT=$(realpath -m -- "$ROOT")
NS=${NS:-$(td_ns_of "$ROOT")}
[ -n "$NS" ] || { echo "kdc-control: no netns recorded in $ROOT/ns" >&2; exit 1; }
command -v nft >/dev/null || { echo "kdc-control: nft missing (deploy/install-deps.sh installs nftables)" >&2; exit 1; }
X=(ip netns exec "$NS")
TABLE=orthrus_td_kdc
MARK=0x7464
RELAY_PORT=10088
has_table() { "${X[@]}" nft list table inet $TABLE >/dev/null 2>&1; }
clear_all() {
  td_stop_pid "$ROOT/kdc-delay.pid" kdc-delay-proxy.py
  rm -f "$ROOT/kdc-delay.ms"
  if has_table; then "${X[@]}" nft delete table inet $TABLE; fi
}
set_filter() {  # $1 = verdict for tcp 88, $2 = verdict for udp 88
  "${X[@]}" nft -f - <<NFT
table inet $TABLE {
  chain output {
    type filter hook output priority 0; policy accept;
    ip daddr $TD_DC_IP tcp dport 88 $1
    ip daddr $TD_DC_IP udp dport 88 $2
  }
}
NFT
}
case "$ACTION" in
  block)   clear_all; set_filter drop drop ;;
  reject)  clear_all; set_filter "reject with tcp reset" reject ;;
  delay)
    MS=${3:-}
    [[ "$MS" =~ ^[0-9]+$ ]] || usage
    clear_all
    setsid env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin ip netns exec "$NS" /usr/bin/python3 -I "$HERE/kdc-delay-proxy.py" \
      "$TD_DC_IP" $RELAY_PORT "$TD_DC_IP" 88 "$MS" $MARK </dev/null >>"$ROOT/kdc-delay.log" 2>&1 &
    echo $! > "$ROOT/kdc-delay.pid"
    for ((i = 0; i < 100; i++)); do
      "${X[@]}" bash -c "exec 3<>/dev/tcp/$TD_DC_IP/$RELAY_PORT" 2>/dev/null && break
      td_pid_alive "$(cat "$ROOT/kdc-delay.pid")" || { cat "$ROOT/kdc-delay.log" >&2; exit 1; }
      sleep 0.05
    done
    echo "$MS" > "$ROOT/kdc-delay.ms"
    "${X[@]}" nft -f - <<NFT
table inet $TABLE {
  chain nat_output {
    type nat hook output priority -100; policy accept;
    meta mark != $MARK ip daddr $TD_DC_IP tcp dport 88 dnat ip to $TD_DC_IP:$RELAY_PORT
  }
  chain output {
    type filter hook output priority 0; policy accept;
    ip daddr $TD_DC_IP udp dport 88 drop
  }
}
NFT
    ;;
  unblock) clear_all ;;
  status)
    if ! has_table; then echo open
    elif [ -f "$ROOT/kdc-delay.ms" ]; then echo "delayed $(cat "$ROOT/kdc-delay.ms")"
    elif "${X[@]}" nft list table inet $TABLE | grep -q reject; then echo rejected
    else echo blocked; fi ;;
  *) usage ;;
esac
