"""Edge + broker + backend, real binaries on loopback: identity, refusals, streaming, failures."""
import base64
import json
import os
import socket
import ssl
import tempfile
import threading
import time

import pytest

import harness

GIB = 1 << 30


@pytest.fixture(scope="module")
def pki():
    return harness.make_pki(tempfile.mkdtemp(prefix="orthrus-pki-"))


@pytest.fixture
def stack(pki):
    s = harness.Stack(pki)
    yield s
    s.stop()


def test_valid_certificate_reaches_backend_with_its_identity(stack, pki):
    status, headers, body = harness.request(
        stack.edge.port, stack.ctx, "GET", "/Microsoft-Server-ActiveSync?Cmd=Ping",
        # A device trying to assert someone else's identity: must be stripped, not forwarded.
        headers={"X-Orthrus-Client-Subject": "CN=administrator", "X-Test-Id": "ident"})
    assert status == 200
    seen = json.loads(body)
    assert seen["method"] == "GET"
    assert seen["path"] == "/Microsoft-Server-ActiveSync?Cmd=Ping"
    h = seen["headers"]
    assert h["X-Orthrus-Client-Subject"] == "CN=alice,O=Corp"
    assert h["X-Orthrus-Client-UPN"] == "alice@corp.test"
    assert h["X-Orthrus-Client-Email"] == "alice@corp.test"
    assert h["X-Orthrus-Client-Serial"] == "0a1b2c"
    assert h["X-Orthrus-Client-Cert-Sha256"] == harness.cert_sha256(f"{pki}/alice.pem")
    assert h["X-Orthrus-Client-Issuer"] == "CN=Orthrus Test Device CA,O=Orthrus Test"
    # Both tiers log the same request id with the outcome.
    edge_req = stack.edge.wait_for("request", reason="ok")
    broker_req = stack.broker.wait_for("request", reason="ok")
    assert edge_req["req"] == broker_req["req"]
    assert broker_req["subject"] == "CN=alice,O=Corp"


def test_keep_alive_reuses_the_device_connection(stack):
    conn = harness.connect(stack.edge.port, stack.ctx)
    for i in range(3):
        conn.request("GET", f"/echo/{i}")
        resp = conn.getresponse()
        assert resp.status == 200
        assert json.loads(resp.read())["path"] == f"/echo/{i}"
    conn.close()
    conns = {e["conn"] for e in stack.edge.wait_for_count("request", 3)}
    assert len(conns) == 1


def test_no_certificate_is_refused_in_the_handshake(stack, pki):
    ctx = harness.client_context(pki, cert=None)
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        harness.request(stack.edge.port, ctx)
    refused = stack.edge.wait_for("tls_refused")
    assert refused["reason"] == "no_client_certificate"
    assert not stack.broker.events("request")


def test_certificate_from_another_ca_is_refused(stack, pki):
    ctx = harness.client_context(pki, cert="mallory")
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        harness.request(stack.edge.port, ctx)
    refused = stack.edge.wait_for("tls_refused")
    assert refused["reason"] == "untrusted_client_certificate"
    assert not stack.broker.events("request")


def test_edge_with_unknown_certificate_is_refused_by_the_broker(pki):
    workdir = tempfile.mkdtemp(prefix="orthrus-it-")
    backend = harness.Backend(workdir, pki)
    broker = harness.Broker(workdir, pki, backend.port)
    # Same internal CA as the real edge, but not on the broker's allow list.
    edge = harness.Edge(workdir, pki, [broker.port], edge_cert="edge-unknown")
    try:
        status, headers, _ = harness.request(edge.port, harness.client_context(pki))
        assert status == 502
        assert edge.wait_for("request")["reason"] == "broker_refused_edge"
        refused = broker.wait_for("edge_refused")
        assert refused["reason"] == "edge_not_allowed"
        assert "edge-unknown" in refused["certificate"]
        assert not backend.backend_events(kind="start")
    finally:
        edge.stop()
        broker.stop()
        backend.stop(check=False)


