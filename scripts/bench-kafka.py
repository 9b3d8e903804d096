#!/usr/bin/env python3
"""Kafka ingest throughput against a bare consumer, on the same topic.

    scripts/bench-kafka.py [--users 1100 --days 7] [--partitions 8] [--instances 1,3]
                           [--topic EXISTING --events N] [--rounds 2]

1. Builds `tooltrail` and `examples/bare_consumer.rs` (release by default).
2. Creates a topic of --partitions partitions and produces the simulation to it once (`tooltrail
   simulate --kafka`), unless --topic names one already filled (then --events says how many it
   holds).
3. Each round, each in a fresh consumer group: (a) the bare consumer reads every record and does
   nothing with it; (b) for each count in --instances, that many `tooltrail ingest --kafka`
   processes in one group write them into one fresh lake, timed until their /metrics say the
   lake holds all of them (the counters move only after a commit).
4. Prints the rates, the ratios (to the bare consumer, and to one instance), the peak RSS (VmHWM)
   and CPU time of the ingest processes, the commits, the commit conflicts and commit latency
   (p50/p99 from the `tooltrail_lake_commit_seconds` histogram: bucket upper bounds).

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


def produce(tooltrail, brokers, users, days, partitions):
    topic = f"bench-kafka-{int(time.time())}-{os.getpid()}"
    subprocess.run([os.path.join(ROOT, "scripts", "kafka-broker.sh"), "create-topic", topic, str(partitions)],
                   check=True)
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


def metrics(addr):
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=5) as r:
        return r.read().decode()


def counter(text, name):
    """The sum of the samples of `name` over its labels."""
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{")
    )


def commit_buckets(text):
    """Cumulative counts of tooltrail_lake_commit_seconds for the events table, by upper bound."""
    out = {}
    for line in text.splitlines():
        if line.startswith("tooltrail_lake_commit_seconds_bucket{") and 'table="events"' in line:
            le = re.search(r'le="([^"]+)"', line).group(1)
            out[float("inf") if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
    return out


def quantile(buckets, q):
    """The upper bound of the bucket holding the q-quantile of a cumulative histogram."""
    if not buckets:
        return float("nan")
    total = buckets[max(buckets)]
    for le in sorted(buckets):
        if buckets[le] >= q * total:
            return le
    return float("inf")


def start_ingest(tooltrail, brokers, topic, group, lake):
    proc = subprocess.Popen(
        [tooltrail, "ingest", "--kafka", brokers, "--topic", topic, "--group", group,
         "--lake", lake, "--listen", "127.0.0.1:0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen, lines = {}, []

    def drain():
        for line in proc.stderr:
            lines.append(line)
            m = re.search(r"listening on http://(\S+)", line)
            if m:
                seen["addr"] = m.group(1)

    threading.Thread(target=drain, daemon=True).start()
    return proc, seen, lines


def run_ingest(tooltrail, brokers, topic, events, timeout, instances):
    lake = tempfile.mkdtemp(prefix="bench-kafka-lake.")
    broker_before = broker_cpu()
    group = f"bench-ingest-{time.time_ns()}"
    t0 = time.monotonic()
    procs = [start_ingest(tooltrail, brokers, topic, group, lake) for _ in range(instances)]
    try:
        for proc, seen, lines in procs:
            while "addr" not in seen:
                if proc.poll() is not None or time.monotonic() - t0 > 60:
                    sys.exit("tooltrail ingest did not start:\n" + "".join(lines))
                time.sleep(0.02)
        while True:
            for proc, _, lines in procs:
                if proc.poll() is not None:
                    sys.exit("tooltrail ingest exited:\n" + "".join(lines))
            texts = [metrics(seen["addr"]) for _, seen, _ in procs]
            n = int(sum(counter(t, "tooltrail_ingest_events_total") for t in texts))
            if n >= events:
                done = time.monotonic()
                break
            if time.monotonic() - t0 > timeout:
                sys.exit(f"ingest committed {n} of {events} events in {timeout}s")
            time.sleep(0.05)
        buckets = {}
        for text in texts:
            for le, count in commit_buckets(text).items():
                buckets[le] = buckets.get(le, 0) + count
        figures = {
            "records": n,
            "secs_total": done - t0,
            "peak_rss_mib": sum(vm_hwm_kib(p.pid) for p, _, _ in procs) / 1024,
            "cpu_s": sum(cpu_seconds(p.pid) for p, _, _ in procs),
            "broker_cpu_s": broker_cpu() - broker_before,
            "conflicts": int(sum(counter(t, "tooltrail_lake_commit_conflicts_total") for t in texts)),
            "commit_p50_s": quantile(buckets, 0.5),
            "commit_p99_s": quantile(buckets, 0.99),
        }
        for proc, _, lines in procs:
            proc.send_signal(signal.SIGTERM)
        for proc, _, lines in procs:
            proc.wait(timeout=60)
            if proc.returncode != 0:
                sys.exit(f"tooltrail ingest exited with {proc.returncode}:\n" + "".join(lines[-20:]))
        log_dir = os.path.join(lake, "events", "_delta_log")
        figures["lake_mib"] = sum(
            os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(os.path.join(lake, "events")) for f in fs
        ) / 2**20
        figures["commits"] = sum(1 for f in os.listdir(log_dir) if f.endswith(".json") and f[:-5].isdigit())
        return figures
    finally:
        for proc, _, _ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(lake, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--brokers", default=os.environ.get("TOOLTRAIL_TEST_KAFKA", "127.0.0.1:9092"))
    p.add_argument("--users", type=int, default=1100, help="simulated users (1100 x 7 days: ~520k events)")
    p.add_argument("--days", type=int, default=7)
    p.add_argument("--partitions", type=int, default=8, help="partitions of the produced topic")
    p.add_argument("--instances", default="1", help="comma-separated instance counts to run, e.g. 1,3")
    p.add_argument("--topic", help="an existing topic to read instead of producing one")
    p.add_argument("--events", type=int, help="records in --topic")
    p.add_argument("--rounds", type=int, default=1, help="bare and ingest runs, alternating")
    p.add_argument("--profile", default="release", help="cargo profile: release or dev")
    p.add_argument("--timeout", type=int, default=900, help="seconds each run may take")
    args = p.parse_args()
    if bool(args.topic) != bool(args.events):
        p.error("--topic and --events go together")

    tooltrail, bare = build(args.profile)
    counts = [int(c) for c in args.instances.split(",")]
    topic, events = (args.topic, args.events) if args.topic else produce(
        tooltrail, args.brokers, args.users, args.days, args.partitions)

    results = []
    for round_ in range(1, args.rounds + 1):
        log(f"round {round_}: bare consumer")
        b = run_bare(bare, args.brokers, topic, events)
        log(f"round {round_}: bare {b}")
        for count in counts:
            log(f"round {round_}: tooltrail ingest x{count}")
            i = run_ingest(tooltrail, args.brokers, topic, events, args.timeout, count)
            log(f"round {round_}: ingest x{count} {i}")
            results.append((count, b, i))

    print(f"topic {topic}: {events} records, profile {args.profile}, brokers {args.brokers}, "
          f"{os.cpu_count()} cores")
    print("rates from process start until every record is read (bare) or committed to the lake (ingest);")
    print("vs bare = ingest rate / bare rate; vs x1 = rate / one instance's rate in the same round;")
    print("CPU seconds of the processes and of the broker; commit latency from the histogram (bucket bounds)")
    print(f"{'round':>5} {'inst':>4} {'bare rec/s':>10} {'ingest rec/s':>12} {'vs bare':>7} {'vs x1':>5} "
          f"{'ingest s':>8} {'cpu s':>6} {'broker cpu':>10} {'RSS MiB':>7} {'commits':>7} {'confl':>5} "
          f"{'p50 ms':>6} {'p99 ms':>6}")
    one = {}
    for n, (count, b, i) in enumerate(results):
        round_ = n // len(counts) + 1
        bare_rate, ingest_rate = events / b["secs_total"], events / i["secs_total"]
        if count == 1:
            one[round_] = ingest_rate
        vs_one = f"{ingest_rate / one[round_]:.2f}" if round_ in one else "-"
        print(f"{round_:>5} {count:>4} {bare_rate:>10.0f} {ingest_rate:>12.0f} {ingest_rate / bare_rate:>7.2f} "
              f"{vs_one:>5} {i['secs_total']:>8.1f} {i['cpu_s']:>6.1f} {i['broker_cpu_s']:>10.1f} "
              f"{i['peak_rss_mib']:>7.0f} {i['commits']:>7} {i['conflicts']:>5} "
              f"{1e3 * i['commit_p50_s']:>6.0f} {1e3 * i['commit_p99_s']:>6.0f}")
    for count in counts:
        mine = [i for c, _, i in results if c == count]
        print(f"x{count}: ingest CPU per record "
              f"{1e6 * sum(i['cpu_s'] for i in mine) / (events * len(mine)):.1f} us")


if __name__ == "__main__":
    main()
