"""The phases of a campaign round, in order (the way Mesa splits a model's step):

1. :func:`plan`: every active agent picks an arm from its ring's bandit (a strategy, or the ring's playbook) and
   asks it for at most its daily budget of candidates (a strategy through the one ask/tell
   :class:`~simulator.attack.Driver`, which :func:`feedback` tells);
2. :func:`probe`: the door (:class:`~simulator.oracle.StreamOracle`) admits them (budget, constraints); they and the
   poisoning rings' transactions become raw events (:mod:`.mapping`) injected into the world's day, featurised by
   the streaming pipeline with everyone else;
3. :func:`decide`: the deployed model scores the whole day; probe detection, rules and the bands decide;
   analysts review;
4. :func:`feedback`: each agent is told what its feedback mode allows about its own probes; declined probes may
   burn cards; agents that reached their goal leave; new cards arrive;
5. :func:`label`: chargebacks are drawn (they arrive ``delay`` days later); drift is measured;
6. :func:`evolve`: rings evolve (bandit, genetic variation, shared patterns);
7. :func:`retrain`: every ``retrain.every`` rounds the model is retrained on the labels known that day and
   deployed from the next round.

Each phase reads and advances a :class:`~.state.CampaignState` and fills the round's :class:`Day`; the collector
(:mod:`.collector`) records it. Phases never write to the store themselves.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import polars as pl

from ..kernels import MODE_LOCAL
from ..schema import frame_to_matrix
from .adversaries import Cards, evolve_ring, replays
from .config import PLAYBOOK, RING_KINDS
from .defence import POISONING, decide as decide_policy, label_days, refused_before_detection
from .detect import signatures
from .mapping import probe_times, realise
from .retrain import Fit, SpilledDay, fit_version, score_rows
from .state import CampaignState, _Chunk

#: Above this many customers the next day is not simulated while this one is scored: the two days' working sets
#: would add up (about 1 GB at a million customers) instead of following each other. The tables are the same.
PREFETCH_MAX_CUSTOMERS = 250_000
DETECTION_FEATURES = ("amount", "hour", "distance_km", "merchant_cat", "card_present", "country_mismatch",
                      "txn_count_1h", "txn_count_24h", "new_device")


def _unset() -> np.ndarray:
    return np.zeros(0)


@dataclass
class Day:
    """What happened in one round: the day's transactions and every decision on them.

    The arrays start empty and are filled by the phases, in order (each one's comment names the phase that sets
    it); a phase reads only what an earlier phase of the same round set.
    """

    r: int
    day: int
    clock: float  # perf_counter at the end of the last phase timed (State.tick)
    chunks: list[_Chunk] = field(default_factory=list)  # plan
    frame: pl.DataFrame = field(default_factory=pl.DataFrame)  # probe: the day's transactions
    agent_of: np.ndarray = field(default_factory=_unset)  # probe: the agent of each probe
    probe_rows: np.ndarray = field(default_factory=_unset)  # probe: the probes' rows of ``frame``
    is_probe: np.ndarray = field(default_factory=_unset)  # probe
    ring_id: np.ndarray = field(default_factory=_unset)  # probe: -1 for the world's own traffic
    agent_id: np.ndarray = field(default_factory=_unset)  # probe
    X: np.ndarray = field(default_factory=_unset)  # decide
    score: np.ndarray = field(default_factory=_unset)  # decide
    feats: dict = field(default_factory=dict)  # decide
    matches: np.ndarray = field(default_factory=_unset)  # decide
    detected: np.ndarray = field(default_factory=_unset)  # decide
    blocked: np.ndarray = field(default_factory=_unset)  # decide
    decision: np.ndarray = field(default_factory=_unset)  # decide
    reason: np.ndarray = field(default_factory=_unset)  # decide
    approved: np.ndarray = field(default_factory=_unset)  # decide
    fraud_type: np.ndarray = field(default_factory=_unset)  # decide
    scoring_s: float = 0.0
    defence_s: float = 0.0
    burned: np.ndarray = field(default_factory=_unset)  # feedback: cards burned this round
    cards: Cards | None = None  # feedback: the agents' cards as they were before the round's new cards arrived
    tries: list = field(default_factory=list)  # feedback: per ring, per arm: probes, approvals, money, agents
    wins: list = field(default_factory=list)
    money: list = field(default_factory=list)
    arm_agents: list = field(default_factory=list)
    gained: np.ndarray = field(default_factory=_unset)  # feedback: per agent, what its goal counts this round
    label_day: np.ndarray = field(default_factory=_unset)  # label
    psi_feat: np.ndarray = field(default_factory=_unset)  # label
    psi_score: float = 0.0  # label
    arm_weights: list = field(default_factory=list)  # evolve: per ring, the arm weights used this round
    ring_rows: list = field(default_factory=list)  # evolve: per ring, its state right after it evolved
    queries: list = field(default_factory=list)  # feedback: per chunk, (chunk, rows of frame) for the query log
    retrained: Fit | None = None  # retrain: the new version, on a retraining round
    retrain_window: tuple[int, int] = (0, 0)


def plan(st: CampaignState, d: Day) -> None:
    """Each active agent with a card left asks its arm for up to its daily budget of candidates."""
    ag = st.agents
    for ring in st.rings:
        members = np.flatnonzero((ag.ring == ring.id) & ag.active)
        if len(members) == 0:
            continue
        arms = ring.choose(len(members))
        for a_, arm_ in zip(members, arms):
            a, arm = int(a_), int(arm_)
            b = int(ag.budget[a])
            if not st.cards.alive[st.cards.agent == a].any():
                continue  # no card left today; new ones may come tomorrow
            if ring.arms[arm] == PLAYBOOK:
                problem = st.problem(a)
                idx = ring.playbook.draw(b, ring.rng)
                d.chunks.append(_Chunk(a, arm, replays(ring.playbook.X[idx], problem, ring.rng), problem, idx))
                continue
            # the driver asks the arm's strategy; a finished one replays its best evasion, varied (ring.rng)
            step = st.driver.ask([(a, arm)], [b], replay=partial(_replay_best, rng=ring.rng))
            if len(step):
                d.chunks.append(_Chunk(a, arm, step.X, step.instances[0].problem, step=step))


def _replay_best(inst, n: int, *, rng: np.random.Generator) -> np.ndarray:
    """``n`` variations of a finished strategy's best evasion (see :func:`.adversaries.replays`)."""
    assert inst.best_x is not None  # the driver replays only an instance with a best evasion
    return replays(np.repeat(inst.best_x[None, :], n, axis=0), inst.problem, rng)


