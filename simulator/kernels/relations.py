"""Relations kernels: recompute derived features, repair candidates that break a relation, flag the ones that do.

Three implementations with one semantics: :func:`reference_repair` / :func:`reference_violations` written once
against an array namespace ``xp`` (NumPy: the reference the property tests compare with; CuPy: the GPU twin,
:func:`gpu_repair`), and the Numba kernels :func:`repair` / :func:`violations` (one row per loop iteration).

Inputs: ``X`` (n, d) candidates already projected onto the bounds (``kernels.project``), ``X0`` (m, d) originals,
``origin`` (n,) the original of each row, ``E`` (m, e) the extra data columns of each original (see
:class:`simulator.relations.RelationArrays`), ``sa`` the schema arrays, ``ra`` the relation arrays.

Repair, per row (``PASSES`` times): recompute the derived features in order; for each implication ``if A then B``
that is broken: put B's feature back to its original value if that satisfies B, else A's feature back if that
breaks A, else move B's feature to the nearest allowed value satisfying B, else A's to the nearest allowed value
breaking A; for each broken linear inequality: put its features back to their originals one by one while that
helps, then move them one by one (in column order) as far as needed and allowed. Finally the derived features are
recomputed; a row that still breaks a relation is replaced by the target's *anchor* (the same repair applied to
the original), and :func:`violations` tells whether even that fails (the target is then infeasible).
Only mutable, non-derived features are ever moved; every move stays within bounds, kind and direction.
NaN: a relation whose inputs are NaN counts as satisfied; a derived feature of a NaN input is NaN.
"""
from __future__ import annotations

import math
import weakref

import numpy as np
from numba import njit

from ..relations import holds as _holds
from ..relations import P_ADD, P_CONST, P_DIV, P_MIN, P_MUL, P_NEG, P_SUB, P_VAR

CONTINUOUS, INTEGER, BINARY, CATEGORICAL = 0, 1, 2, 3
PASSES = 3
REL_TOL = 1e-9
NEG_OP = np.array([1, 0, 5, 4, 3, 2, 7, 6], np.int64)  # ==/!=, </>=, <=/>, in/not in


# ================================================================================================================
# reference (xp = numpy or cupy), vectorised over rows
# ================================================================================================================


def _derive(xp, V, ra):
    n = V.shape[0]
    for r in range(len(ra.der_target)):
        stack = []
        for k in range(int(ra.prog_len[r])):
            op, arg = int(ra.prog_op[r, k]), float(ra.prog_arg[r, k])
            if op == P_VAR:
                stack.append(V[:, int(arg)])
            elif op == P_CONST:
                stack.append(xp.full(n, arg))
            elif op == P_NEG:
                stack.append(-stack.pop())
            else:
                b = stack.pop()
                a = stack.pop()
                with np.errstate(all="ignore"):
                    if op == P_ADD:
                        c = a + b
                    elif op == P_SUB:
                        c = a - b
                    elif op == P_MUL:
                        c = a * b
                    elif op == P_DIV:
                        c = a / xp.where(b == 0, xp.nan, b)
                    elif op == P_MIN:
                        c = xp.minimum(a, b)
                    else:
                        c = xp.maximum(a, b)
                stack.append(c)
        val = stack[-1]
        V[:, int(ra.der_target[r])] = xp.where(xp.isfinite(val), val, xp.nan)


def _domain(xp, j, x0j, sa):
    lo = xp.full(x0j.shape, float(sa.lo[j]))
    hi = xp.full(x0j.shape, float(sa.hi[j]))
    if sa.direction[j] == 1:
        lo = xp.maximum(lo, x0j)
    elif sa.direction[j] == -1:
        hi = xp.minimum(hi, x0j)
    return lo, hi


def _options(sa, j):
    k = int(sa.kind[j])
    if k == BINARY:
        return [0.0, 1.0]
    if k == CATEGORICAL:
        return [float(c) for c in np.asarray(sa.categories[j, : int(sa.n_categories[j])])]
    return None


