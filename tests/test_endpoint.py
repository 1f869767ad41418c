"""Live scoring endpoints: a real HTTP server on 127.0.0.1 (``simulator.serve``) serving a real XGBoost model in
MLflow's and KServe v2's protocols, healthy, flaky (20% of requests fail with 503) and slow.

The contract checked end to end: every row the server scored is one logged, paid query (server rows = data rows
scored in prepare + rows in ``queries``), no target gets more than its budget, and bad answers are one line.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import duckdb
import numpy as np
import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

import simulator as fs
from simulator.cli import app
from simulator.errors import ModelError
from simulator.serve import ScoringServer
from simulator.target import load_model

# A team's names. ``merchant_cat`` (frozen) is there only because views.success_by_segment still needs one world
# column on this branch; the any-schema views (h2, issue 8 item 1) make it unnecessary.
NAMES = ["txn_amt_usd", "chan", "mcc", "hour of day", "ländercode", "merchant_cat"]
SPECS = {
    "txn_amt_usd": {"type": "continuous", "min": 0.5, "max": 5000, "cost": 1.0},
    "chan": {"type": "categorical", "categories": [0, 1, 2], "cost": 0.5},
    "mcc": {"type": "integer", "min": 0, "max": 7, "mutable": False},
    "hour of day": {"type": "integer", "min": 0, "max": 23, "cost": 0.2},
    "ländercode": {"type": "integer", "min": 0, "max": 4, "mutable": False},
    "merchant_cat": {"type": "integer", "min": 0, "max": 9, "mutable": False},
}


def team_holdout(d, *, seed: int, n: int = 500):
    """A team's labelled holdout in its own column names (``NAMES``), written to ``d/holdout.parquet``."""
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.lognormal(3, 1, n).clip(0.5, 5000), rng.integers(0, 3, n), rng.integers(0, 8, n),
                         rng.integers(0, 24, n), rng.integers(0, 5, n), rng.integers(0, 10, n)]).astype(np.float64)
    logit = np.log(X[:, 0]) - 3.2 + 1.5 * (X[:, 1] == 2) - 0.3 * X[:, 4] + (X[:, 3] < 6)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    frame = pl.DataFrame({name: X[:, j] for j, name in enumerate(NAMES)}).with_columns(pl.Series("is_fraud", y))
    frame.write_parquet(d / "holdout.parquet")
    return X, y, frame


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    """A team's holdout with its own column names and an XGBoost model trained on a bare NumPy array."""
    import xgboost as xgb

    d = tmp_path_factory.mktemp("endpoint")
    X, y, frame = team_holdout(d, seed=5)
    clf = xgb.XGBClassifier(n_estimators=20, max_depth=3, random_state=0).fit(X, y)
    clf.save_model(str(d / "model.json"))
    model = load_model(d / "model.json", features=NAMES)
    scores = model.predict_score(X)
    threshold = round(float(np.quantile(scores[y == 1], 0.4)), 4)
    return {"dir": d, "X": X, "y": y, "model": model, "frame": frame, "threshold": threshold, "clf": clf}


def _scenario(team, url, name, **model):
    raw = {"name": name, "seed": 3, "data": {"path": "holdout.parquet", "label": "is_fraud"},
           "model": {"url": url, "features": NAMES, "threshold": team["threshold"], **model},
           "features": SPECS,
           "attack": {"targets": "caught_fraud", "limit": 4, "budget": 30, "strategies": ["random", "greedy"]},
           "output": f"{name}.duckdb"}
    path = team["dir"] / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
    return path


def _check_run(db, budget, server_rows, data_rows):
    con = duckdb.connect(str(db), read_only=True)
    try:
        n_queries = con.execute("SELECT count(*) FROM queries").fetchone()[0]
        worst = con.execute("SELECT max(n), min(ok::INT) FROM (SELECT count(*) AS n, "
                            "max(query_index) = count(*) AND count(DISTINCT query_index) = count(*) AS ok "
                            "FROM queries GROUP BY strategy, target_id)").fetchone()
        status = con.execute("SELECT status FROM runs").fetchone()[0]
    finally:
        con.close()
    assert status == "finished"
    assert n_queries > 0 and worst[0] <= budget and worst[1] == 1
    # every row the endpoint scored is one logged query (or one of the data rows scored to pick targets)
    assert server_rows == data_rows + n_queries, (server_rows, data_rows, n_queries)


