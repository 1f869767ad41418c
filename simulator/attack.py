"""The one ask/tell driver: every strategy instance of a run or a campaign is asked and told here.

:class:`Driver` holds the strategy instances per key (a target's index in a single-round run; ``(agent, arm)`` in a
campaign) and keeps the protocol of :class:`~simulator.strategies.BaseStrategy`: a finished instance is not asked
(a campaign may replay its best evasion instead, and a replay is never told), and every ask is followed by exactly
one tell with the same rows before the instance is asked again. Between :meth:`Driver.ask` and :meth:`Driver.tell`
the caller's oracle decides: :func:`run_strategy` scores a step at once (:meth:`~simulator.oracle.Oracle.query`); a
campaign round admits the rows in its plan phase and tells once the day's defences decided them
(:mod:`simulator.campaign.phases`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Generic, Hashable, Sequence, TypeVar, cast

import numpy as np

from .errors import raise_if_signalled
from .oracle import Oracle
from .protocol import Feedback, Problem
from .strategies.base import BaseStrategy, Strategy

K = TypeVar("K", bound=Hashable)
#: replay(instance, n): ``n`` rows replaying a finished instance's best evasion (campaigns); ``None``: skip it
Replay = Callable[[BaseStrategy, int], np.ndarray]


def target_rng(seed: int, strategy_index: int, target_id: int) -> np.random.Generator:
    """Each (strategy, target) pair draws from its own stream, so a run does not depend on target order."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(strategy_index), int(target_id)]))


@dataclass(frozen=True)
class Step(Generic[K]):
    """One :meth:`Driver.ask`: the rows of every instance that answered, stacked in key order."""

    keys: list[K]  # the keys that answered (finished instances without a replay are left out)
    counts: np.ndarray  # int64, rows per key
    X: np.ndarray  # float64 (sum(counts), d): every key's rows, in key order
    opening: np.ndarray  # bool per row: an opening move (see Strategy.asked_opening)
    replayed: np.ndarray  # bool per key: the rows replay a finished instance's best evasion (never told)
    instances: list[BaseStrategy]  # the instance asked for each key (told the same one)

    def __len__(self) -> int:
        return len(self.keys)

    def slices(self) -> list[slice]:
        """Each key's rows of :attr:`X` (and of the feedback on them)."""
        ends = np.cumsum(self.counts)
        return [slice(int(e - c), int(e)) for c, e in zip(self.counts, ends)]