def _nearest(xp, j, op, vals, nval, cur, x0j, sa):
    """Nearest allowed value of feature ``j`` satisfying the condition; (value, found)."""
    lo, hi = _domain(xp, j, x0j, sa)
    opts = _options(sa, j)
    if opts is not None:
        best = xp.full(cur.shape, xp.nan)
        bd = xp.full(cur.shape, xp.inf)
        for c in opts:
            cc = xp.full(cur.shape, c)
            ok = _holds(xp, cc, op, vals, nval) & (cc >= lo) & (cc <= hi)
            dist = xp.abs(cc - cur)
            better = ok & (dist < bd)
            best = xp.where(better, cc, best)
            bd = xp.where(better, dist, bd)
        return best, xp.isfinite(bd)
    integer = int(sa.kind[j]) == INTEGER
    v0 = float(vals[0])
    if op == 0:
        cand = xp.full(cur.shape, v0)
        ok = xp.full(cur.shape, (not integer) or v0 == math.floor(v0))
    elif op == 1:
        up = v0 + 1.0 if integer else float(np.nextafter(v0, np.inf))
        down = v0 - 1.0 if integer else float(np.nextafter(v0, -np.inf))
        cand = xp.where(cur != v0, cur, xp.where(up <= hi, up, down))
        ok = xp.full(cur.shape, True)
    elif op == 6:
        best = xp.full(cur.shape, xp.nan)
        bd = xp.full(cur.shape, xp.inf)
        for s in range(nval):
            c = float(vals[s])
            if integer and c != math.floor(c):
                continue
            cc = xp.full(cur.shape, c)
            dist = xp.abs(cc - cur)
            better = (cc >= lo) & (cc <= hi) & (dist < bd)
            best = xp.where(better, cc, best)
            bd = xp.where(better, dist, bd)
        cand, ok = best, xp.isfinite(bd)
    elif op == 7:
        cand = cur.copy()
        ok = ~_holds(xp, cur, 6, vals, nval)
        for k in range(1, nval + 2):
            step = float(k) if integer else k * 1e-9
            for sgn in (1.0, -1.0):
                c = cur + sgn * step * (1.0 if integer else (1.0 + xp.abs(cur)))
                good = ~ok & (c >= lo) & (c <= hi) & ~_holds(xp, c, 6, vals, nval)
                cand = xp.where(good, c, cand)
                ok = ok | good
    else:
        if op == 2:
            b = (math.ceil(v0) - 1.0) if integer else float(np.nextafter(v0, -np.inf))
        elif op == 3:
            b = float(math.floor(v0)) if integer else v0
        elif op == 4:
            b = (math.floor(v0) + 1.0) if integer else float(np.nextafter(v0, np.inf))
        else:
            b = float(math.ceil(v0)) if integer else v0
        cand = xp.minimum(cur, b) if op in (2, 3) else xp.maximum(cur, b)
        ok = xp.full(cur.shape, True)
    ok = ok & (cand >= lo) & (cand <= hi)
    return cand, ok


def _imp_violated(xp, V, ra, r):
    ca, cb = int(ra.imp_col[r, 0]), int(ra.imp_col[r, 1])
    a, b = V[:, ca], V[:, cb]
    return (~xp.isnan(a) & ~xp.isnan(b) & _holds(xp, a, int(ra.imp_op[r, 0]), ra.imp_val[r, 0], int(ra.imp_nval[r, 0]))
            & ~_holds(xp, b, int(ra.imp_op[r, 1]), ra.imp_val[r, 1], int(ra.imp_nval[r, 1])))


def _lin_value(xp, V, ra, r, cols):
    L = xp.zeros(V.shape[0])
    mag = xp.zeros(V.shape[0])
    nan = xp.zeros(V.shape[0], bool)
    for c in cols:
        v = V[:, c]
        nan |= xp.isnan(v)
        t = float(ra.lin_coef[r, c]) * xp.where(xp.isnan(v), 0.0, v)
        L = L + t
        mag = mag + xp.abs(t)
    const = float(ra.lin_const[r])
    L = L + const
    tol = REL_TOL * (1.0 + mag + abs(const))
    return L, ~nan & (L < -tol)


