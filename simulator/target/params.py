"""The training hyperparameters a model file keeps, so a hardened candidate is retrained like its base model.

XGBoost JSON/UBJ stores its training configuration (tree parameters, learning rate, sampling); LightGBM text files
end with a ``parameters:`` block. Only the parameters that shape the trees are taken; ``rounds`` is the number of
boosting rounds the file holds. Anything not found falls back to the baseline's (:mod:`simulator.target.train`).
"""
from __future__ import annotations

import json

from . import TargetModel
from .train import LGBM_PARAMS, LGBM_ROUNDS, XGB_PARAMS, XGB_ROUNDS

XGB_KEYS = ("max_depth", "eta", "subsample", "colsample_bytree", "min_child_weight", "gamma", "lambda", "alpha",
            "max_bin", "max_leaves")
LGBM_KEYS = ("learning_rate", "num_leaves", "min_data_in_leaf", "feature_fraction", "bagging_fraction",
             "bagging_freq", "max_depth", "lambda_l1", "lambda_l2", "min_sum_hessian_in_leaf", "max_bin")


def baseline_params(kind: str) -> dict:
    """The baseline's parameters for ``kind``, with ``rounds``."""
    if kind == "xgboost":
        return dict(XGB_PARAMS, rounds=XGB_ROUNDS)
    if kind == "lightgbm":
        return dict(LGBM_PARAMS, rounds=LGBM_ROUNDS)
    raise ValueError(f"no trainer for model kind {kind!r}")


def training_params(model: TargetModel) -> tuple[dict, str]:
    """``(params, source)``: the hyperparameters stored in the model file over the baseline's, and where they came
    from (``"model file"`` or ``"baseline"``)."""
    params = baseline_params(model.kind)
    found: dict = {}
    try:
        if model.kind == "xgboost":
            cfg = json.loads(model.booster.save_config())["learner"]
            train = cfg.get("gradient_booster", {}).get("tree_train_param", {}) or \
                cfg.get("gradient_booster", {}).get("updater", {}).get("grow_quantile_histmaker", {}).get("train_param", {})
            for k in XGB_KEYS:
                if k in train:
                    found[k] = _number(train[k])
            if "learning_rate" in train and "eta" not in found:
                found["eta"] = _number(train["learning_rate"])
            found["rounds"] = int(model.booster.num_boosted_rounds())
        elif model.kind == "lightgbm":
            text = model.booster.model_to_string()
            block = text.split("\nparameters:\n", 1)[1].split("end of parameters", 1)[0] if "\nparameters:\n" in text else ""
            for line in block.splitlines():
                line = line.strip()
                if line.startswith("[") and ":" in line:
                    k, v = line[1:-1].split(":", 1)
                    if k.strip() in LGBM_KEYS:
                        found[k.strip()] = _number(v.strip())
            found["rounds"] = int(model.booster.num_trees())
    except Exception:  # a file without a readable config: the baseline's parameters
        found = {}
    found = {k: v for k, v in found.items() if v is not None}
    params.update(found)
    return params, ("model file" if found else "baseline")


def _number(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    f = float(f"{f:.7g}")  # XGBoost stores float32: 0.100000001 -> 0.1
    return int(f) if f == int(f) and abs(f) < 2**31 else f
