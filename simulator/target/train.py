"""Baseline models trained on the world: XGBoost or LightGBM, saved natively with a JSON card beside them."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from . import TargetModel, card_path_for, file_sha256

XGB_PARAMS = {"objective": "binary:logistic", "eval_metric": "auc", "max_depth": 5, "eta": 0.1, "subsample": 0.8,
              "colsample_bytree": 0.9, "min_child_weight": 2, "tree_method": "hist", "nthread": 0}
XGB_ROUNDS = 150
LGBM_PARAMS = {"objective": "binary", "learning_rate": 0.1, "num_leaves": 31, "min_data_in_leaf": 40,
               "feature_fraction": 0.9, "bagging_fraction": 0.8, "bagging_freq": 1, "verbose": -1,
               "deterministic": True, "force_row_wise": True}
LGBM_ROUNDS = 150


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum formula (ties get average ranks)."""
    y = np.asarray(y).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    s = np.asarray(score)[order]
    ranks = np.empty(len(s))
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[i : j + 1] = (i + j) / 2.0 + 1.0
        i = j + 1
    r = np.empty(len(s))
    r[order] = ranks
    return float((r[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


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
                legit_fraction: float = 0.2, provenance: dict | None = None,
                params: dict | None = None) -> TrainedModel:
    """Train on ``train``, pick the threshold at ``fpr`` false-positive rate on ``test`` legit rows, measure
    test AUC. ``provenance`` (e.g. the world config and seed) goes into the card.

    As fraud teams do, only ``legit_fraction`` of the legitimate training rows are kept (all fraud is), weighted
    by its inverse so scores stay calibrated: the same AUC in a fraction of the time.

    ``params`` overrides the library parameters (e.g. ``monotone_constraints``); its key ``rounds`` sets the
    number of boosting rounds."""
    extra = dict(params or {})
    rounds = extra.pop("rounds", None)
    names = list(feature_names)
    y_train = np.asarray(y_train)
    keep = (y_train == 1) | (np.random.default_rng(seed).random(len(y_train)) < legit_fraction)
    weight = np.where(y_train[keep] == 1, 1.0, 1.0 / legit_fraction)
    X_train, y_train = X_train[keep], y_train[keep]
    if kind == "xgboost":
        import xgboost as xgb

        params = dict(XGB_PARAMS, seed=seed, **extra)
        if isinstance(params.get("monotone_constraints"), (list, tuple)):  # XGBoost takes "(1,0,-1)" or a dict
            params["monotone_constraints"] = "(" + ",".join(str(int(c)) for c in params["monotone_constraints"]) + ")"
        if isinstance(params.get("interaction_constraints"), (list, tuple)):
            params["interaction_constraints"] = str([[int(j) for j in g] for g in params["interaction_constraints"]])
        rounds = int(rounds or XGB_ROUNDS)
        booster = xgb.train(params, xgb.DMatrix(X_train, label=y_train, weight=weight, feature_names=names), rounds)
        booster.set_param({"nthread": 0})
        params_used = dict(params, rounds=rounds)
    elif kind == "lightgbm":
        import lightgbm as lgb

        params = dict(LGBM_PARAMS, seed=seed, **extra)
        rounds = int(rounds or LGBM_ROUNDS)
        booster = lgb.train(params, lgb.Dataset(X_train, label=y_train, weight=weight, feature_name=names), rounds)
        params_used = dict(params, rounds=rounds)
    else:
        raise ValueError(f"unknown model kind {kind!r}")
    model = TargetModel(kind=kind, feature_names=tuple(names), booster=booster)
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
    model.booster.save_model(str(path))  # both libraries pick the native format from the call
    model.path, model.sha256 = path, file_sha256(path)
    card = dict(trained.card, file=path.name, sha256=model.sha256)
    card_path_for(path).write_text(json.dumps(card, indent=2) + "\n")
    return path
