"""One strategy against many targets through one oracle, with one model call per step for all targets."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .oracle import Oracle
from .strategies.base import Problem, Strategy


def target_rng(seed: int, strategy_index: int, target_id: int) -> np.random.Generator:
    """Each (strategy, target) pair draws from its own stream, so a run does not depend on target order."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(strategy_index), int(target_id)]))


def run_strategy(strategy_cls: type[Strategy], params: dict, *, oracle: Oracle, problems: Sequence[Problem],
                 rngs: Sequence[np.random.Generator], batch_size: int | None = None,
                 on_step: Callable[[int], None] | None = None, only: np.ndarray | None = None) -> list[Strategy | None]:
    """Drive ask/tell for every target until each has spent its budget or finished; returns the strategies
    (``None`` for targets left out by ``only``, e.g. targets whose relations no point can meet)."""
    keep = set(range(len(problems)) if only is None else (int(i) for i in only))
    strategies = [strategy_cls(p, rng, **params) if i in keep else None
                  for i, (p, rng) in enumerate(zip(problems, rngs))]
    batch = int(batch_size or strategy_cls.batch_size)
    active = np.array([i for i, s in enumerate(strategies) if s is not None and not s.finished], dtype=np.int64)
    while len(active):
        ks = np.minimum(batch, oracle.remaining(active))
        X = np.vstack([strategies[i].ask(int(k)) for i, k in zip(active, ks)])
        targets = np.repeat(active, ks)
        opening = np.concatenate([strategies[i].asked_opening for i in active])
        fb = oracle.query(targets, X, opening=opening)
        start = 0
        for i, k in zip(active, ks):
            strategies[i].tell(X[start : start + k], fb[start : start + k])
            start += k
        if on_step is not None:
            on_step(int(ks.sum()))
        keep = (oracle.remaining(active) > 0) & np.array([not strategies[i].finished for i in active], dtype=bool)
        active = active[keep]
    return strategies
