#!/usr/bin/env python3
"""Generate the dbt-duckdb twin of the reference project, for bench/run.

The models and macros are copied unchanged from the repo root; the YAML is
copied with three mechanical changes, so dbt runs the same checks:
  - tally's own checks (completeness, duplicates, expression, row_count,
    reconciliation, freshness) become the generic tests of
    bench/dbt/tally_tests.sql (`tally_completeness`, ...);
  - source freshness, which `dbt build` would not run, becomes a
    `tally_freshness` test on the source table, as `tally build` checks it;
  - a source's `location:` becomes dbt-duckdb's `external_location`.
Stored models (intermediate, governed) use dbt-duckdb's `external`
materialization: Parquet files, like tally's tables.

usage: dbt_project.py --root REPO --data RAW_ROOT --out DIR --as-of INSTANT
"""
import argparse
import glob
import os
import shutil

import yaml

TALLY_CHECKS = {"completeness", "duplicates", "expression", "row_count", "reconciliation", "freshness"}


def hours(spec):
    if not spec:
        return None
    n, period = spec.get("count", 0), spec.get("period", "hour")
    return n * {"minute": 1 / 60, "hour": 1, "day": 24}[period]


def freshness_test(spec, column=None, upstream=None):
    warn, error = hours(spec.get("warn_after")), hours(spec.get("error_after"))
    args = {"hours": error if error is not None else warn}
    if column:
        args["column"] = column
    if upstream:
        # "source('raw', 'billing_subscriptions')" -> "billing_subscriptions"
        args["upstream"] = [u.split(",")[1].strip(" ')\"") for u in upstream]
    if error is None:
        args["config"] = {"severity": "warn"}
    return {"tally_freshness": args}


def convert_test(t):
    if not isinstance(t, dict):
        return t
    (name, args), = t.items()
    if name not in TALLY_CHECKS:
        return t
    if name == "expression":
        return {"tally_expression": {"expression": args} if isinstance(args, str) else args}
    if name == "freshness":
        return freshness_test(args, args.get("column"), args.get("upstream"))
    return {f"tally_{name}": args or {}}


def convert_tests(node):
    for key in ("tests", "data_tests"):
        if key in node:
            node[key] = [convert_test(t) for t in node[key]]
    for c in node.get("columns", []) or []:
        convert_tests(c)


def convert_yaml(doc, data):
    for src in doc.get("sources", []) or []:
        src.pop("location", None)
        src.setdefault("meta", {})["external_location"] = f"read_parquet('{data}/{{name}}/*.parquet')"
        for table in src.get("tables", []):
            convert_tests(table)
            fresh = table.get("freshness", src.get("freshness"))
            field = table.get("loaded_at_field", src.get("loaded_at_field"))
            if fresh and field:
                table.setdefault("data_tests", []).append(freshness_test(fresh, column=field))
    for model in doc.get("models", []) or []:
        convert_tests(model)
    for seed in doc.get("seeds", []) or []:
        convert_tests(seed)
    return doc


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--root", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--as-of", required=True)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    a = p.parse_args()
    shutil.rmtree(a.out, ignore_errors=True)
    shutil.copytree(os.path.join(a.root, "models"), os.path.join(a.out, "models"), ignore=shutil.ignore_patterns("*.yml"))
    shutil.copytree(os.path.join(a.root, "macros"), os.path.join(a.out, "macros"))
    shutil.copy(os.path.join(a.root, "bench", "dbt", "tally_tests.sql"), os.path.join(a.out, "macros"))
    for f in glob.glob(os.path.join(a.root, "models", "**", "*.yml"), recursive=True):
        doc = convert_yaml(yaml.safe_load(open(f)), os.path.abspath(a.data))
        dest = os.path.join(a.out, os.path.relpath(f, a.root))
        with open(dest, "w") as out:
            yaml.safe_dump(doc, out, sort_keys=False)

    tally = yaml.safe_load(open(os.path.join(a.root, "tally_project.yml")))
    vars_ = dict(tally.get("vars", {}))
    vars_["bench_as_of"] = a.as_of
    models = {}
    for folder, cfg in tally["models"][tally["name"]].items():
        stored = cfg.get("+materialized") in ("table", "incremental")
        models[folder] = {"+materialized": "external" if stored else cfg.get("+materialized", "view")}
    project = {
        "name": tally["name"],
        "version": "1.0.0",
        "config-version": 2,
        "profile": "bench",
        "model-paths": ["models"],
        "macro-paths": ["macros"],
        "vars": vars_,
        "models": {tally["name"]: models},
    }
    with open(os.path.join(a.out, "dbt_project.yml"), "w") as f:
        yaml.safe_dump(project, f, sort_keys=False)
    external = os.path.abspath(os.path.join(a.out, "external"))
    os.makedirs(external, exist_ok=True)
    profile = {"bench": {"target": "dev", "outputs": {"dev": {
        "type": "duckdb", "path": os.path.abspath(os.path.join(a.out, "bench.duckdb")),
        "threads": a.threads, "external_root": external}}}}
    with open(os.path.join(a.out, "profiles.yml"), "w") as f:
        yaml.safe_dump(profile, f, sort_keys=False)


if __name__ == "__main__":
    main()