def test_malformed_http_gets_400_and_the_connection_closed(stack):
    answer = harness.raw_tls(stack.edge.port, stack.ctx,
                             b"GET / HTTP/1.1\r\nHost: edge.test\r\nthis is not a header\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:100]
    assert b"Connection: close" in answer
    assert stack.edge.wait_for("request", status=400)["reason"] == "malformed_request"
    assert not stack.broker.events("request")


def test_content_length_and_transfer_encoding_together_is_refused(stack):
    answer = harness.raw_tls(
        stack.edge.port, stack.ctx,
        b"POST / HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert stack.edge.wait_for("request", status=400)["reason"] == "malformed_request"


def test_oversized_header_gets_431(pki):
    s = harness.Stack(pki, edge_kw={"limits": "header_bytes: 4096 request_line_bytes: 2048"})
    try:
        answer = harness.raw_tls(s.edge.port, s.ctx,
                                 b"GET / HTTP/1.1\r\nHost: edge.test\r\nX-Big: " + b"a" * 8000 + b"\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 431 ")
        assert s.edge.wait_for("request", status=431)["reason"] == "header_too_large"
        answer = harness.raw_tls(s.edge.port, s.ctx,
                                 b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\nHost: edge.test\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 414 ")
        assert s.edge.wait_for("request", status=414)["reason"] == "request_line_too_long"
    finally:
        s.stop()


def test_oversized_body_gets_413(pki):
    s = harness.Stack(pki, edge_kw={"limits": "body_bytes: 1000"})
    try:
        status, _, _ = harness.request(s.edge.port, s.ctx, "POST", "/upload", body=b"x" * 5000)
        assert status == 413
        assert s.edge.wait_for("request", status=413)["reason"] == "body_too_large"
    finally:
        s.stop()


def _body_chunks(total, chunk=1 << 20):
    block = bytes(range(256)) * (chunk // 256)
    sent = 0
    while sent < total:
        n = min(chunk, total - sent)
        yield block[:n]
        sent += n


def _transfer_size():
    # Sanitizer builds are ~10x slower; they still stream, but less.
    return (256 << 20) if harness.SANITIZED else GIB


def _rss_bound_kib():
    return 96 * 1024


def test_one_gib_upload_streams_in_constant_memory(stack):
    total = _transfer_size()
    conn = harness.connect(stack.edge.port, stack.ctx, timeout=300)
    start = time.time()
    conn.request("POST", "/upload", body=_body_chunks(total),
                 headers={"Content-Length": str(total), "X-Test-Id": "upload"})
    resp = conn.getresponse()
    seen = json.loads(resp.read())
    elapsed = time.time() - start
    conn.close()
    assert resp.status == 200
    assert seen["body_len"] == total
    peak = stack.edge.peak_rss_kib()
    broker_peak = stack.broker.peak_rss_kib()
    print(f"\nupload {total >> 20} MiB in {elapsed:.1f}s ({total / elapsed / 1e6:.0f} MB/s): "
          f"edge peak RSS {peak / 1024:.1f} MiB, broker peak RSS {broker_peak / 1024:.1f} MiB")
    if not harness.SANITIZED:
        assert peak < _rss_bound_kib(), f"edge peak RSS {peak} KiB"
        assert broker_peak < _rss_bound_kib(), f"broker peak RSS {broker_peak} KiB"


def test_one_gib_download_streams_in_constant_memory(stack):
    total = _transfer_size()
    conn = harness.connect(stack.edge.port, stack.ctx, timeout=300)
    start = time.time()
    conn.request("GET", f"/download?bytes={total}")
    resp = conn.getresponse()
    assert resp.status == 200
    got = 0
    while True:
        data = resp.read(1 << 20)
        if not data:
            break
        got += len(data)
    elapsed = time.time() - start
    conn.close()
    assert got == total
    peak = stack.edge.peak_rss_kib()
    broker_peak = stack.broker.peak_rss_kib()
    print(f"\ndownload {total >> 20} MiB in {elapsed:.1f}s ({total / elapsed / 1e6:.0f} MB/s): "
          f"edge peak RSS {peak / 1024:.1f} MiB, broker peak RSS {broker_peak / 1024:.1f} MiB")
    if not harness.SANITIZED:
        assert peak < _rss_bound_kib(), f"edge peak RSS {peak} KiB"
        assert broker_peak < _rss_bound_kib(), f"broker peak RSS {broker_peak} KiB"


def test_chunked_download_without_length_is_relayed_chunked(stack):
    status, headers, body = harness.request(stack.edge.port, stack.ctx, "GET",
                                            "/download?bytes=3000000&chunked=1")
    assert status == 200
    assert headers.get("Transfer-Encoding") == "chunked"
    assert len(body) == 3000000


def test_client_disconnect_mid_response_cancels_the_backend_request(stack):
    conn = harness.connect(stack.edge.port, stack.ctx)
    conn.request("GET", "/slow?bytes=100000000&delay=0.05", headers={"X-Test-Id": "slow-cancel"})
    resp = conn.getresponse()
    assert resp.status == 200
    resp.read(200000)
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()
    t0 = time.time()
    aborted = stack.backend.wait_event(timeout=10, kind="aborted", id="slow-cancel")
    print(f"\nbackend saw the abort {aborted['t'] - t0:.2f}s after the device left")
    assert not stack.backend.backend_events(kind="done", id="slow-cancel")
    edge_req = stack.edge.wait_for("request", reason="client_closed")
    assert edge_req["status"] == 200


def test_client_disconnect_during_long_poll_cancels_the_backend_request(stack):
    conn = harness.connect(stack.edge.port, stack.ctx)
    conn.request("POST", "/hold?seconds=60", body=b"<Ping/>", headers={"X-Test-Id": "hold-cancel"})
    stack.backend.wait_event(timeout=5, kind="start", id="hold-cancel")
    t0 = time.time()
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()
    aborted = stack.backend.wait_event(timeout=10, kind="aborted", id="hold-cancel")
    print(f"\nbackend dropped the held request {aborted['t'] - t0:.2f}s after the device left")
    assert aborted["t"] - t0 < 5
    assert stack.broker.wait_for("request", reason="cancelled")


def test_broker_killed_gives_502_within_a_second_and_recovers(pki):
    s = harness.Stack(pki, fixed_broker_port=True)
    try:
        assert harness.request(s.edge.port, s.ctx)[0] == 200

        # A long-poll in flight when the broker dies ends with 502 quickly.
        result = {}

        def long_poll():
            t = time.time()
            try:
                result["status"] = harness.request(s.edge.port, s.ctx, "GET", "/hold?seconds=30",
                                                   headers={"X-Test-Id": "hold-kill"})[0]
            except Exception as e:  # noqa: BLE001 - recorded for the assertion
                result["error"] = repr(e)
            result["elapsed"] = time.time() - t

        poller = threading.Thread(target=long_poll)
        poller.start()
        s.backend.wait_event(timeout=5, kind="start", id="hold-kill")
        killed_at = time.time()
        s.broker.kill()
        poller.join(timeout=10)
        assert result.get("status") == 502, result
        in_flight_latency = time.time() - killed_at
        assert in_flight_latency < 1.0, in_flight_latency

        # New requests while it is down: 502 within a second.
        t = time.time()
        status = harness.request(s.edge.port, s.ctx)[0]
        down_latency = time.time() - t
        assert status == 502
        assert down_latency < 1.0, down_latency
        assert s.edge.wait_for("request", reason="broker_unavailable")

        # It comes back on the same port; the edge reconnects by itself.
        s.broker.restart()
        t = time.time()
        deadline = t + 10
        status = 0
        while time.time() < deadline:
            status = harness.request(s.edge.port, s.ctx)[0]
            if status == 200:
                break
            time.sleep(0.1)
        print(f"\nin-flight 502 after {in_flight_latency:.2f}s, new request 502 after "
              f"{down_latency:.2f}s, recovered {time.time() - t:.2f}s after broker restart")
        assert status == 200
    finally:
        s.stop()


def test_backend_down_gives_502_with_reason(pki):
    workdir = tempfile.mkdtemp(prefix="orthrus-it-")
    broker = harness.Broker(workdir, pki, harness.free_port())  # nothing listens there
    edge = harness.Edge(workdir, pki, [broker.port])
    try:
        status, _, body = harness.request(edge.port, harness.client_context(pki))
        assert status == 502
        assert b"request-id:" in body
        assert broker.wait_for("request")["reason"] == "backend_connect_failed"
        assert edge.wait_for("request")["reason"] == "backend_connect_failed"
    finally:
        edge.stop()
        broker.stop()


def test_backend_with_untrusted_certificate_gives_502(pki):
    workdir = tempfile.mkdtemp(prefix="orthrus-it-")
    backend = harness.Backend(workdir, pki)
    cfg = harness.broker_config(pki, 0, backend.port, os.path.join(workdir, "broker.log"))
    # Verify the backend against the device CA, which did not issue its certificate.
    cfg = cfg.replace(f'backend_ca_file: "{pki}/internal-ca.pem"', f'backend_ca_file: "{pki}/device-ca.pem"')
    path = os.path.join(workdir, "broker.conf")
    open(path, "w").write(cfg)
    broker = harness.Process("broker", [harness.BROKER_BIN, "--config", path],
                             os.path.join(workdir, "broker.log"))
    port = int(broker.wait_for("listening")["address"].rsplit(":", 1)[1])
    edge = harness.Edge(workdir, pki, [port])
    try:
        status, _, _ = harness.request(edge.port, harness.client_context(pki))
        assert status == 502
        refused = broker.wait_for("request")
        assert refused["reason"] == "backend_tls_failed"
        assert "certificate" in refused["detail"]
    finally:
        edge.stop()
        broker.stop()
        backend.stop(check=False)


def test_slow_backend_gives_504(pki):
    s = harness.Stack(pki, broker_kw={"extra_rule": "response_timeout_seconds: 1"})
    try:
        t = time.time()
        status, _, _ = harness.request(s.edge.port, s.ctx, "GET", "/hold?seconds=20")
        assert status == 504
        assert time.time() - t < 5
        assert s.broker.wait_for("request")["reason"] == "backend_timeout"
    finally:
        s.stop()


def test_basic_credentials_never_reach_the_backend_on_a_password_rule(pki):
    """On a rule that accepts passwords, the Authorization: Basic header is consumed by the edge:
    with a certificate (certificate-or-password) it is dropped, never forwarded to the backend. On a
    certificate-only rule the header is the backend's business and passes through untouched."""
    rules = ('rule { name: "either" path_prefix: "/either" authentication: "certificate-or-password" }\n'
             'rule { name: "cert" path_prefix: "/" }\n')
    s = harness.Stack(pki, edge_kw={"extra": rules})
    try:
        basic = "Basic " + base64.b64encode(b"alice:secret-password").decode()
        status, _, body = harness.request(s.edge.port, s.ctx, "GET", "/either/x",
                                          headers={"Authorization": basic})
        assert status == 200
        assert "Authorization" not in json.loads(body)["headers"]
        assert s.edge.wait_for("request", reason="ok", rule="either")["user"] == ""
        status, _, body = harness.request(s.edge.port, s.ctx, "GET", "/other",
                                          headers={"Authorization": basic})
        assert status == 200
        assert json.loads(body)["headers"]["Authorization"] == basic
    finally:
        s.stop()
