"""Sweeps on Ray: 8 variants of ``scenarios/release_check.yaml`` as shipped (40 targets, budget 1000, three
strategies; seeds 1 to 8) run by ``fraudsim sweep`` with ``--engine ray`` (a local Ray on this machine's cores,
one thread per task) against ``--engine serial`` (one process, the variants in a loop, each free to use every core)
as the baseline, measured in the same run. Goal: Ray ≥ 1.6× faster on 2 cores, and the merged sweep files equal
row for row (same seeds; wall-clock columns aside).

Ray's start-up (``ray.init``), its workers' imports and their loading of the Numba kernels are all in Ray's time;
the serial baseline pays the imports once. The Numba cache is warmed first, in a separate process, so that
neither side compiles; the table says how many kernels each process compiled (0 expected) and loaded.

usage: python benchmarks/bench_sweep.py [--budgets 1000] [--seeds 1,...,8] [--limit 40] [--cpus N] [--task-threads 1]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import yaml

from simulator.sweep import ray_available, run_sweep

ROOT = Path(__file__).resolve().parent.parent
WALL_CLOCK = ("engine", "worker", "run_file", "card")  # and TIMESTAMP columns, and those ending in _s / _us


def comparable_rows(path: Path) -> dict[str, list[tuple]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        out = {}
        for (t,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' ORDER BY 1").fetchall():
            cols = [c for c, typ in con.execute("SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ? "
                                                "ORDER BY column_index", [t]).fetchall()
                    if typ != "TIMESTAMP" and not c.endswith(("_s", "_us")) and c not in WALL_CLOCK]
            out[t] = con.execute(f"SELECT {', '.join(chr(34) + c + chr(34) for c in cols)} FROM \"{t}\"").fetchall()
        return out
    finally:
        con.close()


WARM = """
import sys
from simulator.sweep import run_variant, load_sweep
sw = load_sweep(sys.argv[1])
v = sw.variants[0]
print(run_variant(v.scenario, v.source, str(sw.base.parent), sys.argv[2]))
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budgets", default=None, help="comma-separated (default: the scenario's own, 1000)")
    ap.add_argument("--seeds", default="1,2,3,4,5,6,7,8")
    ap.add_argument("--limit", type=int, default=None, help="targets per variant (default: the scenario's own, 40)")
    ap.add_argument("--cpus", type=int, default=None, help="Ray CPUs (default: all of this machine's)")
    ap.add_argument("--task-threads", type=int, default=1, help="threads per Ray task; 0: the libraries' defaults")
    ap.add_argument("--engines", default="serial,ray")
    args = ap.parse_args(argv)
    engines = args.engines.split(",")
    if "ray" in engines and not ray_available():
        raise SystemExit("needs Ray: pip install -e '.[ray]'")
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = yaml.safe_load((ROOT / "scenarios" / "release_check.yaml").read_text())
        if args.limit is not None:
            base["attack"]["limit"] = args.limit
        for section in ("data", "model"):
            base[section]["path"] = str((ROOT / "scenarios" / base[section]["path"]).resolve())
        (tmp / "release_check.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
        grid: dict = {}
        if args.budgets:
            grid["attack.budget"] = [int(b) for b in args.budgets.split(",")]
        grid["seed"] = [int(s) for s in args.seeds.split(",")]
        n = len(grid.get("attack.budget", [0])) * len(grid["seed"])
        budget, limit = args.budgets or base["attack"]["budget"], base["attack"]["limit"]
        # warm Numba's on-disk cache (a small variant, its own process) so that no timed process compiles
        (tmp / "warm.yaml").write_text(yaml.safe_dump({"base": "release_check.yaml", "variants": [{"attack.limit": 2,
                                                        "attack.budget": 20}], "output": "warm.duckdb"}))
        subprocess.run([sys.executable, "-c", WARM, str(tmp / "warm.yaml"), str(tmp / "warm-run.duckdb")], check=True,
                       stdout=subprocess.DEVNULL)
        times, files, results = {}, {}, {}
        for engine in engines:
            sw = tmp / f"sweep-{engine}.yaml"
            sw.write_text(yaml.safe_dump({"base": "release_check.yaml", "grid": grid, "output": f"{engine}.duckdb"}))
            t0 = time.perf_counter()
            res = run_sweep(sw, engine=engine, num_cpus=args.cpus, task_threads=args.task_threads or None)
            times[engine] = time.perf_counter() - t0
            files[engine], results[engine] = res.path, res
            failed = [r for r in res.rows if r["status"] != "finished"]
            if failed:
                raise SystemExit(f"{engine}: {len(failed)} variants failed, first: {failed[0]['error']}")
            print(f"  {engine}: {n} variants in {times[engine]:.1f} s, load average {os.getloadavg()[0]:.1f}", flush=True)
        same, diff, rows, tables = True, [], 0, 0
        if len(files) == 2:
            a, b = (comparable_rows(files[e]) for e in engines)
            a.pop("sweep"), b.pop("sweep")
            same = a == b
            diff = [t for t in a if a.get(t) != b.get(t)]
            rows, tables = sum(len(v) for v in a.values()), len(a)
    print(f"{n} variants of release_check (budget {budget}, seeds {args.seeds}, {limit} targets each, "
          f"strategies {', '.join(base['attack']['strategies'])}); {os.cpu_count()} CPUs, load average "
          f"{load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (1 min)")
    print(f"{'engine':<40}{'seconds':>10}{'variants/min':>14}")
    label = {"serial": "serial, one process (baseline)",
             "ray": f"ray, local, {args.task_threads or 'default'} thread(s)/task"}
    for e in engines:
        print(f"{label[e]:<40}{times[e]:>10.1f}{n / times[e] * 60:>14.1f}")
    for e in engines:
        r = results[e]
        parts = ", ".join(f"{k} {v:.1f}" for k, v in r.timings.items())
        print(f"  {e}: {parts}")
        for w, st in sorted(r.workers.items()):
            print(f"    worker {w}: {st['variants']} variants, first one {st.get('first_variant_s', 0):.1f} s "
                  f"(imports included), Numba kernels compiled {st['numba_compiled']}, loaded from cache "
                  f"{st['numba_cached']}")
    if len(files) == 2:
        print(f"{'speed-up ray ÷ serial (goal >= 1.6)':<40}{times['serial'] / times['ray']:>10.2f}")
        print(f"merged files equal row for row: {'yes' if same else 'NO, differing tables: ' + ', '.join(diff)} "
              f"({rows:,} rows in {tables} tables)")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
