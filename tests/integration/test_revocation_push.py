"""Revocation pushed from the broker to the edges: takes effect at once, open connections included.

Real processes on loopback: backend stand-in, broker with its revocation service (SQLite), edges
watching its feed, orthrusctl as the administrator (mutual TLS with an admin certificate).
"""
import http.client
import os
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time

import pytest

import harness
from test_revocation_admin import make_admin_cert

CTL_BIN = os.path.join(harness.BUILD_DIR, "tools", "orthrusctl", "orthrusctl")


def broker_revocation(pki, workdir, admin_port, sources=""):
    return f"""
revocation {{
  database_file: "{workdir}/revocation.db"
  crl_ca_file: "{pki}/device-ca.pem"
  {sources}
  heartbeat_interval_ms: 500
  admin {{
    address: "127.0.0.1:{admin_port}"
    certificate_chain_file: "{pki}/broker.pem"
    private_key_file: "{pki}/broker.key"
    admin_ca_file: "{pki}/internal-ca.pem"
    allowed_admin: "admin-1"
  }}
}}
"""


def edge_feed(workdir, name, max_staleness=300, policy="FAIL_CLOSED"):
    return f"""
revocation_feed {{
  state_file: "{workdir}/{name}.state"
  max_staleness_seconds: {max_staleness}
  staleness_policy: {policy}
  initial_sync_timeout_seconds: 5
  reconnect_min_ms: 100
  reconnect_max_ms: 500
}}
"""


class PushStack:
    def __init__(self, pki, edges=1, max_staleness=300, policy="FAIL_CLOSED", crl_sources=""):
        self.pki = pki
        self.workdir = tempfile.mkdtemp(prefix="orthrus-push-")
        self.admin_port = harness.free_port()
        self.backend = harness.Backend(self.workdir, pki)
        self.broker_port = harness.free_port()
        self.broker = harness.Broker(
            self.workdir, pki, self.backend.port, port=self.broker_port,
            config_text=harness.broker_config(pki, self.broker_port, self.backend.port, "@LOG@")
            + broker_revocation(pki, self.workdir, self.admin_port, crl_sources))
        self.edges = [harness.Edge(self.workdir, pki, [self.broker_port], name=f"edge{i}",
                                   extra=edge_feed(self.workdir, f"edge{i}", max_staleness, policy))
                      for i in range(edges)]
        self.edge = self.edges[0]
        self.admin = make_admin_cert(pki, "admin-1", "0x3001")

    def ctl(self, *args, cert=None):
        admin_cert, admin_key = cert or self.admin
        return subprocess.run([CTL_BIN, "--broker", f"127.0.0.1:{self.admin_port}", "--cert", admin_cert,
                               "--key", admin_key, "--ca", f"{self.pki}/internal-ca.pem",
                               "--server-name", "broker.test", *args],
                              capture_output=True, text=True, timeout=30)

    def get(self, cert="alice", path="/echo", edge=None):
        return harness.request((edge or self.edge).port, harness.client_context(self.pki, cert=cert),
                               path=path)

    def stop(self):
        for e in self.edges:
            e.stop()
        self.broker.stop(check=self.broker.expect_clean_exit)
        self.backend.stop(check=False)


@pytest.fixture(scope="module")
def pki():
    return harness.make_pki(tempfile.mkdtemp(prefix="orthrus-pki-"))


def handshake_refused(port, pki, cert):
    try:
        harness.request(port, harness.client_context(pki, cert=cert))
    except (ssl.SSLError, ConnectionError, OSError):
        return True
    return False


