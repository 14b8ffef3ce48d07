#!/usr/bin/python3
"""A stand-in HTTPS backend for tests and the demo: reports what it was sent, streams large bodies.

    echo_backend.py --cert backend.pem --key backend.key --port-file F [--events F]
                    [--client-ca CA]   (then a client certificate is required: bridging tests)

Paths:
  /download?bytes=N[&chunked=1]   N bytes of a fixed pattern (Content-Length unless chunked=1)
  /slow?bytes=N&delay=S           like download, sleeping S seconds between 64 KiB chunks
  /hold?seconds=S                 answers after S seconds (a long-poll); notices an abandoned request
  anything else                   JSON: method, path, headers, body length and SHA-256

Every request start and end is appended to the events file as one JSON line, so tests can see
what the backend saw (e.g. that a cancelled request was aborted here too).
"""
import argparse
import hashlib
import http.server
import json
import select
import socket
import ssl
import sys
import threading
import time
import urllib.parse

BLOCK = bytes(range(256)) * 4096  # 1 MiB pattern
EVENTS_LOCK = threading.Lock()
EVENTS_PATH = None


def event(**fields):
    if not EVENTS_PATH:
        return
    fields["t"] = time.time()
    with EVENTS_LOCK, open(EVENTS_PATH, "a") as f:
        f.write(json.dumps(fields) + "\n")


def peer_gone(sock):
    """True when the peer closed its side: readable with nothing to read."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        raw = sock
        if isinstance(sock, ssl.SSLSocket):
            # Peek at the TCP layer: a FIN shows as readable + 0 bytes.
            raw = socket.socket(fileno=sock.fileno())
            try:
                data = raw.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            finally:
                raw.detach()
            return data == b""
        return sock.recv(1, socket.MSG_PEEK) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "echo-backend"

    def log_message(self, fmt, *args):  # quiet: the events file is the record
        pass

    def read_body(self):
        """Streams the request body, returning (length, sha256 hex)."""
        digest = hashlib.sha256()
        total = 0

        def consume(left):
            nonlocal total
            while left:
                data = self.rfile.read(min(left, 1 << 20))
                if not data:
                    raise ConnectionError("body ended early")
                digest.update(data)
                total += len(data)
                left -= len(data)

        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size_line = self.rfile.readline()
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                consume(size)
                self.rfile.readline()
        else:
            consume(int(self.headers.get("Content-Length", "0") or 0))
        return total, digest.hexdigest()

    def handle_any(self):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        rid = self.headers.get("X-Test-Id", "")
        event(kind="start", id=rid, method=self.command, path=url.path)
        try:
            body_len, body_sha = self.read_body()
        except (ConnectionError, ValueError, OSError) as e:
            event(kind="upload_aborted", id=rid, error=str(e))
            self.close_connection = True
            return
        try:
            if url.path == "/download":
                self.send_stream(int(query.get("bytes", "0")), query.get("chunked") == "1", 0.0, rid)
            elif url.path == "/slow":
                self.send_stream(int(query.get("bytes", "0")), False, float(query.get("delay", "0.1")), rid)
            elif url.path == "/hold":
                self.hold(float(query.get("seconds", "10")), rid)
            else:
                self.send_json(body_len, body_sha)
            event(kind="done", id=rid, path=url.path)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError) as e:
            event(kind="aborted", id=rid, path=url.path, error=type(e).__name__)
            self.close_connection = True

    def send_json(self, body_len, body_sha):
        cert = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) else None
        subject = ""
        if cert:
            subject = ",".join(f"{k}={v}" for rdn in cert.get("subject", ()) for k, v in rdn)
        payload = json.dumps({
            "method": self.command,
            "path": self.path,
            "headers": {k: v for k, v in self.headers.items()},
            "body_len": body_len,
            "body_sha256": body_sha,
            "tls_client_subject": subject,
        }, indent=1).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def send_stream(self, total, chunked, delay, rid):
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(total))
        self.end_headers()
        sent = 0
        step = 65536 if delay else len(BLOCK)
        while sent < total:
            n = min(step, total - sent)
            data = BLOCK[:n]
            if chunked:
                self.wfile.write(b"%x\r\n" % n + data + b"\r\n")
            else:
                self.wfile.write(data)
            sent += n
            if delay:
                self.wfile.flush()
                time.sleep(delay)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def hold(self, seconds, rid):
        deadline = time.time() + seconds
        while time.time() < deadline:
            if peer_gone(self.connection):
                event(kind="aborted", id=rid, path="/hold", error="peer closed while held")
                self.close_connection = True
                return
            time.sleep(0.05)
        payload = b'{"held": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_HEAD = do_OPTIONS = do_DELETE = handle_any


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


def main():
    global EVENTS_PATH
    ap = argparse.ArgumentParser()
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--client-ca")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--events")
    args = ap.parse_args()
    EVENTS_PATH = args.events

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(args.cert, args.key)
    if args.client_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(args.client_ca)
    server = Server((args.host, args.port), Handler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    port = server.server_address[1]
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write(str(port))
        import os
        os.rename(args.port_file + ".tmp", args.port_file)
    print(f"echo-backend listening on {args.host}:{port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
