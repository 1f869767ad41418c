"""The state a campaign run advances, built from a prepared campaign (:mod:`.setup`) without changing it: the
world (a copy), the labelled stream (a copy), the agents and their cards, the rings, the random streams, the
strategies the agents run, the door (:class:`~simulator.oracle.StreamOracle`) and the probe detector."""
from __future__ import annotations

import copy
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from ..attack import Driver, Step
from ..kernels import get_kernels
from ..oracle import StreamOracle
from ..store import QueryLog, feature_columns
from ..strategies import BaseStrategy, Problem, get_strategy
from .adversaries import Agents, Cards, Ring, masked_schema, strategy_params
from .config import REALISABLE_FEATURES, RING_KINDS
from .defence import R_BLOCKED, R_NEW_DEVICE, R_PROBE, R_VELOCITY
from .detect import ProbeDetector
from .retrain import Fit, LabelledStream
from .setup import CampaignPrepared, HistoryDays

HARD_DECLINES = (R_BLOCKED, R_PROBE, R_VELOCITY, R_NEW_DEVICE)
#: Devices the rings buy during a campaign are numbered from here, apart from the world's own counter (which a
#: prefetching worker advances while the campaign plays the day before).
CAMPAIGN_DEVICE_BASE = 1 << 30


def run_copy(world):
    """A copy of the prepared world for one run: what a day advances (its state, streaming features, random
    generators and counters) is copied, its population (customers, merchants, fraudsters: never written after they are
    built) is shared, so a run does not hold a second copy of the per-customer arrays it only reads."""
    shared = (world.customers, world.merchants, world.fraudsters)
    return copy.deepcopy(world, memo={id(x): x for x in shared})


@dataclass
class _Chunk:
    agent: int
    arm: int
    X: np.ndarray  # intent rows (what the arm asked)
    problem: Problem
    replay_index: np.ndarray | None = None  # playbook rows replayed (playbook arm)
    step: Step | None = None  # the driver's step that asked X (a strategy arm): told in the feedback phase


class CampaignState:
    """Everything one run of a campaign changes, round after round (the prepared campaign is only read)."""

    def __init__(self, prep: CampaignPrepared, log: QueryLog | None = None):
        self.prep = prep
        sc = prep.scenario
        self.adv, self.dfc, self.R = prep.adversaries, prep.defence, prep.rounds
        # the run's own copies of what it advances: the prepared world and labelled stream stay as prepared
        self.world = run_copy(prep.world)
        self.stream = LabelledStream(prep.stream.keep_days)
        self.stream.days = OrderedDict(prep.stream.days)
        self.spill = HistoryDays()  # this run's days' features for retraining (a folder of its own)
        self.names = prep.names
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
        self.snapshot_world()
        self.oracle = StreamOracle(self.agents.budget, self.kernels, self.sa, hard_reasons=HARD_DECLINES, log=log)
        self.query_count: dict[tuple[int, int], int] = {}  # queries so far per (template, arm): query_index
        self.phase_s: dict[str, float] = {}
        self.transactions = 0
        # the strategies the agents run, per (agent, arm), rebuilt when the agent's tactics evolve (its generation)
        self.driver: Driver[tuple[int, int]] = Driver(self._build_instance,
                                                      generation=lambda key: int(self.agents.generation[key[0]]))
        pd = self.dfc.probe_detection
        self.detector = ProbeDetector.from_spec(self.world.customers.n, pd) if pd.enabled else None

    # -- setup ------------------------------------------------------------------------------------------------------
    def _setup_agents(self) -> None:
        prep, rng, world = self.prep, self.rng_setup, self.world
        n_agents = self.adv.agents
        n_cards = sum(r.agents * r.cards_per_agent for r in self.adv.rings)
        n_mules = sum(r.poison.accounts if r.poison else 0 for r in self.adv.rings)
        owners = rng.choice(world.customers.n, size=n_cards + n_mules, replace=False).astype(np.int64)
        ring_list: list[int] = []
        template_list: list[int] = []
        taken = np.zeros(len(prep.templates_id), bool)  # one template per agent while there are enough
        for ring in self.rings:
            code = RING_KINDS[ring.spec.kind]
            kind = (prep.templates_type == code) if code else np.ones(len(taken), bool)
            pools = (np.flatnonzero(kind & ~taken), np.flatnonzero(~taken), np.flatnonzero(kind), np.arange(len(taken)))
            pool = next((p for p in pools if len(p) >= ring.spec.agents), pools[-1])
            pick = rng.choice(pool, size=ring.spec.agents, replace=len(pool) < ring.spec.agents)
            taken[pick] = True
            ring_list += [ring.id] * ring.spec.agents
            template_list += list(pick)
        ring_of = np.array(ring_list, np.int32)
        template = np.array(template_list, np.int64)
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

    def snapshot_world(self) -> None:
        """What the campaign reads of the world's state, copied between a step and the next day's prefetch."""
        st = self.world.state
        if st.next_device_id >= CAMPAIGN_DEVICE_BASE:
            raise RuntimeError("the world's device ids reached the range campaigns use")
        self.primary_device = st.devices[np.arange(len(st.primary_slot)), st.primary_slot].astype(np.int64)

    def fresh_devices(self, k: int) -> np.ndarray:
        ids = np.arange(self._next_device, self._next_device + k, dtype=np.int64)
        self._next_device += k
        return ids

    def problem(self, a: int) -> Problem:
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

    def _build_instance(self, key: tuple[int, int]) -> BaseStrategy:
        """Agent ``a``'s strategy for bandit arm ``arm``, in its current generation (the driver builds it)."""
        a, arm = key
        gen = int(self.agents.generation[a])
        ring = self.rings[self.agents.ring[a]]
        name = ring.arms[arm]
        cls = get_strategy(name)
        problem = self.problem(a)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 7919, a, arm, gen]))
        return cls(problem, rng, **strategy_params(cls, ring.spec.params.get(name, {}), self.agents.step[a]))

    def tick(self, phase: str, since: float) -> float:
        """Wall-clock seconds per phase of a round (for benchmarks; never stored in the run's tables)."""
        now = time.perf_counter()
        self.phase_s[phase] = self.phase_s.get(phase, 0.0) + now - since
        return now

    def restock(self) -> None:
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
        device = np.where(self.rng_setup.random(len(cust)) < share, self.primary_device[cust], own)
        self.cards = Cards(agent=np.concatenate([cards.agent, agent.astype(np.int32)]),
                           customer=np.concatenate([cards.customer, cust]),
                           device=np.concatenate([cards.device, device]),
                           alive=np.concatenate([cards.alive, np.ones(len(cust), bool)]))

    def card_index(self, customer: np.ndarray, agent: np.ndarray) -> np.ndarray:
        key = self.cards.agent.astype(np.int64) * (1 << 32) + self.cards.customer
        order = np.argsort(key)
        q = agent.astype(np.int64) * (1 << 32) + customer
        return order[np.searchsorted(key[order], q)]

    def burn_rate(self, agent_of: np.ndarray) -> np.ndarray:
        rates = np.array([rg.spec.burn_on_decline for rg in self.rings])
        return rates[self.agents.ring[agent_of]]

    def cross_ring(self) -> None:
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
