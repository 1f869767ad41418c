"""Export ``xgb_baseline.json`` to ONNX (``xgb_export.onnx``, card ``xgb_export.card.json``) with onnxmltools, as a team would export its own
model, and check that ONNX Runtime scores the holdout as XGBoost does.

usage: python models/export_onnx.py        (needs the test extra: pip install -e '.[test]')
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxmltools
import polars as pl
import xgboost as xgb
from onnxmltools.convert.common.data_types import FloatTensorType

HERE = Path(__file__).resolve().parent


def main() -> int:
    booster = xgb.Booster(model_file=str(HERE / "xgb_baseline.json"))
    names = booster.feature_names
    booster.feature_names = None  # onnxmltools wants XGBoost's own f0, f1, ...; ONNX files carry no names anyway
    onx = onnxmltools.convert_xgboost(booster, initial_types=[("features", FloatTensorType([None, len(names)]))],
                                      target_opset=15)
    onx.doc_string = f"xgb_baseline.json exported with onnxmltools; inputs in this order: {', '.join(names)}"
    out = HERE / "xgb_export.onnx"
    out.write_bytes(onx.SerializeToString())

    import onnxruntime as ort

    X = pl.read_parquet(HERE.parent / "data_samples" / "holdout.parquet").select(names).to_numpy().astype(np.float32)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    p_onnx = sess.run(None, {"features": X})[-1][:, 1]
    p_xgb = xgb.Booster(model_file=str(HERE / "xgb_baseline.json")).inplace_predict(X)
    card = json.loads((HERE / "xgb_baseline.card.json").read_text())
    card.update(kind="onnx", file=out.name, exported_from="xgb_baseline.json (onnxmltools, target opset 15)",
                max_abs_diff_vs_xgboost_on_holdout=float(np.abs(p_onnx - p_xgb).max()))
    card.pop("sha256", None)
    (HERE / "xgb_export.card.json").write_text(json.dumps(card, indent=2) + "\n")
    print(f"wrote {out} ({out.stat().st_size:,} bytes); max |onnx - xgboost| on the holdout: "
          f"{np.abs(p_onnx - p_xgb).max():.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
