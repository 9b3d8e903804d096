#!/usr/bin/env bash
# Verify a tooltrail export without trusting tooltrail's code: only OpenSSL
# (1.1.1 or later, for Ed25519), sha256sum and python3 (to read JSON).
#
#   scripts/verify_export.sh EXPORT_DIR PUBLIC_KEY.pem
#
# PUBLIC_KEY.pem is tooltrail's public key, obtained out of band or from
# `curl -s https://tooltrail.example/v1/keys | python3 -c 'import json,sys; print(json.load(sys.stdin)["keys"][0]["public_key_pem"], end="")'`.
#
# Checks, printing OK or FAIL for each:
#   1. manifest.json.sig is a valid Ed25519 signature of manifest.json's exact bytes;
#   2. the manifest's key_id is this key's id (first 16 hex digits of the SHA-256 of the raw key);
#   3. every part listed exists, is a plain file name, and has the listed size and SHA-256;
#   4. the totals add up, and the directory holds no file the manifest does not list.
# Exits 0 when everything is OK, 1 otherwise, 2 on bad usage.
set -uo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: $0 EXPORT_DIR PUBLIC_KEY.pem" >&2
    exit 2
fi
dir=$1
pub=$2
manifest="$dir/manifest.json"
sig="$dir/manifest.json.sig"
for f in "$manifest" "$sig" "$pub"; do
    if [[ ! -f $f ]]; then
        echo "FAIL $f: missing"
        exit 1
    fi
done

failed=0
ok() { echo "OK   $*"; }
fail() {
    echo "FAIL $*"
    failed=1
}

# 1. The signature, over the exact bytes of manifest.json.
if out=$(openssl pkeyutl -verify -pubin -inkey "$pub" -rawin -in "$manifest" -sigfile "$sig" 2>&1); then
    ok "signature: manifest.json.sig verifies manifest.json with $pub"
else
    fail "signature: manifest.json.sig does not verify manifest.json with $pub (${out//$'\n'/ })"
fi

# 2. The key the manifest names is this key.
key_id=$(openssl pkey -pubin -in "$pub" -outform DER 2>/dev/null | tail -c 32 | sha256sum | cut -c1-16)
named=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["key_id"])' "$manifest" 2>&1)
if [[ $key_id == "$named" ]]; then
    ok "key: manifest names key $named, which is $pub"
else
    fail "key: manifest names key $named, but $pub is key $key_id"
fi

# 3 and 4. Parts, totals and stray files, from the manifest.
checks=$(python3 - "$manifest" <<'PY'
import json, os, sys
path = sys.argv[1]
m = json.load(open(path))
parts = m["parts"]
for p in parts:
    name = p["name"]
    plain = name and not name.startswith(".") and "/" not in name and "\\" not in name
    print("PART", "ok" if plain else "unsafe", p["sha256"], p["bytes"], name)
for field in ("parts", "rows", "bytes"):
    listed = m["totals"][field]
    summed = len(parts) if field == "parts" else sum(p[field] for p in parts)
    print("TOTAL", field, listed, summed)
known = {p["name"] for p in parts} | {"manifest.json", "manifest.json.sig"}
for name in sorted(os.listdir(os.path.dirname(os.path.abspath(path)))):
    if name not in known:
        print("EXTRA", name)
PY
) || {
    fail "manifest.json: not a readable manifest"
    exit 1
}

while read -r kind a b c d; do
    case $kind in
    PART)
        # a: ok|unsafe, b: sha256, c: bytes, d: name
        if [[ $a != ok ]]; then
            fail "part $d: not a plain file name"
        elif [[ ! -f "$dir/$d" ]]; then
            fail "part $d: missing"
        else
            actual=$(sha256sum "$dir/$d" | cut -d' ' -f1)
            size=$(wc -c <"$dir/$d" | tr -d ' ')
            if [[ $actual != "$b" ]]; then
                fail "part $d: sha256 $actual, the manifest says $b"
            elif [[ $size != "$c" ]]; then
                fail "part $d: $size bytes, the manifest says $c"
            else
                ok "part $d: sha256 and size match"
            fi
        fi
        ;;
    TOTAL)
        if [[ $b == "$c" ]]; then
            ok "totals.$a: $b"
        else
            fail "totals.$a is $b, but the parts add up to $c"
        fi
        ;;
    EXTRA)
        fail "$a: not listed in the manifest"
        ;;
    esac
done <<<"$checks"

if [[ $failed -eq 0 ]]; then
    echo "export $dir verified"
else
    echo "export $dir FAILED verification"
fi
exit $failed
