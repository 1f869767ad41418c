"""Campaigns: the mechanics checked with independent SQL over the store (label delay, budgets, bandit weights,
probe detection, reproducibility), plus the probe-to-event mapping, the detector kernel and bad input."""
from __future__ import annotations

import copy

import duckdb
import numpy as np
import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

import simulator as fs
from simulator.campaign.detect import (
    DEVICE_SLOTS,
    ProbeDetector,
    _slot,
    reference_detect,
    signatures,
)
from simulator.campaign.mapping import realise
from simulator.cli import app
from simulator.errors import ScenarioError
from simulator.strategies.base import REGISTRY, Strategy, register
from simulator.world import World, WorldConfig

WALL_CLOCK = {"runs": ("started_at", "finished_at"), "model_versions": ("created_at",),
              "rounds": ("scoring_us_per_txn", "defence_us_per_txn"), "training_runs": ("train_s",)}
TABLES = ("runs", "queries", "targets", "transactions", "model_versions", "defence_events", "rounds", "strategy_stats",
          "ring_rounds", "agents", "training_runs", "training_labels", "drift")


def tiny(**defence) -> dict:
    """A small campaign with every moving part: score and decision feedback, a poisoning ring, retraining with a
    jittered label delay, probe detection."""
    return {
        "name": "tiny-campaign", "seed": 5,
        "world": {"customers": 3000, "days": 10},
        "rounds": 6,
        "adversaries": {"rings": [
            {"name": "scorers", "agents": 4, "feedback": "score", "strategies": ["random", "evolutionary"],
             "probes_per_day": 10},
            {"name": "testers", "kind": "card_testing", "agents": 4, "strategies": ["random", "boundary"],
             "probes_per_day": 8},
            {"name": "poisoners", "agents": 2, "strategies": ["random"], "probes_per_day": 5,
             "poison": {"accounts": 10, "per_day": 30}},
        ]},
        "defence": {"labels": {"delay_days": 2, "delay_jitter_days": 1}, "retrain": {"every": 2, "window_days": 5},
                    **defence},
    }


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("campaign") / "tiny.duckdb"
    res = fs.run(fs.Scenario.from_dict(tiny()), output=out)
    return res, duckdb.connect(str(res.path), read_only=True)


def q(con, sql, params=None):
    return con.execute(sql, params or []).fetchall()


# -- label delay -------------------------------------------------------------------------------------------------------
def test_no_training_uses_a_label_before_it_arrives(tiny_run):
    _, con = tiny_run
    versions = q(con, "SELECT model_version, trained_day FROM training_runs ORDER BY 1")
    assert [v for v, _ in versions] == [1, 2, 3]  # baseline, then retrains after rounds 2 and 4
    # every fraud label a fit used had arrived by the day it was trained
    early = q(con, """SELECT count(*) FROM training_labels l
        JOIN training_runs r USING (run_id, model_version)
        JOIN transactions t ON t.run_id = l.run_id AND t.transaction_id = l.transaction_id
        WHERE l.label = 1 AND (t.label_day IS NULL OR t.label_day > r.trained_day)""")[0][0]
    assert early == 0
    # ... and every label that had arrived was used (a fraud trained on as legitimate only when its label was late)
    missed = q(con, """SELECT count(*) FROM training_labels l
        JOIN training_runs r USING (run_id, model_version)
        JOIN transactions t ON t.run_id = l.run_id AND t.transaction_id = l.transaction_id
        WHERE l.label = 0 AND t.label_day <= r.trained_day""")[0][0]
    assert missed == 0
    late = q(con, """SELECT count(*) FROM training_labels l
        JOIN training_runs r USING (run_id, model_version)
        JOIN transactions t ON t.run_id = l.run_id AND t.transaction_id = l.transaction_id
        WHERE l.label = 0 AND t.is_fraud = 1""")[0][0]
    assert late > 0  # the delay (and unreported fraud) really hides some fraud from the trainer
    # training rows come from the window, which ends before the day of training
    outside = q(con, """SELECT count(*) FROM training_labels l
        JOIN training_runs r USING (run_id, model_version)
        JOIN transactions t ON t.run_id = l.run_id AND t.transaction_id = l.transaction_id
        WHERE t.day < r.train_day_from OR t.day > r.validation_day_to OR t.day > r.trained_day""")[0][0]
    assert outside == 0
    # chargebacks arrive delay..delay+jitter days after the transaction
    lo, hi = q(con, "SELECT min(label_day - day), max(label_day - day) FROM transactions WHERE label_day IS NOT NULL")[0]
    assert (lo, hi) == (2, 3)
    # a version is deployed only after the day it was trained on
    bad = q(con, """SELECT count(*) FROM rounds x JOIN training_runs r
        ON r.run_id = x.run_id AND r.model_version = x.model_version WHERE r.trained_day >= x.day""")[0][0]
    assert bad == 0
    assert [r[0] for r in q(con, "SELECT model_version FROM rounds ORDER BY round")] == [1, 1, 2, 2, 3, 3]


