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


# -- the campaign's linked probe detector -------------------------------------------------------------------------------
def _linked_stream(seed=0, n=900):
    from simulator.campaign.detect import signatures

    rng = np.random.default_rng(seed)
    customer = rng.integers(0, 25, n)
    device = np.where(rng.random(n) < 0.3, -1, rng.integers(0, 15, n))
    timestamp = np.sort(rng.integers(0, 2 * 86_400, n))
    coords, _ = signatures(rng.choice([1.0, 1.1, 50.0, 7.3], n), rng.integers(0, 3, n),
                           rng.choice([0.0, 5.0, 12.5], n), rng.integers(0, 2, n), rng.integers(0, 2, n), np.zeros(n))
    return customer, device, timestamp, coords, rng.random(n) < 0.3


@pytest.mark.parametrize("block", [True, False])
def test_linked_detector_kernel_matches_reference(block):
    from simulator.campaign.detect import DEVICE_SLOTS, ProbeDetector, reference_linked

    customer, device, timestamp, coords, declined = _linked_stream()
    params = dict(window_s=6 * 3600, min_matches=2, memory=4, block=block, block_s=3600)
    det = ProbeDetector(25, radius=0.1, **params, device_slots=DEVICE_SLOTS)  # mode="linked" is the default
    code = np.zeros(len(customer), np.int32)
    got = [np.concatenate(x) for x in zip(*(det.process(customer[s], device[s], timestamp[s], coords[s], code[s],
                                                        declined[s]) for s in (slice(0, 300), slice(300, None))))]
    want = reference_linked(customer, device, timestamp, coords, declined, **params)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    assert got[1].sum() > 20 and (got[2].sum() > 5) == block  # detections happen; blocks only when blocking


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 400), memory=st.integers(1, 6), min_matches=st.integers(1, 3),
       block=st.booleans(), link=st.booleans(), split=st.floats(0, 1), declined_only=st.booleans())
def test_linked_detector_kernel_matches_reference_everywhere(seed, n, memory, min_matches, block, link, split,
                                                             declined_only):
    """The Numba kernel and the Python twin agree on any stream (merchants, elevated scores, every rule), however the
    stream is cut into batches."""
    from simulator.campaign.detect import DEVICE_SLOTS, ProbeDetector, reference_linked

    customer, device, timestamp, coords, declined = _linked_stream(seed, n)
    rng = np.random.default_rng(seed + 1)
    merchant = rng.integers(-1, 4, n)
    elevated = rng.random(n) < 0.4
    params = dict(window_s=int(rng.integers(600, 2 * 86_400)), min_matches=min_matches, memory=memory, block=block,
                  block_s=int(rng.integers(0, 7200)), declined_only=declined_only)
    repeat_amount = [None, 1.1, 7.3][seed % 3]
    det = ProbeDetector(25, radius=0.1, **params, device_slots=DEVICE_SLOTS, link_detected=link,
                        repeat_amount=repeat_amount)
    code = np.zeros(n, np.int32)
    k = int(split * n)
    got = [np.concatenate(x) for x in zip(*(det.process(customer[s], device[s], timestamp[s], coords[s], code[s],
                                                        declined[s], merchant=merchant[s], elevated=elevated[s])
                                            for s in (slice(0, k), slice(k, None))))]
    want = reference_linked(customer, device, timestamp, coords, declined, **params, merchant=merchant,
                            elevated=elevated, link_detected=link, repeat_amount=repeat_amount)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_linked_detector_elevated_repeat_rule():
    """One card, no device: an elevated attempt that repeats the amount of an elevated attempt at another merchant is
    detected; the same amount at the same merchant (a customer's regular purchase), or without elevated scores, is not."""
    from simulator.campaign.detect import ProbeDetector, signatures

    amount = np.array([35.89, 12.0, 35.89, 35.89, 35.89])
    coords, code = signatures(amount, np.zeros(5), np.array([3.0, 4.0, 5.0, 6.0, 7.0]), np.zeros(5), np.ones(5),
                              np.zeros(5))
    ts = np.arange(5) * 600
    args = (np.zeros(5, np.int64), np.full(5, -1), ts, coords, code, np.zeros(5, bool))

    def run(merchant, elevated, link=False, repeat_amount=None):
        det = ProbeDetector(1, window_s=86_400, radius=0.1, min_matches=2, memory=8, block=False, block_s=0,
                            link_detected=link, repeat_amount=repeat_amount)
        return det.process(*args, merchant=np.array(merchant), elevated=np.array(elevated))[1].tolist()

    assert run([1, 2, 3, 4, 5], [1, 1, 1, 0, 1]) == [False, False, True, False, True]
    assert run([1, 2, 1, 1, 1], [1, 1, 1, 1, 1]) == [False] * 5  # the same shop: a regular purchase
    assert run([1, 2, 3, 4, 5], [0, 0, 0, 0, 0]) == [False] * 5
    # a detected card stays linked: its later repeated attempt is detected even when not elevated
    assert run([1, 2, 3, 4, 5], [1, 1, 1, 0, 0], link=True) == [False, False, True, True, True]
    # a sizeable amount repeated at another merchant is a probe whatever the scores; under repeat_amount it is not
    assert run([1, 2, 3, 4, 5], [0, 0, 0, 0, 0], repeat_amount=30.0) == [False, False, True, True, True]
    assert run([1, 2, 3, 4, 5], [0, 0, 0, 0, 0], repeat_amount=40.0) == [False] * 5
    assert run([1, 2, 1, 1, 1], [0, 0, 0, 0, 0], repeat_amount=30.0) == [False] * 5


