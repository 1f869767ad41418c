"""Neutral tree ensembles: the trees of an XGBoost or LightGBM binary classifier as flat NumPy arrays.

White-box strategies (``tree``, ``exact``) read a :class:`TreeEnsemble` and never the library's own objects, so
no strategy branches on the model kind. The parsers :func:`from_xgboost` and :func:`from_lightgbm` read the
libraries' documented model dumps (no pickles); :meth:`TreeEnsemble.predict_margin` walks the arrays in NumPy and
gives the library's own margins (tests check it, NaN inputs included).

Split semantics, per internal node ``k`` on feature ``feature[k]`` with value ``v`` (the input cast to float32,
as the model adapters score it):

* ``op[k] == OP_LT``: left when ``v < threshold[k]`` (XGBoost); ``OP_LE``: left when ``v <= threshold[k]``
  (LightGBM); ``OP_IN``: left when ``int(v)`` is one of the node's categories (LightGBM ``==`` splits,
  ``cat_values[cat_start[k]:cat_start[k + 1]]``); ``OP_NOT_IN``: left when it is not (XGBoost categorical splits
  send the listed categories right). A NaN category goes right (LightGBM) or ``default_left`` (XGBoost).
* missing values: ``missing[k] == MISSING_DEFAULT``: NaN goes ``default_left[k]``; ``MISSING_AS_ZERO``: NaN is
  read as 0.0 (LightGBM ``missing_type: None``); ``MISSING_ZERO_DEFAULT``: NaN and zero go ``default_left[k]``
  (LightGBM ``missing_type: Zero``). Categorical: negative values go right.

The score is ``sigmoid(margin_scale * (base_margin + sum of leaf values))``.

Examples
--------
>>> import numpy as np, xgboost as xgb
>>> X = np.random.default_rng(0).random((300, 2)); y = (X[:, 0] + 0.3 * X[:, 1] > 0.6).astype(int)
>>> b = xgb.train({"objective": "binary:logistic", "max_depth": 2}, xgb.DMatrix(X, y, feature_names=["a", "b"]), 5)
>>> ens = from_xgboost(b, ["a", "b"])
>>> ens.n_trees, ens.feature_names
(5, ('a', 'b'))
>>> bool(np.allclose(ens.predict_proba(X), b.predict(xgb.DMatrix(X, feature_names=["a", "b"])), atol=1e-6))
True
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import ModelError

OP_LT, OP_LE, OP_IN, OP_NOT_IN = 0, 1, 2, 3
MISSING_DEFAULT, MISSING_AS_ZERO, MISSING_ZERO_DEFAULT = 0, 1, 2
_LGB_ZERO = 1e-35  # LightGBM's kZeroThreshold


@dataclass(frozen=True, eq=False)
class TreeEnsemble:
    """All nodes of all trees in flat arrays; ``tree_root[t]`` is the node index of tree ``t``'s root."""

    feature_names: tuple[str, ...]
    tree: np.ndarray  # int32 (N,) tree of each node
    feature: np.ndarray  # int32 (N,) split feature (-1 at leaves)
    threshold: np.ndarray  # float64 (N,)
    op: np.ndarray  # int8 (N,) OP_*
    left: np.ndarray  # int32 (N,) global node index (-1 at leaves)
    right: np.ndarray  # int32 (N,)
    default_left: np.ndarray  # bool (N,)
    missing: np.ndarray  # int8 (N,) MISSING_*
    is_leaf: np.ndarray  # bool (N,)
    value: np.ndarray  # float64 (N,) leaf value (0 at internal nodes)
    cat_start: np.ndarray  # int64 (N + 1,) offsets into cat_values
    cat_values: np.ndarray  # float64 categories of categorical splits
    tree_root: np.ndarray  # int32 (T,)
    base_margin: float = 0.0
    margin_scale: float = 1.0  # LightGBM's sigmoid parameter; 1 for XGBoost
    source: str = ""  # "xgboost" or "lightgbm", for messages only

    @property
    def n_trees(self) -> int:
        return int(len(self.tree_root))

    @property
    def n_nodes(self) -> int:
        return int(len(self.tree))

    def categories(self, k: int) -> np.ndarray:
        return self.cat_values[self.cat_start[k]: self.cat_start[k + 1]]

    def go_left(self, k: int, v: float) -> bool:
        """The branch node ``k`` takes for the (float32-cast) value ``v``."""
        v = float(np.float32(v)) if math.isfinite(v) else v
        op, miss = int(self.op[k]), int(self.missing[k])
        if op in (OP_IN, OP_NOT_IN):
            if math.isnan(v):  # XGBoost: the default branch; LightGBM: always right
                return bool(self.default_left[k]) if op == OP_NOT_IN else False
            if v < 0:
                return op == OP_NOT_IN
            inside = bool(np.any(self.categories(k) == float(int(v))))
            return inside if op == OP_IN else not inside
        if math.isnan(v):
            if miss == MISSING_AS_ZERO:
                v = 0.0
            else:
                return bool(self.default_left[k])
        if miss == MISSING_ZERO_DEFAULT and abs(v) <= _LGB_ZERO:
            return bool(self.default_left[k])
        return v < self.threshold[k] if op == OP_LT else v <= self.threshold[k]

    def left_cut(self, k: int) -> float:
        """For a numeric split: the float32-representable ``c`` with ``left <=> v < c`` for float32 values ``v``."""
        t = float(self.threshold[k])
        if self.op[k] == OP_LT:
            c = np.float32(t)
            return float(c) if float(c) >= t else float(np.nextafter(c, np.float32(np.inf)))
        c = np.float32(t)
        if float(c) <= t:
            c = np.nextafter(c, np.float32(np.inf))
        return float(c)

    # -- scoring ----------------------------------------------------------------------------------------------
    def predict_margin(self, X: np.ndarray) -> np.ndarray:
        """The raw margin per row (before the logistic link), inputs cast to float32 as the adapters do."""
        V = np.asarray(X, np.float64).astype(np.float32).astype(np.float64)
        n = len(V)
        if n == 0:
            return np.zeros(0)
        node = np.broadcast_to(self.tree_root[None, :], (n, self.n_trees)).astype(np.int64).copy()
        rows = np.broadcast_to(np.arange(n)[:, None], node.shape)
        while True:
            internal = ~self.is_leaf[node]
            if not internal.any():
                break
            r, k = rows[internal], node[internal]
            v = V[r, self.feature[k]]
            left = self._go_left_vec(k, v)
            node[internal] = np.where(left, self.left[k], self.right[k])
        return self.base_margin + self.value[node].sum(axis=1)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.margin_scale * self.predict_margin(X)))

    def _go_left_vec(self, k: np.ndarray, v: np.ndarray) -> np.ndarray:
        op, miss, dl = self.op[k], self.missing[k], self.default_left[k]
        nan = np.isnan(v)
        v0 = np.where(nan & (miss == MISSING_AS_ZERO), 0.0, v)
        nan = np.isnan(v0)
        with np.errstate(invalid="ignore"):
            num = np.where(op == OP_LT, v0 < self.threshold[k], v0 <= self.threshold[k])
        num = np.where(nan | ((miss == MISSING_ZERO_DEFAULT) & (np.abs(v0) <= _LGB_ZERO)), dl, num)
        cat = (op == OP_IN) | (op == OP_NOT_IN)
        if cat.any():
            out = num.copy()
            for i in np.flatnonzero(cat):
                out[i] = self.go_left(int(k[i]), float(v[i]))
            return out
        return num

    def reachable(self, x0: np.ndarray, mutable: np.ndarray) -> np.ndarray:
        """Nodes an attacker can still reach from ``x0`` changing only ``mutable`` features: at a split on a
        frozen feature only the branch ``x0`` takes is followed. Returns a bool mask over nodes."""
        seen = np.zeros(self.n_nodes, bool)
        stack = list(self.tree_root)
        while stack:
            k = int(stack.pop())
            seen[k] = True
            if self.is_leaf[k]:
                continue
            j = int(self.feature[k])
            if mutable[j]:
                stack.extend((int(self.left[k]), int(self.right[k])))
            else:
                stack.append(int(self.left[k]) if self.go_left(k, float(x0[j])) else int(self.right[k]))
        return seen


