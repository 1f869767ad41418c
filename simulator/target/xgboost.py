"""XGBoost models: JSON or UBJ files, or a live ``xgboost.Booster`` / ``XGBClassifier``; trainable.

Files saved without feature names (``XGBClassifier().fit(X_numpy, y)``) need ``model.features``. Models trained
with ``enable_categorical`` score category codes given as numbers, as XGBoost itself does for NumPy input.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ModelError
from .base import TargetModel, bytes_sha256, file_sha256, first_line, read_card, resolve_features
from .registry import register_adapter

#: the baseline's learner; ``params`` of :meth:`XGBoostModel.fit` override these
PARAMS = {"objective": "binary:logistic", "eval_metric": "auc", "max_depth": 5, "eta": 0.1, "subsample": 0.8,
          "colsample_bytree": 0.9, "min_child_weight": 2, "tree_method": "hist", "nthread": 0}
ROUNDS = 150
_BINARY = ("binary:logistic", "reg:logistic")


@register_adapter("xgboost")
class XGBoostModel(TargetModel):
    trainable = True
    native_suffix = ".json"

    def __init__(self, booster: Any, feature_names: Sequence[str], **kw):
        super().__init__(feature_names, **kw)
        self.booster = booster

    # -- loading ---------------------------------------------------------------------------------------------------
    @classmethod
    def sniff(cls, head: bytes, path: Path) -> bool:
        return head.lstrip().startswith(b"{")  # JSON, and UBJ's object marker

    @classmethod
    def from_path(cls, path: Path, *, features: Sequence[str] | None = None) -> "XGBoostModel":
        import xgboost as xgb

        from ..quiet import native_quiet
        from .xgb_guard import check_xgboost_file

        check_xgboost_file(path)  # deep JSON (SIGSEGV in XGBoost's parser); UBJ is parsed once in a child process
        booster = xgb.Booster()
        try:
            with native_quiet():
                booster.load_model(str(path))
        except Exception as exc:  # XGBoostError for corrupt files
            raise ModelError(f"cannot be read as a xgboost model ({first_line(exc)})", file=str(path),
                             field="model.path") from None
        return cls._wrap(booster, features, source=str(path), path=path, sha256=file_sha256(path),
                         card=read_card(path))

    @classmethod
    def accepts(cls, obj: Any) -> bool:
        mod = type(obj).__module__ or ""
        return mod.startswith("xgboost") and (hasattr(obj, "inplace_predict") or hasattr(obj, "get_booster"))

    @classmethod
    def from_object(cls, obj: Any, *, features: Sequence[str] | None = None) -> "XGBoostModel":
        booster = obj.get_booster() if hasattr(obj, "get_booster") else obj
        raw = bytes(booster.save_raw("ubj"))
        return cls._wrap(booster.copy(), features, source=f"<{type(obj).__name__}>", path=None,
                         sha256=bytes_sha256(raw), card=None)

    @classmethod
    def _wrap(cls, booster, features, *, source, path, sha256, card) -> "XGBoostModel":
        objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
        if objective == "binary:logitraw":
            raise ModelError("objective binary:logitraw gives margins, not probabilities; retrain with binary:logistic",
                             file=source, field="model.path")
        if objective not in _BINARY:
            raise ModelError(f"objective {objective!r} is not a binary classifier giving P(fraud); expected "
                             "binary:logistic", file=source, field="model.path")
        names = resolve_features(booster.feature_names, booster.num_features(), features, source=source)
        booster.set_param({"nthread": 0})
        return cls(booster, names, source=source, path=path, sha256=sha256, card=card)

    # -- the protocol ----------------------------------------------------------------------------------------------
    def predict_score(self, X: np.ndarray) -> np.ndarray:
        if len(X) == 0:
            return np.empty(0)
        out = self.booster.inplace_predict(np.ascontiguousarray(X, dtype=np.float32), validate_features=False)
        return np.asarray(out, dtype=np.float64).reshape(len(X))

    def trees(self):
        from .trees import from_xgboost  # written alongside the tree-aware strategies

        return from_xgboost(self.booster, list(self.feature_names))

    @classmethod
    def default_params(cls) -> dict:
        return dict(PARAMS, rounds=ROUNDS)

    def stored_params(self) -> dict:
        """Only the number of rounds: a saved XGBoost model keeps its trees and objective but not its training
        parameters (after loading, ``save_config`` shows XGBoost's defaults, e.g. max_depth 6 and eta 0.3, whatever
        the model was trained with), so everything else comes from the baseline."""
        return {"rounds": self.booster.num_boosted_rounds()}

    def to_bytes(self) -> bytes:
        return bytes(self.booster.save_raw("ubj"))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        self.booster.save_model(str(path))  # .json or .ubj by suffix
        self.path, self.source, self.sha256 = path, str(path), file_sha256(path)
        return path

    # -- training --------------------------------------------------------------------------------------------------
    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray, feature_names: Sequence[str], *, weight: np.ndarray | None = None,
            seed: int = 0, params: dict | None = None, threads: int | None = None,
            predict_threads: int = 0) -> tuple["XGBoostModel", dict]:
        """Train with :data:`PARAMS` (``params`` override them; ``rounds`` sets the number of trees;
        ``monotone_constraints`` may be a list in input order or a ``{feature: +1/-1}`` dict;
        ``interaction_constraints`` a list of groups of input positions or feature names)."""
        import xgboost as xgb

        p = {**PARAMS, "seed": seed, **(params or {})}
        rounds = int(p.pop("rounds", ROUNDS))
        if threads is not None:
            p["nthread"] = threads
        names = list(feature_names)
        mono = p.get("monotone_constraints")
        if isinstance(mono, dict):  # {feature: +1/-1}, the neutral form; XGBoost wants a tuple in input order
            mono = [int(mono.get(n, 0)) for n in names]
        if isinstance(mono, list):
            p["monotone_constraints"] = tuple(int(v) for v in mono)
        inter = p.get("interaction_constraints")
        if isinstance(inter, (list, tuple)):  # groups of input positions or feature names; XGBoost reads a list of
            # lists as feature names, so positions go as its string form
            p["interaction_constraints"] = str([[names.index(f) if isinstance(f, str) else int(f) for f in g]
                                                for g in inter])
        booster = xgb.train(p, xgb.DMatrix(X, label=y, weight=weight, feature_names=names), rounds)
        booster.set_param({"nthread": predict_threads})
        raw = bytes(booster.save_raw("ubj"))
        return cls(booster, names, sha256=bytes_sha256(raw)), dict(p, rounds=rounds)
