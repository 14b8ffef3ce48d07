"""Every publishing-rule authentication mode, with and without a certificate, with right, wrong and
missing passwords, against the real test domain: passwords are checked by the broker with an AS
exchange at the Samba KDC, then the backend (Apache + mod_auth_gssapi) sees the account through
constrained delegation.

Rules are told apart by host name (SNI + Host): cert.edge.test, either.edge.test, both.edge.test,
password.edge.test - one listener, one address. Runs inside the test domain's network namespace.
"""
import base64
import http.client
import os
import socket
import subprocess
import ssl
import tempfile

import pytest

import harness
from test_kcd import kdc_counts, kdc_mark

ENV = os.environ
pytestmark = pytest.mark.skipif("TD_ROOT" not in ENV, reason="needs the test domain (ctest fixture)")

PASSWORDS = {"alice": "AlicePass1!", "bob": "BobPass1!", "carol": "CarolPass1!", "erin": "ErinPass1!"}
MODES = {"cert": "certificate", "either": "certificate-or-password",
         "both": "certificate-and-password", "password": "password"}


def edge_rules():
    out = ""
    for host, mode in MODES.items():
        out += f'rule {{ name: "{host}" host: "{host}.edge.test" authentication: "{mode}" }}\n'
    # The edge lets passwords through here, the broker's rule for this host does not.
    out += 'rule { name: "lax" host: "lax.edge.test" authentication: "password" }\n'
    return out


def broker_rules():
    out = ""
    hosts = dict(MODES, lax="certificate")
    for host, mode in hosts.items():
        out += f"""rule {{
  name: "{host}"
  host: "{host}.edge.test"
  path_prefix: "/"
  authentication: "{mode}"
  backend_url: "{ENV.get('TD_BACKEND_URL', '')}"
  backend_ca_file: "{ENV.get('TD_CA', '')}"
  spn: "{ENV.get('TD_BACKEND_SPN', '')}"
  identity_headers: true
}}
"""
    return out


def broker_text(pki):
    return f"""
broker_id: "broker-auth"
listen {{
  address: "127.0.0.1:0"
  certificate_chain_file: "{pki}/broker.pem"
  private_key_file: "{pki}/broker.key"
  edge_ca_file: "{pki}/internal-ca.pem"
  allowed_edge: "edge-1"
}}
device_ca_file: "{ENV['TD_CA']}"
kerberos {{
  keytab_file: "{ENV['TD_BROKER_KEYTAB']}"
  principal: "{ENV['TD_BROKER_PRINCIPAL']}"
  kdc_timeout_ms: 3000
  password_cache_seconds: 60
}}
directory {{
  uri: "{ENV['TD_LDAP_URI']}"
  base_dn: "{ENV['TD_BASE_DN']}"
  mapping: "altsec-issuer-serial"
  mapping: "upn"
  allow_weak_mappings: true
}}
{broker_rules()}
log {{ output: "@LOG@" level: "debug" }}
threads: 2
"""


class AuthStack:
    def __init__(self, password_limits="account_failures: 50 address_failures: 500"):
        self.workdir = tempfile.mkdtemp(prefix="orthrus-auth-")
        self.pki = harness.make_pki(os.path.join(self.workdir, "pki"))
        self.broker = harness.Broker(self.workdir, self.pki, 0, config_text=broker_text(self.pki))
        self.edge = harness.Edge(self.workdir, self.pki, [self.broker.port], client_ca=ENV["TD_CA"],
                                 extra=edge_rules() + f"password_limits {{ {password_limits} }}\n")

    def ctx(self, cert):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(f"{self.pki}/device-ca.pem")
        if cert:
            key = cert.upper()
            ctx.load_cert_chain(ENV[f"TD_CERT_{key}"], ENV[f"TD_KEY_{key}"])
        return ctx

    def get(self, host, cert=None, user=None, password=None, sni=True, path="/Microsoft-Server-ActiveSync?Cmd=Sync",
            host_header=None):
        """(status, headers, body). A handshake the edge refuses raises ssl.SSLError / ConnectionError."""
        ctx = self.ctx(cert)
        name = f"{host}.edge.test"
        if not sni:
            ctx.check_hostname = False
        conn = http.client.HTTPSConnection("127.0.0.1", self.edge.port, context=ctx, timeout=20)
        if sni:
            # http.client sends the connection host as SNI; send the rule's name instead.
            conn._context = ctx
            conn.host = name
            conn._create_connection = lambda addr, timeout, source: socket.create_connection(
                ("127.0.0.1", self.edge.port), timeout)
        headers = {"Host": host_header or name}
        if user is not None:
            headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def stop(self):
        self.edge.stop()
        self.broker.stop()


@pytest.fixture(scope="module")
def stack():
    s = AuthStack()
    yield s
    s.stop()


def refused_at_handshake(stack, host, **kw):
    try:
        stack.get(host, **kw)
    except (ssl.SSLError, ConnectionError, http.client.RemoteDisconnected):
        return True
    return False


