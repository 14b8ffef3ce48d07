"""Revocation at the edge from CRL files: revoked, stale, missing and forged CRLs, and reload."""
import os
import signal
import subprocess
import tempfile
import time

import pytest

import harness

MAKE_CRL = os.path.join(harness.SOURCE_DIR, "tests", "support", "make_crl.sh")
DEVICE_CA = "CN=Orthrus Test Device CA,O=Orthrus Test"


@pytest.fixture(scope="module")
def pki():
    return harness.make_pki(tempfile.mkdtemp(prefix="orthrus-pki-"))


def make_crl(pki, out, seconds=3600, revoke=()):
    subprocess.run([MAKE_CRL, pki, "device-ca", out, str(seconds)] + [f"{pki}/{c}.pem" for c in revoke],
                   check=True)
    return out


def revocation(crl=None, grace=None, no_crl=None):
    lines = []
    if crl:
        lines.append(f'crl_file: "{crl}"')
    if no_crl:
        lines.append(f'no_crl_ca: "{no_crl}"')
    if grace is not None:
        lines.append(f"stale_grace_seconds: {grace}")
    return "revocation {\n  " + "\n  ".join(lines) + "\n}\n"


def stack(pki, rev):
    return harness.Stack(pki, edge_kw={"extra": rev})


def refused(s, cert):
    with pytest.raises(Exception):
        harness.request(s.edge.port, harness.client_context(s.pki, cert=cert))


def test_revoked_certificate_is_refused_and_others_pass(pki):
    crl = make_crl(pki, os.path.join(tempfile.mkdtemp(), "ca.crl"), revoke=["alice"])
    s = stack(pki, revocation(crl))
    try:
        refused(s, "alice")
        event = s.edge.wait_for("tls_refused", reason="client_certificate_revoked")
        assert "0a1b2c" in event["detail"]
        assert harness.request(s.edge.port, harness.client_context(pki, cert="bob"))[0] == 200
        # Only bob's request reached the backend: the revoked certificate got nothing through.
        assert len(s.backend.backend_events(kind="start")) == 1
    finally:
        s.stop()


def test_reload_revokes_an_open_connection_at_its_next_request(pki):
    workdir = tempfile.mkdtemp()
    crl = make_crl(pki, os.path.join(workdir, "ca.crl"))
    s = stack(pki, revocation(crl))
    try:
        conn = harness.connect(s.edge.port, s.ctx)
        conn.request("GET", "/echo")
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
        make_crl(pki, crl, revoke=["alice"])
        os.kill(s.edge.pid, signal.SIGHUP)
        s.edge.wait_for("revocation_loaded", version=2)
        conn.request("GET", "/echo")
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 403
        assert s.edge.wait_for("request", status=403)["reason"] == "client_certificate_revoked"
        conn.close()
        refused(s, "alice")
    finally:
        s.stop()


def test_crl_with_a_bad_signature_is_rejected_and_the_previous_set_kept(pki):
    workdir = tempfile.mkdtemp()
    crl = make_crl(pki, os.path.join(workdir, "ca.crl"), revoke=["alice"])
    s = stack(pki, revocation(crl))
    try:
        # Flip a byte inside the signature (the end of the DER): the CRL no longer verifies.
        der = subprocess.run(["openssl", "crl", "-in", crl, "-outform", "DER"], capture_output=True,
                             check=True).stdout
        forged = bytearray(der)
        forged[-5] ^= 0xFF
        open(crl, "wb").write(bytes(forged))
        os.kill(s.edge.pid, signal.SIGHUP)
        failed = s.edge.wait_for("revocation_reload_failed")
        assert "signature does not verify" in failed["detail"]
        refused(s, "alice")  # the previous set (alice revoked) still applies
        check = subprocess.run([harness.EDGE_BIN, "--config", s.edge.config_path, "--check-config"],
                               capture_output=True, text=True)
        assert check.returncode == 1
        assert "revocation.crl_file" in check.stderr and "signature does not verify" in check.stderr
    finally:
        s.stop()


def test_stale_crl_fails_closed_unless_a_grace_period_is_set(pki):
    workdir = tempfile.mkdtemp()
    crl = make_crl(pki, os.path.join(workdir, "ca.crl"), seconds=1)
    time.sleep(2.1)
    s = stack(pki, revocation(crl))
    try:
        refused(s, "bob")
        assert s.edge.wait_for("tls_refused")["reason"] == "crl_stale"
    finally:
        s.stop()
    s = stack(pki, revocation(crl, grace=3600))
    try:
        assert harness.request(s.edge.port, harness.client_context(pki, cert="bob"))[0] == 200
    finally:
        s.stop()


def test_every_ca_needs_a_crl_or_an_explicit_no_crl(pki):
    workdir = tempfile.mkdtemp()
    path = os.path.join(workdir, "edge.conf")
    text = harness.edge_config(pki, [7443], os.path.join(workdir, "e.log"),
                               extra="revocation {\n  stale_grace_seconds: 0\n}\n")
    open(path, "w").write(text)
    r = subprocess.run([harness.EDGE_BIN, "--config", path, "--check-config"], capture_output=True, text=True)
    assert r.returncode == 1
    assert "revocation.no_crl_ca: no CRL for CA " + DEVICE_CA in r.stderr
    s = stack(pki, revocation(no_crl=DEVICE_CA))
    try:
        assert harness.request(s.edge.port, s.ctx)[0] == 200
    finally:
        s.stop()
