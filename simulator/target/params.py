"""The training hyperparameters a model file keeps, so a hardened candidate is retrained like its base model.

Each trainable adapter says what its files keep (:meth:`~simulator.target.base.TargetModel.stored_params`: XGBoost
JSON/UBJ only its number of rounds, LightGBM text its ``parameters:`` block) and what its baseline trains with
(:meth:`~simulator.target.base.TargetModel.default_params`). Only the parameters that shape the trees are taken;
``rounds`` is the number of boosting rounds the file holds. Anything not found falls back to the baseline's.
"""
from __future__ import annotations

from . import TargetModel
from .registry import get_adapter


def baseline_params(kind: str) -> dict:
    """The baseline's parameters for ``kind``, with ``rounds``."""
    return get_adapter(kind).default_params()


def training_params(model: TargetModel) -> tuple[dict, str]:
    """``(params, source)``: the hyperparameters stored in the model file over the baseline's, and where they came
    from (``"model file"`` or ``"baseline"``)."""
    params = baseline_params(model.kind)
    try:
        stored = model.stored_params()
    except Exception:  # a file without a readable config: the baseline's parameters
        stored = {}
    found = {k: v for k, v in ((k, _number(v)) for k, v in stored.items()) if v is not None}
    if "rounds" in found:
        found["rounds"] = int(found["rounds"])
    params.update(found)
    return params, ("model file" if found else "baseline")


def _number(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    f = float(f"{f:.7g}")  # XGBoost stores float32: 0.100000001 -> 0.1
    return int(f) if f == int(f) and abs(f) < 2**31 else f
