#!/usr/bin/env python3
"""The example query set (queries/*.sql), tooltrail's SQL engine vs DuckDB, on one lake.

Usage: scripts/bench_query.py [--lake DIR] [--users 11000] [--days 28] [--runs 5]
                              [--bin PATH] [--build] [--only 01,08] [--json OUT]

- the lake defaults to ~/.cache/tooltrail/bench-lake; if it holds no events table it is
  generated: `tooltrail simulate` to NDJSON beside it, `tooltrail detect --replay --lake` for the
  alerts (committed to the lake's alerts table), `tooltrail ingest --file`, `tooltrail compact
  --min-age 0s`, then the NDJSON is deleted. The defaults give about 21M events (~69 events per
  user-day);
- the parameters (tenant, a busy user, one of their sessions, a day with alerts, the week
  around it, an argument search term, an event id) are picked from the lake with DuckDB;
- DuckDB (`SET threads` = the machine's cores, as DataFusion uses) reads the same Delta tables
  through views over `delta_scan(<lake>/events)` and `delta_scan(<lake>/alerts)` (the delta
  extension from the duckdb-extension-delta wheel, no download); the `alerts` view keeps each
  alert_id's latest version, as ours does. Each query is executed and all its rows fetched
  (Arrow), once to warm up and then --runs times;
- ours: `tooltrail sql --lake DIR --format csv --repeat N --timing -- SQL` runs the query N = runs+1
  times in one process and prints `run=<i> elapsed_ms=<f> rows=<n>` per run on stderr; the first
  run is the warm-up;
- both report the median of the warm runs. Printed: rows and ms per query on each side with the
  ratio ours/DuckDB, the geometric-mean ratio, the queries more than 2x slower, and the times of
  a user's day (01) and a session's day (08) against the 200 ms target. --json writes the same.
Needs: pip install duckdb duckdb-extension-delta pyarrow.
"""
import argparse
import datetime
import json
import math
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import time

import duckdb
import duckdb_extension_delta

REPO = pathlib.Path(__file__).resolve().parent.parent
QUERIES = REPO / "queries"
EVENTS_PER_USER_DAY = 69  # measured: simulate --users 200 --days 14 --seed 1
NDJSON_BYTES_PER_EVENT = 700
TARGET_MS = 200.0
DAY_QUERIES = {"01": "a user's events for one day", "08": "a session's events for one day"}
TIMING = re.compile(r"\brun=(\d+)\b.*?\belapsed_ms=([0-9.eE+-]+)\b.*?\brows=(\d+)")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def sh(args, env=None, cwd=None):
    log("$ " + " ".join(str(a) for a in args))
    subprocess.run([str(a) for a in args], check=True, env=env, cwd=cwd)


def free_bytes(path):
    path = pathlib.Path(path)
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def tooltrail_env():
    return dict(os.environ, TOOLTRAIL__LOG__FILTER="warn")


def ensure_binary(args):
    if args.bin:
        binary = pathlib.Path(args.bin)
        if not binary.exists():
            sys.exit(f"{binary} does not exist")
        return binary
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/tooltrail/target"))
    binary = pathlib.Path(target) / "release" / "tooltrail"
    if args.build or not binary.exists():
        sh(["cargo", "build", "--release", "--bin", "tooltrail"], env=dict(os.environ, CARGO_TARGET_DIR=target), cwd=REPO)
    return binary


def lake_has_events(lake):
    return (lake / "events" / "_delta_log").is_dir()


def live_files(table):
    """The data files the Delta table's log adds and does not remove: (path, bytes)."""
    live = {}
    log_dir = table / "_delta_log"
    for commit in sorted(log_dir.glob("*.json")):
        if not commit.stem.isdigit():
            continue
        for line in commit.read_text().splitlines():
            if not line.strip():
                continue
            action = json.loads(line)
            if "add" in action:
                live[action["add"]["path"]] = action["add"]["size"]
            elif "remove" in action:
                live.pop(action["remove"]["path"], None)
    return live


