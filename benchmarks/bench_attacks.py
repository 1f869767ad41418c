"""Attack benchmark: every fraudsim strategy, with and without its opening move, against one model.

By default it attacks what ``scenarios/release_check.yaml`` attacks (its model, data, feature rules, cost
scale and 40 caught-fraud targets); ``--scenario`` takes another scenario, ``--model``/``--data`` a bare model
and data set, ``--world`` a freshly trained model on a synthetic world. Each strategy runs once per opening
(``typical``, ``none``) at the largest budget through :class:`simulator.oracle.Oracle` with a small in-memory
recorder. No strategy knows its budget, so the first ``b`` queries of that run are exactly a run at budget
``b``: every smaller budget is read off the same run, and its wall time is taken when every target had asked
its first ``b`` queries.

It prints one table, strategy x budget x opening: the share of targets evaded (any cost) and cheaply evaded
(cost <= 1), the median best cost over the evaded targets, the ratio of that median to ``random``'s (measured
in the same run, opening does not apply to it), and wall milliseconds per query (``random``'s ratio too). Every
strategy first runs once, untimed, on two targets, so compiling kernels is charged to none of them, and the
garbage of setting up is collected before the timed runs (``gc.freeze``: see :func:`warm_up`).
When :func:`reference_costs` gives per-target minima (the exact MILP strategy's optimum, once available), the
table also shows each strategy's best cost / exact minimum, median and 90th percentile over the targets.

usage: python benchmarks/bench_attacks.py [--budgets 100,1000] [--methods greedy,random,...] [--openings typical,none]
       python benchmarks/bench_attacks.py --scenario scenarios/x.yaml | --model m.json --data d.parquet | --world
ART (optional, --art): HopSkipJump and ZOO from adversarial-robustness-toolbox (the ``bench`` extra)
"""
from __future__ import annotations

import argparse
import gc
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
from simulator.strategies.params import strategy_parameters

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SCENARIO = ROOT / "scenarios" / "release_check.yaml"
OPENINGS = ("typical", "none")

class Recorder:
    """Stands in for the store's QueryLog: keeps, per paid query, the target, its index, evasion and cost."""

    def __init__(self):
        self.parts: list[tuple[np.ndarray, ...]] = []

    def add(self, *, target_id, query_index, evaded, cost, **_):
        self.parts.append((np.asarray(target_id), np.asarray(query_index), np.asarray(evaded), np.asarray(cost)))

    def per_target(self, n_targets: int, budget: int) -> dict[str, np.ndarray]:
        """Per target, over its first ``budget`` queries: evaded, cheaply evaded, best cost (NaN: no evasion)."""
        out = {"evaded": np.zeros(n_targets, bool), "cheap": np.zeros(n_targets, bool),
               "best_cost": np.full(n_targets, np.nan)}
        if not self.parts:
            return out
        t, q, e, c = (np.concatenate(x) for x in zip(*self.parts))
        m = e & (q <= budget)
        best = np.full(n_targets, np.inf)
        np.minimum.at(best, t[m], c[m])
        out["evaded"] = np.isfinite(best)
        out["cheap"] = best <= CHEAP_COST
        out["best_cost"] = np.where(np.isfinite(best), best, np.nan)
        return out


@dataclass
class Setup:
    model: object
    threshold: float
    sa: object
    originals: np.ndarray
    approved: np.ndarray
    seed: int
    source: str
    kernels: object = field(default_factory=lambda: get_kernels("cpu"))
    relations: object = None  # the scenario's relations between features (simulator/relations.py), when it has any
    extras: np.ndarray | None = None  # per target: the data columns the relations read that the model does not
    exact_time_limit: float = 0.0  # seconds per target for the exact minimum (0: no ratio to the optimum)


def build_setup(args) -> Setup:
    if args.world:
        return _world_setup(args)
    if args.model:
        return _model_setup(args)
    from simulator.runner import prepare
    from simulator.scenario import Scenario

    sc = Scenario.from_yaml(args.scenario or DEFAULT_SCENARIO)
    if args.targets:
        sc = sc.replace(attack=dict(sc.attack.model_dump(mode="python"), limit=args.targets))
    prep = prepare(sc)
    X = prep.X
    return Setup(model=prep.model, threshold=prep.threshold, sa=prep.schema.arrays(),
                 originals=np.ascontiguousarray(X[prep.target_rows]), approved=X[prep.scores < prep.threshold][:1000],
                 seed=sc.seed if args.seed is None else args.seed, source=str(args.scenario or DEFAULT_SCENARIO.relative_to(ROOT)),
                 relations=prep.relations, extras=None if prep.extras is None else prep.extras[prep.target_rows],
                 exact_time_limit=args.exact_time_limit)


