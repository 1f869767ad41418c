"""Worlds larger than memory: ``fraudsim generate`` streams day partitions to Parquet. Prints transactions per
second and the peak resident memory (RSS) of the generating process at growing numbers of days (so growing numbers
of rows, same customers), and, as the baseline measured in the same run, the in-memory ``World.generate()`` at the
smallest size. Goal: peak RSS flat in the number of rows (ratio largest ÷ smallest ≈ 1) and under 3 GB.

Each measurement is a fresh process (peak RSS from ``wait4``); Numba's cache is warmed first.

usage: python benchmarks/bench_world_scale.py [--customers 200000] [--days 3,24] [--out DIR]
       (200,000 customers make about 0.4 million transactions a day: 24 days ≈ 10 million, 240 days ≈ 100 million:
        --days 3,24,240 takes about 12 minutes on 2 cores and writes about 4 GB to --out)
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STREAM = """
import sys
from simulator.world import World, WorldConfig
from simulator.world.parquet import write_world
c, d, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
s = write_world(World(WorldConfig(customers=c, days=d), seed=0), out)
print(s.rows)
"""
IN_MEMORY = """
import sys
from simulator.world import World, WorldConfig
c, d = int(sys.argv[1]), int(sys.argv[2])
print(World(WorldConfig(customers=c, days=d), seed=0).generate().height)
"""


def measure(code: str, *args: str) -> tuple[int, float, float]:
    """(rows, seconds, peak RSS in MB) of a fresh process running ``code``."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"generation failed with exit code {proc.returncode}")
    return int(out.strip().splitlines()[-1]), seconds, usage.ru_maxrss / 1024


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--customers", type=int, default=200_000)
    ap.add_argument("--days", default="3,24", help="comma-separated day counts, smallest first")
    ap.add_argument("--out", type=Path, help="folder for the Parquet output (default: a temporary one, removed)")
    args = ap.parse_args(argv)
    days = [int(d) for d in args.days.split(",")]

    measure(STREAM, "300", "2", str(Path(tempfile.mkdtemp()) / "warm"))  # compile/cache the Numba kernels
    with tempfile.TemporaryDirectory(dir=args.out) as tmp:
        base_rows, base_s, base_rss = measure(IN_MEMORY, str(args.customers), str(days[0]))
        results = []
        for d in days:
            rows, s, rss = measure(STREAM, str(args.customers), str(d), str(Path(tmp) / f"world-{d}"))
            results.append((d, rows, s, rss))
            print(f"  streamed {d} days: {rows:,} rows in {s:.0f} s, peak RSS {rss:,.0f} MB", flush=True)
    print(f"{args.customers:,} customers; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end")
    print(f"{'path':<40}{'rows':>14}{'rows/s':>12}{'peak RSS MB':>14}")
    print(f"{'World.generate() in memory (baseline)':<40}{base_rows:>14,}{base_rows / base_s:>12,.0f}{base_rss:>14,.0f}")
    for d, rows, s, rss in results:
        print(f"{f'generate -o folder/, {d} days':<40}{rows:>14,}{rows / s:>12,.0f}{rss:>14,.0f}")
    first, last = results[0], results[-1]
    print(f"peak RSS, largest ÷ smallest streamed ({last[1] / first[1]:.1f}× the rows): {last[3] / first[3]:.2f}")
    print(f"peak RSS, streamed ÷ in memory at {days[0]} days: {first[3] / base_rss:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
