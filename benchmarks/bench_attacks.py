"""Attack benchmark: every fraudsim strategy (and ART's HopSkipJump and ZOO when installed) against one model.

Trains an XGBoost model on a synthetic world (as the default scenario does) or loads ``--model``/``--data``,
picks caught-fraud targets, runs each method through :class:`simulator.oracle.Oracle` with a small in-memory
recorder, and prints, per method: the share of targets with a valid evading query within 10/50/100/500/1000
queries (any cost, and cheap: cost <= 1), median queries to first evasion, median first and best cost, and wall
seconds per target. ``random`` is the baseline measured in the same run.

usage: python benchmarks/bench_attacks.py [--targets 16] [--budget 1000] [--methods greedy,random,...] [--all-samplers]
       python benchmarks/bench_attacks.py --model m.json --data test.parquet [--threshold 0.05]
ART (optional): pip install adversarial-robustness-toolbox   (the ``bench`` extra)
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from simulator.attack import run_strategy, target_rng
from simulator.kernels import get_kernels
from simulator.oracle import Oracle
from simulator.store import CHEAP_COST
from simulator.strategies import REGISTRY, Problem

BUDGETS = (10, 50, 100, 500, 1000)


class Recorder:
    """Stands in for the store's QueryLog: keeps, per paid query, the target, its index, evasion and cost."""

    def __init__(self):
        self.parts: list[tuple[np.ndarray, ...]] = []

    def add(self, *, target_id, query_index, evaded, cost, **_):
        self.parts.append((np.asarray(target_id), np.asarray(query_index), np.asarray(evaded), np.asarray(cost)))

    def per_target(self, n_targets: int) -> dict[str, np.ndarray]:
        if not self.parts:
            z = np.full(n_targets, np.nan)
            return {"first": z, "first_cheap": z, "first_cost": z, "best_cost": z, "used": np.zeros(n_targets)}
        t, q, e, c = (np.concatenate(x) for x in zip(*self.parts))
        out = {k: np.full(n_targets, np.nan) for k in ("first", "first_cheap", "first_cost", "best_cost")}
        out["used"] = np.bincount(t, minlength=n_targets).astype(float)
        for i in range(n_targets):
            m = (t == i) & e
            if m.any():
                k = np.argmin(q[m])
                out["first"][i], out["first_cost"][i], out["best_cost"][i] = q[m][k], c[m][k], c[m].min()
                mc = m & (c <= CHEAP_COST)
                if mc.any():
                    out["first_cheap"][i] = q[mc].min()
        return out


@dataclass
class Setup:
    model: object
    threshold: float
    sa: object
    originals: np.ndarray
    approved: np.ndarray
    seed: int
    kernels: object = field(default_factory=lambda: get_kernels("cpu"))


def build_setup(args) -> Setup:
    from simulator.schema import FeatureSchema, frame_to_matrix
    from simulator.target.train import threshold_at_fpr
    from simulator.world import FEATURES, LABEL, default_feature_specs

    if args.model:
        import polars as pl

        from simulator.target import load_model

        model = load_model(args.model)
        frame = pl.read_parquet(args.data) if str(args.data).endswith(".parquet") else pl.read_csv(args.data)
        X = frame_to_matrix(frame, model.feature_names)
        y = frame.get_column(args.label).to_numpy().astype(np.int8)
        scores = model.predict_score(X)
        thr = args.threshold or (model.card or {}).get("threshold") or threshold_at_fpr(y, scores, 0.01)
        specs = default_feature_specs() if set(model.feature_names) == set(FEATURES) else {}
        schema = FeatureSchema.from_mapping(model.feature_names, specs).with_bounds_from(frame)
    else:
        import polars as pl

        from simulator.target.train import train_model
        from simulator.world import World, WorldConfig

        t0 = time.perf_counter()
        world = World(WorldConfig(customers=args.customers, days=args.days), seed=args.seed)
        stream = pl.concat([world.step() for _ in range(args.days)])
        cut = max(1, int(round(args.days * 0.6)))
        train, test = stream.filter(pl.col("day") < cut), stream.filter(pl.col("day") >= cut)
        names = list(FEATURES)
        X, y = frame_to_matrix(test, names), test.get_column(LABEL).to_numpy().astype(np.int8)
        trained = train_model(frame_to_matrix(train, names), train.get_column(LABEL).to_numpy(), X, y, names,
                              kind="xgboost", seed=args.seed, fpr=0.01)
        model, thr = trained.model, trained.threshold
        scores = model.predict_score(X)
        schema = FeatureSchema.from_mapping(names, default_feature_specs()).with_bounds_from(stream)
        print(f"world + model: {time.perf_counter() - t0:.1f} s, test AUC {trained.card['test_auc']:.3f}, "
              f"threshold {thr:.4g}", file=sys.stderr)
    rows = np.flatnonzero((y == 1) & (scores >= thr))
    if len(rows) > args.targets:  # a seeded spread sample: neighbouring frauds come from the same burst
        rows = np.sort(np.random.default_rng(args.seed).choice(rows, args.targets, replace=False))
    return Setup(model=model, threshold=float(thr), sa=schema.arrays(), originals=np.ascontiguousarray(X[rows]),
                 approved=X[scores < thr][:1000], seed=args.seed)