def _model_setup(args) -> Setup:
    import polars as pl

    from simulator.schema import FeatureSchema, frame_to_matrix
    from simulator.target import load_model
    from simulator.target.train import threshold_at_fpr
    from simulator.world import FEATURES, default_feature_specs

    model = load_model(args.model)
    frame = pl.read_parquet(args.data) if str(args.data).endswith(".parquet") else pl.read_csv(args.data)
    X = frame_to_matrix(frame, model.feature_names)
    y = frame.get_column(args.label).to_numpy().astype(np.int8)
    scores = model.predict_score(X)
    thr = args.threshold or (model.card or {}).get("threshold") or threshold_at_fpr(y, scores, 0.01)
    specs = default_feature_specs() if set(model.feature_names) == set(FEATURES) else {}
    schema = FeatureSchema.from_mapping(model.feature_names, specs).with_bounds_from(frame)
    return _pick_targets(args, model, float(thr), schema, X, y, scores, source=str(args.model))


def _world_setup(args) -> Setup:
    import polars as pl

    from simulator.schema import FeatureSchema, frame_to_matrix
    from simulator.target.train import train_model
    from simulator.world import FEATURES, LABEL, World, WorldConfig, default_feature_specs

    t0 = time.perf_counter()
    seed = 7 if args.seed is None else args.seed
    world = World(WorldConfig(customers=args.customers, days=args.days), seed=seed)
    stream = pl.concat([world.step() for _ in range(args.days)])
    cut = max(1, int(round(args.days * 0.6)))
    train, test = stream.filter(pl.col("day") < cut), stream.filter(pl.col("day") >= cut)
    names = list(FEATURES)
    X, y = frame_to_matrix(test, names), test.get_column(LABEL).to_numpy().astype(np.int8)
    trained = train_model(frame_to_matrix(train, names), train.get_column(LABEL).to_numpy(), X, y, names,
                          kind="xgboost", seed=seed, fpr=0.01)
    scores = trained.model.predict_score(X)
    schema = FeatureSchema.from_mapping(names, default_feature_specs()).with_bounds_from(stream)
    print(f"world + model: {time.perf_counter() - t0:.1f} s, test AUC {trained.card['test_auc']:.3f}", file=sys.stderr)
    return _pick_targets(args, trained.model, float(trained.threshold), schema, X, y, scores, source="world")


def _pick_targets(args, model, thr, schema, X, y, scores, *, source) -> Setup:
    rows = np.flatnonzero((y == 1) & (scores >= thr))
    n = args.targets or 40
    seed = 7 if args.seed is None else args.seed
    if len(rows) > n:  # a seeded spread sample: neighbouring frauds come from the same burst
        rows = np.sort(np.random.default_rng(seed).choice(rows, n, replace=False))
    return Setup(model=model, threshold=thr, sa=schema.arrays(), originals=np.ascontiguousarray(X[rows]),
                 approved=X[scores < thr][:1000], seed=seed, source=source)


def _problem(setup: Setup, i: int, *, budget: int, feedback: str, model=None, threshold=None) -> Problem:
    return Problem(x0=setup.originals[i], schema=setup.sa, kernels=setup.kernels, budget=budget, feedback=feedback,
                   approved_examples=setup.approved, model=model, relations=setup.relations, threshold=threshold,
                   extras=None if setup.extras is None else setup.extras[i])


def reference_costs(setup: Setup) -> np.ndarray | None:
    """Per-target minimum cost to compare best costs with (NaN where unknown), or None when there is none.

    The white-box ``exact`` strategy's MILP over the trees (:func:`simulator.strategies.exact.exact_minimum`)
    solves each target under the same bounds, costs and relations; a target solved to optimality gives its
    minimum, one that hit the time limit or is infeasible gives NaN (its ratio is unknown). The solver's counts
    and time go to stderr."""
    if setup.exact_time_limit <= 0:
        return None
    from simulator.strategies.exact import exact_minimum

    out = np.full(len(setup.originals), np.nan)
    status: dict[str, int] = {}
    t0 = time.perf_counter()
    for i in range(len(setup.originals)):
        res = exact_minimum(_problem(setup, i, budget=1, feedback="score", model=setup.model,
                                     threshold=setup.threshold), time_limit=setup.exact_time_limit)
        status[res.status] = status.get(res.status, 0) + 1
        if res.status == "optimal" and res.bound is not None and res.bound > 0:
            out[i] = res.bound
    print(f"exact minimum: {status} in {time.perf_counter() - t0:.0f} s "
          f"({setup.exact_time_limit:g} s limit per target)", file=sys.stderr)
    return out if np.isfinite(out).any() else None


