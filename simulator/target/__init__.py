"""The deployed side: a fraud model behind one protocol (:class:`TargetModel`), one adapter module per kind.

Kinds: ``xgboost`` (JSON/UBJ), ``lightgbm`` (text), ``onnx`` (ONNX Runtime) and ``http`` (MLflow or KServe v2
scoring endpoints). Files are read in their native formats only; nothing is ever unpickled. A new kind is one
module with a class registered by ``@register_adapter("name")`` (see :mod:`simulator.target.registry`).

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

A model saved without names gets them from ``features`` (``model.features`` in a scenario):

>>> unnamed = xgb.train({"objective": "binary:logistic"}, xgb.DMatrix(X, y), 3)
>>> load_model(unnamed, features=["amount", "hour"]).feature_names
('amount', 'hour')
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..errors import ModelError
# the adapters register themselves in this order (each imports its library lazily)
from . import xgboost as _xgboost  # noqa: F401  # isort: skip
from . import lightgbm as _lightgbm  # noqa: F401  # isort: skip
from . import onnx as _onnx  # noqa: F401  # isort: skip
from . import http as _http  # noqa: F401  # isort: skip
from .base import TargetModel, card_path_for, file_sha256, load_card, read_card, resolve_features
from .registry import ADAPTERS, detect_kind, detect_object, get_adapter, kinds, register_adapter

__all__ = ["TargetModel", "load_model", "register_adapter", "get_adapter", "kinds", "detect_kind", "card_path_for",
           "file_sha256", "load_card", "read_card", "resolve_features", "ADAPTERS"]

KINDS = kinds()


def load_model(spec_or_path: Any, kind: str | None = None, *, features: Sequence[str] | None = None,
               field_name: str = "model.path", source: str | None = None) -> TargetModel:
    """A :class:`TargetModel` from a file path, a scenario's ``model`` section (or its dict), a URL, or a live
    model object (XGBoost ``Booster``/``XGBClassifier``, LightGBM ``Booster``/``LGBMClassifier``, an
    ``onnxruntime.InferenceSession``); an existing :class:`TargetModel` is returned as it is.

    ``kind`` is detected when not given: from the first bytes of a file (JSON/UBJ: xgboost, ``tree``: lightgbm,
    ONNX protobuf: onnx), from the class of an object, ``http`` for a URL. ``features`` names the inputs of a
    model saved without names (and must equal the names of a model saved with them)."""
    obj = spec_or_path
    if isinstance(obj, TargetModel):
        return obj
    if obj is None:
        raise ModelError("no model given: set model.path (a file) or model.url (an endpoint)", file=source,
                         field="model")
    if isinstance(obj, str) and obj.startswith(("http://", "https://")):
        obj = {"url": obj}
    if isinstance(obj, dict) or _is_spec(obj):
        get = obj.get if isinstance(obj, dict) else lambda k, d=None: getattr(obj, k, d)
        features = features if features is not None else get("features")
        kind = kind or get("kind")
        if get("url") is not None:
            if get("path") is not None:
                raise ModelError("give model.path or model.url, not both", file=source, field="model.url")
            cls = get_adapter(kind or "http", source=source)
            if not hasattr(cls, "from_spec"):
                raise ModelError(f"a {kind} model is read from a file (model.path), not from a URL", file=source,
                                 field="model.kind")
            return cls.from_spec(obj, source=source, features=features)
        obj = get("path")
        if obj is None:
            raise ModelError("no model given: set model.path (a file) or model.url (an endpoint)", file=source,
                             field="model")
    if isinstance(obj, (str, Path)):
        path = Path(obj)
        try:
            is_file = path.is_file()
        except OSError as exc:  # a name too long for the file system, ...
            raise ModelError(f"cannot be read ({exc.strerror or type(exc).__name__})", file=str(path),
                             field=field_name) from None
        if not is_file:
            raise ModelError("a folder, not a model file" if path.is_dir() else "file not found", file=str(path),
                             field=field_name)
        kind = kind or detect_kind(path)
        cls = get_adapter(kind, source=str(path))
        from_path = getattr(cls, "from_path", None)
        if from_path is None:
            raise ModelError(f"a {kind} model is not loaded from a file", file=str(path), field="model.kind")
        try:
            return from_path(path, features=features)
        except ModelError:
            raise
        except Exception as exc:  # the libraries raise their own error types for corrupt files
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"cannot be read as a {kind} model ({first[:160]})", file=str(path),
                             field=field_name) from None
    cls = get_adapter(kind) if kind else ADAPTERS[detect_object(obj)]
    return cls.from_object(obj, features=features)


def _is_spec(obj: Any) -> bool:
    return hasattr(type(obj), "model_fields") and hasattr(obj, "path") and hasattr(obj, "url")
