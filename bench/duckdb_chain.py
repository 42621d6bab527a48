#!/usr/bin/env python3
"""Run tally's compiled project on DuckDB: the same SQL, the dbt way.

Reads target/manifest.json and target/compiled/ (written by `tally compile`):
  1. every source becomes a view over its Parquet files;
  2. every model runs in DAG order, from its compiled SQL file: views as
     views, stored models written to Parquet (COPY ... TO) and read back
     through a view, like dbt-duckdb's `external` materialization;
  3. every assertion runs as its own query, from
     target/compiled/assertions/<relation>/<check>.sql (one query per check,
     the way dbt runs tests).

Prints one JSON line: {"chain_s": ..., "tests_s": ..., "models": N, "checks": N}.

usage: duckdb_chain.py --project DIR --out DIR [--threads N]
"""
import argparse
import json
import os
import re
import shutil
import sys
import time

import duckdb

# DataFusion functions the reference project uses that DuckDB spells another
# way. Each rewrite keeps the meaning; anything else runs exactly as compiled.
REWRITES = [
    # arrow_cast(x, 'Timestamp(Microsecond, Some("UTC"))') -> a UTC timestamp
    (re.compile(r"arrow_cast\((.+?), 'Timestamp\(Microsecond, Some\(\"UTC\"\)\)'\)"), r"cast(\1 as timestamptz)"),
]


def dialect(sql: str) -> str:
    for pattern, repl in REWRITES:
        sql = pattern.sub(repl, sql)
    return sql


def topo_order(nodes: dict) -> list:
    order, seen = [], set()

    def visit(uid):
        if uid in seen:
            return
        seen.add(uid)
        for dep in nodes[uid]["depends_on"]["nodes"]:
            if dep in nodes:
                visit(dep)
        order.append(uid)

    for uid in sorted(nodes):
        visit(uid)
    return order


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--project", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    a = p.parse_args()
    target = os.path.join(a.project, "target")
    manifest = json.load(open(os.path.join(target, "manifest.json")))
    shutil.rmtree(a.out, ignore_errors=True)
    os.makedirs(a.out)

    con = duckdb.connect(":memory:")
    con.execute(f"set threads = {a.threads}")
    start = time.perf_counter()
    for uid, src in manifest["sources"].items():
        _, schema, table = uid.split(".", 2)
        location = src["location"].removeprefix("file://").rstrip("/")
        con.execute(f"create schema if not exists {quote(schema)}")
        con.execute(f"create view {quote(schema)}.{quote(table)} as select * from read_parquet('{location}/*.parquet')")
    nodes = manifest["nodes"]
    for uid in topo_order(nodes):
        node = nodes[uid]
        name = quote(node["name"])
        if node["resource_type"] == "seed":
            con.execute(f"create view {name} as select * from read_csv_auto('{os.path.join(a.project, node['path'])}')")
            continue
        sql = dialect(open(os.path.join(a.project, node["compiled_path"])).read())
        try:
            if node["materialized"] in ("view", "ephemeral"):
                con.execute(f"create view {name} as {sql}")
            else:
                path = os.path.join(a.out, node["name"] + ".parquet")
                con.execute(f"copy ({sql}) to '{path}' (format parquet)")
                con.execute(f"create view {name} as select * from read_parquet('{path}')")
        except duckdb.Error as e:
            sys.exit(f"duckdb: model {node['name']} ({node['compiled_path']}): {e}")
    chain_s = time.perf_counter() - start

    start = time.perf_counter()
    checks = 0
    root = os.path.join(target, "compiled", "assertions")
    for relation in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        for f in sorted(os.listdir(os.path.join(root, relation))):
            sql = dialect(open(os.path.join(root, relation, f)).read())
            try:
                con.execute(sql).fetchall()
            except duckdb.Error as e:
                sys.exit(f"duckdb: check {relation}/{f}: {e}")
            checks += 1
    tests_s = time.perf_counter() - start
    print(json.dumps({"chain_s": chain_s, "tests_s": tests_s, "models": len(nodes), "checks": checks}))


if __name__ == "__main__":
    main()
