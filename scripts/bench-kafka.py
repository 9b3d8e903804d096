#!/usr/bin/env python3
"""Kafka ingest throughput against a bare consumer, on the same topic.

    scripts/bench-kafka.py [--users 1100 --days 7] [--topic EXISTING --events N] [--rounds 2]

1. Builds `tooltrail` and `examples/bare_consumer.rs` (release by default).
2. Creates a 4-partition topic and produces the simulation to it once (`tooltrail simulate
   --kafka`), unless --topic names one already filled (then --events says how many it holds).
3. Each round, each in a fresh consumer group: (a) the bare consumer reads every record and does
   nothing with it; (b) `tooltrail ingest --kafka` writes them into a fresh lake, timed until its
   /metrics say the lake holds all of them (the counter moves only after a commit is durable).
4. Prints both rates, the ratio, and the peak RSS (VmHWM) and CPU time of the ingest process.

Rates are end to end: from starting the process until the bare consumer has read every record,
or until ingest's lake holds every one, so both include joining the group and the broker's first
fetch (which takes seconds on Tansu with 50 MB fetches). Ingest runs with the configuration in effect (defaults, or
TOOLTRAIL__INGEST__* in the environment): its last transaction waits up to
ingest.max_batch_delay (2 s by default) before it commits, which is part of the figure.

Needs the broker: scripts/kafka-broker.sh start (uses $TOOLTRAIL_TEST_KAFKA, else 127.0.0.1:9092).
Figures go in notes, never in assertions.
"""

import argparse
import datetime
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/tooltrail/target"))


def log(msg):
    print(f"bench-kafka: {msg}", file=sys.stderr, flush=True)


