"""The strategy contract, shipped with fraudsim so that a team can check its own strategy the way fraudsim checks
its built-in ones (like ``optuna.testing`` for samplers and scikit-learn's ``parametrize_with_checks``).

Each check drives the strategy through the ask/tell protocol itself, against a real small XGBoost model trained
once per process on synthetic data, and raises :class:`ContractError` (an ``AssertionError``) naming the check,
the strategy and what broke:

``ask_shapes``
    ``ask(n)`` returns a float64 ``numpy.ndarray`` of shape ``(n, d)`` for any ``n`` (and ``asked_opening`` of
    shape ``(n,)``).
``budget``
    with budgets smaller than ``batch_size`` (1, 2, 5), every ask is answered with exactly the rows asked for and
    the strategy never needs more than its budget.
``constraints``
    every asked row already satisfies the constraints: bounds, frozen columns, directions, categories and a
    relation between features (``if card_present == 1 then cat in [0, 1, 2]``), as the oracle checks them.
``determinism``
    the same seed gives the same candidates.
``feedback_modes``
    ``tell`` accepts decision-only feedback (``score is None``) unless the strategy ``needs`` scores, and scored
    feedback.
``foreign_schema``
    the strategy works on a schema that looks nothing like fraudsim's own (column names with spaces, unicode,
    upper case, SQL keywords, ``score`` and ``strategy``) with NaN in frozen columns: the NaN stay, and no NaN or
    infinity appears anywhere else.
``best``
    for strategies built on :class:`~simulator.strategies.Strategy`: the recorded best evasion was asked, evaded,
    costs what ``best_cost`` says, and ``best_cost`` never increases.

Use :func:`check_strategy` (all checks, or some) or subclass :class:`StrategyContract` in a pytest module to get
one test per check.

Examples
--------
>>> import numpy as np
>>> from simulator.kernels import MODE_UNIFORM
>>> from simulator.strategies import Strategy, register, REGISTRY
>>> @register("doc-redraw")
... class Redraw(Strategy):
...     def __init__(self, problem, rng, *, p: float = 0.5, **params):
...         super().__init__(problem, rng, **params)
...         self.p = p
...     def _ask(self, n):
...         return self.mutate(np.repeat(self._X0, n, axis=0), step=0.0, p=self.p, mode=MODE_UNIFORM)
>>> check_strategy("doc-redraw", checks=["ask_shapes", "constraints"], p=0.3)
>>> class Sloppy(Redraw):  # forgets to project: candidates leave the bounds
...     def _ask(self, n):
...         return self._X0 + self.rng.normal(0, 1000, (n, self.d))
>>> check_strategy(Sloppy, checks=["constraints"])
Traceback (most recent call last):
...
simulator.testing.ContractError: constraints: strategy 'Sloppy' asked ... rows that break the constraints ...
>>> _ = REGISTRY.pop("doc-redraw")
"""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np

from .protocol import Feedback, Problem

if TYPE_CHECKING:
    from .strategies.base import BaseStrategy

__all__ = ["CHECKS", "ContractError", "StrategyContract", "check_strategy"]

BUDGET = 30  # queries per target in the contract drives: enough for an opening and a few steps of search
N_TARGETS = 2


class ContractError(AssertionError):
    """A strategy broke the ask/tell contract; the message names the check and what broke."""


# -- the worlds the checks play in -------------------------------------------------------------------------------
@dataclass(frozen=True)
class World:
    """A real small XGBoost model with its schema, a few declined targets and approved traffic."""

    names: tuple[str, ...]
    model: Any
    threshold: float
    sa: Any  # SchemaArrays
    relations: Any  # RelationArrays or None
    targets: np.ndarray  # (N_TARGETS, d)
    approved: np.ndarray


def _train(X: np.ndarray, y: np.ndarray, names: Sequence[str]):
    import xgboost as xgb

    from .target import load_model

    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "eta": 0.3, "nthread": 1, "seed": 0},
                        xgb.DMatrix(X, label=y, feature_names=list(names)), 25)
    return load_model(booster)


