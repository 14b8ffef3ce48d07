#!/bin/bash
# Brings up the Orthrus throwaway AD test domain CORP.TEST inside a private network namespace:
#   Samba AD DC (KDC + LDAP/LDAPS) on dc1.corp.test/127.0.0.10, an openssl PKI under $ROOT/pki, and an
#   "Exchange" stand-in (Apache + mod_auth_gssapi, HTTPS) on exchange.corp.test/127.0.0.20:443 and :8443 (mTLS).
# Everything lives on loopback addresses inside the netns; the netns has no other interface or route.
#
# usage (as root):  ROOT=/scratch/dir [NS=orthrus-td-xyz] [SNAPSHOT=/cache/corp-test.tgz] domain-up.sh
#             or:   domain-up.sh ROOT [NS]
#   ROOT      scratch directory (required). Must be absent, empty, or a previous test-domain ROOT.
#   NS        netns name (default orthrus-td-$$). Recorded in $ROOT/ns.
#   SNAPSHOT  optional tarball cache of the provisioned domain + PKI + keytabs. Reused only if its key
#             (sha256 of domain-up.sh + accounts.py + lib.sh + the samba package version) matches; otherwise
#             it is rebuilt and replaced.
# Output: $ROOT/env.sh (source it), $ROOT/krb5.conf, keytabs, $ROOT/pki/*, logs; pids in $ROOT/*.pid.
# On any failure everything started so far is torn down again (logs stay in $ROOT).
set -euo pipefail
umask 022
HERE=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

die() { echo "domain-up: ERROR: $*" >&2; exit 1; }