# -- parsers ------------------------------------------------------------------------------------------------------
class _Builder:
    def __init__(self):
        self.cols: dict[str, list] = {k: [] for k in ("tree", "feature", "threshold", "op", "left", "right",
                                                      "default_left", "missing", "is_leaf", "value")}
        self.cat_values: list[float] = []
        self.cat_start: list[int] = [0]
        self.roots: list[int] = []

    def add(self, tree, feature, threshold, op, left, right, default_left, missing, is_leaf, value, cats=()):
        k = len(self.cols["tree"])
        for name, v in (("tree", tree), ("feature", feature), ("threshold", threshold), ("op", op), ("left", left),
                        ("right", right), ("default_left", default_left), ("missing", missing),
                        ("is_leaf", is_leaf), ("value", value)):
            self.cols[name].append(v)
        self.cat_values.extend(float(c) for c in cats)
        self.cat_start.append(len(self.cat_values))
        return k

    def build(self, names, base_margin, margin_scale, source) -> TreeEnsemble:
        c = self.cols
        return TreeEnsemble(
            feature_names=tuple(names), tree=np.array(c["tree"], np.int32), feature=np.array(c["feature"], np.int32),
            threshold=np.array(c["threshold"], np.float64), op=np.array(c["op"], np.int8),
            left=np.array(c["left"], np.int32), right=np.array(c["right"], np.int32),
            default_left=np.array(c["default_left"], bool), missing=np.array(c["missing"], np.int8),
            is_leaf=np.array(c["is_leaf"], bool), value=np.array(c["value"], np.float64),
            cat_start=np.array(self.cat_start, np.int64), cat_values=np.array(self.cat_values, np.float64),
            tree_root=np.array(self.roots, np.int32), base_margin=float(base_margin),
            margin_scale=float(margin_scale), source=source)