def _core(xp, V, V0, sa, ra):
    d = ra.n_features
    fixable = np.asarray(sa.mutable) & ~np.asarray(ra.derived)
    for _ in range(PASSES):
        _derive(xp, V, ra)
        for r in range(len(ra.imp_col)):
            viol = _imp_violated(xp, V, ra, r)
            (ca, cb), (oa, ob) = [int(c) for c in ra.imp_col[r]], [int(o) for o in ra.imp_op[r]]
            va, vb, na, nb = ra.imp_val[r, 0], ra.imp_val[r, 1], int(ra.imp_nval[r, 0]), int(ra.imp_nval[r, 1])
            if cb < d and fixable[cb]:
                m = viol & ~xp.isnan(V0[:, cb]) & _holds(xp, V0[:, cb], ob, vb, nb)
                V[:, cb] = xp.where(m, V0[:, cb], V[:, cb])
                viol = viol & ~m
            if ca < d and fixable[ca]:
                m = viol & ~xp.isnan(V0[:, ca]) & ~_holds(xp, V0[:, ca], oa, va, na)
                V[:, ca] = xp.where(m, V0[:, ca], V[:, ca])
                viol = viol & ~m
            if cb < d and fixable[cb]:
                cand, ok = _nearest(xp, cb, ob, vb, nb, V[:, cb], V0[:, cb], sa)
                m = viol & ok
                V[:, cb] = xp.where(m, cand, V[:, cb])
                viol = viol & ~m
            if ca < d and fixable[ca]:
                cand, ok = _nearest(xp, ca, int(NEG_OP[oa]), va, na, V[:, ca], V0[:, ca], sa)
                m = viol & ok
                V[:, ca] = xp.where(m, cand, V[:, ca])
        for r in range(len(ra.lin_const)):
            cols = [int(c) for c in np.flatnonzero(np.asarray(ra.lin_coef[r]))]
            movable = [c for c in cols if c < d and fixable[c]]
            _, viol = _lin_value(xp, V, ra, r, cols)
            for c in movable:
                coef = float(ra.lin_coef[r, c])
                m = viol & (V[:, c] != V0[:, c]) & ~xp.isnan(V0[:, c]) & (coef * (V0[:, c] - V[:, c]) > 0)
                V[:, c] = xp.where(m, V0[:, c], V[:, c])
                _, viol = _lin_value(xp, V, ra, r, cols)
            for c in movable:
                coef = float(ra.lin_coef[r, c])
                L, viol = _lin_value(xp, V, ra, r, cols)
                cur = V[:, c]
                need = cur - L / coef
                lo, hi = _domain(xp, c, V0[:, c], sa)
                opts = _options(sa, c)
                if opts is None:
                    if coef > 0:
                        t = need + 1e-12 * (1.0 + xp.abs(need))
                        t = xp.ceil(t) if sa.kind[c] == INTEGER else t
                        cand = xp.minimum(xp.maximum(cur, t), hi)
                    else:
                        t = need - 1e-12 * (1.0 + xp.abs(need))
                        t = xp.floor(t) if sa.kind[c] == INTEGER else t
                        cand = xp.maximum(xp.minimum(cur, t), lo)
                else:
                    cand = cur.copy()
                    found = xp.zeros(cur.shape, bool)
                    extreme = cur.copy()
                    for o in (opts if coef > 0 else opts[::-1]):  # ascending for coef > 0, else descending
                        allowed = (o >= lo) & (o <= hi)
                        fits = allowed & (((o >= need) if coef > 0 else (o <= need)))
                        take = ~found & fits
                        cand = xp.where(take, o, cand)
                        found = found | take
                        extreme = xp.where(allowed, o, extreme)
                    cand = xp.where(found, cand, extreme)
                V[:, c] = xp.where(viol, cand, V[:, c])
    _derive(xp, V, ra)
    return V


def _violated_rows(xp, V, ra):
    bad = xp.zeros(V.shape[0], bool)
    if len(ra.der_target):
        W = V.copy()
        _derive(xp, W, ra)
        for t in np.asarray(ra.der_target):
            t = int(t)
            bad |= ~((W[:, t] == V[:, t]) | (xp.isnan(W[:, t]) & xp.isnan(V[:, t])))
    for r in range(len(ra.imp_col)):
        bad |= _imp_violated(xp, V, ra, r)
    for r in range(len(ra.lin_const)):
        cols = [int(c) for c in np.flatnonzero(np.asarray(ra.lin_coef[r]))]
        bad |= _lin_value(xp, V, ra, r, cols)[1]
    return bad


def _stack(xp, X, X0, origin, E):
    x0 = X0[origin]
    if E is None or E.shape[1] == 0:
        return xp.array(X, dtype=xp.float64, copy=True), xp.array(x0, dtype=xp.float64, copy=True)
    ex = E[origin]
    return xp.concatenate([X, ex], axis=1), xp.concatenate([x0, ex], axis=1)


def reference_repair(X, X0, origin, E, sa, ra, xp=np):
    if ra.empty:
        return X
    d = ra.n_features
    V, V0 = _stack(xp, X, X0, origin, E)
    V = _core(xp, V, V0, sa, ra)
    bad = _violated_rows(xp, V, ra)
    if bool(bad.any()):
        A = _core(xp, V0.copy(), V0, sa, ra)
        V = xp.where(bad[:, None], A, V)
    return V[:, :d]


