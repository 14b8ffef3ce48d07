"""Requests/s through edge + broker with Kerberos constrained delegation, warm vs cold ticket cache.

Run inside the test domain's namespace by kcd_bench.sh (it provisions and removes the domain).
- warm: alice's delegated credential and service ticket are cached; N sequential requests on one
  keep-alive connection, then C concurrent connections for T seconds.
- cold: a user's first request (certificate -> LDAP search -> S4U2Self -> S4U2Proxy -> backend), measured
  on a fresh broker whose LDAP connection was already opened by another user, repeated R times.
The backend is Apache + mod_auth_gssapi running a CGI per request, which bounds the warm figures.
"""
import json
import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness  # noqa: E402
from test_kcd import KcdStack, rule  # noqa: E402
import subprocess  # noqa: E402

PATH = "/Microsoft-Server-ActiveSync?Cmd=Sync"


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def warm_sequential(stack, n):
    conn = harness.connect(stack.edge.port, stack.ctx("alice"))
    lat = []
    for _ in range(n):
        t = time.perf_counter()
        conn.request("GET", PATH)
        r = conn.getresponse()
        body = r.read()
        lat.append(time.perf_counter() - t)
        assert r.status == 200 and b"alice@CORP.TEST" in body
    conn.close()
    return lat


def warm_concurrent(stack, clients, seconds):
    stop = time.time() + seconds
    counts, lats, errors = [0] * clients, [], []
    lock = threading.Lock()

    def run(i):
        conn = harness.connect(stack.edge.port, stack.ctx("alice"))
        while time.time() < stop:
            t = time.perf_counter()
            conn.request("GET", PATH)
            r = conn.getresponse()
            r.read()
            d = time.perf_counter() - t
            if r.status != 200:
                errors.append(r.status)
            counts[i] += 1
            with lock:
                lats.append(d)
        conn.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.time() - t0), lats, errors


def cold(repeats):
    lat = []
    for _ in range(repeats):
        s = KcdStack()
        try:
            assert s.get("alice")[0] == 200  # opens LDAP, logs the broker in
            t = time.perf_counter()
            status, _, body = s.get("carol")
            lat.append(time.perf_counter() - t)
            assert status == 200 and b"carol@CORP.TEST" in body
        finally:
            s.stop()
    return lat


LOADGEN = os.path.join(harness.BUILD_DIR, "tools", "loadgen", "orthrus-loadgen")


def loadgen_rows(connections, seconds):
    """orthrus-loadgen against one edge + broker, static 1 KiB and 64 KiB files on the Kerberos
    backend: with constrained delegation (warm: one user, credentials cached) and, for the cost of
    Kerberos itself, certificate-only to the same files without Negotiate."""
    spn = os.environ["TD_BACKEND_SPN"]
    rules = (rule("kcd", "/bench/kcd", spn, extra="max_idle_connections: 64") +
             rule("open", "/bench/open", spn, extra="max_idle_connections: 64")
             .replace(f'spn: "{spn}"', ""))
    stack = KcdStack(rules=rules)
    rows = []
    try:
        assert stack.get("alice", "/bench/kcd/1k")[0] == 200  # warms the user's credentials
        for path in ("/bench/open/1k", "/bench/kcd/1k", "/bench/open/64k", "/bench/kcd/64k"):
            out = subprocess.run(
                [LOADGEN, "--target", f"127.0.0.1:{stack.edge.port}", "--server-name", "edge.test",
                 "--ca", f"{stack.pki}/device-ca.pem", "--cert", os.environ["TD_CERT_ALICE"],
                 "--key", os.environ["TD_KEY_ALICE"], "--path", path, "--connections", str(connections),
                 "--duration", str(seconds), "--warmup", "1", "--pid", f"edge={stack.edge.pid}",
                 "--pid", f"broker={stack.broker.pid}", "--json"],
                capture_output=True, text=True, timeout=seconds + 60)
            if not out.stdout.strip().startswith("{"):
                raise RuntimeError(f"orthrus-loadgen failed: {out.stderr}")
            rows.append((path, json.loads(out.stdout)))
    finally:
        stack.stop()
    return rows


def main():
    n = int(os.environ.get("BENCH_REQUESTS", "500"))
    clients = int(os.environ.get("BENCH_CLIENTS", "8"))
    seconds = float(os.environ.get("BENCH_SECONDS", "10"))
    repeats = int(os.environ.get("BENCH_COLD_REPEATS", "20"))
    stack = KcdStack()
    try:
        stack.get("alice")
        seq = warm_sequential(stack, n)
        rps, lats, errors = warm_concurrent(stack, clients, seconds)
    finally:
        stack.stop()
    cold_lat = cold(repeats)
    result = {
        "warm_sequential": {"requests": n, "req_per_s": n / sum(seq),
                            "p50_ms": pct(seq, 0.5) * 1e3, "p99_ms": pct(seq, 0.99) * 1e3},
        "warm_concurrent": {"clients": clients, "seconds": seconds, "req_per_s": rps,
                            "p50_ms": pct(lats, 0.5) * 1e3, "p99_ms": pct(lats, 0.99) * 1e3,
                            "errors": len(errors)},
        "cold_first_request": {"samples": repeats, "p50_ms": statistics.median(cold_lat) * 1e3,
                               "p99_ms": pct(cold_lat, 0.99) * 1e3,
                               "req_per_s_if_every_request_were_cold": 1 / statistics.median(cold_lat)},
    }
    print(json.dumps(result, indent=1))
    w, c, k = result["warm_sequential"], result["warm_concurrent"], result["cold_first_request"]
    print(f"\n| case | req/s | p50 ms | p99 ms |\n|---|---|---|---|\n"
          f"| warm, 1 connection, sequential | {w['req_per_s']:.0f} | {w['p50_ms']:.1f} | {w['p99_ms']:.1f} |\n"
          f"| warm, {clients} connections | {c['req_per_s']:.0f} | {c['p50_ms']:.1f} | {c['p99_ms']:.1f} |\n"
          f"| cold (user's first request) | {k['req_per_s_if_every_request_were_cold']:.0f} | "
          f"{k['p50_ms']:.1f} | {k['p99_ms']:.1f} |")
    if os.path.exists(LOADGEN):
        conns = int(os.environ.get("BENCH_LOADGEN_CONNECTIONS", "64"))
        rows = loadgen_rows(conns, seconds)
        print(f"\northrus-loadgen, {conns} keep-alive connections, closed loop, {seconds:.0f} s, "
              f"static files on the Apache + mod_auth_gssapi backend:")
        print("| path | req/s | p50 ms | p99 ms | non-2xx + errors |\n|---|---|---|---|---|")
        for path, r in rows:
            print(f"| {path} | {r['rate']:.0f} | {r['latency_ms']['p50']:.2f} | "
                  f"{r['latency_ms']['p99']:.2f} | {r['status_other'] + r['errors']} |")


if __name__ == "__main__":
    main()
