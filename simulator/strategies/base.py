"""The ask/tell protocol every search strategy follows, and the registry that names them.

Like Optuna's samplers, a strategy is a plug-in: one class, one ``@register("name")``, and the engine never
branches on its name. :class:`BaseStrategy` is the contract (abstract :meth:`~BaseStrategy.ask` and
:meth:`~BaseStrategy.tell`, each documented with when the engine calls it); :class:`Strategy` is the base every
built-in strategy extends: it implements ``ask``/``tell`` around two hooks (``_ask``, abstract, and ``_tell``) and
keeps the bookkeeping every strategy shares, the best (cheapest) evasion so far and the lowest score seen.
A strategy depends on :mod:`simulator.protocol` (:class:`Problem`, :class:`Feedback`), the schema and the kernels
only, never on the oracle. :mod:`simulator.testing` holds the contract suite any strategy can be checked with.

Lifecycle (who calls what, when):

1. At ``fraudsim validate`` (and before any run) the scenario checks ``needs`` against the attack (e.g.
   ``{"score"}`` fails with ``feedback: decision``) and the strategy's parameters against its constructor's
   annotations (:mod:`simulator.strategies.params`).
2. The engine builds one instance per target with a :class:`Problem` and its own ``numpy.random.Generator``.
3. It loops: ``X = s.ask(n)`` with ``1 <= n <=`` the target's remaining budget; the oracle scores ``X``;
   ``s.tell(X, feedback)``. Candidates of many targets share one oracle call, so one model call per step.
4. It stops a target when its budget is spent or ``s.finished`` is true, then reads ``metrics()`` and
   ``records()`` once.

Parameters are keyword-only constructor arguments with type annotations and defaults; :func:`register` refuses a
class whose parameters are not.

The opening move (``opening: typical``, the default of every strategy that has one) is an informed first batch
built from the approved traffic the attacker has seen (:func:`simulator.strategies.moves.opening_moves`);
``opening: none`` leaves it out, so the search alone has to find an evasion. A strategy registers its opening
rows with :meth:`Strategy.set_opening`; after each ``ask``, :attr:`Strategy.asked_opening` says which asked rows
are opening moves (the runner records it per query in ``queries.opening``).

Examples
--------
A strategy that redraws random valid candidates (the built-in ``random`` does the same):

>>> import numpy as np
>>> from simulator.kernels import MODE_UNIFORM
>>> class Redraw(Strategy):
...     def __init__(self, problem, rng, *, p: float = 0.5, **params):
...         super().__init__(problem, rng, **params)
...         self.p = p
...     def _ask(self, n):
...         return self.mutate(np.repeat(self._X0, n, axis=0), step=0.0, p=self.p, mode=MODE_UNIFORM)
>>> from simulator.schema import FeatureSchema
>>> from simulator.kernels import get_kernels
>>> sa = FeatureSchema.from_mapping(["amount"], {"amount": {"min": 0, "max": 100}}).arrays()
>>> s = Redraw(Problem(x0=np.array([90.0]), schema=sa, kernels=get_kernels("cpu"), budget=5, feedback="decision"),
...            np.random.default_rng(0))
>>> X = s.ask(3)
>>> X.shape, bool(((X >= 0) & (X <= 100)).all())
((3, 1), True)
>>> s.tell(X, Feedback(declined=X[:, 0] > 50))
>>> s.n_told
3
"""
from __future__ import annotations

import abc
import inspect
from typing import Any, Callable, ClassVar, Literal, TypeVar, cast

import numpy as np

from ..errors import ScenarioError
from ..kernels import MODE_LOCAL, MODE_UNIFORM, Kernels  # noqa: F401  (Kernels: re-exported for older imports)
from ..protocol import Feedback, Problem
from ..schema import SchemaArrays  # noqa: F401  (re-exported for older imports)

__all__ = ["REGISTRY", "BaseStrategy", "Strategy", "Problem", "Feedback", "register", "get_strategy", "NEEDS",
           "OPENINGS", "Opening"]