def reference_violations(X, X0, origin, E, ra, xp=np):
    if ra.empty:
        return xp.zeros(X.shape[0], bool)
    V, _ = _stack(xp, X, X0, origin, E)
    return _violated_rows(xp, V, ra)


def gpu_repair(X, X0, origin, E, sa, ra):
    import cupy as cp

    args = [cp.asarray(np.ascontiguousarray(a, np.float64)) for a in (X, X0)]
    return cp.asnumpy(reference_repair(args[0], args[1], cp.asarray(origin), None if E is None else cp.asarray(E),
                                       sa, ra, xp=cp))


def gpu_violations(X, X0, origin, E, ra):
    import cupy as cp

    return cp.asnumpy(reference_violations(cp.asarray(np.ascontiguousarray(X, np.float64)),
                                           cp.asarray(np.ascontiguousarray(X0, np.float64)), cp.asarray(origin),
                                           None if E is None else cp.asarray(E), ra, xp=cp))


# ================================================================================================================
# Numba: the same semantics, one row at a time
# ================================================================================================================
@njit(cache=True, nogil=True, error_model="numpy")
def _nb_holds(v, op, vals, nval):
    if op == 0:
        return v == vals[0]
    if op == 1:
        return v != vals[0]
    if op == 2:
        return v < vals[0]
    if op == 3:
        return v <= vals[0]
    if op == 4:
        return v > vals[0]
    if op == 5:
        return v >= vals[0]
    inside = False
    for s in range(nval):
        if v == vals[s]:
            inside = True
    return inside if op == 6 else not inside


@njit(cache=True, nogil=True, error_model="numpy")
def _nb_derive(v, der_target, prog_op, prog_arg, prog_len, stack):
    for r in range(der_target.shape[0]):
        top = 0
        for k in range(prog_len[r]):
            op = prog_op[r, k]
            arg = prog_arg[r, k]
            if op == P_VAR:
                stack[top] = v[np.int64(arg)]
                top += 1
            elif op == P_CONST:
                stack[top] = arg
                top += 1
            elif op == P_NEG:
                stack[top - 1] = -stack[top - 1]
            else:
                b = stack[top - 1]
                a = stack[top - 2]
                top -= 2
                if op == P_ADD:
                    c = a + b
                elif op == P_SUB:
                    c = a - b
                elif op == P_MUL:
                    c = a * b
                elif op == P_DIV:
                    c = a / b if b != 0 else np.nan
                elif op == P_MIN:
                    c = np.nan if (a != a or b != b) else min(a, b)
                else:
                    c = np.nan if (a != a or b != b) else max(a, b)
                stack[top] = c
                top += 1
        val = stack[top - 1]
        v[der_target[r]] = val if math.isfinite(val) else np.nan


@njit(cache=True, nogil=True, error_model="numpy")
def _nb_domain(j, x0j, lo, hi, direction):
    a, b = lo[j], hi[j]
    if direction[j] == 1:
        a = max(a, x0j)
    elif direction[j] == -1:
        b = min(b, x0j)
    return a, b


@njit(cache=True, nogil=True, error_model="numpy")
def _nb_opt(kind, cats, j, k):
    return float(k) if kind[j] == BINARY else cats[j, k]


@njit(cache=True, nogil=True, error_model="numpy")
def _nb_nopts(kind, ncats, j):
    if kind[j] == BINARY:
        return 2
    if kind[j] == CATEGORICAL:
        return ncats[j]
    return -1