RIGHT, WRONG, NONE = "right", "wrong", "none"


def creds(kind, user="alice"):
    if kind == NONE:
        return {}
    return {"user": user, "password": PASSWORDS[user] if kind == RIGHT else "not-" + PASSWORDS[user]}


# (mode host, certificate?, password) -> expected: status, edge reason, or "handshake"
MATRIX = [
    ("cert", True, NONE, 200), ("cert", True, RIGHT, 200), ("cert", True, WRONG, 200),
    ("cert", False, NONE, "handshake"), ("cert", False, RIGHT, "handshake"),
    ("either", True, NONE, 200), ("either", True, RIGHT, 200),
    ("either", True, WRONG, 200),  # the certificate decides; Basic only without one
    ("either", False, NONE, (401, "password_required")), ("either", False, RIGHT, 200),
    ("either", False, WRONG, (401, "password_wrong")),
    ("both", True, NONE, (401, "password_required")), ("both", True, RIGHT, 200),
    ("both", True, WRONG, (401, "password_wrong")),
    ("both", False, NONE, "handshake"), ("both", False, RIGHT, "handshake"),
    ("password", True, NONE, (401, "password_required")), ("password", True, RIGHT, 200),
    ("password", True, WRONG, (401, "password_wrong")),
    ("password", False, NONE, (401, "password_required")), ("password", False, RIGHT, 200),
    ("password", False, WRONG, (401, "password_wrong")),
]


@pytest.mark.parametrize("host,cert,password,expected", MATRIX,
                         ids=[f"{h}-{'cert' if c else 'nocert'}-{p}" for h, c, p, _ in MATRIX])
def test_mode_matrix(stack, host, cert, password, expected):
    kw = dict(cert="alice" if cert else None, **creds(password))
    if expected == "handshake":
        refusals_before = len(stack.edge.events("tls_refused"))
        assert refused_at_handshake(stack, host, **kw)
        stack.edge.wait_for_count("tls_refused", refusals_before + 1)
        assert stack.edge.events("tls_refused")[refusals_before]["reason"] == "no_client_certificate"
        return
    status, headers, body = stack.get(host, **kw)
    if expected == 200:
        assert status == 200, body
        assert b"REMOTE_USER=alice@CORP.TEST" in body, body
        return
    want_status, want_reason = expected
    assert status == want_status, body
    assert headers.get("WWW-Authenticate") == f'Basic realm="{host}", charset="UTF-8"'
    assert want_reason.encode() not in body  # reason codes stay in the logs
    # This request's own log line, by the id the device was given.
    log = stack.edge.wait_for("request", req=headers["X-Orthrus-Request-Id"])
    assert (log["reason"], log["rule"]) == (want_reason, host)


def test_certificate_rule_never_challenges_for_a_password(stack):
    # A certificate-only rule reached without a certificate (no SNI, so the handshake let it in
    # because other names accept passwords): 403, and no Basic challenge.
    status, headers, _ = stack.get("cert", sni=False)
    assert status == 403
    assert "WWW-Authenticate" not in headers
    stack.edge.wait_for("request", reason="no_client_certificate", rule="cert")


def test_no_sni_device_reaches_a_password_rule_by_host(stack):
    status, _, body = stack.get("password", sni=False, **creds(RIGHT))
    assert status == 200, body
    assert b"REMOTE_USER=alice@CORP.TEST" in body


@pytest.mark.parametrize("user", ["alice", "CORP\\alice", "alice@corp.test", "ALICE@CORP.TEST"])
def test_user_name_forms(stack, user):
    status, _, body = stack.get("password", user=user, password=PASSWORDS["alice"])
    assert status == 200, body
    assert b"REMOTE_USER=alice@CORP.TEST" in body


def test_identities_must_match_for_certificate_and_password(stack):
    status, headers, body = stack.get("both", cert="alice", user="carol", password=PASSWORDS["carol"])
    assert status == 403, body
    assert "WWW-Authenticate" not in headers
    entry = stack.broker.wait_for("request", reason="identities_differ")
    assert "alice@CORP.TEST" in entry["detail"] and "carol" in entry["detail"]


def test_disabled_account_with_its_right_password_gets_a_plain_401(stack):
    status, headers, _ = stack.get("password", user="bob", password=PASSWORDS["bob"])
    assert status == 401
    assert "WWW-Authenticate" in headers
    stack.broker.wait_for("request", reason="account_disabled")


def test_unknown_user(stack):
    status, _, _ = stack.get("password", user="nobody", password="x")
    assert status == 401
    stack.broker.wait_for("request", reason="password_unknown_user")


def test_broker_enforces_its_own_rule_when_the_edge_is_laxer(stack):
    status, _, _ = stack.get("lax", **creds(RIGHT))
    assert status == 403
    stack.broker.wait_for("request", reason="authentication_incomplete", rule="lax")