REGISTRY: dict[str, type["Strategy"]] = {}  # name -> class (any BaseStrategy subclass)
OPENINGS = ("typical", "none")
Opening = Literal["typical", "none"]
NEEDS = {"score": "feedback: score", "model": "the model file granted to the attacker", "data": "public data"}


S = TypeVar("S", bound="type[BaseStrategy]")


def register(name: str) -> Callable[[S], S]:
    """Class decorator adding a strategy under ``name``; a second class under the same name is refused, and so is a
    class whose parameters are not keyword-only, annotated and defaulted (they are what ``params`` may set).

    >>> @register("doc-example")
    ... class Doc(Strategy):
    ...     def __init__(self, problem, rng, *, width: int = 3, **params):
    ...         super().__init__(problem, rng, **params)
    ...     def _ask(self, n): return np.repeat(self._X0, n, axis=0)
    >>> @register("doc-untyped")
    ... class Untyped(Strategy):
    ...     def __init__(self, problem, rng, *, width=3, **params):
    ...         super().__init__(problem, rng, **params)
    Traceback (most recent call last):
    ...
    TypeError: strategy 'doc-untyped': parameter 'width' needs a type annotation (e.g. def __init__(self, problem, rng, *, width: int = 3, **params))
    >>> _ = REGISTRY.pop("doc-example")
    """

    def deco(cls: S) -> S:
        if name in REGISTRY:
            raise ValueError(f"strategy name {name!r} is already registered by {REGISTRY[name].__qualname__}")
        if not (isinstance(cls, type) and issubclass(cls, BaseStrategy)):
            raise TypeError(f"strategy {name!r}: {cls!r} must subclass simulator.strategies.Strategy")
        _check_signature(name, cls)
        cls.name = name
        REGISTRY[name] = cast("type[Strategy]", cls)  # the engine uses only what BaseStrategy declares
        return cls

    return deco


def _check_signature(name: str, cls: type) -> None:
    from .params import strategy_parameters

    for pname, p in (strategy_parameters(cls) or {}).items():
        if p.kind is not inspect.Parameter.KEYWORD_ONLY:
            why = "must be keyword-only (put it after '*')"
        elif p.annotation is inspect.Parameter.empty:
            why = "needs a type annotation"
        elif p.default is inspect.Parameter.empty:
            why = "needs a default"
        else:
            continue
        ann = p.annotation if p.annotation is not inspect.Parameter.empty else type(p.default)
        example = f"{pname}: {getattr(ann, '__name__', 'int')} = {p.default if p.default is not p.empty else 3!r}"
        raise TypeError(f"strategy {name!r}: parameter {pname!r} {why} "
                        f"(e.g. def __init__(self, problem, rng, *, {example}, **params))")


def get_strategy(name: str, *, field: str = "attack.strategies") -> type["Strategy"]:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ScenarioError(f"unknown strategy {name!r}; available: {', '.join(sorted(REGISTRY))}", field=field) from None