@njit(cache=True, nogil=True, error_model="numpy")
def _nb_nearest(j, op, vals, nval, cur, x0j, kind, lo, hi, direction, cats, ncats):
    a, b = _nb_domain(j, x0j, lo, hi, direction)
    nopt = _nb_nopts(kind, ncats, j)
    if nopt >= 0:
        best = np.nan
        bd = np.inf
        for k in range(nopt):
            c = _nb_opt(kind, cats, j, k)
            if _nb_holds(c, op, vals, nval) and c >= a and c <= b:
                dist = abs(c - cur)
                if dist < bd:
                    bd = dist
                    best = c
        return best, math.isfinite(bd)
    integer = kind[j] == INTEGER
    v0 = vals[0]
    ok = True
    if op == 0:
        cand = v0
        ok = (not integer) or v0 == math.floor(v0)
    elif op == 1:
        up = v0 + 1.0 if integer else np.nextafter(v0, np.inf)
        down = v0 - 1.0 if integer else np.nextafter(v0, -np.inf)
        cand = cur if cur != v0 else (up if up <= b else down)
    elif op == 6:
        cand = np.nan
        bd = np.inf
        for s in range(nval):
            c = vals[s]
            if integer and c != math.floor(c):
                continue
            dist = abs(c - cur)
            if c >= a and c <= b and dist < bd:
                cand = c
                bd = dist
        ok = math.isfinite(bd)
    elif op == 7:
        cand = cur
        ok = not _nb_holds(cur, 6, vals, nval)
        for k in range(1, nval + 2):
            step = float(k) if integer else k * 1e-9
            for sgn in (1.0, -1.0):
                c = cur + sgn * step * (1.0 if integer else (1.0 + abs(cur)))
                if (not ok) and c >= a and c <= b and not _nb_holds(c, 6, vals, nval):
                    cand = c
                    ok = True
    else:
        if op == 2:
            bb = (math.ceil(v0) - 1.0) if integer else np.nextafter(v0, -np.inf)
        elif op == 3:
            bb = float(math.floor(v0)) if integer else v0
        elif op == 4:
            bb = (math.floor(v0) + 1.0) if integer else np.nextafter(v0, np.inf)
        else:
            bb = float(math.ceil(v0)) if integer else v0
        cand = min(cur, bb) if (op == 2 or op == 3) else max(cur, bb)
    ok = ok and cand >= a and cand <= b
    return cand, ok


@njit(cache=True, nogil=True, error_model="numpy")
def _nb_imp_violated(v, imp_col, imp_op, imp_val, imp_nval, r):
    a = v[imp_col[r, 0]]
    b = v[imp_col[r, 1]]
    if a != a or b != b:
        return False
    return _nb_holds(a, imp_op[r, 0], imp_val[r, 0], imp_nval[r, 0]) and not _nb_holds(b, imp_op[r, 1], imp_val[r, 1], imp_nval[r, 1])


@njit(cache=True, nogil=True, error_model="numpy")
def _nb_lin(v, lin_coef, lin_const, r):
    L = 0.0
    mag = 0.0
    nan = False
    for c in range(lin_coef.shape[1]):
        coef = lin_coef[r, c]
        if coef == 0.0:
            continue
        x = v[c]
        if x != x:
            nan = True
            x = 0.0
        t = coef * x
        L = L + t
        mag = mag + abs(t)
    const = lin_const[r]
    L = L + const
    tol = REL_TOL * (1.0 + mag + abs(const))
    return L, (not nan) and L < -tol


@njit(cache=True, nogil=True, error_model="numpy")
def _nb_core(v, v0, d, fixable, kind, lo, hi, direction, cats, ncats, der_target, prog_op, prog_arg, prog_len,
             imp_col, imp_op, imp_val, imp_nval, lin_coef, lin_const, stack, prev):
    bits = v.view(np.int64)
    for p in range(PASSES):
        if p > 0:  # a pass that changed no bit of v leaves every later pass nothing to change: stop (same result)
            same = True
            for c in range(v.shape[0]):
                if bits[c] != prev[c]:
                    same = False
                    break
            if same:
                break
        for c in range(v.shape[0]):
            prev[c] = bits[c]
        _nb_derive(v, der_target, prog_op, prog_arg, prog_len, stack)
        for r in range(imp_col.shape[0]):
            if not _nb_imp_violated(v, imp_col, imp_op, imp_val, imp_nval, r):
                continue
            ca, cb = imp_col[r, 0], imp_col[r, 1]
            oa, ob = imp_op[r, 0], imp_op[r, 1]
            if cb < d and fixable[cb] and v0[cb] == v0[cb] and _nb_holds(v0[cb], ob, imp_val[r, 1], imp_nval[r, 1]):
                v[cb] = v0[cb]
                continue
            if ca < d and fixable[ca] and v0[ca] == v0[ca] and not _nb_holds(v0[ca], oa, imp_val[r, 0], imp_nval[r, 0]):
                v[ca] = v0[ca]
                continue
            if cb < d and fixable[cb]:
                cand, ok = _nb_nearest(cb, ob, imp_val[r, 1], imp_nval[r, 1], v[cb], v0[cb], kind, lo, hi, direction,
                                       cats, ncats)
                if ok:
                    v[cb] = cand
                    continue
            if ca < d and fixable[ca]:
                cand, ok = _nb_nearest(ca, NEG_OP_NB[oa], imp_val[r, 0], imp_nval[r, 0], v[ca], v0[ca], kind, lo, hi,
                                       direction, cats, ncats)
                if ok:
                    v[ca] = cand
        for r in range(lin_const.shape[0]):
            L, viol = _nb_lin(v, lin_coef, lin_const, r)
            for c in range(d):
                coef = lin_coef[r, c]
                if coef == 0.0 or not fixable[c]:
                    continue
                if viol and v[c] != v0[c] and v0[c] == v0[c] and coef * (v0[c] - v[c]) > 0:
                    v[c] = v0[c]
                L, viol = _nb_lin(v, lin_coef, lin_const, r)
            for c in range(d):
                coef = lin_coef[r, c]
                if coef == 0.0 or not fixable[c]:
                    continue
                L, viol = _nb_lin(v, lin_coef, lin_const, r)
                if not viol:
                    continue
                cur = v[c]
                need = cur - L / coef
                a, b = _nb_domain(c, v0[c], lo, hi, direction)
                nopt = _nb_nopts(kind, ncats, c)
                if nopt < 0:
                    if coef > 0:
                        t = need + 1e-12 * (1.0 + abs(need))
                        if kind[c] == INTEGER:
                            t = np.ceil(t)
                        cand = min(max(cur, t), b)
                    else:
                        t = need - 1e-12 * (1.0 + abs(need))
                        if kind[c] == INTEGER:
                            t = np.floor(t)
                        cand = max(min(cur, t), a)
                else:
                    cand = cur
                    found = False
                    extreme = cur
                    for kk in range(nopt):
                        k = kk if coef > 0 else nopt - 1 - kk
                        o = _nb_opt(kind, cats, c, k)
                        allowed = o >= a and o <= b
                        fits = allowed and ((o >= need) if coef > 0 else (o <= need))
                        if (not found) and fits:
                            cand = o
                            found = True
                        if allowed:
                            extreme = o
                    if not found:
                        cand = extreme
                v[c] = cand
    _nb_derive(v, der_target, prog_op, prog_arg, prog_len, stack)