class Driver(Generic[K]):
    """Strategy instances per key, built on first use by ``build(key)``, asked and told in steps.

    ``generation(key)`` (optional) versions an instance: when it changes (a campaign agent's tactics evolved) the
    next use builds a new one. :attr:`rows_asked` and :attr:`rows_told` count rows over the driver's life.
    """

    def __init__(self, build: Callable[[K], BaseStrategy], *, generation: Callable[[K], int] | None = None):
        self._build = build
        self._generation = generation
        self._instances: dict[K, tuple[int, BaseStrategy]] = {}
        self._waiting: dict[K, BaseStrategy] = {}  # asked, not told yet
        self.rows_asked = 0
        self.rows_told = 0

    def instance(self, key: K) -> BaseStrategy:
        """The current instance for ``key`` (built now if there is none, or if its generation moved on)."""
        gen = 0 if self._generation is None else int(self._generation(key))
        have = self._instances.get(key)
        if have is not None and have[0] == gen:
            return have[1]
        inst = self._build(key)
        self._instances[key] = (gen, inst)
        return inst

    def get(self, key: K) -> BaseStrategy | None:
        """The instance built for ``key`` so far, or ``None`` (builds nothing)."""
        have = self._instances.get(key)
        return None if have is None else have[1]

    def finished(self, keys: Sequence[K] | np.ndarray) -> np.ndarray:
        return np.array([self.instance(k).finished for k in keys], dtype=bool)

    def ask(self, keys: Sequence[K] | np.ndarray, ks: Sequence[int] | np.ndarray, *,
            replay: Replay | None = None) -> Step[K]:
        """Ask each key's instance for ``ks[i]`` rows. A finished instance is not asked: with ``replay`` and a best
        evasion it replays that (``replay(instance, k)``), otherwise it is left out of the step."""
        out_keys: list[K] = []
        counts, parts, opening, replayed, insts = [], [], [], [], []
        for key, k_ in zip(keys, ks):
            k = int(k_)
            key = key.item() if isinstance(key, np.generic) else key
            inst = self.instance(key)
            if not inst.finished:
                if self._waiting.get(key) is inst:
                    raise RuntimeError(f"strategy {inst.name!r} ({key!r}) asked again before it was told")
                X = inst.ask(k)
                opening.append(np.asarray(inst.asked_opening, dtype=bool))
                self._waiting[key] = inst
                replayed.append(False)
            elif replay is not None and inst.best_x is not None:
                X = replay(inst, k)
                opening.append(np.zeros(len(X), dtype=bool))
                replayed.append(True)
            else:
                continue
            out_keys.append(key)
            counts.append(len(X))
            parts.append(X)
            insts.append(inst)
        X_all = np.vstack(parts) if parts else np.zeros((0, 0))
        self.rows_asked += len(X_all)
        return Step(out_keys, np.array(counts, dtype=np.int64), X_all,
                    np.concatenate(opening) if opening else np.zeros(0, bool), np.array(replayed, dtype=bool), insts)

    def tell(self, step: Step[K], feedback: Feedback) -> None:
        """Tell each instance of ``step`` its rows and the feedback on them (``feedback`` covers the step's rows in
        order); replays are not told."""
        if len(feedback.declined) != len(step.X):
            raise ValueError(f"feedback on {len(feedback.declined)} rows for a step of {len(step.X)}")
        for key, inst, sl, replayed in zip(step.keys, step.instances, step.slices(), step.replayed):
            if replayed:
                continue
            if self._waiting.get(key) is not inst:
                raise RuntimeError(f"strategy {inst.name!r} ({key!r}) told rows it was not asked for (or told twice)")
            del self._waiting[key]
            inst.tell(step.X[sl], feedback[sl])
            self.rows_told += sl.stop - sl.start


def run_strategy(strategy_cls: type[Strategy], params: dict, *, oracle: Oracle, problems: Sequence[Problem],
                 rngs: Sequence[np.random.Generator], batch_size: int | None = None,
                 on_step: Callable[[int], None] | None = None, only: np.ndarray | None = None) -> list[Strategy | None]:
    """Drive ask/tell for every target until each has spent its budget or finished; returns the strategies
    (``None`` for targets left out by ``only``, e.g. targets whose relations no point can meet)."""
    keep = set(range(len(problems)) if only is None else (int(i) for i in only))
    driver: Driver[int] = Driver(lambda i: strategy_cls(problems[i], rngs[i], **params))
    built = [i for i in range(len(problems)) if i in keep]
    for i in built:
        driver.instance(i)  # every instance is built before the first ask, in target order
    batch = int(batch_size or strategy_cls.batch_size)
    active = np.array([i for i in built if not driver.instance(i).finished], dtype=np.int64)
    while len(active):
        ks = np.minimum(batch, oracle.remaining(active))
        step = driver.ask(active, ks)
        targets = np.repeat(np.asarray(step.keys, dtype=np.int64), step.counts)
        driver.tell(step, oracle.query(targets, step.X, opening=step.opening))
        raise_if_signalled()  # a cancellation point: a Ctrl-C whose exception got lost stops the run at this step
        if on_step is not None:
            on_step(int(step.counts.sum()))
        active = active[(oracle.remaining(active) > 0) & ~driver.finished(active)]
    return [cast("Strategy | None", driver.get(i)) for i in range(len(problems))]