def _probe_events(st: CampaignState, d: Day) -> pl.DataFrame:
    """Raw events for every admitted probe (the agent of each goes to ``d.agent_of``)."""
    ag, cards = st.agents, st.cards
    X_all, agent_of, customer, device = [], [], [], []
    for ch in d.chunks:
        st.oracle.admit(np.full(len(ch.X), ch.agent, np.int64), np.ascontiguousarray(ch.X, np.float64),
                        x0=ch.problem.x0, schema=ch.problem.schema, strategy=st.rings[ag.ring[ch.agent]].arms[ch.arm])
        mine = np.flatnonzero((cards.agent == ch.agent) & cards.alive)
        k = int(min(ag.cards_per_day[ch.agent], len(mine)))
        use = np.roll(mine, -(d.day % len(mine)))[:k]
        pick = use[np.arange(len(ch.X)) % k]
        X_all.append(ch.X)
        agent_of.append(np.full(len(ch.X), ch.agent))
        customer.append(cards.customer[pick])
        device.append(cards.device[pick])
    if not X_all:
        d.agent_of = np.zeros(0, np.int64)
        return pl.DataFrame()
    X = np.vstack(X_all)
    d.agent_of = np.concatenate(agent_of)
    hours = X[:, st.idx["hour"]] if "hour" in st.idx else st.rng_time.integers(0, 24, len(X))
    ts = probe_times(d.day, hours, d.agent_of, ag.gap_s[d.agent_of], st.rng_time)
    kinds = np.array([RING_KINDS[st.rings[r].spec.kind] for r in ag.ring[d.agent_of]])
    fraud_type = np.where(kinds > 0, kinds, st.prep.templates_type[ag.template[d.agent_of]]).astype(np.int8)
    return realise(st.world, d.day, st.names, X, np.concatenate(customer), np.concatenate(device), ts, st.rng_time,
                   fraud_type=fraud_type, fresh_devices=st.fresh_devices)