ROOT=${ROOT:-${1:-}}
NS=${NS:-${2:-orthrus-td-$$}}
SNAPSHOT=${SNAPSHOT:-}
[ -n "$ROOT" ] || die "ROOT is required (ROOT=/scratch/dir $0)"
[ "$(id -u)" = 0 ] || die "must run as root (network namespace, Samba AD DC, ports < 1024)"
ROOT=$(realpath -m -- "$ROOT")
[[ "$ROOT" =~ ^/[A-Za-z0-9_./+-]+$ ]] || die "ROOT must be an absolute path of [A-Za-z0-9_./+-] (smb.conf and sed safe): $ROOT"
case "$ROOT" in /|/tmp|/var|/var/tmp|/root|/home|/work|/usr|/etc|/opt|/srv) die "refusing ROOT=$ROOT" ;; esac
[[ "$NS" =~ ^[A-Za-z0-9_.-]{1,64}$ && "$NS" != . && "$NS" != .. ]] || die "bad NS name: $NS"
if [ -n "$SNAPSHOT" ]; then
  SNAPSHOT=$(realpath -m -- "$SNAPSHOT")
  case "$SNAPSHOT" in "$ROOT"/*) die "SNAPSHOT must live outside ROOT (ROOT is wiped)";; esac
fi
for t in ip samba samba-tool samba_spnupdate apache2 openssl setsid setpriv tar dpkg-query; do
  command -v "$t" >/dev/null || die "missing tool '$t' (run deploy/install-deps.sh)"
done
[ -x /usr/bin/python3 ] || die "missing /usr/bin/python3"
for m in mod_auth_gssapi mod_ssl mod_cgid; do
  [ -f /usr/lib/apache2/modules/$m.so ] || die "missing apache module $m (run deploy/install-deps.sh)"
done

T0=$(td_now)
X=(ip netns exec "$NS")
DAEMON_ENV=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8)
D=$ROOT/dc
P=$ROOT/pki
A=$ROOT/apache

# ---------------------------------------------------------------------------------------------- cleanup
T=$(td_now)
OLD_NS=$(td_ns_of "$ROOT")
[ -n "$OLD_NS" ] && td_teardown "$ROOT" "$OLD_NS"
td_teardown "$ROOT" "$NS"
if [ -e "$ROOT" ]; then
  [ -d "$ROOT" ] || die "ROOT exists and is not a directory: $ROOT"
  if [ -n "$(ls -A "$ROOT")" ] && [ ! -f "$ROOT/$TD_MARKER" ]; then
    die "ROOT $ROOT is not empty and was not created by domain-up.sh (no $TD_MARKER); refusing to wipe it"
  fi
  find "$ROOT" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
fi
mkdir -p "$ROOT" "$P" "$A"/{run,log,cgi,htdocs}
chmod 755 "$ROOT"
echo "domain-up.sh $(date -u +%FT%TZ)" > "$ROOT/$TD_MARKER"
echo "$NS" > "$ROOT/ns"
td_lap cleanup "$T"

UP_OK=0
on_exit() {
  local rc=$?
  if [ "$UP_OK" != 1 ]; then
    echo "domain-up: bring-up FAILED (rc=$rc); tearing down what was started (logs kept in $ROOT)" >&2
    td_teardown "$ROOT" "$NS"
  fi
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# show the tail of a log on failure
fail_log() { echo "---- $1 (last ${2:-30} lines)" >&2; tail -n "${2:-30}" "$1" >&2 2>/dev/null || true; exit 1; }

# --------------------------------------------------------------------------------------------- netns
T=$(td_now)
ip netns add "$NS"
mkdir -p "/etc/netns/$NS"
# 'ip netns exec' bind-mounts /etc/netns/$NS/* over /etc/* for every process it starts:
# private hosts file, no usable DNS server (lookups fail fast), private default krb5.conf.
cat > "/etc/netns/$NS/hosts" <<EOF
127.0.0.1 localhost
::1 localhost
$TD_DC_IP dc1.corp.test dc1 corp.test
$TD_EXCHANGE_IP exchange.corp.test exchange
$TD_EDGE_IP edge.corp.test edge
$TD_BROKER_IP broker.corp.test broker
EOF
printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' > "/etc/netns/$NS/resolv.conf"
"${X[@]}" ip link set lo up
for ip in "$TD_DC_IP" "$TD_EXCHANGE_IP" "$TD_EDGE_IP" "$TD_BROKER_IP"; do
  "${X[@]}" ip addr add "$ip/8" dev lo   # Samba's 'interfaces =' needs a configured address
done
td_lap netns "$T"

# ----------------------------------------------------------------------------------------------- krb5.conf
cat > "$ROOT/krb5.conf" <<EOF
[libdefaults]
    default_realm = $TD_REALM
    dns_lookup_realm = false
    dns_lookup_kdc = false
    dns_uri_lookup = false
    rdns = false
    dns_canonicalize_hostname = false
    forwardable = true
    udp_preference_limit = 0

[realms]
    $TD_REALM = {
        kdc = $TD_DC_IP
        admin_server = $TD_DC_IP
    }

[domain_realm]
    .$TD_DNS_DOMAIN = $TD_REALM
    $TD_DNS_DOMAIN = $TD_REALM
EOF
# also the netns-private default /etc/krb5.conf (only possible if the host has one to bind over)
[ -e /etc/krb5.conf ] && cp "$ROOT/krb5.conf" "/etc/netns/$NS/krb5.conf"

# ---------------------------------------------------------------------------------------------- PKI
PKI_NAMES=(ca dc1 exchange edge broker broker-bridge alice bob carol dave shared nobody alice-wrong-eku rogue-ca alice-rogue carol-rogue)
# leaf NAME SUBJECT SERIAL CA EXT...  -> $P/NAME.pem from $P/NAME.key (825 days)
leaf() {
  local name=$1 subj=$2 serial=$3 ca=$4; shift 4
  openssl req -new -key "$P/$name.key" -out "$P/$name.csr" -subj "$subj" 2>/dev/null
  openssl x509 -req -in "$P/$name.csr" -CA "$P/$ca.pem" -CAkey "$P/$ca.key" -set_serial "$serial" -days 825 \
    -out "$P/$name.pem" -extfile <(printf '%s\n' "basicConstraints=critical,CA:FALSE" \
      "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid" "$@") 2>/dev/null
  rm -f "$P/$name.csr"
}
mkca() {
  openssl req -x509 -key "$P/$1.key" -out "$P/$1.pem" -days 3650 -subj "$2" \
    -set_serial "$3" -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash" 2>/dev/null
}
make_pki() {
  local SRV="keyUsage=critical,digitalSignature,keyEncipherment" CLI="keyUsage=critical,digitalSignature,keyEncipherment"
  local UPN=1.3.6.1.4.1.311.20.2.3
  # RSA 2048 keys, generated in parallel (key generation dominates the PKI time)
  printf '%s\n' "${PKI_NAMES[@]}" | xargs -P "$(nproc)" -I{} \
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$P/{}.key" 2>/dev/null
  mkca ca "/DC=test/DC=corp/CN=Corp CA" 0x01
  leaf dc1       "/CN=dc1.corp.test"       0x2001 ca "$SRV" "extendedKeyUsage=serverAuth" "subjectAltName=DNS:dc1.corp.test,DNS:corp.test,IP:$TD_DC_IP"
  leaf exchange  "/CN=exchange.corp.test"  0x1001 ca "$SRV" "extendedKeyUsage=serverAuth" "subjectAltName=DNS:exchange.corp.test"
  leaf edge      "/CN=edge.corp.test"      0x3001 ca "$SRV" "extendedKeyUsage=serverAuth" "subjectAltName=DNS:edge.corp.test,IP:$TD_EDGE_IP"
  leaf broker    "/CN=broker.corp.test"    0x4001 ca "$SRV" "extendedKeyUsage=serverAuth" "subjectAltName=DNS:broker.corp.test,IP:$TD_BROKER_IP"
  leaf broker-bridge "/CN=broker.corp.test" 0x4002 ca "$CLI" "extendedKeyUsage=clientAuth" "subjectAltName=DNS:broker.corp.test"
  # device (client) certificates
  leaf alice  "/CN=alice"  0x0a1b2c     ca "$CLI" "extendedKeyUsage=clientAuth" "subjectAltName=otherName:$UPN;UTF8:alice@corp.test,email:alice@corp.test"
  leaf bob    "/CN=bob"    0x0b0001     ca "$CLI" "extendedKeyUsage=clientAuth" "subjectAltName=otherName:$UPN;UTF8:bob@corp.test"
  leaf carol  "/CN=carol"  0x0a1b2c3d4e ca "$CLI" "extendedKeyUsage=clientAuth"
  leaf dave   "/CN=dave"   0x0d0001     ca "$CLI" "extendedKeyUsage=clientAuth" "subjectAltName=otherName:$UPN;UTF8:dave@corp.test"
  leaf shared "/CN=shared" 0x5e0001     ca "$CLI" "extendedKeyUsage=clientAuth" "subjectAltName=email:shared@corp.test"
  leaf nobody "/CN=nobody" 0x0e0001     ca "$CLI" "extendedKeyUsage=clientAuth" "subjectAltName=otherName:$UPN;UTF8:nobody@corp.test"
  # negative fixtures
  leaf alice-wrong-eku "/CN=alice" 0x0f0001 ca "$CLI" "extendedKeyUsage=serverAuth" "subjectAltName=otherName:$UPN;UTF8:alice@corp.test,email:alice@corp.test"
  mkca rogue-ca "/DC=test/DC=corp/CN=Corp CA" 0x01     # SAME subject DN as the real CA, different key
  leaf alice-rogue "/CN=alice" 0x0a1b2c     rogue-ca "$CLI" "extendedKeyUsage=clientAuth" "subjectAltName=otherName:$UPN;UTF8:alice@corp.test,email:alice@corp.test"
  leaf carol-rogue "/CN=carol" 0x0a1b2c3d4e rogue-ca "$CLI" "extendedKeyUsage=clientAuth"
  chmod 600 "$P"/*.key   # samba refuses a tls keyfile that is not 0600
  chmod 644 "$P"/*.pem
  cat > "$P/README" <<'EOF'
Orthrus test-domain PKI (generated by tests/domain/domain-up.sh with the openssl CLI; RSA 2048, SHA-256).
Every NAME has NAME.pem (certificate, PEM) and NAME.key (unencrypted private key, PEM, mode 0600).
AD-form issuer string of the real CA: "DC=test,DC=corp,CN=Corp CA".

file                 subject                 serial        EKU          SAN / notes
ca                   DC=test,DC=corp,CN=Corp CA  01        (CA)         trust anchor for everything below; 3650 days
dc1                  CN=dc1.corp.test        2001          serverAuth   DNS:dc1.corp.test DNS:corp.test IP:127.0.0.10 (Samba LDAPS/StartTLS)
exchange             CN=exchange.corp.test   1001          serverAuth   DNS:exchange.corp.test (backend :443 and :8443)
edge                 CN=edge.corp.test       3001          serverAuth   DNS:edge.corp.test IP:127.0.0.30 (for the Orthrus edge listener)
broker               CN=broker.corp.test     4001          serverAuth   DNS:broker.corp.test IP:127.0.0.40 (for the Orthrus broker listener)
broker-bridge        CN=broker.corp.test     4002          clientAuth   DNS:broker.corp.test (broker's bridging client cert; backend :8443 accepts it)
alice                CN=alice                0a1b2c        clientAuth   UPN alice@corp.test + email alice@corp.test   -> alice (by UPN)
bob                  CN=bob                  0b0001        clientAuth   UPN bob@corp.test                             -> bob (DISABLED)
carol                CN=carol                0a1b2c3d4e    clientAuth   no SAN at all; maps only via altSecurityIdentities
                                                                        X509:<I>DC=test,DC=corp,CN=Corp CA<SR>4e3d2c1b0a (serial bytes reversed)
                                                                        X509:<SKI><hex SKI of carol.pem>  (see ../carol-altsecid.txt)
dave                 CN=dave                 0d0001        clientAuth   UPN dave@corp.test                            -> dave (NOT_DELEGATED)
shared               CN=shared               5e0001        clientAuth   email shared@corp.test only, no UPN           -> erin AND frank (ambiguous)
nobody               CN=nobody               0e0001        clientAuth   UPN nobody@corp.test                          -> no such account
alice-wrong-eku      CN=alice                0f0001        serverAuth   same SANs as alice, but no clientAuth EKU
rogue-ca             DC=test,DC=corp,CN=Corp CA  01        (CA)         NOT trusted: same subject DN as ca, different key
alice-rogue          CN=alice                0a1b2c        clientAuth   same issuer DN/serial/SANs as alice, signed by rogue-ca
carol-rogue          CN=carol                0a1b2c3d4e    clientAuth   same issuer DN/serial as carol, signed by rogue-ca
EOF
}

# --------------------------------------------------------------------------- snapshot or provision
snapshot_key() {
  { sha256sum "$HERE/domain-up.sh" "$HERE/accounts.py" "$HERE/lib.sh" | awk '{print $1}'
    dpkg-query -W -f='${Version}\n' samba; } | sha256sum | cut -c1-64
}
KEY=$(snapshot_key)
SNAP_FILES=(snapshot.key snapshot.root dc pki broker.keytab exchange.keytab other.keytab rc4.keytab carol-altsecid.txt provision.log accounts.log)
restored=0
if [ -n "$SNAPSHOT" ]; then
  mkdir -p "$(dirname "$SNAPSHOT")"
  exec 9>"$SNAPSHOT.lock"   # serialises concurrent bring-ups that share one snapshot
  flock 9
  if [ -f "$SNAPSHOT" ]; then
    T=$(td_now)
    skey=$(tar -xzOf "$SNAPSHOT" --occurrence=1 snapshot.key 2>/dev/null || true)
    if [ "$skey" != "$KEY" ]; then
      td_log "snapshot $SNAPSHOT is stale (key ${skey:0:12}.. != ${KEY:0:12}..); rebuilding it"
    elif ! tar -xzOf "$SNAPSHOT" --occurrence=1 pki/dc1.pem 2>/dev/null | openssl x509 -noout -checkend 2592000 >/dev/null 2>&1; then
      td_log "snapshot $SNAPSHOT has certificates expiring within 30 days; rebuilding it"
    else
      tar --xattrs --xattrs-include='*' -xzf "$SNAPSHOT" -C "$ROOT"
      OLD=$(cat "$ROOT/snapshot.root")
      [ "$OLD" != "$ROOT" ] && sed -i "s#$OLD/#$ROOT/#g" "$D/etc/smb.conf"   # the only file with absolute paths
      restored=1
      td_lap restore-snapshot "$T"
    fi
  fi
fi

if [ $restored = 0 ]; then
  T=$(td_now)
  make_pki
  td_lap pki "$T"

  T=$(td_now)
  mkdir -p "$D"
  # -s /dev/null keeps the host's /etc/samba/smb.conf (shares, log paths) out of the new config
  "${X[@]}" "${DAEMON_ENV[@]}" samba-tool domain provision -s /dev/null --targetdir="$D" \
    --realm="$TD_REALM" --domain="$TD_NETBIOS" --server-role=dc --dns-backend=NONE \
    --adminpass='Adm1nPass!2024' --host-name=dc1 --host-ip="$TD_DC_IP" \
    --option="netbios name = DC1" --option="interfaces = $TD_DC_IP" --option="bind interfaces only = yes" \
    --option="server services = ldap cldap kdc" --option="dns forwarder = " \
    --option="log file = $D/log/log.%m" --option="pid directory = $D/run" \
    --option="ncalrpc dir = $D/run/ncalrpc" --option="winbindd socket directory = $D/run/winbindd" \
    --option="ntp signd socket directory = $D/run/ntp_signd" \
    --option="tls enabled = yes" --option="tls keyfile = $P/dc1.key" \
    --option="tls certfile = $P/dc1.pem" --option="tls cafile = $P/ca.pem" \
    > "$ROOT/provision.log" 2>&1 || fail_log "$ROOT/provision.log"
  mkdir -p "$D/cache" "$D/log" "$D/run"
  td_lap provision "$T"

  T=$(td_now)
  carol_serial=$(openssl x509 -in "$P/carol.pem" -noout -serial | sed 's/^serial=//')
  carol_ski=$(openssl x509 -in "$P/carol.pem" -noout -ext subjectKeyIdentifier | sed -n '2s/[[:space:]]//gp')
  [ -n "$carol_serial" ] && [ -n "$carol_ski" ] || die "cannot read serial/SKI of $P/carol.pem"
  "${X[@]}" "${DAEMON_ENV[@]}" /usr/bin/python3 "$HERE/accounts.py" --smbconf "$D/etc/smb.conf" --outdir "$ROOT" \
    --carol-serial "$carol_serial" --carol-ski "$carol_ski" > "$ROOT/accounts.log" 2>&1 || fail_log "$ROOT/accounts.log"
  # The DC's own ldap/ GC/ ... SPNs are normally added at runtime by samba_spnupdate from the 'dnsupdate'
  # service, which is not running; without them LDAP SASL/GSSAPI fails ("Server not found in Kerberos database").
  "${X[@]}" "${DAEMON_ENV[@]}" samba_spnupdate -s "$D/etc/smb.conf" >> "$ROOT/accounts.log" 2>&1 || fail_log "$ROOT/accounts.log"
  td_lap accounts+keytabs+spns "$T"

  if [ -n "$SNAPSHOT" ]; then
    T=$(td_now)
    echo "$KEY" > "$ROOT/snapshot.key"
    echo "$ROOT" > "$ROOT/snapshot.root"
    tar --xattrs --xattrs-include='*' --exclude='*/ldapi' -czf "$SNAPSHOT.tmp.$$" -C "$ROOT" "${SNAP_FILES[@]}"
    mv -f "$SNAPSHOT.tmp.$$" "$SNAPSHOT"
    td_lap save-snapshot "$T"
  fi
