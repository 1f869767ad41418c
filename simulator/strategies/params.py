"""Typed strategy parameters: the scenario's ``params`` are checked against the strategy's constructor.

A strategy's parameters are its keyword-only constructor arguments with type annotations and defaults (following
``**params`` up the class chain to :class:`~simulator.strategies.base.Strategy` or its ``BaseStrategy``). ``fraudsim validate`` checks every
value against its annotation, strictly (``step: "x"`` or ``elite: 2.5`` are refused, ``int`` given for a ``float``
is fine), and against bounds: a strategy may declare ``param_bounds = {"elite": (1, 1000)}`` as class data; numbers
without declared bounds must lie in ``[0, DEFAULT_MAX]``, and floats must be finite.

Examples
--------
>>> from simulator.strategies import get_strategy
>>> check_params(get_strategy("evolutionary"), {"step": 0.2, "elite": 4}, field="attack.params.evolutionary")
{'step': 0.2, 'elite': 4}
>>> check_params(get_strategy("evolutionary"), {"step": "x"}, field="attack.params.evolutionary")
Traceback (most recent call last):
...
simulator.errors.ScenarioError: attack.params.evolutionary.step: expected a number (float), got 'x'
>>> check_params(get_strategy("optuna"), {"sigma0": float("nan")}, field="attack.params.optuna")  # float | None
Traceback (most recent call last):
...
simulator.errors.ScenarioError: attack.params.optuna.sigma0: must be a finite number, got nan
"""
from __future__ import annotations

import inspect
import math
import types
import typing
from typing import Any

from pydantic import ConfigDict, Field, ValidationError, create_model

from ..errors import ScenarioError

DEFAULT_MAX = 1_000_000  # no parameter of a built-in strategy is meaningful beyond this; it keeps memory bounded
_TYPE_WORDS = {int: "a whole number (int)", float: "a number (float)", bool: "true or false", str: "a string"}


def strategy_parameters(cls: type) -> dict[str, inspect.Parameter] | None:
    """Keyword parameters of a strategy's constructor, with their resolved annotations; None when a constructor
    forwards ``**params`` somewhere that cannot be followed (then parameters are not checked here)."""
    from .base import BaseStrategy, Strategy

    found: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        if klass in (Strategy, BaseStrategy):
            return found
        try:
            hints = typing.get_type_hints(init, include_extras=True)
        except Exception:  # an annotation that cannot be resolved: treat as unannotated
            hints = {}
        sig = inspect.signature(init)
        for name, p in sig.parameters.items():
            if name in ("self", "problem", "rng") or p.kind not in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD):
                continue
            if name not in found:
                found[name] = p.replace(annotation=hints.get(name, p.annotation))
        if not any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
            return found
    return None


def _bounded(cls: type, name: str, annotation: Any) -> Any:
    """The annotation with bounds for numbers (declared in ``param_bounds``, else [0, DEFAULT_MAX])."""
    lo, hi = getattr(cls, "param_bounds", {}).get(name, (0, DEFAULT_MAX))
    base = annotation
    if base is int and not isinstance(base, bool):
        return typing.Annotated[int, Field(ge=lo, le=hi)]
    if base is float:
        return typing.Annotated[float, Field(ge=lo, le=hi, allow_inf_nan=False)]
    if typing.get_origin(base) in (typing.Union, types.UnionType) and type(None) in typing.get_args(base):
        inner = [a for a in typing.get_args(base) if a is not type(None)]
        if len(inner) == 1:
            return typing.Optional[_bounded(cls, name, inner[0])]
    return annotation


def check_params(cls: type, params: Any, *, field: str) -> dict[str, Any]:
    """Check a strategy's parameters from a scenario; returns them, or raises a one-line ``ScenarioError`` whose
    field is ``<field>.<name>``."""
    if not isinstance(params, dict):
        raise ScenarioError(f"parameters must be a mapping of name: value (got {type(params).__name__})", field=field)
    accepted = strategy_parameters(cls)
    if accepted is None:
        return dict(params)
    for key in params:
        if not isinstance(key, str) or key not in accepted:
            raise ScenarioError(f"unknown parameter {key!r} for strategy {getattr(cls, 'name', cls.__name__)!r} (accepts: "
                                f"{', '.join(sorted(accepted)) or 'none'})", field=f"{field}.{key}")
    fields: dict[str, Any] = {}
    for name, p in accepted.items():
        ann = p.annotation if p.annotation is not inspect.Parameter.empty else Any
        fields[name] = (_bounded(cls, name, ann), p.default if p.default is not inspect.Parameter.empty else ...)
    model = create_model(f"{cls.__name__}Params", __config__=ConfigDict(strict=True, extra="forbid"), **fields)
    try:
        model.model_validate(params)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(x) for x in err["loc"])
        raise ScenarioError(_reason(err, accepted.get(str(err["loc"][0])) if err["loc"] else None),
                            field=f"{field}.{key}" if key else field) from None
    return dict(params)


def _reason(err: Any, param: inspect.Parameter | None) -> str:
    value = err.get("input")
    shown = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
    if len(shown) > 60:
        shown = shown[:57] + "..."
    ann = param.annotation if param is not None else None
    if err["type"].endswith("_type") or err["type"] in ("literal_error", "int_from_float", "finite_number"):
        if err["type"] == "finite_number" or (isinstance(value, float) and not math.isfinite(value)):
            return f"must be a finite number, got {shown}"
        if typing.get_origin(ann) is typing.Literal:
            return f"expected one of {', '.join(repr(a) for a in typing.get_args(ann))}, got {shown}"
        return f"expected {_type_words(ann)}, got {shown}"
    return err["msg"].removeprefix("Value error, ") + f" (got {shown})"


def _type_words(ann: Any) -> str:
    """``a number (float)``, ``a whole number (int) or null`` ... for an annotation."""
    if typing.get_origin(ann) is typing.Annotated:
        ann = typing.get_args(ann)[0]
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        words = [_type_words(a) for a in typing.get_args(ann) if a is not type(None)]
        return " or ".join(words) + (" or null" if type(None) in typing.get_args(ann) else "")
    if typing.get_origin(ann) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(ann))
    return _TYPE_WORDS.get(ann, getattr(ann, "__name__", str(ann)))