# -- budgets and the query log -----------------------------------------------------------------------------------------
def test_probe_budget_per_day_is_never_exceeded_and_every_probe_is_logged(tiny_run):
    _, con = tiny_run
    over = q(con, """SELECT count(*) FROM (
        SELECT t.agent_id, t.day, count(*) AS n, any_value(a.probes_per_day) AS budget
        FROM transactions t JOIN agents a ON a.run_id = t.run_id AND a.agent_id = t.agent_id
        WHERE t.is_probe GROUP BY ALL) WHERE n > budget""")[0][0]
    assert over == 0
    used = q(con, "SELECT max(n) FROM (SELECT agent_id, day, count(*) n FROM transactions WHERE is_probe GROUP BY ALL)")
    assert used[0][0] == 10  # the budget is used, not just respected
    # one query per probe transaction, per round and agent
    diff = q(con, """SELECT count(*) FROM (
        SELECT round, agent_id, count(*) n FROM transactions WHERE is_probe GROUP BY ALL) t
        FULL JOIN (SELECT round, agent_id, count(*) n FROM queries GROUP BY ALL) x USING (round, agent_id)
        WHERE t.n IS DISTINCT FROM x.n""")[0][0]
    assert diff == 0
    # query_index runs 1..n per target and strategy; evaded means approved
    gaps = q(con, """SELECT count(*) FROM (SELECT strategy, target_id, count(*) n, max(query_index) m,
        min(query_index) lo FROM queries GROUP BY ALL) WHERE n != m OR lo != 1""")[0][0]
    assert gaps == 0
    ok = q(con, """SELECT (SELECT sum(evaded::INT) FROM queries), (SELECT sum(approved::INT) FROM transactions
        WHERE is_probe)""")[0]
    assert ok[0] == ok[1]
    # poisoning is ring traffic, not probes: never in the query log, never reported
    poison = q(con, """SELECT count(*), count(label_day) FROM transactions
        WHERE ring_id IS NOT NULL AND NOT is_probe""")[0]
    assert poison[0] == 6 * 30 and poison[1] == 0


def test_summary_and_rounds_tables(tiny_run):
    res, con = tiny_run
    s = res.summary()
    assert set(s["strategy"]) <= {"random", "evolutionary", "boundary", "playbook"} and s.height >= 3
    r = res.rounds()
    assert r["round"].to_list() == [1, 2, 3, 4, 5, 6]
    assert r["retrained"].to_list() == [False, True, False, True, False, False]
    assert ((r["attack_success_rate"] >= 0) & (r["attack_success_rate"] <= 1)).all()
    assert (r["clean_auc"] > 0.5).all() and (r["psi_score"] >= 0).all()
    # independent recomputation of one round's measures from the stream
    row = q(con, """SELECT avg(approved::INT) FILTER (WHERE is_probe),
        avg((decision = 'decline')::INT) FILTER (WHERE is_fraud = 0),
        sum(amount) FILTER (WHERE approved AND is_fraud = 1 AND fraud_type != 5)
        FROM transactions WHERE round = 3""")[0]
    got = r.filter(pl.col("round") == 3).row(0, named=True)
    assert got["attack_success_rate"] == pytest.approx(row[0])
    assert got["fpr"] == pytest.approx(row[1])
    assert got["fraud_loss"] == pytest.approx(row[2])
    # probe detection as the rounds table reports it, recomputed from the transactions and the detections logged
    det = q(con, """WITH d AS (SELECT target_id AS transaction_id, true AS det FROM defence_events
            WHERE kind = 'probe_detected'), t AS (SELECT t.*, coalesce(d.det, false) AS det,
            coalesce(reason = 'blocked', false) AS blk FROM transactions t LEFT JOIN d USING (transaction_id)
            WHERE round IS NOT NULL)
        SELECT count(*) FILTER (WHERE is_probe AND det), count(*) FILTER (WHERE is_probe AND blk AND NOT det),
            avg(det::INT) FILTER (WHERE is_fraud = 0), avg((det OR blk)::INT) FILTER (WHERE is_fraud = 0)
        FROM t""")[0]
    tot = q(con, "SELECT sum(probes_detected), sum(probes_blocked), sum(legit * legit_detected_share) / sum(legit), "
                 "sum(legit * legit_affected_share) / sum(legit) FROM rounds")[0]
    assert tot[:2] == det[:2] and tot[2] == pytest.approx(det[2]) and tot[3] == pytest.approx(det[3])
    assert q(con, "SELECT count(*) FROM drift")[0][0] == 6 * 13
    assert q(con, "SELECT status FROM runs")[0][0] == "finished"