def _pick(world_args: dict, X: np.ndarray, model, threshold: float) -> World:
    scores = model.predict_score(X)
    targets = X[scores >= max(0.6, threshold)][:N_TARGETS]
    approved = X[scores < threshold][:200]
    if len(targets) < N_TARGETS or len(approved) < 20:  # pragma: no cover - the synthetic data is fixed
        raise RuntimeError("the contract's synthetic world has too few targets; this is a fraudsim bug")
    return World(model=model, threshold=threshold, targets=np.ascontiguousarray(targets), approved=approved,
                 **world_args)


HOME_SPECS = {
    "amount": {"type": "continuous", "min": 0.0, "max": 1000.0, "cost": 1.0},
    "hour": {"type": "integer", "min": 0, "max": 23, "cost": 0.5},
    "cat": {"type": "categorical", "categories": [0, 1, 2, 3], "cost": 0.5},
    "new_device": {"type": "binary", "direction": "decrease", "cost": 1.0},
    "card_present": {"type": "binary", "direction": "increase", "cost": 2.0},
    "distance": {"type": "continuous", "min": 0.0, "max": 500.0, "direction": "decrease"},
}
HOME_NAMES = tuple(HOME_SPECS) + ("velocity",)  # velocity is not listed: frozen
HOME_RELATIONS = ("if card_present == 1 then cat in [0, 1, 2]",)