def generate_lake(binary, lake, users, days):
    events = users * days * EVENTS_PER_USER_DAY
    need = events * (NDJSON_BYTES_PER_EVENT + 150)  # NDJSON, then the lake beside it
    free = free_bytes(lake.parent)
    log(f"generating a lake of ~{events / 1e6:.1f}M events ({users} users x {days} days) at {lake}; "
        f"needs ~{need / 1e9:.1f} GB, {free / 1e9:.1f} GB free")
    if free < need * 1.2:
        sys.exit("not enough free disk for the NDJSON and the lake: lower --users or --days")
    lake.mkdir(parents=True, exist_ok=True)
    ndjson = lake.parent / (lake.name + ".events.ndjson")
    alerts = lake.parent / (lake.name + ".alerts.ndjson")
    env = tooltrail_env()
    try:
        t0 = time.perf_counter()
        sh([binary, "simulate", "--users", users, "--days", days, "--seed", 1, "--out", ndjson], env=env)
        sh([binary, "ingest", "--file", ndjson, "--lake", lake], env=env)
        sh([binary, "detect", "--replay", ndjson, "--alerts", alerts, "--lake", lake], env=env)
        sh([binary, "compact", "--lake", lake, "--min-age", "0s"], env=env)
        log(f"lake generated in {time.perf_counter() - t0:.0f}s")
    finally:
        for p in (ndjson, alerts):
            if p.exists():
                p.unlink()


def duckdb_connect(lake, threads):
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET autoinstall_known_extensions = false")
    extension = (pathlib.Path(duckdb_extension_delta.__file__).parent / "extensions"
                 / f"v{duckdb.__version__}" / "delta.duckdb_extension")
    con.execute(f"LOAD '{extension}'")
    con.execute(f"CREATE VIEW events AS SELECT * FROM delta_scan('{lake}/events')")
    has_alerts = (lake / "alerts" / "_delta_log").is_dir()
    if has_alerts:
        # Each alert_id once, its latest version (the highest repeats), as our `alerts` shows.
        con.execute(
            f"CREATE VIEW alerts AS SELECT * EXCLUDE (version) FROM ("
            f"SELECT *, row_number() OVER (PARTITION BY alert_id ORDER BY repeats DESC, dt DESC) "
            f"AS version FROM delta_scan('{lake}/alerts')) WHERE version = 1"
        )
    return con, has_alerts


def next_day(day, n=1):
    return (datetime.date.fromisoformat(day) + datetime.timedelta(days=n)).isoformat()


def pick_params(con, has_alerts):
    """Picks parameter values for which every query has rows; deterministic for a given lake."""
    def one(sql, *p):
        # fetchall, not fetchone: DuckDB 2.0 keeps a half-read result open on the connection.
        rows = con.execute(sql, list(p)).fetchall()
        return rows[0] if rows else None

    days = [r[0] for r in con.execute("SELECT DISTINCT dt FROM events ORDER BY dt").fetchall()]
    row = None
    if has_alerts:
        # The (day, tenant) with the most alerts, not in the first week (history before it).
        row = one(
            "SELECT dt, tenant_id FROM alerts WHERE dt >= ? GROUP BY ALL ORDER BY count(*) DESC, dt, tenant_id LIMIT 1",
            days[min(7, len(days) - 1)],
        )
    if row is None:
        row = one("SELECT dt, tenant_id FROM events WHERE dt >= ? GROUP BY ALL ORDER BY count(*) DESC, dt, tenant_id LIMIT 1",
                  days[min(7, len(days) - 1)])
    day, tenant = row
    user = one(
        "SELECT user_id FROM events WHERE dt = ? AND tenant_id = ? GROUP BY ALL ORDER BY count(*) DESC, user_id LIMIT 1",
        day, tenant,
    )[0]
    session = one(
        "SELECT session_id FROM events WHERE dt = ? AND tenant_id = ? AND user_id = ? AND session_id IS NOT NULL "
        "GROUP BY ALL ORDER BY count(*) DESC, session_id LIMIT 1",
        day, tenant, user,
    )[0]
    # A query word from the tenant's arguments, in about 50 calls that day: selective, not rare.
    search = one(
        "WITH w AS (SELECT regexp_extract(arguments, '\"query\":\"([A-Za-z0-9 ._-]+)\"', 1) AS w FROM events "
        "WHERE tenant_id = ? AND dt = ?) SELECT w, count(*) AS n FROM w WHERE w <> '' GROUP BY w "
        "ORDER BY abs(n - 50), w LIMIT 1",
        tenant, day,
    )
    search = search[0] if search else "limit"
    event_id = None
    if has_alerts:
        r = one(
            "SELECT min(e) FROM (SELECT unnest(evidence.event_ids) AS e FROM alerts WHERE dt = ? AND tenant_id = ?)",
            day, tenant,
        )
        event_id = r[0] if r else None
    if event_id is None:
        event_id = one("SELECT min(event_id) FROM events WHERE dt = ? AND session_id = ?", day, session)[0]
    week_start = next_day(day, -3)
    return {
        "tenant_id": tenant,
        "user_id": user,
        "session_id": session,
        "day": day,
        "week_start": week_start,
        "week_end": next_day(week_start, 7),
        "from": f"{week_start}T00:00:00Z",
        "to": f"{next_day(day)}T00:00:00Z",
        "from_day": week_start,
        "to_day": next_day(day),
        "search": search,
        "event_id": event_id,
    }