def test_misdirected_and_unknown_hosts(stack):
    status, _, _ = stack.get("cert", cert="alice", host_header="password.edge.test")
    assert status == 421
    stack.edge.wait_for("request", reason="misdirected_request")
    status, _, _ = stack.get("nowhere", cert="alice")
    assert status == 404
    stack.edge.wait_for("request", reason="no_publishing_rule")


def test_other_schemes_get_the_basic_challenge(stack):
    ctx_headers = {"Authorization": "Negotiate YIIGaw=="}
    conn = http.client.HTTPSConnection("127.0.0.1", stack.edge.port, context=stack.ctx(None), timeout=20)
    conn.host = "password.edge.test"
    conn._create_connection = lambda addr, timeout, source: socket.create_connection(
        ("127.0.0.1", stack.edge.port), timeout)
    conn.request("GET", "/owa/", headers=dict(ctx_headers, Host="password.edge.test"))
    resp = conn.getresponse()
    resp.read()
    conn.close()
    assert resp.status == 401
    assert resp.getheader("WWW-Authenticate", "").startswith("Basic ")


def samba_tool(*args):
    subprocess.run(["samba-tool", *args, "-s", f"{ENV['TD_ROOT']}/dc/etc/smb.conf"], check=True,
                   capture_output=True)


def test_expired_password_gets_a_plain_401(stack):
    # A right password that must be changed: the KDC says KDC_ERR_KEY_EXP; the device learns only 401.
    samba_tool("user", "create", "gina", "GinaPass1!", "--must-change-at-next-login")
    try:
        status, headers, _ = stack.get("password", user="gina", password="GinaPass1!")
        assert status == 401
        assert headers.get("WWW-Authenticate", "").startswith("Basic ")
        stack.broker.wait_for("request", reason="password_expired")
    finally:
        samba_tool("user", "delete", "gina")


def test_malformed_basic_credentials(stack):
    conn = http.client.HTTPSConnection("127.0.0.1", stack.edge.port, context=stack.ctx(None), timeout=20)
    conn.host = "password.edge.test"
    conn._create_connection = lambda addr, timeout, source: socket.create_connection(
        ("127.0.0.1", stack.edge.port), timeout)
    for value in ("Basic !!!notbase64", "Basic " + base64.b64encode(b"no-colon").decode()):
        conn.request("GET", "/owa/", headers={"Host": "password.edge.test", "Authorization": value})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 401
        assert resp.getheader("WWW-Authenticate", "").startswith("Basic ")
        entry = stack.edge.wait_for("request", req=resp.getheader("X-Orthrus-Request-Id"))
        assert entry["reason"] == "malformed_credentials"
    conn.close()


def test_a_remembered_password_costs_no_kdc_exchange(stack):
    # erin is used by no other test here: her first check goes to the KDC, the next 20 do not.
    mark = kdc_mark()
    for _ in range(21):
        status, _, body = stack.get("password", user="erin", password=PASSWORDS["erin"])
        assert status == 200, body
        assert b"REMOTE_USER=erin@CORP.TEST" in body
    counts = kdc_counts(mark)
    print(f"\nKDC exchanges for 21 requests with the same right password: {counts}")
    # One password check = AS-REQ (+ the preauth round) and one TGS-REQ to verify the ticket.
    assert counts["as_req"] <= 2, counts
    # A wrong password is not served from the cache of the right one.
    status, _, _ = stack.get("password", user="erin", password="wrong")
    assert status == 401
    stack.broker.wait_for("request", reason="password_wrong", user="")


def test_failed_passwords_are_limited_at_the_edge():
    s = AuthStack(password_limits="account_failures: 3 address_failures: 100 window_seconds: 60")
    try:
        for _ in range(3):
            status, _, _ = s.get("password", user="frank", password="wrong")
            assert status == 401
        s.broker.wait_for_count("request", 3)
        mark = kdc_mark()
        # Over the limit: refused at the edge, even with the right password, without asking anyone.
        status, headers, _ = s.get("password", user="FRANK@corp.test", password="FrankPass1!")
        assert status == 429
        assert 0 < int(headers["Retry-After"]) <= 60
        s.edge.wait_for("request", reason="rate_limited")
        assert kdc_counts(mark)["as_req"] == 0
        # Another account from the same address is unaffected.
        status, _, body = s.get("password", **creds(RIGHT))
        assert status == 200, body
    finally:
        s.stop()


def test_no_password_and_no_authorization_value_in_any_log(stack):
    """Runs last in this module: every password above went through the edge and the broker."""
    secrets = list(PASSWORDS.values()) + ["GinaPass1!", "not-AlicePass1!"]
    secrets += [base64.b64encode(f"{u}:{p}".encode()).decode() for u, p in PASSWORDS.items()]
    for process in (stack.edge, stack.broker):
        for path in (process.log_path, process.stderr_path):
            text = open(path, errors="replace").read()
            assert text or path == process.stderr_path, path
            for secret in secrets:
                assert secret not in text, f"{secret!r} in {path}"
            assert "Negotiate YII" not in text, path  # no SPNEGO token either
