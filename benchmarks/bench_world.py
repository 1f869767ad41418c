"""Throughput of the synthetic world: transactions per second of ``World.generate()``, features included.

A program, not a test. Warms the Numba kernels on a tiny world first so compile time is excluded,
then times one full generation and, as baselines on the same number of rows, a plain ``np.sort``
of an int64 array and a memory copy of the output's bytes.

    python benchmarks/bench_world.py --customers 100000 --days 30
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from simulator.world import World, WorldConfig  # noqa: E402


def _best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--merchants", type=int, default=2_000)
    parser.add_argument("--fraudsters", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1, help="full generations to time (best is kept)")
    args = parser.parse_args()

    start = time.perf_counter()
    World(WorldConfig(customers=200, merchants=200, days=2, fraudsters=8), seed=args.seed).generate()
    warmup = time.perf_counter() - start

    config = WorldConfig(customers=args.customers, merchants=args.merchants, days=args.days, fraudsters=args.fraudsters)
    frame = None
    build_times, generate_times = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        world = World(config, seed=args.seed)
        build_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        frame = world.generate()
        generate_times.append(time.perf_counter() - start)
    assert frame is not None
    rows = frame.height
    build_s, generate_s = min(build_times), min(generate_times)
    total_s = build_s + generate_s

    keys = np.random.default_rng(0).integers(0, 2**62, size=rows)
    sort_s = _best_of(lambda: np.sort(keys), 3)
    payload = np.empty(frame.estimated_size(), dtype=np.uint8)
    payload[:] = 1
    copy_s = _best_of(lambda: payload.copy(), 3)

    fraud_rate = float(frame["is_fraud"].mean())
    print(f"world: {args.customers:,} customers, {args.days} days, {rows:,} transactions, fraud rate {fraud_rate:.4f}")
    print(f"numba warm-up (tiny world, compile or cache load): {warmup:.2f} s")
    print()
    print(f"{'step':<44}{'seconds':>10}{'rows/s':>16}{'ratio':>10}")
    print(f"{'World.generate() (features included)':<44}{generate_s:>10.3f}{rows / generate_s:>16,.0f}{1.0:>10.2f}")
    print(f"{'World() + generate()':<44}{total_s:>10.3f}{rows / total_s:>16,.0f}{total_s / generate_s:>10.2f}")
    print(
        f"{'baseline: np.sort int64, same rows':<44}{sort_s:>10.3f}{rows / sort_s:>16,.0f}{sort_s / generate_s:>10.2f}"
    )
    mb = payload.nbytes / 1e6
    label = f"baseline: memcpy of output ({mb:,.0f} MB)"
    print(f"{label:<44}{copy_s:>10.3f}{rows / copy_s:>16,.0f}{copy_s / generate_s:>10.2f}")
    print()
    print(
        f"generate() is {generate_s / sort_s:.1f}x the time of np.sort on the same rows, "
        f"{generate_s / copy_s:.0f}x a copy of the output"
    )


if __name__ == "__main__":
    main()