def load_queries(params, only):
    out = []
    for path in sorted(QUERIES.glob("*.sql")):
        key = path.name[:2]
        if only and key not in only:
            continue
        text = path.read_text()

        def sub(m):
            if m.group(1) not in params:
                sys.exit(f"{path.name}: no value for {{{{{m.group(1)}}}}}")
            return str(params[m.group(1)]).replace("'", "''")

        out.append((path.stem, key, re.sub(r"\{\{(\w+)\}\}", sub, text)))
    return out


def fetch_arrow(result):
    # A relation (con.sql), not a DB-API result (con.execute): DuckDB 2.0 copies the rows once
    # more for the latter. fetch_arrow_table before DuckDB 2.0, to_arrow_table since.
    fetch = getattr(result, "to_arrow_table", None) or result.fetch_arrow_table
    return fetch()


def time_duckdb(con, sql, runs):
    fetch_arrow(con.sql(sql))  # warm-up
    times, rows = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        table = fetch_arrow(con.sql(sql))
        times.append((time.perf_counter() - t0) * 1e3)
        rows = table.num_rows
    return times, rows


def ours_available(binary):
    r = subprocess.run([binary, "sql", "--help"], capture_output=True, text=True)
    return r.returncode == 0 and "--repeat" in r.stdout


def time_ours(binary, lake, sql, runs):
    """Runs the query runs+1 times in one process; the first run is the warm-up."""
    # `--` before the SQL: the query files start with `-- ` comments, which clap would take for a flag.
    cmd = [str(binary), "sql", "--lake", str(lake), "--format", "csv", "--repeat", str(runs + 1), "--timing", "--", sql]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=tooltrail_env())
    wall = (time.perf_counter() - t0) * 1e3
    if r.returncode != 0:
        raise RuntimeError(f"exit {r.returncode}: {r.stderr.strip()[-2000:]}")
    per_run = sorted((int(m[1]), float(m[2]), int(m[3])) for m in TIMING.finditer(r.stderr))
    if not per_run:
        raise RuntimeError(f"no `run=<i> elapsed_ms=<f> rows=<n>` lines on stderr (wall {wall:.0f} ms): "
                           f"{r.stderr.strip()[-500:]}")
    warm = per_run[1:] or per_run
    return [t for _, t, _ in warm], per_run[-1][2]


