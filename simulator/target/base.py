"""The one protocol every model kind answers, and the helpers every adapter shares.

A :class:`TargetModel` is a binary fraud classifier seen from outside: ``predict_score(X)`` gives P(fraud) for
rows in ``feature_names`` order. Everything outside :mod:`simulator.target` (oracle, strategies, runner, campaign,
report) uses only this protocol, never the library behind it.

Lifecycle: the registry (:mod:`simulator.target.registry`) picks an adapter class, which builds an instance
with ``from_path`` (a native file), ``from_object`` (a live library object, for notebooks) or ``from_spec``
(an endpoint URL). The instance is then scored any number of times with batched float64 matrices.

Optional capabilities (an adapter that lacks one raises :class:`ModelError` saying so):

- ``trees()``: the neutral :class:`~simulator.target.trees.TreeEnsemble` of a tree model (XGBoost, LightGBM);
- ``to_bytes()`` / ``save(path)``: the model in its native format (models fraudsim can write);
- ``fit(...)`` (class method, ``trainable = True``): train a new model of this kind (see
  :mod:`simulator.target.train`).
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from ..errors import DataError, ModelError


class TargetModel:
    """A binary fraud classifier behind one protocol (see the module docstring).

    Attributes every instance has: ``kind`` (the registry name), ``feature_names`` (input order), ``sha256`` (a
    content hash; for endpoints the hash of URL + protocol + features), ``card`` (a dict of facts about the model,
    or ``None``), ``source`` (the file or URL, for messages) and ``path`` (the file, or ``None``).
    """

    kind: ClassVar[str] = "?"
    #: the class can train new models (``fit``); retraining defences need it
    trainable: ClassVar[bool] = False
    native_suffix: ClassVar[str] = ""  # the file suffix of the native format, when the kind can be saved
    #: scores come over the network (validation makes one test call; scoring costs real requests)
    remote: ClassVar[bool] = False
    #: the scenario key that locates the model, for error messages
    location_field: ClassVar[str] = "model.path"

    feature_names: tuple[str, ...]
    sha256: str | None
    card: dict | None
    source: str | None
    path: Path | None

    def __init__(self, feature_names: Sequence[str], *, sha256: str | None = None, card: dict | None = None,
                 source: str | None = None, path: Path | None = None):
        self.feature_names = tuple(feature_names)
        self.sha256 = sha256
        self.card = card
        self.source = source if source is not None else (str(path) if path is not None else None)
        self.path = path

    # -- the protocol ----------------------------------------------------------------------------------------------
    def predict_score(self, X: np.ndarray) -> np.ndarray:
        """P(fraud) for each row of ``X`` (float64, shape (n, d) in ``feature_names`` order): float64, shape (n,)."""
        raise NotImplementedError

    def describe(self) -> str:
        """One line for messages: kind, source, number of features."""
        return f"{self.kind} model {self.source or '<in memory>'} ({len(self.feature_names)} features)"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"

    # -- optional capabilities -------------------------------------------------------------------------------------
    def trees(self):
        """The neutral tree ensemble (tree models only)."""
        raise ModelError(f"a {self.kind} model is not a tree ensemble fraudsim can read", file=self.source,
                         field="model")

    @classmethod
    def from_object(cls, obj: Any, *, features: Sequence[str] | None = None) -> TargetModel:
        """Wrap a live library object of this kind (kinds that have in-memory models)."""
        raise ModelError(f"a {cls.kind} model cannot be built from a {type(obj).__name__} object", field="model")

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray, feature_names: Sequence[str], *, weight: np.ndarray | None = None,
            seed: int = 0, params: dict | None = None, threads: int | None = None,
            predict_threads: int = 0) -> tuple[TargetModel, dict]:
        """Train a new model of this kind; returns it and the parameters used (``trainable`` kinds)."""
        raise ModelError(f"fraudsim cannot train a {cls.kind} model", field="model.kind")

    @classmethod
    def default_params(cls) -> dict:
        """The baseline's training parameters for this kind, with ``rounds`` (trainable kinds)."""
        raise ModelError(f"fraudsim cannot train a {cls.kind} model", field="model.kind")

    def stored_params(self) -> dict:
        """The tree-shaping training parameters the model itself keeps (and ``rounds``); {} when it keeps none."""
        return {}

    def to_bytes(self) -> bytes:
        """The model in its native format."""
        raise ModelError(f"a {self.kind} model cannot be written by fraudsim", file=self.source, field="model")

    def save(self, path: str | Path) -> Path:
        """Write the model natively to ``path`` and remember it as this model's file."""
        path = Path(path)
        data = self.to_bytes()
        path.write_bytes(data)
        self.path, self.source, self.sha256 = path, str(path), hashlib.sha256(data).hexdigest()
        return path

    def close(self) -> None:
        """Release connections or sessions (endpoints); a no-op for files."""

    # -- shared checks ---------------------------------------------------------------------------------------------
    def check_columns(self, columns: Sequence[str], *, source: str | None = None) -> None:
        """Raise a :class:`DataError` naming the first model feature the data lacks."""
        have = set(columns)
        missing = [f for f in self.feature_names if f not in have]
        if missing:
            raise DataError(f"missing model feature {missing[0]!r} ({len(missing)} of {len(self.feature_names)} missing; "
                            f"the model expects {', '.join(self.feature_names)})", file=source, field=missing[0])

    def check_scores(self, scores: Any, n: int) -> np.ndarray:
        """Scores as float64 (n,), or a one-line :class:`ModelError` when their shape or range is wrong."""
        out = np.asarray(scores, dtype=np.float64).reshape(-1)
        if len(out) != n:
            raise ModelError(f"returned {len(out)} scores for {n} rows", file=self.source, field=self.location_field)
        bad = ~((out >= 0) & (out <= 1))
        if bad.any():
            raise ModelError(f"returned a score outside [0, 1] ({float(out[np.flatnonzero(bad)[0]])!r}); the model "
                             "must give P(fraud)", file=self.source, field=self.location_field)
        return out


