"""Model wrappers for hardened candidates that are more than one native model file.

Each wrapper offers what every model object offers (``feature_names``, ``predict_score``, ``kind``, ``sha256``,
``path``, ``card``) and is described by a plain-JSON ``spec`` in its card, from which :func:`load_candidate`
rebuilds it (native model files only; nothing is unpickled).

Examples
--------
>>> import numpy as np
>>> spec = {"f": {"edges": [1.0, 2.0], "values": [0.5, 1.5, 3.0]}}
>>> squeeze_matrix(np.array([[0.2, 7.0], [1.5, 7.0], [9.0, np.nan]]), ("f", "g"), spec).tolist()
[[0.5, 7.0], [1.5, 7.0], [3.0, nan]]
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np


def squeeze_matrix(X: np.ndarray, names: Sequence[str], spec: dict) -> np.ndarray:
    """Map each squeezed feature's value to its bin's representative (bins cut at ``edges``; NaN stays NaN)."""
    X = np.array(X, dtype=np.float64, copy=True)
    for j, name in enumerate(names):
        s = spec.get(name)
        if s is None:
            continue
        edges = np.asarray(s["edges"], dtype=np.float64)
        values = np.asarray(s["values"], dtype=np.float64)
        col = X[:, j]
        ok = ~np.isnan(col)
        col[ok] = values[np.searchsorted(edges, col[ok], side="right")]
    return X


class _Wraps:
    """A model around other models: the features and kind of ``_features_of`` (its ``inner`` model by default)."""

    inner: Any

    @property
    def _features_of(self) -> Any:
        return self.inner

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(self._features_of.feature_names)

    @property
    def kind(self) -> str:
        return self._features_of.kind


@dataclass
class SqueezedModel(_Wraps):
    """Feature squeezing: coarsen attacker-cheap features, then score with a model trained on coarsened data."""

    inner: Any
    spec: dict
    card: dict | None = None
    path: Path | None = None

    @property
    def sha256(self) -> str | None:
        return _combined_hash([self.inner.sha256, json.dumps(self.spec, sort_keys=True)])

    def predict_score(self, X: np.ndarray) -> np.ndarray:
        return self.inner.predict_score(squeeze_matrix(X, self.feature_names, self.spec))


@dataclass
class EnsembleModel(_Wraps):
    """The mean score of several models over the same features."""

    members: list
    card: dict | None = None
    path: Path | None = None

    @property
    def _features_of(self) -> Any:
        return self.members[0]

    @property
    def sha256(self) -> str | None:
        return _combined_hash([m.sha256 for m in self.members])

    def predict_score(self, X: np.ndarray) -> np.ndarray:
        return np.mean([m.predict_score(X) for m in self.members], axis=0)


@dataclass
class BandModel(_Wraps):
    """A moving target: every query's score is scaled by ``exp(u)``, ``u ~ U(-band, band)``, which is the same
    as drawing the decline threshold per query from a band around the fixed one."""

    inner: Any
    band: float
    seed: int = 0
    card: dict | None = None
    path: Path | None = None
    _rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self):
        self._rng = np.random.default_rng(self.seed)

    @property
    def sha256(self) -> str | None:
        return _combined_hash([self.inner.sha256, f"band={self.band}"])

    def predict_score(self, X: np.ndarray) -> np.ndarray:
        s = self.inner.predict_score(X)
        return np.clip(s * np.exp(self._rng.uniform(-self.band, self.band, len(s))), 0.0, 1.0)


@dataclass
class GatedModel(_Wraps):
    """A decision gate: rows the ``gate`` model (trained without the attacker-cheap features) scores at or above
    ``cut`` score ``0.5 + 0.5 * gate``; every other row scores ``0.5 * rank``, the ``rank`` model's score (all
    features) squeezed below 0.5. With a decline threshold above 0.5 only the gate declines, and the rank model
    orders everything below it (the clean AUC)."""

    gate: Any
    rank: Any
    cut: float
    card: dict | None = None
    path: Path | None = None

    @property
    def _features_of(self) -> Any:
        return self.rank

    @property
    def sha256(self) -> str | None:
        return _combined_hash([self.gate.sha256, self.rank.sha256, f"cut={self.cut!r}"])

    def predict_score(self, X: np.ndarray) -> np.ndarray:
        g = self.gate.predict_score(X)
        return np.where(g >= self.cut, 0.5 + 0.5 * g, 0.5 * self.rank.predict_score(X))


def _combined_hash(parts) -> str | None:
    if any(p is None for p in parts):
        return None
    h = hashlib.sha256()
    for p in parts:
        h.update(str(p).encode())
    return h.hexdigest()


def wrap(spec: dict | None, members: list):
    """The model a card's ``wrapper`` spec describes over its loaded member models."""
    if spec is None:
        return members[0]
    t = spec["type"]
    if t == "squeeze":
        return SqueezedModel(members[0], spec["squeeze"])
    if t == "ensemble":
        return EnsembleModel(list(members))
    if t == "band":
        return BandModel(wrap(spec["inner"], members), float(spec["band"]), int(spec.get("seed", 0)))
    if t == "gate":  # members: the gate model, then the rank model
        return GatedModel(members[0], members[1], float(spec["cut"]))
    raise ValueError(f"unknown wrapper type {t!r}")


def load_candidate(card_path: str | Path):
    """Rebuild a hardened candidate from its card: load the member model files natively and wrap them."""
    from ..target import load_model

    card_path = Path(card_path)
    card = json.loads(card_path.read_text())
    members = [load_model(card_path.parent / f) for f in card["model_files"]]
    model = wrap(card.get("wrapper"), members)
    if hasattr(model, "card"):
        model.card = card
    return model