def home_data(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows of the home world's traffic (columns ``HOME_NAMES``, the relation holds) and their fraud labels."""
    X = np.column_stack([rng.uniform(0, 1000, n), rng.integers(0, 24, n), rng.integers(0, 4, n),
                         rng.integers(0, 2, n), rng.integers(0, 2, n), rng.uniform(0, 500, n),
                         rng.poisson(2, n)]).astype(np.float64)
    X[:, 4] = np.where(X[:, 2] == 3, 0.0, X[:, 4])  # the relation holds in the data
    logit = (X[:, 0] / 250 - 2 + 1.5 * X[:, 3] - 1.5 * X[:, 4] + (X[:, 1] < 6) + 0.8 * (X[:, 2] == 3)
             + X[:, 5] / 250 + 0.3 * X[:, 6] - 2.5)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


@functools.lru_cache(maxsize=None)
def home_world() -> World:
    """Mixed feature types, one frozen column and one relation between features."""
    import polars as pl

    from .relations import compile_relations, parse_relations
    from .schema import FeatureSchema

    names = HOME_NAMES
    X, y = home_data(np.random.default_rng(0), 4000)
    sa = FeatureSchema.from_mapping(list(names), HOME_SPECS).with_bounds_from(pl.DataFrame({"velocity": [0.0, 20.0]})).arrays()
    ra = compile_relations(parse_relations(list(HOME_RELATIONS)), list(names))
    return _pick(dict(names=names, sa=sa, relations=ra), X, _train(X, y, names), 0.3)


@functools.lru_cache(maxsize=None)
def foreign_world() -> World:
    """A schema that looks nothing like fraudsim's: odd names, and NaN (missing) in frozen columns."""
    import polars as pl

    from .schema import FeatureSchema

    specs = {
        "Montant (€)": {"type": "continuous", "min": 0.0, "max": 50.0, "cost": 2.0},
        "SELECT": {"type": "integer", "min": -5, "max": 5, "cost": 1.0},
        "score": {"type": "categorical", "categories": [10, 20, 30], "cost": 1.0},
        "strategy": {"type": "binary", "direction": "decrease", "cost": 0.5},
    }
    names = tuple(specs) + ("ÉTAT civil", "group by")  # frozen, with NaN
    rng = np.random.default_rng(1)
    n = 3000
    X = np.column_stack([rng.uniform(0, 50, n), rng.integers(-5, 6, n), rng.choice([10.0, 20.0, 30.0], n),
                         rng.integers(0, 2, n), rng.normal(0, 1, n), rng.uniform(0, 9, n)]).astype(np.float64)
    logit = X[:, 0] / 10 - 2 + 0.3 * X[:, 1] + (X[:, 2] == 30) + 1.2 * X[:, 3] + 0.5 * X[:, 4] - 1.0
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    X[rng.random(n) < 0.5, 4] = np.nan  # missing values in the frozen columns, as real data has
    X[rng.random(n) < 0.5, 5] = np.nan
    model = _train(X, y, names)
    frozen = pl.DataFrame({"ÉTAT civil": [-4.0, 4.0], "group by": [0.0, 9.0]})
    sa = FeatureSchema.from_mapping(list(names), specs).with_bounds_from(frozen).arrays()
    world = _pick(dict(names=names, sa=sa, relations=None), X, model, 0.3)
    if not np.isnan(world.targets[:, 4:]).any():  # pragma: no cover - the synthetic data is fixed
        raise RuntimeError("the contract's foreign world has no NaN in its targets; this is a fraudsim bug")
    return world


# -- driving a strategy ------------------------------------------------------------------------------------------
def _resolve(strategy: "type[BaseStrategy] | str") -> "type[BaseStrategy]":
    from .strategies import get_strategy
    from .strategies.base import BaseStrategy

    cls = get_strategy(strategy) if isinstance(strategy, str) else strategy
    if not (isinstance(cls, type) and issubclass(cls, BaseStrategy)):
        raise TypeError(f"expected a strategy class or a registered name, got {strategy!r}")
    return cls


def _label(cls: type) -> str:
    name = getattr(cls, "name", "abstract")
    return name if name != "abstract" and cls.__dict__.get("name") == name else cls.__qualname__


@dataclass
class _Drive:
    """One strategy against one target: every asked batch and the strategy afterwards."""

    strategy: Any
    batches: list[np.ndarray]
    feedback: list[Feedback]
    best_costs: list[float]

    @property
    def X(self) -> np.ndarray:
        return np.vstack(self.batches) if self.batches else np.empty((0, len(self.strategy.x0)))


class _Run:
    def __init__(self, check: str, cls: "type[BaseStrategy]", params: dict):
        self.check, self.cls, self.params = check, cls, params

    def fail(self, what: str) -> ContractError:
        return ContractError(f"{self.check}: strategy {_label(self.cls)!r} {what}")

    def problem(self, world: World, i: int, *, budget: int, feedback: str) -> Problem:
        from .kernels import get_kernels

        granted = "model" in self.cls.needs
        return Problem(x0=world.targets[i].copy(), schema=world.sa, kernels=get_kernels("cpu"), budget=budget,
                       feedback=feedback, approved_examples=world.approved, model=world.model if granted else None,
                       relations=world.relations, threshold=world.threshold if granted else None)

    def make(self, problem: Problem, seed: int):
        try:
            return self.cls(problem, np.random.default_rng(seed), **self.params)
        except Exception as exc:
            raise self.fail(f"could not be built: {type(exc).__name__}: {exc}") from exc

    def ask(self, s, n: int) -> np.ndarray:
        try:
            X = s.ask(n)
        except Exception as exc:
            raise self.fail(f"ask({n}) raised {type(exc).__name__}: {exc}") from exc
        if not isinstance(X, np.ndarray):
            raise self.fail(f"ask({n}) returned {type(X).__name__}, not a numpy array")
        if X.dtype != np.float64:
            raise self.fail(f"ask({n}) returned dtype {X.dtype}, not float64")
        if X.shape != (n, len(s.problem.x0)):
            raise self.fail(f"ask({n}) returned shape {X.shape}, expected {(n, len(s.problem.x0))}")
        opening = getattr(s, "asked_opening", None)
        if not (isinstance(opening, np.ndarray) and opening.shape == (n,) and opening.dtype == bool):
            raise self.fail(f"after ask({n}), asked_opening is not a boolean array of shape ({n},)")
        return X

    def tell(self, s, X: np.ndarray, fb: Feedback) -> None:
        try:
            s.tell(X, fb)
        except Exception as exc:
            mode = "decision-only" if fb.score is None else "scored"
            raise self.fail(f"tell raised {type(exc).__name__} on {mode} feedback: {exc}") from exc

    def drive(self, world: World, i: int, *, seed: int = 0, budget: int = BUDGET, batch: int | None = None,
              feedback: str | None = None) -> _Drive:
        """The engine's loop for one target: ask at most the remaining budget, score, tell, until spent or
        finished."""
        feedback = feedback or ("score" if "score" in self.cls.needs else "decision")
        s = self.make(self.problem(world, i, budget=budget, feedback=feedback), seed)
        batch = int(batch or self.cls.batch_size)
        out = _Drive(s, [], [], [])
        remaining = budget
        while remaining > 0 and not bool(s.finished):
            n = min(batch, remaining)
            X = self.ask(s, n)
            score = world.model.predict_score(X)
            fb = Feedback(declined=score >= world.threshold, score=score if feedback == "score" else None)
            self.tell(s, X.copy(), fb)
            out.batches.append(X.copy())
            out.feedback.append(fb)
            out.best_costs.append(float(getattr(s, "best_cost", np.inf)))
            remaining -= n
        return out

    def invalid(self, world: World, i: int, X: np.ndarray) -> np.ndarray:
        from .kernels import get_kernels

        k = get_kernels("cpu")
        origin = np.full(len(X), i, np.int64)
        return k.invalid(X, world.targets, origin, world.sa, None, world.relations)


# -- the checks --------------------------------------------------------------------------------------------------
def check_ask_shapes(run: _Run) -> None:
    w = home_world()
    s = run.make(run.problem(w, 0, budget=10_000, feedback="score"), 1)
    for n in (1, 3, 10, 17, 2, 25):
        X = run.ask(s, n)
        score = w.model.predict_score(X)
        run.tell(s, X, Feedback(declined=score >= w.threshold, score=score))


def check_budget(run: _Run) -> None:
    w = home_world()
    batch = max(8, int(run.cls.batch_size))
    for budget in (1, 2, 5):
        d = run.drive(w, 0, budget=budget, batch=batch)
        if len(d.X) > budget:  # the drive never asks for more; this guards the check itself
            raise run.fail(f"was given {len(d.X)} queries on a budget of {budget}")


def check_constraints(run: _Run) -> None:
    w = home_world()
    for i in range(N_TARGETS):
        X = run.drive(w, i, seed=i).X
        bad = run.invalid(w, i, X)
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            raise run.fail(f"asked {int(bad.sum())} of {len(X)} rows that break the constraints (first: row {j}, "
                           f"{_diff(w, i, X[j])}); project candidates with the kernels (Strategy.project)")


def check_determinism(run: _Run) -> None:
    w = home_world()
    a, b = run.drive(w, 1, seed=7).X, run.drive(w, 1, seed=7).X
    if a.shape != b.shape or not np.array_equal(a, b, equal_nan=True):
        raise run.fail("asked different candidates on two runs with the same seed; draw randomness only from "
                       "the generator given to the constructor")


def check_feedback_modes(run: _Run) -> None:
    w = home_world()
    modes = ("score",) if "score" in run.cls.needs else ("decision", "score")
    for mode in modes:
        run.drive(w, 0, feedback=mode)


def check_foreign_schema(run: _Run) -> None:
    w = foreign_world()
    for i in range(N_TARGETS):
        X = run.drive(w, i, seed=i).X
        nan0 = np.isnan(w.targets[i])
        if not (np.isnan(X[:, nan0]).all() and np.isfinite(X[:, ~nan0]).all()):
            raise run.fail("changed a missing (NaN) frozen value or put NaN/inf in a column on the foreign schema "
                           f"({', '.join(w.names)})")
        bad = run.invalid(w, i, X)
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            raise run.fail(f"asked {int(bad.sum())} rows that break the constraints on the foreign schema "
                           f"(first: {_diff(w, i, X[j])})")


def check_best(run: _Run) -> None:
    from .kernels import get_kernels
    from .strategies.base import Strategy

    if not issubclass(run.cls, Strategy):
        return  # a BaseStrategy keeps its own books
    w = home_world()
    k = get_kernels("cpu")
    for i in range(N_TARGETS):
        d = run.drive(w, i, seed=i)
        if any(b > a for a, b in zip(d.best_costs, d.best_costs[1:])):
            raise run.fail(f"best_cost increased: {d.best_costs}")
        s = d.strategy
        if s.best_x is None:
            continue
        X = d.X
        evaded = np.concatenate([fb.evaded for fb in d.feedback])
        if not (X[evaded] == s.best_x).all(axis=1).any():
            raise run.fail("best_x is not one of the asked candidates that evaded")
        cost = float(k.cost(s.best_x[None, :], w.targets, np.array([i]), w.sa)[0])
        if not np.isclose(cost, s.best_cost):
            raise run.fail(f"best_cost is {s.best_cost}, but best_x costs {cost}")


def _diff(w: World, i: int, x: np.ndarray) -> str:
    x0 = w.targets[i]
    changed = [j for j in range(len(x)) if not (x[j] == x0[j] or (np.isnan(x[j]) and np.isnan(x0[j])))]
    return ", ".join(f"{w.names[j]}: {x0[j]:g} -> {x[j]:g}" for j in changed[:4]) or "no feature changed"


CHECKS: dict[str, Callable[[_Run], None]] = {
    "ask_shapes": check_ask_shapes,
    "budget": check_budget,
    "constraints": check_constraints,
    "determinism": check_determinism,
    "feedback_modes": check_feedback_modes,
    "foreign_schema": check_foreign_schema,
    "best": check_best,
}


def check_strategy(strategy: "type[BaseStrategy] | str", *, checks: Iterable[str] | None = None, **params: Any) -> None:
    """Run the contract checks (all by default) on a strategy class or registered name with ``params``; raises
    :class:`ContractError` at the first broken one. ``params`` are checked like a scenario's first."""
    from .strategies.params import check_params

    cls = _resolve(strategy)
    check_params(cls, params, field=f"attack.params.{_label(cls)}")
    names = list(CHECKS) if checks is None else list(checks)
    unknown = [c for c in names if c not in CHECKS]
    if unknown:
        raise ValueError(f"unknown check {unknown[0]!r}; the checks are: {', '.join(CHECKS)}")
    for name in names:
        CHECKS[name](_Run(name, cls, dict(params)))


class StrategyContract:
    """Subclass in a pytest module to get one test per contract check::

        class TestMyStrategy(StrategyContract):
            strategy = MyStrategy      # or its registered name
            params = {"width": 4}      # optional
    """

    strategy: "type[BaseStrategy] | str | None" = None
    params: dict[str, Any] = {}

    def _check(self, name: str) -> None:
        if self.strategy is None:
            raise TypeError(f"{type(self).__name__}: set `strategy` to a strategy class or a registered name")
        check_strategy(self.strategy, checks=[name], **self.params)

    def test_ask_shapes(self) -> None:
        self._check("ask_shapes")

    def test_budget(self) -> None:
        self._check("budget")

    def test_constraints(self) -> None:
        self._check("constraints")

    def test_determinism(self) -> None:
        self._check("determinism")

    def test_feedback_modes(self) -> None:
        self._check("feedback_modes")

    def test_foreign_schema(self) -> None:
        self._check("foreign_schema")

    def test_best(self) -> None:
        self._check("best")


assert set(CHECKS) == {n.removeprefix("test_") for n, _ in inspect.getmembers(StrategyContract) if n.startswith("test_")}
