"""Bad device certificates: the edge refuses each one with its own reason code.

The corpus comes from tests/support/make_bad_certs.sh (one defect per certificate, see its header).
The edge trusts only the corpus root (listen.client_ca_file) and runs with listen.max_chain_depth 2;
its own server certificate and the broker/backend PKI come from make_pki.sh.
"""
import os
import socket
import ssl
import subprocess
import tempfile

import pytest

import harness

MAX_CHAIN_DEPTH = 2

# certificate (file stem in the corpus, None = no certificate) -> reason the edge must log
BAD = [
    ("expired", "client_certificate_expired"),
    ("not-yet-valid", "client_certificate_not_yet_valid"),
    ("fresh", "client_certificate_not_yet_valid"),
    ("recently-expired", "client_certificate_expired"),
    ("rogue", "untrusted_client_certificate"),
    ("rogue-with-root", "untrusted_client_certificate"),
    ("self-signed", "client_certificate_self_signed"),
    ("no-client-eku", "client_certificate_wrong_purpose"),
    ("no-digsig", "client_certificate_wrong_purpose"),
    ("weak-key", "client_certificate_weak_key"),
    ("weak-sig", "client_certificate_weak_signature"),
    ("too-deep", "client_certificate_chain_too_deep"),
    ("bad-upn", "client_certificate_malformed"),
    ("too-large", "client_certificate_too_large"),
    ("nc-violation", "client_certificate_name_constraints"),
    ("unknown-critical", "client_certificate_unknown_critical_extension"),
    (None, "no_client_certificate"),
]
GOOD = ["good", "good-nc", "good-depth2"]


@pytest.fixture(scope="module")
def pki():
    return harness.make_pki(tempfile.mkdtemp(prefix="orthrus-pki-"))


@pytest.fixture(scope="module")
def corpus():
    out = tempfile.mkdtemp(prefix="orthrus-badcerts-")
    subprocess.run([os.path.join(harness.SOURCE_DIR, "tests", "support", "make_bad_certs.sh"), out],
                   check=True, stdout=subprocess.DEVNULL)
    return out


class BadCertStack:
    """Backend + broker + edge; both tiers trust the corpus root for devices."""

    def __init__(self, pki, corpus, listen_extra="", broker_extra=""):
        self.workdir = tempfile.mkdtemp(prefix="orthrus-it-badcerts-")
        bundle = f"{corpus}/ca-bundle.pem"
        self.backend = harness.Backend(self.workdir, pki)
        broker_cfg = harness.broker_config(pki, 0, self.backend.port, "@LOG@")
        broker_cfg = broker_cfg.replace(f'device_ca_file: "{pki}/device-ca.pem"',
                                        f'device_ca_file: "{bundle}"\n{broker_extra}')
        assert bundle in broker_cfg
        self.broker = harness.Broker(self.workdir, pki, self.backend.port, config_text=broker_cfg)
        edge_log = os.path.join(self.workdir, "edge.log")
        edge_cfg = harness.edge_config(pki, [self.broker.port], edge_log, client_ca=bundle)
        client_ca_line = f'client_ca_file: "{bundle}"'
        assert client_ca_line in edge_cfg
        edge_cfg = edge_cfg.replace(client_ca_line,
                                    f"{client_ca_line}\n  max_chain_depth: {MAX_CHAIN_DEPTH}\n"
                                    f"  {listen_extra}")
        edge_conf = os.path.join(self.workdir, "edge.conf")
        with open(edge_conf, "w") as f:
            f.write(edge_cfg)
        self.edge = harness.Process("edge", [harness.EDGE_BIN, "--config", edge_conf], edge_log)
        self.edge.port = int(self.edge.wait_for("listening")["address"].rsplit(":", 1)[1])

    def stop(self):
        harness.stop_all(self.edge, self.broker, self.backend)


@pytest.fixture(scope="module")
def stack(pki, corpus):
    s = BadCertStack(pki, corpus)
    yield s
    s.stop()


def device_context(pki, corpus, name):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(f"{pki}/device-ca.pem")  # the edge's server certificate
    # The device side must be able to *send* RSA-1024 and SHA-1 certificates: the refusal has to
    # come from the edge, not from the test client's own security level.
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    if name is not None:
        ctx.load_cert_chain(f"{corpus}/{name}.chain.pem", f"{corpus}/{name}.key")
    return ctx


def attempt(port, ctx, path):
    """One request on a fresh connection: (client address as the edge logs it, raw answer or the
    exception that ended the attempt)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    client = "%s:%d" % raw.getsockname()[:2]
    try:
        with ctx.wrap_socket(raw, server_hostname="edge.test") as tls:
            tls.sendall(f"GET {path} HTTP/1.1\r\nHost: edge.test\r\nConnection: close\r\n\r\n".encode())
            chunks = []
            while True:
                data = tls.recv(65536)
                if not data:
                    break
                chunks.append(data)
            return client, b"".join(chunks)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as e:
        return client, e
    finally:
        raw.close()


@pytest.mark.parametrize("name", GOOD)
def test_good_certificate_is_accepted(stack, pki, corpus, name):
    status, _, _ = harness.request(stack.edge.port, device_context(pki, corpus, name),
                                   path=f"/good/{name}")
    assert status == 200
    stack.backend.wait_event(path=f"/good/{name}")


@pytest.mark.parametrize("name,reason", BAD, ids=[n or "no-certificate" for n, _ in BAD])
def test_bad_certificate_is_refused_with_its_reason(stack, pki, corpus, name, reason):
    path = f"/bad/{name or 'none'}"
    client, outcome = attempt(stack.edge.port, device_context(pki, corpus, name), path)
    assert not (isinstance(outcome, bytes) and outcome), f"edge answered: {outcome[:200]!r}"
    refused = stack.edge.wait_for("tls_refused", client=client)
    assert refused["reason"] == reason, refused
    # Nothing got through: no request in the edge's log for this connection, none at the broker
    # or the backend for this path.
    assert not [e for e in stack.edge.events("request") if e.get("client") == client]
    assert not [e for e in stack.broker.events("request")
                if e.get("target") == path or e.get("client") == client]
    assert not stack.backend.backend_events(path=path)


def test_clock_skew_allowance(pki, corpus):
    """listen.clock_skew_seconds: a certificate valid within the allowance is accepted (a phone
    whose clock is behind, a certificate issued a moment ago); anything further is still refused."""
    s = BadCertStack(pki, corpus, listen_extra="clock_skew_seconds: 900",
                     broker_extra="device_clock_skew_seconds: 900")
    try:
        for name in ("fresh", "recently-expired"):
            status, _, _ = harness.request(s.edge.port, device_context(pki, corpus, name),
                                           path=f"/skew/{name}")
            assert status == 200, name
            s.backend.wait_event(path=f"/skew/{name}")
        for name, reason in (("not-yet-valid", "client_certificate_not_yet_valid"),
                             ("expired", "client_certificate_expired")):
            client, outcome = attempt(s.edge.port, device_context(pki, corpus, name), "/skew/bad")
            assert not isinstance(outcome, bytes) or not outcome
            assert s.edge.wait_for("tls_refused", client=client)["reason"] == reason
    finally:
        s.stop()