NEG_OP_NB = NEG_OP


@njit(cache=True, nogil=True, error_model="numpy")
def _nb_violated(v, w, der_target, prog_op, prog_arg, prog_len, imp_col, imp_op, imp_val, imp_nval, lin_coef,
                 lin_const, stack):
    if der_target.shape[0]:
        for c in range(v.shape[0]):
            w[c] = v[c]
        _nb_derive(w, der_target, prog_op, prog_arg, prog_len, stack)
        for r in range(der_target.shape[0]):
            t = der_target[r]
            if not (w[t] == v[t] or (w[t] != w[t] and v[t] != v[t])):
                return True
    for r in range(imp_col.shape[0]):
        if _nb_imp_violated(v, imp_col, imp_op, imp_val, imp_nval, r):
            return True
    for r in range(lin_const.shape[0]):
        if _nb_lin(v, lin_coef, lin_const, r)[1]:
            return True
    return False


@njit(cache=True, nogil=True, error_model="numpy")
def _nb_repair(X, X0, origin, E, d, fixable, kind, lo, hi, direction, cats, ncats, der_target, prog_op, prog_arg,
               prog_len, imp_col, imp_op, imp_val, imp_nval, lin_coef, lin_const, out):
    n = X.shape[0]
    e = E.shape[1]
    v = np.empty(d + e)
    v0 = np.empty(d + e)
    w = np.empty(d + e)
    stack = np.empty(max(prog_op.shape[1], 1))
    prev = np.empty(d + e, np.int64)
    for i in range(n):
        o = origin[i]
        for c in range(d):
            v[c] = X[i, c]
            v0[c] = X0[o, c]
        for c in range(e):
            v[d + c] = E[o, c]
            v0[d + c] = E[o, c]
        if not _nb_violated(v, w, der_target, prog_op, prog_arg, prog_len, imp_col, imp_op, imp_val, imp_nval,
                            lin_coef, lin_const, stack):
            # a row that breaks nothing: the core would only recompute its derived features (their values equal
            # what it holds, so every check reads the same), then find it unbroken. The same result, directly.
            _nb_derive(v, der_target, prog_op, prog_arg, prog_len, stack)
            for c in range(d):
                out[i, c] = v[c]
            continue
        _nb_core(v, v0, d, fixable, kind, lo, hi, direction, cats, ncats, der_target, prog_op, prog_arg, prog_len,
                 imp_col, imp_op, imp_val, imp_nval, lin_coef, lin_const, stack, prev)
        if _nb_violated(v, w, der_target, prog_op, prog_arg, prog_len, imp_col, imp_op, imp_val, imp_nval, lin_coef,
                        lin_const, stack):
            for c in range(d + e):
                v[c] = v0[c]
            _nb_core(v, v0, d, fixable, kind, lo, hi, direction, cats, ncats, der_target, prog_op, prog_arg,
                     prog_len, imp_col, imp_op, imp_val, imp_nval, lin_coef, lin_const, stack, prev)
        for c in range(d):
            out[i, c] = v[c]
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def _nb_violations(X, X0, origin, E, d, der_target, prog_op, prog_arg, prog_len, imp_col, imp_op, imp_val, imp_nval,
                   lin_coef, lin_const, out):
    n = X.shape[0]
    e = E.shape[1]
    v = np.empty(d + e)
    w = np.empty(d + e)
    stack = np.empty(max(prog_op.shape[1], 1))
    for i in range(n):
        o = origin[i]
        for c in range(d):
            v[c] = X[i, c]
        for c in range(e):
            v[d + c] = E[o, c]
        out[i] = _nb_violated(v, w, der_target, prog_op, prog_arg, prog_len, imp_col, imp_op, imp_val, imp_nval,
                              lin_coef, lin_const, stack)
    return out