def test_report_truths_frozen_features_and_clean_auc(tiny_run):
    """Frozen features never show as changed (a probe is compared with the transaction it came from: its card's
    values); the rounds' and the view's AUC are on clean traffic only (no probes, no poisoning rows)."""
    from simulator.measures import roc_auc
    from simulator.report import open_run

    res, con = tiny_run
    frozen = ["account_age_days", "credit_limit"]  # the world's features attackers cannot change (a card's own)
    view = open_run(res.path)
    try:
        got = view.execute("SELECT feature, count(*) FILTER (WHERE changed), count(*) FROM evasion_feature_changes "
                           "WHERE list_contains(?, feature) GROUP BY feature", [frozen]).fetchall()
        perf = view.execute("SELECT model_version, auc FROM model_performance WHERE split = 'campaign' "
                            "ORDER BY model_version").fetchall()
    finally:
        view.close()
    assert sorted(f for f, _, n in got if n > 0) == frozen
    assert [(f, c) for f, c, _ in got if c] == []
    for r in (3, 5):
        y, s = map(np.array, zip(*q(con, "SELECT is_fraud, score FROM transactions WHERE round = ? AND NOT is_probe "
                                          "AND ring_id IS NULL", [r])))
        clean = q(con, "SELECT clean_auc FROM rounds WHERE round = ?", [r])[0][0]
        assert clean == pytest.approx(roc_auc(y, s))
    for version, auc in perf:
        y, s = map(np.array, zip(*q(con, "SELECT is_fraud, score FROM transactions WHERE split = 'campaign' AND "
                                          "model_version = ? AND NOT is_probe AND ring_id IS NULL", [version])))
        assert auc == pytest.approx(roc_auc(y, s))


def test_retraining_is_marked_once_at_the_round_the_new_version_starts(tiny_run):
    from simulator.report import open_run
    from simulator.report.plots import _round_marks

    res, con = tiny_run
    view = open_run(res.path)
    try:
        rel = view.sql("SELECT * FROM round_measures WHERE run_id = ? ORDER BY round", params=[res.run_id])
        rows = [dict(zip(rel.columns, r)) for r in rel.fetchall()]
    finally:
        view.close()
    starts = q(con, "SELECT min(round), model_version FROM rounds GROUP BY model_version HAVING model_version > 1 "
                    "ORDER BY 1")
    assert len(starts) == 2  # retrained after rounds 2 and 4
    assert _round_marks(rows) == [(float(r), f"model v{v}") for r, v in starts]


# -- evolution ---------------------------------------------------------------------------------------------------------
@pytest.fixture()
def test_strategies():
    """Two strategies for a constructed case, registered for one test only."""
    from simulator.world import FEATURES

    quiet = {"amount": None, "hour": 13.0, "merchant_cat": 0.0, "distance_km": 2.0, "country_mismatch": 0.0,
             "new_device": 0.0, "card_present": 1.0}

    @register("test_template")
    class Template(Strategy):
        """Sends the caught fraud itself, again and again."""

        def _ask(self, n):
            return np.repeat(self._X0, n, axis=0)

    @register("test_quiet")
    class Quiet(Strategy):
        """Sends a small in-person grocery purchase at midday: what almost every customer does."""

        def _ask(self, n):
            X = np.repeat(self._X0, n, axis=0)
            for f, v in quiet.items():
                X[:, FEATURES.index(f)] = self.rng.uniform(10.0, 40.0, n) if v is None else v
            return self.project(X)

    yield
    del REGISTRY["test_template"], REGISTRY["test_quiet"]


