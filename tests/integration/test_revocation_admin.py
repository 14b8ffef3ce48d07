"""The broker's revocation admin channel end to end: orthrusctl against a running orthrus-broker.

Real processes on loopback: the broker with its revocation service (SQLite database, a CRL file
source) and its admin listener (mutual TLS with admin certificates from the test PKI's internal CA),
orthrusctl as the administrator. Covers every kind of key, listing, status, unrevoke, refusals (an
admin not on the allow list, an untrusted admin certificate, bad keys), durability across kill -9,
a CRL with a bad signature rejected while the previous one stays in force, and config errors.
"""
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

import harness

CTL_BIN = os.path.join(harness.BUILD_DIR, "tools", "orthrusctl", "orthrusctl")
MAKE_CRL = os.path.join(harness.SOURCE_DIR, "tests", "support", "make_crl.sh")
DEVICE_CA_SUBJECT = "/O=Orthrus Test/CN=Orthrus Test Device CA"


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_admin_cert(pki, name, serial, san=None, ca="internal-ca"):
    """An administrator's client certificate, made like make_pki.sh's leafs."""
    key, csr, ext, pem = (f"{pki}/{name}.{s}" for s in ("key", "csr", "ext", "pem"))
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-sha256", "-keyout", key, "-out", csr,
            "-subj", f"/CN={name}")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=clientAuth\n")
        if san:
            f.write(f"subjectAltName={san}\n")
    openssl("x509", "-req", "-in", csr, "-CA", f"{pki}/{ca}.pem", "-CAkey", f"{pki}/{ca}.key",
            "-set_serial", serial, "-days", "30", "-sha256", "-extfile", ext, "-out", pem)
    os.chmod(key, 0o600)
    os.remove(csr)
    os.remove(ext)
    return pem, key


def make_crl(pki, out, *revoked):
    subprocess.run([MAKE_CRL, pki, "device-ca", out, "86400", *revoked], check=True,
                   capture_output=True)


