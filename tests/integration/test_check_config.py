"""--check-config: validate and exit, like nginx -t. One clear message per problem, non-zero exit."""
import os
import subprocess
import tempfile

import pytest

import harness


@pytest.fixture(scope="module")
def pki():
    return harness.make_pki(tempfile.mkdtemp(prefix="orthrus-pki-"))


def run(binary, path):
    return subprocess.run([binary, "--config", path, "--check-config"], capture_output=True, text=True)


def write(text):
    fd, path = tempfile.mkstemp(suffix=".conf")
    os.write(fd, text.encode())
    os.close(fd)
    return path


def test_valid_configs_pass(pki):
    edge = run(harness.EDGE_BIN, write(harness.edge_config(pki, [7443], "/tmp/e.log")))
    assert edge.returncode == 0, edge.stderr
    assert "is valid" in edge.stdout
    broker = run(harness.BROKER_BIN, write(harness.broker_config(pki, 7443, 8443, "/tmp/b.log")))
    assert broker.returncode == 0, broker.stderr


def test_unknown_key_names_key_and_line(pki):
    text = harness.edge_config(pki, [7443], "/tmp/e.log").replace("threads: 2", "treads: 2")
    path = write(text)
    line = text[: text.index("treads")].count("\n") + 1
    r = run(harness.EDGE_BIN, path)
    assert r.returncode == 1
    assert f"{path}:{line}:" in r.stderr
    assert "unknown key 'treads'" in r.stderr


def test_missing_file(pki):
    r = run(harness.BROKER_BIN, "/nonexistent/broker.conf")
    assert r.returncode == 1
    assert "/nonexistent/broker.conf" in r.stderr


def test_bad_pem_names_key_and_line(pki):
    bad = write("-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n")
    text = harness.broker_config(pki, 7443, 8443, "/tmp/b.log").replace(
        f'device_ca_file: "{pki}/device-ca.pem"', f'device_ca_file: "{bad}"')
    path = write(text)
    line = text[: text.index("device_ca_file")].count("\n") + 1
    r = run(harness.BROKER_BIN, path)
    assert r.returncode == 1
    assert f"{path}:{line}: device_ca_file: {bad}: not valid PEM" in r.stderr


def test_bad_address_names_key_and_line(pki):
    text = harness.edge_config(pki, [7443], "/tmp/e.log").replace(
        'address: "127.0.0.1:7443"', 'address: "127.0.0.1:seventy"')
    path = write(text)
    r = run(harness.EDGE_BIN, path)
    assert r.returncode == 1
    assert "broker[0].address: '127.0.0.1:seventy' is not a valid host:port address" in r.stderr
    assert f"{path}:" in r.stderr


def test_usage_errors_exit_2():
    r = subprocess.run([harness.EDGE_BIN], capture_output=True, text=True)
    assert r.returncode == 2
    assert "usage" in r.stderr


@pytest.mark.parametrize("binary,example", [
    (harness.EDGE_BIN, "edge.conf.example"),
    (harness.BROKER_BIN, "broker.conf.example"),
])
def test_example_configs_use_only_known_keys(binary, example):
    # The examples point at files that exist only on a real host: every complaint must be about a
    # missing file, never about syntax or an unknown key.
    path = os.path.join(harness.SOURCE_DIR, "deploy", "config", example)
    r = run(binary, path)
    assert r.returncode == 1
    problems = [l for l in r.stderr.splitlines()[1:] if l.strip()]
    assert problems
    for line in problems:
        assert "cannot read" in line, line


def test_publishing_rule_problems_are_all_reported_with_their_lines(pki):
    rules = f"""
rule {{ name: "eas" host: "Mail.corp.example" path_prefix: "Microsoft-Server-ActiveSync" }}
rule {{ name: "eas" authentication: "kerberos" }}
rule {{ name: "internal" client_ca_file: "{pki}/internal-ca.pem" max_chain_depth: 11 }}
rule {{ name: "owa" host: "*.corp.example" path_prefix: "/owa" basic_realm: "say \\"hi\\"" }}
rule {{ name: "owa2" host: "*.corp.example" path_prefix: "/OWA/" }}
password_limits {{ account_failures: 0 }}
"""
    text = harness.edge_config(pki, [7443], "/tmp/e.log", extra=rules,
                               listen_extra="  clock_skew_seconds: 90000")
    path = write(text)
    r = run(harness.EDGE_BIN, path)
    assert r.returncode == 1
    want = [
        "rule[0].host[0]: write host names in lower case",
        "rule[0].path_prefix[0]: must start with '/'",
        "rule[1].name: duplicate rule name",
        'rule[1].authentication: must be "certificate", "certificate-or-password", '
        '"certificate-and-password" or "password"',
        "rule[2].client_ca_file: holds a CA that is not in listen.client_ca_file",
        "rule[2].max_chain_depth: must be between 0 and 10",
        "rule[3].basic_realm: must not contain quotes",
        'rule[4].path_prefix: "/OWA/" on the same hosts as rule owa, which always wins',
        "password_limits.account_failures: must be greater than 0",
        "listen.clock_skew_seconds: must not exceed 86400",
    ]
    for w in want:
        assert w in r.stderr, f"missing: {w}\n{r.stderr}"
    # Each message points at its line.
    line = text[: text.index('authentication: "kerberos"')].count("\n") + 1
    assert f"{path}:{line}: rule[1].authentication" in r.stderr


def test_broker_password_rules_need_kerberos_and_matching_needs_a_directory(pki):
    text = harness.broker_config(pki, 7443, 8443, "/tmp/b.log",
                                 extra_rule='authentication: "certificate-and-password" host: "a..b"')
    r = run(harness.BROKER_BIN, write(text))
    assert r.returncode == 1
    assert "kerberos: required: a rule accepts passwords (checked with the KDC)" in r.stderr
    assert "directory: required: a rule is certificate-and-password" in r.stderr
    assert "rule[0].host[0]" in r.stderr
