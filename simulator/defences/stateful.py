"""A stateful probe detector in the style of Chen, Carlini & Wagner (2019), "Stateful Detection of Black-Box
Adversarial Attacks": keep each account's (card's, device's) last ``buffer`` queries as embeddings; a new query
whose mean distance to its ``k`` nearest buffered neighbours falls below a calibrated threshold looks like a search
(many nearly identical attempts) and is flagged.

The embedding is the transaction's mutable features, each scaled to [0, 1] over its bounds (continuous features
with a non-negative range on a log scale, as amounts are), categorical features one-hot (a different category is
distance 1). The threshold is calibrated on legitimate traffic: the ``fpr`` quantile of its k-NN distances, so at
most that share of legitimate transactions with enough history would be flagged.

``knn_distances`` is a Numba kernel walking a time-sorted stream; ``reference_knn_distances`` is its plain-NumPy
twin for the tests.

Examples
--------
>>> import numpy as np
>>> key = np.array([0, 0, 0, 0, 1]); t = np.arange(5)
>>> emb = np.array([[0.0], [0.01], [0.02], [0.015], [0.0]], dtype=np.float32)
>>> d = knn_distances(key, t, emb, k=2, buffer=4)
>>> bool(np.isinf(d[:2]).all()), round(float(d[3]), 4), bool(np.isinf(d[4]))
(True, 0.005, True)
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ..schema import Kind, SchemaArrays


def embed(X: np.ndarray, sa: SchemaArrays, columns: np.ndarray | None = None) -> np.ndarray:
    """Embeddings (n, e) float32 of rows ``X`` (model order) over ``columns`` (default: the mutable features)."""
    X = np.asarray(X, dtype=np.float64)
    cols = np.flatnonzero(sa.mutable) if columns is None else np.asarray(columns)
    parts = []
    for j in cols:
        x = X[:, j]
        lo, hi = float(sa.lo[j]), float(sa.hi[j])
        if sa.kind[j] == Kind.CATEGORICAL:
            cats = sa.categories[j, : sa.n_categories[j]]
            parts.append((x[:, None] == cats[None, :]).astype(np.float64) / np.sqrt(2.0))
            continue
        span = hi - lo if hi > lo else 1.0
        if sa.kind[j] == Kind.CONTINUOUS and lo >= 0 and hi > 100 * max(lo, 1e-9):
            v = np.log1p(np.clip(x - lo, 0, None)) / np.log1p(span)
        else:
            v = (x - lo) / span
        parts.append(np.nan_to_num(v, nan=-1.0)[:, None])  # a missing value is its own place, far from any
    if not parts:
        return np.zeros((len(X), 1), np.float32)
    return np.ascontiguousarray(np.hstack(parts), dtype=np.float32)


@njit(cache=True, nogil=True)
def _knn_kernel(key, ts, emb, push, k, window, buf, bts, pos, cnt, out):
    n, e = emb.shape
    B = buf.shape[1]
    tmp = np.empty(B, np.float64)
    for i in range(n):
        r = key[i]
        m = min(cnt[r], B)
        c = 0
        for j in range(m):
            if bts[r, j] > ts[i] - window:
                d = 0.0
                for q in range(e):
                    diff = np.float64(buf[r, j, q]) - np.float64(emb[i, q])
                    d += diff * diff
                tmp[c] = np.sqrt(d)
                c += 1
        if c >= k:
            s = np.sort(tmp[:c])
            acc = 0.0
            for j in range(k):
                acc += s[j]
            out[i] = acc / k
        else:
            out[i] = np.inf
        if not push[i]:
            continue
        p = pos[r]
        for q in range(e):
            buf[r, p, q] = emb[i, q]
        bts[r, p] = ts[i]
        pos[r] = (p + 1) % B
        cnt[r] += 1


class KnnState:
    """Per-key buffers carried across calls (keys are dense 0..n_keys-1)."""

    def __init__(self, n_keys: int, dim: int, *, buffer: int = 32, k: int = 4, window: float = np.inf):
        if k < 1 or buffer < k:
            raise ValueError("need 1 <= k <= buffer")
        self.k, self.window = int(k), float(window)
        self.buf = np.zeros((n_keys, buffer, dim), np.float32)
        self.bts = np.full((n_keys, buffer), -np.inf)
        self.pos = np.zeros(n_keys, np.int64)
        self.cnt = np.zeros(n_keys, np.int64)

    def grow(self, n_keys: int) -> None:
        if n_keys <= len(self.pos):
            return
        extra = n_keys - len(self.pos)
        self.buf = np.concatenate([self.buf, np.zeros((extra,) + self.buf.shape[1:], np.float32)])
        self.bts = np.concatenate([self.bts, np.full((extra, self.bts.shape[1]), -np.inf)])
        self.pos = np.concatenate([self.pos, np.zeros(extra, np.int64)])
        self.cnt = np.concatenate([self.cnt, np.zeros(extra, np.int64)])

    def process(self, key: np.ndarray, ts: np.ndarray, emb: np.ndarray, push: np.ndarray | None = None) -> np.ndarray:
        """Mean distance of each row to its k nearest earlier rows of the same key (inf: too little history);
        rows with ``push`` false are looked up but not remembered (e.g. remember only declined transactions)."""
        key = np.ascontiguousarray(key, np.int64)
        if len(key):
            self.grow(int(key.max()) + 1)
        out = np.empty(len(key), np.float64)
        push = np.ones(len(key), np.bool_) if push is None else np.ascontiguousarray(push, np.bool_)
        _knn_kernel(key, np.ascontiguousarray(ts, np.float64), np.ascontiguousarray(emb, np.float32), push, self.k,
                    self.window, self.buf, self.bts, self.pos, self.cnt, out)
        return out


def knn_distances(key, ts, emb, *, k: int = 4, buffer: int = 32, window: float = np.inf,
                  push: np.ndarray | None = None) -> np.ndarray:
    """One time-sorted stream: each row's mean distance to its k nearest buffered rows of the same key."""
    key = np.asarray(key, np.int64)
    state = KnnState(int(key.max()) + 1 if len(key) else 1, np.asarray(emb).shape[1], buffer=buffer, k=k, window=window)
    return state.process(key, ts, emb, push)


def reference_knn_distances(key, ts, emb, *, k: int = 4, buffer: int = 32, window: float = np.inf,
                            push: np.ndarray | None = None) -> np.ndarray:
    """Plain-NumPy twin of :func:`knn_distances`."""
    hist: dict[int, list] = {}
    out = np.empty(len(key))
    emb = np.asarray(emb, np.float32)
    for i in range(len(key)):
        h = hist.setdefault(int(key[i]), [])
        live = [e for (t, e) in h[-buffer:] if t > ts[i] - window]
        if len(live) >= k:
            d = np.sort(np.sqrt(((np.asarray(live, np.float64) - emb[i].astype(np.float64)) ** 2).sum(axis=1)))
            out[i] = d[:k].mean()
        else:
            out[i] = np.inf
        if push is None or push[i]:
            h.append((ts[i], emb[i]))
    return out


def calibrate(legit_distances: np.ndarray, fpr: float) -> float:
    """The distance threshold flagging at most ``fpr`` of the legitimate rows that have enough history."""
    d = np.asarray(legit_distances, np.float64)
    d = np.sort(d[np.isfinite(d)])
    if len(d) == 0:
        return 0.0
    i = int(np.floor(fpr * len(d)))
    return float(d[i]) if i < len(d) else float(d[-1])  # flag when distance < threshold
