#!/usr/bin/env python3
"""Ingest throughput and output size, tooltrail vs DuckDB, side by side on one NDJSON file.

Usage: scripts/bench_ingest.py [--users 1000] [--days 14] [--file EVENTS.ndjson] [--keep DIR]

- builds tooltrail in release mode (CARGO_TARGET_DIR as set, else ~/.cache/tooltrail/target);
- generates simulated events with `tooltrail simulate` unless --file is given;
- times `tooltrail ingest --file` pinned to one core (taskset -c 0): decode, validate,
  Arrow, sort, encode, write, fsync, commit;
- times DuckDB (`SET threads=1`, and this process pinned to the same core) doing
  COPY (SELECT * FROM read_json(...)) TO ... (FORMAT parquet, COMPRESSION zstd);
- prints events/s and bytes/event for both, and the ratios the ingest issue targets
  (>= 2x DuckDB's events/s, bytes/event <= DuckDB's);
- then times DuckDB writing the lake's own layout (hourly hive partitions, rows sorted by
  tenant, user, time) and prints those ratios too.
Needs: pip install duckdb.
"""
import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import duckdb


def sh(args, env=None, cwd=None):
    subprocess.run(args, check=True, env=env, cwd=cwd)


def parquet_bytes(root):
    return sum(p.stat().st_size for p in pathlib.Path(root).rglob("*.parquet"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--file")
    ap.add_argument("--keep")
    ap.add_argument("--batch", type=int, default=200000, help="ingest.max_batch_records")
    args = ap.parse_args()

    repo = pathlib.Path(__file__).resolve().parent.parent
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/tooltrail/target"))
    env = dict(os.environ, CARGO_TARGET_DIR=target)
    sh(["cargo", "build", "--release", "--quiet", "--bin", "tooltrail"], env=env, cwd=repo)
    binary = os.path.join(target, "release", "tooltrail")

    work = pathlib.Path(args.keep or tempfile.mkdtemp(prefix="tooltrail-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    events = pathlib.Path(args.file) if args.file else work / "events.ndjson"
    if not args.file:
        sh([binary, "simulate", "--users", str(args.users), "--days", str(args.days),
            "--seed", str(args.seed), "--out", str(events)])
    with open(events, "rb") as f:
        n = sum(1 for _ in f)
    size = events.stat().st_size
    print(f"input: {events} ({n} events, {size / n:.0f} bytes/event as NDJSON)")

    # Warm the page cache so both sides read from memory.
    with open(events, "rb") as f:
        while f.read(1 << 24):
            pass

    lake = work / "lake"
    ingest_env = dict(env, TOOLTRAIL__INGEST__MAX_BATCH_RECORDS=str(args.batch),
                      TOOLTRAIL__LOG__FILTER="warn")
    t0 = time.perf_counter()
    # wait4 gives this child's own peak RSS (RUSAGE_CHILDREN would also count the compiler).
    child = subprocess.Popen(
        ["taskset", "-c", "0", binary, "ingest", "--file", str(events), "--lake", str(lake)],
        env=ingest_env)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        sys.exit(f"tooltrail ingest failed with {child.returncode}")
    ours_s = time.perf_counter() - t0
    ours_rss = usage.ru_maxrss / 1024
    ours_bytes = parquet_bytes(lake / "events")

    out = work / "duckdb.parquet"
    # The same one core as ours: threads=1 alone would leave DuckDB's own
    # background threads free to use the other cores.
    os.sched_setaffinity(0, {0})
    con = duckdb.connect()
    con.execute("SET threads = 1")
    t0 = time.perf_counter()
    con.execute(
        f"COPY (SELECT * FROM read_json('{events}', format = 'newline_delimited')) "
        f"TO '{out}' (FORMAT parquet, COMPRESSION zstd)"
    )
    duck_s = time.perf_counter() - t0
    duck_bytes = out.stat().st_size

    ours_rate, duck_rate = n / ours_s, n / duck_s
    print(f"tooltrail ingest (1 core): {ours_s:7.2f} s  {ours_rate:10.0f} events/s  "
          f"{ours_bytes / n:6.1f} bytes/event  peak RSS {ours_rss:.0f} MiB")
    print(f"duckdb COPY (1 core):      {duck_s:7.2f} s  {duck_rate:10.0f} events/s  "
          f"{duck_bytes / n:6.1f} bytes/event")
    print(f"ratio events/s (ours/duckdb): {ours_rate / duck_rate:.2f}  (target >= 2.0)")
    print(f"ratio bytes/event (ours/duckdb): {ours_bytes / duck_bytes:.2f}  (target <= 1.0)")

    # The same layout as the lake's: hourly hive partitions, rows sorted by
    # (tenant_id, user_id, time). One file for the whole input, as above, has
    # no per-file footers or dictionaries and keeps the input's time order;
    # this shows what the lake's layout itself costs DuckDB.
    laid = work / "duckdb-lake"
    con.execute("SET TimeZone = 'UTC'")
    t0 = time.perf_counter()
    con.execute(
        f"COPY (SELECT *, strftime(time, '%Y-%m-%d') AS dt, strftime(time, '%H') AS hour "
        f"FROM read_json('{events}', format = 'newline_delimited') "
        f"ORDER BY tenant_id, user_id, time) "
        f"TO '{laid}' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (dt, hour), OVERWRITE)"
    )
    laid_s = time.perf_counter() - t0
    laid_bytes = parquet_bytes(laid)
    laid_rate = n / laid_s
    print(f"duckdb COPY, lake layout:  {laid_s:7.2f} s  {laid_rate:10.0f} events/s  "
          f"{laid_bytes / n:6.1f} bytes/event  (hour partitions, sorted by tenant, user, time)")
    print(f"same layout, ours/duckdb: events/s {ours_rate / laid_rate:.2f}, "
          f"bytes/event {ours_bytes / laid_bytes:.2f}")
    print(f"work dir: {work}")


if __name__ == "__main__":
    sys.exit(main())