def _feature_index(names: Sequence[str], model_names: Sequence[str] | None, j: int) -> int:
    if model_names and j < len(model_names) and model_names[j] in names:
        return list(names).index(model_names[j])
    if j >= len(names):
        raise ModelError(f"a split uses feature {j}, but only {len(names)} feature names were given")
    return j


def from_xgboost(booster: Any, feature_names: Sequence[str]) -> TreeEnsemble:
    """The trees of an XGBoost ``gbtree`` binary classifier (from its JSON model, ``save_raw('json')``)."""
    raw = json.loads(bytes(booster.save_raw("json")))
    learner = raw["learner"]
    gb = learner["gradient_booster"]
    if gb.get("name") != "gbtree":
        raise ModelError(f"only gbtree XGBoost models have trees to read (this one is {gb.get('name')!r})")
    model = gb["model"]
    base = str(learner["learner_model_param"]["base_score"]).strip("[]").split(",")[0]
    p = float(base)
    objective = learner.get("objective", {}).get("name", "binary:logistic")
    base_margin = p if objective == "binary:logitraw" else math.log(p / (1.0 - p))
    model_names = list(learner.get("feature_names") or [])
    b = _Builder()
    for t, tr in enumerate(model["trees"]):
        L, R = tr["left_children"], tr["right_children"]
        cond, idx, dflt = tr["split_conditions"], tr["split_indices"], tr["default_left"]
        stype = tr.get("split_type") or [0] * len(L)
        cat_nodes = {int(n): i for i, n in enumerate(tr.get("categories_nodes", []))}
        offset = len(b.cols["tree"])
        b.roots.append(offset)
        for k in range(len(L)):
            leaf = L[k] == -1
            cats: Sequence[float] = ()
            op = OP_LT
            if not leaf and int(stype[k]) == 1:
                i = cat_nodes[k]
                s, n = tr["categories_segments"][i], tr["categories_sizes"][i]
                cats = tr["categories"][s: s + n]
                op = OP_NOT_IN
            b.add(t, -1 if leaf else _feature_index(feature_names, model_names, int(idx[k])),
                  float(np.float32(cond[k])) if not leaf else np.nan, op,
                  -1 if leaf else offset + L[k], -1 if leaf else offset + R[k], bool(dflt[k]), MISSING_DEFAULT, leaf,
                  float(np.float32(cond[k])) if leaf else 0.0, cats)
    return b.build(feature_names, base_margin, 1.0, "xgboost")


def from_lightgbm(booster: Any, feature_names: Sequence[str]) -> TreeEnsemble:
    """The trees of a LightGBM binary classifier (from ``dump_model()``)."""
    dump = booster.dump_model()
    objective = str(dump.get("objective", "binary"))
    if not (objective.startswith("binary") or objective.startswith("cross_entropy")):
        raise ModelError(f"objective {objective!r} is not a binary classifier")
    if dump.get("average_output"):
        raise ModelError("random-forest LightGBM models (average_output) are not supported")
    scale = 1.0
    for part in objective.split():
        if part.startswith("sigmoid:"):
            scale = float(part.split(":", 1)[1])
    model_names = list(dump.get("feature_names") or [])
    b = _Builder()
    for t, info in enumerate(dump["tree_info"]):
        b.roots.append(len(b.cols["tree"]))
        _lgb_node(b, t, info["tree_structure"], feature_names, model_names)
    return b.build(feature_names, 0.0, scale, "lightgbm")


def _lgb_node(b: _Builder, t: int, node: dict, names, model_names) -> int:
    if "split_feature" not in node:
        return b.add(t, -1, np.nan, OP_LT, -1, -1, False, MISSING_DEFAULT, True, float(node.get("leaf_value", 0.0)))
    j = _feature_index(names, model_names, int(node["split_feature"]))
    miss = {"None": MISSING_AS_ZERO, "Zero": MISSING_ZERO_DEFAULT, "NaN": MISSING_DEFAULT}[node.get("missing_type", "None")]
    if node.get("decision_type") == "==":
        cats = [float(c) for c in str(node["threshold"]).split("||")]
        k = b.add(t, j, np.nan, OP_IN, -1, -1, bool(node.get("default_left", False)), miss, False, 0.0, cats)
    else:
        k = b.add(t, j, float(node["threshold"]), OP_LE, -1, -1, bool(node.get("default_left", True)), miss,
                  False, 0.0)
    b.cols["left"][k] = _lgb_node(b, t, node["left_child"], names, model_names)
    b.cols["right"][k] = _lgb_node(b, t, node["right_child"], names, model_names)
    return k


def tree_ensemble(model: Any) -> TreeEnsemble:
    """The neutral trees of a target model (its adapter's ``trees()``); a one-line error for other models."""
    trees = getattr(model, "trees", None)
    if callable(trees):
        return trees()
    raise ModelError(f"a white-box strategy needs a tree model (XGBoost or LightGBM); this model is "
                     f"{getattr(model, 'kind', type(model).__name__)!r}")
