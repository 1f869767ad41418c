"""Every model adapter scores exactly as its library does, on files and live objects, named and unnamed.

Real models only: XGBoost, LightGBM, scikit-learn exported with skl2onnx, XGBoost/LightGBM exported with
onnxmltools, all run through ONNX Runtime; small data so the file runs in seconds.
"""
from __future__ import annotations

import numpy as np
import pytest

from simulator.errors import ModelError
from simulator.target import TargetModel, get_adapter, kinds, load_model, register_adapter
from simulator.target.registry import ADAPTERS, _SNIFF_ORDER
from simulator.target.train import fit_model, save_model, train_model

NAMES = ["txn_amt_usd", "chan", "mcc", "hour of day", "ländercode"]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    n = 600
    X = np.column_stack([rng.lognormal(3, 1, n), rng.integers(0, 3, n), rng.integers(0, 8, n), rng.integers(0, 24, n),
                         rng.integers(0, 5, n)]).astype(np.float64)
    logit = np.log(X[:, 0]) - 3 + (X[:, 1] == 2) - 0.3 * X[:, 4] + (X[:, 3] < 6)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    Xq = X[:200].copy()
    Xq[::7, 2] = np.nan  # missing values score as the library scores them
    return X, y, Xq


def _close(a, b, tol=1e-6):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=tol, atol=tol)


# -- XGBoost ---------------------------------------------------------------------------------------------------------
def test_xgboost_json_and_ubj_named(data, tmp_path):
    import xgboost as xgb

    X, y, Xq = data
    b = xgb.train({"objective": "binary:logistic", "max_depth": 3}, xgb.DMatrix(X, y, feature_names=NAMES), 10)
    for suffix in ("json", "ubj"):
        path = tmp_path / f"m.{suffix}"
        b.save_model(str(path))
        m = load_model(path)
        assert m.kind == "xgboost" and m.feature_names == tuple(NAMES) and m.source == str(path)
        assert len(m.sha256) == 64 and isinstance(m, TargetModel)
        _close(m.predict_score(Xq), b.predict(xgb.DMatrix(Xq.astype(np.float32), feature_names=NAMES)))
        # the same names in model.features are fine; other names are one clear error
        assert load_model(path, features=NAMES).feature_names == tuple(NAMES)
        with pytest.raises(ModelError, match=r"model.features.2: model.features differs from the names saved in the "
                                             r"model at position 3: 'MCC' in the scenario, 'mcc' in the model"):
            load_model(path, features=["txn_amt_usd", "chan", "MCC", "hour of day", "ländercode"])
        with pytest.raises(ModelError, match="model.features has 2 names but the model file has 5 features"):
            load_model(path, features=["txn_amt_usd", "chan"])


def test_xgbclassifier_saved_without_names_needs_features(data, tmp_path):
    import xgboost as xgb

    X, y, Xq = data
    clf = xgb.XGBClassifier(n_estimators=8, max_depth=3).fit(X, y)  # the commonest way: a bare NumPy array
    path = tmp_path / "clf.json"
    clf.save_model(str(path))
    with pytest.raises(ModelError, match=r"clf.json: model.features: the model has no feature names; add "
                                         r"model.features: \[...\] listing its 5 inputs in order"):
        load_model(path)
    m = load_model(path, features=NAMES)
    assert m.feature_names == tuple(NAMES)
    _close(m.predict_score(Xq), clf.predict_proba(Xq)[:, 1])
    with pytest.raises(ModelError, match="model.features has 4 names but the model takes 5 inputs"):
        load_model(path, features=NAMES[:4])
    with pytest.raises(ModelError, match="feature 'chan' is listed twice"):
        load_model(path, features=["chan", "chan", "a", "b", "c"])
    # the live estimator and its booster, for notebooks
    for obj in (clf, clf.get_booster()):
        live = load_model(obj, features=NAMES)
        assert live.kind == "xgboost" and live.path is None and len(live.sha256) == 64
        _close(live.predict_score(Xq), clf.predict_proba(Xq)[:, 1])


def test_xgboost_categorical(data, tmp_path):
    import pandas as pd
    import xgboost as xgb

    X, y, _ = data
    df = pd.DataFrame(X, columns=NAMES)
    df["mcc"] = pd.Categorical(X[:, 2].astype(int))
    clf = xgb.XGBClassifier(n_estimators=8, max_depth=3, enable_categorical=True, tree_method="hist").fit(df, y)
    path = tmp_path / "cat.json"
    clf.save_model(str(path))
    m = load_model(path)
    assert m.feature_names == tuple(NAMES)
    codes = X.copy()
    codes[:, 2] = df["mcc"].cat.codes.to_numpy()  # category codes as numbers, as XGBoost reads NumPy input
    _close(m.predict_score(codes), clf.predict_proba(df)[:, 1])