fi
if [ -n "$SNAPSHOT" ]; then flock -u 9; exec 9>&-; fi   # never let a daemon inherit the lock fd

# ------------------------------------------------------------------------------------------ samba
# single process, only ldap+cldap+kdc. 'kerberos:3' logs one summary line per AS-REQ/TGS-REQ plus the
# S4U2Self/S4U2Proxy details that kdc-requests.sh counts.
T=$(td_now)
SAMBA_LOG=$D/log/samba.log
setsid "${DAEMON_ENV[@]}" ip netns exec "$NS" samba -s "$D/etc/smb.conf" -M single -F --no-process-group \
  --debug-stdout -d '1 kerberos:3' </dev/null >>"$SAMBA_LOG" 2>&1 &
SAMBA_PID=$!
echo "$SAMBA_PID" > "$ROOT/samba.pid"
# wait_tcp PID TIMEOUT_S LOG HOST:PORT...
wait_tcp() {
  local pid=$1 t=$2 log=$3 i hp ok; shift 3
  for ((i = 0; i < t * 20; i++)); do
    td_pid_alive "$pid" || { echo "domain-up: process $pid died during start-up" >&2; fail_log "$log"; }
    ok=1
    for hp in "$@"; do
      "${X[@]}" bash -c "exec 3<>/dev/tcp/${hp%:*}/${hp#*:}" 2>/dev/null || { ok=0; break; }
    done
    [ $ok = 1 ] && return 0
    sleep 0.05
  done
  echo "domain-up: timeout waiting for $* " >&2; fail_log "$log"
}
wait_tcp "$SAMBA_PID" 90 "$SAMBA_LOG" "$TD_DC_IP:88" "$TD_DC_IP:389" "$TD_DC_IP:636"
[ "$(cat "/proc/$SAMBA_PID/comm")" = samba ] || die "pid $SAMBA_PID is not samba ($(cat "/proc/$SAMBA_PID/comm"))"
td_lap samba-start "$T"

