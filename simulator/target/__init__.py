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
    if not path.is_file():
        raise ModelError("file not found", file=str(path), field=field_name)
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
    card = None
    card_path = card_path_for(path)
    if card_path.is_file():
        try:
            card = json.loads(card_path.read_text())
        except json.JSONDecodeError:
            card = None
    return TargetModel(kind=kind, feature_names=tuple(names), booster=booster, path=path, sha256=file_sha256(path), card=card)


def card_path_for(model_path: Path) -> Path:
    return model_path.with_name(model_path.stem + ".card.json")


def _load_xgboost(path: Path):
    import xgboost as xgb

    booster = xgb.Booster()
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
    booster = lgb.Booster(model_file=str(path))
    return booster, booster.feature_name()
