#!/usr/bin/env python3
"""Keeps a shared cargo target dir from filling the disk, one CI run after another.

Usage:
  scripts/prune-target.py snapshot FILE   before a run: note the workspace's units already built
  scripts/prune-target.py prune FILE      after it: remove the workspace's units it added

Every clone that CI builds in compiles the workspace's crates and test binaries again, because
cargo keys their artifacts by the clone's path: several GiB a run. Dependencies from crates.io
are shared by every clone and stay. A unit is `NAME-HASH` in `$CARGO_TARGET_DIR/debug/deps`
(`NAME-HASH`, `libNAME-HASH.rlib`, `NAME-HASH.d`, …); the workspace's units are those whose NAME
is one of its crates or targets (`cargo metadata`). Units that existed before the run (the
developer's own checkout, say) are left alone.
"""
import json
import os
import pathlib
import subprocess
import sys


def workspace_names():
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--no-deps", "--format-version", "1"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    names = set()
    for package in meta["packages"]:
        names.add(package["name"].replace("-", "_"))
        for target in package["targets"]:
            names.add(target["name"].replace("-", "_"))
    return names


def unit_of(file_name):
    """`NAME-HASH` of a file in deps, or None."""
    stem = file_name[3:] if file_name.startswith("lib") else file_name
    stem = stem.split(".", 1)[0]
    name, sep, digest = stem.rpartition("-")
    if not sep or len(digest) != 16:
        return None
    return stem


def units(deps, names):
    found = {}
    for entry in deps.iterdir():
        unit = unit_of(entry.name)
        if unit and unit.rpartition("-")[0] in names:
            found.setdefault(unit, []).append(entry)
    return found


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("snapshot", "prune"):
        sys.exit(__doc__)
    mode, record = sys.argv[1], pathlib.Path(sys.argv[2])
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", "target"))
    deps = target / "debug" / "deps"
    deps.mkdir(parents=True, exist_ok=True)
    present = units(deps, workspace_names())
    if mode == "snapshot":
        record.write_text("\n".join(sorted(present)))
        return
    before = set(record.read_text().split()) if record.exists() else set(present)
    freed = 0
    added = [u for u in present if u not in before]
    for unit in added:
        for entry in present[unit]:
            try:
                freed += entry.stat().st_size
                entry.unlink()
            except OSError:
                pass
    print(f"pruned {len(added)} workspace units this run added ({freed / 2**30:.1f} GiB) from {target}")


if __name__ == "__main__":
    main()
