"""The ask/tell protocol every search strategy follows, and the registry that names them.

Lifecycle (who calls what, when):

1. The runner checks ``needs`` against the scenario before any query (e.g. ``{"score"}`` fails with
   ``feedback: decision``), then builds one strategy instance per target with a :class:`Problem` and its own
   ``numpy.random.Generator``.
2. It loops: ``X = s.ask(n)`` with ``n`` at most the target's remaining budget; the oracle scores ``X``;
   ``s.tell(X, feedback)``. Candidates of many targets share one oracle call, so one model call per step.
3. It stops a target when its budget is spent or ``s.finished`` is true.

``ask`` must return exactly ``n`` rows that already satisfy the constraints (use :meth:`Strategy.project` or
:meth:`Strategy.mutate`); ``tell`` receives only what the feedback mode allows. The base class keeps the
bookkeeping every strategy shares: the best (cheapest) evasion so far and the lowest score seen.

The opening move (``opening: typical``, the default of every strategy that has one) is an informed first batch
built from the approved traffic the attacker has seen (:func:`simulator.strategies.moves.opening_moves`);
``opening: none`` leaves it out, so the search alone has to find an evasion. A strategy registers its opening
rows with :meth:`Strategy.set_opening`; after each ``ask``, :attr:`Strategy.asked_opening` says which asked rows
are opening moves (the runner records it per query in ``queries.opening``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from ..errors import ScenarioError
from ..kernels import MODE_LOCAL, MODE_UNIFORM, Kernels
from ..oracle import Feedback
from ..schema import SchemaArrays

REGISTRY: dict[str, type["Strategy"]] = {}
OPENINGS = ("typical", "none")
Opening = Literal["typical", "none"]
NEEDS = {"score": "feedback: score", "model": "the model file granted to the attacker", "data": "public data"}


def register(name: str):
    """Class decorator adding a strategy under ``name``; a second class under the same name is refused."""

    def deco(cls: type[Strategy]) -> type[Strategy]:
        if name in REGISTRY:
            raise ValueError(f"strategy name {name!r} is already registered by {REGISTRY[name].__qualname__}")
        cls.name = name
        REGISTRY[name] = cls
        return cls

    return deco


def get_strategy(name: str, *, field: str = "attack.strategies") -> type["Strategy"]:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ScenarioError(f"unknown strategy {name!r}; available: {', '.join(sorted(REGISTRY))}", field=field) from None


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


class Strategy:
    """Base class: subclasses implement :meth:`_ask` and optionally :meth:`_tell`."""

    name: ClassVar[str] = "abstract"
    needs: ClassVar[frozenset[str]] = frozenset()
    batch_size: ClassVar[int] = 10  # preferred candidates per step
    #: (low, high) per numeric keyword parameter, checked at validate; others must lie in [0, 1e6] (params.py)
    param_bounds: ClassVar[dict[str, tuple[float, float]]] = {}

    def __init__(self, problem: Problem, rng: np.random.Generator, **params: Any):
        if params:
            raise ScenarioError(f"unknown parameter {next(iter(params))!r} for strategy {self.name!r}",
                                field="attack.strategies")
        self.problem = problem
        self.rng = rng
        self.x0 = np.ascontiguousarray(problem.x0, dtype=np.float64)
        self._X0 = self.x0[None, :]
        self.d = len(self.x0)
        self.mutable_idx = np.flatnonzero(problem.schema.mutable)
        self.n_told = 0
        self.best_x: np.ndarray | None = None  # cheapest evading candidate so far
        self.best_cost = np.inf
        self.first_evasion_at: int | None = None
        self.lowest_score = np.inf
        self.lowest_score_x = self.x0.copy()
        self.finished = len(self.mutable_idx) == 0
        self._opening_keys: frozenset[bytes] = frozenset()
        self.asked_opening = np.zeros(0, dtype=bool)  # per row of the last ask: is it an opening move?

    # -- protocol --------------------------------------------------------------------------------------------
    def ask(self, n: int) -> np.ndarray:
        X = self._ask(int(n))
        assert X.shape == (n, self.d), f"{self.name}.ask({n}) returned shape {X.shape}"
        if self._opening_keys:
            C = np.ascontiguousarray(X, dtype=np.float64)
            self.asked_opening = np.fromiter((x.tobytes() in self._opening_keys for x in C), dtype=bool, count=n)
        else:
            self.asked_opening = np.zeros(n, dtype=bool)
        return X

    def tell(self, X: np.ndarray, feedback: Feedback) -> None:
        evaded = feedback.evaded
        if evaded.any():
            c = self.cost(X[evaded])
            k = int(np.argmin(c))
            if self.first_evasion_at is None:
                self.first_evasion_at = self.n_told + int(np.flatnonzero(evaded)[0]) + 1
            if c[k] < self.best_cost:
                self.best_cost, self.best_x = float(c[k]), X[evaded][k].copy()
                if self.best_cost == 0.0:
                    self.finished = True
        if feedback.score is not None and len(X):
            k = int(np.argmin(feedback.score))
            if feedback.score[k] < self.lowest_score:
                self.lowest_score, self.lowest_score_x = float(feedback.score[k]), X[k].copy()
        self._tell(X, feedback)
        self.n_told += len(X)

    def metrics(self) -> dict[str, float]:
        """Numbers worth keeping per target (e.g. a surrogate's agreement with the target); stored by the runner
        in the ``strategy_metrics`` table. Called once, after the strategy's last ``tell``."""
        return {}

    def records(self) -> dict[str, dict[str, Any]]:
        """Rows this strategy keeps for its target in tables of its own, ``{table: {column: value}}`` (the runner
        adds run_id, strategy and target_id and appends them). Called once, after the last ``tell``."""
        return {}

    @classmethod
    def infeasible_record(cls) -> dict[str, dict[str, Any]]:
        """:meth:`records` for a target no candidate can reach (its relations cannot be met): no instance exists."""
        return {}

    def _ask(self, n: int) -> np.ndarray:
        raise NotImplementedError

    def _tell(self, X: np.ndarray, feedback: Feedback) -> None:
        pass

    # -- tools every strategy uses ----------------------------------------------------------------------------
    def check_opening(self, opening: str) -> bool:
        """Validate an ``opening`` parameter; True when the strategy should play its opening move."""
        if opening not in OPENINGS:
            raise ScenarioError(f"unknown opening {opening!r}; use one of {', '.join(OPENINGS)}",
                                field=f"attack.params.{self.name}.opening")
        return opening == "typical"

    def set_opening(self, X: np.ndarray) -> np.ndarray:
        """Register the rows of the opening move, so asked rows equal to one are recorded as opening queries."""
        X = np.ascontiguousarray(np.atleast_2d(X), dtype=np.float64)
        self._opening_keys = frozenset(x.tobytes() for x in X)
        return X

    def project(self, X: np.ndarray) -> np.ndarray:
        return self.problem.repair(self.problem.kernels.project(X, self._X0, np.zeros(len(X), np.int64),
                                                                self.problem.schema))

    def cost(self, X: np.ndarray) -> np.ndarray:
        return self.problem.kernels.cost(X, self._X0, np.zeros(len(X), np.int64), self.problem.schema)

    def mutate(self, base: np.ndarray, step, p, mode: int = MODE_LOCAL) -> np.ndarray:
        """Random valid moves from the rows of ``base`` (see :func:`simulator.kernels.reference.mutate`)."""
        n = len(base)
        U, Z, V = self.rng.random((n, self.d)), self.rng.standard_normal((n, self.d)), self.rng.random(n)
        return self.problem.repair(self.problem.kernels.mutate(
            base, self._X0, np.zeros(n, np.int64), U, Z, V, np.broadcast_to(np.asarray(step, np.float64), (n,)),
            np.broadcast_to(np.asarray(p, np.float64), (n,)), mode, self.problem.schema))

    def cheaper_redraws(self, n: int, *, pool: int = 20, p_max: float = 0.6) -> np.ndarray:
        """Up to ``n`` random redraws (as random search draws them) that cost less than the best evasion so far:
        once something evades, a dearer candidate cannot improve the result, so it is not worth a query."""
        if n <= 0:
            return np.empty((0, self.d))
        m = max(pool * n, 100)
        X = self.mutate(np.repeat(self._X0, m, axis=0), step=0.0, p=self.rng.uniform(0.0, p_max, m), mode=MODE_UNIFORM)
        if self.best_x is not None:
            X = X[self.cost(X) < self.best_cost]
        return X[:n]

    def pull_back(self, x: np.ndarray, n: int) -> np.ndarray:
        """Cheaper variants of an evading ``x``: each changed feature is, at random, kept, reverted to the
        original, or moved part of the way back."""
        diff = x != self.x0
        keep = self.rng.random((n, self.d))
        frac = self.rng.random((n, self.d))
        alpha = np.where(keep < 0.35, 0.0, np.where(keep < 0.7, 1.0, frac))  # 0: revert, 1: keep, else: partway
        alpha = np.where(diff, alpha, 0.0)
        return self.project(self.x0 + alpha * (x - self.x0))
