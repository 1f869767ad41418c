"""LightGBM models: text files (``save_model``), or a live ``lightgbm.Booster`` / ``LGBMClassifier``; trainable.

Files saved without feature names (LightGBM writes ``Column_0…``) need ``model.features``.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ModelError
from .base import TargetModel, bytes_sha256, file_sha256, first_line, read_card, resolve_features
from .registry import register_adapter

PARAMS = {"objective": "binary", "learning_rate": 0.1, "num_leaves": 31, "min_data_in_leaf": 40,
          "feature_fraction": 0.9, "bagging_fraction": 0.8, "bagging_freq": 1, "verbose": -1,
          "deterministic": True, "force_row_wise": True}
ROUNDS = 150
#: the training parameters that shape the trees, read back from a model file (:meth:`LightGBMModel.stored_params`)
STORED_KEYS = ("learning_rate", "num_leaves", "min_data_in_leaf", "feature_fraction", "bagging_fraction",
               "bagging_freq", "max_depth", "lambda_l1", "lambda_l2", "min_sum_hessian_in_leaf", "max_bin")


def saved_name(name: str) -> str:
    """The name LightGBM writes for a feature (it turns whitespace into underscores)."""
    return re.sub(r"\s", "_", name)


def _objective_of(text_lines) -> str | None:
    for line in text_lines:
        if line.startswith("objective="):
            return line.split("=", 1)[1].strip()
        if line.startswith("Tree="):
            break
    return None


def _check_objective(objective: str | None, source: str | None) -> None:
    if objective is None or not (objective.startswith("binary") or objective.startswith("cross_entropy")):
        raise ModelError(f"objective {objective!r} is not a binary classifier; expected objective=binary",
                         file=source, field="model.path")


@register_adapter("lightgbm")
class LightGBMModel(TargetModel):
    trainable = True
    native_suffix = ".txt"

    def __init__(self, booster: Any, feature_names: Sequence[str], **kw):
        super().__init__(feature_names, **kw)
        self.booster = booster

    @classmethod
    def sniff(cls, head: bytes, path: Path) -> bool:
        return head.startswith(b"tree\n") or head.startswith(b"tree\r\n")

    @classmethod
    def from_path(cls, path: Path, *, features: Sequence[str] | None = None) -> "LightGBMModel":
        import lightgbm as lgb

        from ..quiet import native_quiet
        from .lgbm_guard import check_lightgbm_text

        check_lightgbm_text(path)  # malformed, truncated or crafted files: one-line ModelError before LightGBM parses
        with open(path, "r", errors="replace") as f:
            _check_objective(_objective_of(f), str(path))
        try:
            with native_quiet():  # LightGBM's own [Warning]/[Fatal] lines stay off the terminal
                booster = lgb.Booster(model_file=str(path))
        except Exception as exc:  # LightGBMError for corrupt files
            raise ModelError(f"cannot be read as a lightgbm model ({first_line(exc)})", file=str(path),
                             field="model.path") from None
        card = read_card(path)
        if features is None and card and isinstance(card.get("feature_names"), list):
            # a model fraudsim trained and saved: its card keeps the names LightGBM rewrote
            names = [str(n) for n in card["feature_names"]]
            if [saved_name(n) for n in names] == booster.feature_name():
                features = names
        return cls._wrap(booster, features, source=str(path), path=path, sha256=file_sha256(path), card=card)

    @classmethod
    def accepts(cls, obj: Any) -> bool:
        mod = type(obj).__module__ or ""
        return mod.startswith("lightgbm") and (hasattr(obj, "model_to_string") or hasattr(obj, "booster_"))

    @classmethod
    def from_object(cls, obj: Any, *, features: Sequence[str] | None = None) -> "LightGBMModel":
        import lightgbm as lgb

        booster = obj.booster_ if hasattr(obj, "booster_") else obj
        text = booster.model_to_string()
        source = f"<{type(obj).__name__}>"
        _check_objective(_objective_of(text.splitlines()), source)
        return cls._wrap(lgb.Booster(model_str=text), features, source=source, path=None,
                         sha256=bytes_sha256(text.encode()), card=None)

    @classmethod
    def _wrap(cls, booster, features, *, source, path, sha256, card) -> "LightGBMModel":
        names = resolve_features(booster.feature_name(), booster.num_feature(), features, source=source,
                                 saved_as=saved_name)
        return cls(booster, names, source=source, path=path, sha256=sha256, card=card)

    def predict_score(self, X: np.ndarray) -> np.ndarray:
        if len(X) == 0:
            return np.empty(0)
        out = self.booster.predict(np.ascontiguousarray(X, dtype=np.float32), num_threads=0)
        return np.asarray(out, dtype=np.float64).reshape(len(X))

    def trees(self):
        from .trees import from_lightgbm  # written alongside the tree-aware strategies

        return from_lightgbm(self.booster, list(self.feature_names))

    @classmethod
    def default_params(cls) -> dict:
        return dict(PARAMS, rounds=ROUNDS)

    def stored_params(self) -> dict:
        """LightGBM text files end with a ``parameters:`` block."""
        text = self.booster.model_to_string()
        block = text.split("\nparameters:\n", 1)[1].split("end of parameters", 1)[0] if "\nparameters:\n" in text else ""
        found = {}
        for line in block.splitlines():
            line = line.strip()
            if line.startswith("[") and ":" in line:
                k, v = line[1:-1].split(":", 1)
                if k.strip() in STORED_KEYS:
                    found[k.strip()] = v.strip()
        found["rounds"] = self.booster.num_trees()
        return found

    def to_bytes(self) -> bytes:
        return self.booster.model_to_string().encode()

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        self.booster.save_model(str(path))
        self.path, self.source, self.sha256 = path, str(path), file_sha256(path)
        return path

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray, feature_names: Sequence[str], *, weight: np.ndarray | None = None,
            seed: int = 0, params: dict | None = None, threads: int | None = None,
            predict_threads: int = 0) -> tuple["LightGBMModel", dict]:
        """Train with :data:`PARAMS` (``params`` override them; ``rounds`` sets the number of trees;
        ``monotone_constraints`` may be a list in input order or a ``{feature: +1/-1}`` dict)."""
        import lightgbm as lgb

        p = {**PARAMS, "seed": seed, **(params or {})}
        rounds = int(p.pop("rounds", ROUNDS))
        if threads is not None:
            p["num_threads"] = threads
        names = list(feature_names)
        mono = p.get("monotone_constraints")
        if isinstance(mono, dict):  # {feature: +1/-1}, the neutral form; LightGBM wants a list in input order
            p["monotone_constraints"] = [int(mono.get(n, 0)) for n in names]
        elif isinstance(mono, (tuple, str)):
            p["monotone_constraints"] = [int(v) for v in str(mono).strip("()").split(",")] if isinstance(mono, str) \
                else list(mono)
        booster = lgb.train(p, lgb.Dataset(X, label=y, weight=weight, feature_name=names), rounds)
        return cls(booster, names, sha256=bytes_sha256(booster.model_to_string().encode())), dict(p, rounds=rounds)
