"""The deployed side: a fraud model loaded from its native file, behind one thin wrapper.

Only XGBoost (JSON/UBJ) and LightGBM (text) files are read; nothing is ever unpickled.

Examples
--------
>>> import numpy as np, xgboost as xgb, tempfile, os
>>> X = np.random.default_rng(0).random((200, 2)); y = (X[:, 0] > 0.5).astype(int)
>>> booster = xgb.train({"objective": "binary:logistic"}, xgb.DMatrix(X, y, feature_names=["a", "b"]), 3)
>>> path = os.path.join(tempfile.mkdtemp(), "m.json"); booster.save_model(path)
>>> model = load_model(path)
>>> model.kind, model.feature_names
('xgboost', ('a', 'b'))
>>> model.predict_score(X[:3]).shape
(3,)
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import DataError, ModelError

KINDS = ("xgboost", "lightgbm")


@dataclass
class TargetModel:
    """A binary fraud classifier: ``predict_score(X)`` gives P(fraud) for rows in ``feature_names`` order."""

    kind: str
    feature_names: tuple[str, ...]
    booster: Any = field(repr=False)
    path: Path | None = None
    sha256: str | None = None
    card: dict | None = None

    def predict_score(self, X: np.ndarray) -> np.ndarray:
        if len(X) == 0:
            return np.empty(0)
        if self.kind == "xgboost":
            out = self.booster.inplace_predict(np.ascontiguousarray(X, dtype=np.float32), validate_features=False)
        else:
            out = self.booster.predict(np.ascontiguousarray(X, dtype=np.float32), num_threads=0)
        return np.asarray(out, dtype=np.float64).reshape(len(X))

    def check_columns(self, columns: Sequence[str], *, source: str | None = None) -> None:
        """Raise a :class:`DataError` naming the first model feature the data lacks."""
        have = set(columns)
        missing = [f for f in self.feature_names if f not in have]
        if missing:
            raise DataError(f"missing model feature {missing[0]!r} ({len(missing)} of {len(self.feature_names)} missing; "
                            f"the model expects {', '.join(self.feature_names)})", file=source, field=missing[0])


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def detect_kind(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(64)
    if head.startswith(b"tree\n") or head.startswith(b"tree\r\n"):
        return "lightgbm"
    if head.lstrip().startswith(b"{"):
        return "xgboost"
    raise ModelError("neither an XGBoost JSON/UBJ model nor a LightGBM text model (pickles are never loaded)",
                     file=str(path), field="model.path")


def load_model(path: str | Path, kind: str | None = None, *, field_name: str = "model.path") -> TargetModel:
    """Load a binary classifier from its native file; ``kind`` is detected when not given."""
    path = Path(path)
    try:
        is_file = path.is_file()
    except OSError as exc:  # a name too long for the file system, ...
        raise ModelError(f"cannot be read ({exc.strerror or type(exc).__name__})", file=str(path),
                         field=field_name) from None
    if not is_file:
        raise ModelError("a folder, not a model file" if path.is_dir() else "file not found", file=str(path),
                         field=field_name)
    kind = kind or detect_kind(path)
    if kind not in KINDS:
        raise ModelError(f"unknown model kind {kind!r}; use xgboost or lightgbm", file=str(path), field="model.kind")
    try:
        if kind == "xgboost":
            booster, names = _load_xgboost(path)
        else:
            booster, names = _load_lightgbm(path)
    except ModelError:
        raise
    except Exception as exc:  # the libraries raise their own error types for corrupt files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot be read as a {kind} model ({first[:160]})", file=str(path), field=field_name) from None
    card = load_card(card_path_for(path))
    return TargetModel(kind=kind, feature_names=tuple(names), booster=booster, path=path, sha256=file_sha256(path), card=card)


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


def card_path_for(model_path: Path) -> Path:
    return model_path.with_name(model_path.stem + ".card.json")


def _load_xgboost(path: Path):
    import xgboost as xgb

    from ..quiet import native_quiet
    from .xgb_guard import check_xgboost_file

    check_xgboost_file(path)  # deep JSON (SIGSEGV in XGBoost's parser); UBJ is parsed once in a child process
    booster = xgb.Booster()
    with native_quiet():
        booster.load_model(str(path))
    objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
    if objective not in ("binary:logistic", "reg:logistic", "binary:logitraw"):
        raise ModelError(f"objective {objective!r} is not a binary classifier giving P(fraud); expected binary:logistic",
                         file=str(path), field="model.path")
    if objective == "binary:logitraw":
        raise ModelError("objective binary:logitraw gives margins, not probabilities; retrain with binary:logistic",
                         file=str(path), field="model.path")
    names = booster.feature_names
    if not names:
        raise ModelError("the model has no feature names; train it on a named DataFrame/DMatrix so columns can be checked",
                         file=str(path), field="model.path")
    booster.set_param({"nthread": 0})
    return booster, names


def _load_lightgbm(path: Path):
    import lightgbm as lgb

    from ..quiet import native_quiet
    from .lgbm_guard import check_lightgbm_text

    check_lightgbm_text(path)  # malformed, truncated or crafted files: one-line ModelError before LightGBM parses
    objective = None
    with open(path, "r", errors="replace") as f:
        for line in f:
            if line.startswith("objective="):
                objective = line.split("=", 1)[1].strip()
                break
            if line.startswith("Tree="):
                break
    if objective is None or not (objective.startswith("binary") or objective.startswith("cross_entropy")):
        raise ModelError(f"objective {objective!r} is not a binary classifier; expected objective=binary",
                         file=str(path), field="model.path")
    with native_quiet():  # LightGBM's own [Warning]/[Fatal] lines stay off the terminal
        booster = lgb.Booster(model_file=str(path))
    return booster, booster.feature_name()
