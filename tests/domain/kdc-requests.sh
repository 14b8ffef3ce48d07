#!/bin/bash
# Counts the KDC exchanges the test domain's Samba KDC has handled, from its log ($ROOT/dc/log/samba.log,
# written with '-d "1 kerberos:3"' by domain-up.sh).
# usage:  kdc-requests.sh ROOT            counts since samba started
#         kdc-requests.sh ROOT mark       prints the current log offset (an opaque number)
#         kdc-requests.sh ROOT OFFSET     counts only what was logged after 'mark' printed OFFSET
# output: one line
#   as_req=N tgs_req=N s4u2self=N s4u2proxy=N as_ok=N as_preauth_required=N as_err=N tgs_ok=N tgs_err=N s4u2self_ok=N s4u2proxy_ok=N
# Every request, successful or not, produces exactly one Heimdal summary line
#   "Kerberos: AS-REQ|TGS-REQ <SUCCESS|ERR_...> <client addr> ...", which is what as_req/tgs_req count.
# Each TGS-REQ is classified from its request line "Kerberos: TGS-REQ <requester> from <addr> for <server> [flags]":
#   s4u2proxy = flag cname-in-addl-tkt (the S4U2Proxy / constrained-delegation request),
#   s4u2self  = requester asks a ticket to itself without enc-tkt-in-skey (PA-FOR-USER), or the KDC logged
#               "s4u2self <requester> impersonating <user>". s4u2self/s4u2proxy are subsets of tgs_req.
# NB: 'kvno -U' sends one unauthenticated AS-REQ for the impersonated user before S4U2Self (MIT client-realm
# discovery); it shows up as as_req + as_preauth_required. gss_acquire_cred_impersonate_name does not.
set -euo pipefail
ROOT=${1:-${ROOT:-}}
[ -n "$ROOT" ] || { echo "usage: $0 ROOT [mark|OFFSET]" >&2; exit 2; }
LOG=$ROOT/dc/log/samba.log
[ -f "$LOG" ] || { echo "kdc-requests: no $LOG (is the domain up?)" >&2; exit 1; }
arg=${2:-0}
if [ "$arg" = mark ]; then stat -c %s "$LOG"; exit 0; fi
[[ "$arg" =~ ^[0-9]+$ ]] || { echo "kdc-requests: OFFSET must be a number from 'mark'" >&2; exit 2; }
tail -c +$((arg + 1)) "$LOG" | LC_ALL=C awk '
  $1 == "Kerberos:" && $2 == "TGS-REQ" && $4 == "from" && $6 == "for" {
    last = $5
    if (index($0, "cname-in-addl-tkt")) kind[last] = "proxy"
    else if ($3 == $7 && !index($0, "enc-tkt-in-skey")) kind[last] = "self"
    else kind[last] = "plain"
    next
  }
  $1 == "Kerberos:" && $2 == "s4u2self" && $4 == "impersonating" { if (last != "" && kind[last] != "proxy") kind[last] = "self"; next }
  $1 == "Kerberos:" && ($2 == "AS-REQ" || $2 == "TGS-REQ") && $3 ~ /^(SUCCESS|[A-Z0-9_]+)$/ && $4 ~ /^(ipv4|ipv6|unix):/ {
    ok = ($3 == "SUCCESS")
    if ($2 == "AS-REQ") {
      as++; if (ok) as_ok++; else if ($3 == "ERR_PREAUTH_REQUIRED") as_pre++; else as_err++
    } else {
      tgs++; if (ok) tgs_ok++; else tgs_err++
      k = kind[$4]; delete kind[$4]
      if (k == "self")  { self++;  if (ok) self_ok++ }
      if (k == "proxy") { proxy++; if (ok) proxy_ok++ }
    }
  }
  END {
    printf "as_req=%d tgs_req=%d s4u2self=%d s4u2proxy=%d as_ok=%d as_preauth_required=%d as_err=%d tgs_ok=%d tgs_err=%d s4u2self_ok=%d s4u2proxy_ok=%d\n",
      as, tgs, self, proxy, as_ok, as_pre, as_err, tgs_ok, tgs_err, self_ok, proxy_ok
  }'
