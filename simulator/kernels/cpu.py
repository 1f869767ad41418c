"""Numba kernels with exactly the semantics of :mod:`simulator.kernels.reference` (read its docstring).

Each kernel is compiled twice from one Python function: serially for the small batches of an interactive
attack step, and with ``parallel=True`` for large batches where threads pay for their start-up.
"""
from __future__ import annotations

import math
import types

import numpy as np
from numba import njit, prange

CONTINUOUS, INTEGER, BINARY, CATEGORICAL = 0, 1, 2, 3
PARALLEL_MIN_ROWS = 8192


@njit(cache=True, nogil=True, inline="always")
def _project_value(v, x0, j, kind, lo, hi, direction, cats, ncats):
    if not math.isfinite(v):
        v = x0
    if math.isnan(v):  # the original is missing and the candidate leaves it so
        return v
    k = kind[j]
    if k == INTEGER:
        v = math.floor(v + 0.5)
    if k == CONTINUOUS or k == INTEGER:
        v = min(max(v, lo[j]), hi[j])
    elif k == BINARY:
        v = 1.0 if v >= 0.5 else 0.0
    else:
        best = cats[j, 0]
        bd = abs(v - best)
        for c in range(1, ncats[j]):
            dd = abs(v - cats[j, c])
            if dd < bd:
                bd = dd
                best = cats[j, c]
        v = best
    if math.isnan(x0):  # no direction from a missing original
        return v
    if direction[j] == 1 and v < x0:
        v = x0
    elif direction[j] == -1 and v > x0:
        v = x0
    return v


def _project(X, X0, origin, kind, lo, hi, mutable, direction, cats, ncats, out):
    # One pass over each row whose inner loop over the features has no branch, only selects on per-feature flags
    # (so LLVM vectorizes it across features), then the few categorical features snapped in a second, short loop.
    # The same steps as _project_value, in the same order: a non-finite value becomes the original; NaN stays NaN;
    # integers round half up (a float floor, as the reference: no int64 overflow for huge values); clip (numeric
    # kinds only); binaries snap at 0.5; the direction holds where the original is present (a NaN original
    # compares false); frozen features copy the original.
    n, d = X.shape
    clo = np.empty(d)
    chi = np.empty(d)
    isint = np.empty(d, np.bool_)
    isbin = np.empty(d, np.bool_)
    up = np.empty(d, np.bool_)
    down = np.empty(d, np.bool_)
    n_cat = 0
    for j in range(d):
        k = kind[j]
        numeric = k == CONTINUOUS or k == INTEGER
        clo[j] = lo[j] if numeric else -np.inf
        chi[j] = hi[j] if numeric else np.inf
        isint[j] = k == INTEGER
        isbin[j] = k == BINARY
        up[j] = direction[j] == 1
        down[j] = direction[j] == -1
        if mutable[j] and k == CATEGORICAL:
            n_cat += 1
    cat_idx = np.empty(n_cat, np.int64)
    t = 0
    for j in range(d):
        if mutable[j] and kind[j] == CATEGORICAL:
            cat_idx[t] = j
            t += 1
    for i in prange(n):
        o = origin[i]
        for j in range(d):
            x0 = X0[o, j]
            v = X[i, j]
            v = v if v - v == 0.0 else x0  # v - v is NaN exactly when v is infinite or NaN
            r = np.floor(v + 0.5) if isint[j] else v
            r = (1.0 if r >= 0.5 else 0.0) if isbin[j] else r
            a = clo[j]
            b = chi[j]
            r = a if r < a else r
            r = b if r > b else r
            r = x0 if up[j] and r < x0 else r
            r = x0 if down[j] and r > x0 else r
            r = v if v != v else r  # missing and left missing
            out[i, j] = r if mutable[j] else x0
        for t in range(n_cat):
            j = cat_idx[t]
            x0 = X0[o, j]
            v = X[i, j]
            v = v if v - v == 0.0 else x0
            if v == v:
                best = cats[j, 0]
                bd = abs(v - best)
                for c in range(1, ncats[j]):  # the nearest category, the first one on ties
                    cv = cats[j, c]
                    dd = abs(v - cv)
                    better = dd < bd
                    bd = dd if better else bd
                    best = cv if better else best
                r = x0 if up[j] and best < x0 else best
                r = x0 if down[j] and r > x0 else r
                out[i, j] = r
    return out


