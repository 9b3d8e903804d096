#!/usr/bin/env python3
"""Derives lake/src/ocsf/required.tsv from the OCSF schema repository.

Usage: scripts/ocsf_required.py <git dir of ocsf/ocsf-schema> <commit> > lake/src/ocsf/required.tsv

For each class tooltrail emits (API Activity with the security_control
profile, Detection Finding with the same profile), it lists what the schema
requires: every attribute marked `required` (the class's, those it inherits
from its parents up to the base event, and the applied profile's), and,
inside every object attribute that is required or that tooltrail fills (the
EMITTED paths below), that object's required attributes and its
`at_least_one` constraint. Attributes of profiles that are not applied are
left out. Standard library only.
"""

import json
import subprocess
import sys

PROFILES = ["security_control"]
CLASSES = {
    "api_activity": "events/application/api_activity.json",
    "detection_finding": "events/findings/detection_finding.json",
}
# Optional object attributes tooltrail fills: their own requirements apply
# whenever they are present.
EMITTED = {
    "api_activity": [
        "actor.user", "actor.session", "api.service", "api.request", "api.response",
        "dst_endpoint", "resources", "policy", "http_request",
    ],
    "detection_finding": [
        "finding_info.analytic", "anomaly_analyses", "anomaly_analyses.analysis_targets",
        "anomaly_analyses.anomalies", "anomaly_analyses.anomalies.observations",
        "anomaly_analyses.anomalies.observations.timespan",
        "anomaly_analyses.baselines", "anomaly_analyses.baselines.observations",
        "evidences", "evidences.actor", "evidences.actor.user",
    ],
}


def main():
    git_dir, commit = sys.argv[1], sys.argv[2]

    def load(path):
        out = subprocess.check_output(
            ["git", "--git-dir", git_dir, "show", f"{commit}:{path}"], stderr=subprocess.DEVNULL
        )
        return json.loads(out)

    dictionary = load("dictionary.json")["attributes"]
    version = load("version.json")["version"]

    def merged(doc, kind):
        """Attributes of a class or object with its parents', and its constraints."""
        chain = [doc]
        while doc.get("extends") and doc["extends"] != "object":
            parent = doc["extends"]
            path = f"objects/{parent}.json" if kind == "object" else find_event(parent)
            doc = load(path)
            chain.append(doc)
        attrs, constraints = {}, {}
        for d in reversed(chain):
            for name, spec in d.get("attributes", {}).items():
                if name == "$include":
                    for inc in spec:
                        if inc.startswith("profiles/") and inc[len("profiles/"):-len(".json")] in PROFILES:
                            for pname, pspec in load(inc)["attributes"].items():
                                attrs.setdefault(pname, {}).update(
                                    {k: v for k, v in pspec.items() if v is not None})
                    continue
                attrs.setdefault(name, {}).update({k: v for k, v in spec.items() if v is not None})
            if "constraints" in d:
                constraints = d["constraints"]
        # Attributes of profiles that are not applied do not exist.
        attrs = {n: s for n, s in attrs.items() if s.get("profile") in (None, *PROFILES)}
        return attrs, constraints

    def find_event(name):
        if name == "base_event":
            return "events/base_event.json"
        for path in ["events/application/%s.json", "events/findings/%s.json"]:
            try:
                load(path % name)
                return path % name
            except subprocess.CalledProcessError:
                pass
        raise SystemExit(f"no event {name}")

    rows = []

    def walk(cls, prefix, attrs, constraints, emitted):
        if constraints.get("at_least_one"):
            rows.append((cls, prefix or ".", "at_least_one", ",".join(constraints["at_least_one"])))
        for name in sorted(attrs):
            spec = attrs[name]
            path = f"{prefix}.{name}" if prefix else name
            required = spec.get("requirement") == "required"
            if required:
                rows.append((cls, path, "required", ""))
            info = dictionary.get(name, {})
            kind = info.get("type", "")
            if kind.endswith("_t") or kind in ("", "object", "json_t"):
                continue
            if required or path in emitted:
                obj_attrs, obj_constraints = merged(load(f"objects/{kind}.json"), "object")
                walk(cls, path, obj_attrs, obj_constraints, emitted)

    for cls, path in CLASSES.items():
        attrs, constraints = merged(load(path), "event")
        walk(cls, "", attrs, constraints, set(EMITTED[cls]))

    print(f"# Derived by scripts/ocsf_required.py from ocsf/ocsf-schema {version} (commit {commit}).")
    print("# class\tpath (dot-separated; an array's elements each)\trule\targuments")
    for row in rows:
        print("\t".join(row))


if __name__ == "__main__":
    main()
