"""The neutral tree ensemble agrees with XGBoost's and LightGBM's own predictions (NaN and categoricals included)."""
import lightgbm as lgb
import numpy as np
import pytest
import xgboost as xgb

from simulator.target import load_model
from simulator.target.trees import from_lightgbm, from_xgboost, tree_ensemble


def _data(n=600, seed=0, nan_share=0.1):
    rng = np.random.default_rng(seed)
    X = np.c_[rng.normal(size=n) * 100, rng.integers(0, 6, n), rng.random(n), rng.integers(0, 2, n)].astype(np.float64)
    y = ((X[:, 0] > 20) ^ (X[:, 1] >= 3) | (X[:, 2] > 0.9)).astype(int)
    Xn = X.copy()
    Xn[rng.random(X.shape) < nan_share] = np.nan
    return X, Xn, y


NAMES = ["amount x", "Category", "score", "select"]


@pytest.mark.parametrize("depth", [2, 5])
def test_xgboost_margins_match(depth):
    X, Xn, y = _data()
    b = xgb.train({"objective": "binary:logistic", "max_depth": depth, "eta": 0.3, "base_score": 0.3},
                  xgb.DMatrix(Xn, y, feature_names=NAMES), 20)
    ens = from_xgboost(b, NAMES)
    for A in (X, Xn):
        want = b.inplace_predict(A.astype(np.float32), predict_type="margin")
        np.testing.assert_allclose(ens.predict_margin(A), want, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(ens.predict_proba(A), b.inplace_predict(A.astype(np.float32)), atol=1e-6)


def test_xgboost_categorical_splits_match():
    X, Xn, y = _data(seed=1)
    dm = xgb.DMatrix(Xn, y, feature_names=NAMES, feature_types=["q", "c", "q", "q"], enable_categorical=True)
    b = xgb.train({"objective": "binary:logistic", "max_depth": 4, "max_cat_to_onehot": 1}, dm, 15)
    ens = from_xgboost(b, NAMES)
    assert (ens.op == 3).any(), "the model should have categorical splits"
    for A in (X, Xn):
        want = b.predict(xgb.DMatrix(A, feature_names=NAMES, feature_types=["q", "c", "q", "q"], enable_categorical=True),
                         output_margin=True)
        np.testing.assert_allclose(ens.predict_margin(A), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("use_missing,zero_as_missing", [(True, False), (False, False), (True, True)])
def test_lightgbm_margins_match(use_missing, zero_as_missing):
    X, Xn, y = _data(seed=2)
    Xz = Xn.copy()
    Xz[::7, 0] = 0.0
    ds = lgb.Dataset(Xz, y, feature_name=[n.replace(" ", "_") for n in NAMES], categorical_feature=[1],
                     params={"verbose": -1})
    b = lgb.train({"objective": "binary", "num_leaves": 12, "verbose": -1, "min_data_per_group": 5, "cat_smooth": 1,
                   "use_missing": use_missing, "zero_as_missing": zero_as_missing, "sigmoid": 1.5}, ds, 25)
    ens = from_lightgbm(b, NAMES)
    assert ens.margin_scale == 1.5
    for A in (X, Xn, Xz):
        A32 = A.astype(np.float32)
        np.testing.assert_allclose(ens.predict_margin(A), b.predict(A32, raw_score=True), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(ens.predict_proba(A), b.predict(A32), atol=1e-7)


def test_shipped_models_and_dispatch():
    rng = np.random.default_rng(3)
    for path in ("models/xgb_baseline.json", "models/lgbm_baseline.txt"):
        m = load_model(path)
        ens = tree_ensemble(m)
        X = np.abs(rng.normal(size=(500, len(m.feature_names)))) * rng.choice([1, 10, 1000], len(m.feature_names))
        X[rng.random(X.shape) < 0.05] = np.nan
        np.testing.assert_allclose(ens.predict_proba(X), m.predict_score(X), atol=1e-6)


def test_reachable_follows_frozen_branches():
    X, _, y = _data(seed=4, nan_share=0)
    b = xgb.train({"objective": "binary:logistic", "max_depth": 3}, xgb.DMatrix(X, y, feature_names=NAMES), 5)
    ens = from_xgboost(b, NAMES)
    mutable = np.array([True, False, False, False])
    seen = ens.reachable(X[0], mutable)
    for k in np.flatnonzero(seen & ~ens.is_leaf):
        l, r = seen[ens.left[k]], seen[ens.right[k]]
        if mutable[ens.feature[k]]:
            assert l and r
        else:
            assert l != r and l == ens.go_left(int(k), float(X[0, ens.feature[k]]))
    # the leaves reached by moving feature 0 over a grid are all reachable
    grid = np.repeat(X[:1], 2001, axis=0)
    grid[:, 0] = np.linspace(-400, 400, 2001)
    np.testing.assert_allclose(ens.predict_margin(grid), b.inplace_predict(grid.astype(np.float32), predict_type="margin"),
                               atol=1e-5)
