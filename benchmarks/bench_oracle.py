"""Oracle throughput: queries per second through :class:`simulator.oracle.Oracle` (budget checks, constraint
checks, scoring, feedback, logging into a real DuckDB store) against raw batched ``model.predict_score`` on the
very same rows, and the ratio (target >= 0.7).

The candidate rows are generated up front (as a batch strategy would ask them: ``--targets`` targets times
``--batch`` candidates per step), so both sides time only the door to the model, not the search.

usage: python benchmarks/bench_oracle.py [--targets 40] [--batch 10] [--steps 400] [--model m.json]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from simulator.kernels import MODE_UNIFORM, get_kernels
from simulator.oracle import Oracle
from simulator.schema import FeatureSchema
from simulator.store import QueryLog, Store
from simulator.target import TargetModel, load_model

FEATURES = ("amount", "hour", "merchant_cat", "distance_km", "txn_count_1h", "txn_count_24h", "amount_ratio_30d",
            "card_present", "new_device", "country_mismatch", "account_age_days", "credit_limit")


def synthetic_model(seed: int = 0) -> tuple[TargetModel, np.ndarray]:
    """An XGBoost model the size of the default scenario's (150 trees of depth 5) on world-shaped features."""
    import xgboost as xgb

    from simulator.target.train import XGB_PARAMS, XGB_ROUNDS

    rng = np.random.default_rng(seed)
    n = 20_000
    X = np.column_stack([rng.lognormal(4, 1.5, n).clip(0.5, 20000), rng.integers(0, 24, n), rng.integers(0, 10, n),
                         rng.exponential(100, n).clip(0, 5000), rng.poisson(1, n), rng.poisson(3, n),
                         rng.lognormal(0, 1, n), rng.integers(0, 2, n), rng.integers(0, 2, n), rng.integers(0, 2, n),
                         rng.integers(0, 9000, n), rng.choice([300, 1000, 5000, 20000], n)]).astype(np.float64)
    logit = np.log(X[:, 0]) / 2 + X[:, 8] + X[:, 9] - X[:, 7] + X[:, 4] / 2 + (X[:, 1] < 6) - 5
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    booster = xgb.train(dict(XGB_PARAMS, seed=seed), xgb.DMatrix(X, label=y, feature_names=list(FEATURES)), XGB_ROUNDS)
    return load_model(booster), X


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="XGBoost/LightGBM model file (default: a synthetic model of the default's size)")
    ap.add_argument("--targets", type=int, default=40)
    ap.add_argument("--batch", type=int, default=10, help="candidates per target per step")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--repeat", type=int, default=3, help="best of N timings on each side")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    if args.model:
        model = load_model(args.model)
        rng = np.random.default_rng(args.seed)
        X_pool = rng.random((1000, len(model.feature_names)))
    else:
        model, X_pool = synthetic_model(args.seed)
    names = list(model.feature_names)
    specs = {"amount": {"min": 0.5, "max": 20000}, "hour": {"type": "integer", "min": 0, "max": 23},
             "distance_km": {"min": 0, "max": 5000}, "new_device": {"type": "binary", "direction": "decrease"}}
    specs = {k: v for k, v in specs.items() if k in names} or {names[0]: {"min": float(X_pool[:, 0].min()),
                                                                          "max": float(X_pool[:, 0].max())}}
    import polars as pl

    sa = FeatureSchema.from_mapping(names, specs).with_bounds_from(pl.DataFrame(X_pool, schema=names)).arrays()
    kernels = get_kernels("cpu")
    rng = np.random.default_rng(args.seed)
    originals = np.ascontiguousarray(X_pool[rng.choice(len(X_pool), args.targets, replace=False)])
    n_step = args.targets * args.batch
    origin = np.repeat(np.arange(args.targets), args.batch)
    steps = []
    for _ in range(args.steps):
        U, Z, V = rng.random((n_step, len(names))), rng.standard_normal((n_step, len(names))), rng.random(n_step)
        steps.append(kernels.mutate(originals[origin], originals, origin, U, Z, V, np.zeros(n_step),
                                    np.full(n_step, 0.4), MODE_UNIFORM, sa))
    total = n_step * args.steps

    model.predict_score(steps[0])  # warm up (thread pools, JIT of the kernels)
    oracle_warm = Oracle(model, threshold=0.5, feedback="score", budget=10**9, originals=originals, schema_arrays=sa,
                         kernels=kernels, strategy="bench")
    oracle_warm.query(origin, steps[0])

    raw_times, oracle_times, flush_times = [], [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        for X in steps:
            model.predict_score(X)
        raw_times.append(time.perf_counter() - t0)

        with tempfile.TemporaryDirectory() as tmp:
            store = Store(Path(tmp) / "bench.duckdb", names)
            log = QueryLog(store, "bench-run")
            oracle = Oracle(model, threshold=0.5, feedback="score", budget=args.steps * args.batch, originals=originals,
                            schema_arrays=sa, kernels=kernels, strategy="bench", log=log)
            t0 = time.perf_counter()
            for X in steps:
                oracle.query(origin, X)
            t1 = time.perf_counter()
            log.flush()
            oracle_times.append(time.perf_counter() - t0)
            flush_times.append(time.perf_counter() - t1)
            rows = store.con.execute("SELECT count(*) FROM queries").fetchall()[0][0]
            store.abandon()
            assert rows == total, (rows, total)

    raw_qps, oracle_qps = total / min(raw_times), total / min(oracle_times)
    print(f"{args.targets} targets x {args.batch} candidates per step, {args.steps} steps = {total:,} queries "
          f"({len(names)} features, {model.kind}); best of {args.repeat}")
    print(f"{'path':<44}{'queries/s':>14}{'seconds':>10}")
    print(f"{'raw model.predict_score (baseline)':<44}{raw_qps:>14,.0f}{min(raw_times):>10.3f}")
    print(f"{'Oracle.query + DuckDB query log':<44}{oracle_qps:>14,.0f}{min(oracle_times):>10.3f}")
    k = int(np.argmin(oracle_times))
    print(f"{'  of which the DuckDB append (log.flush)':<44}{'':>14}{flush_times[k]:>10.3f}")
    print(f"{'ratio oracle / raw (target >= 0.7)':<44}{oracle_qps / raw_qps:>14.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
