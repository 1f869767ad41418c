"""Fraudster agents and rings: who attacks with what, and how they learn between rounds.

Agents and their stolen cards are rows in arrays (:class:`Agents`, :class:`Cards`); a :class:`Ring` is one Python
object per ring holding its strategy portfolio (a bandit over strategies), its shared knowledge (a *playbook* of
evading patterns, itself a bandit arm) and its tactics pool. Strategy instances (the ask/tell searchers of
:mod:`simulator.strategies`) live per agent and strategy, for as long as the agent's tactics do not change.

Evolution after each round:

* **bandit**: each ring's strategy weights are a softmax over discounted success rates (``memory``), mixed with
  an even share (``exploration``); the playbook arm is available once the ring knows an evading pattern.
* **genetic variation**: the weakest ``replace_share`` of a ring's agents (by discounted money or successes, per
  their goal) copy the tactics of a stronger one (tournament of two) with log-normal mutation: minutes between
  probes, cards used per day, share of the template amount aimed for, step size, which features to touch.
* **shared knowledge**: every evading probe enters the ring's playbook; with ``cross_ring_rate`` a ring's best
  pattern and best tactics reach each other ring.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from ..kernels import MODE_LOCAL
from .config import PLAYBOOK, AdversariesSpec, RingSpec, accepted_params

MIN_GAP_S, MAX_GAP_S = 30.0, 6 * 3600.0
FORGET_AFTER_TRIES, FORGET_BELOW = 3.0, 0.25  # a pattern replayed this often that mostly fails leaves the playbook


@dataclass
class Agents:
    """One row per agent. The genome columns (``gap_s`` … ``mask``) are the tactics evolution varies."""

    ring: np.ndarray  # int32
    template: np.ndarray  # int64 row in the campaign's template matrix
    template_id: np.ndarray  # int64 transaction id of the template (the queries' target_id)
    budget: np.ndarray  # int32 probes per day
    active: np.ndarray  # bool
    money: np.ndarray  # float64 money out so far (approved probe amounts)
    successes: np.ndarray  # int64
    probes: np.ndarray  # int64
    fitness: np.ndarray  # float64, discounted
    gap_s: np.ndarray  # float64 seconds between the agent's probes
    cards_per_day: np.ndarray  # int32
    amount_scale: np.ndarray  # float64 share of the template amount aimed for
    step: np.ndarray  # float64 step size handed to strategies that take one
    mask: np.ndarray  # bool (n, d): features the agent's strategies may touch
    generation: np.ndarray  # int32, bumped when the tactics change (strategy instances are rebuilt)

    @property
    def n(self) -> int:
        return len(self.ring)

    def copy_genome(self, dst: int, src: int) -> None:
        for name in ("gap_s", "cards_per_day", "amount_scale", "step"):
            getattr(self, name)[dst] = getattr(self, name)[src]
        self.mask[dst] = self.mask[src]
        self.generation[dst] += 1


@dataclass
class Cards:
    """One row per stolen card: its owner (a customer), the agent holding it, the device used on it, alive or burned."""

    agent: np.ndarray  # int32
    customer: np.ndarray  # int64
    device: np.ndarray  # int64: the device the agent uses on this card when a known device is wanted
    alive: np.ndarray  # bool


@dataclass
class Playbook:
    """A ring's shared evading patterns (rows in model-feature space) with their replay record."""

    size: int
    X: np.ndarray
    wins: np.ndarray = field(default_factory=lambda: np.zeros(0))
    tries: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @classmethod
    def empty(cls, size: int, d: int) -> Playbook:
        return cls(size, np.zeros((0, d)))

    def __len__(self) -> int:
        return len(self.X)

    def quality(self) -> np.ndarray:
        return (self.wins + 1.0) / (self.tries + 2.0)

    def add(self, X: np.ndarray) -> None:
        """New evading patterns (duplicates of known ones are skipped); the weakest go when full."""
        if len(X) == 0:
            return
        X = np.unique(X, axis=0)
        if len(self.X):
            known = (X[:, None, :] == self.X[None, :, :]).all(axis=2).any(axis=1)
            X = X[~known]
        if len(X) == 0:
            return
        self.X = np.vstack([self.X, X])
        self.wins = np.concatenate([self.wins, np.ones(len(X))])
        self.tries = np.concatenate([self.tries, np.ones(len(X))])
        if len(self.X) > self.size:
            keep = np.sort(np.argsort(-self.quality(), kind="stable")[: self.size])
            self.X, self.wins, self.tries = self.X[keep], self.wins[keep], self.tries[keep]

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        q = self.quality() ** 2
        return rng.choice(len(self.X), size=n, p=q / q.sum())

    def record(self, index: np.ndarray, won: np.ndarray) -> None:
        np.add.at(self.wins, index, won.astype(np.float64))
        np.add.at(self.tries, index, 1.0)

    def forget(self, memory: float) -> None:
        """End of round: discount the record and drop patterns that keep failing (the model moved on)."""
        self.wins *= memory
        self.tries *= memory
        keep = ~((self.tries >= FORGET_AFTER_TRIES * memory) & (self.quality() < FORGET_BELOW))
        self.X, self.wins, self.tries = self.X[keep], self.wins[keep], self.tries[keep]

    def best(self) -> np.ndarray | None:
        return None if len(self.X) == 0 else self.X[int(np.argmax(self.quality()))]