def run_fraudsim(setup: Setup, name: str, feedback: str, budget: int, params: dict | None = None) -> dict:
    rec = Recorder()
    n = len(setup.originals)
    oracle = Oracle(setup.model, threshold=setup.threshold, feedback=feedback, budget=budget, originals=setup.originals,
                    schema_arrays=setup.sa, kernels=setup.kernels, strategy=name, log=rec)
    cls = REGISTRY[name]
    problems = [Problem(x0=setup.originals[i], schema=setup.sa, kernels=setup.kernels, budget=budget, feedback=feedback,
                        approved_examples=setup.approved, model=setup.model if "model" in cls.needs else None)
                for i in range(n)]
    rngs = [target_rng(setup.seed, 0, i) for i in range(n)]
    t0 = time.perf_counter()
    run_strategy(cls, dict(params or {}), oracle=oracle, problems=problems, rngs=rngs)
    return dict(rec.per_target(n), wall=(time.perf_counter() - t0) / n)


# -- ART ---------------------------------------------------------------------------------------------------------
def run_art(setup: Setup, attack: str, budget: int) -> dict:
    """ART's HopSkipJump (label-only) or ZOO (scores) through a BlackBoxClassifier whose predict function
    projects every row onto the target's constraints, scores it and logs it as a paid query, until the budget."""
    from art.attacks.evasion import HopSkipJump, ZooAttack
    from art.estimators.classification import BlackBoxClassifier

    n, d = setup.originals.shape
    np.random.seed(setup.seed)  # ART draws from NumPy's global generator
    rec = Recorder()
    k = setup.kernels
    sa = setup.sa
    lo, hi = sa.lo.copy(), sa.hi.copy()
    t0 = time.perf_counter()

    class Exhausted(Exception):
        pass

    for i in range(n):
        x0 = setup.originals[i : i + 1]
        used = [0]

        def predict(X, i=i, x0=x0):
            X = np.asarray(X, np.float64).reshape(-1, d)
            P = k.project(X, x0, np.zeros(len(X), np.int64), sa)
            take = min(len(P), budget - used[0])
            score = setup.model.predict_score(P)
            if take > 0:
                ev = score[:take] < setup.threshold
                rec.add(target_id=np.full(take, i), query_index=used[0] + 1 + np.arange(take), evaded=ev,
                        cost=k.cost(P[:take], x0, np.zeros(take, np.int64), sa))
                used[0] += take
            if used[0] >= budget:
                raise Exhausted
            if attack == "zoo":
                return np.column_stack([1.0 - score, score])
            return np.eye(2)[(score >= setup.threshold).astype(int)]

        clf = BlackBoxClassifier(predict, input_shape=(d,), nb_classes=2, clip_values=(lo, hi))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if attack == "hsj":
                    mask = sa.mutable.astype(np.float64)[None, :]
                    P = k.project(setup.approved, x0, np.zeros(len(setup.approved), np.int64), sa)
                    init = _approved_start(setup, x0, P, predict)
                    att = HopSkipJump(clf, targeted=False, max_iter=50, max_eval=100, init_eval=10, init_size=20,
                                      verbose=False)
                    att.generate(x0, y=np.array([[0.0, 1.0]]), mask=mask, x_adv_init=init)
                else:  # ZOO clips with scalar bounds: attack in [0, 1]-scaled coordinates
                    span = np.where(hi > lo, hi - lo, 1.0)
                    zclf = BlackBoxClassifier(lambda Zs: predict(lo + np.asarray(Zs).reshape(-1, d) * span),
                                              input_shape=(d,), nb_classes=2, clip_values=(0.0, 1.0))
                    att = ZooAttack(zclf, max_iter=budget, nb_parallel=4, binary_search_steps=3, batch_size=1,
                                    use_resize=False, use_importance=False, verbose=False, learning_rate=0.1,
                                    variable_h=0.02, initial_const=1.0)  # finite differences wide enough for trees
                    att.generate((x0 - lo) / span, y=np.array([1]))
        except Exhausted:
            pass
        except Exception as exc:  # ART gives up on some starts (e.g. no adversarial init); counted as failures
            print(f"  {attack} target {i}: {type(exc).__name__}: {str(exc)[:80]}", file=sys.stderr)
    return dict(rec.per_target(n), wall=(time.perf_counter() - t0) / n)