@dataclass
class Result:
    per_budget: dict[int, dict[str, np.ndarray]]
    wall_per_query: dict[int, float]


def run_fraudsim(setup: Setup, name: str, feedback: str, budgets: list[int], params: dict | None = None) -> Result:
    """One run at the largest budget; every smaller budget is read off its first queries (and its clock)."""
    rec = Recorder()
    n = len(setup.originals)
    top = max(budgets)
    oracle = Oracle(setup.model, threshold=setup.threshold, feedback=feedback, budget=top, originals=setup.originals,
                    schema_arrays=setup.sa, kernels=setup.kernels, strategy=name, log=rec, relations=setup.relations,
                    extras=setup.extras)
    cls = REGISTRY[name]
    problems = [_problem(setup, i, budget=top, feedback=feedback, model=setup.model if "model" in cls.needs else None)
                for i in range(n)]
    rngs = [target_rng(setup.seed, 0, i) for i in range(n)]
    clock: list[tuple[float, np.ndarray]] = []
    t0 = time.perf_counter()
    strategies = run_strategy(cls, dict(params or {}), oracle=oracle, problems=problems, rngs=rngs,
                              on_step=lambda k: clock.append((time.perf_counter() - t0, oracle.used.copy())))
    used = oracle.used.copy()
    walls = {}
    for b in budgets:  # the moment every target had asked min(b, what it asked in all) queries
        need = np.minimum(used, b)
        t = next((t for t, u in clock if (u >= need).all()), time.perf_counter() - t0)
        walls[b] = t / max(int(need.sum()), 1)
    del strategies
    return Result({b: rec.per_target(n, b) for b in budgets}, walls)


def warm_up(setup: Setup, runs: list[tuple[str, str, str, dict]], budget: int = 20) -> float:
    """Run every strategy once on two targets, untimed, so that compiling kernels (Numba's first call, or loading
    its cache) is not charged to whichever strategy happens to run first. Returns the seconds it took."""
    from dataclasses import replace

    t0 = time.perf_counter()
    small = replace(setup, originals=setup.originals[:2], extras=None if setup.extras is None else setup.extras[:2])
    for label, fb, _, params in runs:
        run_fraudsim(small, label.split("/")[0], fb, [budget], params)
    # Setting up (the model, the data, Numba's compiler) leaves ~200,000 long-lived objects and the warm-up its
    # garbage: the first full collection after it (~70 ms on release_check) would land in whichever timed run first
    # allocates enough (greedy, not random, which allocates little), a cost of the process rather than of that
    # strategy. Collect it here and freeze what is left, so later collections skip the setup's objects.
    gc.collect()
    gc.freeze()
    return time.perf_counter() - t0


def _median(a: np.ndarray) -> float:
    a = a[np.isfinite(a)]
    return float(np.median(a)) if len(a) else float("nan")


def table_rows(label: str, opening: str, res: Result, base: Result | None, ref: np.ndarray | None,
               budgets: list[int]) -> list[str]:
    out = []
    for b in budgets:
        r = res.per_budget[b]
        med = _median(r["best_cost"])
        cols = [f"{label:<22}", f"{b:>6}", f"{opening:<8}", f"{r['evaded'].mean():6.0%}", f"{r['cheap'].mean():6.0%}",
                f"{med:8.3f}"]
        if base is not None:
            bmed = _median(base.per_budget[b]["best_cost"])
            cols.append(f"{med / bmed:7.2f}" if bmed > 0 else f"{'-':>7}")
        else:
            cols.append(f"{'-':>7}")
        if ref is not None:
            ratio = r["best_cost"] / ref
            ok = np.isfinite(ratio)
            cols.append(f"{np.median(ratio[ok]):8.2f} {np.quantile(ratio[ok], 0.9):8.2f}" if ok.any() else f"{'-':>8} {'-':>8}")
        ms = 1e3 * res.wall_per_query[b]
        cols.append(f"{ms:9.3f}")
        cols.append(f"{res.wall_per_query[b] / base.wall_per_query[b]:7.1f}" if base is not None else f"{'-':>7}")
        out.append(" ".join(cols))
    return out


def table_header(ref: np.ndarray | None) -> str:
    cols = [f"{'strategy':<22}", f"{'budget':>6}", f"{'opening':<8}", f"{'evaded':>6}", f"{'cheap':>6}",
            f"{'med best':>8}", f"{'÷random':>7}"]
    if ref is not None:
        cols.append(f"{'÷exact':>8} {'p90':>8}")
    cols += [f"{'ms/query':>9}", f"{'÷random':>7}"]
    return " ".join(cols)


