"""The campaign loop: history, baseline, then rounds (simulated days) of probes, decisions, feedback, evolution,
labels and retraining, every step written to the store.

A round, in order:

1. every active agent picks an arm from its ring's bandit (a strategy, or the ring's playbook) and asks it for at
   most its daily budget of candidates; the ring's poisoning transactions are drawn too;
2. the door (:class:`StreamOracle`) checks budgets and constraints, and the candidates become raw events
   (:mod:`.mapping`) injected into the world's day, featurised by the streaming pipeline with everyone else;
3. the deployed model scores the whole day; probe detection, rules and the bands decide; analysts review;
4. each agent is told what its feedback mode allows about its own probes; declined probes may burn cards;
5. chargebacks are drawn (they arrive ``delay`` days later); drift and the round's measures are recorded;
6. rings evolve (bandit, genetic variation, shared patterns); every ``retrain.every`` rounds the model is
   retrained on the labels known that day and deployed from the next round.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import polars as pl
import pyarrow as pa

from .. import __version__
from ..errors import BudgetExceeded, ScenarioError
from ..kernels import MODE_LOCAL, get_kernels
from ..oracle import Feedback
from ..runner import RunResult
from ..schema import FeatureSchema, frame_to_matrix
from ..store import QueryLog, Store, _ident, feature_columns
from ..strategies import Problem, get_strategy
from ..target import TargetModel, load_model
from ..target.train import DEFAULT_KIND, check_trainable, threshold_at_fpr
from .adversaries import (
    Agents,
    Cards,
    Ring,
    evolve_ring,
    masked_schema,
    replays,
    strategy_params,
)
from .config import (
    PLAYBOOK,
    REALISABLE_FEATURES,
    RING_KINDS,
    AdversariesSpec,
    DefenceSpec,
    RoundsSpec,
)
from .defence import (
    APPROVE,
    DECISIONS,
    DECLINE,
    NO_LABEL,
    POISONING,
    R_BLOCKED,
    R_NEW_DEVICE,
    R_PROBE,
    R_VELOCITY,
    REASONS,
    Bands,
    DriftReference,
    auc,
    decide,
    label_days,
    refused_before_detection,
)
from .detect import ProbeDetector, signatures
from .mapping import probe_times, realise
from .retrain import DayData, Fit, LabelledStream, fit_version

Progress = Callable[[str, int | None], Callable[[int], None]]
HARD_DECLINES = (R_BLOCKED, R_PROBE, R_VELOCITY, R_NEW_DEVICE)
#: Devices the rings buy during a campaign are numbered from here, apart from the world's own counter (which a
#: prefetching worker advances while the campaign plays the day before).
CAMPAIGN_DEVICE_BASE = 1 << 30
PUBLIC_EXAMPLES = 1000


def _no_progress(description: str, total: int | None) -> Callable[[int], None]:
    return lambda n: None


@dataclass
class CampaignPrepared:
    """A campaign ready to run: the world after its history days, the baseline deployed, the templates chosen.

    Carries the attribute names the CLI reads from a single-round ``Prepared`` (model, threshold, ...)."""

    is_campaign = True
    scenario: Any
    adversaries: AdversariesSpec
    defence: DefenceSpec
    rounds: int
    world: Any
    names: tuple[str, ...]
    schema: FeatureSchema
    fit: Fit  # version 1
    stream: LabelledStream
    history: list[pl.DataFrame]  # the history days, with score/decision columns
    cut: int  # first validation day of the history
    wait: int
    templates_X: np.ndarray
    templates_id: np.ndarray
    templates_score: np.ndarray
    templates_type: np.ndarray
    approved_examples: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def model(self) -> TargetModel:
        return self.fit.model

    @property
    def threshold(self) -> float:
        return self.fit.bands.decline

    @property
    def threshold_rule(self) -> str:
        return str(self.fit.model.card.get("threshold_rule", ""))

    @property
    def model_card(self) -> dict:
        return dict(self.fit.model.card or {})

    @property
    def target_rows(self) -> np.ndarray:
        return self.templates_id


def prepare_campaign(scenario, *, progress: Progress = _no_progress, validate_only: bool = False):
    """Build the world's history, fit (or load) the baseline, choose templates; ``None`` with ``validate_only``."""
    from ..world import FEATURES, World, WorldConfig, default_feature_specs

    adv: AdversariesSpec = scenario.adversaries
    dfc: DefenceSpec = scenario.defence or DefenceSpec()
    rounds = (scenario.rounds or RoundsSpec()).count
    ws = scenario.world_spec
    specs = {k: v.as_dict() for k, v in scenario.features.items()} if scenario.features is not None \
        else default_feature_specs()
    unknown = [n for n in specs if n not in FEATURES]
    if unknown:
        raise ScenarioError(f"the world has no feature {unknown[0]!r} (features: {', '.join(FEATURES)})",
                            file=scenario.source, field=f"features.{unknown[0]}")
    if scenario.relations:  # probes are real transactions the world featurises: they obey its relations by
        # construction; the names are still checked here (strategies in a campaign do not repair with them)
        from ..relations import compile_relations, parse_relations
        from ..world import SCHEMA

        compile_relations(parse_relations(scenario.relations, source=scenario.source), list(FEATURES), list(SCHEMA),
                          source=scenario.source)
    wait = dfc.retrain.wait_days if dfc.retrain.wait_days is not None else \
        dfc.labels.delay_days + dfc.labels.delay_jitter_days
    last = ws.days - 1 - wait
    cut = max(1, int(round((last + 1) * ws.train_fraction)))
    if last < 1 or cut > last:
        raise ScenarioError(f"{ws.days} history days leave too few with known labels (label wait {wait} days); "
                            f"give at least {wait + 3}", file=scenario.source, field="world.days")
    needed = sum(r.agents * r.cards_per_agent + (r.poison.accounts if r.poison else 0) for r in adv.rings)
    if needed > ws.customers:
        raise ScenarioError(f"the rings need {needed} cards and mule accounts but the world has {ws.customers} "
                            "customers", file=scenario.source, field="adversaries.rings")
    model_given = None
    if scenario.model.given:
        model_given = load_model(scenario.model, source=scenario.source)
        model_given.check_columns(FEATURES, source="<world>")
        if dfc.retrain.every and not model_given.trainable:
            raise ScenarioError(f"retraining needs a model fraudsim can train (xgboost or lightgbm), not a "
                                f"{model_given.kind} model; set defence.retrain.every: 0",
                                file=scenario.source, field="defence.retrain.every")
    if validate_only:
        if model_given is not None:  # one test scoring call: an endpoint answers, in shape
            rows = np.zeros((2, len(model_given.feature_names)))
            model_given.check_scores(model_given.predict_score(rows), len(rows))
        else:
            check_trainable(scenario.model.kind or DEFAULT_KIND, source=scenario.source)
        return None

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    seeds = np.random.SeedSequence(scenario.seed).spawn(2)
    label_rng = np.random.default_rng(seeds[0])
    world = World(WorldConfig(customers=ws.customers, merchants=ws.merchants, days=ws.days + rounds,
                              fraudsters=ws.fraudsters, fraud_rate_scale=ws.fraud_rate_scale), seed=scenario.seed)
    names = tuple(model_given.feature_names) if model_given is not None else tuple(FEATURES)
    keep_days = max(ws.days, dfc.retrain.window_days + wait + 1)
    stream = LabelledStream(keep_days)
    history = []
    advance = progress("world (history)", ws.days)
    for day in range(ws.days):
        frame = world.step()
        ld = label_days(day, frame["fraud_type"].to_numpy(), frame["amount"].to_numpy(), dfc, label_rng)
        X = frame_to_matrix(frame, names)
        stream.add(DayData(day, frame["transaction_id"].to_numpy(), X.astype(np.float32), ld))
        history.append(frame.with_columns(pl.Series("label_day", ld)))
        advance(1)
    timings["world_s"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    pol = dfc.policy
    decline_fpr = pol.decline_fpr if pol.decline_fpr is not None else scenario.model.threshold_fpr
    given_decline = pol.decline_threshold if pol.decline_threshold is not None else scenario.model.threshold
    adv_train = progress("train model", 1)
    if model_given is not None:
        fit = _adopt(model_given, stream, scenario, cut, last, ws.days - 1, pol, decline_fpr, dfc)
    else:
        fit = fit_version(stream, version=1, names=names, kind=scenario.model.kind or DEFAULT_KIND, as_of=ws.days - 1,
                          first=0, last=last, validation_from=cut, legit_fraction=dfc.retrain.legit_fraction,
                          review_fpr=max(pol.review_fpr, decline_fpr), decline_fpr=decline_fpr,
                          decline_threshold=given_decline, review_threshold=pol.review_threshold,
                          bins=dfc.drift.bins, seed=scenario.seed, trained_round=0, audit=dfc.retrain.audit_labels)
    adv_train(1)
    timings["train_s"] = time.perf_counter() - t1

    schema = FeatureSchema.from_mapping(names, specs, cost_scale=scenario.cost_scale).with_bounds_from(history[0])
    hist = pl.concat(history)
    X_hist = frame_to_matrix(hist, names)
    score = fit.model.predict_score(X_hist)
    decision = np.where(score >= fit.bands.decline, 2, np.where(score >= fit.bands.review, 1, 0)).astype(np.int8)
    day_col = hist["day"].to_numpy()
    fraud_type = hist["fraud_type"].to_numpy()
    is_tpl = (day_col >= cut) & (fraud_type > 0) & (fraud_type < 4) & (decision == DECLINE)
    if not is_tpl.any():
        raise ScenarioError("no caught fraud in the history to take templates from; give more history days or "
                            "customers", file=scenario.source, field="world")
    schema.validate_frame(hist.filter(pl.Series(is_tpl)), source="<world>")
    pub_rows = np.flatnonzero(decision == 0)
    pub_rows = np.sort(np.random.default_rng(seeds[1]).choice(pub_rows, min(PUBLIC_EXAMPLES, len(pub_rows)),
                                                              replace=False))
    offsets = np.cumsum([0] + [h.height for h in history])
    history = [h.with_columns(pl.Series("score", score[a:b]), pl.Series("decision_code", decision[a:b]))
               for h, a, b in zip(history, offsets[:-1], offsets[1:])]
    return CampaignPrepared(
        scenario=scenario, adversaries=adv, defence=dfc, rounds=rounds, world=world, names=names, schema=schema,
        fit=fit, stream=stream, history=history, cut=cut, wait=wait, templates_X=X_hist[is_tpl],
        templates_id=hist["transaction_id"].to_numpy()[is_tpl], templates_score=score[is_tpl],
        templates_type=fraud_type[is_tpl], approved_examples=X_hist[pub_rows], timings=timings)


def _adopt(model: TargetModel, stream, scenario, cut, last, as_of, pol, decline_fpr, dfc) -> Fit:
    """Version 1 is the scenario's own model file: its bands on the validation days, its drift reference there
    (it was trained elsewhere, so it has no training labels to record)."""
    from .retrain import _stack

    X_val, _, y_val = _stack(stream.window(cut, last), as_of)
    s_val = model.predict_score(X_val)
    card_thr = (model.card or {}).get("threshold")
    decline = pol.decline_threshold if pol.decline_threshold is not None else scenario.model.threshold
    decline = decline if decline is not None else (card_thr if isinstance(card_thr, (int, float)) else
                                                   threshold_at_fpr(y_val, s_val, decline_fpr))
    review = pol.review_threshold if pol.review_threshold is not None else threshold_at_fpr(y_val, s_val, pol.review_fpr)
    review = min(review, decline)
    model.card = dict(model.card or {}, threshold=decline, review_threshold=review, test_auc=auc(y_val, s_val),
                      threshold_rule="from the scenario or the model card")
    X_ref = X_val.astype(np.float64)
    info = {"model_version": 1, "trained_round": 0, "trained_day": None, "deployed_round": 1, "train_day_from": None,
            "train_day_to": None, "validation_day_from": cut, "validation_day_to": last, "label_as_of_day": as_of,
            "train_rows": 0, "train_positives": 0, "validation_rows": int(len(y_val)),
            "validation_positives": int(y_val.sum()), "review_threshold": review, "decline_threshold": decline,
            "validation_auc": auc(y_val, s_val), "train_s": 0.0}
    empty = {"transaction_id": np.zeros(0, np.int64), "role": np.zeros(0, object), "label": np.zeros(0, np.int32)}
    return Fit(version=1, model=model, bands=Bands(review, decline), validation_auc=info["validation_auc"],
               drift=DriftReference(X_ref, model.predict_score(X_ref), dfc.drift.bins), info=info, labels=empty)


class StreamOracle:
    """The attackers' only door in a campaign: per-agent daily budgets, valid candidates only, honest feedback.

    Probes are not scored here: they become transactions of the day and the deployed defence decides them with
    everyone else. What comes back to an agent is the decision (approved or not), plus, with ``feedback: score``,
    the risk score the system answers: the model's score, or 1.0 when a rule, a block or probe detection declined."""

    def __init__(self, agents: Agents, kernels):
        self.agents, self.kernels = agents, kernels
        self.used_today = np.zeros(agents.n, np.int64)

    def new_day(self) -> None:
        self.used_today[:] = 0

    def admit(self, agent: int, X: np.ndarray, problem: Problem, strategy: str) -> None:
        n = len(X)
        if self.used_today[agent] + n > self.agents.budget[agent]:
            raise BudgetExceeded(f"agent {agent} ({strategy}) asked {n} probes with "
                                 f"{self.agents.budget[agent] - self.used_today[agent]} left today")
        X0 = np.ascontiguousarray(problem.x0, np.float64)[None, :]
        bad = self.kernels.violations(np.ascontiguousarray(X, np.float64), X0, np.zeros(n, np.int64), problem.schema)
        if bad.any():
            raise ValueError(f"strategy {strategy!r} produced {int(bad.sum())} candidates that break the constraints")
        self.used_today[agent] += n

    @staticmethod
    def feedback(approved: np.ndarray, score: np.ndarray, reason: np.ndarray, mode: str) -> Feedback:
        if mode != "score":
            return Feedback(declined=~approved)
        hard = np.isin(reason, HARD_DECLINES) & ~approved
        return Feedback(declined=~approved, score=np.where(hard, 1.0, score))


class BackgroundWriter:
    """The run's store writes on one background thread, in the order they were made: DuckDB's inserts (which
    release the GIL) overlap the next round's simulation and scoring. Nothing else touches the connection until
    :meth:`drain`; at most ``max_pending`` writes wait, so memory stays bounded."""

    def __init__(self, store: Store, max_pending: int = 16):
        import threading
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        self.store, self.feature_names, self.max_pending = store, store.feature_names, max_pending
        self.columns, self.feature_table = store.columns, store.feature_table
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="campaign-store")
        self._pending: deque = deque()
        self._lock = threading.Lock()  # writes may come from another thread too (a query log's own writer)

    def append(self, table: str, data) -> None:
        self._submit(self.store.append, table, data)

    def execute(self, sql: str, params=None) -> None:
        self._submit(self.store.execute, sql, params)

    def _submit(self, fn, *args) -> None:
        with self._lock:
            self._pending.append(self._pool.submit(fn, *args))
            while self._pending and (self._pending[0].done() or len(self._pending) > self.max_pending):
                self._pending.popleft().result()  # re-raises a failed write here, in the caller's thread

    def drain(self) -> None:
        with self._lock:
            while self._pending:
                self._pending.popleft().result()

    def close(self) -> None:
        try:
            self.drain()
        finally:
            self._pool.shutdown(wait=True)


