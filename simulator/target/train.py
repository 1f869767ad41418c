"""Training through the adapter layer: :func:`train_model` (the facade: threshold, test AUC, card) over per-kind
trainers (:func:`fit_model`, which calls the ``fit`` class method of a trainable adapter: XGBoost, LightGBM).
Models are saved natively with a JSON card beside them."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ModelError
from ..measures import roc_auc  # noqa: F401  (the one AUC; re-exported for callers of train.roc_auc)
from .base import TargetModel, card_path_for
from .registry import ADAPTERS, get_adapter


#: what a world scenario trains when ``model.kind`` is not given
DEFAULT_KIND = "xgboost"


def trainable_kinds() -> tuple[str, ...]:
    return tuple(k for k, cls in ADAPTERS.items() if cls.trainable)


def check_trainable(kind: str, *, source: str | None = None) -> None:
    """A one-line :class:`ModelError` unless fraudsim can train models of ``kind``."""
    if not get_adapter(kind, source=source).trainable:
        raise ModelError(f"fraudsim cannot train a {kind} model; trainable kinds: {', '.join(trainable_kinds())} "
                         "(or give model.path / model.url)", file=source, field="model.kind")


def fit_model(X: np.ndarray, y: np.ndarray, feature_names: Sequence[str], *, kind: str = "xgboost", seed: int = 0,
              weight: np.ndarray | None = None, params: dict | None = None, threads: int | None = None,
              predict_threads: int = 0) -> tuple[TargetModel, dict]:
    """Train one model of ``kind`` with its adapter's default parameters (``params`` override them; ``rounds``
    sets the number of trees); returns the model and the parameters used."""
    check_trainable(kind)
    return get_adapter(kind).fit(X, y, feature_names, weight=weight, seed=seed, params=params, threads=threads,
                   predict_threads=predict_threads)


def threshold_at_fpr(y: np.ndarray, score: np.ndarray, fpr: float) -> float:
    """The lowest threshold declining at most ``fpr`` of the legitimate rows (decline when score >= threshold)."""
    legit = np.sort(np.asarray(score)[~np.asarray(y).astype(bool)])
    if len(legit) == 0:
        return 0.5
    k = int(np.floor(fpr * len(legit)))  # how many legit rows may be declined
    thr = legit[len(legit) - k - 1] if k < len(legit) else legit[0]
    return float(np.nextafter(thr, np.inf))


@dataclass
class TrainedModel:
    model: TargetModel
    threshold: float
    card: dict


def train_model(X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray, y_test: np.ndarray,
                feature_names: Sequence[str], *, kind: str = "xgboost", seed: int = 0, fpr: float = 0.01,
                legit_fraction: float = 0.2, provenance: dict | None = None, params: dict | None = None) -> TrainedModel:
    """Train on ``train``, pick the threshold at ``fpr`` false-positive rate on ``test`` legit rows, measure
    test AUC. ``provenance`` (e.g. the world config and seed) goes into the card.

    As fraud teams do, only ``legit_fraction`` of the legitimate training rows are kept (all fraud is), weighted
    by its inverse so scores stay calibrated: the same AUC in a fraction of the time. ``params`` override the
    learner's defaults (e.g. ``{"monotone_constraints": "(1,0)", "rounds": 50}``)."""
    names = list(feature_names)
    y_train = np.asarray(y_train)
    keep = (y_train == 1) | (np.random.default_rng(seed).random(len(y_train)) < legit_fraction)
    weight = np.where(y_train[keep] == 1, 1.0, 1.0 / legit_fraction)
    X_train, y_train = X_train[keep], y_train[keep]
    model, params_used = fit_model(X_train, y_train, names, kind=kind, seed=seed, weight=weight, params=params)
    test_score = model.predict_score(X_test)
    threshold = threshold_at_fpr(y_test, test_score, fpr)
    declined = test_score >= threshold
    y = np.asarray(y_test).astype(bool)
    card = {
        "kind": kind,
        "feature_names": names,
        "threshold": threshold,
        "threshold_rule": f"lowest score declining at most {fpr:.2%} of legitimate test transactions",
        "test_auc": roc_auc(y_test, test_score),
        "test_recall_at_threshold": float(declined[y].mean()) if y.any() else None,
        "test_fpr_at_threshold": float(declined[~y].mean()) if (~y).any() else None,
        "train_rows": int(len(X_train)), "legit_fraction_kept": legit_fraction, "test_rows": int(len(X_test)),
        "train_fraud_rate": float(np.average(y_train, weights=weight)), "seed": seed,
        "params": params_used,
        **({"provenance": provenance} if provenance else {}),
    }
    model.card = card
    return TrainedModel(model=model, threshold=threshold, card=card)


def save_model(trained: TrainedModel, path: str | Path) -> Path:
    """Write the model natively (``.json``/``.ubj`` for XGBoost, ``.txt`` for LightGBM) and ``<stem>.card.json``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = trained.model
    model.save(path)  # natively: the adapter picks the format (XGBoost by suffix: .json or .ubj)
    card = dict(trained.card, file=path.name, sha256=model.sha256)
    card_path_for(path).write_text(json.dumps(card, indent=2) + "\n")
    return path
