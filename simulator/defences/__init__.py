"""Defences as plug-ins behind one protocol.

Training-time defences (``fraudsim harden``) each turn the base model's training set-up into one or more hardened
**candidates**: a model object (``feature_names``, ``predict_score``, ``kind``, ``sha256``, ``card``) plus the
native model file(s) it is made of. They live one per file in this package, subclass :class:`DefenceBase` and
register with :func:`register_defence`; the hardening driver (:mod:`simulator.harden`) never branches on their names.

Lifecycle, for every method listed in ``harden.methods``:

1. ``cls.check(kind)`` before anything is trained or written: may the method apply to this model kind?
2. ``cls(**params)`` with the scenario's ``harden.params[method]`` (keyword-only, typed, defaulted).
3. ``defence.build(ctx)`` returns candidates, trained through :class:`~simulator.harden.HardenContext`
   (``ctx.train``, ``ctx.attack``), never by touching a booster.

Examples
--------
>>> sorted(DEFENCES)[:3]
['adversarial_combined', 'adversarial_training', 'cheap_ball']
>>> get_defence("nope", field="harden.methods.0")
Traceback (most recent call last):
...
simulator.errors.ScenarioError: harden.methods.0: unknown hardening method 'nope'; known: adversarial_combined, adversarial_training, cheap_ball, ensemble, monotone, robust_gate, squeeze, tuning
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Protocol, TypeVar

from ..errors import ScenarioError

def _trainable() -> tuple[str, ...]:
    from ..target.train import trainable_kinds

    return trainable_kinds()


TREE_KINDS = _trainable()  # the kinds fraudsim can train (XGBoost, LightGBM): what training-time defences apply to


@dataclass
class Candidate:
    """One hardened model: ``model`` scores, ``members`` are the native models it is built from (saved as files),
    ``wrapper`` says how the card reassembles it (``None``: the single member is the model)."""

    name: str
    method: str
    model: Any
    members: list = field(default_factory=list)  # simulator.target.train.TrainedModel-like: .model, .card
    params: dict = field(default_factory=dict)
    wrapper: dict | None = None
    notes: str = ""
    extra_tables: dict = field(default_factory=dict)  # table name -> list of row dicts for the DuckDB file


class Defence(Protocol):
    """A training-time defence: builds hardened candidates from the hardening context."""

    name: ClassVar[str]
    kinds: ClassVar[tuple[str, ...]]  # model kinds it can harden

    def build(self, ctx: Any) -> list[Candidate]: ...


class DefenceBase:
    """Base class of the registered defences: ``kinds`` is the class's own, ``name`` is set by
    :func:`register_defence`; ``build`` is the one method to write."""

    name: ClassVar[str]
    kinds: ClassVar[tuple[str, ...]]  # model kinds it can harden

    def build(self, ctx: Any) -> list[Candidate]:
        raise NotImplementedError


DEFENCES: dict[str, type[DefenceBase]] = {}
_D = TypeVar("_D", bound=type[DefenceBase])


def register_defence(name: str) -> Callable[[_D], _D]:
    def deco(cls: _D) -> _D:
        if name in DEFENCES:
            raise ValueError(f"defence {name!r} is registered twice")
        cls.name = name
        DEFENCES[name] = cls
        return cls

    return deco


def get_defence(name: str, *, field: str | None = None) -> type[DefenceBase]:
    _load_builtin()
    if name not in DEFENCES:
        raise ScenarioError(f"unknown hardening method {name!r}; known: {', '.join(sorted(DEFENCES))}", field=field)
    return DEFENCES[name]


def make_defence(name: str, params: dict | None, *, field: str) -> DefenceBase:
    """Instantiate a registered defence, refusing parameters it does not declare (one-line error)."""
    cls = get_defence(name, field=field)
    sig = inspect.signature(cls)  # the constructor's parameters, without self
    allowed = list(sig.parameters)
    for key in params or {}:
        if key not in allowed:
            raise ScenarioError(f"unknown parameter {key!r} for {name}; allowed: {', '.join(allowed)}",
                                field=f"{field}.{key}")
    try:
        return cls(**(params or {}))
    except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: int(inf)
        raise ScenarioError(f"bad parameters for {name}: {exc}", field=field) from None


def check_applicable(name: str, kind: str, *, field: str | None = None) -> None:
    """Refuse a method that cannot harden this model kind (e.g. monotone constraints on ONNX)."""
    cls = get_defence(name, field=field)
    if kind not in cls.kinds:
        raise ScenarioError(f"method {name!r} cannot apply to a {kind} model (it needs one of: {', '.join(cls.kinds)})",
                            field=field)


def _load_builtin() -> None:
    from . import adversarial, cheap_ball, ensemble, gate, monotone, squeeze, tuning  # noqa: F401  (registration side effect)


_load_builtin()

__all__ = ["Candidate", "DEFENCES", "Defence", "DefenceBase", "TREE_KINDS", "check_applicable", "get_defence", "make_defence",
           "register_defence"]
