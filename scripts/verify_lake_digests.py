#!/usr/bin/env python3
"""Verify a tooltrail lake's digest chain without any tooltrail code.

    scripts/verify_lake_digests.py LAKE PUBLIC_KEY.pem [MORE_KEYS.pem ...]

Needs only Python 3's standard library, `openssl` (3.0+) and `sha256sum`. It
walks <LAKE>/_tooltrail/digest/<seq>.json in order and checks that:

  1. each digest's detached signature <seq>.json.sig verifies under one of the
     given public keys (raw Ed25519 over the exact file bytes):
       openssl pkeyutl -verify -pubin -inkey KEY -rawin -in F -sigfile F.sig
  2. each digest names the previous one by the SHA-256 of its exact bytes,
     seqs run 1, 2, 3, ... and each table's Delta versions join up (a table's
     from_version is its previous to_version + 1, or 0 where it first appears);
  3. each Delta commit file a digest lists (<table>/_delta_log/<version>.json)
     still has the recorded SHA-256;
  4. every data file a digest lists as added, minus those a digest lists as
     removed, exists with the recorded SHA-256 (a removed file may be gone:
     vacuum deletes it after its grace period).

Prints one line per finding and exits 1 if there is any. Files committed after
the newest digest are not covered (nothing signed vouches for them yet);
`tooltrail lake verify` also reports files present but never listed.
"""
import hashlib
import json
import os
import re
import subprocess
import sys


def sha256sum(paths):
    """{path: hex sha256} using sha256sum, in batches."""
    out = {}
    for i in range(0, len(paths), 500):
        batch = paths[i:i + 500]
        text = subprocess.run(["sha256sum", "--", *batch], check=True,
                              capture_output=True, text=True).stdout
        for line in text.splitlines():
            digest, path = line.split("  ", 1)
            out[path] = digest
    return out


def signature_ok(path, keys):
    return any(subprocess.run(
        ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", key, "-rawin",
         "-in", path, "-sigfile", path + ".sig"],
        capture_output=True).returncode == 0 for key in keys)


def main(lake, keys):
    digest_dir = os.path.join(lake, "_tooltrail", "digest")
    seqs = sorted(int(name[:20]) for name in os.listdir(digest_dir)
                  if re.fullmatch(r"\d{20}\.json", name))
    findings = []
    if not seqs:
        findings.append("no digests")
    listed, removed, log_entries = {}, set(), {}
    prev_seq, prev_sha, versions = 0, None, {}
    for seq in seqs:
        path = os.path.join(digest_dir, f"{seq:020}.json")
        raw = open(path, "rb").read()
        digest = json.loads(raw)
        if not os.path.exists(path + ".sig"):
            findings.append(f"digest {seq}: unsigned")
        elif not signature_ok(path, keys):
            findings.append(f"digest {seq}: bad signature (key {digest['key_id']})")
        if seq != prev_seq + 1:
            findings.append(f"gap: digest {seq} follows digest {prev_seq}")
        else:
            link = digest["previous"]
            linked = link is None if seq == 1 else (
                link is not None and (link["seq"], link["sha256"]) == (prev_seq, prev_sha))
            if not linked:
                findings.append(f"digest {seq}: broken link to digest {prev_seq}")
        for table in digest["tables"]:
            name = table["table"]
            if table["from_version"] != versions.get(name, -1) + 1:
                findings.append(f"gap: {name}'s versions in digest {seq} do not join the previous")
            versions[name] = max(versions.get(name, -1), table["to_version"])
            for commit in table["commits"]:
                log_entries[commit["path"]] = commit["sha256"]
                for f in commit.get("added", []):
                    listed.setdefault(f["path"], (f["sha256"], seq))
                removed.update(f["path"] for f in commit.get("removed", []))
        prev_seq, prev_sha = seq, hashlib.sha256(raw).hexdigest()

    expected = dict(log_entries)
    expected.update({p: sha for p, (sha, _) in listed.items() if p not in removed})
    present = [p for p in sorted(expected) if os.path.exists(os.path.join(lake, p))]
    actual = sha256sum([os.path.join(lake, p) for p in present])
    for rel in sorted(expected):
        where = f"digest {listed[rel][1]}" if rel in listed else "a digest"
        full = os.path.join(lake, rel)
        if full not in actual:
            findings.append(f"deleted: {rel} (listed in {where})")
        elif actual[full] != expected[rel]:
            findings.append(f"modified: {rel} (sha256 {actual[full]}, {where} recorded {expected[rel]})")

    for finding in findings:
        print(finding)
    print(f"{len(seqs)} digests, {len(expected)} files and log entries checked, "
          f"{len(findings)} findings")
    return 1 if findings else 0


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2:]))
