"""Throughput of a campaign: simulated transactions per second over its rounds, scoring, defences and logging included.

A program, not a test. Runs a tiny campaign first so Numba compile or cache loading is excluded, then a campaign of
``--customers`` customers over ``--rounds`` days (three rings as in the default scenario, retraining every
``--retrain-every`` rounds), written to a DuckDB file. Baselines measured in the same run, on the same machine:

* ``World.generate()`` of a fresh world of the same size for the same number of days (traffic alone, no attackers,
  no model, no store);
* the deployed model's raw ``predict_score`` on the same number of rows.

    python benchmarks/bench_campaign.py --customers 100000 --rounds 30
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from simulator.campaign.engine import execute_campaign  # noqa: E402
from simulator.campaign.setup import prepare_campaign  # noqa: E402
from simulator.scenario import Scenario  # noqa: E402
from simulator.world import World, WorldConfig  # noqa: E402


def scenario(customers: int, history: int, rounds: int, retrain_every: int, seed: int) -> Scenario:
    default = Scenario.default().model_dump(mode="json", exclude_none=True)
    return Scenario.from_dict({
        "name": "bench-campaign", "seed": seed,
        "world": {"customers": customers, "days": history},
        "rounds": rounds,
        "adversaries": default["adversaries"],
        "defence": dict(default["defence"], retrain={"every": retrain_every, "window_days": max(3, history - 3)}),
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=30, help="campaign days")
    parser.add_argument("--history", type=int, default=8, help="history days before the campaign (baseline training)")
    parser.add_argument("--retrain-every", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        warm = prepare_campaign(scenario(2000, 8, 2, 1, args.seed))
        execute_campaign(warm, output=Path(tmp) / "warm.duckdb")
        warmup = time.perf_counter() - start

        sc = scenario(args.customers, args.history, args.rounds, args.retrain_every, args.seed)
        start = time.perf_counter()
        prep = prepare_campaign(sc)
        prepare_s = time.perf_counter() - start
        start = time.perf_counter()
        res = execute_campaign(prep, output=Path(tmp) / "bench.duckdb")
        execute_s = time.perf_counter() - start
        size_mb = res.path.stat().st_size / 1e6
        rounds = res.rounds()
    t = res.timings
    rows = int(t["campaign_transactions"])
    campaign_s = t["campaign_s"]

    # Baselines, same machine, same run: the world alone over the same days, raw predict on as many rows.
    start = time.perf_counter()
    world = World(WorldConfig(customers=args.customers, days=args.rounds), seed=args.seed + 1)
    frame = world.generate()
    world_s = time.perf_counter() - start
    world_rows = frame.height
    X = np.ascontiguousarray(frame.select(list(prep.names)).to_numpy(), dtype=np.float64)
    X = np.resize(X, (rows, X.shape[1])) if len(X) < rows else X[:rows]
    start = time.perf_counter()
    prep.model.predict_score(X)
    predict_s = time.perf_counter() - start

    print(f"campaign: {args.customers:,} customers, {args.rounds} rounds (days) after {args.history} history days, "
          f"{rows:,} transactions ({int(rounds['probes'].sum()):,} probes from "
          f"{sum(r.agents for r in sc.adversaries.rings)} agents in {len(sc.adversaries.rings)} rings), "
          f"{int(rounds['retrained'].sum())} retrains, run file {size_mb:,.0f} MB")
    print(f"numba warm-up (tiny campaign, compile or cache load): {warmup:.2f} s")
    print(f"history and baseline (prepare): {prepare_s:.2f} s (world {t['world_s']:.2f} s, training {t['train_s']:.2f} s); "
          f"writing the history: {t['history_store_s']:.2f} s")
    print()
    print(f"{'step':<58}{'seconds':>9}{'txn/s':>13}{'ratio':>8}")
    line = lambda name, s, n: print(f"{name:<58}{s:>9.2f}{n / s:>13,.0f}{(n / s) / (rows / campaign_s):>8.2f}")
    line("campaign rounds (scoring, defences, logging, retraining)", campaign_s, rows)
    line("  ... end to end (history, baseline, store, rounds)", prepare_s + execute_s, rows)
    line("baseline: World.generate(), same customers and days", world_s, world_rows)
    line("baseline: raw model predict_score, same rows", predict_s, rows)
    print()
    print("where the rounds' time goes:")
    for key in sorted(k for k in t if k.startswith("round_")):
        print(f"  {key[6:-2]:<28}{t[key]:>8.2f} s  {100 * t[key] / campaign_s:>5.1f}%")
    print()
    print(f"campaign rounds: {rows / campaign_s:,.0f} simulated transactions/s, {rows / campaign_s / (world_rows / world_s):.2f}x "
          f"the world alone, {rows / campaign_s / (rows / predict_s):.2f}x raw predict")


if __name__ == "__main__":
    main()
