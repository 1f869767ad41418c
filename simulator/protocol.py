"""The vocabulary shared by the engine and the strategies, in a module that depends on neither.

A strategy sees a :class:`Problem` (one target and the rules of the game) and learns from :class:`Feedback` (what
one batch of queries revealed). Both live here, below the oracle and the strategies, so that strategies depend on
the schema and the kernels only and never on the oracle that produces the feedback (the oracle imports this module,
not the other way round). ``simulator.oracle.Feedback`` and ``simulator.strategies.base.Problem`` remain as
re-exports for older imports.

Examples
--------
>>> import numpy as np
>>> fb = Feedback(declined=np.array([True, False, True]), score=np.array([0.9, 0.1, 0.7]))
>>> fb.evaded.tolist(), fb[1:].score.tolist()
([False, True, False], [0.1, 0.7])
>>> Feedback(declined=np.array([False])).score is None   # feedback: decision
True
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .kernels import Kernels
from .schema import SchemaArrays

__all__ = ["Feedback", "Problem"]


@dataclass(frozen=True)
class Feedback:
    """What the attacker learns per query: always the decision; the score only with ``feedback: score``."""

    declined: np.ndarray
    score: np.ndarray | None = None

    @property
    def evaded(self) -> np.ndarray:
        return ~self.declined

    def __getitem__(self, sl) -> "Feedback":
        return Feedback(self.declined[sl], None if self.score is None else self.score[sl])


@dataclass(frozen=True)
class Problem:
    """What a strategy may know about one target: the transaction it wants through and the rules of the game."""

    x0: np.ndarray  # (d,) the original transaction
    schema: SchemaArrays
    kernels: Kernels
    budget: int
    feedback: str  # "score" or "decision"
    approved_examples: np.ndarray | None = None  # (k, d) transactions the attacker has seen approved
    model: Any = None  # the target model, only when the scenario grants it
    relations: Any = None  # simulator.relations.RelationArrays, or None: relations between features
    extras: np.ndarray | None = None  # (e,) the extra data columns the relations read, for this target
    threshold: float | None = None  # the decision threshold, given with the model when the scenario grants it

    def repair(self, X: np.ndarray) -> np.ndarray:
        """Apply the relations to rows already projected onto the bounds (a no-op without relations)."""
        ra = self.relations
        if ra is None or ra.empty:
            return X
        E = None if self.extras is None else np.asarray(self.extras, np.float64)[None, :]
        return self.kernels.repair(X, self.x0[None, :], np.zeros(len(X), np.int64), E, self.schema, ra)
