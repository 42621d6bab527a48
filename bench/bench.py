#!/usr/bin/env python3
"""tally against DuckDB and dbt-duckdb, in one run, on the same data.

Started by bench/run (which builds tally and prepares the venv). Prints a
table of figures and ratios and writes target/bench/results.json.

  build:   tally build of the reference project (models + assertions)
           DuckDB running the same compiled SQL, then one query per check
           dbt build of the same project on dbt-duckdb (models + tests)
  compile: tally compile vs dbt parse of synthetic projects of N models
"""
import argparse
import glob
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BENCH = os.path.join(ROOT, "target", "bench")
VENV = os.path.join(BENCH, "venv", "bin")
TALLY = os.path.join(ROOT, "target", "release", "tally")
ENV = dict(os.environ, DBT_SEND_ANONYMOUS_USAGE_STATS="False", DO_NOT_TRACK="1")


def timed(cmd, cwd=ROOT, check=True):
    """Run cmd: (wall s, CPU s, peak RSS MB, stdout, exit code), from the
    child's own rusage (wait4), so no GNU time is needed."""
    out = os.path.join(BENCH, "stdout.txt")
    with open(out, "w") as stdout, open(os.path.join(BENCH, "stderr.txt"), "w") as stderr:
        start = time.perf_counter()
        p = subprocess.Popen(cmd, cwd=cwd, env=ENV, stdout=stdout, stderr=stderr)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    text = open(out).read()
    if check and code != 0:
        sys.exit(f"{' '.join(cmd)} exited {code}\n{text[-3000:]}\n{open(os.path.join(BENCH, 'stderr.txt')).read()[-3000:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024, "stdout": text, "code": code}


def median_of(runs, f):
    results = [f() for _ in range(runs)]
    results.sort(key=lambda r: r["wall"])
    return results[len(results) // 2]


def data_dir(scale, seed):
    d = os.path.join(ROOT, "target", "bench-data", f"scale-{scale:g}-seed-{seed}")
    if not os.path.exists(os.path.join(d, "crm_opportunities")):
        print(f"generating scale {scale:g} into {d} ...", flush=True)
        subprocess.run([os.path.join(ROOT, "target", "release", "gen-revops"), "--scale", f"{scale:g}", "--seed", str(seed), "--out", d], check=True)
    return d


def latest_load(data):
    import duckdb
    tables = sorted(os.path.basename(t) for t in glob.glob(os.path.join(data, "*")) if os.path.isdir(t))
    union = " union all ".join(f"select max(_loaded_at) as m from read_parquet('{data}/{t}/*.parquet')" for t in tables)
    ((value,),) = duckdb.sql(f"select cast(max(m) as varchar) from ({union})").fetchall()
    return value


def bench_build(scale, seed, runs, threads):
    data = data_dir(scale, seed)
    vars_ = f"{{raw_root: '{data}'}}"
    tally_args = ["--target", "bench", "--vars", vars_, "--threads", str(threads), "-q"]
    warehouse = os.path.join(BENCH, "warehouse")

    def tally_build():
        shutil.rmtree(warehouse, ignore_errors=True)
        r = timed([TALLY, "build"] + tally_args, check=False)
        if r["code"] not in (0, 1):
            sys.exit(f"tally build exited {r['code']}:\n{r['stdout'][-3000:]}")
        results = json.load(open(os.path.join(ROOT, "target", "run_results.json")))
        r["assertion_s"] = results["assertion_seconds"]
        r["checks"] = len(results["assertions"])
        r["summary"] = r["stdout"].strip().splitlines()[-1] if r["stdout"].strip() else ""
        return r

    print(f"[build] scale {scale:g}: tally build x{runs}", flush=True)
    tally = median_of(runs, tally_build)

    # The same models without checks: what the checks add to the build's wall time.
    def tally_run():
        shutil.rmtree(warehouse, ignore_errors=True)
        return timed([TALLY, "run"] + tally_args)

    print(f"[build] scale {scale:g}: tally run (no checks) x{runs}", flush=True)
    tally["run"] = strip(median_of(runs, tally_run))

    # DuckDB runs tally's compiled SQL: compile it for this data (not timed).
    subprocess.run([TALLY, "compile"] + tally_args, cwd=ROOT, check=True, capture_output=True)
    print(f"[build] scale {scale:g}: DuckDB chain + one query per check x{runs}", flush=True)
    out = os.path.join(BENCH, "duckdb-out")

    def duck():
        r = timed([os.path.join(VENV, "python"), os.path.join(ROOT, "bench", "duckdb_chain.py"), "--project", ROOT, "--out", out, "--threads", str(threads)])
        r.update(json.loads(r["stdout"].strip().splitlines()[-1]))
        return r

    duckdb = median_of(runs, duck)

    print(f"[build] scale {scale:g}: dbt build (dbt-duckdb) x{runs}", flush=True)
    project = os.path.join(BENCH, "dbt")
    subprocess.run([os.path.join(VENV, "python"), os.path.join(ROOT, "bench", "dbt_project.py"), "--root", ROOT, "--data", data,
                    "--out", project, "--as-of", latest_load(data), "--threads", str(threads)], check=True)
    dbt = os.path.join(VENV, "dbt")
    # dbt's best case: a warm partial-parse state, as at a developer's desk.
    subprocess.run([dbt, "parse", "--profiles-dir", "."], cwd=project, env=ENV, check=True, capture_output=True)

    def dbt_build():
        for f in glob.glob(os.path.join(project, "external", "*")) + glob.glob(os.path.join(project, "bench.duckdb*")):
            os.remove(f)
        r = timed([dbt, "build", "--profiles-dir", "."], cwd=project, check=False)
        if r["code"] not in (0, 1):
            sys.exit(f"dbt build exited {r['code']}:\n{r['stdout'][-3000:]}")
        r["summary"] = next((l for l in reversed(r["stdout"].splitlines()) if "PASS=" in l), "").split("  ", 1)[-1].strip()
        return r

    dbt_r = median_of(runs, dbt_build)
    return {"scale": scale, "tally": tally, "duckdb": duckdb, "dbt": dbt_r}


def bench_compile(sizes, runs):
    out = []
    for n in sizes:
        project = os.path.join(BENCH, f"compile-{n}")
        subprocess.run([sys.executable, os.path.join(ROOT, "bench", "gen_compile_project.py"), "--models", str(n), "--out", project], check=True, capture_output=True)
        print(f"[compile] {n} models: tally compile x{runs}, dbt parse (full, no partial parse)", flush=True)
        timed([TALLY, "compile", "-q"], cwd=project)  # first run writes target/compiled
        tally = median_of(runs, lambda: timed([TALLY, "compile", "-q"], cwd=project))
        dbt = timed([os.path.join(VENV, "dbt"), "parse", "--no-partial-parse", "--profiles-dir", "."], cwd=project)
        out.append({"models": n, "tally": tally, "dbt": dbt})
    return out


def strip(r):
    return {k: v for k, v in r.items() if k != "stdout"}


def report(build, compiles, threads):
    lines = []
    lines.append(f"machine: {platform.machine()}, {os.cpu_count()} cores, threads {threads}; {platform.platform()}")
    if build:
        t, d, b = build["tally"], build["duckdb"], build["dbt"]
        lines.append("")
        lines.append(f"build, scale {build['scale']:g} (wall s, CPU s, peak RSS MB)")
        lines.append(f"  {'':34} {'wall':>8} {'cpu':>8} {'rss':>8}")
        lines.append(f"  {'tally build':34} {t['wall']:8.2f} {t['cpu']:8.2f} {t['rss_mb']:8.0f}   {t['summary']}")
        lines.append(f"  {'DuckDB chain + 1 query per check':34} {d['wall']:8.2f} {d['cpu']:8.2f} {d['rss_mb']:8.0f}   chain {d['chain_s']:.2f} s + {d['checks']} checks {d['tests_s']:.2f} s")
        lines.append(f"  {'dbt build (dbt-duckdb)':34} {b['wall']:8.2f} {b['cpu']:8.2f} {b['rss_mb']:8.0f}   {b['summary']}")
        lines.append(f"  tally / DuckDB: {t['wall'] / d['wall']:.2f}x wall, {t['rss_mb'] / d['rss_mb']:.2f}x memory")
        lines.append(f"  tally / dbt:    {t['wall'] / b['wall']:.2f}x wall, {t['rss_mb'] / b['rss_mb']:.2f}x memory")
        added = t['wall'] - t['run']['wall']
        lines.append(f"  tally's assertions ({t['checks']} checks): build - run (same models, no checks) = {t['wall']:.2f} - {t['run']['wall']:.2f} = "
                     f"{added:.2f} s, {100 * added / t['wall']:.0f}% of the build's wall time; "
                     f"{t['assertion_s']:.2f} s summed over checks (they overlap models and each other)")
    if compiles:
        lines.append("")
        lines.append("compile (wall s): tally compile vs dbt parse --no-partial-parse")
        for c in compiles:
            lines.append(f"  {c['models']:>6} models   tally {c['tally']['wall']:6.2f}   dbt {c['dbt']['wall']:7.2f}   dbt / tally {c['dbt']['wall'] / c['tally']['wall']:6.1f}x")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--runs", type=int, default=3, help="timed runs per tool (median shown)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    p.add_argument("--compile-models", default="1000,2000,10000", help="comma-separated sizes; empty to skip")
    p.add_argument("--skip-build", action="store_true")
    a = p.parse_args()
    os.makedirs(BENCH, exist_ok=True)
    build = None if a.skip_build else bench_build(a.scale, a.seed, a.runs, a.threads)
    sizes = [int(s) for s in a.compile_models.split(",") if s.strip()]
    compiles = bench_compile(sizes, a.runs) if sizes else []
    text = report(build, compiles, a.threads)
    print("\n" + text)
    doc = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "report": text,
           "build": build and {k: (strip(v) if isinstance(v, dict) else v) for k, v in build.items()},
           "compile": [{"models": c["models"], "tally": strip(c["tally"]), "dbt": strip(c["dbt"])} for c in compiles]}
    with open(os.path.join(BENCH, "results.json"), "w") as f:
        json.dump(doc, f, indent=2)


if __name__ == "__main__":
    main()
