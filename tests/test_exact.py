"""The exact strategy's MILP: brute force over the split-threshold grid confirms its optimum on small ensembles
(XGBoost and LightGBM, with and without relations); its solution, scored by the real model, evades; an impossible
target is reported infeasible."""
import itertools
import math

import numpy as np
import pytest

from simulator.kernels import get_kernels
from simulator.kernels import relations as rk
from simulator.relations import compile_relations, parse_relations
from simulator.schema import FeatureSchema
from simulator.strategies import Problem
from simulator.strategies.exact import ExactMILP, solve_min_cost_evasion
from simulator.target import TargetModel
from simulator.target.trees import tree_ensemble

NAMES = ["Amount (€)", "tries", "select", "frozen"]
SPECS = {"Amount (€)": {"type": "continuous", "min": 0, "max": 100, "cost": 1.0},
         "tries": {"type": "integer", "min": 0, "max": 20, "cost": 0.5, "direction": "decrease"},
         "select": {"type": "categorical", "categories": [0, 1, 2, 3], "cost": 0.3}}
THR = 0.3
TOL = 1e-4


def _data(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    X = np.c_[rng.uniform(0, 100, n), rng.integers(0, 21, n), rng.integers(0, 4, n), rng.normal(size=n)]
    logit = X[:, 0] / 25 - 2 + 0.15 * X[:, 1] + (X[:, 2] == 3) * 1.5 + 0.5 * X[:, 3] - 2
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


@pytest.fixture(scope="module", params=["xgboost", "lightgbm"])
def model(request):
    X, y = _data()
    if request.param == "xgboost":
        import xgboost as xgb
        b = xgb.train({"objective": "binary:logistic", "max_depth": 3, "eta": 0.5, "nthread": 1},
                      xgb.DMatrix(X, y, feature_names=NAMES), 6)
    else:
        import lightgbm as lgb
        b = lgb.train({"objective": "binary", "num_leaves": 6, "learning_rate": 0.5, "verbose": -1,
                       "num_threads": 1}, lgb.Dataset(X, y, feature_name=["a", "tries", "select", "frozen"],
                                                      categorical_feature=[2]), 6)
    return TargetModel(kind=request.param, feature_names=tuple(NAMES), booster=b), X


def _grid_values(ens, j, sa, x0):
    vals = {x0[j], sa.lo[j], sa.hi[j]}
    for k in np.flatnonzero((ens.feature == j) & ~ens.is_leaf):
        if ens.op[k] in (2, 3):
            continue
        c = ens.left_cut(int(k))
        vals |= {c, float(np.nextafter(np.float32(c), np.float32(-np.inf))), math.ceil(c), math.ceil(c) - 1}
    return sorted(vals)


def _brute(model, sa, x0, ra=None, E=None, extra_vals=()):
    ens = tree_ensemble(model)
    k = get_kernels("cpu")
    grids = [_grid_values(ens, 0, sa, x0) + list(extra_vals), _grid_values(ens, 1, sa, x0),
             [0.0, 1.0, 2.0, 3.0]]
    X = np.array([[a, b, c, x0[3]] for a, b, c in itertools.product(*grids)])
    P = k.project(X, x0[None], np.zeros(len(X), np.int64), sa)
    ok = ~k.violations(P, x0[None], np.zeros(len(X), np.int64), sa)
    if ra is not None:
        ok &= ~rk.violations(P, x0[None], np.zeros(len(X), np.int64), E, ra)
    logit = math.log(THR / (1 - THR)) / ens.margin_scale
    ok &= ens.predict_margin(P) <= logit - TOL
    if not ok.any():
        return np.inf
    return float(k.cost(P[ok], x0[None], np.zeros(int(ok.sum()), np.int64), sa).min())


def _targets(model, X, n=6):
    s = model.predict_score(X)
    return X[s >= 0.6][:n]


def test_milp_optimum_matches_brute_force(model):
    model, X = model
    sa = FeatureSchema.from_mapping(NAMES, SPECS).with_bounds_from(__import__("polars").DataFrame({"frozen": [-4.0, 4.0]})).arrays()
    k = get_kernels("cpu")
    for x0 in _targets(model, X):
        p = Problem(x0=x0, schema=sa, kernels=k, budget=5, feedback="score", model=model)
        r = solve_min_cost_evasion(p, threshold=THR, time_limit=20, margin_tol=TOL)
        want = _brute(model, sa, x0)
        if math.isinf(want):
            assert r.status == "infeasible"
            continue
        assert r.status == "optimal"
        assert r.bound == pytest.approx(want, abs=1e-6)
        x = k.project(r.x[None], x0[None], np.zeros(1, np.int64), sa)
        assert model.predict_score(x)[0] < THR  # the real model agrees: it evades
        assert k.cost(x, x0[None], np.zeros(1, np.int64), sa)[0] == pytest.approx(want, abs=1e-6)


def test_milp_with_relations_matches_brute_force(model):
    model, X = model
    import polars as pl
    sa = FeatureSchema.from_mapping(NAMES, SPECS).with_bounds_from(pl.DataFrame({"frozen": [-4.0, 4.0]})).arrays()
    rels = parse_relations(['"Amount (€)" >= 4 * tries - cap', "if select == 3 then tries <= 4",
                            'if "Amount (€)" < 30 then select in [0, 1]', 'if select != 3 then "Amount (€)" >= 70'])
    ra = compile_relations(rels, NAMES, ["cap"])
    k = get_kernels("cpu")
    changed = 0
    for i, x0 in enumerate(_targets(model, X)):
        E = np.array([[10.0 * i]])
        free = solve_min_cost_evasion(Problem(x0=x0, schema=sa, kernels=k, budget=5, feedback="score", model=model),
                                      threshold=THR, time_limit=20, margin_tol=TOL)
        p = Problem(x0=x0, schema=sa, kernels=k, budget=5, feedback="score", model=model, relations=ra, extras=E[0])
        r = solve_min_cost_evasion(p, threshold=THR, time_limit=20, margin_tol=TOL)
        want = _brute(model, sa, x0, ra, E, extra_vals=[4 * t - 10.0 * i for t in range(21)] + [30.0, 29.999999, 70.0])
        if math.isinf(want):
            assert r.status == "infeasible"
            continue
        assert r.status == "optimal", r
        assert r.bound == pytest.approx(want, abs=1e-6)
        changed += free.status != "optimal" or r.bound > free.bound + 1e-9
        x = p.repair(k.project(r.x[None], x0[None], np.zeros(1, np.int64), sa))
        assert not rk.violations(x, x0[None], np.zeros(1, np.int64), E, ra)[0]
        assert model.predict_score(x)[0] < THR
    assert changed  # the relations bind for some target


def test_infeasible_target_is_reported(model):
    model, X = model
    import polars as pl
    sa = FeatureSchema.from_mapping(NAMES, {"select": SPECS["select"]}).with_bounds_from(
        pl.DataFrame({n: [-4.0, 100.0] for n in NAMES if n != "select"})).arrays()
    k = get_kernels("cpu")
    x0 = _targets(model, X)[0]
    s = ExactMILP(Problem(x0=x0, schema=sa, kernels=k, budget=5, feedback="score", model=model, threshold=1e-6),
                  np.random.default_rng(0))
    assert s.result.status == "infeasible" and s.finished
    assert s.records()["exact_bounds"]["status"] == "infeasible"