def _poison_events(st: CampaignState, d: Day) -> tuple[list[pl.DataFrame], list[int]]:
    frames, ring_ids = [], []
    for ring in st.rings:
        ps = ring.spec.poison
        if ps is None or d.r < ps.start_round or ps.per_day == 0:
            continue
        rng = st.rng_poison
        n = ps.per_day
        if ps.mode == "never_reported":
            members = np.flatnonzero(st.agents.ring == ring.id)
            base = ring.playbook.X if len(ring.playbook) else st.prep.templates_X[st.agents.template[members]]
            fraud_type = POISONING
        else:
            base = st.prep.approved_examples
            fraud_type = 4
        rows = base[rng.integers(0, len(base), size=n)]
        X0 = rows.copy()
        U, Z, V = rng.random(rows.shape), rng.standard_normal(rows.shape), rng.random(n)
        X = st.kernels.mutate(rows, X0, np.arange(n, dtype=np.int64), U, Z, V, np.full(n, 0.05), np.full(n, 0.2),
                              MODE_LOCAL, st.sa)
        mule = ring.mules[rng.integers(0, len(ring.mules), size=n)]
        own_device = st.primary_device[mule]
        hours = X[:, st.idx["hour"]] if "hour" in st.idx else rng.integers(0, 24, n)
        ts = d.day * 86_400 + np.clip(np.round(hours), 0, 23).astype(np.int64) * 3600 + rng.integers(0, 3600, n)
        frames.append(realise(st.world, d.day, st.names, X, mule, own_device, ts, rng, fraud_type=fraud_type,
                              fresh_devices=st.fresh_devices))
        ring_ids.append(ring.id)
    return frames, ring_ids


def probe(st: CampaignState, d: Day) -> None:
    """The door admits the probes; they and the poisoning rows join the world's day, which is simulated."""
    probes = _probe_events(st, d)
    poison_frames, poison_rings = _poison_events(st, d)
    parts = ([probes] if probes.height else []) + poison_frames
    clock = st.tick("attackers", d.clock)
    frame, rows = st.world.step_injected(pl.concat(parts) if parts else None)
    st.snapshot_world()
    if d.r < st.R and st.world.customers.n <= PREFETCH_MAX_CUSTOMERS:
        st.world.prefetch()  # the next day's own traffic, simulated while this one is scored and stored
    d.clock = st.tick("world", clock)
    n = frame.height
    st.transactions += n
    d.frame = frame
    d.probe_rows = rows[:len(d.agent_of)]
    d.is_probe = np.zeros(n, bool)
    d.is_probe[d.probe_rows] = True
    d.ring_id = np.full(n, -1, np.int32)
    d.agent_id = np.full(n, -1, np.int32)
    d.ring_id[d.probe_rows] = st.agents.ring[d.agent_of]
    d.agent_id[d.probe_rows] = d.agent_of
    start = len(d.agent_of)
    for f, rid in zip(poison_frames, poison_rings):
        d.ring_id[rows[start:start + f.height]] = rid
        start += f.height


