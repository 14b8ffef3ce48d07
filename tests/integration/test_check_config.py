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
