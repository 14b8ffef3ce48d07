"""Starts the real orthrus-edge and orthrus-broker binaries on loopback with a throwaway PKI.

Everything here is real: processes, TLS, gRPC, TCP. Ports are chosen by the kernel (port 0, then
read back from the process's "listening" log line) except where a test must restart a process on
the same port.
"""
import hashlib
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.dirname(os.path.dirname(HERE))
BUILD_DIR = os.environ.get("ORTHRUS_BUILD_DIR", os.path.join(SOURCE_DIR, "build"))
EDGE_BIN = os.path.join(BUILD_DIR, "edge", "orthrus-edge")
BROKER_BIN = os.path.join(BUILD_DIR, "broker", "orthrus-broker")
SANITIZED = os.environ.get("ORTHRUS_SANITIZED") == "1"
PYTHON = "/usr/bin/python3"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_pki(directory):
    subprocess.run([os.path.join(SOURCE_DIR, "tests", "support", "make_pki.sh"), directory],
                   check=True, stdout=subprocess.DEVNULL)
    return directory


def cert_sha256(pem_path):
    der = ssl.PEM_cert_to_DER_cert(open(pem_path).read())
    return hashlib.sha256(der).hexdigest()


class Process:
    """A child process whose JSON-lines log we can read."""

    def __init__(self, name, argv, log_path, env=None):
        self.name = name
        self.log_path = log_path
        self.stderr_path = log_path + ".stderr"
        self.argv = argv
        self.env = env
        self.proc = None
        self.expect_clean_exit = True
        self.start()

    def start(self):
        self.stderr = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(self.argv, stdout=self.stderr, stderr=self.stderr,
                                     env=self.env, start_new_session=True)

    @property
    def pid(self):
        return self.proc.pid

    def log_lines(self):
        if not os.path.exists(self.log_path):
            return []
        out = []
        with open(self.log_path) as f:
            for line in f:
                line = line.strip()
                if line:
                    out.append(json.loads(line))
        return out

    def events(self, event, **match):
        return [e for e in self.log_lines()
                if e.get("event") == event and all(e.get(k) == v for k, v in match.items())]

    def wait_for(self, event, timeout=10.0, **match):
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = self.events(event, **match)
            if found:
                return found[-1]
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: "
                                   f"{open(self.stderr_path).read()[-2000:]}")
            time.sleep(0.02)
        raise TimeoutError(f"{self.name}: no {event} {match} in {timeout}s; log tail: "
                           f"{self.log_lines()[-5:]}")

    def wait_for_count(self, event, count, timeout=10.0):
        """The first `count` events of a kind (log lines trail the responses they describe)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = self.events(event)
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise TimeoutError(f"{self.name}: fewer than {count} {event} events in {timeout}s")

    def peak_rss_kib(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return 0

    def rss_kib(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def kill(self, sig=signal.SIGKILL):
        if self.proc and self.proc.poll() is None:
            self.expect_clean_exit = False
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)

    def stop(self, check=True):
        """SIGTERM, then insist on a clean exit: status 0 and no sanitizer report."""
        killed = False
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                killed = True
        self.stderr.close()
        if not check:
            return
        report = open(self.stderr_path, errors="replace").read()
        for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error:", "pure virtual"):
            assert marker not in report, f"{self.name}: sanitizer report:\n{report[-4000:]}"
        assert not killed, f"{self.name} did not stop within 15 s of SIGTERM"
        if self.expect_clean_exit:
            assert self.proc.returncode == 0, f"{self.name} exited {self.proc.returncode}: {report[-2000:]}"


class Backend(Process):
    def __init__(self, workdir, pki, client_ca=None, name="backend"):
        self.port_file = os.path.join(workdir, f"{name}.port")
        self.events_path = os.path.join(workdir, f"{name}.events")
        argv = [PYTHON, os.path.join(SOURCE_DIR, "tests", "support", "echo_backend.py"),
                "--cert", f"{pki}/backend.pem", "--key", f"{pki}/backend.key",
                "--port-file", self.port_file, "--events", self.events_path]
        if client_ca:
            argv += ["--client-ca", client_ca]
        super().__init__(name, argv, os.path.join(workdir, f"{name}.log"))
        deadline = time.time() + 10
        while not os.path.exists(self.port_file):
            if time.time() > deadline or self.proc.poll() is not None:
                raise RuntimeError("backend did not start")
            time.sleep(0.02)
        self.port = int(open(self.port_file).read())

    def backend_events(self, **match):
        if not os.path.exists(self.events_path):
            return []
        out = []
        for line in open(self.events_path):
            e = json.loads(line)
            if all(e.get(k) == v for k, v in match.items()):
                out.append(e)
        return out

    def wait_event(self, timeout=10.0, **match):
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = self.backend_events(**match)
            if found:
                return found[-1]
            time.sleep(0.02)
        raise TimeoutError(f"backend: no event {match} within {timeout}s")


def broker_config(pki, port, backend_port, log_path, allowed_edges=("edge-1",), extra_rule=""):
    return f"""