def _extras(E, m):
    return np.zeros((m, 0)) if E is None else np.ascontiguousarray(E, np.float64)


_FIXABLE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # ra -> (sa.mutable, ra.derived, fixable)


def _fixable(sa, ra) -> np.ndarray:
    """The features repair may change (mutable and not derived), cached per relation set (repair is called per
    small batch, often on one row)."""
    hit = _FIXABLE.get(ra)
    if hit is not None and hit[0] is sa.mutable and hit[1] is ra.derived:
        return hit[2]
    fixable = np.ascontiguousarray(np.asarray(sa.mutable) & ~ra.derived)
    try:
        _FIXABLE[ra] = (sa.mutable, ra.derived, fixable)
    except TypeError:  # not weakly referenceable: no cache
        pass
    return fixable


def repair(X, X0, origin, E, sa, ra):
    X = np.ascontiguousarray(X, np.float64)
    if ra.empty or len(X) == 0:
        return X
    X0 = np.ascontiguousarray(X0, np.float64)
    fixable = _fixable(sa, ra)
    return _nb_repair(X, X0, np.ascontiguousarray(origin, np.int64), _extras(E, len(X0)), ra.n_features, fixable,
                      sa.kind, sa.lo, sa.hi, sa.direction, sa.categories, sa.n_categories, ra.der_target, ra.prog_op,
                      ra.prog_arg, ra.prog_len, ra.imp_col, ra.imp_op, ra.imp_val, ra.imp_nval, ra.lin_coef,
                      ra.lin_const, np.empty_like(X))


def violations(X, X0, origin, E, ra):
    X = np.ascontiguousarray(X, np.float64)
    if ra.empty or len(X) == 0:
        return np.zeros(len(X), bool)
    X0 = np.ascontiguousarray(X0, np.float64)
    return _nb_violations(X, X0, np.ascontiguousarray(origin, np.int64), _extras(E, len(X0)), ra.n_features,
                          ra.der_target, ra.prog_op, ra.prog_arg, ra.prog_len, ra.imp_col, ra.imp_op, ra.imp_val,
                          ra.imp_nval, ra.lin_coef, ra.lin_const, np.empty(len(X), np.bool_))


# ================================================================================================================
# project onto the bounds and repair the relations in one call
# ================================================================================================================
# A strategy that asks many small batches (greedy: several per step, often of a few rows) pays the call overhead of
# ``kernels.project`` and ``repair`` for each; one kernel doing both halves the calls. Same semantics, by
# construction: ``repair(project(X))``, with or without relations.


def reference_project_repair(X, X0, origin, E, sa, ra, xp=np):
    """NumPy (or CuPy, ``xp``) reference: :func:`simulator.kernels.reference.project`, then
    :func:`reference_repair` when there are relations."""
    from .reference import project as _ref_project

    P = _ref_project(X, X0, origin, sa, xp=xp)
    return P if ra is None or ra.empty else reference_repair(P, X0, origin, E, sa, ra, xp=xp)


def gpu_project_repair(X, X0, origin, E, sa, ra):
    """CuPy twin: both steps on the device, one transfer each way."""
    import cupy as cp

    args = [cp.asarray(np.ascontiguousarray(a, np.float64)) for a in (X, X0)]
    return cp.asnumpy(reference_project_repair(args[0], args[1], cp.asarray(origin),
                                               None if E is None else cp.asarray(E), sa, ra, xp=cp))


