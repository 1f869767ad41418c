"""Sweeps on Ray: 8 variants of ``scenarios/release_check.yaml`` (2 budgets × 4 seeds) run by ``fraudsim sweep``
with ``--engine ray`` (a local Ray on this machine's cores) against ``--engine serial`` (one process, one variant
after the other) as the baseline, measured in the same run. Goal: Ray ≥ 1.6× faster on 2 cores, and the merged
sweep files equal row for row (same seeds; wall-clock columns aside).

The variants are smaller than the release check itself (``--budget``, ``--limit``) so the whole benchmark takes
minutes, not hours; Ray's start-up is included in its time.

usage: python benchmarks/bench_sweep.py [--budgets 100,200] [--seeds 1,2,3,4] [--limit 20] [--cpus N]
"""
from __future__ import annotations

import argparse
import os
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budgets", default="100,200")
    ap.add_argument("--seeds", default="1,2,3,4")
    ap.add_argument("--limit", type=int, default=20, help="targets per variant")
    ap.add_argument("--cpus", type=int, default=None, help="Ray CPUs (default: all of this machine's)")
    args = ap.parse_args(argv)
    if not ray_available():
        raise SystemExit("needs Ray: pip install -e '.[ray]'")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = yaml.safe_load((ROOT / "scenarios" / "release_check.yaml").read_text())
        base["attack"]["limit"] = args.limit
        for section in ("data", "model"):
            base[section]["path"] = str((ROOT / "scenarios" / base[section]["path"]).resolve())
        (tmp / "release_check.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
        grid = {"attack.budget": [int(b) for b in args.budgets.split(",")], "seed": [int(s) for s in args.seeds.split(",")]}
        n = len(grid["attack.budget"]) * len(grid["seed"])
        times, files = {}, {}
        for engine in ("serial", "ray"):
            sw = tmp / f"sweep-{engine}.yaml"
            sw.write_text(yaml.safe_dump({"base": "release_check.yaml", "grid": grid, "output": f"{engine}.duckdb"}))
            t0 = time.perf_counter()
            res = run_sweep(sw, engine=engine, num_cpus=args.cpus)
            times[engine] = time.perf_counter() - t0
            files[engine] = res.path
            failed = [r for r in res.rows if r["status"] != "finished"]
            if failed:
                raise SystemExit(f"{engine}: {len(failed)} variants failed, first: {failed[0]['error']}")
            print(f"  {engine}: {n} variants in {times[engine]:.1f} s", flush=True)
        a, b = comparable_rows(files["serial"]), comparable_rows(files["ray"])
        a.pop("sweep"), b.pop("sweep")
        same = a == b
        diff = [t for t in a if a.get(t) != b.get(t)]
        rows = sum(len(v) for v in a.values())
    print(f"{n} variants of release_check (budgets {args.budgets}, seeds {args.seeds}, {args.limit} targets each); "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"{'engine':<36}{'seconds':>10}{'variants/min':>14}")
    print(f"{'serial, one process (baseline)':<36}{times['serial']:>10.1f}{n / times['serial'] * 60:>14.1f}")
    print(f"{'ray, local cluster':<36}{times['ray']:>10.1f}{n / times['ray'] * 60:>14.1f}")
    print(f"{'speed-up ray ÷ serial (goal >= 1.6)':<36}{times['serial'] / times['ray']:>10.2f}")
    print(f"merged files equal row for row: {'yes' if same else 'NO, differing tables: ' + ', '.join(diff)} "
          f"({rows:,} rows in {len(a)} tables)")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