# -- the adapter against the server ----------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["number", "pair", "dict"])
def test_mlflow_scores_equal_the_local_model(team, fmt):
    X = team["X"][:120].copy()
    X[::5, 3] = np.nan  # missing values travel as JSON null and score as the library scores NaN
    with ScoringServer(team["model"], "mlflow", mlflow_format=fmt) as srv:
        m = load_model({"url": srv.url, "protocol": "mlflow", "features": NAMES, "batch_size": 50})
        np.testing.assert_allclose(m.predict_score(X), team["model"].predict_score(X), rtol=1e-6)
        assert srv.rows_scored == 120 and srv.requests == 3 and m.kind == "http"
        assert m.card["sha256_rule"].startswith("sha256 of URL + protocol + features") and len(m.sha256) == 64
        m.close()


def test_kserve_v2_url_from_model_name(team):
    X = team["X"][:64]
    with ScoringServer(team["model"], "kserve_v2", model_name="fraud-v3") as srv:
        m = load_model({"url": srv.base_url, "protocol": "kserve_v2", "model_name": "fraud-v3", "features": NAMES,
                        "batch_size": 10, "concurrency": 3})
        assert m.url == f"{srv.base_url}/v2/models/fraud-v3/infer"
        np.testing.assert_allclose(m.predict_score(X), team["model"].predict_score(X), rtol=1e-6)
        assert srv.rows_scored == 64 and srv.requests == 7
        m.close()


def test_flaky_server_is_retried_and_every_row_scored_once(team):
    X = team["X"][:400]
    with ScoringServer(team["model"], "mlflow", fail_rate=0.2, seed=1) as srv:
        m = load_model({"url": srv.url, "features": NAMES, "batch_size": 20, "retries": 10, "concurrency": 2})
        m.backoff = 0.001
        np.testing.assert_allclose(m.predict_score(X), team["model"].predict_score(X), rtol=1e-6)
        assert srv.failures > 0 and m.retried == srv.failures
        assert srv.rows_scored == 400 == m.rows_scored
        m.close()


def test_rate_limit_spaces_requests(team):
    import time

    with ScoringServer(team["model"], "mlflow") as srv:
        m = load_model({"url": srv.url, "features": NAMES, "batch_size": 10, "max_rps": 50})
        t0 = time.perf_counter()
        m.predict_score(team["X"][:60])  # 6 requests at 50/s: at least 5 intervals of 20 ms
        assert time.perf_counter() - t0 >= 0.095
        m.close()