def test_a_ring_moves_its_weight_to_the_strategy_that_succeeds(tmp_path, test_strategies):
    raw = {"name": "bandit", "seed": 3, "world": {"customers": 3000, "days": 10}, "rounds": 6,
           "adversaries": {"rings": [{"name": "solo", "agents": 6, "feedback": "decision", "probes_per_day": 10,
                                      "strategies": ["test_template", "test_quiet"]}],
                           "evolution": {"share_within_ring": False}},
           "defence": {"probe_detection": {"enabled": False}, "retrain": {"every": 0}}}
    res = fs.run(fs.Scenario.from_dict(raw), output=tmp_path / "b.duckdb")
    st = res.sql("SELECT strategy, round, weight, next_weight, tries, successes FROM strategy_stats ORDER BY round")
    rate = st.group_by("strategy").agg((pl.col("successes").sum() / pl.col("tries").sum()).alias("rate"))
    rates = dict(zip(rate["strategy"], rate["rate"]))
    assert rates["test_quiet"] > rates["test_template"] + 0.3  # the constructed case: one clearly succeeds
    quiet = st.filter(pl.col("strategy") == "test_quiet")
    assert quiet["weight"][0] == pytest.approx(0.5)
    assert quiet["next_weight"][0] > quiet["weight"][0]  # moves after the first round ...
    assert quiet["next_weight"].min() > 0.8  # ... and stays (up to the exploration share)
    per_round = st.filter(pl.col("strategy") == "test_quiet")["tries"].to_list()
    assert per_round[-1] > per_round[0]  # and the agents follow the weights


# -- probe detection ---------------------------------------------------------------------------------------------------
def test_probe_detection_lowers_the_attack_success_rate(tmp_path):
    def run(enabled: bool) -> tuple[float, int]:
        raw = {"name": "detect", "seed": 6, "world": {"customers": 3000, "days": 10}, "rounds": 5,
               "adversaries": {"rings": [{"name": "searchers", "agents": 6, "feedback": "score", "probes_per_day": 12,
                                          "cards_per_agent": 3, "strategies": ["evolutionary"]}],
                               "evolution": {"share_within_ring": False}},
               "defence": {"probe_detection": {"enabled": enabled}, "retrain": {"every": 0}}}
        res = fs.run(fs.Scenario.from_dict(raw), output=tmp_path / f"d{enabled}.duckdb")
        con = duckdb.connect(str(res.path), read_only=True)
        return q(con, "SELECT avg(approved::INT), count(*) FILTER (WHERE reason IN ('probe_detection', 'blocked')) "
                      "FROM transactions WHERE is_probe")[0]

    on, caught = run(True)
    off, none = run(False)
    assert caught > 0 and none == 0
    assert on < off - 0.05


def test_detector_kernel_matches_reference():
    rng = np.random.default_rng(0)
    n = 600
    customer = rng.integers(0, 20, n)
    device = np.where(rng.random(n) < 0.3, -1, rng.integers(0, 15, n))
    slots = {int(_slot(np.int64(d), np.int64(DEVICE_SLOTS - 1))) for d in range(15)}
    assert len(slots) == 15  # no slot collisions: the reference keys devices exactly
    timestamp = np.sort(rng.integers(0, 86_400, n))
    coords, code = signatures(rng.choice([1.0, 1.1, 50.0], n), rng.integers(0, 3, n), rng.choice([0.0, 5.0], n),
                              rng.integers(0, 2, n), rng.integers(0, 2, n), np.zeros(n))
    declined = rng.random(n) < 0.5
    params = dict(window_s=6 * 3600, radius=0.3, min_matches=2, memory=4, block=True, block_s=3600)
    det = ProbeDetector(20, **params, device_slots=DEVICE_SLOTS, mode="l1")
    got = [np.concatenate(x) for x in zip(*(det.process(customer[s], device[s], timestamp[s], coords[s], code[s],
                                                        declined[s]) for s in (slice(0, 250), slice(250, n))))]
    want = reference_detect(customer, device, timestamp, coords, code, declined, **params)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    assert got[1].sum() > 5 and got[2].sum() > 5  # the case exercises detections and blocks