def test_revoke_closes_a_held_long_poll_and_refuses_the_next_handshake(pki):
    s = PushStack(pki)
    try:
        assert s.get("alice")[0] == 200
        # alice's phone holds a Ping; bob's too.
        outcome = {}

        def hold(name):
            conn = harness.connect(s.edge.port, harness.client_context(pki, cert=name), timeout=60)
            try:
                conn.request("POST", "/hold?seconds=50", body=b"<Ping/>", headers={"X-Test-Id": name})
                resp = conn.getresponse()
                outcome[name] = ("status", resp.status, time.monotonic())
            except Exception as e:  # the edge closed the connection
                outcome[name] = ("closed", repr(e), time.monotonic())
            finally:
                conn.close()

        threads = [threading.Thread(target=hold, args=(n,), daemon=True) for n in ("alice", "bob")]
        for t in threads:
            t.start()
        deadline = time.time() + 10
        while len(s.backend.backend_events(kind="start", path="/hold")) < 2 and time.time() < deadline:
            time.sleep(0.05)
        r = s.ctl("revoke", "--device-cert", f"{pki}/alice.pem", "--reason", "lost phone", "--wait-ms", "3000")
        returned = time.monotonic()
        assert r.returncode == 0, r.stderr + r.stdout
        assert "acknowledged by 1 of 1 connected edges" in r.stdout, r.stdout
        threads[0].join(timeout=5)
        assert outcome["alice"][0] == "closed", outcome
        assert outcome["alice"][2] - returned < 1.0, outcome
        closed = s.edge.wait_for("connection_revoked")
        assert closed["reason"] == "client_certificate_revoked"
        assert closed["in_flight"] is True
        # The backend saw the long-poll abandoned (the cancel went all the way).
        s.backend.wait_event(kind="aborted", path="/hold", timeout=5)
        # bob is untouched; alice cannot come back.
        assert "bob" not in outcome
        assert handshake_refused(s.edge.port, pki, "alice")
        assert s.edge.wait_for("tls_refused", reason="client_certificate_revoked")
        assert s.get("bob")[0] == 200
    finally:
        s.stop()


def test_every_kind_of_key_and_unrevoke(pki):
    s = PushStack(pki, edges=2)
    try:
        assert s.get("alice")[0] == 200
        r = s.ctl("revoke", "--account", "ALICE@corp.test", "--reason", "left the company", "--wait-ms", "3000")
        assert r.returncode == 0, r.stderr
        for e in s.edges:
            assert handshake_refused(e.port, pki, "alice")
            e.wait_for("tls_refused", reason="account_revoked")
        r = s.ctl("unrevoke", "--account", "alice@corp.test", "--reason", "rehired", "--wait-ms", "3000")
        assert r.returncode == 0, r.stderr
        assert s.get("alice")[0] == 200

        # By device id: only requests from that device are refused.
        r = s.ctl("revoke", "--device-id", "PHONE42", "--reason", "stolen", "--wait-ms", "3000")
        assert r.returncode == 0, r.stderr
        status, _, _ = s.get("bob", "/Microsoft-Server-ActiveSync?Cmd=Sync&User=bob&DeviceId=phone42&DeviceType=iPhone")
        assert status == 403
        s.edge.wait_for("request", reason="device_revoked")
        status, _, _ = s.get("bob", "/Microsoft-Server-ActiveSync?Cmd=Sync&User=bob&DeviceId=OTHER1&DeviceType=iPhone")
        assert status == 200

        # By issuer + serial, by certificate hash.
        r = s.ctl("revoke", "--issuer", "CN=Orthrus Test Device CA,O=Orthrus Test", "--serial", "0b0b",
                  "--reason", "key compromise", "--wait-ms", "3000")
        assert r.returncode == 0, r.stderr
        assert handshake_refused(s.edges[1].port, pki, "bob")
        sha = harness.cert_sha256(f"{pki}/alice.pem")
        r = s.ctl("revoke", "--cert-sha256", sha, "--reason", "test", "--wait-ms", "3000")
        assert r.returncode == 0, r.stderr
        assert handshake_refused(s.edges[1].port, pki, "alice")

        listed = s.ctl("list-revoked")
        assert listed.returncode == 0, listed.stderr
        for want in ("phone42", "0b0b", sha, "admin-1", "key compromise"):
            assert want in listed.stdout.lower(), listed.stdout
        status = s.ctl("status")
        assert status.returncode == 0, status.stderr
        assert "edge-1" in status.stdout
    finally:
        s.stop()


def test_an_edge_restarted_while_the_broker_is_down_still_refuses(pki):
    s = PushStack(pki)
    try:
        r = s.ctl("revoke", "--device-cert", f"{pki}/alice.pem", "--reason", "lost", "--wait-ms", "3000")
        assert r.returncode == 0, r.stderr
        s.broker.kill()
        s.edge.stop()
        s.edge.start()
        s.edge.port = int(s.edge.wait_for_count("listening", 2, timeout=20)[-1]["address"].rsplit(":", 1)[1])
        state = s.edge.wait_for("revocation_state", loaded=True)
        assert state["entries"] >= 1
        assert handshake_refused(s.edge.port, pki, "alice")
        # bob's handshake is fine (his request then finds no broker: 502).
        status, _, _ = s.get("bob")
        assert status == 502
    finally:
        s.stop()