# -- LightGBM --------------------------------------------------------------------------------------------------------
def test_lightgbm_text_unnamed_and_named(data, tmp_path):
    import lightgbm as lgb

    X, y, Xq = data
    b = lgb.train({"objective": "binary", "num_leaves": 7, "verbose": -1}, lgb.Dataset(X, y), 10)  # Column_0...
    path = tmp_path / "m.txt"
    b.save_model(str(path))
    with pytest.raises(ModelError, match="the model has no feature names; add model.features"):
        load_model(path)
    m = load_model(path, features=NAMES)
    assert m.kind == "lightgbm" and m.feature_names == tuple(NAMES)
    _close(m.predict_score(Xq), b.predict(Xq.astype(np.float32)))

    named = lgb.train({"objective": "binary", "num_leaves": 7, "verbose": -1},
                      lgb.Dataset(X, y, feature_name=[n.replace(" ", "_") for n in NAMES]), 10)
    named.save_model(str(tmp_path / "named.txt"))
    assert load_model(tmp_path / "named.txt").feature_names[3] == "hour_of_day"


def test_lgbmclassifier_object_and_file(data, tmp_path):
    import lightgbm as lgb

    X, y, Xq = data
    clf = lgb.LGBMClassifier(n_estimators=10, num_leaves=7, verbose=-1).fit(X, y)
    for obj in (clf, clf.booster_):
        m = load_model(obj, features=NAMES)
        assert m.kind == "lightgbm"
        _close(m.predict_score(Xq), clf.predict_proba(Xq.astype(np.float32))[:, 1])
    clf.booster_.save_model(str(tmp_path / "clf.txt"))
    _close(load_model(tmp_path / "clf.txt", features=NAMES).predict_score(Xq),
           clf.predict_proba(Xq.astype(np.float32))[:, 1])


def test_lightgbm_with_a_pandas_categorical(data, tmp_path):
    import lightgbm as lgb
    import pandas as pd

    X, y, _ = data
    df = pd.DataFrame(X, columns=[n.replace(" ", "_") for n in NAMES])
    df["mcc"] = pd.Categorical(X[:, 2].astype(int))
    clf = lgb.LGBMClassifier(n_estimators=10, num_leaves=7, verbose=-1).fit(df, y)
    clf.booster_.save_model(str(tmp_path / "cat.txt"))
    m = load_model(tmp_path / "cat.txt", features=NAMES)  # LightGBM wrote "hour_of_day"; the given names are kept
    assert m.feature_names == tuple(NAMES)
    codes = X.copy()
    codes[:, 2] = df["mcc"].cat.codes.to_numpy()  # categories as their codes, as LightGBM reads NumPy input
    _close(m.predict_score(codes), clf.predict_proba(df)[:, 1])


# -- ONNX ------------------------------------------------------------------------------------------------------------
def _onnx_file(tmp_path, name, onx):
    path = tmp_path / name
    path.write_bytes(onx.SerializeToString())
    return path


