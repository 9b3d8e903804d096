#!/usr/bin/env python3
"""Reads a tooltrail lake with DuckDB and with pyarrow, as outside readers would.

Usage: lake_readers.py LAKE_DIR OUT_JSON

Writes {"duckdb": rows, "pyarrow": rows}, each row
[event_id, tenant_id, user_id, time_us, status, scopes, attributes, dt, hour],
sorted by event_id. dt and hour come from the hive partition path.
"""
import json
import sys

import duckdb
import pyarrow.compute as pc
import pyarrow.dataset as ds


def with_duckdb(lake):
    con = duckdb.connect()
    con.execute("SET threads = 1")
    rows = con.execute(
        f"""
        SELECT event_id, tenant_id, user_id, epoch_us(time), status,
               scopes, map_keys(attributes), map_values(attributes),
               CAST(dt AS VARCHAR), CAST(hour AS INTEGER)
        FROM read_parquet('{lake}/events/*/*/*.parquet', hive_partitioning = true)
        ORDER BY event_id
        """
    ).fetchall()
    return [
        [r[0], r[1], r[2], r[3], r[4], r[5], dict(zip(r[6], r[7])) if r[6] is not None else None, r[8], r[9]]
        for r in rows
    ]


def with_pyarrow(lake):
    dataset = ds.dataset(f"{lake}/events", format="parquet", partitioning="hive")
    table = dataset.to_table()
    table = table.sort_by("event_id")
    times = pc.cast(table["time"], "int64").to_pylist()
    out = []
    for i, row in enumerate(table.select(
        ["event_id", "tenant_id", "user_id", "status", "scopes", "attributes", "dt", "hour"]
    ).to_pylist()):
        attrs = None if row["attributes"] is None else dict(row["attributes"])
        out.append([
            row["event_id"], row["tenant_id"], row["user_id"], times[i], row["status"],
            row["scopes"], attrs, str(row["dt"]), int(row["hour"]),
        ])
    return out


def main():
    lake, out = sys.argv[1], sys.argv[2]
    result = {"duckdb": with_duckdb(lake), "pyarrow": with_pyarrow(lake)}
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
