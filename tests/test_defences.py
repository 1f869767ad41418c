"""Defence plug-ins: the registry contract, the k-NN stateful detector (kernel vs reference), and runtime defences
in single-round runs through the oracle hook, checked with independent SQL on the run file."""
from __future__ import annotations

import inspect

import duckdb
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import simulator as fs
from simulator.defences import DEFENCES, make_defence
from simulator.defences.stateful import calibrate, knn_distances, reference_knn_distances
from simulator.errors import ScenarioError
from simulator.scenario import RunDefenceSpec, Scenario

from .conftest import scenario_dict


@pytest.mark.parametrize("name", sorted(DEFENCES))
def test_every_training_defence_follows_the_protocol(name):
    cls = DEFENCES[name]
    assert cls.name == name and cls.kinds and callable(getattr(cls, "build"))
    sig = inspect.signature(cls.__init__)
    params = [p for p in sig.parameters.values() if p.name != "self"]
    assert all(p.kind == p.KEYWORD_ONLY and p.default is not p.empty for p in params)  # typed, defaulted, by name
    make_defence(name, {}, field=f"harden.params.{name}")  # the defaults build
    with pytest.raises(ScenarioError, match="unknown parameter"):
        make_defence(name, {"no_such_setting": 1}, field=f"harden.params.{name}")


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(1, 6), st.lists(st.tuples(st.integers(0, 3), st.floats(0, 1), st.floats(0, 1)),
                                                     min_size=1, max_size=60))
def test_knn_kernel_matches_reference(k, extra, rows):
    key = np.array([r[0] for r in rows])
    emb = np.array([[r[1], r[2]] for r in rows], dtype=np.float32)
    ts = np.arange(len(rows), dtype=np.float64)
    for window in (np.inf, 5.0):
        a = knn_distances(key, ts, emb, k=k, buffer=k + extra, window=window)
        b = reference_knn_distances(key, ts, emb, k=k, buffer=k + extra, window=window)
        assert np.array_equal(np.isinf(a), np.isinf(b))
        assert np.allclose(a[np.isfinite(a)], b[np.isfinite(b)], atol=1e-6)


def test_calibrate_flags_at_most_the_share_asked():
    d = np.random.default_rng(0).random(10_000)
    thr = calibrate(np.r_[d, [np.inf] * 50], 0.01)
    assert (d < thr).mean() <= 0.01


def test_run_defence_section_is_told_apart_from_a_campaign_defence():
    sc = Scenario.from_dict({"name": "r", "world": {"customers": 500, "days": 4},
                             "defence": {"rate_limits": [{"max_queries": 20}]}})
    assert isinstance(sc.defence, RunDefenceSpec) and sc.defence.rate_limits[0].window_s == 3600
    with pytest.raises(ScenarioError, match=r"defence\.rate_limits\.0\.per_hour: unknown key"):
        Scenario.from_dict({"name": "r", "defence": {"rate_limits": [{"max_queries": 2, "per_hour": 1}]}})
    with pytest.raises(ScenarioError, match="belongs to a campaign"):
        Scenario.from_dict({"name": "r", "defence": {"retrain": {"every": 2}}})


def _run(team_files, write_scenario, tmp_path, defence, budget=60, strategies=("random", "greedy")):
    raw = scenario_dict(team_files, budget=budget, strategies=list(strategies))
    raw["defence"] = defence
    res = fs.run(write_scenario(raw, "defended.yaml"), output=tmp_path / "d.duckdb")
    return res, duckdb.connect(str(res.path), read_only=True)


def test_rate_limit_refuses_queries_over_the_limit(team_files, write_scenario, tmp_path):
    res, con = _run(team_files, write_scenario, tmp_path, {"rate_limits": [{"max_queries": 10, "window_s": 3600}]})
    try:
        # one query a minute: the 11th and later queries of a card within the hour are refused, never evasions
        late = con.execute("SELECT count(*), count(*) FILTER (WHERE evaded) FROM queries WHERE query_index > 10").fetchone()
        assert late[0] > 0 and late[1] == 0
        events = con.execute("SELECT count(*) FROM defence_events WHERE kind = 'rate_limit'").fetchone()[0]
        assert events == late[0]
        assert con.execute("SELECT max(queries_to_first_evasion) FROM targets").fetchone()[0] in (None,) or \
            con.execute("SELECT max(queries_to_first_evasion) FROM targets").fetchone()[0] <= 10
    finally:
        con.close()


def test_review_band_holds_scores_below_the_decline_threshold(team_files, write_scenario, tmp_path):
    res, con = _run(team_files, write_scenario, tmp_path, {"review_band": {"review_threshold": 0.01}})
    try:
        assert con.execute("SELECT count(*) FROM queries WHERE evaded AND score >= 0.01").fetchone()[0] == 0
        n_review = con.execute("SELECT count(*) FROM defence_events WHERE kind = 'review'").fetchone()[0]
        held = con.execute("SELECT count(*) FROM queries q JOIN runs r USING (run_id) "
                           "WHERE score >= 0.01 AND score < r.threshold").fetchone()[0]
        assert n_review == held
    finally:
        con.close()


def test_stateful_detection_blocks_a_search(team_files, write_scenario, tmp_path):
    res, con = _run(team_files, write_scenario, tmp_path,
                    {"stateful_detection": {"threshold": 0.05, "k": 3, "action": "block", "block_s": 1e9}},
                    strategies=("greedy",))
    try:
        first = con.execute("SELECT target_id, min(query_index) FROM queries q WHERE NOT evaded AND target_id IN "
                            "(SELECT target_id FROM defence_events WHERE kind = 'probe_detected') GROUP BY 1").fetchall()
        detected = con.execute("SELECT count(DISTINCT target_id) FROM defence_events "
                               "WHERE kind = 'probe_detected'").fetchone()[0]
        assert detected >= 1 and len(first) == detected
        # after a detection the card is blocked: no later query of that target evades
        late = con.execute("""SELECT count(*) FROM queries q JOIN (SELECT target_id,
            min(json_extract(detail, '$.query_index')::INTEGER) AS qi FROM defence_events WHERE kind = 'probe_detected'
            GROUP BY 1) d USING (target_id) WHERE q.query_index >= d.qi AND q.evaded""").fetchone()[0]
        assert late == 0
    finally:
        con.close()
