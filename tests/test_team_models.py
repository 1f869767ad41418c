"""A team's own model and data, end to end: unnamed XGBoost/LightGBM files with ``model.features``, an ONNX
export, and the notebook API with DataFrames and live model objects; team column names throughout."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import simulator as fs
from simulator.cli import app

from .test_endpoint import NAMES, SPECS, team_holdout

CHECK_RUN = Path(__file__).resolve().parents[2] / "shared" / "tools" / "check-run.py"
if not CHECK_RUN.is_file():
    CHECK_RUN = Path("/work/shared/tools/check-run.py")


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    import lightgbm as lgb
    import xgboost as xgb
    from skl2onnx import to_onnx
    from sklearn.ensemble import RandomForestClassifier

    d = tmp_path_factory.mktemp("team_models")
    X, y, frame = team_holdout(d, seed=8)
    xclf = xgb.XGBClassifier(n_estimators=15, max_depth=3, random_state=0).fit(X, y)
    xclf.save_model(str(d / "xgb_numpy.json"))
    lclf = lgb.LGBMClassifier(n_estimators=15, num_leaves=7, verbose=-1).fit(X, y)
    lclf.booster_.save_model(str(d / "lgbm_numpy.txt"))
    rf = RandomForestClassifier(n_estimators=15, max_depth=5, random_state=0).fit(X, y)
    (d / "rf.onnx").write_bytes(to_onnx(rf, X[:1].astype(np.float32)).SerializeToString())
    return {"dir": d, "X": X, "y": y, "frame": frame, "xclf": xclf, "lclf": lclf, "rf": rf}


def _threshold(scores, y):
    return round(float(np.quantile(scores[y == 1], 0.4)), 4)


def _write(team, name, model):
    raw = {"name": name, "seed": 2, "data": {"path": "holdout.parquet"}, "model": model, "features": SPECS,
           "attack": {"targets": "caught_fraud", "limit": 4, "budget": 30, "strategies": ["random"]},
           "output": f"{name}.duckdb"}
    path = team["dir"] / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
    return path


@pytest.mark.parametrize("fname, kind, proba", [
    ("xgb_numpy.json", "xgboost", lambda t, X: t["xclf"].predict_proba(X)[:, 1]),
    ("lgbm_numpy.txt", "lightgbm", lambda t, X: t["lclf"].predict_proba(X.astype(np.float32))[:, 1]),
    ("rf.onnx", "onnx", lambda t, X: t["rf"].predict_proba(X.astype(np.float32))[:, 1]),
])
def test_cli_run_on_unnamed_models_with_features(team, fname, kind, proba):
    thr = _threshold(proba(team, team["X"]), team["y"])
    name = f"team-{kind}"
    path = _write(team, name, {"path": fname, "features": NAMES, "threshold": thr})
    runner = CliRunner()
    res = runner.invoke(app, ["validate", str(path)])
    assert res.exit_code == 0 and f"{kind} model with 6 features" in res.output, res.output
    res = runner.invoke(app, ["run", str(path), "-q"])
    assert res.exit_code == 0, res.output
    db = team["dir"] / f"{name}.duckdb"
    con = duckdb.connect(str(db), read_only=True)
    try:
        kind_row, status = con.execute("SELECT model_kind, status FROM runs").fetchone()
        q = con.execute('SELECT "hour of day", "ländercode", score FROM queries').fetchnumpy()
    finally:
        con.close()
    assert kind_row == kind and status == "finished" and len(q["score"]) > 0
    if CHECK_RUN.is_file():  # the independent contract checker rescores every query with the library
        chk = subprocess.run([sys.executable, str(CHECK_RUN), str(path), str(db)], capture_output=True, text=True)
        assert chk.returncode == 0, chk.stdout + chk.stderr


def test_features_that_are_not_in_the_data_or_missing(team):
    runner = CliRunner()
    path = _write(team, "bad-features", {"path": "xgb_numpy.json", "threshold": 0.5,
                                         "features": ["txn_amt_usd", "chan", "MCC", "hour of day", "ländercode",
                                                      "merchant_cat"]})
    res = runner.invoke(app, ["validate", str(path)])
    assert res.exit_code == 2 and "holdout.parquet: MCC: missing model feature 'MCC'" in res.stderr, res.output
    path = _write(team, "no-features", {"path": "lgbm_numpy.txt", "threshold": 0.5})
    res = runner.invoke(app, ["run", str(path), "-q"])
    assert res.exit_code == 2, res.output
    assert "lgbm_numpy.txt: model.features: the model has no feature names; add model.features" in res.stderr
    path = _write(team, "short-features", {"path": "rf.onnx", "threshold": 0.5, "features": NAMES[:4]})
    res = runner.invoke(app, ["run", str(path), "-q"])
    assert res.exit_code == 2 and "model.features has 4 names but the model takes 6 inputs" in res.stderr
    assert not list(team["dir"].glob("*-features.duckdb"))


def test_notebook_api_with_dataframes_and_live_models(team, tmp_path):
    import onnxruntime as ort
    import pandas as pd

    thr = _threshold(team["xclf"].predict_proba(team["X"])[:, 1], team["y"])
    sc = {"name": "notebook", "seed": 1, "model": {"features": NAMES, "threshold": thr}, "features": SPECS,
          "attack": {"limit": 3, "budget": 20, "strategies": ["random"]}}
    a = fs.run(sc, data=team["frame"], model=team["xclf"].get_booster(), output=tmp_path / "a.duckdb")
    b = fs.run(sc, data=team["frame"].to_pandas(), model=team["xclf"], output=tmp_path / "b.duckdb")
    qa = a.sql('SELECT target_id, query_index, score, "txn_amt_usd" FROM queries ORDER BY ALL')
    qb = b.sql('SELECT target_id, query_index, score, "txn_amt_usd" FROM queries ORDER BY ALL')
    assert qa.height == 3 * 20 and qa.equals(qb)  # a booster and its classifier, Polars and pandas: the same run
    cols = ", ".join(f'"{n}"' for n in NAMES)
    rows = a.sql(f"SELECT score, {cols} FROM queries ORDER BY target_id, query_index")
    expected = team["xclf"].predict_proba(rows.select(NAMES).to_numpy())[:, 1]
    np.testing.assert_allclose(rows["score"].to_numpy(), expected, rtol=1e-6)

    sess = ort.InferenceSession(str(team["dir"] / "rf.onnx"), providers=["CPUExecutionProvider"])
    thr_rf = _threshold(team["rf"].predict_proba(team["X"].astype(np.float32))[:, 1], team["y"])
    c = fs.run(dict(sc, model={"features": NAMES, "threshold": thr_rf}), data=pd.DataFrame(team["frame"].to_dict(as_series=False)),
               model=sess, output=tmp_path / "c.duckdb")
    assert c.sql("SELECT model_kind FROM runs")["model_kind"].to_list() == ["onnx"]
    assert c.summary()["targets"].to_list() == [3]


def test_a_world_cannot_train_an_onnx_or_endpoint_model(tmp_path):
    path = tmp_path / "world_onnx.yaml"
    path.write_text(yaml.safe_dump({"name": "w", "world": {"customers": 500, "days": 4}, "model": {"kind": "onnx"},
                                    "attack": {"limit": 2, "budget": 10, "strategies": ["random"]}}))
    res = CliRunner().invoke(app, ["validate", str(path)])
    assert res.exit_code == 2 and "model.kind: fraudsim cannot train a onnx model" in res.stderr, res.output
    path.write_text(yaml.safe_dump({"name": "w", "model": {"kind": "catboost"}}))
    res = CliRunner().invoke(app, ["validate", str(path)])
    assert res.exit_code == 2 and "model.kind: unknown model kind 'catboost'; known: xgboost, lightgbm, onnx, http" \
        in res.stderr, res.output