def _nb_project_repair_impl(X, X0, origin, E, d, fixable, kind, lo, hi, mutable, direction, cats, ncats, der_target,
                            prog_op, prog_arg, prog_len, imp_col, imp_op, imp_val, imp_nval, lin_coef, lin_const, tmp,
                            out):
    _cpu_project(X, X0, origin, kind, lo, hi, mutable, direction, cats, ncats, tmp)
    return _nb_repair(tmp, X0, origin, E, d, fixable, kind, lo, hi, direction, cats, ncats, der_target, prog_op,
                      prog_arg, prog_len, imp_col, imp_op, imp_val, imp_nval, lin_coef, lin_const, out)


def _bind_project():
    """The serial Numba projection kernel of :mod:`simulator.kernels.cpu` (exactly ``kernels.project``'s)."""
    from . import cpu

    return cpu._project_s


def _cpu_parallel_rows() -> int:
    from . import cpu

    return cpu.PARALLEL_MIN_ROWS


_cpu_project = _bind_project()
_nb_project_repair = njit(cache=True, nogil=True)(_nb_project_repair_impl)


def project_repair(X, X0, origin, E, sa, ra):
    """``repair(project(X, X0, origin, sa), X0, origin, E, sa, ra)`` in one Numba call (``ra`` may be None or
    empty: then only the projection)."""
    if ra is None or ra.empty:
        from . import cpu

        return cpu.project(X, X0, origin, sa)
    X = np.ascontiguousarray(X, np.float64)
    if len(X) == 0:
        return X.copy()
    if len(X) >= _cpu_parallel_rows():  # large batches: the parallel projection kernel, then the repair
        from . import cpu

        return repair(cpu.project(X, X0, origin, sa), X0, origin, E, sa, ra)
    X0 = np.ascontiguousarray(X0, np.float64)
    return _nb_project_repair(X, X0, np.ascontiguousarray(origin, np.int64), _extras(E, len(X0)), ra.n_features,
                              _fixable(sa, ra), sa.kind, sa.lo, sa.hi, sa.mutable, sa.direction, sa.categories,
                              sa.n_categories, ra.der_target, ra.prog_op, ra.prog_arg, ra.prog_len, ra.imp_col,
                              ra.imp_op, ra.imp_val, ra.imp_nval, ra.lin_coef, ra.lin_const, np.empty_like(X),
                              np.empty_like(X))


def bind_project_repair(X0, E, sa, ra):
    """:func:`project_repair` for rows of one original ``X0`` (1, d) (extras ``E`` (1, e) or None), with every
    argument but the rows prepared once: ``f(X)`` (a strategy calls it many times per step on a few rows)."""
    X0 = np.ascontiguousarray(X0, np.float64)
    if ra is None or ra.empty:
        from . import cpu

        return lambda X: cpu.project(X, X0, np.zeros(len(X), np.int64), sa)
    static = (_extras(E, len(X0)), ra.n_features, _fixable(sa, ra), sa.kind, sa.lo, sa.hi, sa.mutable, sa.direction,
              sa.categories, sa.n_categories, ra.der_target, ra.prog_op, ra.prog_arg, ra.prog_len, ra.imp_col,
              ra.imp_op, ra.imp_val, ra.imp_nval, ra.lin_coef, ra.lin_const)
    big = _cpu_parallel_rows()

    def f(X):
        X = np.ascontiguousarray(X, np.float64)
        n = len(X)
        if n == 0 or n >= big:
            return project_repair(X, X0, np.zeros(n, np.int64), E, sa, ra)
        return _nb_project_repair(X, X0, np.zeros(n, np.int64), *static, np.empty_like(X), np.empty_like(X))

    return f


def bind_repair(X0, E, sa, ra):
    """:func:`repair` for rows of one original ``X0`` (1, d), every argument but the rows prepared once: ``f(X)``
    (without relations, ``X`` itself, as :func:`repair` gives)."""
    X0 = np.ascontiguousarray(X0, np.float64)
    if ra is None or ra.empty:
        return lambda X: X
    static = (_extras(E, len(X0)), ra.n_features, _fixable(sa, ra), sa.kind, sa.lo, sa.hi, sa.direction,
              sa.categories, sa.n_categories, ra.der_target, ra.prog_op, ra.prog_arg, ra.prog_len, ra.imp_col,
              ra.imp_op, ra.imp_val, ra.imp_nval, ra.lin_coef, ra.lin_const)

    def f(X):
        X = np.ascontiguousarray(X, np.float64)
        if len(X) == 0:
            return X
        return _nb_repair(X, X0, np.zeros(len(X), np.int64), *static, np.empty_like(X))

    return f