def _ort_proba(path, X):
    """ONNX Runtime's own answer: class 1 of the probability output (a tensor or a ZipMap list of dicts)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outs = sess.run(None, {sess.get_inputs()[0].name: X.astype(np.float32)})
    proba = outs[1]
    return np.array([r[1] for r in proba]) if isinstance(proba, list) else np.asarray(proba)[:, 1]


def test_onnx_sklearn_logistic_regression_zipmap(data, tmp_path):
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    X, y, _ = data
    Xq = X[:200]  # scikit-learn itself refuses NaN here
    lr = LogisticRegression(max_iter=500).fit(X, y)
    path = _onnx_file(tmp_path, "lr.onnx", to_onnx(lr, X[:1].astype(np.float32)))  # ZipMap output by default
    with pytest.raises(ModelError, match="lr.onnx: model.features: the model has no feature names"):
        load_model(path)
    m = load_model(path, features=NAMES)
    assert m.kind == "onnx" and m.feature_names == tuple(NAMES)
    _close(m.predict_score(Xq), _ort_proba(path, Xq))
    _close(m.predict_score(Xq), lr.predict_proba(Xq.astype(np.float32))[:, 1], tol=1e-4)  # float32 inside ONNX
    with pytest.raises(ModelError, match="model.features has 3 names but the model takes 5 inputs"):
        load_model(path, features=NAMES[:3])


def test_onnx_sklearn_pipeline_and_random_forest(data, tmp_path):
    from skl2onnx import to_onnx
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.linear_model import LogisticRegression

    X, y, _ = data
    Xq = X[:200]
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
    p = _onnx_file(tmp_path, "pipe.onnx", to_onnx(pipe, X[:1].astype(np.float32), options={"zipmap": False}))
    m = load_model(p, features=NAMES)
    _close(m.predict_score(Xq), _ort_proba(p, Xq))
    _close(m.predict_score(Xq), pipe.predict_proba(Xq)[:, 1], tol=1e-4)

    rf = RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0).fit(X, y)
    p = _onnx_file(tmp_path, "rf.onnx", to_onnx(rf, X[:1].astype(np.float32)))
    m = load_model(p, features=NAMES)
    _close(m.predict_score(Xq), _ort_proba(p, Xq))
    _close(m.predict_score(Xq), rf.predict_proba(Xq.astype(np.float32))[:, 1], tol=1e-5)


def test_onnx_xgboost_and_lightgbm_via_onnxmltools(data, tmp_path):
    import lightgbm as lgb
    import onnxmltools
    import xgboost as xgb
    from onnxmltools.convert.common.data_types import FloatTensorType

    X, y, Xq = data
    types = [("input", FloatTensorType([None, X.shape[1]]))]
    clf = xgb.XGBClassifier(n_estimators=8, max_depth=3).fit(X, y)
    p = _onnx_file(tmp_path, "xgb.onnx", onnxmltools.convert_xgboost(clf, initial_types=types))
    m = load_model(p, features=NAMES)
    _close(m.predict_score(Xq), clf.predict_proba(Xq)[:, 1], tol=1e-5)

    lclf = lgb.LGBMClassifier(n_estimators=10, num_leaves=7, verbose=-1).fit(X, y)
    p = _onnx_file(tmp_path, "lgb.onnx", onnxmltools.convert_lightgbm(lclf, initial_types=types))
    m = load_model(p, features=NAMES)
    _close(m.predict_score(Xq), lclf.predict_proba(Xq.astype(np.float32))[:, 1], tol=1e-5)

    import onnxruntime as ort  # a live session, for notebooks

    live = load_model(ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]), features=NAMES)
    assert live.kind == "onnx" and len(live.sha256) == 64
    _close(live.predict_score(Xq), m.predict_score(Xq))


def test_onnx_threads_follow_omp_num_threads(data, tmp_path, monkeypatch):
    """ONNX Runtime keeps its own thread pool: OMP_NUM_THREADS bounds it as it bounds XGBoost's and LightGBM's
    OpenMP pools, and the query log's writer thread counts on the core that leaves free (spare_core)."""
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    from simulator.store import BACKGROUND_MIN_CPUS, spare_core
    from simulator.target.onnx import MAX_THREADS
    from simulator.threads import usable_cores

    X, y, _ = data
    p = _onnx_file(tmp_path, "lr.onnx", to_onnx(LogisticRegression(max_iter=500).fit(X, y),
                                                  X[:1].astype(np.float32), options={"zipmap": False}))
    cores = usable_cores()

    def threads():
        m = load_model(p, features=NAMES)
        _close(m.predict_score(X[:50]), _ort_proba(p, X[:50]))
        return m.session.get_session_options().intra_op_num_threads

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads() == 1
    assert spare_core() == (cores > 1)
    monkeypatch.setenv("OMP_NUM_THREADS", "2,1")  # a nested list: its first level
    assert threads() == min(2, cores)
    monkeypatch.setenv("OMP_NUM_THREADS", "512")  # never more than the cores
    assert threads() == cores
    assert spare_core() == (cores >= BACKGROUND_MIN_CPUS)
    for unset in ("", "0", "many"):  # unset or not a positive number: ONNX Runtime's own default, bounded
        monkeypatch.setenv("OMP_NUM_THREADS", unset)
        assert threads() == min(cores, MAX_THREADS)
        assert spare_core() == (cores >= BACKGROUND_MIN_CPUS)


def test_onnx_non_float_input_is_refused(data, tmp_path):
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import Int64TensorType
    from sklearn.linear_model import LogisticRegression

    X, y, _ = data
    lr = LogisticRegression(max_iter=300).fit(X.round(), y)
    p = _onnx_file(tmp_path, "int.onnx", convert_sklearn(lr, initial_types=[("ints", Int64TensorType([None, 5]))]))
    with pytest.raises(ModelError, match=r"int.onnx: model.path: input 'ints' is tensor\(int64\); .* needs a float input"):
        load_model(p, features=NAMES)


def test_onnx_corrupt_file(tmp_path):
    p = tmp_path / "broken.onnx"
    p.write_bytes(b"\x08\x07garbage")
    with pytest.raises(ModelError, match="broken.onnx: model.path: cannot be read as an ONNX model"):
        load_model(p)


