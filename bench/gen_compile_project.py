#!/usr/bin/env python3
"""Write a synthetic dbt-format project of N models for the compile benchmark.

The same folder is compiled by `tally compile` and parsed by `dbt parse`
(dbt-duckdb), so both see the same files:

  seeds/seed_events.csv                  one seed every chain starts from
  macros/helpers.sql                     two Jinja macros every model calls
  models/chain_CCC/m_CCC_SS.sql          chains of 20 models; each model refs
                                         the previous one, and every 5th model
                                         also refs a model of the previous
                                         chain (a fan-in)
  models/chain_CCC/schema.yml            columns and tests for every model
  dbt_project.yml, profiles.yml

Views by default (dbt's default), the last model of each chain a table.

usage: gen_compile_project.py --models N --out DIR
"""
import argparse
import os
import shutil

CHAIN = 20


def model_sql(c: int, s: int) -> str:
    prev = f"ref('m_{c:04d}_{s - 1:02d}')" if s > 0 else "ref('seed_events')"
    lines = []
    if s == CHAIN - 1:
        lines.append("{{ config(materialized='table') }}")
    lines.append(f"-- chain {c}, step {s}")
    lines.append("select")
    lines.append("    b.event_id,")
    lines.append("    b.account_id,")
    lines.append("    {{ cents('b.amount') }} as amount,")
    lines.append("    {{ month_of('b.event_date') }} as event_month,")
    lines.append("    b.event_date,")
    lines.append(f"    b.step + {1 if s > 0 else 0} as step")
    lines.append(f"from {{{{ {prev} }}}} b")
    if s > 0 and s % 5 == 0 and c > 0:
        other = f"m_{c - 1:04d}_{s - 1:02d}"
        lines.append(f"left join (select account_id, max(step) as other_step from {{{{ ref('{other}') }}}} group by account_id) o")
        lines.append("  on o.account_id = b.account_id")
    lines.append("where b.amount is not null")
    return "\n".join(lines) + "\n"


def schema_yml(c: int, steps: int) -> str:
    out = ["version: 2", "", "models:"]
    for s in range(steps):
        out += [
            f"  - name: m_{c:04d}_{s:02d}",
            f"    description: Chain {c}, step {s}.",
            "    columns:",
            "      - name: event_id",
            "        data_tests: [unique, not_null]",
            "      - name: account_id",
            "        data_tests: [not_null]",
            "      - name: amount",
            "        description: Amount in cents.",
        ]
    return "\n".join(out) + "\n"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", type=int, required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    if os.path.exists(a.out):
        shutil.rmtree(a.out)
    os.makedirs(os.path.join(a.out, "seeds"))
    os.makedirs(os.path.join(a.out, "macros"))
    with open(os.path.join(a.out, "dbt_project.yml"), "w") as f:
        f.write(
            "name: synthetic\nversion: '1.0.0'\nconfig-version: 2\nprofile: synthetic\n"
            "model-paths: [models]\nseed-paths: [seeds]\nmacro-paths: [macros]\n"
            "seeds:\n  synthetic:\n    seed_events:\n      +column_types: {event_id: bigint, account_id: varchar, amount: double, event_date: date, step: int}\n"
        )
    with open(os.path.join(a.out, "profiles.yml"), "w") as f:
        f.write("synthetic:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: target/synthetic.duckdb\n      threads: 2\n")
    with open(os.path.join(a.out, "seeds", "seed_events.csv"), "w") as f:
        f.write("event_id,account_id,amount,event_date,step\n1,a1,10.5,2026-01-03,0\n2,a2,20.25,2026-02-14,0\n")
    with open(os.path.join(a.out, "macros", "helpers.sql"), "w") as f:
        f.write(
            "{% macro cents(expr) -%}\ncast(round({{ expr }} * 100) as bigint)\n{%- endmacro %}\n\n"
            "{% macro month_of(expr) -%}\ncast(date_trunc('month', {{ expr }}) as date)\n{%- endmacro %}\n"
        )
    chains = (a.models + CHAIN - 1) // CHAIN
    written = 0
    for c in range(chains):
        steps = min(CHAIN, a.models - written)
        d = os.path.join(a.out, "models", f"chain_{c:04d}")
        os.makedirs(d)
        for s in range(steps):
            with open(os.path.join(d, f"m_{c:04d}_{s:02d}.sql"), "w") as f:
                f.write(model_sql(c, s))
        with open(os.path.join(d, "schema.yml"), "w") as f:
            f.write(schema_yml(c, steps))
        written += steps
    print(f"{written} models in {chains} chains -> {a.out}")


if __name__ == "__main__":
    main()
