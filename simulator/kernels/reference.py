"""Reference semantics of the kernels, written once against an array namespace ``xp``.

With ``xp=numpy`` this is the plain NumPy reference the property tests compare the Numba kernels with; with
``xp=cupy`` it is the GPU path (:mod:`simulator.kernels.gpu`), so both devices share one definition.

Conventions shared by every kernel:

* ``X`` (n, d) candidates, ``X0`` (m, d) original transactions, ``origin`` (n,) int64: row ``i`` of ``X`` is a
  candidate for original ``X0[origin[i]]``. One call can so mix candidates for many targets.
* ``sa`` is a :class:`simulator.schema.SchemaArrays` (kinds: 0 continuous, 1 integer, 2 binary, 3 categorical;
  direction: -1 decrease, 0 any, 1 increase).
* Randomness comes in as arrays (``U``, ``V`` uniform in [0, 1), ``Z`` standard normal) drawn by the caller's
  ``numpy.random.Generator``, so every backend gives the same answer for the same draws.
"""
from __future__ import annotations

import numpy as np

CONTINUOUS, INTEGER, BINARY, CATEGORICAL = 0, 1, 2, 3
MODE_LOCAL, MODE_UNIFORM = 0, 1
_TINY = 1e-12


def _consts(sa, xp):
    return (xp.asarray(sa.kind)[None, :], xp.asarray(sa.lo)[None, :], xp.asarray(sa.hi)[None, :],
            xp.asarray(sa.mutable)[None, :], xp.asarray(sa.direction)[None, :])


def _snap_categorical(out, sa, xp):
    cats_all = xp.asarray(sa.categories)
    for j in np.nonzero(np.asarray(sa.kind) == CATEGORICAL)[0]:
        k = int(sa.n_categories[j])
        cats = cats_all[j, :k]
        idx = xp.argmin(xp.abs(xp.nan_to_num(out[:, j, None]) - cats[None, :]), axis=1)  # ties: first (smaller) one
        out[:, j] = xp.where(xp.isnan(out[:, j]), out[:, j], cats[idx])  # a missing value stays missing
    return out


def project(X, X0, origin, sa, xp=np):
    """Nearest valid candidate: frozen features reset to the original, integers rounded (half up), bounds clipped,
    binaries snapped at 0.5, categoricals snapped to the nearest category, then the allowed direction enforced.

    Missing values (NaN) are data: a non-finite candidate value becomes the original (so stays NaN where the
    original is NaN); a frozen NaN stays NaN; directions do not apply where the original is NaN."""
    kind, lo, hi, mutable, direction = _consts(sa, xp)
    x0 = X0[origin]
    out = xp.where(xp.isfinite(X), X, x0)
    missing = xp.isnan(out)
    out = xp.where(kind == INTEGER, xp.floor(out + 0.5), out)
    out = xp.where((kind == CONTINUOUS) | (kind == INTEGER), xp.minimum(xp.maximum(out, lo), hi), out)
    out = xp.where(kind == BINARY, (out >= 0.5).astype(out.dtype), out)
    out = xp.where(missing, xp.nan, out)
    out = _snap_categorical(out, sa, xp)
    present = ~xp.isnan(x0)
    out = xp.where((direction == 1) & present, xp.maximum(out, x0), out)
    out = xp.where((direction == -1) & present, xp.minimum(out, x0), out)
    return xp.where(mutable, out, x0)


def cost(X, X0, origin, sa, xp=np):
    """Sum over changed features of ``cost * |delta| / (max - min)`` (continuous, integer) or ``cost`` (binary,
    categorical). A missing value given a value (or the reverse) costs the feature's full ``cost``; NaN to NaN is
    unchanged."""
    kind, lo, hi, _, _ = _consts(sa, xp)
    w = xp.asarray(sa.cost)[None, :]
    x0 = X0[origin]
    nan_x, nan_0 = xp.isnan(X), xp.isnan(x0)
    diff = xp.where(nan_x | nan_0, 0.0, X - x0)
    span = hi - lo
    numeric = w * xp.abs(diff) / xp.where(span > 0, span, 1.0)
    numeric = xp.where(span > 0, numeric, w * (diff != 0))
    flag = w * (diff != 0)
    per = xp.where((kind == CONTINUOUS) | (kind == INTEGER), numeric, flag)
    per = xp.where(nan_x != nan_0, w, per)
    return per.sum(axis=1)


def violations(X, X0, origin, sa, xp=np):
    """Per candidate: True when it breaks any constraint (what the oracle refuses to score). NaN equals NaN: a
    missing original may stay missing (frozen or mutable) or, if mutable, take any valid value (its direction does
    not apply); turning a present value into NaN, or any infinity, is a violation."""
    kind, lo, hi, mutable, direction = _consts(sa, xp)
    x0 = X0[origin]
    nan_x, nan_0 = xp.isnan(X), xp.isnan(x0)
    both_nan = nan_x & nan_0
    bad = ~xp.isfinite(X) & ~both_nan
    bad |= (~mutable) & (X != x0) & ~both_nan
    numeric = (kind == CONTINUOUS) | (kind == INTEGER)
    bad |= mutable & numeric & ((X < lo) | (X > hi))
    bad |= mutable & (kind == INTEGER) & ~nan_x & (X != xp.floor(X))
    bad |= mutable & (kind == BINARY) & ~nan_x & (X != 0) & (X != 1)
    bad |= mutable & (direction == 1) & (X < x0)
    bad |= mutable & (direction == -1) & (X > x0)
    cats_all = xp.asarray(sa.categories)
    for j in np.nonzero((np.asarray(sa.kind) == CATEGORICAL) & np.asarray(sa.mutable))[0]:
        k = int(sa.n_categories[j])
        bad[:, j] |= ~nan_x[:, j] & ~(X[:, j, None] == cats_all[j, None, :k]).any(axis=1)
    return bad.any(axis=1)