# ------------------------------------------------------------------------------------------ apache
T=$(td_now)
install -m 640 -o root -g www-data "$ROOT/exchange.keytab" "$A/exchange.keytab"
# :9443 verifies tickets with the keys of a DIFFERENT service (HTTP/other.corp.test): a ticket for
# HTTP/exchange.corp.test cannot be decrypted there, as after a keytab/SPN mix-up on a real Exchange.
install -m 640 -o root -g www-data "$ROOT/other.keytab" "$A/other.keytab"
install -d -m 700 -o www-data -g www-data "$A/rcache"   # private replay cache (workers run as www-data)
cat > "$A/cgi/backend.cgi" <<'CGI'
#!/usr/bin/python3 -I
# Exchange stand-in: reports what the backend saw. Test knobs in the query string:
#   td_status=NNN  answer with that HTTP status;  td_sleep_ms=N  delay the answer;
#   td_bytes=N     append N filler bytes ('x', streamed in 64 KiB chunks) after the report.
import hashlib, os, sys, time, urllib.parse
e = os.environ
body = sys.stdin.buffer.read()
q = urllib.parse.parse_qs(e.get("QUERY_STRING", ""))
def qi(k, d):
    try: return int(q.get(k, [d])[0])
    except ValueError: return d
time.sleep(qi("td_sleep_ms", 0) / 1000.0)
lines = ["%s=%s" % (k, e.get(k, "")) for k in
         ("REMOTE_USER", "AUTH_TYPE", "REQUEST_METHOD", "REQUEST_URI", "SSL_CLIENT_S_DN")]
