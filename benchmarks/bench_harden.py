"""Time per hardened candidate and how it scales with training rows; also writes a team-style harden scenario.

A program, not a test. For each training size it writes team-style data (column names with spaces, unicode,
upper case and an SQL keyword; 5% NaN in one training column), trains a base XGBoost model, and runs
``fraudsim harden`` with every method but tuning on a small attack. Printed per size: seconds per candidate
(training and measuring it), next to the baseline measured in the same run: training the base model alone on the
same rows (``train_model``), and the ratio.

    python benchmarks/bench_harden.py --rows 5000 20000 80000
    python benchmarks/bench_harden.py --make-team /tmp/team --rows 60000   # data + scenario, then:
    fraudsim harden /tmp/team/harden.yaml -o /tmp/team/out
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import yaml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from simulator.harden import harden  # noqa: E402
from simulator.scenario import Scenario  # noqa: E402
from simulator.target.train import save_model, train_model  # noqa: E402

AMOUNT, HOUR, FLAG, DIST, AGE, LABEL = "Transaction Amount", "hour of day", "SELECT", "dïstance km", "ACCOUNT_AGE", "Fraud Flag"
NAMES = [AMOUNT, HOUR, FLAG, DIST, AGE]
FEATURES = {
    AMOUNT: {"type": "continuous", "min": 1, "max": 5000, "cost": 1.0},
    HOUR: {"type": "integer", "min": 0, "max": 23, "cost": 0.5},
    FLAG: {"type": "binary", "direction": "decrease", "cost": 0.5},
    DIST: {"type": "continuous", "min": 0, "max": 500, "cost": 1.0},
}


def team_frame(n: int, seed: int, nan_share: float = 0.0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    amount = np.round(np.exp(rng.normal(4, 1.2, n)).clip(1, 5000), 2)
    hour = rng.integers(0, 24, n).astype(float)
    flag = (rng.random(n) < 0.15).astype(float)
    dist = rng.gamma(2.0, 20.0, n).clip(0, 500)
    age = rng.integers(0, 3000, n).astype(float)
    z = -5.2 + 0.55 * np.log(amount) + 1.6 * flag + 0.012 * dist - 0.0006 * age + 0.8 * ((hour < 5) | (hour > 22))
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(np.int8)
    if nan_share:
        dist = np.where(rng.random(n) < nan_share, np.nan, dist)
    return pl.DataFrame({AMOUNT: amount, HOUR: hour, FLAG: flag, DIST: dist, AGE: age, LABEL: y})


def make_team(d: Path, rows: int, *, methods: list[str], attack: dict, params: dict | None = None,
              seed: int = 0) -> tuple[Path, float]:
    """Write train/holdout Parquet, a base model and harden.yaml into ``d``; returns the scenario and the base
    model's training seconds."""
    d.mkdir(parents=True, exist_ok=True)
    train, hold = team_frame(rows, seed + 1, nan_share=0.05), team_frame(max(5000, rows // 3), seed + 2)
    train.write_parquet(d / "train.parquet")
    hold.write_parquet(d / "holdout.parquet")
    X, Xh = train.select(NAMES).to_numpy().astype(np.float64), hold.select(NAMES).to_numpy().astype(np.float64)
    t0 = time.perf_counter()
    trained = train_model(X, train[LABEL].to_numpy(), Xh, hold[LABEL].to_numpy(), NAMES, kind="xgboost", seed=seed)
    base_s = time.perf_counter() - t0
    save_model(trained, d / "candidate.json")
    raw = {"name": "harden-team", "seed": seed, "train": {"path": "train.parquet", "label": LABEL},
           "data": {"path": "holdout.parquet", "label": LABEL}, "model": {"path": "candidate.json", "threshold_fpr": 0.01},
           "features": FEATURES, "attack": attack,
           "harden": {"methods": methods, "max_auc_loss": 0.01, "params": params or {}}}
    (d / "harden.yaml").write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
    return d / "harden.yaml", base_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[5000, 20000, 80000])
    ap.add_argument("--make-team", type=Path, default=None, help="only write the team-style scenario here")
    args = ap.parse_args()
    if args.make_team:
        path, _ = make_team(args.make_team, args.rows[0], methods=["adversarial_training", "adversarial_combined",
                                                                    "cheap_ball", "robust_gate", "monotone", "squeeze",
                                                                    "ensemble", "tuning"],
                            attack={"targets": "caught_fraud", "limit": 40, "budget": 100, "feedback": "score",
                                    "strategies": ["random", "greedy", "evolutionary"]},
                            params={"tuning": {"trials": 10, "budget": 100, "limit": 20}})
        print(f"wrote {path}")
        return
    methods = ["monotone", "squeeze", "ensemble", "adversarial_training", "adversarial_combined", "cheap_ball",
               "robust_gate"]
    attack = {"targets": "caught_fraud", "limit": 10, "budget": 50, "feedback": "score", "strategies": ["random", "greedy"]}
    print("machine: 2 cores shared with other sessions (loaded); ratios are the meaningful numbers\n")
    print(f"{'train rows':>10} {'base train s':>13} {'candidate':<24} {'s/candidate':>12} {'× base train':>13}")
    for rows in args.rows:
        with tempfile.TemporaryDirectory() as tmp:
            path, base_s = make_team(Path(tmp), rows, methods=methods, attack=attack,
                                     params={"ensemble": {"members": 3},
                                             "adversarial_training": {"rounds": 1, "targets": 50, "budget": 50},
                                             "adversarial_combined": {"rounds": 1, "targets": 50, "budget": 50},
                                             "cheap_ball": {"copies": 8}})
            t0 = time.perf_counter()
            harden(Scenario.from_yaml(path), Path(tmp) / "out")
            total = time.perf_counter() - t0
            cands = json.loads((Path(tmp) / "out/candidates.json").read_text())["candidates"]
            for c in cands:
                print(f"{rows:>10,} {base_s:>13.2f} {c['name']:<24} {c['seconds']:>12.2f} {c['seconds'] / base_s:>13.1f}")
            print(f"{rows:>10,} {'':>13} {'(whole harden run)':<24} {total:>12.2f} {total / base_s:>13.1f}\n")


if __name__ == "__main__":
    main()
