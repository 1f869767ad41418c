"""End to end: scenario YAML -> run -> DuckDB, with the numbers recomputed by independent SQL."""
import duckdb
import numpy as np
import polars as pl
import pytest

import simulator as fs
from simulator.schema import frame_to_matrix
from simulator.target import load_model
from simulator.world import FEATURES

from .conftest import scenario_dict


@pytest.fixture(scope="module")
def finished_run(team_files, tmp_path_factory):
    import yaml

    raw = scenario_dict(team_files)
    path = team_files["dir"] / "e2e.yaml"
    path.write_text(yaml.safe_dump(raw))
    out = tmp_path_factory.mktemp("runs") / "e2e.duckdb"
    return fs.run(path, output=out), path


def test_success_rates_match_independent_sql(finished_run, team_files):
    res, _ = finished_run
    con = duckdb.connect(str(res.path), read_only=True)
    # straight from the raw query log, not from the targets table
    indep = con.execute("""
        WITH first AS (
          SELECT strategy, target_id, min(query_index) FILTER (WHERE score < r.threshold) AS q1
          FROM queries, (SELECT threshold FROM runs) r GROUP BY strategy, target_id)
        SELECT strategy, avg(CASE WHEN q1 <= 10 THEN 1 ELSE 0 END), avg(CASE WHEN q1 <= 50 THEN 1 ELSE 0 END),
               avg(CASE WHEN q1 <= 60 THEN 1 ELSE 0 END), count(*)
        FROM first GROUP BY strategy ORDER BY strategy""").fetchall()
    summary = res.summary()
    assert summary["strategy"].to_list() == [r[0] for r in indep]
    for row, (strategy, s10, s50, s60, n) in zip(summary.iter_rows(named=True), indep):
        assert row["targets"] == n == 6
        assert row["success_rate_at_10"] == pytest.approx(s10)
        assert row["success_rate_at_50"] == pytest.approx(s50)
        assert row["success_rate_at_60"] == pytest.approx(s60)
    assert con.execute("SELECT status FROM runs").fetchall() == [("finished",)]


def test_every_query_is_valid_rescored_and_within_budget(finished_run, team_files):
    res, _ = finished_run
    con = duckdb.connect(str(res.path), read_only=True)
    q = con.sql("SELECT * FROM queries ORDER BY strategy, target_id, query_index").pl()
    model = load_model(team_files["xgb"])
    X = q.select(FEATURES).to_numpy()
    np.testing.assert_allclose(model.predict_score(X), q["score"].to_numpy(), rtol=1e-6, atol=1e-9)
    per = q.group_by("strategy", "target_id").agg(pl.len().alias("n"), pl.col("query_index").max().alias("mx"))
    assert (per["n"] <= 60).all() and (per["n"] == per["mx"]).all()
    # frozen features never move: compare with the original rows of the data file (target_id = row number)
    data = pl.read_parquet(team_files["data"])
    orig = frame_to_matrix(data, FEATURES)[q["target_id"].to_numpy()]
    frozen = [i for i, f in enumerate(FEATURES) if f not in ("amount", "hour", "merchant_cat", "country_mismatch", "new_device")]
    np.testing.assert_array_equal(X[:, frozen], orig[:, frozen])
    assert (X[:, FEATURES.index("new_device")] <= orig[:, FEATURES.index("new_device")]).all()
    # targets are caught fraud: label 1 and declined at the threshold
    thr = con.execute("SELECT threshold FROM runs").fetchall()[0][0]
    tids = con.execute("SELECT DISTINCT target_id FROM targets ORDER BY 1").fetchall()
    rows = data[[t[0] for t in tids]]
    assert (rows["is_fraud"] == 1).all()
    assert (model.predict_score(frame_to_matrix(rows, FEATURES)) >= thr).all()


def test_same_scenario_and_seed_give_identical_queries(finished_run, tmp_path):
    res, path = finished_run
    again = fs.run(path, output=tmp_path / "again.duckdb")
    a = duckdb.connect(str(res.path), read_only=True).sql("SELECT * FROM queries ORDER BY ALL").pl()
    b = duckdb.connect(str(again.path), read_only=True).sql("SELECT * FROM queries ORDER BY ALL").pl()
    assert a.height > 0 and a.equals(b)
    assert again.run_id == res.run_id


def test_lightgbm_model_and_decision_feedback(team_files, write_scenario, tmp_path):
    raw = scenario_dict(team_files, feedback="decision", strategies=["random"], budget=30)
    raw["model"] = {"path": team_files["lgbm"].name}
    res = fs.run(write_scenario(raw, "lgbm.yaml"), output=tmp_path / "l.duckdb")
    s = res.summary()
    assert s["strategy"].to_list() == ["random"] and s["targets"][0] == 6
    kind = res.sql("SELECT model_kind FROM runs")["model_kind"][0]
    assert kind == "lightgbm"


