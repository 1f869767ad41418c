"""Feature specs: what a fraudster can change, within which limits, at what cost.

A :class:`FeatureSchema` lists every *model* feature in model order. Features the scenario does not list are
frozen (immutable). :meth:`FeatureSchema.arrays` flattens the specs into NumPy arrays for the kernels.

Examples
--------
>>> s = FeatureSchema.from_mapping(["amount", "hour", "age"],
...     {"amount": {"type": "continuous", "min": 1, "max": 100}, "hour": {"type": "integer", "min": 0, "max": 23}})
>>> s.mutable_names
('amount', 'hour')
>>> s.arrays().kind.tolist()
[0, 1, 0]
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import IntEnum
from functools import cached_property
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import polars as pl

from .errors import DataError, ScenarioError


class Kind(IntEnum):
    CONTINUOUS = 0
    INTEGER = 1
    BINARY = 2
    CATEGORICAL = 3


class Direction(IntEnum):
    DECREASE = -1
    ANY = 0
    INCREASE = 1


KIND_NAMES = {k.name.lower(): k for k in Kind}
DIRECTION_NAMES = {d.name.lower(): d for d in Direction}
#: What one unit of a numeric feature's cost is measured against: its whole range (max - min), the data's
#: inter-quartile range, or the feature's own unit.
COST_SCALES = ("range", "iqr", "unit")


@dataclass(frozen=True)
class FeatureSpec:
    """One feature's constraints. ``lo``/``hi`` may be ``None`` until filled from data."""

    name: str
    kind: Kind = Kind.CONTINUOUS
    lo: float | None = None
    hi: float | None = None
    categories: tuple[float, ...] = ()
    mutable: bool = True
    direction: Direction = Direction.ANY
    cost: float = 1.0
    cost_scale: str = "range"  # one of COST_SCALES (numeric features only)
    iqr: float | None = None  # the data's inter-quartile range, filled by with_bounds_from for cost_scale iqr

    def scale(self) -> float:
        """The change of this numeric feature that costs ``cost``: its range, inter-quartile range or 1."""
        if self.cost_scale == "unit":
            return 1.0
        if self.cost_scale == "iqr" and self.iqr is not None and self.iqr > 0:
            return self.iqr
        return float(self.hi - self.lo) if self.lo is not None and self.hi is not None else float("nan")

    def describe(self) -> str:
        if self.kind == Kind.CATEGORICAL:
            rng = "{" + ", ".join(f"{c:g}" for c in self.categories) + "}"
        elif self.kind == Kind.BINARY:
            rng = "{0, 1}"
        else:
            rng = f"[{self.lo:g}, {self.hi:g}]" if self.lo is not None and self.hi is not None else "[?]"
        flags = [] if self.mutable else ["frozen"]
        if self.direction != Direction.ANY:
            flags.append(self.direction.name.lower())
        if self.mutable and self.cost_scale != "range" and self.kind in (Kind.CONTINUOUS, Kind.INTEGER):
            flags.append(f"cost per {self.scale():g}" + (" (iqr)" if self.cost_scale == "iqr" else ""))
        return f"{self.kind.name.lower()} {rng}" + (f" ({', '.join(flags)})" if flags else "")


@dataclass(frozen=True)
class SchemaArrays:
    """Flat per-feature arrays in model order, the only thing kernels see."""

    kind: np.ndarray  # int8 (d,)
    lo: np.ndarray  # float64 (d,)
    hi: np.ndarray  # float64 (d,)
    mutable: np.ndarray  # bool (d,)
    direction: np.ndarray  # int8 (d,)
    cost: np.ndarray  # float64 (d,) the cost of a change across the whole range (max - min), see ``scale``
    categories: np.ndarray  # float64 (d, max_categories), padded with NaN, ascending per row
    n_categories: np.ndarray  # int32 (d,)
    # float64 (d,) the change that costs the feature's ``cost`` (its cost_scale); kernels divide by the range,
    # so ``cost`` above already carries the factor (max - min) / scale
    scale: np.ndarray | None = None

    @property
    def n_features(self) -> int:
        return int(self.kind.shape[0])

    def as_tuple(self) -> tuple[np.ndarray, ...]:
        return (self.kind, self.lo, self.hi, self.mutable, self.direction, self.cost, self.categories, self.n_categories)


