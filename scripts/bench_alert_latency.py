#!/usr/bin/env python3
"""Event-to-webhook alert latency of `tooltrail up`, for an immediate detector (cross_tenant).

Usage: scripts/bench_alert_latency.py [--bin PATH] [--events 500] [--interval 0.02] [--keep]

  --bin       the tooltrail binary (default
              ${CARGO_TARGET_DIR:-$HOME/.cache/tooltrail/target}/release/tooltrail;
              build it first with `cargo build --release --bin tooltrail`)
  --events    how many events to send, each raising its own alert (default 500)
  --interval  seconds between sends (default 0.02, i.e. 50 events/s)
  --keep      keep the temporary directory (config, data dir, tooltrail's stderr)

What is measured: for each event, the time from just before its `POST /v1/events`
is sent to the moment the webhook receiver has read the alert that event raised
(matched through the alert's `evidence.event_ids`). Each event is a cross-tenant
access (tenant `acme` reading `gdrive://globex/...`) by a distinct user, so each
raises its own `cross_tenant` alert. The path covered is therefore: HTTP ingest,
decode, group commit to the lake (the POST is answered only once durable), the
detector, the alert lake, the delivery outbox, and the signed webhook POST.
Also reported, for context: the "ingest ack" latency, the time for the POST to
/v1/events to be answered. The target is p99 event-to-webhook <= 1000 ms.

It runs against the real release binary on loopback: a webhook receiver
(http.server in a thread, 127.0.0.1, ephemeral port), `tooltrail up` with a
temporary config and data directory, started cold (--warm-from-lake 0s) and
listening on 127.0.0.1:0. Events are sent one per request, sequentially, on a
fixed schedule (start + i * interval; if a POST takes longer than the interval,
the next one goes out as soon as it returns). Python stdlib only; both clocks
are time.monotonic() in this process.
"""
import argparse
import datetime
import http.server
import json
import math
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

SECRET = "bench-secret-at-least-16-chars"


class Receiver:
    """Webhook receiver: records arrival time and body of every POST."""

    def __init__(self):
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.arrivals = {}  # event id -> first arrival (monotonic)
        self.duplicates = 0
        self.other = []  # alerts not matching a cross_tenant / lat-* event
        self.bad = 0  # unparseable bodies
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                arrived = time.monotonic()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                receiver.record(arrived, body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self):
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def record(self, arrived, body):
        try:
            alert = json.loads(body)
            ids = alert.get("evidence", {}).get("event_ids", [])
            detector = alert.get("detector")
        except (ValueError, AttributeError):
            with self.cond:
                self.bad += 1
            return
        with self.cond:
            if detector != "cross_tenant" or len(ids) != 1 or not ids[0].startswith("lat-"):
                self.other.append(alert)
            elif ids[0] in self.arrivals:
                self.duplicates += 1
            else:
                self.arrivals[ids[0]] = arrived
            self.cond.notify_all()

    def wait_for(self, n, timeout):
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.arrivals) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
        return True


def percentile(sorted_values, p):
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def now_rfc3339():
    t = datetime.datetime.now(datetime.timezone.utc)
    return t.isoformat(timespec="microseconds").replace("+00:00", "Z")