def test_linked_detector_flags_a_ring_and_spares_customers():
    """Customers (own device, varied purchases, a few declines) against one fraudster who tries one template on
    four stolen cards from one phone, keeping the distance and moving the amount: the detector must flag most of the
    fraudster's attempts after the first ones and (almost) none of the customers'."""
    from simulator.campaign.detect import ProbeDetector, signatures

    rng = np.random.default_rng(4)
    n_legit = 3000
    cust = rng.integers(0, 400, n_legit)
    dev = np.where(rng.random(n_legit) < 0.5, -1, 10_000 + cust)  # a customer's own phone, or a card-present purchase
    t_legit = rng.integers(0, 86_400, n_legit)
    amount = np.round(rng.lognormal(3.5, 1.0, n_legit), 2)
    dist = np.round(rng.gamma(2.0, 15.0, n_legit), 3)
    k = 40
    cards = 400 + rng.integers(0, 4, k)  # stolen cards of customers 400..403, one phone 99
    t_ring = np.sort(rng.integers(0, 86_400, k))
    ring_amount = np.round(950.0 * rng.uniform(0.3, 1.0, k), 2)
    order = np.argsort(np.concatenate([t_legit, t_ring]), kind="stable")
    customer = np.concatenate([cust, cards])[order]
    device = np.concatenate([dev, np.full(k, 99)])[order]
    ts = np.concatenate([t_legit, t_ring])[order]
    amt = np.concatenate([amount, ring_amount])[order]
    dis = np.concatenate([dist, np.full(k, 1234.5)])[order]
    ring = np.concatenate([np.zeros(n_legit, bool), np.ones(k, bool)])[order]
    declined = np.where(ring, rng.random(n_legit + k) < 0.6, rng.random(n_legit + k) < 0.03)
    coords, code = signatures(amt, np.zeros(len(ts)), dis, np.zeros(len(ts)), np.zeros(len(ts)), np.zeros(len(ts)))
    det = ProbeDetector(404, window_s=86_400, radius=0.15, min_matches=2, memory=8, block=False, block_s=0)
    _, detected, _ = det.process(customer, device, ts, coords, code, declined)
    assert detected[ring].mean() >= 0.8
    assert detected[~ring].mean() <= 0.001  # a chance repeat of an amount or distance at most
    # the earlier L1 detector on the same stream: the amount moves too much for it
    old = ProbeDetector(404, window_s=86_400, radius=0.15, min_matches=2, memory=8, block=False, block_s=0, mode="l1")
    assert old.process(customer, device, ts, coords, code, declined)[1][ring].mean() < detected[ring].mean()