def _cost(X, X0, origin, kind, lo, hi, weight, out):
    n, d = X.shape
    for i in prange(n):
        o = origin[i]
        s = 0.0
        for j in range(d):
            a = X[i, j]
            b = X0[o, j]
            if math.isnan(a) or math.isnan(b):
                if math.isnan(a) != math.isnan(b):  # a missing value given a value, or the reverse
                    s += weight[j]
                continue
            diff = a - b
            if diff == 0.0:
                continue
            k = kind[j]
            span = hi[j] - lo[j]
            if (k == CONTINUOUS or k == INTEGER) and span > 0:
                s += weight[j] * abs(diff) / span
            else:
                s += weight[j]
        out[i] = s
    return out


def _violations(X, X0, origin, kind, lo, hi, mutable, direction, cats, ncats, out):
    n, d = X.shape
    for i in prange(n):
        o = origin[i]
        bad = False
        for j in range(d):
            v = X[i, j]
            x0 = X0[o, j]
            if math.isnan(v) and math.isnan(x0):  # missing and left missing: unchanged
                bad = False
            elif not math.isfinite(v):
                bad = True
            elif not mutable[j]:
                bad = v != x0
            else:
                k = kind[j]
                if k == CONTINUOUS or k == INTEGER:
                    bad = v < lo[j] or v > hi[j] or (k == INTEGER and v != math.floor(v))
                elif k == BINARY:
                    bad = v != 0.0 and v != 1.0
                else:
                    bad = True
                    for c in range(ncats[j]):
                        if v == cats[j, c]:
                            bad = False
                if (direction[j] == 1 and v < x0) or (direction[j] == -1 and v > x0):
                    bad = True
            if bad:
                break
        out[i] = bad
    return out


@njit(cache=True, nogil=True)
def _admit(X, X0, origin, used, budget, kind, lo, hi, mutable, direction, cats, ncats, weight, qi, bad_out, cost_out,
           asked):
    """``violations``, ``cost`` and the per-original query numbers in one pass over the rows (serial: the numbers
    follow row order). With a ``budget`` per original (an empty one: none), a batch with no invalid row and within
    every budget is charged (``used += asked``) and -1 returned, any other batch -2 (nothing charged); -1 without a
    budget; ``i >= 0``: row ``i`` names an original that does not exist. The per-value rules repeat ``_cost``'s and
    ``_violations``'s on purpose: the same rules as shared ``inline="always"`` helpers measured 0.56x instead of 0.79x
    in ``bench_oracle --threads 1 --only xgboost`` (and ``cost`` 48 instead of 56 Mrows/s);
    ``tests/test_admit_kernel.py`` holds the three to one reference."""
    n, d = X.shape
    m = asked.shape[0]
    any_bad = False
    for i in range(n):
        o = origin[i]
        if o < 0 or o >= m:
            return i  # the first row whose original does not exist
        asked[o] += 1
        qi[i] = used[o] + asked[o]
        bad = False
        s = 0.0
        for j in range(d):
            v = X[i, j]
            x0 = X0[o, j]
            nv = math.isnan(v)
            n0 = math.isnan(x0)
            if nv or n0:  # cost: a missing value given a value (or the reverse) costs the full weight
                if nv != n0:
                    s += weight[j]
            else:
                diff = v - x0
                if diff != 0.0:
                    k = kind[j]
                    span = hi[j] - lo[j]
                    if (k == CONTINUOUS or k == INTEGER) and span > 0:
                        s += weight[j] * abs(diff) / span
                    else:
                        s += weight[j]
            if bad or (nv and n0):  # violations (as _violations): missing and left missing is unchanged
                continue
            if not math.isfinite(v):
                bad = True
            elif not mutable[j]:
                bad = v != x0
            else:
                k = kind[j]
                if k == CONTINUOUS or k == INTEGER:
                    bad = v < lo[j] or v > hi[j] or (k == INTEGER and v != math.floor(v))
                elif k == BINARY:
                    bad = v != 0.0 and v != 1.0
                else:
                    bad = True
                    for c in range(ncats[j]):
                        if v == cats[j, c]:
                            bad = False
                if (direction[j] == 1 and v < x0) or (direction[j] == -1 and v > x0):
                    bad = True
        bad_out[i] = bad
        cost_out[i] = s
        any_bad |= bad
    if budget.shape[0] == 0:
        return -1
    if any_bad:
        return -2
    for o in range(m):
        if used[o] + asked[o] > budget[o]:
            return -2
    for o in range(m):
        used[o] += asked[o]
    return -1


