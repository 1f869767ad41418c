"""XGBoost model files are checked here before the library parses them.

XGBoost's JSON reader recurses once per nesting level, so a JSON file nested a few hundred thousand levels deep
kills the process with SIGSEGV. :func:`check_xgboost_file` refuses deep nesting of JSON in a scan (no recursion)
and parses a UBJ (binary JSON) file once in a child process with a time limit, so a crash or a hang of the parser
costs the child, never this process.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from ..errors import ModelError

MAX_BYTES = 1 << 30  # 1 GiB; real fraud models are a few MB
MAX_DEPTH = 64  # an XGBoost model nests about 8 levels

_CHILD = r"""
import json, sys, xgboost as xgb
from simulator.target.xgb_guard import check_xgboost_json
b = xgb.Booster()
b.load_model(sys.argv[1])
try:  # XGBoost loads a UBJ file with broken trees and crashes when it scores: the JSON file's tree checks
    check_xgboost_json(json.loads(bytes(b.save_raw("json"))))
except ValueError as exc:
    sys.exit(str(exc))
print("ok")
"""


def check_xgboost_file(path: str | Path, *, field: str = "model.path", timeout_s: float = 60.0) -> None:
    """Raise a one-line :class:`ModelError` for a model file XGBoost cannot parse safely."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ModelError(f"{size / 2**20:,.0f} MiB is over the limit of {MAX_BYTES // 2**20} MiB for a model",
                             file=str(path), field=field)
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ModelError(f"cannot be read ({exc.strerror or type(exc).__name__})", file=str(path), field=field) from None
    head = data.lstrip()[:1]
    if head == b"{" and data.lstrip()[1:2] in (b'"', b" ", b"\n", b"\r", b"\t", b"}"):
        depth = json_depth(data)
        if depth > MAX_DEPTH:
            raise ModelError(f"JSON nested {depth:,} levels deep (an XGBoost model has about 8)", file=str(path),
                             field=field)
        try:
            check_xgboost_json(json.loads(data))
        except (ValueError, RecursionError) as exc:
            raise ModelError(f"cannot be read as a xgboost model ({str(exc).splitlines()[0][:160]})", file=str(path),
                             field=field) from None
        return
    _parse_in_child(path, field, timeout_s)


_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


def json_depth(data: bytes) -> int:
    """Deepest nesting of brackets outside strings (vectorised, no recursion).

    >>> json_depth(b'{"a": [1, {"b": "[[["}]}')
    3
    """
    import numpy as np

    codes = np.frombuffer(_STRING.sub(b'""', data), dtype=np.uint8)
    step = np.isin(codes, (0x5B, 0x7B)).astype(np.int64) - np.isin(codes, (0x5D, 0x7D)).astype(np.int64)
    return int(np.cumsum(step).max()) if len(step) else 0


def check_xgboost_json(model: object) -> None:
    """The trees of an XGBoost JSON model form trees: array lengths agree, child and parent pointers are in range
    and consistent, every node is reached once from the root, split features exist (XGBoost trusts all of this and
    crashes, or loops, when it does not hold). Raises ``ValueError`` with the reason."""
    import numpy as np

    try:
        learner = model["learner"]  # type: ignore[index]
        n_features = int(learner["learner_model_param"]["num_feature"])
        booster = learner["gradient_booster"]
        if "gbtree" in booster:  # dart wraps a gbtree
            booster = booster["gbtree"]
        trees = booster["model"]["trees"] if "model" in booster else []
    except (KeyError, TypeError, ValueError):
        raise ValueError("learner.gradient_booster.model.trees or learner_model_param.num_feature is missing") from None
    if not isinstance(trees, list):
        raise ValueError("trees is not a list")
    if not trees:  # as a LightGBM file without trees: every score would be the base score
        raise ValueError("the model has no trees")
    for t, tree in enumerate(trees):
        try:
            left = np.asarray(tree["left_children"], dtype=np.int64)
            right = np.asarray(tree["right_children"], dtype=np.int64)
            parents = np.asarray(tree["parents"], dtype=np.int64)
            split = np.asarray(tree["split_indices"], dtype=np.int64)
            lengths = {len(tree[k]) for k in ("split_conditions", "default_left", "base_weights")}
            num_nodes = int(tree["tree_param"]["num_nodes"])
        except (KeyError, TypeError, ValueError, OverflowError):
            raise ValueError(f"tree {t}: missing or malformed node arrays") from None
        n = len(left)
        if n == 0 or {len(right), len(parents), len(split), num_nodes} | lengths != {n} or left.ndim != 1:
            raise ValueError(f"tree {t}: node arrays disagree in length")
        if ((left < -1) | (left >= n) | (right < -1) | (right >= n)).any() or ((left == -1) != (right == -1)).any():
            raise ValueError(f"tree {t}: child pointers out of range")
        internal = left != -1
        if internal.any() and ((split[internal] < 0) | (split[internal] >= n_features)).any():
            raise ValueError(f"tree {t}: a split on a feature the model does not have")
        children = np.concatenate([left[internal], right[internal]])
        if len(children) != n - 1 or len(np.unique(children)) != n - 1 or (children == 0).any():
            raise ValueError(f"tree {t}: a node is reached twice, or the root is someone's child")
        nodes = np.flatnonzero(internal)
        if (parents[left[internal]] != nodes).any() or (parents[right[internal]] != nodes).any():
            raise ValueError(f"tree {t}: parent pointers disagree with child pointers")
        seen, frontier = 1, [0]  # every node reached from the root (no detached cycle)
        while frontier:
            node = frontier.pop()
            if left[node] != -1:
                frontier += [int(left[node]), int(right[node])]
                seen += 2
                if seen > n:
                    raise ValueError(f"tree {t}: a cycle in the child pointers")
        if seen != n:
            raise ValueError(f"tree {t}: nodes not reachable from the root")


def _parse_in_child(path: Path, field: str, timeout_s: float) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    try:
        proc = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True, timeout=timeout_s,
                              env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ModelError(f"XGBoost did not finish parsing the file within {timeout_s:g} s (a malformed model?)",
                         file=str(path), field=field) from None
    if proc.returncode != 0 or b"ok" not in proc.stdout:
        lines = [ln for ln in proc.stderr.decode(errors="replace").strip().splitlines() if ln.strip()]
        how = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else (lines[-1] if lines else "failed")
        raise ModelError(f"cannot be read as an XGBoost model ({how[:160]})", file=str(path), field=field)