def _approved_start(setup: Setup, x0: np.ndarray, P: np.ndarray, predict) -> np.ndarray | None:
    """HopSkipJump needs an approved start: the cheapest projected approved examples, asked (and paid) in
    batches of 10 until one is approved."""
    k = setup.kernels
    order = np.argsort(k.cost(P, x0, np.zeros(len(P), np.int64), setup.sa), kind="stable")
    for s in range(0, min(len(P), 100), 10):
        rows = P[order[s : s + 10]]
        out = predict(rows)
        ok = np.flatnonzero(out[:, 0] > 0.5)
        if len(ok):
            return rows[ok[0] : ok[0] + 1]
    return None


def row(name: str, r: dict, budget: int) -> str:
    cols = []
    for b in BUDGETS:
        if b <= budget:
            cols.append(f"{np.mean(r['first'] <= b):5.0%}")
    for b in BUDGETS:
        if b <= budget:
            cols.append(f"{np.mean(r['first_cheap'] <= b):5.0%}")
    f = r["first"][np.isfinite(r["first"])]
    med = lambda a: np.median(a[np.isfinite(a)]) if np.isfinite(a).any() else float("nan")  # noqa: E731
    return (f"{name:<22}" + " ".join(cols) + f" {np.median(f) if len(f) else float('nan'):7.1f}"
            f" {med(r['first_cost']):7.3f} {med(r['best_cost']):7.3f} {r['wall']:7.3f}")


def header(budget: int) -> str:
    bs = [b for b in BUDGETS if b <= budget]
    return (f"{'method':<22}" + " ".join(f"{'@' + str(b):>5}" for b in bs) + " " + " ".join(f"{'c@' + str(b):>5}" for b in bs)
            + f" {'med q':>7} {'1st c':>7} {'best c':>7} {'s/tgt':>7}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="XGBoost JSON/UBJ or LightGBM text model (default: train one on a world)")
    ap.add_argument("--data", help="Parquet/CSV with the model's features and a label column (with --model)")
    ap.add_argument("--label", default="is_fraud")
    ap.add_argument("--threshold", type=float, help="decline threshold (default: model card, else 1%% FPR)")
    ap.add_argument("--customers", type=int, default=20000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--targets", type=int, default=16, help="caught-fraud targets (the default scenario attacks 40)")
    ap.add_argument("--budget", type=int, default=1000)
    ap.add_argument("--methods", default="all", help="comma list of strategies, plus art-hsj, art-zoo; or all")
    ap.add_argument("--no-art", action="store_true", help="skip ART even when it is installed")
    ap.add_argument("--all-samplers", action="store_true", help="also run optuna with cmaes and nsga2")
    args = ap.parse_args(argv)
    if args.model and not args.data:
        ap.error("--model needs --data")
    setup = build_setup(args)
    print(f"{len(setup.originals)} caught-fraud targets, budget {args.budget}, threshold {setup.threshold:.4g}; "
          "@N: valid evading query within N queries; c@N: cheap (cost <= 1)")
    names = sorted(REGISTRY) if args.methods == "all" else [m for m in args.methods.split(",") if m in REGISTRY]
    wanted = set(args.methods.split(",")) if args.methods != "all" else None
    runs: list[tuple[str, str, dict | None]] = []
    for name in names:  # every strategy with score feedback; the label-only ones also with decisions
        runs.append((name, "score", None))
        if name in ("random", "boundary"):
            runs.append((name, "decision", None))
    if "optuna" in names and args.all_samplers:
        runs += [("optuna", "score", {"sampler": s}) for s in ("cmaes", "nsga2")]
    print(header(args.budget))
    for name, fb, params in runs:
        label = f"{name}{'/' + params['sampler'] if params else ''} [{fb}]"
        print(row(label, run_fraudsim(setup, name, fb, args.budget, params), args.budget), flush=True)
    try:
        import art  # noqa: F401
        have_art = not args.no_art
    except ImportError:
        have_art = False
        print("(ART not installed: pip install adversarial-robustness-toolbox to compare with HopSkipJump and ZOO)")
    if have_art:
        for a in ("hsj", "zoo"):
            if wanted is None or f"art-{a}" in wanted:
                print(row(f"art-{a} [{'decision' if a == 'hsj' else 'score'}]", run_art(setup, a, args.budget), args.budget),
                      flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
