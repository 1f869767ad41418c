"""Report benchmark: how long ``fraudsim report`` takes on a run file with a million queries.

Builds a synthetic run through the real :class:`simulator.store.Store` and :class:`~simulator.store.QueryLog` (so the
schema, dtypes and batching are the runner's): targets × strategies × budget queries whose scores walk down
towards the threshold, a transaction stream with labels, one model version with its card, the targets table derived
by SQL from the query log, and the views (:func:`simulator.report.install_views`, as the runner calls it). Then it
times, on that file:

* the baseline: a plain full scan, ``SELECT count(*), avg(score) FROM queries``, on a fresh read-only connection;
* the report in-process (:func:`simulator.report.write_report`: every view, chart and table);
* ``fraudsim report`` as a user runs it (a new process: imports included),

and prints the best of ``--repeat`` runs for each, with the ratio to the scan. Target: the report under 10 s.

usage: python benchmarks/bench_report.py [--queries 1000000] [--targets 100] [--transactions 1000000] [--keep FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from simulator.report import install_views, write_report
from simulator.store import CHEAP_COST, QueryLog, Store, _ident

FEATURES = ("amount", "hour", "merchant_cat", "distance_km", "txn_count_1h", "txn_count_24h", "amount_ratio_30d",
            "card_present", "new_device", "country_mismatch", "account_age_days", "credit_limit")
MUTABLE = (0, 1, 2, 3, 7, 8, 9)
COST = np.array([1.0, 0.5, 0.5, 1.0, 0, 0, 0, 2.0, 1.0, 0.5, 0, 0])
THRESHOLD = 0.05
STRATEGIES = ("random", "evolutionary", "greedy", "boundary")


def features(rng: np.random.Generator, n: int) -> np.ndarray:
    X = np.empty((n, len(FEATURES)))
    X[:, 0] = np.round(rng.lognormal(4, 1.2, n), 2)
    X[:, 1] = rng.integers(0, 24, n)
    X[:, 2] = rng.integers(0, 10, n)
    X[:, 3] = rng.exponential(30, n)
    X[:, 4] = rng.poisson(1, n)
    X[:, 5] = rng.poisson(4, n)
    X[:, 6] = rng.lognormal(0, 0.6, n)
    X[:, 7] = rng.integers(0, 2, n)
    X[:, 8] = rng.integers(0, 2, n)
    X[:, 9] = rng.integers(0, 2, n)
    X[:, 10] = rng.integers(10, 4000, n)
    X[:, 11] = rng.integers(5, 250, n) * 100.0
    return X


def build(path: Path, *, queries: int, n_targets: int, n_strategies: int, n_transactions: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    budget = queries // (n_targets * n_strategies)
    strategies = STRATEGIES[:n_strategies]
    run_id = "bench-report"
    store = Store(path, FEATURES)
    now = datetime(2025, 1, 1)
    scenario_yaml = (f"name: bench-report\nseed: {seed}\nworld:\n  customers: 20000\n  days: 30\nattack:\n  limit: {n_targets}\n"
                     f"  budget: {budget}\n  strategies: [{', '.join(strategies)}]\n")
    store.execute("INSERT INTO runs VALUES (?, 'bench-report', ?, ?, ?, 'finished', NULL, ?, 'xgboost', ?, 'score', ?, ?, "
                  "'bench', NULL)", [run_id, seed, now, now, "0" * 64, THRESHOLD, budget, scenario_yaml])
    card = {"kind": "xgboost", "feature_names": list(FEATURES), "threshold": THRESHOLD, "test_auc": 0.9,
            "params": {"max_depth": 5, "eta": 0.1}}
    store.execute("INSERT INTO model_versions VALUES (?, 1, 'xgboost', NULL, ?, ?, 'synthetic', 0.9, ?, ?)",
                  [run_id, "0" * 64, THRESHOLD, json.dumps(card), now])

    # the transaction stream: labels, scores that separate them, decisions at the threshold
    n = n_transactions
    is_fraud = (rng.random(n) < 0.01).astype(np.int32)
    score = np.clip(rng.beta(1, 60, n) + is_fraud * rng.beta(3, 2, n), 0, 1)
    X = features(rng, n)
    tx = {"run_id": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([run_id])),
          "transaction_id": np.arange(n, dtype=np.int64), "is_fraud": is_fraud, "score": score,
          "decision": np.where(score >= THRESHOLD, "decline", "approve"), "model_version": np.ones(n, np.int32),
          "split": np.where(np.arange(n) < int(n * 0.6), "train", "test"), "day": (np.arange(n) * 30 // n).astype(np.int32),
          "fraud_type": np.where(is_fraud == 1, rng.integers(1, 5, n), 0).astype(np.int32)}
    tx.update(store.feature_table(X))
    store.append("transactions", tx)

    # targets: caught frauds of the test split; each strategy walks every target's score down over its budget
    caught = np.flatnonzero((is_fraud == 1) & (score >= THRESHOLD) & (np.arange(n) >= int(n * 0.6)))
    rows = rng.choice(caught, n_targets, replace=len(caught) < n_targets)
    target_ids, X0, s0 = rows.astype(np.int64), X[rows], score[rows]
    orig = {"target_id": target_ids, "original_score": s0} | store.feature_table(X0)
    store.con.register("_originals", pa.table(orig))
    log = QueryLog(store, run_id)
    step = 50
    for s_idx, name in enumerate(strategies):
        hardness = rng.lognormal(1.0 + 0.5 * s_idx, 1.5, n_targets)  # some targets fall fast, some hold
        for start in range(0, budget, step):
            k = min(step, budget - start)
            qi = np.tile(np.arange(start + 1, start + k + 1, dtype=np.int32), n_targets)
            tid = np.repeat(target_ids, k)
            progress = qi / budget
            sc = np.repeat(s0, k) * np.exp(-progress * 40 / np.repeat(hardness, k)) * rng.lognormal(0, 0.5, len(qi))
            Xq = np.repeat(X0, k, axis=0)
            moved = rng.random((len(qi), len(MUTABLE))) < 0.3
            for m, j in enumerate(MUTABLE):
                Xq[moved[:, m], j] = Xq[moved[:, m], j] * rng.uniform(0.5, 1.5, moved[:, m].sum())
            cost = (moved * COST[list(MUTABLE)]).sum(1) * rng.uniform(0.2, 1.0, len(qi))
            evaded = sc < THRESHOLD
            log.add(round_=0, agent_id=None, strategy=name, target_id=tid, query_index=qi, score=sc,
                    decision=(~evaded).astype(np.int8), evaded=evaded, cost=cost, X=Xq)
        log.flush()
    feats = "".join(f", any_value(o.{_ident(c)})" for c in store.columns)
    store.execute(f"""INSERT INTO targets
        SELECT q.run_id, q.strategy, q.target_id, any_value(o.original_score), count(*)::INTEGER, bool_or(q.evaded),
          min(q.query_index) FILTER (WHERE q.evaded), arg_min(q.cost, q.query_index) FILTER (WHERE q.evaded),
          min(q.cost) FILTER (WHERE q.evaded), coalesce(bool_or(q.evaded AND q.cost <= {CHEAP_COST}), false),
          min(q.query_index) FILTER (WHERE q.evaded AND q.cost <= {CHEAP_COST}){feats}
        FROM queries q JOIN _originals o ON o.target_id = q.target_id
        GROUP BY q.run_id, q.strategy, q.target_id""")
    store.con.unregister("_originals")
    store.finish()
    install_views(path)  # what the runner does once the file is in place
    return run_id


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=1_000_000)
    ap.add_argument("--targets", type=int, default=100)
    ap.add_argument("--strategies", type=int, default=2, choices=range(1, len(STRATEGIES) + 1))
    ap.add_argument("--transactions", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="keep the run file here (default: a temporary folder)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="fraudsim-bench-report-"))
    path = args.keep or work / "bench.duckdb"
    try:
        t0 = time.perf_counter()
        build(path, queries=args.queries, n_targets=args.targets, n_strategies=args.strategies,
              n_transactions=args.transactions)
        built = time.perf_counter() - t0
        con = duckdb.connect(str(path), read_only=True)
        nq = con.execute("SELECT count(*) FROM queries").fetchall()[0][0]
        nt = con.execute("SELECT count(*) FROM transactions").fetchall()[0][0]
        ev = con.execute("SELECT avg(evaded::DOUBLE) FROM targets").fetchall()[0][0]
        con.close()
        print(f"run file: {nq:,} queries, {nt:,} transactions, {args.targets} targets × {args.strategies} strategies "
              f"({ev:.0%} evaded); {path.stat().st_size / 2**20:.0f} MiB, built in {built:.1f} s; "
              f"{os.cpu_count()} CPUs")

        def scan():
            c = duckdb.connect(str(path), read_only=True)
            c.execute("SELECT count(*), avg(score) FROM queries").fetchall()
            c.close()

        out = work / "report.html"
        t_scan = best_of(scan, args.repeat)
        t_report = best_of(lambda: write_report(path, out), args.repeat)
        exe = shutil.which("fraudsim")
        cmd = [exe] if exe else [sys.executable, "-m", "simulator.cli"]
        t_cli = best_of(lambda: subprocess.run(cmd + ["report", str(path), "-o", str(out)], check=True,
                                               capture_output=True), args.repeat)
        print(f"\n{'step':<52}{'seconds':>10}{'× scan':>10}")
        for name, t in (("baseline: SELECT count(*), avg(score) FROM queries", t_scan),
                        ("report, in-process (write_report)", t_report),
                        ("fraudsim report (new process, imports included)", t_cli)):
            print(f"{name:<52}{t:>10.3f}{t / t_scan:>10.1f}")
        verdict = "OK" if t_cli < 10 else "SLOW"
        print(f"\nreport: {out.stat().st_size / 1024:.0f} KB; target < 10 s: {verdict} (best of {args.repeat})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