def _mutate(base, X0, origin, U, Z, V, step, p, mode, mut_idx, kind, lo, hi, mutable, direction, cats, ncats, out):
    n, d = base.shape
    n_mut = mut_idx.shape[0]
    for i in prange(n):
        o = origin[i]
        pi = p[i]
        forced = mut_idx[min(np.int64(V[i] * n_mut), n_mut - 1)]
        for j in range(d):
            x0 = X0[o, j]
            b = base[i, j]
            if not mutable[j]:
                out[i, j] = x0
                continue
            uu = U[i, j]
            hit = uu < pi
            if not hit and j != forced:
                out[i, j] = _project_value(b, x0, j, kind, lo, hi, direction, cats, ncats)
                continue
            if hit:
                u = uu / max(pi, 1e-12)
            else:
                u = (uu - pi) / max(1.0 - pi, 1e-12)
            u = min(max(u, 0.0), 1.0 - 1e-12)
            k = kind[j]
            if math.isnan(b) and k != CATEGORICAL:  # a missing value takes a uniform value within the bounds
                if k == BINARY:
                    v = 1.0 if u >= 0.5 else 0.0
                elif k == INTEGER:
                    v = min(math.floor(lo[j] + u * (hi[j] - lo[j] + 1.0)), hi[j])
                else:
                    v = lo[j] + u * (hi[j] - lo[j])
            elif k == BINARY:
                v = 1.0 - b
            elif k == CATEGORICAL:
                nc = ncats[j]
                pick = min(np.int64(u * nc), nc - 1)
                v = cats[j, pick]
                if v == b:
                    v = cats[j, (pick + 1) % nc]
            elif mode == 0:
                delta = Z[i, j] * step[i] * (hi[j] - lo[j])
                if k == INTEGER and abs(delta) < 1.0:
                    delta = 1.0 if Z[i, j] >= 0 else -1.0
                v = b + delta
            else:
                a = x0 if direction[j] == 1 and not math.isnan(x0) else lo[j]
                bb = x0 if direction[j] == -1 and not math.isnan(x0) else hi[j]
                if k == INTEGER:
                    v = min(math.floor(a + u * (bb - a + 1.0)), bb)
                else:
                    v = a + u * (bb - a)
            out[i, j] = _project_value(v, x0, j, kind, lo, hi, direction, cats, ncats)
    return out


def _compile(fn):
    # Numba names a function's on-disk cache after its qualified name and line, not its compile options, so the
    # serial and parallel builds of one function would share (and overwrite) one cache entry, and a later process
    # could load the serial machine code for the parallel dispatcher. The parallel build gets its own name.
    par = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_parallel", fn.__defaults__, fn.__closure__)
    par.__qualname__ = fn.__qualname__ + "_parallel"
    return (njit(cache=True, nogil=True)(fn), njit(cache=True, nogil=True, parallel=True)(par))


_project_s, _project_p = _compile(_project)
_cost_s, _cost_p = _compile(_cost)
_viol_s, _viol_p = _compile(_violations)
_mutate_s, _mutate_p = _compile(_mutate)


def _pick(pair, n):
    return pair[1] if n >= PARALLEL_MIN_ROWS else pair[0]


def _f(a):
    return np.ascontiguousarray(a, dtype=np.float64)


