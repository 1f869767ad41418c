"""Kernel throughput: project, mutate and cost on a batch of candidates, in bytes processed per second, against
``np.copyto`` of an array of the same size measured in the same run (a memory-copy bandwidth baseline), and the
ratio (target for project >= 0.5). CPU (Numba) always; GPU (CuPy) when a device is present (there the baseline
is a device-to-device ``cupy.copyto`` and data stay on the device only for the baseline: the kernels' NumPy-in,
NumPy-out contract includes the transfers, reported as they are).

Bytes processed: every per-candidate input array read once and the output written once (project: X, origin,
out; mutate: base, U, Z, V, step, p, origin, out; cost: X, origin, out). The originals ``X0`` and the schema are
tiny and cache-resident, so they are not counted. The copy baseline moves the same number of bytes (an array of
half that size read and written).

"CPU ratio" (CPU rows): the copy's CPU seconds over the kernel's, summed over all its threads: how much work the
kernel costs next to the copy, which a machine shared with other busy processes distorts less than wall time
(there the parallel kernel's threads wait for cores while the single-threaded copy does not).

usage: python benchmarks/bench_kernels.py [--rows 1000000] [--repeat 5]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from simulator.kernels import MODE_LOCAL, cpu, gpu
from simulator.schema import FeatureSchema

SPECS = {
    "amount": {"type": "continuous", "min": 0.5, "max": 20000, "cost": 1.0},
    "hour": {"type": "integer", "min": 0, "max": 23, "cost": 0.5},
    "merchant_cat": {"type": "categorical", "categories": list(range(10)), "cost": 0.5},
    "distance_km": {"type": "continuous", "min": 0, "max": 5000},
    "card_present": {"type": "binary", "direction": "increase", "cost": 2},
    "new_device": {"type": "binary", "direction": "decrease"},
    "country_mismatch": {"type": "binary", "direction": "decrease", "cost": 0.5},
}
FROZEN = ["txn_count_1h", "txn_count_24h", "amount_ratio_30d", "account_age_days", "credit_limit"]
NAMES = list(SPECS) + FROZEN


CPU_TIMES: list[float] = []  # process CPU seconds (all threads) of the best_time calls, in order


def best_time(fn, repeat: int) -> float:
    fn()  # warm-up: JIT compile, caches, thread pool
    times, cpu_s = [], []
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        cpu_s.append(time.process_time() - c0)
    CPU_TIMES.append(min(cpu_s))
    return min(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="candidates per call")
    ap.add_argument("--targets", type=int, default=40, help="distinct originals the candidates belong to")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import polars as pl

    sa = FeatureSchema.from_mapping(NAMES, SPECS).with_bounds_from(
        pl.DataFrame({f: [0.0, 100.0] for f in FROZEN})).arrays()
    rng = np.random.default_rng(args.seed)
    n, d = args.rows, len(NAMES)
    X0 = np.column_stack([rng.uniform(0.5, 20000, args.targets), rng.integers(0, 24, args.targets),
                          rng.integers(0, 10, args.targets), rng.uniform(0, 5000, args.targets),
                          rng.integers(0, 2, (args.targets, 3)), rng.uniform(0, 100, (args.targets, 5))]).astype(np.float64)
    origin = np.sort(rng.integers(0, args.targets, n)).astype(np.int64)
    X = X0[origin] + rng.normal(0, 50, (n, d))
    U, Z, V = rng.random((n, d)), rng.standard_normal((n, d)), rng.random(n)
    step, p = np.full(n, 0.05), np.full(n, 0.3)
    base = cpu.project(X, X0, origin, sa)
    out = np.empty_like(X)
    nb = X.nbytes
    work = {  # bytes read + written per call
        "project": 2 * nb + origin.nbytes,
        "mutate": 4 * nb + origin.nbytes + V.nbytes + step.nbytes + p.nbytes,
        "cost": nb + origin.nbytes + 8 * n,
    }

    print(f"{n:,} candidates x {d} features ({nb / 1e6:.0f} MB per float64 array), {args.targets} originals; "
          f"best of {args.repeat}")
    print(f"{'device':<6} {'kernel':<9} {'GB/s':>8} {'copy GB/s':>10} {'ratio':>7} {'Mrows/s':>9} {'CPU ratio':>10}")

    def report(device, name, t, copy_bw):
        bw = work[name] / t
        cpu_ratio = CPU_TIMES[-2] / CPU_TIMES[-1] if device == "cpu" else float("nan")
        print(f"{device:<6} {name:<9} {bw / 1e9:>8.2f} {copy_bw / 1e9:>10.2f} {bw / copy_bw:>7.2f} {n / t / 1e6:>9.1f}"
              f"{cpu_ratio:>11.2f}", flush=True)

    # CPU: the same-size copy moves 2 * bytes (read + write), like the kernels' read + write
    for name, fn in (("project", lambda: cpu.project(X, X0, origin, sa, out=out)),
                     ("mutate", lambda: cpu.mutate(base, X0, origin, U, Z, V, step, p, MODE_LOCAL, sa)),
                     ("cost", lambda: cpu.cost(X, X0, origin, sa))):
        src = np.empty(work[name] // 16, np.float64)
        src.fill(1.0)
        dst = np.empty_like(src)
        copy_bw = 2 * src.nbytes / best_time(lambda: np.copyto(dst, src), args.repeat)
        report("cpu", name, best_time(fn, args.repeat), copy_bw)
        del src, dst

    if gpu.available():
        import cupy as cp

        def sync(fn):
            def run():
                fn()
                cp.cuda.Device().synchronize()
            return run

        for name, fn in (("project", lambda: gpu.project(X, X0, origin, sa)),
                         ("mutate", lambda: gpu.mutate(base, X0, origin, U, Z, V, step, p, MODE_LOCAL, sa)),
                         ("cost", lambda: gpu.cost(X, X0, origin, sa))):
            src = cp.ones(work[name] // 16, cp.float64)
            dst = cp.empty_like(src)
            copy_bw = 2 * src.nbytes / best_time(sync(lambda: cp.copyto(dst, src)), args.repeat)
            report("gpu", name, best_time(sync(fn), args.repeat), copy_bw)
            del src, dst
    else:
        print("(no CuPy/GPU: GPU rows skipped)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