def decide(st: CampaignState, d: Day) -> None:
    """The deployed model scores the day; probe detection, rules, bands and review decide."""
    frame, n = d.frame, d.frame.height
    d.X = frame_to_matrix(frame, st.names)
    t0 = time.perf_counter()
    d.score = score_rows(st.deployed.model, d.X)
    d.scoring_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    feats = d.feats = {c: frame[c].to_numpy() for c in DETECTION_FEATURES}
    if st.detector is not None:
        coords, code = signatures(feats["amount"], feats["hour"], feats["distance_km"], feats["merchant_cat"],
                                  feats["card_present"], feats["country_mismatch"])
        refused = refused_before_detection(d.score, feats, st.deployed.bands, st.dfc)
        rs = st.dfc.probe_detection.repeat_score
        elevated = None if rs is None else d.score >= rs * st.deployed.bands.review
        d.matches, d.detected, d.blocked = st.detector.process(frame["customer_id"].to_numpy(),
                                                               frame["device_id"].to_numpy(),
                                                               frame["timestamp"].to_numpy(), coords, code, refused,
                                                               merchant=frame["merchant_id"].to_numpy(),
                                                               elevated=elevated)
    else:
        d.matches, d.detected, d.blocked = np.zeros(n, np.int16), np.zeros(n, bool), np.zeros(n, bool)
    d.fraud_type = frame["fraud_type"].to_numpy()
    d.decision, d.reason, d.approved = decide_policy(d.score, feats, d.detected, d.blocked, d.fraud_type,
                                                     st.deployed.bands, st.dfc, st.rng_review)
    d.defence_s = time.perf_counter() - t1
    d.clock = st.tick("scoring_and_defence", d.clock)


def feedback(st: CampaignState, d: Day) -> None:
    """Each agent learns what its ring's feedback mode allows; declined probes may burn their cards."""
    ag, rings = st.agents, st.rings
    approved, amount = d.approved, d.feats["amount"]
    d.tries = [np.zeros(len(rg.arms)) for rg in rings]
    d.wins = [np.zeros(len(rg.arms)) for rg in rings]
    d.money = [np.zeros(len(rg.arms)) for rg in rings]
    d.arm_agents = [np.zeros(len(rg.arms), np.int64) for rg in rings]
    d.gained = np.zeros(ag.n)
    start = 0
    for ch in d.chunks:
        k = len(ch.X)
        rws = d.probe_rows[start:start + k]
        start += k
        ring = rings[ag.ring[ch.agent]]
        fb = st.oracle.respond(approved[rws], d.score[rws], d.reason[rws], ring.spec.feedback)
        if ring.arms[ch.arm] == PLAYBOOK:
            ring.playbook.record(ch.replay_index, approved[rws])
        elif ch.step is not None:
            st.driver.tell(ch.step, fb)  # a replay of a finished strategy's best evasion is not told
        money, wins = float(amount[rws][approved[rws]].sum()), int(approved[rws].sum())
        d.tries[ring.id][ch.arm] += k
        d.wins[ring.id][ch.arm] += wins
        d.money[ring.id][ch.arm] += money
        d.arm_agents[ring.id][ch.arm] += 1
        ag.money[ch.agent] += money
        ag.successes[ch.agent] += wins
        ag.probes[ch.agent] += k
        d.gained[ch.agent] = money if ring.spec.goal.kind == "money" else wins
        if st.adv.evolution.share_within_ring:
            ring.playbook.add(ch.X[approved[rws]])
        d.queries.append((ch, rws))
    _burn_cards(st, d)
    d.cards = st.cards
    for a in range(ag.n):
        goal = rings[ag.ring[a]].spec.goal
        if (goal.money is not None and ag.money[a] >= goal.money) or \
                (goal.successes is not None and ag.successes[a] >= goal.successes):
            ag.active[a] = False  # goal reached: the agent cashes out and leaves
    st.restock()
    d.clock = st.tick("feedback", d.clock)


def _burn_cards(st: CampaignState, d: Day) -> None:
    """A declined probe may burn its card; a detection or block always does."""
    cards = st.cards
    d.burned = np.zeros(len(cards.alive), bool)
    card_of_probe = st.card_index(d.frame["customer_id"].to_numpy()[d.probe_rows], d.agent_of)
    declined = ~d.approved[d.probe_rows]
    burn = declined & ((st.rng_setup.random(len(d.agent_of)) < st.burn_rate(d.agent_of))
                       | d.detected[d.probe_rows] | d.blocked[d.probe_rows])
    for c in np.unique(card_of_probe[burn]):
        if cards.alive[c]:
            cards.alive[c] = False
            d.burned[c] = True