lines += ["BODY_LENGTH=%d" % len(body), "BODY_SHA256=%s" % hashlib.sha256(body).hexdigest()]
lines += ["%s=%s" % (k, e.get(k, "")) for k in
          ("QUERY_STRING", "CONTENT_TYPE", "GSS_NAME", "SERVER_NAME", "SERVER_PORT", "SSL_CLIENT_I_DN",
           "SSL_CLIENT_M_SERIAL", "SSL_PROTOCOL")]
lines += sorted("%s=%s" % (k, v) for k, v in e.items() if k.startswith("HTTP_"))
out = sys.stdout.buffer
out.write(("Status: %d\r\nContent-Type: text/plain; charset=utf-8\r\nX-TD-Remote-User: %s\r\n\r\n"
           % (qi("td_status", 200), e.get("REMOTE_USER", ""))).encode())
out.write(("\n".join(lines) + "\n").encode("utf-8", "replace"))
n = qi("td_bytes", 0)
while n > 0:
    c = min(n, 65536); out.write(b"x" * c); out.flush(); n -= c
CGI
chmod 755 "$A/cgi/backend.cgi"
cat > "$A/backend-common.conf" <<EOF
  # /Microsoft-Server-ActiveSync and /owa, any subpath and query, case-insensitive (like IIS)
  ScriptAliasMatch "(?i)^/(Microsoft-Server-ActiveSync|owa)(/.*)?\$" "$A/cgi/backend.cgi"
  # /bench/kcd: static files behind the same Kerberos check, /bench/open: without it, for benchmarks
  # that measure the gateway and Kerberos rather than a CGI fork per request.
  <LocationMatch "(?i)^/(Microsoft-Server-ActiveSync|owa|bench/kcd)(/|\$)">
    AuthType GSSAPI
    AuthName "CORP.TEST Exchange stand-in"
    GssapiCredStore keytab:$A/exchange.keytab
    GssapiSSLonly On
    GssapiBasicAuth Off
    GssapiLocalName Off
    Require valid-user
  </LocationMatch>