def build(profile):
    log(f"building tooltrail and bare_consumer ({profile})")
    env = dict(os.environ, CARGO_TARGET_DIR=TARGET)
    subprocess.run(
        ["cargo", "build", "--profile", profile, "--bin", "tooltrail", "--example", "bare_consumer"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    out = "debug" if profile == "dev" else profile
    return os.path.join(TARGET, out, "tooltrail"), os.path.join(TARGET, out, "examples", "bare_consumer")


def produce(tooltrail, brokers, users, days):
    topic = f"bench-kafka-{int(time.time())}-{os.getpid()}"
    subprocess.run([os.path.join(ROOT, "scripts", "kafka-broker.sh"), "create-topic", topic, "4"], check=True)
    start = (datetime.date.today() - datetime.timedelta(days=days + 1)).isoformat()
    log(f"producing {users} users x {days} days to {topic}")
    t0 = time.monotonic()
    done = subprocess.run(
        [tooltrail, "simulate", "--users", str(users), "--days", str(days), "--seed", "1",
         "--start", start, "--kafka", brokers, "--topic", topic],
        check=True,
        capture_output=True,
        text=True,
    )
    m = re.search(r"simulated (\d+) events", done.stderr)
    if not m:
        sys.exit(f"cannot read the event count from simulate's output:\n{done.stderr}")
    events = int(m.group(1))
    log(f"produced {events} events in {time.monotonic() - t0:.1f}s")
    return topic, events


def cpu_seconds(pid):
    """User + system CPU time of a live process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def vm_hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def broker_pid():
    """The pid of the broker scripts/kafka-broker.sh started, if any."""
    state = os.environ.get("TOOLTRAIL_KAFKA_STATE", os.path.expanduser("~/.cache/tooltrail/kafka"))
    try:
        with open(os.path.join(state, "tansu.pid")) as f:
            pid = int(f.read().strip())
        cpu_seconds(pid)
        return pid
    except (OSError, ValueError):
        return None


def broker_cpu():
    pid = broker_pid()
    return cpu_seconds(pid) if pid else float("nan")


def run_bare(bare, brokers, topic, events):
    broker_before = broker_cpu()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        [bare, "--brokers", brokers, "--topic", topic, "--records", str(events)],
        check=True,
        capture_output=True,
        text=True,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    figures["cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    figures["broker_cpu_s"] = broker_cpu() - broker_before
    return figures


def events_committed(addr):
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("tooltrail_ingest_events_total{")
    )


def run_ingest(tooltrail, brokers, topic, events, timeout):
    lake = tempfile.mkdtemp(prefix="bench-kafka-lake.")
    broker_before = broker_cpu()
    group = f"bench-ingest-{time.time_ns()}"
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [tooltrail, "ingest", "--kafka", brokers, "--topic", topic, "--group", group,
         "--lake", lake, "--listen", "127.0.0.1:0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = {}
    lines = []

    def drain():
        for line in proc.stderr:
            lines.append(line)
            now = time.monotonic()
            m = re.search(r"listening on http://(\S+)", line)
            if m:
                seen["addr"] = m.group(1)
            if "partitions assigned" in line and "assigned" not in seen:
                seen["assigned"] = now

    threading.Thread(target=drain, daemon=True).start()
    try:
        while "addr" not in seen:
            if proc.poll() is not None or time.monotonic() - t0 > 60:
                sys.exit("tooltrail ingest did not start:\n" + "".join(lines))
            time.sleep(0.02)
        while True:
            if proc.poll() is not None:
                sys.exit("tooltrail ingest exited:\n" + "".join(lines))
            n = events_committed(seen["addr"])
            if n >= events:
                done = time.monotonic()
                break
            if time.monotonic() - t0 > timeout:
                sys.exit(f"ingest committed {n} of {events} events in {timeout}s:\n" + "".join(lines[-20:]))
            time.sleep(0.05)
        figures = {
            "records": n,
            "secs_total": done - t0,
            "secs_to_assignment": seen.get("assigned", t0) - t0,
            "peak_rss_mib": vm_hwm_kib(proc.pid) / 1024,
            "cpu_s": cpu_seconds(proc.pid),
            "broker_cpu_s": broker_cpu() - broker_before,
        }
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        if proc.returncode != 0:
            sys.exit(f"tooltrail ingest exited with {proc.returncode}:\n" + "".join(lines[-20:]))
        figures["lake_mib"] = sum(
            os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(os.path.join(lake, "events")) for f in fs
        ) / 2**20
        figures["transactions"] = len(os.listdir(os.path.join(lake, "_tooltrail", "log")))
        return figures
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(lake, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--brokers", default=os.environ.get("TOOLTRAIL_TEST_KAFKA", "127.0.0.1:9092"))
    p.add_argument("--users", type=int, default=1100, help="simulated users (1100 x 7 days: ~520k events)")
    p.add_argument("--days", type=int, default=7)
    p.add_argument("--topic", help="an existing topic to read instead of producing one")
    p.add_argument("--events", type=int, help="records in --topic")
    p.add_argument("--rounds", type=int, default=1, help="bare and ingest runs, alternating")
    p.add_argument("--profile", default="release", help="cargo profile: release or dev")
    p.add_argument("--timeout", type=int, default=900, help="seconds each run may take")
    args = p.parse_args()
    if bool(args.topic) != bool(args.events):
        p.error("--topic and --events go together")

    tooltrail, bare = build(args.profile)
    topic, events = (args.topic, args.events) if args.topic else produce(tooltrail, args.brokers, args.users, args.days)

    results = []
    for round_ in range(1, args.rounds + 1):
        log(f"round {round_}: bare consumer")
        b = run_bare(bare, args.brokers, topic, events)
        log(f"round {round_}: bare {b}")
        log(f"round {round_}: tooltrail ingest")
        i = run_ingest(tooltrail, args.brokers, topic, events, args.timeout)
        log(f"round {round_}: ingest {i}")
        results.append((b, i))

    print(f"topic {topic}: {events} records, profile {args.profile}, brokers {args.brokers}")
    print("rates from process start until every record is read (bare) or durable in the lake (ingest);")
    print("ratio = ingest rate / bare rate; CPU seconds of the process and of the broker during the run")
    print(f"{'round':>5} {'bare rec/s':>10} {'ingest rec/s':>12} {'ratio':>5} {'bare s':>6} {'ingest s':>8} "
          f"{'bare cpu':>8} {'ingest cpu':>10} {'broker cpu b/i':>14} {'RSS MiB b/i':>11} {'txns':>4}")
    ratios = []
    for n, (b, i) in enumerate(results, 1):
        bare_rate, ingest_rate = events / b["secs_total"], events / i["secs_total"]
        ratios.append(ingest_rate / bare_rate)
        print(f"{n:>5} {bare_rate:>10.0f} {ingest_rate:>12.0f} {ratios[-1]:>5.2f} {b['secs_total']:>6.1f} "
              f"{i['secs_total']:>8.1f} {b['cpu_s']:>8.1f} {i['cpu_s']:>10.1f} "
              f"{b['broker_cpu_s']:>6.1f}/{i['broker_cpu_s']:<7.1f} "
              f"{b['peak_rss_mib']:>4.0f}/{i['peak_rss_mib']:<6.0f} {i['transactions']:>4}")
    print(f"ratio over all rounds: {sum(ratios) / len(ratios):.2f} "
          f"(ingest CPU per record {1e6 * sum(i['cpu_s'] for _, i in results) / (events * len(results)):.1f} us, "
          f"bare {1e6 * sum(b['cpu_s'] for b, _ in results) / (events * len(results)):.1f} us)")

if __name__ == "__main__":
    main()
