"""Peak memory of a campaign by number of customers: issue 13's "a campaign at 1 million customers runs within the
same bound" (peak RSS under 3 GB on 2 cores).

A program, not a test. Each size runs in a fresh process (so its peak RSS is its own): ``scenarios/
campaign_default.yaml`` with ``world.customers`` set, and ``--days`` history days and ``--rounds`` rounds (fewer
than the scenario's 21 and 15 to keep the largest run short), prepared and run into a DuckDB file in a temporary
folder. Prints per size: wall seconds, transactions, peak RSS, and the ratio of each size's peak RSS to the
smallest one's (measured in the same run).

    python benchmarks/bench_campaign_scale.py --customers 20000 200000 1000000 --days 8 --rounds 3
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIMIT_GB = 3.0


def child(customers: int, days: int, rounds: int, retrain_every: int, out: str) -> None:
    sys.path.insert(0, str(ROOT))
    import yaml

    from simulator.campaign.engine import execute_campaign
    from simulator.campaign.setup import prepare_campaign
    from simulator.scenario import Scenario

    raw = yaml.safe_load((ROOT / "scenarios" / "campaign_default.yaml").read_text())
    raw["world"].update(customers=customers, days=days)
    raw["rounds"] = {"count": rounds}
    raw["defence"]["retrain"].update(every=retrain_every, window_days=min(raw["defence"]["retrain"]["window_days"],
                                                                          max(3, days - 4)))
    t0 = time.perf_counter()
    prep = prepare_campaign(Scenario.from_dict(raw))
    t1 = time.perf_counter()
    res = execute_campaign(prep, output=Path(out))
    t2 = time.perf_counter()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kilobytes
    print(json.dumps({"customers": customers, "prepare_s": t1 - t0, "run_s": t2 - t1,
                      "transactions": int(res.timings.get("campaign_transactions", 0)), "peak_rss": rss}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, nargs="+", default=[20_000, 200_000, 1_000_000])
    parser.add_argument("--days", type=int, default=8, help="history days (the scenario has 21)")
    parser.add_argument("--rounds", type=int, default=3, help="campaign rounds (the scenario has 15)")
    parser.add_argument("--retrain-every", type=int, default=2)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.days, args.rounds, args.retrain_every, args.out)
        return
    print(f"campaign_default.yaml, {args.days} history days, {args.rounds} rounds, retrain every "
          f"{args.retrain_every}; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.customers:
            cmd = [sys.executable, __file__, "--child", str(n), "--days", str(args.days), "--rounds",
                   str(args.rounds), "--retrain-every", str(args.retrain_every), "--out", f"{tmp}/c{n}.duckdb"]
            t0 = time.perf_counter()
            done = subprocess.run(cmd, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if done.returncode != 0:
                print(f"{n:>10,} customers: failed (exit {done.returncode})\n{done.stderr[-2000:]}")
                continue
            row = json.loads(done.stdout.strip().splitlines()[-1])
            row["wall_s"] = wall
            rows.append(row)
            base = rows[0]["peak_rss"]
            gb = row["peak_rss"] / 1e9
            print(f"{n:>10,} customers: wall {wall:7.1f} s (prepare {row['prepare_s']:.1f}, run {row['run_s']:.1f}), "
                  f"{row['transactions']:,} campaign transactions, peak RSS {gb:.2f} GB "
                  f"({row['peak_rss'] / base:.2f}x the {rows[0]['customers']:,}-customer run; "
                  f"{'under' if gb < LIMIT_GB else 'OVER'} {LIMIT_GB:.0f} GB)", flush=True)
            os.remove(f"{tmp}/c{n}.duckdb") if os.path.exists(f"{tmp}/c{n}.duckdb") else None


if __name__ == "__main__":
    main()
