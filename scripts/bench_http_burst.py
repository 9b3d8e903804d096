#!/usr/bin/env python3
"""Peak memory of `tooltrail up` when many gateways POST large bodies at once.

Usage: scripts/bench_http_burst.py [--bin PATH] [--clients 48] [--body-mib 15.5]

- starts `tooltrail up` (HTTP ingest and detection) in a temporary directory;
- sends --clients concurrent POST /v1/events, each an NDJSON body of about --body-mib MiB
  of simulated events (`tooltrail simulate`);
- prints the process's peak RSS (VmHWM) and the replies by status: 200, or 503 `overloaded`
  once `http.max_inflight_bytes` of bodies are in flight (clients retry those).
Environment variables reach `up`, e.g. TOOLTRAIL__HTTP__MAX_INFLIGHT_BYTES=268435456.
"""
import argparse
import collections
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

from tooltrail_up import start_up

REPO = pathlib.Path(__file__).resolve().parent.parent


def main():
    ap = argparse.ArgumentParser()
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/tooltrail/target"))
    ap.add_argument("--bin", default=os.path.join(target, "release", "tooltrail"))
    ap.add_argument("--clients", type=int, default=48)
    ap.add_argument("--body-mib", type=float, default=15.5)
    args = ap.parse_args()
    if not os.path.exists(args.bin):
        sys.exit(f"no tooltrail binary at {args.bin} (cargo build --release --bin tooltrail, or --bin PATH)")

    work = pathlib.Path(tempfile.mkdtemp(prefix="tooltrail-burst-"))
    events = work / "events.ndjson"
    subprocess.run([args.bin, "simulate", "--users", "200", "--days", "14", "--out", str(events)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    limit = int(args.body_mib * 2**20)
    body = bytearray()
    with open(events, "rb") as f:
        for line in f:
            if len(body) + len(line) > limit:
                break
            body += line
    body = bytes(body)

    up, base = start_up(args.bin, work / "data")
    try:
        replies = []

        def post():
            request = urllib.request.Request(f"{base}/v1/events", data=body,
                                             headers={"content-type": "application/x-ndjson"})
            try:
                with urllib.request.urlopen(request, timeout=300) as reply:
                    replies.append(reply.status)
            except urllib.error.HTTPError as e:
                replies.append(e.code)
            except OSError as e:
                replies.append(type(e).__name__)

        started = time.time()
        threads = [threading.Thread(target=post) for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.time() - started
        status = pathlib.Path(f"/proc/{up.pid}/status").read_text()
        peak_kib = int(next(l for l in status.splitlines() if l.startswith("VmHWM")).split()[1])
    finally:
        up.terminate()
        up.wait()
        shutil.rmtree(work, ignore_errors=True)
    print(f"{args.clients} clients x {len(body) / 2**20:.1f} MiB bodies: peak RSS {peak_kib / 1024:.0f} MiB, "
          f"replies {dict(collections.Counter(replies))}, {took:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
