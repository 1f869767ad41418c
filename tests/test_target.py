import pickle

import numpy as np
import pytest

from simulator.errors import DataError, ModelError
from simulator.schema import frame_to_matrix
from simulator.target import load_model
from simulator.world import FEATURES


def test_loads_both_native_formats_and_scores_like_the_library(team_files):
    import lightgbm as lgb
    import xgboost as xgb

    X = frame_to_matrix(team_files["frame"], FEATURES)[:500]
    m = load_model(team_files["xgb"])
    assert m.kind == "xgboost" and m.feature_names == tuple(FEATURES) and len(m.sha256) == 64
    ref = xgb.Booster(model_file=str(team_files["xgb"])).inplace_predict(X.astype(np.float32))
    np.testing.assert_allclose(m.predict_score(X), ref, rtol=1e-6)
    assert m.card["threshold"] > 0 and 0.5 < m.card["test_auc"] <= 1

    l = load_model(team_files["lgbm"])
    assert l.kind == "lightgbm" and l.feature_names == tuple(FEATURES)
    # features go to both libraries as float32 (XGBoost's own precision), so LightGBM is compared the same way
    ref = lgb.Booster(model_file=str(team_files["lgbm"])).predict(X.astype(np.float32))
    np.testing.assert_allclose(l.predict_score(X), ref, rtol=1e-6)


def test_ubj_round_trip(team_files, tmp_path):
    m = load_model(team_files["xgb"])
    m.booster.save_model(str(tmp_path / "m.ubj"))
    u = load_model(tmp_path / "m.ubj")
    X = frame_to_matrix(team_files["frame"], FEATURES)[:100]
    np.testing.assert_array_equal(u.predict_score(X), m.predict_score(X))


def test_bad_model_files(tmp_path):
    with pytest.raises(ModelError, match="file not found"):
        load_model(tmp_path / "nope.json")
    (tmp_path / "model.pkl").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ModelError, match="neither an XGBoost JSON/UBJ model nor a LightGBM text model"):
        load_model(tmp_path / "model.pkl")
    (tmp_path / "broken.json").write_text('{"learner": ')
    with pytest.raises(ModelError, match="broken.json: model.path: cannot be read as a xgboost model"):
        load_model(tmp_path / "broken.json")


def test_feature_mismatch_names_the_missing_column(team_files):
    m = load_model(team_files["xgb"])
    with pytest.raises(DataError, match="d.parquet: hour: missing model feature 'hour'"):
        m.check_columns([f for f in FEATURES if f != "hour"], source="d.parquet")


def test_multiclass_model_is_refused(tmp_path):
    import xgboost as xgb

    X = np.random.default_rng(0).random((60, 2))
    b = xgb.train({"objective": "multi:softprob", "num_class": 3}, xgb.DMatrix(X, np.arange(60) % 3, feature_names=["a", "b"]), 2)
    b.save_model(str(tmp_path / "multi.json"))
    with pytest.raises(ModelError, match="not a binary classifier"):
        load_model(tmp_path / "multi.json")