def _i(a):
    return np.ascontiguousarray(a, dtype=np.int64)


def project(X, X0, origin, sa, out=None):
    X = _f(X)
    out = np.empty_like(X) if out is None else out
    return _pick((_project_s, _project_p), len(X))(X, _f(X0), _i(origin), sa.kind, sa.lo, sa.hi, sa.mutable,
                                                    sa.direction, sa.categories, sa.n_categories, out)


def cost(X, X0, origin, sa):
    X = _f(X)
    return _pick((_cost_s, _cost_p), len(X))(X, _f(X0), _i(origin), sa.kind, sa.lo, sa.hi, sa.cost,
                                              np.empty(len(X)))


def violations(X, X0, origin, sa):
    X = _f(X)
    return _pick((_viol_s, _viol_p), len(X))(X, _f(X0), _i(origin), sa.kind, sa.lo, sa.hi, sa.mutable, sa.direction,
                                              sa.categories, sa.n_categories, np.empty(len(X), np.bool_))


def admit(X, X0, origin, used, sa):
    return _admit_call(X, X0, origin, used, _NO_BUDGET, sa)[:4]


def charge(X, X0, origin, used, budget, sa):
    if not (isinstance(used, np.ndarray) and used.dtype == np.int64 and used.flags.c_contiguous):
        raise ValueError("charge: the counts must be a contiguous int64 array (they are charged in place)")
    budget = _i(budget)
    if len(budget) != len(used):
        raise ValueError(f"charge: {len(budget)} budgets for {len(used)} counts")
    qi, bad, c, asked, status = _admit_call(X, X0, origin, used, budget, sa)
    return None if status == -2 else (qi, c)


_NO_BUDGET = np.zeros(0, np.int64)


def _admit_call(X, X0, origin, used, budget, sa):
    """``(query_index, invalid, cost, asked, status)``; ``status`` -2: a refused batch (with a budget)."""
    X, origin = _f(X), _i(origin)
    n = len(X)
    if n >= PARALLEL_MIN_ROWS:  # large batches: the parallel kernels, and the counts in NumPy
        asked = np.bincount(origin, minlength=len(used)).astype(np.int64)
        order = np.argsort(origin, kind="stable")
        ts = origin[order]
        qi = np.empty(n, np.int64)
        qi[order] = _i(used)[ts] + (np.arange(1, n + 1) - np.searchsorted(ts, ts))
        bad = violations(X, X0, origin, sa)
        status = -1
        if len(budget):
            if bad.any() or (used + asked > budget).any():
                status = -2
            else:
                used += asked
        return qi, bad, cost(X, X0, origin, sa), asked, status
    qi, bad, c, asked = np.empty(n, np.int64), np.empty(n, np.bool_), np.empty(n), np.zeros(len(used), np.int64)
    X0 = _f(X0)
    if len(budget) == 0:
        used = _i(used)
    if len(used) != len(X0) or X.shape[1] != X0.shape[1]:
        raise ValueError(f"admit: {len(used)} counts and {X0.shape} originals for candidates of shape {X.shape}")
    row = _admit(X, X0, origin, used, budget, sa.kind, sa.lo, sa.hi, sa.mutable, sa.direction, sa.categories,
                 sa.n_categories, sa.cost, qi, bad, c, asked)
    if row >= 0:
        raise IndexError(f"admit: row {row} names original {origin[row]}, and there are {len(used)}")
    return qi, bad, c, asked, row


def mutate(base, X0, origin, U, Z, V, step, p, mode, sa):
    base = _f(base)
    mut_idx = np.nonzero(sa.mutable)[0].astype(np.int64)
    if len(mut_idx) == 0:
        return project(base, X0, origin, sa)
    return _pick((_mutate_s, _mutate_p), len(base))(
        base, _f(X0), _i(origin), _f(U), _f(Z), _f(V), _f(step), _f(p), int(mode), mut_idx,
        sa.kind, sa.lo, sa.hi, sa.mutable, sa.direction, sa.categories, sa.n_categories, np.empty_like(base))