class BaseStrategy(abc.ABC):
    """The contract between the engine and a search strategy, like Optuna's ``BaseSampler``.

    Subclass :class:`Strategy` rather than this class: it implements :meth:`ask` and :meth:`tell` with the shared
    bookkeeping. Subclassing ``BaseStrategy`` directly means keeping every attribute below up to date yourself.
    """

    #: the registry name (set by :func:`register`)
    name: ClassVar[str] = "abstract"
    #: what the strategy needs beyond decisions: ``"score"``, ``"model"``, ``"data"`` (see ``NEEDS``); checked at
    #: validation, before the first query
    needs: ClassVar[frozenset[str]] = frozenset()
    #: preferred candidates per step (the scenario's ``attack.batch_size`` overrides it)
    batch_size: ClassVar[int] = 10
    #: (low, high) per numeric keyword parameter, checked at validate; others must lie in [0, 1e6] (params.py)
    param_bounds: ClassVar[dict[str, tuple[float, float]]] = {}

    # state the engine reads after each tell
    problem: Problem
    finished: bool  #: True once the strategy has nothing left to try; the engine stops asking
    best_x: np.ndarray | None  #: the cheapest evading candidate so far (a campaign replays it)
    best_cost: float
    asked_opening: np.ndarray  #: per row of the last ask, True for an opening move (stored in queries.opening)

    def __init__(self, problem: Problem, rng: np.random.Generator, **params: Any) -> None:
        """Called when: the engine starts on a target (after validation, before the first ask), with the target's
        :class:`Problem`, its own generator and the scenario's ``attack.params.<name>``. Subclasses take their
        parameters as typed keyword-only arguments and pass the rest on: what is left over here is unknown."""
        if params:
            key = next(iter(params))
            raise ScenarioError(f"unknown parameter {key!r} for strategy {self.name!r}",
                                field=f"attack.params.{self.name}.{key}")
        self.problem = problem
        self.rng = rng

    @abc.abstractmethod
    def ask(self, n: int) -> np.ndarray:
        """Propose the next ``n`` candidates for this strategy's target.

        Called when: the engine starts a step for this target, which has budget left and is not ``finished``;
        ``1 <= n <=`` the remaining budget (at most ``batch_size`` unless the scenario says otherwise; in a
        campaign, once a day per agent with ``n`` its probes for the day). Every ask is followed by exactly one
        :meth:`tell` with the same rows before the next ask.

        Must return a float64 array of shape ``(n, d)`` whose rows already satisfy the constraints (frozen columns
        equal to ``problem.x0``, bounds, directions, categories, relations: project with the kernels); the oracle
        refuses anything else as a strategy bug. Draw randomness only from the generator given to the
        constructor, so a seed reproduces the run.
        """

    @abc.abstractmethod
    def tell(self, X: np.ndarray, feedback: Feedback) -> None:
        """Learn from the candidates of the last :meth:`ask` and what the oracle answered.

        Called when: the oracle has scored the rows ``X`` of the last ask (one call per ask, same rows, same
        order). ``feedback.declined`` is always there; ``feedback.score`` only with ``feedback: score`` (it is
        ``None`` otherwise, and a runtime defence may have perturbed it).
        """

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
        """:meth:`records` for a target no candidate can reach (its relations cannot be met): no instance exists.
        Called once per such target, instead of building the strategy."""
        return {}


class Strategy(BaseStrategy):
    """Base class of every built-in strategy: subclasses implement :meth:`_ask` and optionally :meth:`_tell`.

    The constructor is called as :meth:`BaseStrategy.__init__` says; subclasses take their parameters as typed
    keyword-only arguments and pass the rest on (``**params``).
    """

    def __init__(self, problem: Problem, rng: np.random.Generator, **params: Any):
        super().__init__(problem, rng, **params)  # unknown parameters: ScenarioError
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
        """See :meth:`BaseStrategy.ask`; calls :meth:`_ask` and marks the opening moves among its rows."""
        X = self._ask(int(n))
        if getattr(X, "shape", None) != (n, self.d):  # a strategy bug: say so even under python -O
            raise ValueError(f"strategy {self.name!r}: ask({n}) returned shape {getattr(X, 'shape', None)}, "
                             f"expected {(n, self.d)}")
        if self._opening_keys:
            C = np.ascontiguousarray(X, dtype=np.float64)
            self.asked_opening = np.fromiter((x.tobytes() in self._opening_keys for x in C), dtype=bool, count=n)
        else:
            self.asked_opening = np.zeros(n, dtype=bool)
        return X

    def tell(self, X: np.ndarray, feedback: Feedback) -> None:
        """See :meth:`BaseStrategy.tell`; updates the best evasion and the lowest score, then calls :meth:`_tell`."""
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

    @abc.abstractmethod
    def _ask(self, n: int) -> np.ndarray:
        """The strategy's own proposal: ``n`` valid candidates. Called by :meth:`ask` (see there for when)."""

    def _tell(self, X: np.ndarray, feedback: Feedback) -> None:
        """The strategy's own learning. Called by :meth:`tell` after the shared bookkeeping is updated."""

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