broker_id: "broker-test"
listen {{
  address: "127.0.0.1:{port}"
  certificate_chain_file: "{pki}/broker.pem"
  private_key_file: "{pki}/broker.key"
  edge_ca_file: "{pki}/internal-ca.pem"
  {"".join(f'allowed_edge: "{e}" ' for e in allowed_edges)}
}}
device_ca_file: "{pki}/device-ca.pem"
rule {{
  name: "all"
  path_prefix: "/"
  backend_url: "https://backend.test:{backend_port}"
  pinned_ip: "127.0.0.1"
  backend_ca_file: "{pki}/internal-ca.pem"
  identity_headers: true
  connect_timeout_ms: 2000
  {extra_rule}
}}
log {{ output: "{log_path}" level: "debug" }}
threads: 2
"""


def edge_config(pki, broker_ports, log_path, edge_cert="edge-1", port=0, limits="",
                client_ca=None, extra="", listen_extra=""):
    brokers = "".join(f'broker {{ address: "127.0.0.1:{p}" server_name: "broker.test" }}\n'
                      for p in broker_ports)
    return f"""
edge_id: "edge-test"
listen {{
  address: "127.0.0.1:{port}"
  certificate_chain_file: "{pki}/edge-server.pem"
  private_key_file: "{pki}/edge-server.key"
  client_ca_file: "{client_ca or pki + '/device-ca.pem'}"
{listen_extra}
}}
{brokers}
broker_tls {{
  certificate_chain_file: "{pki}/{edge_cert}.pem"
  private_key_file: "{pki}/{edge_cert}.key"
  ca_file: "{pki}/internal-ca.pem"
  connect_timeout_ms: 800
}}
limits {{ {limits} }}
log {{ output: "{log_path}" level: "debug" }}
threads: 2
{extra}
"""


class Broker(Process):
    def __init__(self, workdir, pki, backend_port, port=0, name="broker", config_text=None, env=None,
                 **kw):
        self.config_path = os.path.join(workdir, f"{name}.conf")
        log_path = os.path.join(workdir, f"{name}.log")
        if config_text is None:
            config_text = broker_config(pki, port, backend_port, log_path, **kw)
        with open(self.config_path, "w") as f:
            f.write(config_text.replace("@LOG@", log_path))
        super().__init__(name, [BROKER_BIN, "--config", self.config_path], log_path, env=env)
        self.port = int(self.wait_for("listening", timeout=30)["address"].rsplit(":", 1)[1])

    def restart(self):
        self.expect_clean_exit = True
        self.start()
        self.wait_for("listening", timeout=10)


class Edge(Process):
    def __init__(self, workdir, pki, broker_ports, name="edge", **kw):
        self.config_path = os.path.join(workdir, f"{name}.conf")
        log_path = os.path.join(workdir, f"{name}.log")
        with open(self.config_path, "w") as f:
            f.write(edge_config(pki, broker_ports, log_path, **kw))
        super().__init__(name, [EDGE_BIN, "--config", self.config_path], log_path)
        self.port = int(self.wait_for("listening")["address"].rsplit(":", 1)[1])


def client_context(pki, cert="alice", ca="device-ca", cert_path=None, key_path=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(f"{pki}/{ca}.pem")
    ctx.check_hostname = True
    if cert_path:
        ctx.load_cert_chain(cert_path, key_path)
    elif cert:
        ctx.load_cert_chain(f"{pki}/{cert}.pem", f"{pki}/{cert}.key")
    return ctx


def connect(port, ctx, timeout=30):
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=timeout)
    return conn


def request(port, ctx, method="GET", path="/echo", body=None, headers=None, timeout=30):
    conn = connect(port, ctx, timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, dict(resp.getheaders()), data
    finally:
        conn.close()


def raw_tls(port, ctx, payload, timeout=10):
    """Sends raw bytes over TLS and returns everything the edge answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname="edge.test") as tls:
            tls.sendall(payload)
            chunks = []
            while True:
                try:
                    data = tls.recv(65536)
                except (ssl.SSLError, ConnectionResetError):
                    break
                if not data:
                    break
                chunks.append(data)
            return b"".join(chunks)


def stop_all(edge, broker, backend):
    """Stops all three, then insists the edge and broker exited cleanly (the stand-in backend may not)."""
    errors = []
    for p in (edge, broker, backend):
        try:
            p.stop(check=p is not backend)
        except AssertionError as e:
            errors.append(str(e))
    assert not errors, "\n".join(errors)


class Stack:
    """Backend + broker + edge, started in a temporary directory."""

    def __init__(self, pki, workdir=None, broker_kw=None, edge_kw=None, fixed_broker_port=False):
        self.workdir = workdir or tempfile.mkdtemp(prefix="orthrus-it-")
        self.pki = pki
        self.backend = Backend(self.workdir, pki)
        bport = free_port() if fixed_broker_port else 0
        self.broker = Broker(self.workdir, pki, self.backend.port, port=bport, **(broker_kw or {}))
        self.edge = Edge(self.workdir, pki, [self.broker.port], **(edge_kw or {}))
        self.ctx = client_context(pki)

    def stop(self):
        stop_all(self.edge, self.broker, self.backend)