def test_drift_and_labels():
    from simulator.campaign.config import DefenceSpec
    from simulator.campaign.defence import DriftReference, label_days

    rng = np.random.default_rng(0)
    X = np.column_stack([rng.lognormal(3, 1, 20_000), rng.integers(0, 2, 20_000)])
    ref = DriftReference(X, rng.random(20_000), bins=10)
    same, s_same = ref.measure(X[:5000], rng.random(5000))
    moved, s_moved = ref.measure(np.column_stack([X[:5000, 0] * 3, rng.random(5000) < 0.9]), rng.random(5000) ** 3)
    assert (same < 0.02).all() and s_same < 0.02
    assert (moved > 0.2).all() and s_moved > 0.2
    spec = DefenceSpec.model_validate({"labels": {"delay_days": 3, "delay_jitter_days": 2, "report_rate": 1.0,
                                                  "small_amount": 5.0, "small_report_rate": 0.0}})
    ft = np.array([0, 1, 1, 4, 5, 2])
    amount = np.array([50.0, 2.0, 80.0, 20.0, 900.0, 300.0])
    ld = label_days(10, ft, amount, spec, np.random.default_rng(1))
    assert ld[0] == -1 and ld[1] == -1 and ld[4] == -1  # legit, an unnoticed test, poisoning: never
    assert all(13 <= d <= 15 for d in ld[[2, 3, 5]])


# -- mapping -----------------------------------------------------------------------------------------------------------
def test_candidates_become_events_with_the_asked_features():
    world = World(WorldConfig(customers=2000, merchants=600, days=3, fraudsters=0), seed=2)
    world.step()
    names = ("amount", "hour", "merchant_cat", "distance_km", "card_present", "new_device", "country_mismatch")
    rng = np.random.default_rng(1)
    n = 300
    X = np.column_stack([rng.uniform(1, 300, n), rng.integers(0, 24, n), rng.integers(0, 10, n),
                         rng.uniform(0, 1500, n), rng.integers(0, 2, n), np.ones(n), rng.integers(0, 2, n)])
    customer = rng.choice(2000, n, replace=False)
    day = world.day
    ts = day * 86_400 + X[:, 1].astype(np.int64) * 3600 + rng.integers(0, 3600, n)
    ev = realise(world, day, names, X, customer, np.full(n, 10**7), ts, rng)
    frame, rows = world.step_injected(ev)
    got = frame[rows.tolist()]
    limit = world.customers.credit_limit[customer]
    np.testing.assert_allclose(got["amount"], np.round(np.minimum(X[:, 0], limit), 2))
    np.testing.assert_array_equal(got["hour"], X[:, 1])
    np.testing.assert_array_equal(got["merchant_cat"], X[:, 2])
    online_only = np.isin(X[:, 2], [3, 7])  # online retail and digital goods have no shops
    np.testing.assert_array_equal(got["card_present"], np.where(online_only, 0, X[:, 4]))
    assert (got["new_device"].to_numpy()[got["card_present"].to_numpy() == 0] == 1).all()
    web = got["card_present"].to_numpy() == 0
    assert (got["country_mismatch"].to_numpy() == X[:, 6])[web].mean() > 0.95
    close = np.abs(got["distance_km"].to_numpy() - X[:, 3]) < 1.0
    assert close[web & (X[:, 6] == 0)].mean() > 0.8


# -- reproducibility ---------------------------------------------------------------------------------------------------
def _tables(path) -> dict[str, pl.DataFrame]:
    con = duckdb.connect(str(path), read_only=True)
    out = {}
    for t in TABLES:
        df = con.sql(f"SELECT * FROM {t}").pl().drop(list(WALL_CLOCK.get(t, ())))
        out[t] = df.sort(df.columns) if df.height else df
    con.close()
    return out


def test_a_campaign_is_reproducible_by_seed(tiny_run, tmp_path):
    res, _ = tiny_run
    again = fs.run(fs.Scenario.from_dict(tiny()), output=tmp_path / "again.duckdb")
    a, b = _tables(res.path), _tables(again.path)
    for t in TABLES:
        assert a[t].height > 0, t
        assert a[t].equals(b[t]), t
    other = fs.run(fs.Scenario.from_dict(dict(tiny(), seed=6)), output=tmp_path / "other.duckdb")
    assert not _tables(other.path)["queries"].equals(a["queries"])