def label(st: CampaignState, d: Day) -> None:
    """Chargeback days for the day's transactions (known ``delay`` days later); drift against the deployed model."""
    d.label_day = label_days(d.day, d.fraud_type, d.feats["amount"], st.dfc, st.rng_labels)
    # the features wait on disk until a retrain reads them: the stream would otherwise hold window + wait days
    st.stream.add(SpilledDay(d.day, d.frame["transaction_id"].to_numpy(), d.label_day,
                             st.spill.save_features(d.day, d.X), st.spill))
    d.psi_feat, d.psi_score = st.deployed.drift.measure(d.X, d.score)


def evolve(st: CampaignState, d: Day) -> None:
    """Bandit updates, genetic variation and shared patterns inside each ring, then across rings."""
    ag = st.agents
    d.arm_weights = []
    for ring in st.rings:
        members = np.flatnonzero(ag.ring == ring.id)
        d.arm_weights.append(ring.weights.copy())
        ring.playbook.forget(st.adv.evolution.memory)
        ring.update(d.tries[ring.id], d.wins[ring.id])
        evolve_ring(ring, ag, members, d.gained[members], st.realisable, st.rng_evo)
        d.ring_rows.append(ring_snapshot(st, d, ring))
    st.cross_ring()


def ring_snapshot(st: CampaignState, d: Day, ring) -> dict:
    """A ring's state right after it evolved (the ``ring_rounds`` row's inputs)."""
    ag, cards = st.agents, d.cards  # the ring's cards before the round's restock (the round's own)
    assert cards is not None, "feedback (which sets d.cards) runs before evolve"
    members = np.flatnonzero(ag.ring == ring.id)
    alive = members[ag.active[members]]
    mc = np.isin(cards.agent, members)
    return {"agents_active": len(alive), "cards_alive": int(cards.alive[mc].sum()),
            "cards_burned": int(d.burned[mc].sum()), "playbook_size": len(ring.playbook),
            "next_weights": ring.weights.copy(), "mean_gap_minutes": _mean(ag.gap_s[alive] / 60.0),
            "mean_amount_scale": _mean(ag.amount_scale[alive]), "mean_cards_per_day": _mean(ag.cards_per_day[alive]),
            "mean_features_touched": _mean(ag.mask[alive].sum(axis=1))}


def _mean(v: np.ndarray) -> float | None:
    return float(np.mean(v)) if len(v) else None


def retrain(st: CampaignState, d: Day) -> None:
    """Every ``retrain.every`` rounds (not after the last): a new version on the labels known today, deployed from
    the next round."""
    rt, pol = st.dfc.retrain, st.dfc.policy
    if not (rt.every and d.r % rt.every == 0 and d.r < st.R):
        return
    last = d.day - st.prep.wait
    first = max(0, last - rt.window_days + 1)
    n_days = last - first + 1
    validation_from = last - max(1, int(round(n_days * rt.validation_share))) + 1
    sc = st.prep.scenario
    decline_fpr = pol.decline_fpr if pol.decline_fpr is not None else sc.model.threshold_fpr
    fit = fit_version(st.stream, version=st.deployed.version + 1, names=st.names, kind=st.deployed.model.kind,
                      as_of=d.day, first=first, last=last, validation_from=validation_from,
                      legit_fraction=rt.legit_fraction, review_fpr=max(pol.review_fpr, decline_fpr),
                      decline_fpr=decline_fpr, decline_threshold=pol.decline_threshold,
                      review_threshold=pol.review_threshold, bins=st.dfc.drift.bins, seed=st.seed, trained_round=d.r,
                      audit=rt.audit_labels)
    st.deployed = fit
    d.retrained, d.retrain_window = fit, (first, last)