@dataclass
class _Chunk:
    agent: int
    arm: int
    X: np.ndarray  # intent rows (what the arm asked)
    problem: Problem
    replay_index: np.ndarray | None = None  # playbook rows replayed (playbook arm)


class Campaign:
    """Runs the rounds of a prepared campaign and writes everything to the store."""

    def __init__(self, prep: CampaignPrepared, store: Store | BackgroundWriter, run_id: str, progress: Progress):
        self.prep, self.store, self.run_id, self.progress = prep, store, run_id, progress
        sc = prep.scenario
        self.adv, self.dfc, self.R = prep.adversaries, prep.defence, prep.rounds
        self.world, self.names = prep.world, prep.names
        self.columns = feature_columns(self.names)  # stored column of each feature (store.py)
        self.idx = {f: j for j, f in enumerate(self.names)}
        self.kernels = get_kernels("cpu")
        self.sa = prep.schema.arrays()
        self.realisable = self.sa.mutable & np.array([n in REALISABLE_FEATURES for n in self.names])
        self.deployed = prep.fit
        self.next_fit: Fit | None = None
        self.seed = sc.seed
        ss = np.random.SeedSequence([sc.seed, 31337]).spawn(6 + len(self.adv.rings))
        self.rng_setup, self.rng_time, self.rng_review, self.rng_labels, self.rng_evo, self.rng_poison = (
            np.random.default_rng(s) for s in ss[:6])
        self.rings = [Ring(i, spec, self.adv, len(self.names), np.random.default_rng(ss[6 + i]))
                      for i, spec in enumerate(self.adv.rings)]
        self._setup_agents()
        self._next_device = CAMPAIGN_DEVICE_BASE
        self._snapshot_world()
        self.oracle = StreamOracle(self.agents, self.kernels)
        self.log = QueryLog(store, run_id)
        self.query_count: dict[tuple[int, int], int] = {}
        self.phase_s: dict[str, float] = {}
        self.transactions = 0
        self.instances: dict[tuple[int, int], tuple[int, Any]] = {}
        pd = self.dfc.probe_detection
        self.detector = ProbeDetector.from_spec(self.world.customers.n, pd) if pd.enabled else None

    # -- setup ------------------------------------------------------------------------------------------------------
    def _setup_agents(self) -> None:
        prep, rng, world = self.prep, self.rng_setup, self.world
        n_agents = self.adv.agents
        n_cards = sum(r.agents * r.cards_per_agent for r in self.adv.rings)
        n_mules = sum(r.poison.accounts if r.poison else 0 for r in self.adv.rings)
        owners = rng.choice(world.customers.n, size=n_cards + n_mules, replace=False).astype(np.int64)
        ring_of, template = [], []
        taken = np.zeros(len(prep.templates_id), bool)  # one template per agent while there are enough
        for ring in self.rings:
            code = RING_KINDS[ring.spec.kind]
            kind = (prep.templates_type == code) if code else np.ones(len(taken), bool)
            pools = (np.flatnonzero(kind & ~taken), np.flatnonzero(~taken), np.flatnonzero(kind), np.arange(len(taken)))
            pool = next((p for p in pools if len(p) >= ring.spec.agents), pools[-1])
            pick = rng.choice(pool, size=ring.spec.agents, replace=len(pool) < ring.spec.agents)
            taken[pick] = True
            ring_of += [ring.id] * ring.spec.agents
            template += list(pick)
        ring_of = np.array(ring_of, np.int32)
        template = np.array(template, np.int64)
        spec_of = [self.rings[r].spec for r in ring_of]
        step0 = [float(s.params.get("evolutionary", {}).get("step", 0.08)) for s in spec_of]
        self.agents = Agents(
            ring=ring_of, template=template, template_id=prep.templates_id[template],
            budget=np.array([s.probes_per_day for s in spec_of], np.int32), active=np.ones(n_agents, bool),
            money=np.zeros(n_agents), successes=np.zeros(n_agents, np.int64), probes=np.zeros(n_agents, np.int64),
            fitness=np.zeros(n_agents), gap_s=np.array([s.gap_minutes * 60.0 for s in spec_of]),
            cards_per_day=np.array([max(1, s.cards_per_agent // 2) for s in spec_of], np.int32),
            amount_scale=np.array([s.amount_scale for s in spec_of]), step=np.array(step0),
            mask=np.repeat(self.realisable[None, :], n_agents, axis=0), generation=np.zeros(n_agents, np.int32))
        card_agent, card_customer, card_device = [], [], []
        pos = 0
        st = world.state
        self._agent_devices = []
        for a, s in enumerate(spec_of):
            devices = st.allocate_devices(s.devices_per_agent).astype(np.int64)
            self._agent_devices.append(devices)
            cust = owners[pos:pos + s.cards_per_agent]
            pos += s.cards_per_agent
            dev = devices[np.arange(s.cards_per_agent) % s.devices_per_agent]
            victim = st.devices[cust, st.primary_slot[cust]].astype(np.int64)
            dev = np.where(rng.random(s.cards_per_agent) < s.known_device_share, victim, dev)
            card_agent += [a] * s.cards_per_agent
            card_customer += list(cust)
            card_device += list(dev)
        self.cards = Cards(agent=np.array(card_agent, np.int32), customer=np.array(card_customer, np.int64),
                           device=np.array(card_device, np.int64), alive=np.ones(len(card_agent), bool))
        for ring in self.rings:
            if ring.spec.poison is not None:
                ring.mules = owners[pos:pos + ring.spec.poison.accounts]
                pos += ring.spec.poison.accounts

    def _snapshot_world(self) -> None:
        """What the campaign reads of the world's state, copied between a step and the next day's prefetch."""
        st = self.world.state
        if st.next_device_id >= CAMPAIGN_DEVICE_BASE:
            raise RuntimeError("the world's device ids reached the range campaigns use")
        self._primary_device = st.devices[np.arange(len(st.primary_slot)), st.primary_slot].astype(np.int64)

    def _fresh_devices(self, k: int) -> np.ndarray:
        ids = np.arange(self._next_device, self._next_device + k, dtype=np.int64)
        self._next_device += k
        return ids

    def _problem(self, a: int) -> Problem:
        ring = self.rings[self.agents.ring[a]]
        x0 = self.prep.templates_X[self.agents.template[a]].copy()
        if "amount" in self.idx:
            j = self.idx["amount"]
            x0[j] = float(np.clip(round(x0[j] * self.agents.amount_scale[a], 2), self.sa.lo[j], self.sa.hi[j]))
        knows = ring.spec.knowledge
        return Problem(x0=x0, schema=masked_schema(self.sa, self.agents.mask[a]), kernels=self.kernels,
                       budget=int(self.agents.budget[a]) * self.R, feedback=ring.spec.feedback,
                       approved_examples=self.prep.approved_examples if knows in ("gray", "white") else None,
                       model=self.prep.fit.model if knows == "white" else None)

    def _instance(self, a: int, arm: int):
        gen = int(self.agents.generation[a])
        have = self.instances.get((a, arm))
        if have is not None and have[0] == gen:
            return have[1]
        ring = self.rings[self.agents.ring[a]]
        name = ring.arms[arm]
        cls = get_strategy(name)
        problem = self._problem(a)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 7919, a, arm, gen]))
        inst = cls(problem, rng, **strategy_params(cls, ring.spec.params.get(name, {}), self.agents.step[a]))
        self.instances[(a, arm)] = (gen, inst)
        return inst

    # -- one round --------------------------------------------------------------------------------------------------
    def _plan(self) -> list[_Chunk]:
        chunks = []
        ag = self.agents
        for ring in self.rings:
            members = np.flatnonzero((ag.ring == ring.id) & ag.active)
            if len(members) == 0:
                continue
            arms = ring.choose(len(members))
            for a, arm in zip(members, arms):
                a, arm, b = int(a), int(arm), int(ag.budget[a])
                if not self.cards.alive[self.cards.agent == a].any():
                    continue  # no card left today; new ones may come tomorrow
                if ring.arms[arm] == PLAYBOOK:
                    problem = self._problem(a)
                    idx = ring.playbook.draw(b, ring.rng)
                    X = replays(ring.playbook.X[idx], problem, ring.rng)
                    chunks.append(_Chunk(a, arm, X, problem, idx))
                    continue
                inst = self._instance(a, arm)
                if inst.finished and inst.best_x is not None:
                    X = replays(np.repeat(inst.best_x[None, :], b, axis=0), inst.problem, ring.rng)
                elif inst.finished:
                    continue
                else:
                    X = inst.ask(b)
                chunks.append(_Chunk(a, arm, X, inst.problem))
        return chunks

    def _probe_events(self, chunks: list[_Chunk], day: int) -> tuple[pl.DataFrame, np.ndarray]:
        """Raw events for every probe; returns them and the agent of each."""
        ag, cards = self.agents, self.cards
        X_all, agent_of, customer, device = [], [], [], []
        for ch in chunks:
            self.oracle.admit(ch.agent, ch.X, ch.problem, self.rings[ag.ring[ch.agent]].arms[ch.arm])
            mine = np.flatnonzero((cards.agent == ch.agent) & cards.alive)
            k = int(min(ag.cards_per_day[ch.agent], len(mine)))
            use = np.roll(mine, -(day % len(mine)))[:k]
            pick = use[np.arange(len(ch.X)) % k]
            X_all.append(ch.X)
            agent_of.append(np.full(len(ch.X), ch.agent))
            customer.append(cards.customer[pick])
            device.append(cards.device[pick])
        if not X_all:
            return pl.DataFrame(), np.zeros(0, np.int64)
        X = np.vstack(X_all)
        agent_of = np.concatenate(agent_of)
        hours = X[:, self.idx["hour"]] if "hour" in self.idx else self.rng_time.integers(0, 24, len(X))
        ts = probe_times(day, hours, agent_of, ag.gap_s[agent_of], self.rng_time)
        kinds = np.array([RING_KINDS[self.rings[r].spec.kind] for r in ag.ring[agent_of]])
        fraud_type = np.where(kinds > 0, kinds, self.prep.templates_type[ag.template[agent_of]]).astype(np.int8)
        ev = realise(self.world, day, self.names, X, np.concatenate(customer), np.concatenate(device), ts,
                     self.rng_time, fraud_type=fraud_type, fresh_devices=self._fresh_devices)
        return ev, agent_of

    def _poison_events(self, r: int, day: int) -> tuple[list[pl.DataFrame], list[int]]:
        frames, ring_ids = [], []
        for ring in self.rings:
            ps = ring.spec.poison
            if ps is None or r < ps.start_round or ps.per_day == 0:
                continue
            rng = self.rng_poison
            n = ps.per_day
            if ps.mode == "never_reported":
                members = np.flatnonzero(self.agents.ring == ring.id)
                base = ring.playbook.X if len(ring.playbook) else self.prep.templates_X[self.agents.template[members]]
                fraud_type = POISONING
            else:
                base = self.prep.approved_examples
                fraud_type = 4
            rows = base[rng.integers(0, len(base), size=n)]
            X0 = rows.copy()
            U, Z, V = rng.random(rows.shape), rng.standard_normal(rows.shape), rng.random(n)
            X = self.kernels.mutate(rows, X0, np.arange(n, dtype=np.int64), U, Z, V, np.full(n, 0.05),
                                    np.full(n, 0.2), MODE_LOCAL, self.sa)
            mule = ring.mules[rng.integers(0, len(ring.mules), size=n)]
            own_device = self._primary_device[mule]
            hours = X[:, self.idx["hour"]] if "hour" in self.idx else rng.integers(0, 24, n)
            ts = day * 86_400 + np.clip(np.round(hours), 0, 23).astype(np.int64) * 3600 + rng.integers(0, 3600, n)
            frames.append(realise(self.world, day, self.names, X, mule, own_device, ts, rng, fraud_type=fraud_type,
                                  fresh_devices=self._fresh_devices))
            ring_ids.append(ring.id)
        return frames, ring_ids

    def play(self, r: int) -> None:
        day = self.world.day
        ag, cards = self.agents, self.cards
        clock = time.perf_counter()
        self.oracle.new_day()
        chunks = self._plan()
        probes, agent_of = self._probe_events(chunks, day)
        poison_frames, poison_rings = self._poison_events(r, day)
        parts = ([probes] if probes.height else []) + poison_frames
        extra = pl.concat(parts) if parts else None
        clock = self._tick("attackers", clock)
        frame, rows = self.world.step_injected(extra)
        self._snapshot_world()
        if r < self.R:
            self.world.prefetch()  # the next day's own traffic, simulated while this one is scored and stored
        clock = self._tick("world", clock)
        n = frame.height
        self.transactions += n
        n_probe = len(agent_of)
        probe_rows = rows[:n_probe]
        is_probe = np.zeros(n, bool)
        is_probe[probe_rows] = True
        ring_id = np.full(n, -1, np.int32)
        agent_id = np.full(n, -1, np.int32)
        ring_id[probe_rows] = ag.ring[agent_of]
        agent_id[probe_rows] = agent_of
        start = n_probe
        for f, rid in zip(poison_frames, poison_rings):
            ring_id[rows[start:start + f.height]] = rid
            start += f.height

        X = frame_to_matrix(frame, self.names)
        t0 = time.perf_counter()
        score = self.deployed.model.predict_score(X)
        scoring_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        feats = {c: frame[c].to_numpy() for c in ("amount", "hour", "distance_km", "merchant_cat", "card_present",
                                                  "country_mismatch", "txn_count_1h", "txn_count_24h", "new_device")}
        customer = frame["customer_id"].to_numpy()
        device = frame["device_id"].to_numpy()
        if self.detector is not None:
            coords, code = signatures(feats["amount"], feats["hour"], feats["distance_km"], feats["merchant_cat"],
                                      feats["card_present"], feats["country_mismatch"])
            refused = refused_before_detection(score, feats, self.deployed.bands, self.dfc)
            matches, detected, blocked = self.detector.process(customer, device, frame["timestamp"].to_numpy(),
                                                               coords, code, refused)
        else:
            matches, detected, blocked = np.zeros(n, np.int16), np.zeros(n, bool), np.zeros(n, bool)
        fraud_type = frame["fraud_type"].to_numpy()
        decision, reason, approved = decide(score, feats, detected, blocked, fraud_type, self.deployed.bands, self.dfc,
                                            self.rng_review)
        defence_s = time.perf_counter() - t1
        clock = self._tick("scoring_and_defence", clock)

        # -- feedback, cards, playbooks -------------------------------------------------------------------------
        X_real = X[probe_rows]
        ok = approved[probe_rows]
        amount = feats["amount"]
        burned_round = np.zeros(len(cards.alive), bool)
        card_of_probe = self._card_index(customer[probe_rows], agent_of)
        ring_tries = [np.zeros(len(rg.arms)) for rg in self.rings]
        ring_wins = [np.zeros(len(rg.arms)) for rg in self.rings]
        ring_money = [np.zeros(len(rg.arms)) for rg in self.rings]
        ring_agents = [np.zeros(len(rg.arms), np.int64) for rg in self.rings]
        gained = np.zeros(ag.n)
        start = 0
        for ch in chunks:
            k = len(ch.X)
            sl = slice(start, start + k)
            start += k
            rws = probe_rows[sl]
            ring = self.rings[ag.ring[ch.agent]]
            fb = StreamOracle.feedback(approved[rws], score[rws], reason[rws], ring.spec.feedback)
            if ring.arms[ch.arm] == PLAYBOOK:
                ring.playbook.record(ch.replay_index, approved[rws])
            else:
                inst = self._instance(ch.agent, ch.arm)
                if not inst.finished:
                    inst.tell(ch.X, fb)
            money = float(amount[rws][approved[rws]].sum())
            wins = int(approved[rws].sum())
            ring_tries[ring.id][ch.arm] += k
            ring_wins[ring.id][ch.arm] += wins
            ring_money[ring.id][ch.arm] += money
            ring_agents[ring.id][ch.arm] += 1
            ag.money[ch.agent] += money
            ag.successes[ch.agent] += wins
            ag.probes[ch.agent] += k
            goal = ring.spec.goal
            gained[ch.agent] = money if goal.kind == "money" else wins
            if self.adv.evolution.share_within_ring:
                ring.playbook.add(ch.X[approved[rws]])
            self._log_queries(r, ch, rws, score, approved, X_real[sl])
        # cards: a declined probe may burn its card; a detection or block always does
        declined = ~ok
        burn = declined & ((self.rng_setup.random(n_probe) < self._burn_rate(agent_of))
                           | detected[probe_rows] | blocked[probe_rows])
        for c in np.unique(card_of_probe[burn]):
            if cards.alive[c]:
                cards.alive[c] = False
                burned_round[c] = True
        for a in range(ag.n):
            goal = self.rings[ag.ring[a]].spec.goal
            if (goal.money is not None and ag.money[a] >= goal.money) or \
                    (goal.successes is not None and ag.successes[a] >= goal.successes):
                ag.active[a] = False  # goal reached: the agent cashes out and leaves
        self._restock()

        clock = self._tick("feedback", clock)
        # -- labels, measures, store ----------------------------------------------------------------------------
        ld = label_days(day, fraud_type, amount, self.dfc, self.rng_labels)
        self.prep.stream.add(DayData(day, frame["transaction_id"].to_numpy(), X.astype(np.float32), ld))
        psi_feat, psi_score = self.deployed.drift.measure(X, score)
        self._write_transactions(frame, r, score, decision, reason, approved, is_probe, ring_id, agent_id, ld)
        self._write_events(r, day, frame, detected, matches, reason, is_probe, ring_id, agent_id, burned_round,
                           psi_feat, psi_score)
        ring_poison = np.bincount(ring_id[(ring_id >= 0) & ~is_probe], minlength=len(self.rings))
        self._write_round(r, day, frame, score, decision, approved, is_probe, ring_id, detected, fraud_type,
                          psi_feat, psi_score, burned_round, scoring_s, defence_s)
        clock = self._tick("store", clock)
        # -- evolution ------------------------------------------------------------------------------------------
        stats, ring_rows = [], []
        for ring in self.rings:
            members = np.flatnonzero(ag.ring == ring.id)
            used = ring.weights.copy()
            ring.playbook.forget(self.adv.evolution.memory)
            ring.update(ring_tries[ring.id], ring_wins[ring.id])
            evolve_ring(ring, ag, members, gained[members], self.realisable, self.rng_evo)
            for i, arm in enumerate(ring.arms):
                stats.append((self.run_id, r, ring.id, ring.spec.name, arm, int(ring_agents[ring.id][i]),
                              int(ring_tries[ring.id][i]), int(ring_wins[ring.id][i]), float(ring_money[ring.id][i]),
                              float(used[i]), float(ring.weights[i])))
            alive_m = members[ag.active[members]]
            mc = np.isin(cards.agent, members)
            ring_rows.append((self.run_id, r, ring.id, ring.spec.name, len(alive_m), int(cards.alive[mc].sum()),
                              int(ring_tries[ring.id].sum()), int(ring_wins[ring.id].sum()),
                              float(ring_money[ring.id].sum()),
                              float(ring_tries[ring.id].sum() * ring.spec.probe_cost), int(burned_round[mc].sum()),
                              int(ring_poison[ring.id]), len(ring.playbook),
                              _mean(ag.gap_s[alive_m] / 60.0), _mean(ag.amount_scale[alive_m]),
                              _mean(ag.cards_per_day[alive_m]), _mean(ag.mask[alive_m].sum(axis=1))))
        self._cross_ring()
        self._append_rows("strategy_stats", stats, ("run_id", "round", "ring_id", "ring", "strategy", "agents", "tries",
                                                    "successes", "money", "weight", "next_weight"))
        self._append_rows("ring_rounds", ring_rows, ("run_id", "round", "ring_id", "ring", "agents_active",
                                                     "cards_alive", "probes", "approved", "money_out", "probe_cost",
                                                     "cards_burned", "poison", "playbook_size", "mean_gap_minutes",
                                                     "mean_amount_scale", "mean_cards_per_day",
                                                     "mean_features_touched"))
        clock = self._tick("evolution", clock)
        rt = self.dfc.retrain
        if rt.every and r % rt.every == 0 and r < self.R:
            self._retrain(r, day)
        self._tick("retrain", clock)

    def _tick(self, phase: str, since: float) -> float:
        """Wall-clock seconds per phase of a round (for benchmarks; never stored in the run's tables)."""
        now = time.perf_counter()
        self.phase_s[phase] = self.phase_s.get(phase, 0.0) + now - since
        return now

    def _restock(self) -> None:
        """New stolen cards for the agents (Poisson, ``restock_per_day``), from customers no agent holds."""
        ag, cards = self.agents, self.cards
        rates = np.array([self.rings[r].spec.restock_per_day for r in ag.ring])
        k = self.rng_setup.poisson(rates) * ag.active
        total = int(k.sum())
        if total == 0:
            return
        held = np.zeros(self.world.customers.n, bool)
        held[cards.customer] = True
        for ring in self.rings:
            held[ring.mules] = True
        free = np.flatnonzero(~held)
        cust = self.rng_setup.choice(free, size=min(total, len(free)), replace=False).astype(np.int64)
        agent = np.repeat(np.arange(ag.n), k)[: len(cust)]
        held_by = np.bincount(cards.agent, minlength=ag.n)
        own = np.array([self._agent_devices[a][(held_by[a] + i) % len(self._agent_devices[a])]
                        for i, a in enumerate(agent)], np.int64)
        share = np.array([self.rings[ag.ring[a]].spec.known_device_share for a in agent])
        device = np.where(self.rng_setup.random(len(cust)) < share, self._primary_device[cust], own)
        self.cards = Cards(agent=np.concatenate([cards.agent, agent.astype(np.int32)]),
                           customer=np.concatenate([cards.customer, cust]),
                           device=np.concatenate([cards.device, device]),
                           alive=np.concatenate([cards.alive, np.ones(len(cust), bool)]))

    def _card_index(self, customer: np.ndarray, agent: np.ndarray) -> np.ndarray:
        key = self.cards.agent.astype(np.int64) * (1 << 32) + self.cards.customer
        order = np.argsort(key)
        q = agent.astype(np.int64) * (1 << 32) + customer
        return order[np.searchsorted(key[order], q)]

    def _burn_rate(self, agent_of: np.ndarray) -> np.ndarray:
        rates = np.array([rg.spec.burn_on_decline for rg in self.rings])
        return rates[self.agents.ring[agent_of]]

    def _cross_ring(self) -> None:
        rate = self.adv.evolution.cross_ring_rate
        if rate <= 0 or len(self.rings) < 2:
            return
        ag = self.agents
        for src in self.rings:
            best = src.playbook.best()
            src_members = np.flatnonzero((ag.ring == src.id) & ag.active)
            for dst in self.rings:
                if dst is src or self.rng_evo.random() >= rate:
                    continue
                if best is not None:
                    dst.playbook.add(best[None, :])
                dst_members = np.flatnonzero((ag.ring == dst.id) & ag.active)
                if len(src_members) and len(dst_members):
                    a_src = src_members[np.argmax(ag.fitness[src_members])]
                    a_dst = dst_members[np.argmin(ag.fitness[dst_members])]
                    if ag.fitness[a_src] > ag.fitness[a_dst]:
                        ag.copy_genome(int(a_dst), int(a_src))

    def _retrain(self, r: int, day: int) -> None:
        rt, pol = self.dfc.retrain, self.dfc.policy
        last = day - self.prep.wait
        first = max(0, last - rt.window_days + 1)
        n_days = last - first + 1
        validation_from = last - max(1, int(round(n_days * rt.validation_share))) + 1
        sc = self.prep.scenario
        decline_fpr = pol.decline_fpr if pol.decline_fpr is not None else sc.model.threshold_fpr
        version = self.deployed.version + 1
        fit = fit_version(self.prep.stream, version=version, names=self.names,
                          kind=self.deployed.model.kind, as_of=day, first=first, last=last,
                          validation_from=validation_from, legit_fraction=rt.legit_fraction,
                          review_fpr=max(pol.review_fpr, decline_fpr), decline_fpr=decline_fpr,
                          decline_threshold=pol.decline_threshold, review_threshold=pol.review_threshold,
                          bins=self.dfc.drift.bins, seed=self.seed, trained_round=r, audit=rt.audit_labels)
        self._record_fit(fit)
        self.deployed = fit
        self.store.execute("UPDATE rounds SET retrained = true WHERE run_id = ? AND round = ?", [self.run_id, r])
        self._append_rows("defence_events", [(self.run_id, r, "retrain", None,
                                              f"version={version} days={first}..{last} labels_as_of_day={day} "
                                              f"positives={fit.info['train_positives']} "
                                              f"validation_auc={fit.validation_auc:.4f}", None)],
                          ("run_id", "round", "kind", "target_id", "detail", "created_at"))

    # -- store ------------------------------------------------------------------------------------------------------
    def _record_fit(self, fit: Fit) -> None:
        model = fit.model
        sha = model.sha256 if model.sha256 is not None else hashlib.sha256(model.to_bytes()).hexdigest()
        self.store.execute("INSERT INTO model_versions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           [self.run_id, fit.version, model.kind, str(model.path) if model.path else None, sha,
                            fit.bands.decline, str(model.card.get("threshold_rule", "")), fit.validation_auc,
                            json.dumps(model.card, default=str, sort_keys=True), _now()])
        self._append_rows("training_runs", [(self.run_id, *fit.info.values())],
                          ("run_id", *fit.info.keys()))
        lab = fit.labels
        if len(lab["transaction_id"]):
            self.store.append("training_labels", pa.table({
                "run_id": pa.DictionaryArray.from_arrays(pa.array(np.zeros(len(lab["label"]), np.int32)),
                                                         pa.array([self.run_id])),
                "model_version": np.full(len(lab["label"]), fit.version, np.int32),
                "transaction_id": lab["transaction_id"], "role": pa.array(lab["role"].tolist(), pa.string()),
                "label": lab["label"]}))

    def _append_rows(self, table: str, rows: list[tuple], columns: tuple[str, ...]) -> None:
        if rows:
            cols = list(zip(*rows))
            self.store.append(table, pa.table({c: pa.array(list(v)) for c, v in zip(columns, cols)}))

    def _log_queries(self, r: int, ch: _Chunk, rws: np.ndarray, score, approved, X_real: np.ndarray) -> None:
        ag = self.agents
        ring = self.rings[ag.ring[ch.agent]]
        key = (int(ag.template_id[ch.agent]), ch.arm)
        k = len(rws)
        done = self.query_count.get(key, 0)
        self.query_count[key] = done + k
        x0 = np.ascontiguousarray(ch.problem.x0, np.float64)
        Xc = np.where(self.sa.mutable[None, :], X_real, x0[None, :])
        cost = self.kernels.cost(np.ascontiguousarray(Xc), x0[None, :], np.zeros(k, np.int64), self.sa)
        self.log.add(round_=r, agent_id=int(ch.agent), strategy=ring.arms[ch.arm],
                     target_id=np.full(k, ag.template_id[ch.agent], np.int64),
                     query_index=np.arange(done + 1, done + k + 1), score=score[rws], decision=~approved[rws],
                     evaded=approved[rws], cost=cost, X=X_real)

    def _write_transactions(self, frame: pl.DataFrame, r: int | None, score, decision, reason, approved, is_probe,
                            ring_id, agent_id, label_day, split: str = "campaign") -> None:
        n = frame.height
        cols = {
            "run_id": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([self.run_id])),
            "transaction_id": frame["transaction_id"].to_numpy(),
            "is_fraud": frame["is_fraud"].to_numpy().astype(np.int32),
            "score": score,
            "decision": pa.DictionaryArray.from_arrays(pa.array(decision.astype(np.int32)), pa.array(list(DECISIONS))),
            "model_version": np.full(n, self.deployed.version if r is not None else 1, np.int32),
            "split": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([split])),
        }
        for c in ("timestamp", "day", "customer_id", "merchant_id", "device_id", "fraud_type"):
            cols[c] = frame[c].to_numpy()
        for f, c in zip(self.names, self.columns):
            cols[c] = frame[f].to_numpy()
        cols["round"] = pa.array(np.full(n, -1 if r is None else r, np.int32), mask=np.full(n, r is None))
        cols["is_probe"] = is_probe
        cols["ring_id"] = pa.array(ring_id, mask=ring_id < 0)
        cols["agent_id"] = pa.array(agent_id, mask=agent_id < 0)
        cols["approved"] = pa.array(approved, mask=None if r is not None else np.ones(n, bool))
        cols["reason"] = pa.DictionaryArray.from_arrays(pa.array(reason.astype(np.int32), mask=reason == 0),
                                                        pa.array(list(REASONS)))
        cols["label_day"] = pa.array(label_day, mask=label_day == NO_LABEL)
        self.store.append("transactions", pa.table(cols))

    def write_history(self) -> None:
        for h in self.prep.history:
            n = h.height
            d = int(h["day"][0]) if n else 0
            dec = h["decision_code"].to_numpy()
            self._write_transactions(h, None, h["score"].to_numpy(), dec,
                                     np.where(dec > 0, 1, 0).astype(np.int8), np.zeros(n, bool), np.zeros(n, bool),
                                     np.full(n, -1, np.int32), np.full(n, -1, np.int32), h["label_day"].to_numpy(),
                                     split="train" if d < self.prep.cut else "test")
        self.prep.history = []  # written; free the memory

    def _write_events(self, r, day, frame, detected, matches, reason, is_probe, ring_id, agent_id, burned_round,
                      psi_feat, psi_score) -> None:
        action = self.dfc.probe_detection.action
        det = np.flatnonzero(detected)
        tid = frame["transaction_id"].to_numpy()
        cust = frame["customer_id"].to_numpy()
        dev = frame["device_id"].to_numpy()
        rows = [(self.run_id, r, "probe_detected", int(tid[i]),
                 f"card={cust[i]} device={dev[i]} matches={matches[i]} action={action}", None) for i in det]
        for c in np.flatnonzero(burned_round):
            rows.append((self.run_id, r, "card_burned", None,
                         f"card={self.cards.customer[c]} agent={self.cards.agent[c]}", None))
        thr = self.dfc.drift.psi_threshold
        for f, v in zip(self.names, psi_feat):
            if v > thr:
                rows.append((self.run_id, r, "drift_alert", None, f"feature={f} psi={v:.4f}", None))
        if psi_score > thr:
            rows.append((self.run_id, r, "drift_alert", None, f"feature=score psi={psi_score:.4f}", None))
        if r > 1 and self._deployed_round == r:
            rows.append((self.run_id, r, "deploy", None, f"version={self.deployed.version}", None))
        if rows:
            cols = list(zip(*rows))
            self.store.append("defence_events", pa.table({
                "run_id": pa.array(cols[0], pa.string()), "round": pa.array(cols[1], pa.int32()),
                "kind": pa.array(cols[2], pa.string()), "target_id": pa.array(cols[3], pa.int64()),
                "detail": pa.array(cols[4], pa.string()), "created_at": pa.array(cols[5], pa.timestamp("us"))}))
        self.store.append("drift", pa.table({
            "run_id": pa.array([self.run_id] * (len(self.names) + 1)),
            "round": pa.array([r] * (len(self.names) + 1), pa.int32()),
            "model_version": pa.array([self.deployed.version] * (len(self.names) + 1), pa.int32()),
            "feature": pa.array(list(self.names) + ["score"]),
            "psi": pa.array(list(psi_feat) + [psi_score], pa.float64()),
            "alert": pa.array([bool(v > thr) for v in psi_feat] + [bool(psi_score > thr)])}))

    @property
    def _deployed_round(self) -> int:
        return int(self.deployed.info["deployed_round"])

    def _write_round(self, r, day, frame, score, decision, approved, is_probe, ring_id, detected, fraud_type,
                     psi_feat, psi_score, burned_round, scoring_s, defence_s) -> None:
        n = frame.height
        is_fraud = frame["is_fraud"].to_numpy().astype(bool)
        amount = frame["amount"].to_numpy()
        legit = ~is_fraud
        poison = (ring_id >= 0) & ~is_probe
        clean = ~is_probe & ~poison  # the clean AUC: the round's own traffic, no probes, no poisoning rows
        probes = int(is_probe.sum())
        p_ok = int((approved & is_probe).sum())
        p_det = int((detected & is_probe).sum())
        n_legit = max(1, int(legit.sum()))
        thr = self.dfc.drift.psi_threshold
        jmax = int(np.argmax(psi_feat))
        row = (self.run_id, r, day, self.deployed.version, n, int(legit.sum()), int(is_fraud.sum()), probes, p_ok,
               p_ok / probes if probes else None, float(amount[approved & is_probe].sum()),
               float(amount[approved & is_fraud & (fraud_type != POISONING)].sum()), p_det,
               p_det / probes if probes else None, int(poison.sum()),
               float((legit & (decision == DECLINE)).sum() / n_legit),
               float((legit & (decision != APPROVE)).sum() / n_legit),
               float((decision == 1).sum() / max(1, n)), float((legit & detected).sum() / n_legit),
               auc(is_fraud[clean], score[clean]), float(psi_score), float(psi_feat[jmax]), self.names[jmax],
               int((psi_feat > thr).sum() + (psi_score > thr)), int(burned_round.sum()), int(self.agents.active.sum()),
               False, 1e6 * scoring_s / max(1, n), 1e6 * defence_s / max(1, n))
        self._append_rows("rounds", [row], ROUND_COLUMNS)

    def write_targets(self) -> None:
        """One ``targets`` row per (strategy, template), from the query log (as a single-round attack writes them)."""
        prep = self.prep
        if isinstance(self.store, BackgroundWriter):
            self.store.drain()
        store = self.store.store if isinstance(self.store, BackgroundWriter) else self.store
        uniq = np.unique(self.agents.template)
        tbl = {"target_id": prep.templates_id[uniq], "original_score": prep.templates_score[uniq]}
        tbl.update(store.feature_table(prep.templates_X[uniq]))
        store.con.register("_originals", pa.table(tbl))
        # A frozen feature's original is the value of the transaction the probe was derived from (the agent's card:
        # the cheapest evading probe's own value, else its first probe's), never another card's template; a
        # mutable one is the template's.
        best = "(q.cost, q.query_index, q.round)"
        feats = "".join(
            f", any_value(o.{_ident(c)})" if m else
            f", coalesce(arg_min(q.{_ident(c)}, {best}) FILTER (WHERE q.evaded), arg_min(q.{_ident(c)}, q.query_index))"
            for c, m in zip(store.columns, self.sa.mutable))
        try:
            store.execute(f"""
INSERT INTO targets
SELECT q.run_id, q.strategy, q.target_id, any_value(o.original_score), count(*)::INTEGER, bool_or(q.evaded),
  min(q.query_index) FILTER (WHERE q.evaded), arg_min(q.cost, q.query_index) FILTER (WHERE q.evaded),
  min(q.cost) FILTER (WHERE q.evaded), coalesce(bool_or(q.evaded AND q.cost <= 1.0), false),
  min(q.query_index) FILTER (WHERE q.evaded AND q.cost <= 1.0){feats}
FROM queries q JOIN _originals o ON o.target_id = q.target_id
WHERE q.run_id = ?
GROUP BY q.run_id, q.strategy, q.target_id ORDER BY q.strategy, q.target_id""", [self.run_id])
        finally:
            store.con.unregister("_originals")


