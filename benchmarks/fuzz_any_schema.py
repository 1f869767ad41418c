"""The any-schema property test, longer: more examples and up to 200 features (the default suite draws up to 30).

Each example draws a team setup (hostile feature names, kinds, missing values, XGBoost or LightGBM, Parquet or
CSV) and runs the whole path of ``tests/test_any_schema.py`` (run → views → HTML report → gates → compare →
query → notebook API → CLI). Prints one line per example and the totals; exits 1 on the first failure (Hypothesis
shrinks it and prints the case).

usage: python benchmarks/fuzz_any_schema.py [--examples 40] [--max-features 200] [--seed 0]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hypothesis import HealthCheck, given, seed as hyp_seed, settings  # noqa: E402

from tests.test_any_schema import cases, run_whole_path  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=40)
    ap.add_argument("--max-features", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    totals = {"examples": 0, "features": 0, "targets": 0, "queries": 0, "collisions": 0, "max_features": 0}
    t0 = time.perf_counter()

    @hyp_seed(args.seed)
    @settings(max_examples=args.examples, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(case=cases(max_features=args.max_features))
    def fuzz(case):
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            counts = run_whole_path(case, Path(d))
        totals["examples"] += 1
        for k in ("features", "targets", "queries", "collisions"):
            totals[k] += counts[k]
        totals["max_features"] = max(totals["max_features"], counts["features"])
        print(f"{totals['examples']:>4}  {counts['features']:>3} features ({counts['collisions']} stored under another "
              f"name), {case.model_kind:<8} {case.data_format:<7} {counts['targets']} targets, {counts['queries']:>4} "
              f"queries, {counts['segments']} segment kinds, {time.perf_counter() - t:.1f} s", flush=True)

    fuzz()
    print(f"\n{totals['examples']} examples, 0 failures in {time.perf_counter() - t0:.0f} s: {totals['features']} features "
          f"in all (largest schema {totals['max_features']}), {totals['collisions']} stored under a safe name, "
          f"{totals['targets']} targets, {totals['queries']} queries")
    return 0


if __name__ == "__main__":
    sys.exit(main())