def fmt_ms(x):
    return "-" if x is None else (f"{x:.1f}" if x < 100 else f"{x:.0f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lake", type=pathlib.Path, default=pathlib.Path.home() / ".cache/tooltrail/bench-lake")
    ap.add_argument("--users", type=int, default=11000, help="for generating the lake (default 11000)")
    ap.add_argument("--days", type=int, default=28, help="for generating the lake (default 28)")
    ap.add_argument("--runs", type=int, default=5, help="warm runs per query; the median is reported")
    ap.add_argument("--bin", help="tooltrail binary [default: $CARGO_TARGET_DIR/release/tooltrail]")
    ap.add_argument("--build", action="store_true", help="cargo build --release first, even if the binary exists")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="DuckDB threads (default: all cores)")
    ap.add_argument("--only", help="comma-separated query numbers, e.g. 01,08")
    ap.add_argument("--duckdb-only", action="store_true", help="skip our engine")
    ap.add_argument("--json", type=pathlib.Path, help="write the figures here")
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else None

    binary = ensure_binary(args)
    lake = args.lake.expanduser().resolve()
    if not lake_has_events(lake):
        generate_lake(binary, lake, args.users, args.days)

    con, has_alerts = duckdb_connect(lake, args.threads)
    n_events = con.execute("SELECT count(*) FROM events").fetchall()[0][0]
    files = live_files(lake / "events")
    lake_bytes = sum(files.values())
    n_alerts = con.execute("SELECT count(*) FROM alerts").fetchall()[0][0] if has_alerts else 0
    print(f"lake {lake}: {n_events:,} events in {len(files)} files, {lake_bytes / 1e9:.2f} GB; {n_alerts} alerts")
    if n_events < 20_000_000:
        print("note: fewer than the 20M events issue 5 asks for")
    params = pick_params(con, has_alerts)
    print("params: " + json.dumps(params))
    queries = load_queries(params, only)

    ours = not args.duckdb_only and ours_available(binary)
    if not ours and not args.duckdb_only:
        print(f"note: {binary} has no `sql --repeat` subcommand yet; DuckDB side only")
    print(f"threads: DuckDB {args.threads}, cores {os.cpu_count()}; runs: 1 warm-up + {args.runs}, median")

    results = []
    for name, key, sql in queries:
        res = {"query": name, "rows_ours": None, "rows_duckdb": None, "ms_ours": None, "ms_duckdb": None,
               "ratio": None, "runs_ours_ms": None, "runs_duckdb_ms": None, "error": {}}
        if key == "05" and not has_alerts:
            res["error"]["duckdb"] = res["error"]["ours"] = "no alerts in the lake"
            print(f"note: {name} skipped: no alerts under {lake}/alerts")
            results.append(res)
            continue
        try:
            t, res["rows_duckdb"] = time_duckdb(con, sql, args.runs)
            res["runs_duckdb_ms"], res["ms_duckdb"] = t, statistics.median(t)
        except duckdb.Error as e:
            res["error"]["duckdb"] = str(e)
            print(f"warning: {name}: DuckDB failed: {e}")
        if ours:
            try:
                t, res["rows_ours"] = time_ours(binary, lake, sql, args.runs)
                res["runs_ours_ms"], res["ms_ours"] = t, statistics.median(t)
            except RuntimeError as e:
                res["error"]["ours"] = str(e)
                print(f"warning: {name}: ours failed: {e}")
        if res["ms_ours"] is not None and res["ms_duckdb"]:
            res["ratio"] = res["ms_ours"] / res["ms_duckdb"]
        if res["rows_duckdb"] == 0:
            print(f"warning: {name}: no rows from DuckDB with these params")
        if res["rows_ours"] is not None and res["rows_duckdb"] is not None and res["rows_ours"] != res["rows_duckdb"]:
            print(f"warning: {name}: rows differ: ours {res['rows_ours']}, DuckDB {res['rows_duckdb']}")
        results.append(res)
        log(f"{name}: ours {fmt_ms(res['ms_ours'])} ms, DuckDB {fmt_ms(res['ms_duckdb'])} ms")

    w = max(len(r["query"]) for r in results) if results else 10
    print()
    print(f"{'query':<{w}}  {'rows ours':>10}  {'rows duckdb':>11}  {'ms ours':>8}  {'ms duckdb':>9}  {'ours/duckdb':>11}")
    for r in results:
        ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else "-"
        rows = lambda x: "-" if x is None else str(x)  # noqa: E731
        flag = "  rows differ" if r["rows_ours"] is not None and r["rows_ours"] != r["rows_duckdb"] else ""
        print(f"{r['query']:<{w}}  {rows(r['rows_ours']):>10}  {rows(r['rows_duckdb']):>11}  "
              f"{fmt_ms(r['ms_ours']):>8}  {fmt_ms(r['ms_duckdb']):>9}  {ratio:>11}{flag}")

    ratios = [r["ratio"] for r in results if r["ratio"]]
    geomean = math.exp(sum(math.log(x) for x in ratios) / len(ratios)) if ratios else None
    slow = [r["query"] for r in results if r["ratio"] and r["ratio"] > 2.0]
    print()
    if geomean is not None:
        print(f"geometric-mean ratio ours/DuckDB over {len(ratios)} queries: {geomean:.2f}")
        print("more than 2x slower than DuckDB: " + (", ".join(slow) if slow else "none"))
    targets = {}
    for r in results:
        key = r["query"][:2]
        if key in DAY_QUERIES:
            ms = r["ms_ours"]
            targets[key] = {"what": DAY_QUERIES[key], "query": r["query"], "ms_ours": ms, "ms_duckdb": r["ms_duckdb"],
                            "target_ms": TARGET_MS, "met": None if ms is None else ms <= TARGET_MS}
            verdict = "-" if ms is None else ("met" if ms <= TARGET_MS else "MISSED")
            print(f"{DAY_QUERIES[key]} ({r['query']}): ours {fmt_ms(ms)} ms, DuckDB {fmt_ms(r['ms_duckdb'])} ms; "
                  f"target <= {TARGET_MS:.0f} ms: {verdict}")

    if args.json:
        args.json.write_text(json.dumps({
            "lake": str(lake), "events": n_events, "files": len(files), "lake_bytes": lake_bytes,
            "alerts": n_alerts, "threads": args.threads, "cores": os.cpu_count(), "runs": args.runs,
            "duckdb_version": duckdb.__version__, "params": params, "queries": results,
            "geomean_ratio": geomean, "slower_than_2x": slow, "day_targets": targets,
        }, indent=2) + "\n")
        print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