def bytes_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def card_path_for(model_path: Path) -> Path:
    return Path(model_path).with_name(Path(model_path).stem + ".card.json")


def read_card(path: Path | None) -> dict | None:
    """The ``<stem>.card.json`` beside a model file, or None when there is none (see :func:`load_card`)."""
    if path is None:
        return None
    return load_card(card_path_for(path))


MAX_CARD_BYTES = 1 << 20  # a card is a few kB of JSON
MAX_CARD_DEPTH = 32


def load_card(card_path: Path) -> dict | None:
    """The model card beside a model (``<stem>.card.json``), or None when there is none. A card that is there but
    unreadable (not UTF-8, not JSON, not an object, nested too deep, too big, an invalid threshold) is bad input:
    a one-line ``ModelError`` naming the card, the field and the reason, never silently ignored."""
    from ..safe_yaml import YamlError, read_text_file

    try:
        if not (card_path.exists() or card_path.is_symlink()):
            return None
    except OSError:  # the card's name is too long for the file system: there is no card
        return None
    try:
        text = read_text_file(card_path, max_bytes=MAX_CARD_BYTES, what="model card")
    except YamlError as exc:
        raise ModelError(str(exc), file=str(card_path), field="card") from None
    if _json_depth(text) > MAX_CARD_DEPTH:  # json.loads recurses per level: refuse before it overflows the stack
        raise ModelError(f"nested more than {MAX_CARD_DEPTH} levels deep", file=str(card_path), field="card")
    try:
        card = json.loads(text, parse_constant=_no_constant)
    except (json.JSONDecodeError, ValueError) as exc:
        raise ModelError(f"not valid JSON ({str(exc).splitlines()[0][:120]})", file=str(card_path), field="card") from None
    if not isinstance(card, dict):
        raise ModelError(f"a model card must be a JSON object, got {type(card).__name__}", file=str(card_path),
                         field="card")
    if "threshold" in card and card["threshold"] is not None:
        thr = card["threshold"]
        if isinstance(thr, bool) or not isinstance(thr, (int, float)) or not 0 <= thr <= 1:
            raise ModelError(f"must be a number between 0 and 1, got {json.dumps(thr)[:40]}", file=str(card_path),
                             field="threshold")
    return card


def _json_depth(text: str) -> int:
    """Deepest nesting of brackets outside strings (a scan, no recursion)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _no_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


_PLACEHOLDER = re.compile(r"^(?:f|Column_)(\d+)$")


def is_placeholder(names: Sequence[str] | None) -> bool:
    """True when a library made the names up (XGBoost ``f0…``, LightGBM ``Column_0…``) or there are none."""
    if not names:
        return True
    for i, n in enumerate(names):
        m = _PLACEHOLDER.match(str(n))
        if m is None or int(m.group(1)) != i:
            return False
    return True


def resolve_features(file_names: Sequence[str] | None, n_inputs: int | None, given: Sequence[str] | None, *,
                     source: str | None, saved_as=None) -> tuple[str, ...]:
    """The model's input order: the file's own names, or ``model.features`` for a file saved without names.

    With both, they must agree (the error names the first difference) and the given names are kept (a library
    may have rewritten them when saving: ``saved_as(name)`` says how, e.g. LightGBM's spaces to underscores);
    with neither, the error says to add ``model.features``."""
    field = "model.features"
    if given is not None:
        given = [str(g) for g in given]
        if not given:
            raise ModelError("model.features is empty; list the model's inputs in order", file=source, field=field)
        dup = sorted({g for g in given if given.count(g) > 1})
        if dup:
            raise ModelError(f"feature {dup[0]!r} is listed twice", file=source, field=field)
    named = file_names is not None and len(file_names) > 0 and not is_placeholder(file_names)
    if named:
        names = [str(n) for n in file_names]  # type: ignore[union-attr]
        if given is not None and saved_as is not None and [saved_as(g) for g in given] == names:
            return tuple(given)
        if given is not None and given != names:
            if len(given) != len(names):
                raise ModelError(f"model.features has {len(given)} names but the model file has {len(names)} "
                                 f"features ({', '.join(names[:8])}{', ...' if len(names) > 8 else ''})",
                                 file=source, field=field)
            i = next(i for i, (a, b) in enumerate(zip(given, names)) if a != b)
            raise ModelError(f"model.features differs from the names saved in the model at position {i + 1}: "
                             f"{given[i]!r} in the scenario, {names[i]!r} in the model (remove model.features or "
                             "list the model's own names in its order)", file=source, field=f"{field}.{i}")
        return tuple(names)
    n = n_inputs if n_inputs is not None else (len(file_names) if file_names else None)
    if given is None:
        what = f"its {n} inputs" if n else "its inputs"
        raise ModelError(f"the model has no feature names; add model.features: [...] listing {what} in order",
                         file=source, field=field)
    if n is not None and len(given) != n:
        raise ModelError(f"model.features has {len(given)} names but the model takes {n} inputs", file=source,
                         field=field)
    return tuple(given)


def first_line(exc: BaseException, limit: int = 160) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]
