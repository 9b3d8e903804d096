#!/usr/bin/env python3
"""Ingest and small queries of `tooltrail up` while heavy queries abuse the SQL API.

Usage: scripts/bench_query_abuse.py [--bin PATH] [--heavy 4] [--seconds 15] [--timeout 10s]

- starts `tooltrail up` in a temporary directory with two query tokens (the attacker's and a
  neighbour's) and `query.timeout` = --timeout;
- phase "quiet": for --seconds, one client POSTs a 20-event batch to /v1/events every 50 ms
  and another runs a small query (a count over the neighbour's events) every 200 ms;
- phase "abuse": the same, while --heavy clients each run, back to back, the join of issue 23
  (two unnest(array_repeat(1, 1000000)) sides ON x < y), which only the timeout ends;
- prints, per phase, the ingest acknowledgement p50/p99 and the small query's p50/p99 (and
  how many small queries were refused, by status), then
  how long the heavy queries took to get their 504, and the CPU the query threads
  (tt-query-*) used in the 2 s after the last heavy query was cancelled.
Environment variables reach `up`, e.g. TOOLTRAIL__QUERY__THREADS=1.
"""
import argparse
import hashlib
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

from tooltrail_up import start_up

HEAVY = ("SELECT count(*) FROM (SELECT unnest(array_repeat(1, 1000000)) x) a "
         "JOIN (SELECT unnest(array_repeat(1, 1000000)) y) b ON x < y")
SMALL = "SELECT count(*) AS n FROM events WHERE user_id = 'u1'"


def pct(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def events(tenant, start, n):
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return "".join(json.dumps({
        "schema_version": 1, "event_id": f"{tenant}-{start + i}", "time": now, "tenant_id": tenant,
        "user_id": f"u{i % 7}", "server": "github", "method": "tools/call", "tool": "search",
        "decision": "allow", "status": 200, "session_id": "s1",
    }) + "\n" for i in range(n)).encode()


def post(url, body, headers, timeout=120):
    request = urllib.request.Request(url, data=body, headers=headers)
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            reply.read()
            status = reply.status
    except urllib.error.HTTPError as e:
        e.read()
        status = e.code
    return status, time.perf_counter() - started


def query_threads_cpu(pid):
    """CPU seconds used so far by the process's tt-query-* threads."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
        try:
            if not (task / "comm").read_text().startswith("tt-query"):
                continue
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            continue
    return total / tick


def main():
    ap = argparse.ArgumentParser()
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/tooltrail/target"))
    ap.add_argument("--bin", default=os.path.join(target, "release", "tooltrail"))
    ap.add_argument("--heavy", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--timeout", default="10s")
    args = ap.parse_args()
    if not os.path.exists(args.bin):
        sys.exit(f"no tooltrail binary at {args.bin} (cargo build --release --bin tooltrail, or --bin PATH)")

    work = pathlib.Path(tempfile.mkdtemp(prefix="tooltrail-abuse-"))
    sha = lambda t: hashlib.sha256(t.encode()).hexdigest()
    config = work / "tooltrail.toml"
    config.write_text(
        f'[query]\ntimeout = "{args.timeout}"\nmax_function_output = 1000000\n'
        f'max_concurrent_per_principal = {max(4, args.heavy)}\n'
        f'[[query.tokens]]\nname = "attacker"\nsha256 = "{sha("tok-attacker")}"\nrole = "analyst"\ntenants = ["evil"]\n'
        f'[[query.tokens]]\nname = "neighbour"\nsha256 = "{sha("tok-neighbour")}"\nrole = "analyst"\ntenants = ["acme"]\n')
    up, base = start_up(args.bin, work / "data", config)
    try:
        ndjson = {"content-type": "application/x-ndjson"}
        post(f"{base}/v1/events", events("acme", 0, 500), ndjson)
        counter = [1000]

        def run_phase(name, heavy):
            stop = threading.Event()
            acks, smalls, heavies, refused = [], [], [], {}
            last_cancel = [0.0]

            def ingest():
                while not stop.is_set():
                    counter[0] += 20
                    status, took = post(f"{base}/v1/events", events("acme", counter[0], 20), ndjson)
                    if status == 200:
                        acks.append(took)
                    time.sleep(0.05)

            def small():
                body = json.dumps({"sql": SMALL}).encode()
                headers = {"content-type": "application/json", "authorization": "Bearer tok-neighbour"}
                while not stop.is_set():
                    status, took = post(f"{base}/v1/sql", body, headers)
                    if status == 200:
                        smalls.append(took)
                    else:
                        refused[status] = refused.get(status, 0) + 1
                    time.sleep(0.2)

            def abuse():
                body = json.dumps({"sql": HEAVY}).encode()
                headers = {"content-type": "application/json", "authorization": "Bearer tok-attacker"}
                while not stop.is_set():
                    status, took = post(f"{base}/v1/sql", body, headers, timeout=600)
                    heavies.append((status, took))
                    last_cancel[0] = time.perf_counter()

            threads = [threading.Thread(target=ingest), threading.Thread(target=small)]
            threads += [threading.Thread(target=abuse) for _ in range(heavy)]
            for t in threads:
                t.start()
            time.sleep(args.seconds)
            stop.set()
            for t in threads:
                t.join()
            print(f"{name:6} ingest ack p50 {pct(acks, 50) * 1e3:7.1f} ms  p99 {pct(acks, 99) * 1e3:7.1f} ms "
                  f"({len(acks)} acks) | small query p50 {pct(smalls, 50) * 1e3:7.1f} ms  "
                  f"p99 {pct(smalls, 99) * 1e3:7.1f} ms ({len(smalls)} answers"
                  + "".join(f", {n} x {status}" for status, n in sorted(refused.items())) + ")")
            if heavies:
                took = [t for _, t in heavies]
                statuses = sorted({s for s, _ in heavies})
                cpu_before = query_threads_cpu(up.pid)
                time.sleep(2)
                cpu_after = query_threads_cpu(up.pid)
                print(f"       heavy queries: {len(heavies)} answered {statuses}, after "
                      f"{min(took):.2f}-{max(took):.2f} s (median {statistics.median(took):.2f} s); "
                      f"query threads' CPU in the 2 s after the last one ended: {cpu_after - cpu_before:.2f} s")

        run_phase("quiet", 0)
        run_phase("abuse", args.heavy)
    finally:
        up.terminate()
        up.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
