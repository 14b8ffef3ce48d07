#!/usr/bin/python3
"""Benchmark: how fast a revocation reaches every edge, and what a large CRL costs.

Prints numbers; asserts nothing. Usage (after a build in build/):
    tests/bench/revocation_bench.py [--edges 1,4,16] [--revocations 100]

For N edge processes on loopback watching one broker: revoke alice's certificate with orthrusctl,
note when orthrusctl returned, and take for each edge the moment it had the new set in place (its
"revocation_applied" log line, written right after the swap); the propagation time is the latest
edge minus the return of orthrusctl (0 when every edge had it before orthrusctl returned). Each
revocation is then verified by a real handshake to every edge (it must be refused) and undone
(unrevoke, every edge accepts again) before the next one. p50/p99 over the revocations.
"""
import argparse
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness  # noqa: E402
import test_revocation_push as push  # noqa: E402


def ts_ms(entry):
    t = datetime.datetime.strptime(entry["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
    return t.timestamp() * 1000.0


def percentile(values, p):
    values = sorted(values)
    k = max(0, min(len(values) - 1, int(round(p / 100.0 * len(values) + 0.5)) - 1))
    return values[k]


def wait_versions(stack, version, timeout=10):
    deadline = time.time() + timeout
    for e in stack.edges:
        while True:
            applied = [x for x in e.events("revocation_applied") if x["version"] >= version]
            if applied:
                break
            if time.time() > deadline:
                raise TimeoutError(f"{e.name} never applied version {version}")
            time.sleep(0.005)


def run(n_edges, revocations, pki):
    s = push.PushStack(pki, edges=n_edges)
    try:
        samples = []
        for _ in range(revocations):
            before = {e.name: len(e.events("revocation_applied")) for e in s.edges}
            invoked_ms = time.time() * 1000.0
            r = s.ctl("revoke", "--device-cert", f"{pki}/alice.pem", "--reason", "bench")
            returned_ms = time.time() * 1000.0
            assert r.returncode == 0, r.stderr
            latest = 0.0
            deadline = time.time() + 10
            for e in s.edges:
                while True:
                    ev = e.events("revocation_applied")
                    if len(ev) > before[e.name]:
                        latest = max(latest, ts_ms(ev[before[e.name]]))
                        break
                    if time.time() > deadline:
                        raise TimeoutError(f"{e.name}: revocation not applied within 10 s")
                    time.sleep(0.002)
            samples.append((max(0.0, latest - returned_ms), latest - invoked_ms, returned_ms - invoked_ms))
            for e in s.edges:
                assert push.handshake_refused(e.port, pki, "alice"), e.name
            before = {e.name: len(e.events("revocation_applied")) for e in s.edges}
            r = s.ctl("unrevoke", "--device-cert", f"{pki}/alice.pem", "--reason", "bench", "--wait-ms", "5000")
            assert r.returncode == 0, r.stderr
            for e in s.edges:
                while len(e.events("revocation_applied")) <= before[e.name]:
                    time.sleep(0.002)
        return samples
    finally:
        s.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--edges", default="1,4,16")
    ap.add_argument("--revocations", type=int, default=100)
    args = ap.parse_args()
    pki = harness.make_pki(tempfile.mkdtemp(prefix="orthrus-bench-pki-"))
    print(f"machine: {os.cpu_count()} cores; {datetime.date.today()}; build {harness.BUILD_DIR}")
    print("after return: last edge applied minus orthrusctl returned (0: all had it before it returned)")
    print("after invoke: last edge applied minus orthrusctl started (process start, mTLS, SQLite commit)")
    print("edges  revocations  after_return_p50/p99/max_ms  after_invoke_p50/p99_ms  orthrusctl_p50_ms")
    for n in (int(x) for x in args.edges.split(",")):
        samples = run(n, args.revocations, pki)
        ret = [a for a, _, _ in samples]
        inv = [b for _, b, _ in samples]
        ctl = [c for _, _, c in samples]
        print(f"{n:5d}  {len(samples):11d}  {statistics.median(ret):8.1f} {percentile(ret, 99):6.1f} "
              f"{max(ret):6.1f}  {statistics.median(inv):12.1f} {percentile(inv, 99):6.1f}  "
              f"{statistics.median(ctl):12.1f}", flush=True)


if __name__ == "__main__":
    main()
