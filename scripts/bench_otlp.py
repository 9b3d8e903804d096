#!/usr/bin/env python3
"""OTLP/HTTP protobuf ingest vs `/v1/events` NDJSON, for the same events.

Usage: scripts/bench_otlp.py [--bin PATH] [--events 200000] [--batch 512] [--clients 4] [--rounds 5]

- makes --events simulated events (`tooltrail simulate`);
- turns them into request bodies both ways, before any clock starts: NDJSON bodies of --batch
  events for POST /v1/events, and OTLP ExportLogsServiceRequest protobufs of --batch log records
  (agentgateway's attribute names, one resource per tenant with `tenant.id`, as the OpenTelemetry
  SDK's batch processor sends by default) for POST /v1/logs;
- for each way, starts a fresh `tooltrail up` (HTTP ingest and detection) in a temporary
  directory, posts every body from --clients threads, and times from the first request to the
  last answer (every answer comes once its events are durable);
- prints events/s (and the events table's commits) for each and the ratio OTLP / NDJSON (the target is at least 0.8), for each
  of --rounds rounds, then the ratio's median and spread (the machine is shared: one round is
  noise).

Needs a release build (cargo build --release --bin tooltrail) and the `opentelemetry-proto`
Python package (it comes with opentelemetry-exporter-otlp-proto-http).
"""
import argparse
import collections
import json
import os
import pathlib
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime

from tooltrail_up import start_up

REPO = pathlib.Path(__file__).resolve().parent.parent


def simulate(binary, events, out):
    users = max(10, events // 300)
    days = 1
    while True:
        subprocess.run([binary, "simulate", "--users", str(users), "--days", str(days),
                        "--seed", "7", "--out", str(out)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(out) as f:
            lines = [line for line in f if line.strip()]
        if len(lines) >= events or days >= 8:
            return lines[:events]
        days *= 2


def otlp_body(events):
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    def kv(key, value):
        if isinstance(value, bool) or value is None:
            return None
        if isinstance(value, int):
            return KeyValue(key=key, value=AnyValue(int_value=value))
        if isinstance(value, float):
            return KeyValue(key=key, value=AnyValue(double_value=value))
        return KeyValue(key=key, value=AnyValue(string_value=str(value)))

    request = ExportLogsServiceRequest()
    by_tenant = collections.defaultdict(list)
    for e in events:
        by_tenant[e["tenant_id"]].append(e)
    for tenant, group in by_tenant.items():
        resource_logs = request.resource_logs.add()
        resource_logs.resource.attributes.extend([
            kv("service.name", "agentgateway"), kv("tenant.id", tenant)])
        scope = resource_logs.scope_logs.add()
        scope.scope.name = "agentgateway.access"
        for e in group:
            record = scope.log_records.add()
            t = datetime.fromisoformat(e["time"].replace("Z", "+00:00"))
            record.time_unix_nano = int(t.timestamp()) * 1_000_000_000 + t.microsecond * 1000
            record.observed_time_unix_nano = record.time_unix_nano
            record.severity_number = 9
            record.severity_text = "INFO"
            attrs = [
                kv("jwt.sub", e["user_id"]), kv("mcp.target", e["server"]),
                kv("mcp.method.name", e["method"]), kv("gen_ai.tool.name", e.get("tool")),
                kv("mcp.resource.uri", e.get("resource")), kv("mcp.session.id", e.get("session_id")),
                kv("src.addr", e.get("source_ip")), kv("http.status", e["status"]),
                kv("tooltrail.decision", e["decision"]),
                kv("duration", f"{e['latency_ms']}ms" if e.get("latency_ms") is not None else None),
                kv("trace.id", e.get("trace_id")), kv("mcp.client.name", e.get("client_id")),
                kv("user_agent.original", e.get("user_agent")), kv("http.method", "POST"),
                kv("http.path", "/mcp"),
            ]
            record.attributes.extend([a for a in attrs if a is not None])
    return request.SerializeToString()


def run(binary, bodies, content_type, path, clients):
    data = tempfile.mkdtemp(prefix="tooltrail-bench-otlp-")
    up, base = start_up(binary, data)
    try:
        work = queue.Queue()
        for body in bodies:
            work.put(body)
        failures = []

        def client():
            while True:
                try:
                    body = work.get_nowait()
                except queue.Empty:
                    return
                request = urllib.request.Request(f"{base}{path}", data=body, method="POST",
                                                 headers={"Content-Type": content_type})
                try:
                    with urllib.request.urlopen(request, timeout=120) as reply:
                        reply.read()
                except Exception as e:  # counted, reported
                    failures.append(str(e))

        threads = [threading.Thread(target=client) for _ in range(clients)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - started
    finally:
        up.terminate()
        up.wait()
        # Requests committed together share a commit: fewer commits, less waiting.
        commits = len(list(pathlib.Path(data, "lake", "events", "_delta_log").glob("*.json")))
        shutil.rmtree(data, ignore_errors=True)
    return seconds, failures, commits


def main():
    ap = argparse.ArgumentParser()
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/tooltrail/target"))
    ap.add_argument("--bin", default=os.path.join(target, "release", "tooltrail"))
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=5,
                    help="NDJSON then OTLP, this many times; the ratio's median and spread count")
    args = ap.parse_args()
    if not os.path.exists(args.bin):
        sys.exit(f"no tooltrail binary at {args.bin} (cargo build --release --bin tooltrail, or --bin PATH)")
    with tempfile.TemporaryDirectory() as tmp:
        lines = simulate(args.bin, args.events, pathlib.Path(tmp) / "events.ndjson")
    events = [json.loads(line) for line in lines]
    chunks = [events[i:i + args.batch] for i in range(0, len(events), args.batch)]
    ndjson = ["".join(json.dumps(e, separators=(",", ":")) + "\n" for e in c).encode() for c in chunks]
    otlp = [otlp_body(c) for c in chunks]
    print(f"{len(events)} events in {len(chunks)} requests of {args.batch}; "
          f"NDJSON {sum(map(len, ndjson)) / len(events):.0f} B/event, "
          f"OTLP protobuf {sum(map(len, otlp)) / len(events):.0f} B/event; {args.clients} clients")
    ratios = []
    for round_ in range(1, args.rounds + 1):
        results = {}
        for name, bodies, content_type, path in [
            ("ndjson /v1/events", ndjson, "application/x-ndjson", "/v1/events"),
            ("otlp /v1/logs", otlp, "application/x-protobuf", "/v1/logs"),
        ]:
            seconds, failures, commits = run(args.bin, bodies, content_type, path, args.clients)
            rate = len(events) / seconds
            results[name] = rate
            print(f"round {round_}: {name:18} {rate:10.0f} events/s ({seconds:.2f} s, {commits} commits)"
                  f"{'; failures: ' + str(len(failures)) + ' ' + failures[0] if failures else ''}")
        ratios.append(results["otlp /v1/logs"] / results["ndjson /v1/events"])
        print(f"round {round_}: ratio otlp/ndjson {ratios[-1]:.2f}x")
    ratios.sort()
    print(f"ratio otlp/ndjson  median {ratios[len(ratios) // 2]:.2f}x, min {ratios[0]:.2f}x, "
          f"max {ratios[-1]:.2f}x over {len(ratios)} rounds (target >= 0.8x)")

if __name__ == "__main__":
    main()
