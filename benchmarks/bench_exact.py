"""The exact strategy's solve time per target (a MILP over the trees, HiGHS) on a scenario's model and targets.

    python benchmarks/bench_exact.py [scenario.yaml] [--targets 40] [--time-limit 10]

Prints per target: status (optimal / time_limit / infeasible), the optimum or proven bound, the best cost found,
the real model's verdict on the solution, and the solve time; then how many were solved to optimality, the solve
time's median / p90 / max (wall and CPU), and, as a baseline measured in the same run, the time to score 1,000 candidates (one
black-box strategy's budget per target) with the model: the ratio says how many such budgets one exact solve costs.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from simulator.kernels import get_kernels
from simulator.runner import prepare
from simulator.scenario import Scenario
from simulator.strategies import Problem
from simulator.strategies.exact import solve_min_cost_evasion

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", nargs="?", default=str(ROOT / "scenarios" / "release_check.yaml"))
    ap.add_argument("--targets", type=int, default=40)
    ap.add_argument("--time-limit", type=float, default=10.0)
    a = ap.parse_args()
    sc = Scenario.from_yaml(a.scenario)
    sc = sc.replace(attack=dict(sc.attack.model_dump(), limit=a.targets, strategies=["exact"], grant_model=True))
    prep = prepare(sc)
    sa, k = prep.schema.arrays(), get_kernels("cpu")
    print(f"{sc.name}: {prep.model.kind}, {len(prep.target_rows)} targets, relations: {len(sc.relations)}, "
          f"time limit {a.time_limit:g} s")
    rows = []
    for i in prep.target_rows:
        x0 = prep.X[i]
        p = Problem(x0=x0, schema=sa, kernels=k, budget=1, feedback="score", model=prep.model,
                    relations=prep.relations, extras=None if prep.extras is None else prep.extras[i],
                    threshold=prep.threshold)
        t, c = time.perf_counter(), time.process_time()
        r = solve_min_cost_evasion(p, threshold=prep.threshold, time_limit=a.time_limit)
        dt, cpu = time.perf_counter() - t, time.process_time() - c
        evades, cost = None, float("nan")
        if r.x is not None:
            x = p.repair(k.project(r.x[None], x0[None], np.zeros(1, np.int64), sa))
            evades = bool(prep.model.predict_score(x)[0] < prep.threshold)
            cost = float(k.cost(x, x0[None], np.zeros(1, np.int64), sa)[0])
        rows.append((int(prep.ids[i]), r.status, r.bound, cost, evades, cpu, dt))
        print(f"  target {rows[-1][0]:>6}  {r.status:<10}  bound {r.bound:10.5f}  best {cost:10.5f}  "
              f"evades {evades!s:<5}  {dt:6.2f} s wall, {cpu:6.2f} s CPU", flush=True)
    X = np.repeat(prep.X[prep.target_rows[:1]], 1000, axis=0)
    t = time.perf_counter()
    prep.model.predict_score(X)
    base = time.perf_counter() - t
    times = np.array([r[-1] for r in rows])
    cpus = np.array([r[-2] for r in rows])
    st = [r[1] for r in rows]
    print(f"optimal {st.count('optimal')}, time_limit {st.count('time_limit')}, infeasible {st.count('infeasible')} "
          f"of {len(rows)}; evading solutions {sum(r[4] is True for r in rows)}")
    print(f"solve time per target: median {np.median(times):.2f} s, p90 {np.quantile(times, 0.9):.2f} s, "
          f"max {times.max():.2f} s (CPU: median {np.median(cpus):.2f} s, p90 {np.quantile(cpus, 0.9):.2f} s; "
          f"on a loaded machine wall time is far above CPU time)")
    print(f"baseline: scoring 1,000 candidates {base * 1e3:.1f} ms; median solve = {np.median(times) / base:,.0f}x")


if __name__ == "__main__":
    main()