def spec_from_dict(name: str, raw: Mapping[str, Any], *, where: str = "features",
                   cost_scale: str = "range") -> FeatureSpec:
    """Build a spec from the scenario-file shape ``{type, min, max, categories, mutable, direction, cost,
    cost_scale}`` (``cost_scale`` defaults to the given one)."""
    field_ = f"{where}.{name}"
    scale_name = str(raw.get("cost_scale") or cost_scale)
    if scale_name not in COST_SCALES:
        raise ScenarioError(f"unknown cost_scale {scale_name!r}; use one of {', '.join(COST_SCALES)}",
                            field=f"{field_}.cost_scale")
    kind_name = str(raw.get("type", "continuous"))
    if kind_name not in KIND_NAMES:
        raise ScenarioError(f"unknown type {kind_name!r}; use one of {sorted(KIND_NAMES)}", field=f"{field_}.type")
    kind = KIND_NAMES[kind_name]
    dir_name = str(raw.get("direction", "any"))
    if dir_name not in DIRECTION_NAMES:
        raise ScenarioError(f"unknown direction {dir_name!r}; use increase, decrease or any", field=f"{field_}.direction")
    cost = float(raw.get("cost", 1.0))
    if not math.isfinite(cost) or cost < 0:
        raise ScenarioError(f"cost must be a finite number >= 0, got {raw.get('cost')!r}", field=f"{field_}.cost")
    lo, hi = raw.get("min"), raw.get("max")
    cats: tuple[float, ...] = ()
    if kind == Kind.BINARY:
        lo, hi = 0.0, 1.0
    elif kind == Kind.CATEGORICAL:
        given = raw.get("categories")
        if not given:
            raise ScenarioError("a categorical feature needs a non-empty 'categories' list", field=f"{field_}.categories")
        try:
            cats = tuple(sorted({float(c) for c in given}))
        except (TypeError, ValueError):
            raise ScenarioError("categories must be numbers (encode labels as codes)", field=f"{field_}.categories") from None
        lo, hi = cats[0], cats[-1]
    else:
        for key, v in (("min", lo), ("max", hi)):
            if v is not None and (not isinstance(v, (int, float)) or not math.isfinite(float(v))):
                raise ScenarioError(f"{key} must be a finite number, got {v!r}", field=f"{field_}.{key}")
        lo = None if lo is None else float(lo)
        hi = None if hi is None else float(hi)
        if lo is not None and hi is not None and lo > hi:
            raise ScenarioError(f"min ({lo:g}) > max ({hi:g})", field=field_)
        if kind == Kind.INTEGER:
            for key, v in (("min", lo), ("max", hi)):
                if v is not None and v != round(v):
                    raise ScenarioError(f"{key} of an integer feature must be a whole number, got {v:g}", field=f"{field_}.{key}")
    return FeatureSpec(
        name=name, kind=kind, lo=lo, hi=hi, categories=cats,
        mutable=bool(raw.get("mutable", True)), direction=DIRECTION_NAMES[dir_name], cost=cost, cost_scale=scale_name,
    )


