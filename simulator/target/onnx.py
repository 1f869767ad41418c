"""ONNX models through ONNX Runtime: exports of scikit-learn estimators and pipelines (skl2onnx) and of
XGBoost / LightGBM / CatBoost (onnxmltools), or a live ``onnxruntime.InferenceSession``.

Inputs: one float tensor of shape ``[N, d]`` (the features in ``model.features`` order; ONNX files carry no
column names), or one ``[N, 1]`` float tensor per feature (its names are the feature names). Features are sent as
float32 (float64 for a ``tensor(double)`` input). A non-float input is refused: fraudsim sends numbers.

Output: the fraud probability is class 1 of a probability tensor (``[N, 2]``; ``[N, 1]`` or ``[N]`` is taken as
P(fraud) itself) or of a ZipMap output (a list of ``{class: probability}`` dicts). Outputs named like
``*prob*`` win over others; integer label outputs are ignored.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ModelError
from .base import TargetModel, bytes_sha256, file_sha256, first_line, read_card, resolve_features
from .registry import register_adapter

_FLOAT_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64}
#: ONNX Runtime intra-op threads when ``OMP_NUM_THREADS`` is not set: the cores this process may use, at most this
#: many (tree ensembles and small batches gain little beyond it, and idle spinning threads slow every other process
#: on shared machines). When it is set, it bounds ONNX Runtime's pool as it bounds XGBoost's and LightGBM's OpenMP
#: pools (:func:`simulator.threads.model_threads`), so ``OMP_NUM_THREADS=1`` scores on one core.
MAX_THREADS = 4


def _ort(source: str | None = None):
    try:
        import onnxruntime as ort
    except ImportError:
        raise ModelError("ONNX models need onnxruntime: pip install 'fraudsim[onnx]'", file=source,
                         field="model.path") from None
    return ort


def session_options():
    """ONNX Runtime's options for fraudsim's sessions: ``intra_op_num_threads`` from ``OMP_NUM_THREADS`` when set
    (at most the usable cores), else the usable cores up to :data:`MAX_THREADS`; one inter-op thread; no spinning."""
    from ..threads import model_threads

    ort = _ort()
    so = ort.SessionOptions()
    so.intra_op_num_threads = model_threads(MAX_THREADS)
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3  # errors only: ONNX Runtime warns about harmless graph details
    return so


@register_adapter("onnx")
class ONNXModel(TargetModel):
    def __init__(self, session: Any, feature_names: Sequence[str], *, input_names: Sequence[str],
                 input_dtype: Any, output_name: str, raw: bytes | None = None, **kw):
        super().__init__(feature_names, **kw)
        self.session = session
        self.input_names = tuple(input_names)
        self.input_dtype = input_dtype
        self.output_name = output_name
        self._raw = raw
        self._class1: Any = None

    @classmethod
    def sniff(cls, head: bytes, path: Path) -> bool:
        # a ModelProto starts with field 1 (ir_version, varint): byte 0x08
        return head.startswith(b"\x08")

    @classmethod
    def from_path(cls, path: Path, *, features: Sequence[str] | None = None) -> "ONNXModel":
        ort = _ort(str(path))

        try:
            session = ort.InferenceSession(str(path), sess_options=session_options(), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ModelError(f"cannot be read as an ONNX model ({first_line(exc)})", file=str(path),
                             field="model.path") from None
        return cls._wrap(session, features, source=str(path), path=path, sha256=file_sha256(path),
                         card=read_card(path))

    @classmethod
    def accepts(cls, obj: Any) -> bool:
        mod = type(obj).__module__ or ""
        return (mod.startswith("onnxruntime") and hasattr(obj, "get_inputs")) or \
            (mod.startswith("onnx") and hasattr(obj, "SerializeToString") and hasattr(obj, "graph"))

    @classmethod
    def from_object(cls, obj: Any, *, features: Sequence[str] | None = None) -> "ONNXModel":
        import onnxruntime as ort

        if hasattr(obj, "SerializeToString"):  # an onnx.ModelProto
            raw = obj.SerializeToString()
            session = ort.InferenceSession(raw, sess_options=session_options(), providers=["CPUExecutionProvider"])
            return cls._wrap(session, features, source="<onnx.ModelProto>", path=None, sha256=bytes_sha256(raw),
                             card=None, raw=raw)
        # a session keeps no bytes of its model: hash what it exposes (signature and metadata)
        meta = obj.get_modelmeta()
        sig = repr(([(i.name, i.type, i.shape) for i in obj.get_inputs()],
                    [(o.name, o.type, o.shape) for o in obj.get_outputs()],
                    meta.producer_name, meta.graph_name, meta.version, meta.custom_metadata_map))
        return cls._wrap(obj, features, source="<InferenceSession>", path=None, sha256=bytes_sha256(sig.encode()),
                         card={"sha256_rule": "hash of the session's inputs, outputs and metadata (a live session "
                                              "keeps no model bytes)"})

    @classmethod
    def _wrap(cls, session, features, *, source, path, sha256, card, raw=None) -> "ONNXModel":
        inputs = session.get_inputs()
        for inp in inputs:
            if inp.type not in _FLOAT_TYPES:
                raise ModelError(f"input {inp.name!r} is {inp.type}; fraudsim sends numeric features, so the model "
                                 "needs a float input (export with FloatTensorType)", file=source, field="model.path")
        if len(inputs) == 1:
            shape = inputs[0].shape
            if len(shape) != 2:
                raise ModelError(f"input {inputs[0].name!r} has shape {shape}; expected [N, features]", file=source,
                                 field="model.path")
            d = shape[1] if isinstance(shape[1], int) else None
            names = resolve_features(None, d, features, source=source)
        else:
            for inp in inputs:
                if len(inp.shape) != 2 or inp.shape[1] != 1:
                    raise ModelError(f"input {inp.name!r} has shape {inp.shape}; a model with several inputs must "
                                     "take one [N, 1] column per feature", file=source, field="model.path")
            names = resolve_features([i.name for i in inputs], len(inputs), features, source=source)
        dtypes = {_FLOAT_TYPES[i.type] for i in inputs}
        output = _probability_output(session, source)
        return cls(session, names, input_names=[i.name for i in inputs], input_dtype=dtypes.pop(),
                   output_name=output, raw=raw, source=source, path=path, sha256=sha256, card=card)

    def predict_score(self, X: np.ndarray) -> np.ndarray:
        n = len(X)
        if n == 0:
            return np.empty(0)
        X = np.ascontiguousarray(X, dtype=self.input_dtype)
        if len(self.input_names) == 1:
            feed = {self.input_names[0]: X}
        else:
            feed = {name: X[:, j : j + 1] for j, name in enumerate(self.input_names)}
        try:
            (out,) = self.session.run([self.output_name], feed)
        except Exception as exc:  # onnxruntime's own error types
            raise ModelError(f"scoring failed ({first_line(exc)})", file=self.source, field="model") from None
        if isinstance(out, list):  # ZipMap: one {class: probability} dict per row
            if self._class1 is None:
                self._class1 = _class1_key(out[0], self.source)
            k = self._class1
            return self.check_scores(np.fromiter((row[k] for row in out), np.float64, len(out)), n)
        out = np.asarray(out)
        if out.ndim == 2 and out.shape[1] == 2:
            out = out[:, 1]
        elif out.ndim == 2 and out.shape[1] > 2:
            raise ModelError(f"output {self.output_name!r} has {out.shape[1]} classes; fraudsim needs a binary "
                             "classifier", file=self.source, field="model")
        return self.check_scores(out, n)

    def to_bytes(self) -> bytes:
        if self._raw is not None:
            return self._raw
        if self.path is not None:
            return Path(self.path).read_bytes()
        return super().to_bytes()


def _probability_output(session, source) -> str:
    outs = session.get_outputs()
    usable = [o for o in outs if o.type in _FLOAT_TYPES or (o.type.startswith("seq(map(") and "float" in o.type)]
    if not usable:
        raise ModelError(f"no probability output (outputs: {', '.join(f'{o.name} {o.type}' for o in outs)})",
                         file=source, field="model.path")
    named = [o for o in usable if "prob" in o.name.lower()]
    return (named or usable)[0].name


def _class1_key(row: dict, source) -> Any:
    for k in (1, "1", True, "True", "true", "fraud"):
        if k in row:
            return k
    if len(row) == 2:
        return sorted(row, key=str)[1]
    raise ModelError(f"the probability output has classes {list(row)[:5]}; fraudsim needs a binary classifier "
                     "with class 1 = fraud", file=source, field="model")