def admit(X, X0, origin, used, sa, xp=np):
    """The oracle's per-batch checks in one call (:meth:`simulator.oracle.Oracle.admit`). Returns ``query_index``
    (per candidate: ``used[origin[i]]`` plus its 1-based rank among the batch's candidates for that original, in row
    order), ``invalid`` (:func:`violations`), ``cost`` (:func:`cost`) and ``asked`` (candidates per original, length
    ``len(used)``). ``origin`` and ``used`` (int64) stay on the host."""
    origin = np.asarray(origin, np.int64)
    asked = np.bincount(origin, minlength=len(used)).astype(np.int64)
    order = np.argsort(origin, kind="stable")
    rank = np.empty(len(origin), np.int64)
    ts = origin[order]
    rank[order] = np.arange(1, len(ts) + 1) - np.searchsorted(ts, ts)
    o = xp.asarray(origin)
    return (np.asarray(used, np.int64)[origin] + rank, violations(X, X0, o, sa, xp), cost(X, X0, o, sa, xp),
            asked)


def charge(X, X0, origin, used, budget, sa, xp=np):
    """:func:`admit` and the charge in one call (:meth:`simulator.oracle.Oracle.query`): a batch with no invalid
    candidate and within ``budget`` (per original, ``used + asked <= budget``) is charged, ``used += asked`` in place
    (``used`` and ``budget``: int64 on the host), and ``(query_index, cost)`` returned; any other batch returns None
    and charges nothing."""
    qi, bad, c, asked = admit(X, X0, origin, used, sa, xp)
    if bool(bad.any()) or bool((used + asked > np.asarray(budget, np.int64)).any()):
        return None
    used += asked
    return qi, c


def mutate(base, X0, origin, U, Z, V, step, p, mode, sa, xp=np):
    """Random moves from ``base``, projected. Each mutable feature moves with probability ``p[i]``, and one
    mutable feature chosen by ``V[i]`` always moves. ``mode`` 0 (local): continuous/integer move by
    ``Z * step[i] * (max - min)`` (integers at least one unit), binaries flip, categoricals jump to another
    category. ``mode`` 1 (uniform): continuous/integer take a uniform value in the interval the direction allows
    around the original. The uniform number deciding whether a feature moves is reused, rescaled, to pick the
    new category or uniform value. A missing (NaN) value that moves takes a uniform value within the bounds (a
    binary: 1 when that number is at least 0.5)."""
    kind, lo, hi, mutable, direction = _consts(sa, xp)
    n, d = base.shape
    mut_idx = np.nonzero(np.asarray(sa.mutable))[0]
    if len(mut_idx) == 0:
        return project(base, X0, origin, sa, xp)
    x0 = X0[origin]
    p_ = p[:, None]
    hit = U < p_
    forced_col = xp.asarray(mut_idx)[xp.minimum((V * len(mut_idx)).astype(xp.int64), len(mut_idx) - 1)]
    forced = xp.arange(d)[None, :] == forced_col[:, None]
    sel = (hit | forced) & mutable
    u = xp.where(hit, U / xp.maximum(p_, _TINY), (U - p_) / xp.maximum(1.0 - p_, _TINY))
    u = xp.minimum(xp.maximum(u, 0.0), 1.0 - 1e-12)
    present = ~xp.isnan(x0)
    if mode == MODE_LOCAL:
        delta = Z * step[:, None] * (hi - lo)
        int_delta = xp.where(xp.abs(delta) < 1.0, xp.where(Z >= 0, 1.0, -1.0), delta)
        numeric = base + xp.where(kind == INTEGER, int_delta, delta)
    else:
        a = xp.where((direction == 1) & present, x0, lo)
        b = xp.where((direction == -1) & present, x0, hi)
        numeric = xp.where(kind == INTEGER, xp.minimum(xp.floor(a + u * (b - a + 1.0)), b), a + u * (b - a))
    # a missing value that moves takes a uniform value within the bounds
    missing = xp.isnan(base)
    uniform = xp.where(kind == INTEGER, xp.minimum(xp.floor(lo + u * (hi - lo + 1.0)), hi), lo + u * (hi - lo))
    numeric = xp.where(missing, uniform, numeric)
    value = xp.where(kind == BINARY, xp.where(missing, (u >= 0.5).astype(base.dtype), 1.0 - base), numeric)
    cats_all = xp.asarray(sa.categories)
    for j in np.nonzero(np.asarray(sa.kind) == CATEGORICAL)[0]:
        k = int(sa.n_categories[j])
        pick = xp.minimum((u[:, j] * k).astype(xp.int64), k - 1)
        c = cats_all[j][pick]
        value[:, j] = xp.where(c == base[:, j], cats_all[j][(pick + 1) % k], c)
    return project(xp.where(sel, value, base), X0, origin, sa, xp)