def make_forged_crl(workdir, out):
    """A CRL that names the device CA as issuer but is signed with another key (a bad signature).
    It lists nothing: an attacker's attempt to un-revoke everyone."""
    impostor = os.path.join(workdir, "impostor")
    os.makedirs(impostor, exist_ok=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "30",
            "-keyout", f"{impostor}/device-ca.key", "-out", f"{impostor}/device-ca.pem",
            "-subj", DEVICE_CA_SUBJECT, "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    subprocess.run([MAKE_CRL, impostor, "device-ca", out, "86400"], check=True, capture_output=True)


def revocation_section(pki, workdir, admin_port, crl_file=None, allowed=("admin-1", "ops@corp.test")):
    source = f'crl_source {{ file: "{crl_file}" }}' if crl_file else ""
    return f"""
revocation {{
  database_file: "{workdir}/revocation.db"
  {source}
  crl_ca_file: "{pki}/device-ca.pem"
  heartbeat_interval_ms: 500
  admin {{
    address: "127.0.0.1:{admin_port}"
    certificate_chain_file: "{pki}/broker.pem"
    private_key_file: "{pki}/broker.key"
    admin_ca_file: "{pki}/internal-ca.pem"
    {"".join(f'allowed_admin: "{a}" ' for a in allowed)}
  }}
}}
"""


class AdminStack:
    """A broker with the revocation section; orthrusctl against its admin listener."""

    def __init__(self, pki, crl=True):
        self.pki = pki
        self.workdir = tempfile.mkdtemp(prefix="orthrus-revadmin-")
        self.crl_file = os.path.join(self.workdir, "device.crl") if crl else None
        if crl:
            make_crl(pki, self.crl_file, f"{pki}/bob.pem")
        self.admin_port = harness.free_port()
        self.port = harness.free_port()
        self.broker = harness.Broker(
            self.workdir, pki, 9, port=self.port,
            config_text=harness.broker_config(pki, self.port, 9, "@LOG@")
            + revocation_section(pki, self.workdir, self.admin_port, self.crl_file))
        self.broker.wait_for("admin_listening")
        self.admin = (f"{pki}/admin-1.pem", f"{pki}/admin-1.key")

    def ctl(self, *args, cert=None):
        admin_cert, admin_key = cert or self.admin
        return subprocess.run([CTL_BIN, "--broker", f"127.0.0.1:{self.admin_port}", "--cert", admin_cert,
                               "--key", admin_key, "--ca", f"{self.pki}/internal-ca.pem",
                               "--server-name", "broker.test", "--timeout-ms", "10000", *args],
                              capture_output=True, text=True, timeout=30)

    def ok(self, *args, **kw):
        r = self.ctl(*args, **kw)
        assert r.returncode == 0, f"orthrusctl {args}: rc {r.returncode}\n{r.stdout}\n{r.stderr}"
        return r.stdout

    def restart_after_kill(self):
        self.broker.kill()
        starts = len(self.broker.events("listening"))
        self.broker.expect_clean_exit = True
        self.broker.start()
        self.broker.wait_for_count("listening", starts + 1, timeout=30)

    def stop(self):
        self.broker.stop(check=self.broker.expect_clean_exit)
        shutil.rmtree(self.workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def pki():
    d = harness.make_pki(tempfile.mkdtemp(prefix="orthrus-pki-"))
    make_admin_cert(d, "admin-1", "0x3001")
    make_admin_cert(d, "admin-2", "0x3002")  # right CA, not on the allow list
    make_admin_cert(d, "ops-desk", "0x3003", san="email:ops@corp.test")  # allowed by e-mail SAN
    make_admin_cert(d, "rogue-admin", "0x3004", ca="rogue-ca")  # a CA the admin listener does not trust
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_revoke_every_kind_list_status_unrevoke(pki):
    s = AdminStack(pki)
    try:
        out = s.ok("revoke", "--issuer", "CN=Orthrus Test Device CA,O=Orthrus Test", "--serial", "0B0B",
                   "--reason", "key compromise, ticket 4711", "--wait-ms", "0")
        assert out.startswith("revoked: issuer_serial"), out
        assert "0b0b" in out and "admin-1" in out and "key compromise" in out, out
        assert "acknowledged by 0 of 0 connected edges" in out, out

        sha = harness.cert_sha256(f"{pki}/alice.pem")
        out = s.ok("revoke", "--cert-sha256", sha, "--reason", "lost phone")
        assert sha in out.lower(), out
        out = s.ok("revoke", "--account", "ALICE@corp.test", "--reason", "left the company")
        assert "account alice@corp.test" in out, out
        out = s.ok("revoke", "--device-id", "PHONE42", "--reason", "stolen")
        assert "device_id phone42" in out, out
        # The same key again: stored once.
        out = s.ok("revoke", "--account", "alice@CORP.TEST", "--reason", "again")
        assert out.startswith("already revoked:"), out
        # By the device's certificate file (issuer DER + serial taken from the certificate).
        out = s.ok("revoke", "--device-cert", f"{pki}/alice.pem", "--reason", "lost phone")
        assert "0a1b2c" in out, out

        listed = s.ok("list-revoked")
        for want in ("issuer_serial", "0b0b", "0a1b2c", sha, "account alice@corp.test", "device_id phone42",
                     "admin-1", "key compromise, ticket 4711", "left the company"):
            assert want in listed.lower() if want == sha else want in listed, (want, listed)
        accounts = s.ok("list-revoked", "--kind", "account")
        assert "alice@corp.test" in accounts and "phone42" not in accounts, accounts
        assert "crl\t" in listed and "serials 1" in listed, listed  # the CRL file's summary

        status = s.ok("status")
        assert "5 instant revocations" in status, status
        assert "acknowledged by 0 of 0 connected edges" in status, status

        out = s.ok("unrevoke", "--account", "alice@corp.test", "--reason", "rehired")
        assert out.startswith("unrevoked: account alice@corp.test"), out
        listed = s.ok("list-revoked")
        assert "account alice@corp.test" not in listed, listed
        assert "4 instant revocations" in s.ok("status")
        s.broker.wait_for("revocation_unrevoked", by="admin-1")

        # Refusals carry the code first.
        r = s.ctl("unrevoke", "--account", "alice@corp.test", "--reason", "twice")
        assert r.returncode == 1 and r.stderr.startswith("orthrusctl: revocation_not_found:"), r.stderr
        r = s.ctl("revoke", "--cert-sha256", "abcd", "--reason", "short")
        assert r.returncode == 1 and "revocation_invalid_key:" in r.stderr, r.stderr
        r = s.ctl("revoke", "--issuer", "CN=Nobody,O=Nowhere", "--serial", "01", "--reason", "unknown CA")
        assert r.returncode == 1 and "revocation_invalid_key:" in r.stderr, r.stderr
        r = s.ctl("list-revoked", "--kind", "everything")
        assert r.returncode == 1 and "revocation_invalid_request:" in r.stderr, r.stderr
    finally:
        s.stop()


def test_admins_not_on_the_allow_list_are_refused(pki):
    s = AdminStack(pki, crl=False)
    try:
        r = s.ctl("status", cert=(f"{pki}/admin-2.pem", f"{pki}/admin-2.key"))
        assert r.returncode == 1, r
        assert r.stderr.startswith("orthrusctl: admin_not_allowed:"), r.stderr
        refused = s.broker.wait_for("admin_refused")
        assert refused["reason"] == "admin_not_allowed" and "admin-2" in refused["certificate"]
        r = s.ctl("revoke", "--account", "bob", "--reason", "x", cert=(f"{pki}/admin-2.pem", f"{pki}/admin-2.key"))
        assert r.returncode == 1 and "admin_not_allowed" in r.stderr
        # A certificate from a CA the admin listener does not trust: the TLS handshake fails.
        r = s.ctl("status", cert=(f"{pki}/rogue-admin.pem", f"{pki}/rogue-admin.key"))
        assert r.returncode == 3, r
        # An edge certificate (right CA, an edge's name) is not an administrator either.
        r = s.ctl("status", cert=(f"{pki}/edge-1.pem", f"{pki}/edge-1.key"))
        assert r.returncode == 1 and "admin_not_allowed" in r.stderr, r.stderr
        # Allowed by its e-mail SAN: recorded as that name.
        out = s.ok("revoke", "--account", "bob", "--reason", "test", cert=(f"{pki}/ops-desk.pem", f"{pki}/ops-desk.key"))
        assert "revoked by ops@corp.test" in out, out
        assert "account bob" in s.ok("list-revoked")
        # Nothing was stored by the refused calls.
        assert "1 instant revocations" in s.ok("status")
    finally:
        s.stop()


def test_revocations_survive_kill_9(pki):
    s = AdminStack(pki, crl=False)
    try:
        s.ok("revoke", "--account", "carol@corp.test", "--reason", "before the crash")
        s.ok("revoke", "--device-id", "PHONE7", "--reason", "before the crash")
        before = s.ok("status").splitlines()[0]
        s.restart_after_kill()
        listed = s.ok("list-revoked")
        assert "account carol@corp.test" in listed and "device_id phone7" in listed, listed
        assert "before the crash" in listed and "admin-1" in listed, listed
        after = s.ok("status").splitlines()[0]
        assert after == before, (before, after)  # same feed id, same version: edges catch up by delta
        # And the database keeps working after the restart.
        s.ok("unrevoke", "--device-id", "phone7", "--reason", "found")
        assert "device_id phone7" not in s.ok("list-revoked")
    finally:
        s.stop()


def test_a_crl_with_a_bad_signature_is_rejected_and_the_previous_kept(pki):
    s = AdminStack(pki)
    try:
        status = s.ok("status")
        assert "serials 1" in status and "Orthrus Test Device CA" in status, status
        version = s.ok("status").splitlines()[0]

        make_forged_crl(s.workdir, s.crl_file)
        out = s.ok("refresh-crls")
        assert "last error crl_bad_signature" in out, out
        assert "serials 1" in out, out  # the CRL in force is still the verified one
        failed = s.broker.wait_for("crl_refresh_failed", code="crl_bad_signature")
        assert s.crl_file in failed["source"] and failed["detail"], failed
        status = s.ok("status")
        assert "last error crl_bad_signature" in status and "serials 1" in status, status
        assert status.splitlines()[0] == version, status  # no new version was pushed

        # A genuine, newer CRL is accepted again (thisUpdate has one-second resolution).
        time.sleep(1.1)
        make_crl(pki, s.crl_file, f"{pki}/bob.pem", f"{pki}/alice.pem")
        out = s.ok("refresh-crls")
        assert "serials 2" in out and "last error" not in out, out
    finally:
        s.stop()


def test_revocation_config_errors_name_file_and_line(pki):
    workdir = tempfile.mkdtemp(prefix="orthrus-revadmin-cfg-")
    try:
        config = harness.broker_config(pki, 7443, 9, f"{workdir}/broker.log") + f"""
revocation {{
  database_file: "{workdir}/no-such-dir/revocation.db"
  crl_source {{ url: "https://crl.example/ca.crl" }}
  crl_source {{ file: "{workdir}/missing.crl" }}
  crl_ca_file: "{workdir}/missing-ca.pem"
  heartbeat_interval_ms: 5
  admin {{
    address: "127.0.0.1:7444"
    certificate_chain_file: "{pki}/broker.pem"
    private_key_file: "{pki}/broker.key"
    admin_ca_file: "{pki}/internal-ca.pem"
  }}
}}
"""
        path = os.path.join(workdir, "broker.conf")
        with open(path, "w") as f:
            f.write(config)
        r = subprocess.run([harness.BROKER_BIN, "--config", path, "--check-config"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 1, r
        lines = r.stderr
        for want in ("revocation.database_file: directory", "revocation.crl_source[0].url:",
                     "revocation.crl_source[1].file: cannot read", "revocation.crl_ca_file[0]:",
                     "revocation.heartbeat_interval_ms: must be between",
                     "revocation.admin.allowed_admin: at least one"):
            assert want in lines, (want, lines)
        assert "broker.conf:" in lines, lines

        # Without an admin section.
        with open(path, "w") as f:
            f.write(harness.broker_config(pki, 7443, 9, f"{workdir}/broker.log")
                    + f'revocation {{ database_file: "{workdir}/revocation.db" }}\n')
        r = subprocess.run([harness.BROKER_BIN, "--config", path, "--check-config"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 1 and "revocation.admin: required section is missing" in r.stderr, r.stderr

        # A valid section.
        with open(path, "w") as f:
            f.write(harness.broker_config(pki, 7443, 9, f"{workdir}/broker.log")
                    + revocation_section(pki, workdir, 7444))
        r = subprocess.run([harness.BROKER_BIN, "--config", path, "--check-config"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_an_admin_address_in_use_stops_the_broker_at_start(pki):
    workdir = tempfile.mkdtemp(prefix="orthrus-revadmin-busy-")
    busy = socket.socket()
    try:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        admin_port = busy.getsockname()[1]
        path = os.path.join(workdir, "broker.conf")
        with open(path, "w") as f:
            f.write(harness.broker_config(pki, 0, 9, f"{workdir}/broker.log")
                    + revocation_section(pki, workdir, admin_port))
        r = subprocess.run([harness.BROKER_BIN, "--config", path], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 1, r
        assert f"revocation.admin.address 127.0.0.1:{admin_port}" in r.stderr, r.stderr
    finally:
        busy.close()
        shutil.rmtree(workdir, ignore_errors=True)