def start_tooltrail(binary, config, data_dir, log_path):
    proc = subprocess.Popen(
        [binary, "--config", str(config), "up", "--data-dir", str(data_dir),
         "--listen", "127.0.0.1:0", "--warm-from-lake", "0s"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, errors="replace",
    )
    log = open(log_path, "w")
    addr = None
    pattern = re.compile(r"listening on http://(\S+)")
    for line in proc.stderr:
        log.write(line)
        m = pattern.search(line)
        if m:
            addr = m.group(1)
            break
    if addr is None:
        log.close()
        code = proc.wait()
        sys.exit(f"tooltrail exited (code {code}) before listening; its stderr:\n"
                 + pathlib.Path(log_path).read_text())

    def drain():
        for line in proc.stderr:
            log.write(line)
        log.close()

    drainer = threading.Thread(target=drain, daemon=True)
    drainer.start()
    return proc, addr, drainer


def main():
    default_target = os.environ.get("CARGO_TARGET_DIR") or os.path.expanduser("~/.cache/tooltrail/target")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=os.path.join(default_target, "release", "tooltrail"))
    ap.add_argument("--events", type=int, default=500)
    ap.add_argument("--interval", type=float, default=0.02)
    ap.add_argument("--timeout", type=float, default=60.0,
                    help="seconds to wait for all alerts after the last send")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()

    if not os.access(args.bin, os.X_OK):
        sys.exit(f"no tooltrail binary at {args.bin} (cargo build --release --bin tooltrail, or --bin PATH)")

    work = pathlib.Path(tempfile.mkdtemp(prefix="tooltrail-alert-latency-"))
    receiver = Receiver()
    receiver.start()

    config = work / "tooltrail.toml"
    config.write_text(
        "[[detect.delivery.destinations]]\n"
        'name = "bench"\n'
        'kind = "webhook"\n'
        f'url = "http://127.0.0.1:{receiver.port}/hook"\n'
        f'secret = "{SECRET}"\n'
        'min_severity = "low"\n'
        "max_per_minute = 100000\n"
    )
    data_dir = work / "data"
    log_path = work / "tooltrail.stderr"

    proc, addr, drainer = start_tooltrail(args.bin, config, data_dir, log_path)
    print(f"binary: {args.bin}")
    print(f"tooltrail up on http://{addr}, webhook receiver on 127.0.0.1:{receiver.port}, work dir {work}")

    # No proxies: everything is on loopback.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    url = f"http://{addr}/v1/events"
    sent = {}  # event id -> send time (monotonic)
    acks = []  # seconds per POST
    failures = []
    exit_code = None
    try:
        start = time.monotonic()
        for i in range(args.events):
            due = start + i * args.interval
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            event_id = f"lat-{i}"
            event = {
                "schema_version": 1, "event_id": event_id, "time": now_rfc3339(),
                "tenant_id": "acme", "user_id": f"user-{i}", "server": "gdrive",
                "method": "tools/call", "tool": "read_file",
                "resource": f"gdrive://globex/docs/{i}", "decision": "allow", "status": 200,
            }
            body = (json.dumps(event, separators=(",", ":")) + "\n").encode()
            request = urllib.request.Request(
                url, data=body, method="POST",
                headers={"Content-Type": "application/x-ndjson"})
            t0 = time.monotonic()
            sent[event_id] = t0
            try:
                with opener.open(request, timeout=30) as reply:
                    status = reply.status
                    payload = reply.read()
            except urllib.error.HTTPError as e:
                status, payload = e.code, e.read()
            except OSError as e:
                status, payload = None, str(e).encode()
            acks.append(time.monotonic() - t0)
            if status != 200:
                failures.append((event_id, status, payload[:300]))
            else:
                reply_json = json.loads(payload)
                if reply_json.get("accepted") != 1:
                    failures.append((event_id, status, payload[:300]))
        send_span = time.monotonic() - start

        all_arrived = receiver.wait_for(args.events, args.timeout)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                exit_code = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                exit_code = f"killed after 30 s ({proc.wait()})"
        else:
            exit_code = proc.returncode
        drainer.join(timeout=5)
        receiver.stop()

    with receiver.lock:
        arrivals = dict(receiver.arrivals)
        duplicates, other, bad = receiver.duplicates, list(receiver.other), receiver.bad

    latencies = sorted((arrivals[k] - sent[k]) * 1000 for k in arrivals if k in sent)
    ack_ms = sorted(a * 1000 for a in acks)

    print(f"events sent:      {len(sent)} over {send_span:.2f} s "
          f"(interval {args.interval} s), {len(failures)} not answered 200/accepted")
    for event_id, status, payload in failures[:5]:
        print(f"  {event_id}: status {status}: {payload!r}")
    print(f"alerts received:  {len(arrivals)} cross_tenant"
          f"{'' if all_arrived else f' (TIMED OUT after {args.timeout:.0f} s)'}"
          f", {duplicates} duplicate deliveries, {len(other)} other alerts, {bad} unparseable bodies")
    print(f"tooltrail exit:   {exit_code} after SIGTERM")
    if latencies:
        print("event-to-webhook: p50 {:.1f} ms, p90 {:.1f} ms, p99 {:.1f} ms, max {:.1f} ms".format(
            percentile(latencies, 50), percentile(latencies, 90),
            percentile(latencies, 99), latencies[-1]))
    print("ingest ack:       p50 {:.1f} ms, p99 {:.1f} ms".format(
        percentile(ack_ms, 50), percentile(ack_ms, 99)))

    ok = all_arrived and not failures and exit_code == 0
    if args.keep or not ok:
        print(f"kept {work} (config, data dir, tooltrail.stderr)")
    else:
        shutil.rmtree(work, ignore_errors=True)

    # Alerts that never arrived count as infinitely late.
    missing = len(sent) - len(latencies)
    p99 = percentile(latencies + [float("inf")] * missing, 99)
    print(f"p99 event-to-webhook: {p99:.1f} ms (target <= 1000 ms)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