ROUND_COLUMNS = ("run_id", "round", "day", "model_version", "transactions", "legit", "fraud", "probes",
                 "probes_approved", "attack_success_rate", "attack_loss", "fraud_loss", "probes_detected",
                 "probes_detected_share", "poison", "fpr", "friction", "review_rate", "legit_detected_share",
                 "clean_auc", "psi_score", "psi_max", "psi_max_feature", "drift_alerts", "cards_burned",
                 "agents_active", "retrained", "scoring_us_per_txn", "defence_us_per_txn")


def _mean(v: np.ndarray) -> float | None:
    return float(np.mean(v)) if len(v) else None


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def campaign_run_id(prep: CampaignPrepared) -> str:
    h = hashlib.sha256()
    h.update(prep.scenario.to_yaml().encode())
    h.update(__version__.encode())
    return f"{prep.scenario.name}-{h.hexdigest()[:12]}"


def execute_campaign(prep: CampaignPrepared, *, output: Path | None = None, progress: Progress = _no_progress):
    """Run the rounds and write the run (to ``<output>.partial`` first, moved into place when finished)."""
    sc = prep.scenario
    path = Path(output) if output is not None else sc.output_path()
    run_id = campaign_run_id(prep)
    store = Store(path, prep.names)
    writer = BackgroundWriter(store)
    try:
        timings = dict(prep.timings)
        rings = prep.adversaries.rings
        feedback = rings[0].feedback if len({r.feedback for r in rings}) == 1 else "mixed"
        budget = max(r.probes_per_day for r in rings) * prep.rounds
        store.execute("INSERT INTO runs VALUES (?, ?, ?, ?, NULL, 'running', ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                      [run_id, sc.name, sc.seed, _now(), str(prep.model.path) if prep.model.path else None,
                       prep.model.sha256, prep.model.kind, prep.threshold, feedback, budget, sc.to_yaml(), __version__])
        camp = Campaign(prep, writer, run_id, progress)
        camp._record_fit(prep.fit)
        t0 = time.perf_counter()
        camp.write_history()
        timings["history_store_s"] = time.perf_counter() - t0
        ag = camp.agents
        camp._append_rows("agents", [(run_id, a, int(ag.ring[a]), camp.rings[ag.ring[a]].spec.name,
                                      int(ag.template_id[a]), int(ag.budget[a]),
                                      camp.rings[ag.ring[a]].spec.knowledge, camp.rings[ag.ring[a]].spec.feedback,
                                      int((camp.cards.agent == a).sum())) for a in range(ag.n)],
                          ("run_id", "agent_id", "ring_id", "ring", "template_id", "probes_per_day", "knowledge",
                           "feedback", "cards"))
        advance = progress("campaign rounds", prep.rounds)
        t1 = time.perf_counter()
        for r in range(1, prep.rounds + 1):
            camp.play(r)
            advance(1)
        camp.log.flush()
        camp.write_targets()
        timings["campaign_s"] = time.perf_counter() - t1
        timings["campaign_transactions"] = camp.transactions
        timings.update({f"round_{k}_s": v for k, v in camp.phase_s.items()})
        writer.close()
        store.execute("UPDATE runs SET status = 'finished', finished_at = ? WHERE run_id = ?", [_now(), run_id])
        path = store.finish()  # the run is safe on disk before anything derived from it (runner.derive)
    except BaseException as exc:
        try:
            writer.close()
        except BaseException:
            pass  # the first error is the one to report
        store.fail(run_id, exc)
        raise
    from ..runner import derive

    return CampaignResult(path=path, run_id=run_id, scenario=sc, timings=timings, warnings=derive(path))


class CampaignResult(RunResult):
    """A finished campaign: a :class:`~simulator.runner.RunResult` with the per-round table."""

    def rounds(self) -> pl.DataFrame:
        return self.sql("SELECT * FROM rounds WHERE run_id = ? ORDER BY round", [self.run_id])
