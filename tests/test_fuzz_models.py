"""Hostile model files (found by fuzzing): a LightGBM text model whose tree lacks a key LightGBM's parser requires
(``num_cat``: one byte flipped in its name) passed the guard, and LightGBM's error inside its parallel tree load
aborted the process (SIGABRT: no message, no exit code of ours). The loads run in a child process, so a
regression kills the child, not the test run."""
from __future__ import annotations

import json
import subprocess
import sys

REQUIRED = ("num_leaves", "num_cat", "leaf_value", "split_feature", "threshold", "decision_type", "left_child",
            "right_child")

CHILD = """
import json, sys
from simulator.errors import ModelError
from simulator.target import load_model
out = {}
for path in sys.argv[1:]:
    try:
        load_model(path, "lightgbm")
        out[path] = "loaded"
    except ModelError as exc:
        out[path] = str(exc)
print(json.dumps(out))
"""


def test_a_tree_without_a_required_key_is_one_line_not_an_abort(team_files, tmp_path):
    text = team_files["lgbm"].read_text()
    paths = []
    for key in REQUIRED:
        i = text.index("Tree=1\n")
        j = text.index(f"\n{key}=", i) + 1
        p = tmp_path / f"no_{key}.txt"
        p.write_text(text[:j] + key[:-1] + "9" + text[j + len(key):])  # 'num_cat=' -> 'num_ca9=': one byte
        paths.append(str(p))
    r = subprocess.run([sys.executable, "-c", CHILD, *paths], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (r.returncode, r.stderr[-500:])
    answers = json.loads(r.stdout.strip().splitlines()[-1])
    for key, path in zip(REQUIRED, paths):
        msg = answers[path]
        assert msg != "loaded" and "\n" not in msg and path in msg and "Tree=1" in msg, (key, msg)


SCORE = """
import sys, numpy as np
from simulator.errors import ModelError
from simulator.target import load_model
try:
    m = load_model(sys.argv[1], "xgboost")
    m.predict_score(np.zeros((3, len(m.feature_names))))
    print("scored")
except ModelError as exc:
    print(exc)
"""


def test_xgboost_ubj_with_a_child_pointer_out_of_range_is_refused_not_a_segfault(team_files, tmp_path):
    """A byte flipped in a UBJ tree: XGBoost loaded it (the guard's child parse passed) and segfaulted scoring."""
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(str(team_files["xgb"]))
    raw = bytearray(booster.save_raw("ubj"))
    i = raw.index(b"left_children") + len(b"left_children")
    assert raw[i:i + 4] == b"[$l#", raw[i:i + 8]  # a typed array of int32, then its count
    start = i + 5 + {ord("i"): 1, ord("U"): 1, ord("I"): 2, ord("l"): 4, ord("L"): 8}[raw[i + 4]]
    raw[start:start + 4] = (0x7FFFFFF0).to_bytes(4, "big")  # the root's left child, far past the tree's end
    path = tmp_path / "broken.ubj"
    path.write_bytes(bytes(raw))
    r = subprocess.run([sys.executable, "-c", SCORE, str(path)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (r.returncode, r.stderr[-500:])
    out = r.stdout.strip()
    assert out.startswith(f"{path}: model.path: cannot be read as an XGBoost model") and "child pointers" in out, out


def test_an_xgboost_model_without_trees_is_refused_like_a_lightgbm_one(team_files, tmp_path):
    """An XGBoost JSON model with its trees removed loaded and scored every row at the base score (a validation of
    nothing); a LightGBM file without trees was already refused. One line naming the file and the reason."""
    from simulator.errors import ModelError
    from simulator.target import load_model

    model = json.loads(team_files["xgb"].read_text())
    gb = model["learner"]["gradient_booster"]["model"]
    gb["trees"], gb["tree_info"] = [], []
    gb["gbtree_model_param"]["num_trees"] = "0"
    path = tmp_path / "no trees.json"
    path.write_text(json.dumps(model))
    try:
        load_model(path, "xgboost")
    except ModelError as exc:
        msg = str(exc)
    else:
        raise AssertionError("a model without trees was loaded")
    assert "\n" not in msg and str(path) in msg and "the model has no trees" in msg, msg