EOF
mkdir -p "$A/htdocs/bench/kcd" "$A/htdocs/bench/open"
for d in kcd open; do
  head -c 1024 /dev/zero | tr '\0' x > "$A/htdocs/bench/$d/1k"
  head -c 65536 /dev/zero | tr '\0' x > "$A/htdocs/bench/$d/64k"
done
sed "s#keytab:$A/exchange.keytab#keytab:$A/other.keytab#" "$A/backend-common.conf" > "$A/backend-wrongkey.conf"
cat > "$A/httpd.conf" <<EOF
# generated by tests/domain/domain-up.sh
ServerRoot $A
ServerName exchange.corp.test
PidFile $A/run/httpd.pid
Mutex file:$A/run default
DefaultRuntimeDir $A/run
ScriptSock $A/run/cgisock
ErrorLog $A/log/error.log
LogLevel warn auth_gssapi:debug ssl:info
LogFormat "%h:%{remote}p %v:%p \"%r\" %>s %B user=\"%u\" ssl_dn=\"%{SSL_CLIENT_S_DN}x\" us=%D" td
CustomLog $A/log/access.log td
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule authn_core_module /usr/lib/apache2/modules/mod_authn_core.so
LoadModule authz_user_module /usr/lib/apache2/modules/mod_authz_user.so
LoadModule alias_module /usr/lib/apache2/modules/mod_alias.so
LoadModule cgid_module /usr/lib/apache2/modules/mod_cgid.so
LoadModule ssl_module /usr/lib/apache2/modules/mod_ssl.so
LoadModule socache_shmcb_module /usr/lib/apache2/modules/mod_socache_shmcb.so
LoadModule auth_gssapi_module /usr/lib/apache2/modules/mod_auth_gssapi.so
User www-data
Group www-data
TraceEnable off
Listen $TD_EXCHANGE_IP:443 https
Listen $TD_EXCHANGE_IP:8443 https
Listen $TD_EXCHANGE_IP:9443 https
SSLSessionCache shmcb:$A/run/ssl_scache(512000)
SSLProtocol all -SSLv3 -TLSv1 -TLSv1.1
<Directory />
  Require all denied