class Ring:
    """A ring: its portfolio and bandit, its playbook, its mule accounts for poisoning."""

    def __init__(self, ring_id: int, spec: RingSpec, adv: AdversariesSpec, d: int, rng: np.random.Generator):
        self.id, self.spec, self.evo = ring_id, spec, adv.evolution
        self.arms: tuple[str, ...] = tuple(spec.strategies) + ((PLAYBOOK,) if adv.evolution.share_within_ring else ())
        k = len(self.arms)
        self.tries = np.zeros(k)
        self.successes = np.zeros(k)
        self.weights = np.full(k, 1.0 / k)
        self.playbook = Playbook.empty(adv.evolution.playbook_size, d)
        self.rng = rng
        self.mules = np.zeros(0, np.int64)
        self._fix_playbook_weight()

    def available(self) -> np.ndarray:
        return np.array([a != PLAYBOOK or len(self.playbook) > 0 for a in self.arms])

    def _fix_playbook_weight(self) -> None:
        w = np.where(self.available(), self.weights, 0.0)
        self.weights = w / w.sum()

    def choose(self, n: int) -> np.ndarray:
        """Arm index for each of ``n`` agents, drawn from the current weights."""
        return self.rng.choice(len(self.arms), size=n, p=self.weights)

    def update(self, tries: np.ndarray, successes: np.ndarray) -> None:
        """Discount the record, add this round's, and set the next weights (softmax with an exploration share)."""
        m = self.evo.memory
        self.tries = m * self.tries + tries
        self.successes = m * self.successes + successes
        rate = (self.successes + 1.0) / (self.tries + 4.0)
        ok = self.available()
        z = np.where(ok, rate / self.evo.temperature, -np.inf)
        w = np.exp(z - z[ok].max())
        w = w / w.sum()
        even = ok / ok.sum()
        self.weights = (1.0 - self.evo.exploration) * w + self.evo.exploration * even


def strategy_params(cls, params: dict, step: float) -> dict:
    """The ring's parameters for a strategy, plus the agent's evolved step size where the strategy takes one."""
    accepted = accepted_params(cls)
    out = dict(params)
    if accepted is not None and "step" in accepted and "step" not in params:
        out["step"] = float(step)
    return out


def mutate_genome(agents: Agents, a: int, realisable: np.ndarray, sigma: float, rng: np.random.Generator,
                  max_cards: int) -> None:
    """Log-normal variation of one agent's tactics (in place)."""
    z = rng.standard_normal(4)
    agents.gap_s[a] = float(np.clip(agents.gap_s[a] * np.exp(sigma * z[0]), MIN_GAP_S, MAX_GAP_S))
    agents.amount_scale[a] = float(np.clip(agents.amount_scale[a] * np.exp(sigma * z[1]), 0.02, 1.0))
    agents.step[a] = float(np.clip(agents.step[a] * np.exp(sigma * z[2]), 0.005, 0.5))
    if rng.random() < sigma:
        agents.cards_per_day[a] = int(np.clip(agents.cards_per_day[a] + (1 if z[3] > 0 else -1), 1, max_cards))
    if rng.random() < sigma and realisable.any():
        j = int(rng.choice(np.flatnonzero(realisable)))
        agents.mask[a, j] = ~agents.mask[a, j]
        if not agents.mask[a].any():
            agents.mask[a, j] = True


def evolve_ring(ring: Ring, agents: Agents, members: np.ndarray, gained: np.ndarray, realisable: np.ndarray,
                rng: np.random.Generator) -> list[int]:
    """Fitness update and genetic step inside one ring; returns the agents whose tactics changed."""
    evo = ring.evo
    agents.fitness[members] = evo.memory * agents.fitness[members] + gained
    alive = members[agents.active[members]]
    if len(alive) < 2 or evo.replace_share <= 0:
        return []
    n_replace = max(1, int(np.floor(evo.replace_share * len(alive))))
    order = alive[np.argsort(agents.fitness[alive], kind="stable")]
    losers, parents = order[:n_replace], order[len(order) // 2:]
    changed = []
    for a in losers:
        i, j = rng.integers(0, len(parents), size=2)
        p = parents[i] if agents.fitness[parents[i]] >= agents.fitness[parents[j]] else parents[j]
        if agents.fitness[p] <= agents.fitness[a] or p == a:
            continue
        agents.copy_genome(a, p)
        mutate_genome(agents, a, realisable, evo.mutation, rng, ring.spec.cards_per_agent)
        agents.fitness[a] = 0.5 * (agents.fitness[a] + agents.fitness[p])
        changed.append(int(a))
    return changed


def replays(base: np.ndarray, problem, rng: np.random.Generator, step: float = 0.02) -> np.ndarray:
    """Variations of known evading rows for one agent: projected onto its constraints, half moved slightly (a
    replayed pattern that never changes is exactly what probe detection looks for)."""
    n = len(base)
    X0 = np.ascontiguousarray(problem.x0, np.float64)[None, :]
    origin = np.zeros(n, np.int64)
    k = problem.kernels
    P = k.project(np.ascontiguousarray(base, np.float64), X0, origin, problem.schema)
    d = P.shape[1]
    U, Z, V = rng.random((n, d)), rng.standard_normal((n, d)), rng.random(n)
    moved = k.mutate(P, X0, origin, U, Z, V, np.full(n, step), np.full(n, 0.2), MODE_LOCAL, problem.schema)
    return np.where((rng.random(n) < 0.5)[:, None], moved, P)


def masked_schema(sa, mask: np.ndarray):
    """The schema arrays with only the features in ``mask`` (and mutable already) left mutable."""
    return dataclasses.replace(sa, mutable=sa.mutable & mask)
