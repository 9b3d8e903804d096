#!/usr/bin/env python3
"""Reads a tooltrail Delta table with DuckDB (delta_scan) and with the Python
deltalake package, as outside readers would.

Usage: delta_readers.py TABLE_URI OUT_JSON

TABLE_URI is a directory or an s3:// URL (the usual AWS_* variables apply).
Writes {"duckdb": rows, "deltalake": rows}, each row
[event_id, tenant_id, user_id, time_us, status, scopes, attributes, dt, hour],
sorted by event_id. DuckDB's extensions come from the duckdb-extension-delta and
duckdb-extension-httpfs wheels, loaded from their paths: no download.
"""
import json
import os
import sys

import deltalake
import duckdb
import duckdb_extension_delta
import duckdb_extension_httpfs
import pyarrow.compute as pc


def extension(package, name):
    """The extension a duckdb-extension-* wheel carries, for this DuckDB."""
    base = os.path.join(os.path.dirname(package.__file__), "extensions")
    return os.path.join(base, f"v{duckdb.__version__}", f"{name}.duckdb_extension")


def with_duckdb(table):
    con = duckdb.connect()
    con.execute("SET threads = 1")
    con.execute("SET autoinstall_known_extensions = false")
    con.execute(f"LOAD '{extension(duckdb_extension_delta, 'delta')}'")
    if table.startswith("file://"):
        table = table[len("file://"):]
    if table.startswith("s3://"):
        con.execute(f"LOAD '{extension(duckdb_extension_httpfs, 'httpfs')}'")
        endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
        con.execute(
            """CREATE SECRET (TYPE s3, KEY_ID ?, SECRET ?, REGION ?, ENDPOINT ?,
               URL_STYLE 'path', USE_SSL ?)""",
            [
                os.environ.get("AWS_ACCESS_KEY_ID", ""),
                os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
                os.environ.get("AWS_REGION", "us-east-1"),
                endpoint.split("://", 1)[-1],
                not endpoint.startswith("http://"),
            ],
        )
    rows = con.execute(
        f"""
        SELECT event_id, tenant_id, user_id, epoch_us(time), status,
               scopes, map_keys(attributes), map_values(attributes),
               CAST(dt AS VARCHAR), CAST(hour AS INTEGER)
        FROM delta_scan('{table}')
        ORDER BY event_id
        """
    ).fetchall()
    return [
        [r[0], r[1], r[2], r[3], r[4], r[5], dict(zip(r[6], r[7])) if r[6] is not None else None, r[8], r[9]]
        for r in rows
    ]


def with_deltalake(table):
    options = {}
    if table.startswith("s3://"):
        options = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    data = deltalake.DeltaTable(table, storage_options=options).to_pyarrow_table()
    data = data.sort_by("event_id")
    times = pc.cast(data["time"], "int64").to_pylist()
    out = []
    columns = ["event_id", "tenant_id", "user_id", "status", "scopes", "attributes", "dt", "hour"]
    for i, row in enumerate(data.select(columns).to_pylist()):
        attrs = None if row["attributes"] is None else dict(row["attributes"])
        out.append([
            row["event_id"], row["tenant_id"], row["user_id"], times[i], row["status"],
            row["scopes"], attrs, str(row["dt"]), int(row["hour"]),
        ])
    return out


def main():
    table, out = sys.argv[1], sys.argv[2]
    result = {"duckdb": with_duckdb(table), "deltalake": with_deltalake(table)}
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
    # Two native runtimes share this process (DuckDB's delta extension and the deltalake
    # package); tearing them down at interpreter exit now and then ends in std::terminate
    # ("terminate called without an active exception") after the result is written. The
    # result is complete and closed: leave without running native destructors.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