class FeatureSchema:
    """The model's features in model order, each with its constraints."""

    def __init__(self, specs: Sequence[FeatureSpec]):
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ScenarioError("duplicate feature names: " + ", ".join(sorted({n for n in names if names.count(n) > 1})))
        self.specs: tuple[FeatureSpec, ...] = tuple(specs)
        self.names: tuple[str, ...] = tuple(names)
        self._index = {n: i for i, n in enumerate(names)}

    @classmethod
    def from_mapping(cls, model_features: Sequence[str], mapping: Mapping[str, Mapping[str, Any]] | None,
                     *, where: str = "features", cost_scale: str = "range") -> "FeatureSchema":
        """Specs for every model feature: listed ones from ``mapping``, unlisted ones frozen; ``cost_scale`` is
        the default of every listed feature that does not give its own."""
        if cost_scale not in COST_SCALES:
            raise ScenarioError(f"unknown cost_scale {cost_scale!r}; use one of {', '.join(COST_SCALES)}",
                                field="cost_scale")
        mapping = dict(mapping or {})
        unknown = [n for n in mapping if n not in set(model_features)]
        if unknown:
            raise ScenarioError(f"the model has no feature {unknown[0]!r} (model features: {', '.join(model_features)})",
                                field=f"{where}.{unknown[0]}")
        specs = [spec_from_dict(n, mapping[n], where=where, cost_scale=cost_scale) if n in mapping
                 else FeatureSpec(n, mutable=False)
                 for n in model_features]
        return cls(specs)

    def __len__(self) -> int:
        return len(self.specs)

    def __iter__(self):
        return iter(self.specs)

    def __getitem__(self, name: str) -> FeatureSpec:
        return self.specs[self._index[name]]

    def index(self, name: str) -> int:
        return self._index[name]

    @property
    def mutable_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.specs if s.mutable)

    def with_bounds_from(self, frame: pl.DataFrame) -> "FeatureSchema":
        """Fill missing min/max from the data's range, ignoring missing values (frozen features too, so every
        array is finite; a frozen feature with no value at all gets [0, 0]; a mutable one needs its min/max), and the
        inter-quartile range of features whose cost_scale is ``iqr``."""
        specs = []
        for s in self.specs:
            if s.cost_scale == "iqr" and s.kind in (Kind.CONTINUOUS, Kind.INTEGER) and s.name in frame.columns:
                v = frame.get_column(s.name).cast(pl.Float64).to_numpy()
                v = v[np.isfinite(v)]
                if len(v):
                    q1, q3 = np.quantile(v, [0.25, 0.75])
                    s = replace(s, iqr=float(q3 - q1))
            if s.lo is None or s.hi is None:
                col = frame.get_column(s.name).cast(pl.Float64, strict=False) if s.name in frame.columns \
                    else pl.Series([0.0, 1.0])
                v = col.to_numpy()
                v = v[np.isfinite(v)]
                if len(v) == 0 and s.mutable:
                    raise ScenarioError(f"no min/max for {s.name!r} and the data has no value to take them from; "
                                        "give min and max in the scenario", field=f"features.{s.name}")
                lo = s.lo if s.lo is not None else (float(v.min()) if len(v) else 0.0)
                hi = s.hi if s.hi is not None else (float(v.max()) if len(v) else lo)
                if s.kind == Kind.INTEGER:
                    lo, hi = math.floor(lo), math.ceil(hi)
                s = replace(s, lo=lo, hi=max(lo, hi))
            specs.append(s)
        return FeatureSchema(specs)

    @cached_property
    def _arrays(self) -> SchemaArrays:
        d = len(self.specs)
        width = max([len(s.categories) for s in self.specs] + [1])
        cats = np.full((d, width), np.nan)
        for j, s in enumerate(self.specs):
            cats[j, : len(s.categories)] = s.categories
        nan = float("nan")
        scale = np.array([s.scale() if s.kind in (Kind.CONTINUOUS, Kind.INTEGER) else 1.0 for s in self.specs])
        span = np.array([nan if s.lo is None or s.hi is None else s.hi - s.lo for s in self.specs])
        numeric = np.array([s.kind in (Kind.CONTINUOUS, Kind.INTEGER) for s in self.specs], dtype=bool)
        with np.errstate(invalid="ignore", divide="ignore"):
            factor = np.where(numeric & (span > 0) & (scale > 0), span / np.where(scale > 0, scale, 1.0), 1.0)
        return SchemaArrays(
            kind=np.array([int(s.kind) for s in self.specs], dtype=np.int8),
            lo=np.array([nan if s.lo is None else s.lo for s in self.specs], dtype=np.float64),
            hi=np.array([nan if s.hi is None else s.hi for s in self.specs], dtype=np.float64),
            mutable=np.array([s.mutable for s in self.specs], dtype=np.bool_),
            direction=np.array([int(s.direction) for s in self.specs], dtype=np.int8),
            cost=np.array([s.cost for s in self.specs], dtype=np.float64) * factor,
            categories=cats,
            n_categories=np.array([len(s.categories) for s in self.specs], dtype=np.int32),
            scale=np.where(numeric, scale, 1.0),
        )

    def arrays(self) -> SchemaArrays:
        a = self._arrays
        missing = [s.name for s in self.specs if s.mutable and (s.lo is None or s.hi is None)]
        if missing:
            raise ScenarioError(f"no min/max for {missing[0]!r}: give them in the scenario or provide data to take them from",
                                field=f"features.{missing[0]}")
        no_iqr = [s.name for s in self.specs if s.mutable and s.cost_scale == "iqr" and s.iqr is None
                  and s.kind in (Kind.CONTINUOUS, Kind.INTEGER)]
        if no_iqr:
            raise ScenarioError(f"cost_scale iqr for {no_iqr[0]!r} needs data to measure the inter-quartile range "
                                "from (a data set or a world)", field=f"features.{no_iqr[0]}.cost_scale")
        return a

    def validate_frame(self, frame: pl.DataFrame, *, source: str | None = None, constraints: bool = True) -> None:
        """Raise :class:`DataError` unless every model feature is a numeric column without infinities and, for
        mutable features, every present value satisfies its spec (bounds, integrality, categories, binary).
        Missing values (null or NaN) are data: the model scores them as its library does."""
        missing = [n for n in self.names if n not in frame.columns]
        if missing:
            raise DataError(f"column {missing[0]!r} is missing: the model needs {', '.join(self.names)}",
                            file=source, field=missing[0])
        for s in self.specs:
            col = frame.get_column(s.name)
            if not (col.dtype.is_numeric() or col.dtype == pl.Boolean):
                raise DataError(f"non-numeric column ({col.dtype}); encode it as numbers", file=source, field=s.name)
            v = col.cast(pl.Float64).to_numpy()
            bad = np.isinf(v)
            if bad.any():
                raise DataError(f"{int(bad.sum())} infinite values (first at row {int(np.argmax(bad))}); "
                                "missing values are fine as null or NaN", file=source, field=s.name)
            if not constraints or not s.mutable:
                continue
            viol = _violations(s, v) & ~np.isnan(v)
            if viol.any():
                i = int(np.argmax(viol))
                raise DataError(f"{int(viol.sum())} rows break the feature spec {s.describe()} (first: row {i}, value {v[i]:g})",
                                file=source, field=s.name)

    def describe(self) -> list[tuple[str, str, float]]:
        return [(s.name, s.describe(), s.cost) for s in self.specs]


def _violations(s: FeatureSpec, v: np.ndarray) -> np.ndarray:
    if s.kind == Kind.CATEGORICAL:
        return ~np.isin(v, np.asarray(s.categories))
    if s.kind == Kind.BINARY:
        return ~np.isin(v, [0.0, 1.0])
    bad = np.zeros(v.shape, bool)
    if s.lo is not None:
        bad |= v < s.lo
    if s.hi is not None:
        bad |= v > s.hi
    if s.kind == Kind.INTEGER:
        bad |= v != np.round(v)
    return bad


def frame_to_matrix(frame: pl.DataFrame, names: Iterable[str]) -> np.ndarray:
    """The features as a C-contiguous float64 matrix in the given order."""
    return np.ascontiguousarray(frame.select([pl.col(n).cast(pl.Float64) for n in names]).to_numpy(), dtype=np.float64)