</Directory>
DocumentRoot $A/htdocs
<Directory $A/htdocs>
  Require all granted
</Directory>
<Directory $A/cgi>
  Require all granted
</Directory>

# exchange.corp.test:443 - server-authenticated TLS + Kerberos (SPNEGO)
<VirtualHost $TD_EXCHANGE_IP:443>
  ServerName exchange.corp.test
  SSLEngine on
  SSLCertificateFile $P/exchange.pem
  SSLCertificateKeyFile $P/exchange.key
  SSLOptions +StdEnvVars
  Include $A/backend-common.conf
</VirtualHost>

# exchange.corp.test:8443 - the same, but a client certificate from Corp CA is REQUIRED (broker bridging cert)
<VirtualHost $TD_EXCHANGE_IP:8443>
  ServerName exchange.corp.test
  SSLEngine on
  SSLCertificateFile $P/exchange.pem
  SSLCertificateKeyFile $P/exchange.key
  SSLCACertificateFile $P/ca.pem
  SSLVerifyClient require
  SSLVerifyDepth 2
  SSLOptions +StdEnvVars
  Include $A/backend-common.conf
</VirtualHost>

# exchange.corp.test:9443 - like :443, but its keytab holds the wrong service's keys (tickets rejected)
<VirtualHost $TD_EXCHANGE_IP:9443>
  ServerName exchange.corp.test
  SSLEngine on
  SSLCertificateFile $P/exchange.pem
  SSLCertificateKeyFile $P/exchange.key
  SSLOptions +StdEnvVars
  Include $A/backend-wrongkey.conf
</VirtualHost>
EOF
# the workers and the cgid daemon run as www-data: they need the keytab and the CGI, incl. every parent dir
for f in "$A/exchange.keytab:-r" "$A/other.keytab:-r" "$A/cgi/backend.cgi:-x"; do
  setpriv --reuid=www-data --regid=www-data --init-groups test "${f##*:}" "${f%:*}" ||
    die "www-data cannot access ${f%:*}: every directory above ROOT must be world-traversable (chmod o+x)"
done
APACHE_ENV=("${DAEMON_ENV[@]}" KRB5_CONFIG="$ROOT/krb5.conf" KRB5RCACHEDIR="$A/rcache")
if ! "${X[@]}" "${APACHE_ENV[@]}" apache2 -f "$A/httpd.conf" -t > "$A/log/configtest.log" 2>&1; then
  echo "domain-up: apache2 -t rejected $A/httpd.conf:" >&2
  cat "$A/log/configtest.log" >&2
  exit 1
fi
setsid "${APACHE_ENV[@]}" ip netns exec "$NS" apache2 -f "$A/httpd.conf" -DFOREGROUND \
  </dev/null >>"$A/log/stdout.log" 2>&1 &