def test_past_max_staleness_the_edge_fails_closed(pki):
    s = PushStack(pki, max_staleness=2)
    try:
        assert s.get("bob")[0] == 200
        # bob holds a long-poll; then the feed goes quiet: the broker is frozen (SIGSTOP), its
        # connections stay open but nothing comes, as with a hung broker or a silent network.
        conn = harness.connect(s.edge.port, harness.client_context(pki, cert="bob"), timeout=30)
        conn.request("POST", "/hold?seconds=20", body=b"<Ping/>")
        deadline = time.time() + 10
        while not s.backend.backend_events(kind="start", path="/hold") and time.time() < deadline:
            time.sleep(0.05)
        os.kill(s.broker.pid, signal.SIGSTOP)
        try:
            s.edge.wait_for("revocation_feed_staleness", stale=True, timeout=10)
            # Stale: the held connection is closed, new devices are refused at the handshake.
            with pytest.raises((ConnectionError, OSError, http.client.HTTPException)):
                conn.getresponse()
            conn.close()
            s.edge.wait_for("connection_revoked", reason="revocation_feed_stale")
            assert handshake_refused(s.edge.port, pki, "bob")
            s.edge.wait_for("tls_refused", reason="revocation_feed_stale")
        finally:
            os.kill(s.broker.pid, signal.SIGCONT)
        # The broker is back: the feed catches up and devices are admitted again.
        s.edge.wait_for("revocation_feed_staleness", stale=False, timeout=15)
        assert s.get("bob")[0] == 200
    finally:
        s.stop()


def test_keep_serving_policy_serves_a_stale_set(pki):
    s = PushStack(pki, max_staleness=1, policy="KEEP_SERVING")
    try:
        s.broker.kill()
        time.sleep(2.5)
        status, _, _ = s.get("bob")
        assert status == 502  # admitted; only the broker is missing
        s.edge.wait_for("revocation_feed_staleness", stale=True, policy="keep_serving")
    finally:
        s.stop()


def test_a_crl_from_an_http_distribution_point_reaches_the_edge_and_its_connections(pki):
    """The broker fetches the CA's CRL over plain HTTP (as CRL distribution points are), verifies it
    and pushes it; the edge refuses what it lists, and a newer CRL closes a listed device's open
    connection."""
    crl_dir = tempfile.mkdtemp(prefix="orthrus-cdp-")
    crl = os.path.join(crl_dir, "device-ca.crl")
    make_crl = os.path.join(harness.SOURCE_DIR, "tests", "support", "make_crl.sh")
    subprocess.run([make_crl, pki, "device-ca", crl, "86400", f"{pki}/bob.pem"], check=True,
                   capture_output=True)
    port = harness.free_port()
    cdp = subprocess.Popen([harness.PYTHON, "-m", "http.server", "--bind", "127.0.0.1", str(port),
                            "--directory", crl_dir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        s = PushStack(pki, crl_sources=f'crl_source {{ url: "http://127.0.0.1:{port}/device-ca.crl" }}')
        try:
            assert handshake_refused(s.edge.port, pki, "bob")
            s.edge.wait_for("tls_refused", reason="client_certificate_revoked")
            conn = harness.connect(s.edge.port, harness.client_context(pki, cert="alice"), timeout=30)
            conn.request("POST", "/hold?seconds=20", body=b"<Ping/>")
            deadline = time.time() + 10
            while not s.backend.backend_events(kind="start", path="/hold") and time.time() < deadline:
                time.sleep(0.05)
            time.sleep(1.1)  # the next CRL's thisUpdate must be later (one-second resolution)
            subprocess.run([make_crl, pki, "device-ca", crl, "86400", f"{pki}/bob.pem", f"{pki}/alice.pem"],
                           check=True, capture_output=True)
            r = s.ctl("refresh-crls")
            assert r.returncode == 0, r.stderr + r.stdout
            with pytest.raises((ConnectionError, OSError, http.client.HTTPException)):
                conn.getresponse()
            conn.close()
            closed = s.edge.wait_for("connection_revoked")
            assert closed["reason"] == "client_certificate_revoked"
            assert handshake_refused(s.edge.port, pki, "alice")
        finally:
            s.stop()
    finally:
        cdp.terminate()
        cdp.wait(timeout=10)