@pytest.mark.slow  # about 16 s of CPU: generates a world and trains on it
def test_world_scenario_trains_its_own_model(tmp_path):
    sc = fs.Scenario.from_dict({"name": "w", "seed": 2, "world": {"customers": 2000, "days": 6},
                                "attack": {"limit": 4, "budget": 25, "strategies": ["evolutionary"]}})
    res = fs.run(sc, output=tmp_path / "w.duckdb")
    mv = res.sql("SELECT version, kind, test_auc, threshold_rule FROM model_versions")
    assert mv["kind"][0] == "xgboost" and 0.6 < mv["test_auc"][0] <= 1.0
    tx = res.sql("SELECT split, count(*) AS n, sum(is_fraud) AS f FROM transactions GROUP BY split ORDER BY split")
    assert tx["split"].to_list() == ["test", "train"] and (tx["f"] > 0).all()
    assert res.summary()["targets"][0] == 4


def test_a_run_that_fails_midway_leaves_no_file_and_keeps_the_old_one(tmp_path):
    """A strategy that breaks after some queries: the error surfaces, the earlier finished file is untouched."""
    from simulator.strategies import REGISTRY, Strategy, register

    sc = fs.Scenario.from_dict({"name": "f", "seed": 1, "world": {"customers": 1500, "days": 6},
                                "attack": {"limit": 3, "budget": 20, "strategies": ["random"]}})
    out = tmp_path / "f.duckdb"
    fs.run(sc, output=out)
    before = out.read_bytes()

    @register("breaks_midway")
    class BreaksMidway(Strategy):
        def _ask(self, n):
            if self.n_told >= 10:
                raise RuntimeError("strategy crashed")
            return self.mutate(self._X0.repeat(n, axis=0), step=0.1, p=0.5)

    try:
        bad = sc.replace(attack={"limit": 3, "budget": 20, "strategies": ["random", "breaks_midway"]})
        with pytest.raises(RuntimeError, match="strategy crashed"):
            fs.run(bad, output=out)
    finally:
        del REGISTRY["breaks_midway"]
    assert out.read_bytes() == before
    assert not list(tmp_path.glob("*.partial*"))


def test_cost_scale_and_opening_are_recorded_per_query(team_files, write_scenario, tmp_path):
    """cost_scale iqr (globally) with one feature per unit: every logged cost equals an independent recomputation
    from the data's quartiles; queries.opening marks the strategies' opening moves, and opening: none has none."""
    raw = scenario_dict(team_files, limit=3, budget=30, strategies=["random", "greedy", "evolutionary"],
                        params={"evolutionary": {"opening": "none"}})
    raw["cost_scale"] = "iqr"
    raw["features"] = dict(raw["features"], hour=dict(raw["features"]["hour"], cost_scale="unit"))
    res = fs.run(write_scenario(raw, "iqr.yaml"), output=tmp_path / "iqr.duckdb")
    con = duckdb.connect(str(res.path), read_only=True)
    q = con.sql("SELECT * FROM queries ORDER BY strategy, target_id, query_index").pl()
    data = pl.read_parquet(team_files["data"])
    orig = frame_to_matrix(data, FEATURES)[q["target_id"].to_numpy()]
    X = q.select(FEATURES).to_numpy()
    amount = data["amount"].to_numpy()
    iqr = np.quantile(amount, 0.75) - np.quantile(amount, 0.25)
    i_amt, i_hour = FEATURES.index("amount"), FEATURES.index("hour")
    flags = {"merchant_cat": 0.5, "country_mismatch": 0.5, "new_device": 1.0}
    expected = np.abs(X[:, i_amt] - orig[:, i_amt]) / iqr + 0.5 * np.abs(X[:, i_hour] - orig[:, i_hour])
    for f, c in flags.items():
        expected += c * (X[:, FEATURES.index(f)] != orig[:, FEATURES.index(f)])
    np.testing.assert_allclose(q["cost"].to_numpy(), expected, rtol=1e-9)
    per = {s: q.filter(pl.col("strategy") == s)["opening"] for s in ("random", "greedy", "evolutionary")}
    assert per["random"].null_count() == 0 and not per["random"].any()  # random has no opening move
    assert per["greedy"].any() and not per["evolutionary"].any()
    first = q.filter((pl.col("strategy") == "greedy") & (pl.col("query_index") == 1))["opening"]
    assert first.all()  # greedy opens with its informed batch
    assert con.execute("SELECT value FROM fraudsim_meta WHERE key = 'schema_version'").fetchall() == [("3",)]