APACHE_PID=$!
echo "$APACHE_PID" > "$ROOT/apache.pid"
wait_tcp "$APACHE_PID" 30 "$A/log/error.log" "$TD_EXCHANGE_IP:443" "$TD_EXCHANGE_IP:8443" "$TD_EXCHANGE_IP:9443"
[ "$(cat "/proc/$APACHE_PID/comm")" = apache2 ] || die "pid $APACHE_PID is not apache2"
td_lap apache-start "$T"

# ------------------------------------------------------------------------------------------- env.sh
{
  echo "# generated by tests/domain/domain-up.sh - source this file"
  v() { printf 'export %s=%q\n' "$1" "$2"; }
  v ROOT "$ROOT"; v NS "$NS"; v KRB5_CONFIG "$ROOT/krb5.conf"
  v TD_ROOT "$ROOT"; v TD_NS "$NS"; v TD_NETNS_EXEC "ip netns exec $NS"
  v TD_TOOLS "$HERE"
  v TD_REALM "$TD_REALM"; v TD_DNS_DOMAIN "$TD_DNS_DOMAIN"; v TD_NETBIOS "$TD_NETBIOS"; v TD_BASE_DN "$TD_BASE_DN"
  v TD_DC_HOST dc1.corp.test; v TD_DC_IP "$TD_DC_IP"
  v TD_LDAP_URI ldap://dc1.corp.test; v TD_LDAPS_URI ldaps://dc1.corp.test; v TD_GC_URI ldap://dc1.corp.test:3268
  v TD_EXCHANGE_HOST exchange.corp.test; v TD_EXCHANGE_IP "$TD_EXCHANGE_IP"
  v TD_EDGE_HOST edge.corp.test; v TD_EDGE_IP "$TD_EDGE_IP"
  v TD_BROKER_HOST broker.corp.test; v TD_BROKER_IP "$TD_BROKER_IP"
  v TD_BACKEND_URL https://exchange.corp.test
  v TD_BACKEND_EAS_URL https://exchange.corp.test/Microsoft-Server-ActiveSync
  v TD_BACKEND_OWA_URL https://exchange.corp.test/owa
  v TD_BACKEND_MTLS_URL https://exchange.corp.test:8443
  v TD_BACKEND_WRONG_KEYTAB_URL https://exchange.corp.test:9443
  v TD_BACKEND_SPN HTTP/exchange.corp.test; v TD_BACKEND_GSS_NAME HTTP@exchange.corp.test
  v TD_BROKER_PRINCIPAL svc-broker@CORP.TEST; v TD_BROKER_SPN HTTP/broker.corp.test
  v TD_BROKER_KEYTAB "$ROOT/broker.keytab"; v TD_EXCHANGE_KEYTAB "$ROOT/exchange.keytab"
  v TD_OTHER_KEYTAB "$ROOT/other.keytab"; v TD_RC4_KEYTAB "$ROOT/rc4.keytab"
  v TD_OTHER_SPN HTTP/other.corp.test; v TD_RC4_SPN HTTP/rc4.corp.test
  v TD_PKI "$P"; v TD_CA "$P/ca.pem"; v TD_CA_KEY "$P/ca.key"
  for c in alice bob carol dave shared nobody broker-bridge exchange edge broker dc1 alice-wrong-eku alice-rogue carol-rogue rogue-ca; do
    n=$(echo "$c" | tr 'a-z-' 'A-Z_')
    v "TD_CERT_$n" "$P/$c.pem"; v "TD_KEY_$n" "$P/$c.key"
  done
  v TD_CAROL_ALTSECID_ISSUER_SERIAL "$(sed -n 1p "$ROOT/carol-altsecid.txt")"
  v TD_CAROL_ALTSECID_SKI "$(sed -n 2p "$ROOT/carol-altsecid.txt")"
  v TD_SAMBA_LOG "$SAMBA_LOG"; v TD_BACKEND_ERROR_LOG "$A/log/error.log"; v TD_BACKEND_ACCESS_LOG "$A/log/access.log"
} > "$ROOT/env.sh"

UP_OK=1
td_lap TOTAL "$T0"
echo "domain-up: CORP.TEST is up in netns $NS (samba pid $SAMBA_PID, apache pid $APACHE_PID; $( [ $restored = 1 ] && echo "from snapshot" || echo "from scratch")); source $ROOT/env.sh"