# -- training and the registry ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["xgboost", "lightgbm"])
def test_trainers_take_param_overrides_and_round_trip(data, tmp_path, kind):
    X, y, Xq = data
    small = {"max_depth": 2} if kind == "xgboost" else {"num_leaves": 4}
    model, used = fit_model(X, y, NAMES, kind=kind, seed=1, params={"rounds": 7, **small})
    assert used["rounds"] == 7 and all(used[k] == v for k, v in small.items())
    assert model.kind == kind and model.trainable and len(model.sha256) == 64
    trained = train_model(X[:400], y[:400], X[400:], y[400:], NAMES, kind=kind, seed=1,
                          params={"rounds": 5, "monotone_constraints": {"txn_amt_usd": 1}})
    assert trained.card["params"]["rounds"] == 5
    path = save_model(trained, tmp_path / ("m.json" if kind == "xgboost" else "m.txt"))
    again = load_model(path)
    assert again.feature_names == tuple(NAMES) and again.card["threshold"] == trained.threshold
    _close(again.predict_score(Xq), trained.model.predict_score(Xq))
    # monotone in the first feature, as asked
    grid = np.repeat(Xq[:1], 50, axis=0)
    grid[:, 0] = np.linspace(0, 200, 50)
    assert np.all(np.diff(again.predict_score(grid)) >= -1e-12)


def test_untrainable_kind_is_one_error(data):
    X, y, _ = data
    with pytest.raises(ModelError, match=r"fraudsim cannot train a onnx model; trainable kinds: xgboost, lightgbm "
                                         r"\(or give model.path"):
        fit_model(X, y, NAMES, kind="onnx")


def test_a_new_kind_is_one_class_and_a_registration(tmp_path):
    @register_adapter("constant-test")
    class Constant(TargetModel):
        @classmethod
        def sniff(cls, head, path):
            return head.startswith(b"CONSTANT ")

        @classmethod
        def from_path(cls, path, *, features=None):
            value = float(path.read_text().split()[1])
            m = cls(features or ["x"], source=str(path), path=path)
            m.value = value
            return m

        def predict_score(self, X):
            return np.full(len(X), self.value)

    try:
        assert "constant-test" in kinds() and get_adapter("constant-test") is Constant
        (tmp_path / "c.model").write_text("CONSTANT 0.25\n")
        m = load_model(tmp_path / "c.model", features=["a", "b"])
        assert m.kind == "constant-test" and m.predict_score(np.zeros((3, 2))).tolist() == [0.25] * 3
        with pytest.raises(ValueError, match="already registered"):
            register_adapter("xgboost")(Constant)
    finally:
        ADAPTERS.pop("constant-test", None)
        _SNIFF_ORDER.remove("constant-test")


def test_unknown_objects_and_kinds(tmp_path):
    with pytest.raises(ModelError, match="cannot use a builtins.dict"):
        load_model({"not": "a model"}.items())
    with pytest.raises(ModelError, match="unknown model kind 'catboost'"):
        load_model(tmp_path, kind="catboost") if False else get_adapter("catboost")


def test_onnx_one_input_per_feature_is_named_by_its_inputs(tmp_path):
    """A hand-built graph: one [N, 1] input per column (as ColumnTransformer exports have); sigmoid(X @ w)."""
    from onnx import TensorProto, helper, numpy_helper

    w = np.array([[0.8], [-1.5]], np.float32)
    graph = helper.make_graph(
        [helper.make_node("Concat", ["txn_amt_usd", "chan"], ["x"], axis=1),
         helper.make_node("MatMul", ["x", "w"], ["z"]), helper.make_node("Sigmoid", ["z"], ["fraud_probability"])],
        "two_inputs",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None, 1]) for n in ("txn_amt_usd", "chan")],
        [helper.make_tensor_value_info("fraud_probability", TensorProto.FLOAT, [None, 1])],
        [numpy_helper.from_array(w, "w")])
    onx = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    path = _onnx_file(tmp_path, "two.onnx", onx)
    m = load_model(path)
    assert m.feature_names == ("txn_amt_usd", "chan")
    X = np.array([[1.0, 0.0], [0.5, 2.0], [-1.0, 1.0]])
    _close(m.predict_score(X), 1 / (1 + np.exp(-(X @ w.astype(np.float64)).ravel())), tol=1e-6)
    with pytest.raises(ModelError, match="position 1: 'chan' in the scenario, 'txn_amt_usd' in the model"):
        load_model(path, features=["chan", "txn_amt_usd"])
    live = load_model(onx)  # an onnx.ModelProto in memory
    assert live.sha256 == __import__("hashlib").sha256(path.read_bytes()).hexdigest()
