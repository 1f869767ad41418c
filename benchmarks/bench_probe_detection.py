"""Stateful probe detection on the default campaign: detection rate against the share of legitimate
transactions affected, for the k-NN detector (Chen, Carlini & Wagner 2019 style; simulator.defences.stateful)
next to the campaign's own near-duplicate detector (simulator.campaign.detect), measured on the same stream.

A program, not a test. It runs the built-in default campaign (or reads ``--run FILE``, a finished campaign run),
then replays the campaign rounds' transaction stream (customers and probes, in time order) through the k-NN
detector keyed by card and by device, and sweeps its threshold. The baseline is the campaign's detector as it ran:
the ``rounds`` table's probes detected and legitimate transactions hit. The threshold is calibrated on the first
``--calibration-rounds`` rounds' legitimate transactions and measured on the later rounds (no peeking).

    python benchmarks/bench_probe_detection.py                 # the default campaign (minutes)
    python benchmarks/bench_probe_detection.py --run fraudsim-default.duckdb
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

import duckdb  # noqa: E402

from simulator.defences.stateful import calibrate, embed, knn_distances  # noqa: E402
from simulator.schema import FeatureSchema  # noqa: E402
from simulator.store import _ident  # noqa: E402

LEGIT_SHARES = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05)


def run_default(out: Path, customers: int | None) -> Path:
    from simulator.runner import execute, prepare
    from simulator.scenario import Scenario

    sc = Scenario.default()
    if customers:
        sc = sc.replace(world=dict(sc.world.model_dump(), customers=customers))
    return execute(prepare(sc), output=out).path


def load_stream(path: Path):
    con = duckdb.connect(str(path), read_only=True)
    try:
        cols = [r[0] for r in con.execute("DESCRIBE transactions").fetchall()]
        from simulator.world import FEATURES, default_feature_specs

        feats = [f for f in FEATURES if f in cols]
        rows = con.execute(f"""SELECT "timestamp", customer_id, device_id, coalesce(is_probe, false) AS is_probe, is_fraud, round,
            NOT coalesce(approved, true) AS refused,
            {', '.join(_ident(f) for f in feats)} FROM transactions
            WHERE round IS NOT NULL ORDER BY "timestamp", transaction_id""").fetchnumpy()
        rounds = con.execute("""SELECT sum(probes), sum(probes_detected), avg(legit_detected_share),
            sum(legit * legit_detected_share), sum(legit) FROM rounds""").fetchone()
    finally:
        con.close()
    X = np.column_stack([rows[f].astype(np.float64) for f in feats])
    schema = FeatureSchema.from_mapping(feats, {k: v for k, v in default_feature_specs().items() if k in feats})
    return rows, X, schema, rounds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, help="a finished campaign run file (default: run the default campaign)")
    ap.add_argument("--customers", type=int, default=None, help="smaller world for a quick look (default: as shipped)")
    ap.add_argument("--save", type=Path, default=None, help="keep the campaign run file here")
    ap.add_argument("--calibration-rounds", type=int, default=3)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--buffer", type=int, default=32)
    args = ap.parse_args()
    t0 = time.perf_counter()
    path = args.run or run_default(args.save or Path(tempfile.mkdtemp()) / "default.duckdb", args.customers)
    t_run = time.perf_counter() - t0
    rows, X, schema, rounds = load_stream(path)
    import polars as pl

    sa = schema.with_bounds_from(pl.DataFrame({n: X[:, j] for j, n in enumerate(schema.names)})).arrays()
    emb = embed(X, sa)
    ts = rows["timestamp"].astype(np.float64)
    probe = rows["is_probe"].astype(bool)
    legit = (~probe) & (rows["is_fraud"] == 0)
    later = rows["round"] > rows["round"].min() + args.calibration_rounds - 1
    print(f"campaign: {path} ({'run here in %.0f s' % t_run if not args.run else 'given'}); stream {len(ts):,} "
          f"transactions in {len(np.unique(rows['round']))} rounds, {probe.sum():,} probes, {legit.sum():,} legitimate")
    print("machine: 2 cores shared with other sessions (loaded); times are indicative only\n")
    t1 = time.perf_counter()
    _, card = np.unique(rows["customer_id"], return_inverse=True)
    d_card = knn_distances(card, ts, emb, k=args.k, buffer=args.buffer)
    dev_ok = rows["device_id"] >= 0
    _, dev = np.unique(np.where(dev_ok, rows["device_id"], -1), return_inverse=True)
    d_dev = knn_distances(dev, ts, emb, k=args.k, buffer=args.buffer)
    d_dev[~dev_ok] = np.inf
    t_knn = time.perf_counter() - t1
    refused = rows["refused"].astype(bool)
    day = 86_400.0
    d_card_dec = knn_distances(card, ts, emb, k=args.k, buffer=args.buffer, window=day, push=refused)
    d_dev_dec = knn_distances(dev, ts, emb, k=args.k, buffer=args.buffer, window=day, push=refused)
    d_dev_dec[~dev_ok] = np.inf
    d_glob_dec = knn_distances(np.zeros(len(ts), np.int64), ts, emb, k=args.k, buffer=512, window=day, push=refused)
    variants = {"card": d_card, "device": d_dev, "card+device": np.minimum(d_card, d_dev),
                "card+device, declined only (24 h)": np.minimum(d_card_dec, d_dev_dec),
                "global, declined only (24 h, 512)": d_glob_dec,
                "all of the above (min)": np.minimum.reduce([d_card, d_dev, d_card_dec, d_dev_dec, d_glob_dec])}
    print(f"k-NN replay: {len(ts) * 2:,} lookups in {t_knn:.2f} s ({t_knn / (2 * len(ts)) * 1e6:.2f} µs each; k={args.k}, "
          f"buffer={args.buffer})\n")
    base_probes, base_detected, _, base_legit_hit, base_legit = rounds
    base_rate = base_detected / base_probes if base_probes else float("nan")
    base_fp = base_legit_hit / base_legit if base_legit else float("nan")
    print(f"baseline (campaign near-duplicate detector, as it ran): {base_rate:.1%} of probes detected at "
          f"{base_fp:.3%} of legitimate transactions hit ({base_legit_hit:,.0f})\n")
    print("k-NN detector, threshold calibrated on the first rounds' legitimate traffic, measured on later rounds:")
    head = f"{'keys':<36} {'target legit share':>18} {'threshold':>10} {'legit hit':>10} {'probes detected':>16}"
    print(head)
    print("-" * len(head))
    calib = legit & ~later
    for name, d in variants.items():
        for share in LEGIT_SHARES:
            thr = calibrate(d[calib], share)
            flag = d < thr
            hit = flag[legit & later].mean()
            det = flag[probe & later].mean() if (probe & later).any() else float("nan")
            print(f"{name:<36} {share:>18.2%} {thr:>10.4f} {hit:>10.3%} {det:>16.1%}")
        print()


if __name__ == "__main__":
    main()
