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
from simulator.target import load_model
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
                       "num_threads": 1}, lgb.Dataset(X, y, categorical_feature=[2]), 6)  # unnamed: model.features names it
    return load_model(b, features=list(NAMES)), X


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


def test_run_with_exact_writes_bounds_ratios_and_infeasible_targets(tmp_path):
    """End to end on data unlike fraudsim's own (unicode, spaces, upper case, an SQL keyword): relations with a
    derived feature reading a data column the model does not use; `exact` next to `random`. (An integer feature is
    named merchant_cat because the success_by_segment view needs one segment column; h2 fixes that view.)"""
    import polars as pl
    import xgboost as xgb
    import yaml

    import simulator as fs

    rng = np.random.default_rng(5)
    n = 3000
    cap = rng.uniform(50, 150, n)
    amount = rng.uniform(0, 100, n)
    df = pl.DataFrame({"Betrag €": amount, "merchant_cat": rng.integers(0, 21, n).astype(float),
                       "SELECT": rng.integers(0, 4, n).astype(float), "ratio": amount / cap, "cap limit": cap})
    logit = amount / 25 - 2 + 0.15 * df["merchant_cat"].to_numpy() + (df["SELECT"].to_numpy() == 3) * 1.5 - 1
    df = df.with_columns(pl.Series("y", (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)))
    names = ["Betrag €", "merchant_cat", "SELECT", "ratio"]
    b = xgb.train({"objective": "binary:logistic", "max_depth": 3, "eta": 0.5, "nthread": 1},
                  xgb.DMatrix(df.select(names).to_numpy(), df["y"].to_numpy(), feature_names=names), 8)
    b.save_model(str(tmp_path / "m.json"))
    df.write_parquet(tmp_path / "d.parquet")
    sc = {"name": "exact-e2e", "seed": 1, "data": {"path": "d.parquet", "label": "y"},
          "model": {"path": "m.json", "threshold": 0.3},
          "features": {"Betrag €": {"type": "continuous", "min": 0, "max": 100},
                       "merchant_cat": {"type": "integer", "min": 0, "max": 20, "cost": 0.5, "direction": "decrease"}},
          "relations": ['"Betrag €" >= 2 * merchant_cat', "if SELECT == 3 then merchant_cat <= 12",
                        'if SELECT == 3 then "cap limit" <= 60',
                        'ratio = "Betrag €" / "cap limit"'],
          "attack": {"limit": 8, "budget": 20, "strategies": ["random", "exact"], "grant_model": True},
          "output": "run.duckdb"}
    path = tmp_path / "sc.yaml"
    path.write_text(yaml.safe_dump(sc, allow_unicode=True))
    res = fs.run(path)
    eb = res.sql("SELECT * FROM exact_bounds ORDER BY target_id")
    tg = res.sql("SELECT target_id, any_value(\"SELECT\") AS s, any_value(merchant_cat) AS t FROM targets "
                 "GROUP BY target_id")
    data = df.with_row_index("target_id")
    assert eb.height == 8
    # targets whose own transaction breaks a relation on frozen features cannot be repaired: infeasible, no query
    orig = data.filter(pl.col("target_id").is_in(eb["target_id"].cast(pl.UInt32).to_list()))
    bad = orig.filter((pl.col("SELECT") == 3) & (pl.col("cap limit") > 60))["target_id"].cast(pl.Int64).to_list()
    assert bad and set(eb.filter(pl.col("status") == "infeasible")["target_id"].to_list()) == set(bad)
    assert not set(bad) & set(tg["target_id"].to_list())
    solved = eb.filter(pl.col("status") == "optimal")
    assert solved.height >= 1 and solved["evades"].all()
    assert (solved["best_found_cost"] - solved["optimum_or_bound"]).abs().max() < 1e-6
    # no logged query breaks a relation (independent NumPy check)
    q = res.sql("SELECT * FROM queries").join(data.select(pl.col("target_id").cast(pl.Int64), "cap limit"),
                                              on="target_id")
    A, T, S, R, C = (q[c].to_numpy() for c in ("Betrag €", "merchant_cat", "SELECT", "ratio", "cap limit"))
    assert (A >= 2 * T - 1e-9).all() and (~(S == 3) | (T <= 12)).all()
    np.testing.assert_allclose(R, A / C, rtol=1e-12)
    # the exact optimum is a lower bound on every strategy's best cost, and the summary shows the ratio
    summ = res.summary()
    assert "median_ratio_to_exact" in summ.columns
    assert (summ.filter(pl.col("strategy") == "random")["median_ratio_to_exact"] >= 1 - 1e-9).all()
    view = res.sql("SELECT strategy, median_ratio_to_exact, p90_ratio_to_exact FROM run_summary")
    assert view.filter(pl.col("strategy") == "exact")["median_ratio_to_exact"][0] == pytest.approx(1.0)
