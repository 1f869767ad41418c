"""Model kinds: one adapter class per kind, registered by name; kind detection for files, objects and URLs.

A new kind is one module in :mod:`simulator.target` with a :class:`~simulator.target.base.TargetModel`
subclass decorated ``@register_adapter("name")``, plus its import in ``simulator/target/__init__.py``. An adapter
class may define:

- ``sniff(head: bytes, path: Path) -> bool`` (class method): True when the file is of this kind;
- ``from_path(path, *, features=None) -> TargetModel``: load a native file;
- ``accepts(obj) -> bool`` and ``from_object(obj, *, features=None) -> TargetModel``: wrap a live library object;
- ``from_spec(spec, *, source=None) -> TargetModel``: build from a scenario's ``model`` section (endpoints).

Libraries are imported only inside those methods, so the registry itself is cheap to import.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelError

if TYPE_CHECKING:
    from .base import TargetModel

ADAPTERS: dict[str, type[TargetModel]] = {}
#: the order files are sniffed in (registration order)
_SNIFF_ORDER: list[str] = []


def register_adapter(kind: str):
    """Class decorator: register ``cls`` as the adapter for ``kind`` (names are unique)."""

    def deco(cls):
        if kind in ADAPTERS and ADAPTERS[kind] is not cls:
            raise ValueError(f"model kind {kind!r} is already registered by {ADAPTERS[kind].__name__}")
        cls.kind = kind
        ADAPTERS[kind] = cls
        if kind not in _SNIFF_ORDER:
            _SNIFF_ORDER.append(kind)
        return cls

    return deco


def kinds() -> tuple[str, ...]:
    return tuple(ADAPTERS)


def get_adapter(kind: str, *, source: str | None = None, field: str = "model.kind") -> type[TargetModel]:
    try:
        return ADAPTERS[kind]
    except KeyError:
        raise ModelError(f"unknown model kind {kind!r}; known: {', '.join(ADAPTERS)}", file=source, field=field) from None


def detect_kind(path: Path) -> str:
    """The kind of a model file from its first bytes (never from pickles, which are never loaded)."""
    with open(path, "rb") as f:
        head = f.read(256)
    for kind in _SNIFF_ORDER:
        sniff = getattr(ADAPTERS[kind], "sniff", None)
        if sniff is not None and sniff(head, path):
            return kind
    raise ModelError("neither an XGBoost JSON/UBJ model nor a LightGBM text model nor an ONNX model (pickles are "
                     "never loaded)", file=str(path), field="model.path")


def detect_object(obj: Any) -> str:
    """The kind of a live model object (an XGBoost/LightGBM booster or estimator, an ONNX Runtime session)."""
    for kind, cls in ADAPTERS.items():
        accepts = getattr(cls, "accepts", None)
        if accepts is not None and accepts(obj):
            return kind
    raise ModelError(f"cannot use a {type(obj).__module__}.{type(obj).__name__} as a model; give an XGBoost or "
                     "LightGBM booster or classifier, an onnxruntime.InferenceSession, a model file or a URL",
                     field="model")