# -- bad answers are one line naming the URL -------------------------------------------------------------------------
class _Fixed(BaseHTTPRequestHandler):
    """Answers every POST with the server's fixed (status, body)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen = dict(self.headers)
        status, body = self.server.answer
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture()
def fixed_server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Fixed)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("status, body, message", [
    (200, json.dumps({"predictions": [0.5]}), "the answer has 1 predictions for 3 rows"),
    (200, json.dumps({"predictions": ["yes", "no", "no"]}), "predictions must be numbers, [p0, p1] lists or"),
    (200, json.dumps({"predictions": [0.5, 1.5, 0.1]}), "returned a score outside [0, 1] (1.5)"),
    (200, json.dumps({"result": 1}), "the answer has no 'predictions' list"),
    (200, "<html>", "the answer is not JSON"),
    (422, json.dumps({"error_code": "BAD_REQUEST", "message": "column 'chan' has the wrong type"}),
     "the endpoint refused the request: HTTP 422 column 'chan' has the wrong type"),
])
def test_bad_answers_are_one_line(fixed_server, status, body, message):
    fixed_server.answer = (status, body)
    url = f"http://127.0.0.1:{fixed_server.server_address[1]}/invocations"
    m = load_model({"url": url, "features": NAMES})
    with pytest.raises(ModelError) as exc:
        m.predict_score(np.ones((3, 6)))
    text = str(exc.value)
    assert text.startswith(f"{url}: model.url: ") and message in text and "\n" not in text


def test_unreachable_and_slow_endpoints(team):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    m = load_model({"url": f"http://127.0.0.1:{port}/invocations", "features": NAMES, "retries": 2})
    m.backoff = 0.001
    with pytest.raises(ModelError, match=r"invocations: model.url: endpoint unreachable after 3 tries: cannot connect"):
        m.predict_score(np.ones((2, 6)))
    with ScoringServer(team["model"], "mlflow", delay=0.5) as srv:
        m = load_model({"url": srv.url, "features": NAMES, "timeout": 0.1})
        with pytest.raises(ModelError, match=r"model.timeout: no answer within 0.1 s \(raise model.timeout\)"):
            m.predict_score(np.ones((2, 6)))


# -- end to end: scenario YAML -> fraudsim run -> DuckDB -------------------------------------------------------------
def test_cli_run_against_a_flaky_mlflow_endpoint(team):
    runner = CliRunner()
    with ScoringServer(team["model"], "mlflow", fail_rate=0.2, seed=2) as srv:
        path = _scenario(team, srv.url, "flaky-mlflow", retries=12, batch_size=64)
        res = runner.invoke(app, ["validate", str(path)])
        assert res.exit_code == 0, res.output
        assert "http model with 6 features" in res.output
        before = srv.rows_scored
        res = runner.invoke(app, ["run", str(path), "-q"])
        assert res.exit_code == 0, res.output
        assert srv.failures > 0
        _check_run(team["dir"] / "flaky-mlflow.duckdb", 30, srv.rows_scored - before, len(team["X"]))
    con = duckdb.connect(str(team["dir"] / "flaky-mlflow.duckdb"), read_only=True)
    kind, sha, card = con.execute("SELECT kind, sha256, card FROM model_versions").fetchone()
    con.close()
    assert kind == "http" and len(sha) == 64 and json.loads(card)["url"] == srv.url


def test_python_api_against_a_slow_kserve_endpoint(team):
    with ScoringServer(team["model"], "kserve_v2", delay=0.02, model_name="fraud") as srv:
        path = _scenario(team, srv.base_url, "slow-kserve", protocol="kserve_v2", model_name="fraud",
                         batch_size=8, concurrency=4, timeout=5)
        res = fs.run(path)
        _check_run(res.path, 30, srv.rows_scored, len(team["X"]))
        assert set(res.summary()["strategy"]) == {"random", "greedy"}


def test_bad_endpoint_is_exit_2_and_no_run_file(team, fixed_server):
    runner = CliRunner()
    fixed_server.answer = (400, json.dumps({"message": "unknown model version"}))
    url = f"http://127.0.0.1:{fixed_server.server_address[1]}/invocations"
    path = _scenario(team, url, "refused")
    for cmd in (["validate", str(path)], ["run", str(path), "-q"]):
        res = runner.invoke(app, cmd)
        assert res.exit_code == 2, res.output
        line = res.stderr.strip()
        assert len(line.splitlines()) == 1 and url in line and "unknown model version" in line, line
    assert not (team["dir"] / "refused.duckdb").exists()
    raw = yaml.safe_load(path.read_text())
    del raw["model"]["features"]
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    res = runner.invoke(app, ["validate", str(path)])
    assert res.exit_code == 2 and "model.features: an endpoint needs model.features" in res.stderr, res.output


def test_headers_come_from_the_environment(fixed_server, monkeypatch):
    fixed_server.answer = (200, json.dumps({"predictions": [0.25, 0.75]}))
    url = f"http://127.0.0.1:{fixed_server.server_address[1]}/invocations"
    spec = {"url": url, "features": NAMES, "headers": {"Authorization": "Bearer ${FRAUDSIM_TEST_TOKEN}"}}
    with pytest.raises(ModelError, match="model.headers.Authorization: header 'Authorization' needs the environment "
                                         "variable FRAUDSIM_TEST_TOKEN"):
        load_model(spec)
    monkeypatch.setenv("FRAUDSIM_TEST_TOKEN", "s3cret")
    m = load_model(spec)
    assert m.predict_score(np.ones((2, 6))).tolist() == [0.25, 0.75]
    assert fixed_server.seen["Authorization"] == "Bearer s3cret"
    assert "s3cret" not in json.dumps(m.card) and m.sha256 == load_model({"url": url, "features": NAMES}).sha256