# -- scenario input ----------------------------------------------------------------------------------------------------
BAD = [
    ("adversaries.rings.0.probes_per_day", -1, ["adversaries.rings.0.probes_per_day", "greater than 0"]),
    ("adversaries.rings.0.agentz", 3, ["adversaries.rings.0.agentz", "unknown key"]),
    ("adversaries.rings.1.strategies", ["evolutionary"], ["adversaries.rings.1.strategies.0", "needs score"]),
    ("adversaries.rings.0.strategies", ["telepathy"], ["adversaries.rings.0.strategies.0", "unknown strategy"]),
    ("defence.labels.delay_days", -2, ["defence.labels.delay_days", "greater than or equal to 0"]),
    ("defence.policy", {"review_fpr": 0.001, "decline_fpr": 0.01}, ["defence.policy", "review band would be empty"]),
    ("defence.probe_detection.action", "shout", ["defence.probe_detection.action"]),
    ("rounds", 0, ["rounds.count", "greater than 0"]),
    ("adversaries.rings.0.params", {"evolutionary": {"stepp": 1}}, ["adversaries.rings.0.params.evolutionary.stepp"]),
    ("features", {"txn_count_1h": {"type": "integer", "min": 0, "max": 50}}, ["features.txn_count_1h", "cannot set"]),
]


@pytest.mark.parametrize("key, value, fragments", BAD, ids=[b[0] for b in BAD])
def test_bad_campaign_input_is_one_line_exit_2(key, value, fragments, tmp_path):
    raw = copy.deepcopy(tiny())
    node = raw
    parts = key.split(".")
    for p in parts[:-1]:
        node = node[int(p)] if p.isdigit() else node.setdefault(p, {})
    node[parts[-1]] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    r = CliRunner().invoke(app, ["validate", str(path)])
    assert r.exit_code == 2, r.output
    text = r.stderr.strip()
    assert len(text.splitlines()) == 1 and "bad.yaml" in text
    for f in fragments:
        assert f in text, (f, text)


def test_campaign_sections_need_a_world_and_adversaries():
    with pytest.raises(ScenarioError, match="adversaries.*world"):
        fs.Scenario.from_dict({"name": "x", "data": {"path": "x.parquet"}, "model": {"path": "m.json"},
                               "adversaries": tiny()["adversaries"]})
    with pytest.raises(ScenarioError, match="defence.*adversaries"):
        fs.Scenario.from_dict({"name": "x", "defence": {}})


def test_cli_prints_the_arms_race(tmp_path):
    raw = dict(tiny(), rounds=3, output=str(tmp_path / "cli.duckdb"))
    path = tmp_path / "cli.yaml"
    path.write_text(yaml.safe_dump(raw))
    r = CliRunner().invoke(app, ["run", str(path), "-q"])
    assert r.exit_code == 0, r.output
    for text in ("Attack success per strategy", "Arms race per round", "Strategy weights", "playbook"):
        assert text in r.output
    assert (tmp_path / "cli.duckdb").exists()


def test_live_probe_detection_beats_a_floor(tmp_path):
    """A small campaign like the default one (three rings, cards burn, rings adapt), run live with the default
    detector: it must catch a large share of the probes while touching few legitimate transactions, and the
    rounds table must say so (the floor sits well under what it reaches: 55% of the probes at 0.10% of
    legitimate transactions affected; the earlier settings: 51% at 0.24%)."""
    raw = {"name": "live-detect", "seed": 3, "world": {"customers": 4000, "days": 10}, "rounds": 6,
           "adversaries": {"rings": [
               {"name": "testers", "kind": "card_testing", "agents": 4, "probes_per_day": 12, "feedback": "decision",
                "strategies": ["random", "boundary"]},
               {"name": "cashers", "kind": "stolen_card_burst", "agents": 4, "probes_per_day": 12,
                "feedback": "score", "strategies": ["random", "evolutionary"]},
               {"name": "insiders", "kind": "account_takeover", "agents": 3, "probes_per_day": 12, "knowledge": "gray",
                "feedback": "score", "strategies": ["evolutionary"], "known_device_share": 0.5}]},
           "defence": {"retrain": {"every": 0}}}
    res = fs.run(fs.Scenario.from_dict(raw), output=tmp_path / "live.duckdb")
    con = duckdb.connect(str(res.path), read_only=True)
    probes, detected, affected = q(con, "SELECT sum(probes), sum(probes_detected) / sum(probes), "
                                        "sum(legit * legit_affected_share) / sum(legit) FROM rounds")[0]
    assert probes > 300
    assert detected >= 0.35
    assert affected <= 0.002
