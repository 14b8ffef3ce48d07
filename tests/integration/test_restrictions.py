"""listen.restrictions: certificates that verify but miss an operator requirement are refused after
the handshake with reason client_certificate_restricted, the log naming the failed restriction."""
import os
import subprocess
import tempfile

import pytest

import harness

DEVICE_CA = "CN=Orthrus Test Device CA,O=Orthrus Test"
SMARTCARD_LOGON = "1.3.6.1.4.1.311.20.2.2"


@pytest.fixture(scope="module")
def pki():
    pki = harness.make_pki(tempfile.mkdtemp(prefix="orthrus-pki-"))
    # A smart-card style certificate from the same device CA: EC P-256, smartcardLogon next to
    # clientAuth (the TLS purpose check still needs clientAuth), a policy OID, a UPN.
    ext = os.path.join(pki, "smartcard.ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature\n"
                f"extendedKeyUsage=clientAuth,{SMARTCARD_LOGON}\n"
                "certificatePolicies=1.3.6.1.4.1.99999.1.2\n"
                "subjectAltName=otherName:1.3.6.1.4.1.311.20.2.3;UTF8:carol@corp.test\n")
    base = os.path.join(pki, "smartcard")
    subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", base + ".key", "-out", base + ".csr",
                    "-subj", "/O=Corp/CN=carol"], check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", base + ".csr", "-CA", f"{pki}/device-ca.pem",
                    "-CAkey", f"{pki}/device-ca.key", "-set_serial", "0x5c01", "-days", "30",
                    "-sha256", "-extfile", ext, "-out", base + ".pem"], check=True,
                   capture_output=True)
    return pki


def stack(pki, restrictions):
    return harness.Stack(pki, edge_kw={"listen_extra": "restrictions {\n" + restrictions + "\n}"})


def ok(s, cert):
    return harness.request(s.edge.port, harness.client_context(s.pki, cert=cert))[0] == 200


def refused(s, cert):
    with pytest.raises(Exception):
        harness.request(s.edge.port, harness.client_context(s.pki, cert=cert))


def refusal(s, subject):
    event = s.edge.wait_for("tls_refused", reason="client_certificate_restricted", subject=subject)
    assert "listen.restrictions" in event["hint"]
    return event


def test_required_eku_refuses_client_auth_only_certificates(pki):
    s = stack(pki, 'required_eku: "smartcardLogon"')
    try:
        refused(s, "alice")
        event = refusal(s, "CN=alice,O=Corp")
        assert event["detail"].startswith(f"required_eku {SMARTCARD_LOGON}"), event
        assert ok(s, "smartcard")
        # The refused device never reached the broker.
        assert not s.broker.events("request", subject="CN=alice,O=Corp")
    finally:
        s.stop()


def test_subject_pattern(pki):
    s = stack(pki, r'subject_pattern: "CN=(alice|bob),O=Corp"')
    try:
        assert ok(s, "alice")
        assert ok(s, "bob")
        refused(s, "smartcard")
        assert refusal(s, "CN=carol,O=Corp")["detail"].startswith("subject_pattern")
    finally:
        s.stop()


def test_allowed_issuer(pki):
    s = stack(pki, 'allowed_issuer: "CN=Some Other CA,O=Corp"')
    try:
        refused(s, "alice")
        detail = refusal(s, "CN=alice,O=Corp")["detail"]
        assert detail.startswith("allowed_issuer") and DEVICE_CA in detail, detail
    finally:
        s.stop()
    s = stack(pki, f'allowed_issuer: "{DEVICE_CA}"')
    try:
        assert ok(s, "alice")
    finally:
        s.stop()


def test_combined_restrictions(pki):
    s = stack(pki, f'''allowed_issuer: "{DEVICE_CA}"
    san_pattern: ".*@corp\\\\.test"
    required_policy: "1.3.6.1.4.1.99999.1.2"
    key_type: "ec:256"
    max_validity_days: 90''')
    try:
        assert ok(s, "smartcard")
        refused(s, "alice")
        assert refusal(s, "CN=alice,O=Corp")["detail"].startswith(
            "required_policy 1.3.6.1.4.1.99999.1.2")
    finally:
        s.stop()


def test_invalid_restrictions_fail_check_config_naming_line_and_key(pki):
    workdir = tempfile.mkdtemp(prefix="orthrus-it-restr-")
    text = harness.edge_config(pki, [7443], os.path.join(workdir, "edge.log"),
                               listen_extra='restrictions {\n  san_pattern: "(unclosed"\n'
                                            '  required_eku: "smartcard"\n}')
    path = os.path.join(workdir, "edge.conf")
    with open(path, "w") as f:
        f.write(text)
    lines = text.splitlines()
    san_line = next(i for i, l in enumerate(lines, 1) if "san_pattern" in l)
    res = subprocess.run([harness.EDGE_BIN, "--config", path, "--check-config"],
                         capture_output=True, text=True)
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    assert f"{path}:{san_line}: listen.restrictions.san_pattern[0]: invalid regular expression" in out, out
    assert f"{path}:{san_line + 1}: listen.restrictions.required_eku[0]: 'smartcard'" in out, out