# -- ART ---------------------------------------------------------------------------------------------------------
def run_art(setup: Setup, attack: str, budgets: list[int]) -> Result:
    """ART's HopSkipJump (label-only) or ZOO (scores) through a BlackBoxClassifier whose predict function
    projects every row onto the target's constraints, scores it and logs it as a paid query, until the budget."""
    from art.attacks.evasion import HopSkipJump, ZooAttack
    from art.estimators.classification import BlackBoxClassifier

    n, d = setup.originals.shape
    budget = max(budgets)
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
    wall = (time.perf_counter() - t0) / max(sum(len(p[0]) for p in rec.parts), 1)
    return Result({b: rec.per_target(n, b) for b in budgets}, {b: wall for b in budgets})


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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", help=f"scenario whose model, data, rules and targets to use (default: "
                                       f"{DEFAULT_SCENARIO.relative_to(ROOT)})")
    ap.add_argument("--model", help="XGBoost JSON/UBJ or LightGBM text model, instead of a scenario")
    ap.add_argument("--data", help="Parquet/CSV with the model's features and a label column (with --model)")
    ap.add_argument("--label", default="is_fraud")
    ap.add_argument("--threshold", type=float, help="decline threshold (default: model card, else 1%% FPR)")
    ap.add_argument("--world", action="store_true", help="train a model on a synthetic world instead")
    ap.add_argument("--customers", type=int, default=20000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--seed", type=int, help="default: the scenario's seed (7 for --model/--world)")
    ap.add_argument("--targets", type=int, help="caught-fraud targets (default: the scenario's limit, else 40)")
    ap.add_argument("--budgets", default="100,1000", help="comma list; one run at the largest serves them all")
    ap.add_argument("--methods", default="all", help="comma list of strategies (random always runs); or all")
    ap.add_argument("--openings", default="typical,none", help="comma list of openings to run: typical, none")
    ap.add_argument("--exact-time-limit", type=float, default=10.0, help="seconds per target for the exact "
                    "minimum the ratio column divides by (0: no ratio); scenario setups only")
    ap.add_argument("--art", action="store_true", help="also run ART's HopSkipJump and ZOO (when installed)")
    args = ap.parse_args(argv)
    if args.model and not args.data:
        ap.error("--model needs --data")
    budgets = sorted({int(b) for b in args.budgets.split(",")})
    openings = [o for o in args.openings.split(",") if o in OPENINGS]
    setup = build_setup(args)
    ref = reference_costs(setup)
    print(f"{setup.source}: {len(setup.originals)} caught-fraud targets, budgets {budgets}, threshold "
          f"{setup.threshold:.4g}; evaded / cheap (cost <= {CHEAP_COST:g}): share of targets; med best: median best "
          "cost over evaded targets; ÷random: against random measured in this run")
    names = sorted(REGISTRY) if args.methods == "all" else [m for m in args.methods.split(",") if m in REGISTRY]
    names = [n for n in names if "model" not in REGISTRY[n].needs]  # white-box strategies need a granted model
    names = ["random"] + [n for n in names if n != "random"]
    runs: list[tuple[str, str, str, dict]] = []  # label, feedback, opening, params
    for name in names:
        cls = REGISTRY[name]
        fbs = ["score"] if "score" in cls.needs else (["decision"] if name == "boundary" else ["score"])
        has_opening = "opening" in (strategy_parameters(cls) or {})
        for fb in fbs:
            for opening in (openings if has_opening else ["-"]):
                runs.append((name, fb, opening, {} if opening == "-" else {"opening": opening}))
        if name == "optuna":
            for sampler in ("cmaes", "nsga2"):
                runs += [(f"optuna/{sampler}", "score", o, {"sampler": sampler, "opening": o}) for o in openings]
    print(f"  (warm-up, untimed: {warm_up(setup, runs):.0f} s)", file=sys.stderr, flush=True)
    print(table_header(ref))
    base: dict[str, Result] = {}
    for label, fb, opening, params in runs:
        name = label.split("/")[0]
        t0 = time.perf_counter()
        res = run_fraudsim(setup, name, fb, budgets, params)
        if name == "random":
            base[fb] = res
        ref_base = base.get("score") if name != "random" or fb != "score" else None
        for line in table_rows(f"{label} [{fb}]", opening, res, ref_base if name != "random" else None, ref, budgets):
            print(line, flush=True)
        print(f"  ({label} {opening}: {time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    if args.art:
        try:
            import art  # noqa: F401
        except ImportError:
            print("(ART not installed: pip install adversarial-robustness-toolbox)")
            return 0
        for a in ("hsj", "zoo"):
            res = run_art(setup, a, budgets)
            for line in table_rows(f"art-{a}", "-", res, base.get("score"), ref, budgets):
                print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
