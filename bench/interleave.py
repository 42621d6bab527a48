#!/usr/bin/env python3
"""Two tally binaries on the same data, in interleaved rounds: a change's
speed and memory against the binary before it, on a noisy shared machine.

  bench/interleave.py --base /tmp/tally-before --scale 10 --rounds 10
  bench/interleave.py --base /tmp/tally-before --compile-models 10000 --rounds 5

Each round runs `tally build` of the reference project with each binary (the
order alternating between rounds), from an empty warehouse; with
--compile-models N, `tally compile` of a synthetic project of N models
instead. Prints each binary's median wall, CPU and peak RSS, the ratio of
the new one to the base, and in how many rounds the new one was faster.
Runs with the system python (no venv). The base binary: e.g.
`git worktree add /tmp/base <commit> && cargo build --release --bin tally
--manifest-path /tmp/base/Cargo.toml --target-dir target` (the dependencies
are shared), then copy target/release/tally aside before building this one.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import bench  # noqa: E402  (its helpers: timed, data_dir, paths)


def build_round(binary, args, warehouse):
    shutil.rmtree(warehouse, ignore_errors=True)
    r = bench.timed([binary, "build"] + args, check=False)
    if r["code"] not in (0, 1):
        sys.exit(f"{binary} build exited {r['code']}:\n{r['stdout'][-3000:]}")
    return r


def compile_round(binary, project):
    return bench.timed([binary, "compile", "-q"], cwd=project)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base", required=True, help="the binary to compare against")
    p.add_argument("--new", default=bench.TALLY, help="default: target/release/tally")
    p.add_argument("--scale", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    p.add_argument("--compile-models", type=int, default=0, help="compare `tally compile` of N models instead")
    a = p.parse_args()
    os.makedirs(bench.BENCH, exist_ok=True)
    binaries = {"base": os.path.abspath(a.base), "new": os.path.abspath(a.new)}
    if a.compile_models:
        project = os.path.join(bench.BENCH, f"compile-{a.compile_models}")
        if not os.path.exists(project):
            gen = os.path.join(os.path.dirname(__file__), "gen_compile_project.py")
            subprocess.run([sys.executable, gen, "--models", str(a.compile_models), "--out", project], check=True)
        what = f"tally compile, {a.compile_models} models"
        run = lambda b: compile_round(b, project)  # noqa: E731
    else:
        data = bench.data_dir(a.scale, a.seed)
        args = ["--target", "bench", "--vars", f"{{raw_root: '{data}'}}", "--threads", str(a.threads), "-q"]
        warehouse = os.path.join(bench.BENCH, "warehouse")
        what = f"tally build, scale {a.scale:g}, {a.threads} threads"
        run = lambda b: build_round(b, args, warehouse)  # noqa: E731
    for b in binaries.values():
        run(b)  # a warm-up each, not counted (the first compile writes target/compiled)
    results = {k: [] for k in binaries}
    for i in range(a.rounds):
        order = ["base", "new"] if i % 2 == 0 else ["new", "base"]
        for k in order:
            results[k].append(run(binaries[k]))
        print(f"round {i + 1}: " + ", ".join(f"{k} {results[k][-1]['wall']:.2f} s" for k in order), flush=True)
    med = {k: {m: statistics.median(r[m] for r in rs) for m in ("wall", "cpu", "rss_mb")} for k, rs in results.items()}
    faster = sum(n["wall"] < b["wall"] for n, b in zip(results["new"], results["base"]))
    print(f"\n{what}: {a.rounds} interleaved rounds (medians)\n")
    print("| binary | wall s | CPU s | peak RSS MB |")
    print("|---|---:|---:|---:|")
    for k in binaries:
        print(f"| {k} ({binaries[k]}) | {med[k]['wall']:.2f} | {med[k]['cpu']:.2f} | {med[k]['rss_mb']:.0f} |")
    ratio = {m: med["new"][m] / med["base"][m] for m in ("wall", "cpu", "rss_mb")}
    print(f"| new / base | {ratio['wall']:.3f} | {ratio['cpu']:.3f} | {ratio['rss_mb']:.3f} |")
    print(f"\nnew faster in {faster} of {a.rounds} rounds; highest RSS base {max(r['rss_mb'] for r in results['base']):.0f} MB, new {max(r['rss_mb'] for r in results['new']):.0f} MB")


if __name__ == "__main__":
    main()
