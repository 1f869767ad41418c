"""The exact limit: the minimum-cost evasion of one target, solved as a mixed-integer program over the trees.

White box (``needs = {"model"}``, so ``attack.grant_model: true``). The formulation follows Kantchelian, Tygar and
Joseph (2016, "Evasion and hardening of tree ensemble classifiers"):

* one variable set per feature the attacker can still move: a binary for a binary feature, one-hot binaries for a
  categorical one, and for a continuous or integer one one-hot binaries over the intervals its reachable split
  thresholds cut its range into (plus a value variable when a relation reads it); a feature's split predicate
  ``x < t`` is then the sum of the interval binaries below ``t``;
* per tree, one leaf indicator per reachable leaf, exactly one of them on, and path consistency: the leaves under a
  node's left child only when its predicate holds, those under its right child only when it does not;
* the ensemble's margin (sum of the chosen leaves) below ``logit(threshold)`` (less ``margin_tol``);
* the scenario's bounds, kinds and directions (they shape the variables), its linear relations and implications
  (``relations:``), and derived features as linear equalities of their inputs (frozen inputs are numbers per
  target; an outer ``min``/``max`` with a number is modelled with one more binary);
* the objective is the cost the kernels compute: ``cost * |delta| / (max - min)`` per numeric feature, ``cost``
  per changed flag or category.

Only reachable nodes enter the model: splits on frozen features follow the original's branch. The threshold is
the deployed one (``Problem.threshold``, given with the model); without it, the highest score among the approved
examples the attacker has seen (a sure, not always minimal, evasion). HiGHS (``scipy.optimize.milp``) solves it
with a per-target ``time_limit``; when that is hit, the proven lower bound and the best solution found are kept
(``status: time_limit``). The solution is then asked as a query like any other candidate (projected, so the real
model scores it) and the result lands in the run's ``exact_bounds`` table.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ScenarioError
from ..kernels import relations as rk
from ..kernels.reference import BINARY, CATEGORICAL, INTEGER
from ..protocol import Feedback
from ..relations import P_ADD, P_CONST, P_DIV, P_MAX, P_MIN, P_MUL, P_NEG, P_SUB, P_VAR
from ..target.trees import OP_IN, OP_NOT_IN, tree_ensemble
from .base import Strategy, register

STATUS = ("optimal", "time_limit", "infeasible")


@dataclass
class ExactResult:
    status: str  # optimal | time_limit | infeasible
    bound: float  # the optimum (optimal), the proven lower bound (time_limit), NaN (infeasible)
    objective: float  # the solver's objective of the best solution found (NaN when none)
    x: np.ndarray | None  # the best solution found, as a candidate row (before projection)
    solve_s: float
    n_vars: int = 0
    n_rows: int = 0
    info: dict = field(default_factory=dict)

    @property
    def gap(self) -> float:
        if self.x is None or not math.isfinite(self.bound):
            return float("nan")
        return max(0.0, self.objective - self.bound) / max(abs(self.objective), 1e-12)


# -- a tiny model builder ------------------------------------------------------------------------------------------
class _MILP:
    def __init__(self):
        self.lb: list[float] = []
        self.ub: list[float] = []
        self.c: list[float] = []
        self.integ: list[int] = []
        self.rows: list[tuple[dict[int, float], float, float]] = []
        self.const = 0.0

    def var(self, lb: float, ub: float, cost: float = 0.0, integer: bool = False) -> int:
        self.lb.append(float(lb))
        self.ub.append(float(ub))
        self.c.append(float(cost))
        self.integ.append(1 if integer else 0)
        return len(self.lb) - 1

    def row(self, terms: dict[int, float], lo: float = -np.inf, hi: float = np.inf) -> None:
        terms = {k: v for k, v in terms.items() if v != 0.0}
        if terms:
            self.rows.append((terms, lo, hi))
        elif lo > 1e-9 or hi < -1e-9:
            self.rows.append(({}, lo, hi))  # infeasible constant row: remembered as infeasibility

    def solve(self, time_limit: float, gap: float) -> "_Solved":
        """HiGHS through ``scipy.optimize.milp``: the status, the best solution found and the proven dual bound.
        (highspy's own build was about twice as slow on these models, measured on release_check's.)"""
        from scipy.optimize import Bounds, LinearConstraint, milp
        from scipy.sparse import csr_matrix

        if any(not t for t, _, _ in self.rows):
            return _Solved("infeasible")
        n = len(self.lb)
        data, ri, ci = [], [], []
        for r, (terms, _, _) in enumerate(self.rows):
            for k, v in terms.items():
                ri.append(r)
                ci.append(k)
                data.append(v)
        cons = []
        if self.rows:
            A = csr_matrix((data, (ri, ci)), shape=(len(self.rows), n))
            cons = [LinearConstraint(A, np.array([r[1] for r in self.rows]), np.array([r[2] for r in self.rows]))]
        res = milp(np.array(self.c), constraints=cons, integrality=np.array(self.integ),
                   bounds=Bounds(np.array(self.lb), np.array(self.ub)),
                   options={"time_limit": float(time_limit), "mip_rel_gap": float(gap), "disp": False,
                            "presolve": True})
        dual = getattr(res, "mip_dual_bound", None)
        dual = float(dual) + self.const if dual is not None and math.isfinite(float(dual)) else None
        x_obj = float(res.fun) + self.const if res.x is not None else float("nan")
        if res.status == 0:
            return _Solved("optimal", res.x, x_obj, dual)
        if res.status == 2:
            return _Solved("infeasible")
        return _Solved("time_limit", res.x, x_obj, dual)


@dataclass
class _Solved:
    status: str
    x: np.ndarray | None = None
    objective: float = float("nan")
    dual: float | None = None


Lin = tuple  # (dict var -> coef, const)


def _lin_add(a: Lin, b: Lin, s: float = 1.0) -> Lin:
    out = dict(a[0])
    for k, v in b[0].items():
        out[k] = out.get(k, 0.0) + s * v
    return out, a[1] + s * b[1]


def _lin_scale(a: Lin, k: float) -> Lin:
    return {v: c * k for v, c in a[0].items()}, a[1] * k


def _prev32(c: float) -> float:
    return float(np.nextafter(np.float32(c), np.float32(-np.inf)))


@dataclass
class _Num:
    """A continuous or integer quantity cut into intervals: a mutable feature or a derived one."""

    j: int
    integer: bool
    a: float
    b: float
    cuts: dict[float, float] = field(default_factory=dict)  # cut c -> largest value still below it
    z: list[int] = field(default_factory=list)
    lo: list[float] = field(default_factory=list)
    hi: list[float] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)  # sorted cuts inside (a, b]
    x: int | None = None  # value variable
    w: int | None = None  # clip binary of a derived min/max: 1 when clipped
    clip_at: float = float("nan")

    def add_cut(self, c: float, below: float) -> None:
        if self.integer:
            c = float(math.ceil(c))
            below = c - 1.0
        self.cuts[c] = min(self.cuts.get(c, np.inf), below)

    def left(self, c: float) -> Lin | bool:
        """``x < c`` as a 0/1 expression (or a constant)."""
        if self.integer:
            c = float(math.ceil(c))
        if c <= self.a:
            return False
        if c > self.b:
            return True
        k = self.starts.index(c)
        return {self.z[i]: 1.0 for i in range(k + 1)}, 0.0


@dataclass
class _Cat:
    j: int
    y: dict[float, int]  # category value -> binary


@dataclass
class _Bin:
    j: int
    x: int  # the flip variable: 1 when the flag changes
    x0: float

    @property
    def value(self) -> Lin:
        return ({self.x: 1.0 - 2.0 * self.x0}, self.x0)

    def is_(self, v: float) -> Lin:
        """1 when the flag takes value ``v`` (0 or 1)."""
        return ({self.x: 1.0}, 0.0) if v != self.x0 else ({self.x: -1.0}, 1.0)


def _cond_cuts(num: _Num, op: int, vals) -> None:
    for v in vals:
        v = float(v)
        if math.isnan(v):
            continue
        nxt = (math.floor(v) + 1.0) if num.integer else float(np.nextafter(v, np.inf))
        if op in (0, 1, 6, 7):
            num.add_cut(v, float(np.nextafter(v, -np.inf)))
            num.add_cut(nxt, v)
        elif op in (2, 5):  # < v, >= v
            num.add_cut(v, float(np.nextafter(v, -np.inf)))
        else:  # <= v, > v
            num.add_cut(nxt, v)


def _holds(v: float, op: int, vals) -> bool:
    return bool(rk._holds(np, np.array([v]), op, np.asarray(vals, np.float64), len(vals))[0])


def solve_min_cost_evasion(problem, *, threshold: float, time_limit: float = 10.0, mip_rel_gap: float = 1e-4,
                           margin_tol: float = 1e-4, leaf_boxes: bool = True) -> ExactResult:
    """The MILP of one target (see the module docstring); never raises for an infeasible target."""
    t0 = time.perf_counter()
    ens = tree_ensemble(problem.model)
    sa, ra = problem.schema, problem.relations
    x0 = np.asarray(problem.x0, np.float64)
    d = len(x0)
    if ra is not None and ra.empty:
        ra = None
    extras = np.zeros(0) if problem.extras is None else np.asarray(problem.extras, np.float64)
    V0 = np.concatenate([x0, extras])[None, :].copy()
    if ra is not None:
        rk._derive(np, V0, ra)  # derived features of the original, recomputed as every candidate's are
    v0 = V0[0]
    derived = np.zeros(d, bool) if ra is None else ra.derived.copy()
    moving = np.asarray(sa.mutable, bool) & ~derived & np.isfinite(x0)
    m = _MILP()
    feats: dict[int, Any] = {}
    lins: dict[int, Lin] = {}  # value of each varying column as a linear expression

    def span(j):
        return float(sa.hi[j] - sa.lo[j])

    def domain(j):
        a, b = float(sa.lo[j]), float(sa.hi[j])
        if sa.direction[j] == 1:
            a = max(a, x0[j])
        elif sa.direction[j] == -1:
            b = min(b, x0[j])
        return a, b

    # which numeric features a relation reads as a value (they need a value variable)
    valued: set[int] = set()
    if ra is not None:
        for r in range(len(ra.lin_const)):
            valued.update(int(c) for c in np.flatnonzero(ra.lin_coef[r]) if c < d)
        for r in range(len(ra.der_target)):
            valued.update(int(a) for op, a in zip(ra.prog_op[r, : ra.prog_len[r]], ra.prog_arg[r, : ra.prog_len[r]])
                          if op == P_VAR and a < d)

    # 1. mutable features
    for j in map(int, np.flatnonzero(moving)):
        k = int(sa.kind[j])
        a, b = domain(j)
        w = float(sa.cost[j])
        if k == BINARY:
            other = 1.0 - x0[j]
            flip = m.var(0, 1 if a <= other <= b else 0, cost=w, integer=True)  # 1: the flag changes
            feats[j] = _Bin(j, flip, float(x0[j]))
            lins[j] = feats[j].value
        elif k == CATEGORICAL:
            cats = [float(c) for c in sa.categories[j, : sa.n_categories[j]] if a <= c <= b]
            y = {c: m.var(0, 1, cost=0.0 if c == x0[j] else w, integer=True) for c in cats}
            m.row({v: 1.0 for v in y.values()}, 1.0, 1.0)
            feats[j] = _Cat(j, y)
            lins[j] = ({v: c for c, v in y.items()}, 0.0)
        else:
            feats[j] = _Num(j, k == INTEGER, a, b)
    # 2. derived features as linear expressions of the moving ones
    clips: dict[int, tuple[str, float]] = {}
    if ra is not None:
        for r in range(len(ra.der_target)):
            t = int(ra.der_target[r])
            form, clip = _derived_form(ra, r, v0, set(feats), d)
            if form is None:
                continue  # a number for this target: v0 holds it
            if isinstance(form, str):
                raise ScenarioError(f"the exact strategy needs derived feature {sa_name(problem, t)!r} to be linear in "
                                    f"the features the attacker moves ({form})", field="relations")
            lo, hi = _bounds(form, feats, domain, lins)
            if clip is not None:
                kind, c = clip
                lo, hi = (min(lo, c), min(hi, c)) if kind == "min" else (max(lo, c), max(hi, c))
            feats[t] = _Num(t, False, lo, hi)
            clips[t] = clip
            lins[t] = form  # provisional: replaced by the value variable below
    varying = set(feats)

    # 3. reachable nodes, split cuts
    mut_tree = np.zeros(d, bool)
    mut_tree[list(varying)] = True
    xr = v0[:d].copy()
    seen = ens.reachable(xr, mut_tree)
    internal = np.flatnonzero(seen & ~ens.is_leaf)
    for kk in internal:
        j = int(ens.feature[kk])
        if j in varying and isinstance(feats[j], _Num):
            if ens.op[kk] in (OP_IN, OP_NOT_IN):
                raise ScenarioError(f"feature {sa_name(problem, j)!r} has categorical splits in the model; declare it "
                                    "categorical in features", field="features")
            c = ens.left_cut(int(kk))
            below = _prev32(c)
            if derived[j]:
                below = _prev32(_prev32(below))  # the derived value is recomputed in float64: keep clear of c
            feats[j].add_cut(c, below)
    if ra is not None:
        for r in range(len(ra.imp_col)):
            for s in range(2):
                col = int(ra.imp_col[r, s])
                if col < d and col in varying and isinstance(feats[col], _Num):
                    _cond_cuts(feats[col], int(ra.imp_op[r, s]), ra.imp_val[r, s, : ra.imp_nval[r, s]])
    # 4. interval variables (and costs) of numeric quantities
    for j, f in feats.items():
        if not isinstance(f, _Num):
            continue
        starts = sorted(c for c in f.cuts if f.a < c <= f.b)
        f.starts = starts
        edges_lo = [f.a] + starts
        edges_hi = [f.cuts[c] for c in starts] + [f.b]
        w = 0.0 if derived[j] else float(sa.cost[j]) / span(j) if span(j) > 0 else 0.0
        need_x = derived[j] or j in valued
        for lo_i, hi_i in zip(edges_lo, edges_hi):
            lo_i, hi_i = max(lo_i, f.a), min(hi_i, f.b)
            empty = lo_i > hi_i
            dist = 0.0 if empty else max(lo_i - x0[j], x0[j] - hi_i, 0.0)
            zc = 0.0 if need_x else w * dist
            f.z.append(m.var(0, 0 if empty else 1, cost=zc, integer=True))
            f.lo.append(lo_i)
            f.hi.append(hi_i)
        m.row({z: 1.0 for z in f.z}, 1.0, 1.0)
        if need_x:
            f.x = m.var(f.a, f.b, integer=f.integer and not derived[j])
            m.row({f.x: 1.0, **{z: -lo for z, lo in zip(f.z, f.lo) if lo != 0}}, 0.0, np.inf)
            m.row({f.x: 1.0, **{z: -hi for z, hi in zip(f.z, f.hi) if hi != 0}}, -np.inf, 0.0)
            if not derived[j] and w > 0:
                dp, dm = m.var(0, np.inf, cost=w), m.var(0, np.inf, cost=w)
                m.row({f.x: 1.0, dp: -1.0, dm: 1.0}, x0[j], x0[j])
                # the move is at least the chosen interval's distance from the original (tightens the relaxation)
                dist = {z: max(lo - x0[j], x0[j] - hi, 0.0) for z, lo, hi in zip(f.z, f.lo, f.hi) if lo <= hi}
                m.row({dp: 1.0, dm: 1.0, **{z: -v for z, v in dist.items() if v > 0}}, 0.0, np.inf)
            if not derived[j]:
                lins[j] = ({f.x: 1.0}, 0.0)
    for t, clip in clips.items():  # derived value variable = its (clipped) linear form
        f = feats[t]
        form = lins[t]
        f.w = _link_derived(m, f.x, form, clip, f.a, f.b, feats, domain, lins)
        f.clip_at = float("nan") if clip is None else float(clip[1])
        lins[t] = ({f.x: 1.0}, 0.0)

    def pred(kk: int) -> Lin | bool:
        """The left-branch predicate of node ``kk`` on a varying feature."""
        j = int(ens.feature[kk])
        f = feats[j]
        if isinstance(f, _Num):
            return f.left(ens.left_cut(kk))
        if isinstance(f, _Bin):
            vals = {0.0: f.is_(0.0), 1.0: f.is_(1.0)}
            opts = [0.0, 1.0]
            def is_left(v):
                return ens.go_left(kk, v)
        else:
            vals = {c: ({y: 1.0}, 0.0) for c, y in f.y.items()}
            opts = list(f.y)
            def is_left(v):
                return ens.go_left(kk, v)
        expr: Lin = ({}, 0.0)
        for v in opts:
            if is_left(v):
                expr = _lin_add(expr, vals[v])
        return expr

    # 5. trees: leaves, one per tree, path consistency, margin
    margin_terms: dict[int, float] = {}
    margin_const = float(ens.base_margin)
    leaf_var: dict[int, int] = {}
    for t in range(ens.n_trees):
        root = int(ens.tree_root[t])
        leaves = _reachable_leaves(ens, seen, root)
        if len(leaves) == 1:
            margin_const += float(ens.value[leaves[0]])
            continue
        for l in leaves:
            leaf_var[l] = m.var(0, 1)
            margin_terms[leaf_var[l]] = float(ens.value[l])
        m.row({leaf_var[l]: 1.0 for l in leaves}, 1.0, 1.0)
    under: dict[int, list[int]] = {}
    for node in map(int, internal):
        j = int(ens.feature[node])
        if j not in varying:
            continue
        p = pred(node)
        for child, side in ((int(ens.left[node]), 1), (int(ens.right[node]), 0)):
            ls = [leaf_var[l] for l in _reachable_leaves(ens, seen, child, under) if l in leaf_var]
            if not ls:
                continue
            if isinstance(p, bool):
                if p != bool(side):
                    for v in ls:
                        m.ub[v] = 0.0
                continue
            # sum(leaves) <= p (left) or <= 1 - p (right)
            terms = {v: 1.0 for v in ls}
            sign = -1.0 if side else 1.0
            for v, c in p[0].items():
                terms[v] = terms.get(v, 0.0) + sign * c
            rhs = (p[1] if side else 1.0 - p[1])
            m.row(terms, -np.inf, rhs)
    if leaf_boxes:
        _leaf_boxes(m, ens, seen, feats, leaf_var, varying)
    logit = math.log(threshold / (1.0 - threshold)) / float(ens.margin_scale) if 0 < threshold < 1 else (
        -np.inf if threshold <= 0 else np.inf)
    if not math.isfinite(logit):
        if logit < 0:
            return ExactResult("infeasible", float("nan"), float("nan"), None, time.perf_counter() - t0)
    else:
        m.row(margin_terms, -np.inf, logit - margin_const - margin_tol)

    # 6. relations
    if ra is not None:
        for r in range(len(ra.lin_const)):
            expr: Lin = ({}, float(ra.lin_const[r]))
            nan = False
            for c in map(int, np.flatnonzero(ra.lin_coef[r])):
                coef = float(ra.lin_coef[r, c])
                if c < d and c in varying:
                    if c in clips and clips[c] is not None:
                        raise ScenarioError("the exact strategy cannot use a clipped (min/max) derived feature in a "
                                            "linear relation", field="relations")
                    expr = _lin_add(expr, _lin_scale(lins[c], coef))
                else:
                    v = v0[c]
                    nan |= math.isnan(v)
                    expr = (expr[0], expr[1] + coef * (0.0 if math.isnan(v) else v))
            if not nan:
                m.row(expr[0], -expr[1], np.inf)
        for r in range(len(ra.imp_col)):
            h: list[Lin | bool | None] = []
            for s in range(2):
                col, op = int(ra.imp_col[r, s]), int(ra.imp_op[r, s])
                vals = ra.imp_val[r, s, : ra.imp_nval[r, s]]
                if col < d and col in varying:
                    h.append(_cond_expr(feats[col], op, vals))
                else:
                    v = v0[col]
                    h.append(None if math.isnan(v) else _holds(v, op, vals))
            A, B = h
            if A is None or B is None or A is False or B is True:
                continue
            if A is True:
                if B is False:
                    m.row({}, 1.0, 1.0)  # never satisfiable
                else:
                    m.row(B[0], 1.0 - B[1], np.inf)
            elif B is False:
                m.row(A[0], -np.inf, -A[1])
            else:  # A <= B
                m.row(_lin_add(A, B, -1.0)[0], -np.inf, B[1] - A[1])

    # 7. a greedy solution over the same regions (it stands in when the solver finds nothing better in time), then
    # the solver gets what is left of the time limit
    g = _greedy(ens, problem, threshold, margin_tol, feats, derived, v0, d)
    g_cost = np.inf if g is None else float(problem.kernels.cost(g[None, :], x0[None, :], np.zeros(1, np.int64), sa)[0])
    res = m.solve(max(time_limit - (time.perf_counter() - t0), 0.1), mip_rel_gap)
    n_vars, n_rows = len(m.lb), len(m.rows)
    if res.status == "infeasible":
        return ExactResult("infeasible", float("nan"), float("nan"), None, time.perf_counter() - t0, n_vars, n_rows)
    bound = max(res.dual, 0.0) if res.dual is not None else 0.0  # costs are >= 0: 0 is always a bound
    if res.x is None:
        solve_s = time.perf_counter() - t0
        if g is None:
            return ExactResult("time_limit", bound, float("nan"), None, solve_s, n_vars, n_rows)
        return ExactResult("time_limit", min(bound, g_cost), g_cost, g, solve_s, n_vars, n_rows, {"greedy": True})
    objective = res.objective
    x = _decode(res.x, x0, v0, feats, derived, d)
    info = {}
    if res.status == "optimal":
        bound = objective
    elif g is not None and g_cost < objective:  # the greedy solution beats the solver's incumbent
        x, objective, info = g, g_cost, {"greedy": True}
    return ExactResult(res.status, min(bound, objective), objective, x, time.perf_counter() - t0, n_vars, n_rows,
                       info)


def exact_minimum(problem, *, time_limit: float = 10.0, mip_rel_gap: float = 1e-4,
                  margin_tol: float = 1e-4) -> ExactResult:
    """The exact minimum-cost evasion of one target outside a run (e.g. a benchmark's ratio to the optimum):
    ``problem`` is the same :class:`~simulator.strategies.Problem` strategies get, with ``model`` and
    ``threshold`` set. ``result.status == "optimal"``: ``result.bound`` is the minimum cost; ``"time_limit"``:
    a proven lower bound (``result.objective``: the best cost found); ``"infeasible"``: no evasion exists."""
    if problem.model is None or problem.threshold is None:
        raise ValueError("exact_minimum needs problem.model and problem.threshold")
    return solve_min_cost_evasion(problem, threshold=float(problem.threshold), time_limit=time_limit,
                                  mip_rel_gap=mip_rel_gap, margin_tol=margin_tol)


def sa_name(problem, j: int) -> str:
    names = getattr(problem.model, "feature_names", None)
    return str(names[j]) if names is not None else f"feature {j}"


def _reachable_leaves(ens, seen, k: int, memo: dict | None = None) -> list[int]:
    if memo is not None and k in memo:
        return memo[k]
    if ens.is_leaf[k]:
        out = [k]
    else:
        out = []
        for c in (int(ens.left[k]), int(ens.right[k])):
            if seen[c]:
                out.extend(_reachable_leaves(ens, seen, c, memo))
    if memo is not None:
        memo[k] = out
    return out


def _leaf_boxes(m: _MILP, ens, seen, feats, leaf_var, varying) -> None:
    """Per leaf and feature split twice or more on its path: the leaf only when the feature lies in the box the
    path allows (a sum of interval or category binaries). Implied by the path constraints for integer points, but
    much tighter in the LP relaxation."""
    for t in range(ens.n_trees):
        # (node, per feature split on the path: (splits, first interval, end interval, allowed categories))
        stack: list[tuple[int, dict[int, tuple[int, int, int, set[float] | None]]]] = [(int(ens.tree_root[t]), {})]
        while stack:
            k, box = stack.pop()
            if ens.is_leaf[k]:
                if k in leaf_var:
                    for j, (count, lo, hi, cats) in box.items():
                        if count < 2:
                            continue
                        f = feats[j]
                        if isinstance(f, _Num):
                            terms = {z: -1.0 for i, z in enumerate(f.z) if lo <= i < hi}
                        else:
                            assert cats is not None  # a categorical feature's box always holds its allowed set
                            terms = {y: -1.0 for c, y in f.y.items() if c in cats}
                        terms[leaf_var[k]] = 1.0
                        m.row(terms, -np.inf, 0.0)
                continue
            j = int(ens.feature[k])
            for child, left in ((int(ens.left[k]), True), (int(ens.right[k]), False)):
                if not seen[child]:
                    continue
                nb = box
                if j in varying and isinstance(feats[j], (_Num, _Cat)):
                    f = feats[j]
                    count, lo, hi, cats = box.get(j, (0, 0, 10**9, None))
                    if isinstance(f, _Num):
                        c = ens.left_cut(k)
                        c = float(math.ceil(c)) if f.integer else c
                        if f.a < c <= f.b:
                            pos = f.starts.index(c) + 1
                            lo, hi = (lo, min(hi, pos)) if left else (max(lo, pos), hi)
                            nb = {**box, j: (count + 1, lo, hi, cats)}
                    else:
                        allowed = {cc for cc in f.y if ens.go_left(k, cc) == left}
                        cats = allowed if cats is None else cats & allowed
                        nb = {**box, j: (count + 1, lo, hi, cats)}
                stack.append((child, nb))


def _cond_expr(f, op: int, vals) -> Lin | bool:
    vals = np.asarray(vals, np.float64)
    if isinstance(f, _Num):
        expr: Lin = ({}, 0.0)
        for z, lo, hi in zip(f.z, f.lo, f.hi):
            if lo <= hi and _holds(lo, op, vals):
                expr = _lin_add(expr, ({z: 1.0}, 0.0))
        return expr if expr[0] else False
    if isinstance(f, _Bin):
        expr = ({}, 0.0)
        for v in (0.0, 1.0):
            if _holds(v, op, vals):
                expr = _lin_add(expr, f.is_(v))
        return expr
    expr = ({}, 0.0)
    for c, y in f.y.items():
        if _holds(c, op, vals):
            expr = _lin_add(expr, ({y: 1.0}, 0.0))
    return expr if expr[0] else False


def _derived_form(ra, r: int, v0: np.ndarray, var_cols: set, d: int):
    """The derived feature as (linear form over column indices, clip) — the form's keys are *column indices*
    here, resolved to variables by the caller — or (None, None) when it is a number for this target, or
    (reason, None) when it is not linear in the moving features."""
    stack: list[Any] = []
    clip = None
    n = int(ra.prog_len[r])
    for k in range(n):
        op, arg = int(ra.prog_op[r, k]), float(ra.prog_arg[r, k])
        if op == P_VAR:
            c = int(arg)
            if c in var_cols:
                stack.append(("col", c))
            else:
                stack.append(("num", float(v0[c])))
        elif op == P_CONST:
            stack.append(("num", arg))
        elif op == P_NEG:
            stack.append(("neg", stack.pop()))
        else:
            b = stack.pop()
            a = stack.pop()
            stack.append((op, a, b))
    tree = stack[-1]

    def is_num(e):
        return e[0] == "num"

    def num(e):
        if e[0] == "num":
            return e[1]
        if e[0] == "neg":
            return -num(e[1])
        x, y = num(e[1]), num(e[2])
        return {P_ADD: x + y, P_SUB: x - y, P_MUL: x * y, P_DIV: x / y if y != 0 else np.nan,
                P_MIN: min(x, y), P_MAX: max(x, y)}[e[0]]

    def constant(e):
        if e[0] == "num":
            return True
        if e[0] == "col":
            return False
        if e[0] == "neg":
            return constant(e[1])
        return constant(e[1]) and constant(e[2])

    if constant(tree):
        return None, None
    if tree[0] in (P_MIN, P_MAX) and (constant(tree[1]) or constant(tree[2])):
        c_side, l_side = (tree[1], tree[2]) if constant(tree[1]) else (tree[2], tree[1])
        clip = ("min" if tree[0] == P_MIN else "max", float(num(c_side)))
        tree = l_side

    def lin(e):
        if constant(e):
            return {}, float(num(e))
        if e[0] == "col":
            return {e[1]: 1.0}, 0.0
        if e[0] == "neg":
            return _lin_scale(lin(e[1]), -1.0)
        op, a, b = e
        if op in (P_ADD, P_SUB):
            return _lin_add(lin(a), lin(b), 1.0 if op == P_ADD else -1.0)
        if op == P_MUL:
            if constant(a):
                return _lin_scale(lin(b), float(num(a)))
            if constant(b):
                return _lin_scale(lin(a), float(num(b)))
            raise _NonLinear("a product of two moving features")
        if op == P_DIV:
            if constant(b) and num(b) != 0:
                return _lin_scale(lin(a), 1.0 / float(num(b)))
            raise _NonLinear("division by a moving feature")
        raise _NonLinear("min/max of moving features")

    try:
        form = lin(tree)
    except _NonLinear as exc:
        return str(exc), None
    if not math.isfinite(form[1]) or not all(math.isfinite(v) for v in form[0].values()):
        return None, None  # NaN frozen input: the derived value is NaN whatever moves
    return ("cols", form), clip


class _NonLinear(Exception):
    pass


def _resolve(form, feats, lins) -> Lin:
    """Column-keyed form to a variable-keyed linear expression."""
    _, (cols, const) = form
    out: Lin = ({}, const)
    for c, coef in cols.items():
        out = _lin_add(out, _lin_scale(lins[c], coef))
    return out


def _bounds(form, feats, domain, lins) -> tuple[float, float]:
    _, (cols, const) = form
    lo = hi = const
    for c, coef in cols.items():
        f = feats[c]
        if isinstance(f, _Cat):
            vs = list(f.y)
            a, b = min(vs), max(vs)
        elif isinstance(f, _Num):
            a, b = f.a, f.b
        else:
            a, b = domain(c)
        lo += min(coef * a, coef * b)
        hi += max(coef * a, coef * b)
    return lo, hi


def _link_derived(m: _MILP, x: int, form, clip, lo: float, hi: float, feats, domain, lins) -> int | None:
    expr = _resolve(form, feats, lins)
    if clip is None:
        m.row(_lin_add(({x: 1.0}, 0.0), expr, -1.0)[0], expr[1], expr[1])  # x - L = const
        return None
    kind, c = clip
    llo, lhi = _bounds(form, feats, domain, lins)
    if kind == "min":
        if lhi <= c:
            m.row(_lin_add(({x: 1.0}, 0.0), expr, -1.0)[0], expr[1], expr[1])
            return None
        if llo >= c:
            m.lb[x] = m.ub[x] = c
            return None
        w = m.var(0, 1, integer=True)  # 1: clipped (L >= c), x = c; 0: x = L <= c
        m.ub[x] = min(m.ub[x], c)
        M1 = lhi - llo + abs(c) + 1.0
        # x <= L ; x >= L - M1*w ; x >= c - M1*(1-w)
        m.row(_lin_add(({x: 1.0}, 0.0), expr, -1.0)[0], -np.inf, expr[1])
        t = _lin_add(({x: 1.0, w: M1}, 0.0), expr, -1.0)
        m.row(t[0], expr[1], np.inf)
        m.row({x: 1.0, w: -M1}, c - M1, np.inf)
        return w
    else:
        if llo >= c:
            m.row(_lin_add(({x: 1.0}, 0.0), expr, -1.0)[0], expr[1], expr[1])
            return None
        if lhi <= c:
            m.lb[x] = m.ub[x] = c
            return None
        w = m.var(0, 1, integer=True)
        m.lb[x] = max(m.lb[x], c)
        M1 = lhi - llo + abs(c) + 1.0
        m.row(_lin_add(({x: 1.0}, 0.0), expr, -1.0)[0], expr[1], np.inf)
        t = _lin_add(({x: 1.0, w: -M1}, 0.0), expr, -1.0)
        m.row(t[0], -np.inf, expr[1])
        m.row({x: 1.0, w: M1}, -np.inf, c + M1)
        return w


def _greedy(ens, problem, threshold: float, margin_tol: float, feats, derived, v0, d: int):
    """A feasible solution: from the original, repeatedly take the single-feature move (to another region) with the
    largest margin drop per unit of cost until the margin is below the target, then undo moves that are not
    needed. None when it gets stuck."""
    if not 0 < threshold < 1:
        return None
    target = math.log(threshold / (1 - threshold)) / float(ens.margin_scale) - margin_tol
    x0 = np.asarray(problem.x0, np.float64)
    sa, k = problem.schema, problem.kernels
    zero = np.zeros(1, np.int64)

    def fix(X):
        X = np.atleast_2d(X)
        return problem.repair(k.project(X, x0[None, :], np.zeros(len(X), np.int64), sa))

    options: list[tuple[int, float]] = []
    for j, f in feats.items():
        if derived[j]:
            continue
        if isinstance(f, _Bin):
            options += [(j, 0.0), (j, 1.0)]
        elif isinstance(f, _Cat):
            options += [(j, c) for c in f.y]
        else:
            options += [(j, min(max(x0[j], lo), hi)) for lo, hi in zip(f.lo, f.hi) if lo <= hi]
    if not options:
        return None
    x = fix(v0[:d].copy())[0]
    for _ in range(len(feats) + 2):
        mg = ens.predict_margin(x[None, :])[0]
        if mg <= target:
            break
        C = np.repeat(x[None, :], len(options), axis=0)
        for i, (j, v) in enumerate(options):
            C[i, j] = v
        C = fix(C)
        cost = k.cost(C, x0[None, :], np.zeros(len(C), np.int64), sa)
        base = k.cost(x[None, :], x0[None, :], zero, sa)[0]
        drop = mg - ens.predict_margin(C)
        gain = np.where(drop > 0, drop / np.maximum(cost - base, 1e-9), -np.inf)
        done = ens.predict_margin(C) <= target
        if done.any():  # cheapest finishing move
            i = int(np.flatnonzero(done)[np.argmin(cost[done])])
        else:
            i = int(np.argmax(gain))
            if not np.isfinite(gain[i]):
                return None
        x = C[i]
    if ens.predict_margin(x[None, :])[0] > target:
        return None
    for j in range(d):  # undo moves that are not needed
        if x[j] != x0[j] and not (x[j] != x[j] and x0[j] != x0[j]):
            y = x.copy()
            y[j] = x0[j]
            y = fix(y)[0]
            if ens.predict_margin(y[None, :])[0] <= target:
                x = y
    return x


def _decode(sol: np.ndarray, x0: np.ndarray, v0: np.ndarray, feats, derived, d: int) -> np.ndarray:
    x = v0[:d].copy()
    for j, f in feats.items():
        if derived[j]:
            continue  # recomputed from its inputs by the relations kernel
        if isinstance(f, _Bin):
            x[j] = f.x0 if round(sol[f.x]) == 0 else 1.0 - f.x0
        elif isinstance(f, _Cat):
            x[j] = max(f.y, key=lambda c: sol[f.y[c]])
        else:
            i = int(np.argmax([sol[z] for z in f.z]))
            lo, hi = f.lo[i], f.hi[i]
            v = sol[f.x] if f.x is not None else min(max(x0[j], lo), hi)
            v = min(max(v, lo), hi)
            if f.integer:
                v = float(min(max(round(v), math.ceil(lo)), math.floor(hi)))
            x[j] = v
    return x


@register("exact")
class ExactMILP(Strategy):
    """The exact minimum-cost evasion per target (a MILP over the trees, HiGHS): the limit black-box strategies are
    measured against. Asks its solution once (projected), then only cheaper variants of what evaded. Parameters:
    ``time_limit`` seconds per target; ``mip_rel_gap`` the solver's relative optimality gap; ``margin_tol`` how far
    below the decision threshold's margin the solution must stay."""

    needs = frozenset({"model"})
    batch_size = 1

    def __init__(self, problem, rng, *, time_limit: float = 10.0, mip_rel_gap: float = 1e-4, margin_tol: float = 1e-4,
                 **params):
        super().__init__(problem, rng, **params)
        thr = getattr(problem, "threshold", None)
        if thr is None and problem.approved_examples is not None and len(problem.approved_examples):
            thr = float(np.nextafter(np.max(problem.model.predict_score(np.asarray(problem.approved_examples))), 1.0))
        if thr is None:
            raise ScenarioError("strategy 'exact' needs the decision threshold or approved examples",
                                field="attack.strategies")
        self.threshold = float(thr)
        self.result = solve_min_cost_evasion(problem, threshold=self.threshold, time_limit=time_limit,
                                             mip_rel_gap=mip_rel_gap, margin_tol=margin_tol)
        self.solution = None if self.result.x is None else self.project(self.result.x[None, :])[0]
        self.evades: bool | None = None
        self._asked = False
        if self.solution is None:
            self.finished = True

    def _ask(self, n: int) -> np.ndarray:
        rows = []
        if not self._asked and self.solution is not None:
            rows.append(self.solution)
            self._asked = True
        while len(rows) < n:
            base = self.best_x if self.best_x is not None else (self.solution if self.solution is not None else self.x0)
            rows.extend(self.pull_back(base, n - len(rows)))
        return np.array(rows[:n]).reshape(n, self.d)

    def _tell(self, X: np.ndarray, feedback: Feedback) -> None:
        if self.evades is None and self.solution is not None and len(X):
            self.evades = bool(feedback.evaded[0])
            self.finished = True  # the optimum is known: nothing cheaper evades

    def records(self) -> dict[str, dict[str, Any]]:
        r = self.result
        cost = float(self.cost(self.solution[None, :])[0]) if self.solution is not None else float("nan")
        gap = float("nan") if self.solution is None or not math.isfinite(r.bound) else (
            max(0.0, cost - r.bound) / max(cost, 1e-12))
        return {"exact_bounds": {"status": r.status, "optimum_or_bound": r.bound, "best_found_cost": cost,
                                 "gap": gap, "solve_s": r.solve_s, "evades": self.evades}}

    @classmethod
    def infeasible_record(cls) -> dict[str, dict[str, Any]]:
        return {"exact_bounds": {"status": "infeasible", "optimum_or_bound": float("nan"),
                                 "best_found_cost": float("nan"), "gap": float("nan"), "solve_s": 0.0, "evades": None}}

    def metrics(self) -> dict[str, float]:
        return {"exact_vars": float(self.result.n_vars), "exact_rows": float(self.result.n_rows)}
