"""Candidate moves several strategies share: an informed opening batch, per-feature value grids, a memory of
what was already asked, and a label-only cost reducer that walks an evasion back towards the original.

Everything here uses only what a :class:`~simulator.strategies.base.Problem` gives an attacker: the original,
the feature rules, and the approved transactions it has seen (``approved_examples``), never the model.

Examples
--------
>>> import numpy as np
>>> from simulator.schema import FeatureSchema
>>> from simulator.kernels import get_kernels
>>> from simulator.strategies.base import Problem
>>> sa = FeatureSchema.from_mapping(["amount", "flag"], {"amount": {"min": 0, "max": 100},
...                                  "flag": {"type": "binary", "direction": "decrease"}}).arrays()
>>> p = Problem(x0=np.array([90.0, 1.0]), schema=sa, kernels=get_kernels("cpu"), budget=10, feedback="score",
...             approved_examples=np.array([[10.0, 0.0], [20.0, 0.0], [30.0, 1.0]]))
>>> prior = Prior.from_problem(p)
>>> prior.typical.tolist()
[20.0, 0.0]
>>> opening_moves(p, prior)[:4].tolist()
[[20.0, 0.0], [20.0, 1.0], [90.0, 0.0], [0.0, 1.0]]
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np

from ..kernels.reference import BINARY, CATEGORICAL, CONTINUOUS, INTEGER


def project_rows(problem, X: np.ndarray) -> np.ndarray:
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    X0 = np.ascontiguousarray(problem.x0, dtype=np.float64)[None, :]
    return problem.repair(problem.kernels.project(X, X0, np.zeros(len(X), np.int64), problem.schema))


class Projector:
    """:func:`project_rows` for one problem with a memory of the rows it has projected, and one kernel call
    (:meth:`Kernels.project_repair`) for the rest.

    A strategy that re-proposes the same moves step after step (greedy's knapsack and cost-reducer candidates
    stay the same until what it has learnt changes) projects each only once. The projection is a pure function of
    the row's bits for a given problem, so the memory cannot change a result. It forgets everything once it holds
    ``max_rows`` rows (about 0.4 MB), so memory stays bounded whatever the budget; ``remember=False`` projects rows
    that will not recur (random draws) without storing them."""

    def __init__(self, problem, *, max_rows: int = 1024):
        self.problem, self.max_rows = problem, int(max_rows)
        self._X0 = np.ascontiguousarray(problem.x0, dtype=np.float64)[None, :]
        self._E = None if problem.extras is None else np.asarray(problem.extras, np.float64)[None, :]
        ra = problem.relations
        self._ra = None if ra is None or ra.empty else ra
        self._memo: dict[bytes, bytes] = {}
        self._f = problem.kernels.bind_project_repair(self._X0, self._E, problem.schema, self._ra)

    def __call__(self, X: np.ndarray, *, remember: bool = True) -> np.ndarray:
        X = np.ascontiguousarray(np.atleast_2d(np.asarray(X, dtype=np.float64)))
        if not remember or len(X) == 0:
            return self._project(X)
        return rows_of(self.keys(X), X.shape[1])

    def _project(self, X: np.ndarray) -> np.ndarray:
        if len(X) == 0:
            return project_rows(self.problem, X)
        return self._f(X)

    def keys(self, X: np.ndarray) -> list[bytes]:
        """The projected rows of ``X`` as bytes (the keys :class:`Seen` keeps), in order."""
        X = np.ascontiguousarray(np.atleast_2d(np.asarray(X, dtype=np.float64)))
        memo = self._memo
        raw = row_keys(X)
        got = [memo.get(k) for k in raw]
        miss = [i for i, g in enumerate(got) if g is None]
        if miss:
            P = row_keys(self._project(X[miss] if len(miss) < len(X) else X))
            if len(memo) + len(miss) > self.max_rows:
                memo.clear()
            for i, p in zip(miss, P):
                got[i] = memo[raw[i]] = p
        return cast("list[bytes]", got)  # every miss was filled just above: no None is left

    def key(self, raw: bytes, x: np.ndarray) -> bytes:
        """The projected row of one row ``x`` (whose bytes are ``raw``) as bytes: :meth:`keys` for a single row
        without building a batch (a memory hit is one dictionary look-up)."""
        hit = self._memo.get(raw)
        if hit is not None:
            return hit
        p = self._project(np.ascontiguousarray(x, np.float64).reshape(1, -1)).tobytes()
        if len(self._memo) + 1 > self.max_rows:
            self._memo.clear()
        self._memo[raw] = p
        return p


def row_keys(X: np.ndarray) -> list[bytes]:
    """Each row of a C-contiguous float64 matrix as bytes (what :class:`Seen` compares)."""
    b = X.tobytes()
    w = X.shape[1] * 8 if X.ndim == 2 else len(b)
    return [b[i : i + w] for i in range(0, len(b), w)] if w else [b""] * len(X)


def rows_of(keys: list[bytes], d: int) -> np.ndarray:
    """The (len(keys), d) float64 matrix whose rows are ``keys`` (inverse of :func:`row_keys`)."""
    return np.frombuffer(b"".join(keys), dtype=np.float64).reshape(len(keys), d).copy()


def cost_rows(problem, X: np.ndarray) -> np.ndarray:
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    X0 = np.ascontiguousarray(problem.x0, dtype=np.float64)[None, :]
    return problem.kernels.cost(X, X0, np.zeros(len(X), np.int64), problem.schema)


def allowed_range(sa, x0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per feature, the interval its direction allows around the original (numeric features); a missing (NaN)
    original allows the whole range."""
    present = ~np.isnan(x0)
    a = np.where((sa.direction == 1) & present, x0, sa.lo)
    b = np.where((sa.direction == -1) & present, x0, sa.hi)
    return a, b


def feature_costs(problem, X: np.ndarray) -> np.ndarray:
    """(n, d) cost contribution of each feature (the terms that :func:`kernels.cost` sums)."""
    sa, x0 = problem.schema, problem.x0
    X = np.atleast_2d(X)
    nan_x, nan_0 = np.isnan(X), np.isnan(x0)[None, :]
    diff = np.where(nan_x | nan_0, 0.0, np.abs(X - x0[None, :]))
    span = sa.hi - sa.lo
    numeric = (sa.kind == CONTINUOUS) | (sa.kind == INTEGER)
    per_unit = np.where(numeric & (span > 0), sa.cost / np.where(span > 0, span, 1.0), 0.0)
    out = np.where(numeric & (span > 0), diff * per_unit, np.where(diff != 0, sa.cost, 0.0))
    return np.where(nan_x != nan_0, sa.cost, out)  # a missing value given one costs the full weight


def feature_cost(problem, j: int, v: np.ndarray) -> np.ndarray:
    """``feature_costs`` of the original with feature ``j`` moved to each value of ``v``, column ``j`` only: the same
    arithmetic on one column (what moving that feature alone costs)."""
    sa, x0 = problem.schema, problem.x0
    v = np.asarray(v, np.float64)
    nan_x, nan_0 = np.isnan(v), bool(np.isnan(x0[j]))
    diff = np.where(nan_x | nan_0, 0.0, np.abs(v - x0[j]))
    span = sa.hi[j] - sa.lo[j]
    if sa.kind[j] in (CONTINUOUS, INTEGER) and span > 0:
        out = diff * (sa.cost[j] / span)
    else:
        out = np.where(diff != 0, sa.cost[j], 0.0)
    return np.where(nan_x != nan_0, sa.cost[j], out)


@dataclass(frozen=True)
class Prior:
    """What approved traffic looks like, feature by feature (medians, modes, quantiles), and how unusual the
    original is against it; with no approved examples, the middle of each allowed range."""

    typical: np.ndarray  # (d,) an approved-looking value per feature (already valid for this target)
    atypicality: np.ndarray  # (d,) in [0, 1]: how far the original sits from approved traffic
    quantiles: np.ndarray  # (5, d) approved 10/25/50/75/90% quantiles (NaN without examples)
    frequencies: list  # per feature: {value: share among approved} for binary/categorical features

    @classmethod
    def from_problem(cls, problem) -> "Prior":
        sa, x0 = problem.schema, np.asarray(problem.x0, np.float64)
        d = len(x0)
        A = problem.approved_examples
        A = None if A is None or len(A) == 0 else np.asarray(A, np.float64)
        typical = x0.copy()
        atyp = np.zeros(d)
        q = np.full((5, d), np.nan)
        freqs: list = [dict() for _ in range(d)]
        a, b = allowed_range(sa, x0)
        stats = None if A is None else _approved_stats(A, sa)
        for j in range(d):
            if not sa.mutable[j]:
                continue
            k = sa.kind[j]
            if A is None:
                if k in (CONTINUOUS, INTEGER):
                    typical[j] = 0.5 * (a[j] + b[j])
                elif k == BINARY:
                    typical[j] = 1.0 - x0[j]
                else:
                    cats = sa.categories[j, : sa.n_categories[j]]
                    typical[j] = cats[0] if cats[0] != x0[j] else cats[min(1, len(cats) - 1)]
                atyp[j] = 0.5
                continue
            assert stats is not None  # A is not None here
            st = stats[j]
            if st is None:  # no approved example has a value here
                atyp[j] = 0.5
                continue
            if k in (CONTINUOUS, INTEGER):
                qj, col = st  # the quantiles and the sorted present values
                q[:, j] = qj
                typical[j] = q[2, j]
                if x0[j] != x0[j]:  # a missing original: no value is below or equal to it
                    below = same = 0
                else:
                    below = int(np.searchsorted(col, x0[j], "left"))
                    same = int(np.searchsorted(col, x0[j], "right")) - below
                atyp[j] = abs(below / len(col) + 0.5 * (same / len(col)) - 0.5) * 2.0
            else:
                freqs[j], typical[j] = dict(st[0]), st[1]
                atyp[j] = 1.0 - freqs[j].get(float(x0[j]), 0.0)
        typical = project_rows(problem, typical)[0]
        return cls(typical=typical, atypicality=atyp, quantiles=q, frequencies=freqs)


_STATS: dict = {}  # (approved examples' fingerprint, schema arrays' id) -> (schema arrays, per-feature statistics)


def _approved_stats(A: np.ndarray, sa) -> list:
    """Per feature, what :meth:`Prior.from_problem` reads from the approved examples that does not depend on the
    target: numeric features their 10/25/50/75/90% quantiles and sorted present values, binary and categorical ones
    their shares and most common value (None where no example has a value). Every target of a run shares the same
    approved examples, so they are computed once; the key is the examples' bytes (a checksum, with the shape), so a
    changed array is never served stale statistics."""
    import zlib

    C = np.ascontiguousarray(A)
    raw = C.tobytes()
    key = (C.shape, zlib.crc32(raw), id(sa))
    hit = _STATS.get(key)
    if hit is not None and hit[0] is sa and hit[2] == raw:
        return hit[1]
    stats: list = []
    for j in range(C.shape[1]):
        col = C[:, j][~np.isnan(C[:, j])]
        if not sa.mutable[j] or len(col) == 0:
            stats.append(None)
        elif sa.kind[j] in (CONTINUOUS, INTEGER):
            stats.append((np.quantile(col, [0.1, 0.25, 0.5, 0.75, 0.9]), np.sort(col)))
        else:
            vals, counts = np.unique(col, return_counts=True)
            share = counts / counts.sum()
            stats.append(({float(v): float(s) for v, s in zip(vals, share)}, float(vals[np.argmax(share)])))
    if len(_STATS) >= 8:
        _STATS.clear()
    _STATS[key] = (sa, stats, raw)
    return stats


def value_grid(problem, prior: Prior, j: int, *, points: int = 8) -> np.ndarray:
    """Values worth trying for feature ``j`` alone (valid after projection, original excluded), ordered from
    the boldest move (far from the original) to the mildest."""
    return value_grids(problem, prior, [j], points=points)[j]


def value_grids(problem, prior: Prior, features, *, points: int = 8) -> dict[int, np.ndarray]:
    """:func:`value_grid` of each feature in ``features``, with one projection for all of them (each row is
    projected on its own, so the values are the same as feature by feature)."""
    sa, x0 = problem.schema, problem.x0
    a, b = allowed_range(sa, x0)
    fr = np.linspace(0.0, 1.0, points + 1)[1:]
    cand: dict[int, np.ndarray] = {}
    for j in (int(f) for f in features):
        k = sa.kind[j]
        if not sa.mutable[j]:
            continue
        if k == BINARY:
            vals = np.array([1.0 - x0[j]])
        elif k == CATEGORICAL:
            cats = sa.categories[j, : sa.n_categories[j]]
            share = np.array([prior.frequencies[j].get(float(c), 0.0) for c in cats])
            vals = cats[np.argsort(-share, kind="stable")]
        else:
            anchors = [a[j], b[j], prior.typical[j], *prior.quantiles[:, j][np.isfinite(prior.quantiles[:, j])]]
            lin = [a[j] + f * (b[j] - a[j]) for f in fr]
            toward = [x0[j] + f * (t - x0[j]) for t in (a[j], b[j], prior.typical[j]) for f in (0.5, 0.25, 0.1, 0.03)]
            vals = np.array(anchors + lin + toward, dtype=np.float64)
        cand[j] = vals
    out = {int(j): np.empty(0) for j in features}
    if not cand:
        return out
    X = np.repeat(x0[None, :], sum(len(v) for v in cand.values()), axis=0)
    at = 0
    for j, vals in cand.items():
        X[at : at + len(vals), j] = vals
        at += len(vals)
    P = project_rows(problem, X)
    at = 0
    for j, vals in cand.items():
        v = P[at : at + len(vals), j]
        at += len(vals)
        v = v[(v != x0[j]) & ~np.isnan(v)]
        if sa.kind[j] in (CONTINUOUS, INTEGER):
            v = np.unique(v)
            v = v[np.argsort(-np.abs(v - x0[j]), kind="stable")]
        else:
            _, first = np.unique(v, return_index=True)
            v = v[np.sort(first)]
        out[j] = v
    return out


def opening_moves(problem, prior: Prior, grids: dict | None = None, *, approved_pool: int | None = None) -> np.ndarray:
    """The informed first batch, most promising first: every mutable feature at once to its approved-looking
    value, then each feature alone to that value (most unusual features first), then each feature alone to the
    extremes its direction allows and to other categories, then the cheapest approved examples projected onto
    this target's rules. Duplicates and the original itself are dropped. ``grids``: :func:`value_grids` of this
    problem when already computed (any ``points``: the categorical moves are the same). ``approved_pool``: repair
    only that many approved examples, the cheapest on the bounds (:func:`cheapest_approved`; None: all of them)."""
    sa, x0 = problem.schema, np.asarray(problem.x0, np.float64)
    mut = np.flatnonzero(sa.mutable)
    order = mut[np.argsort(-prior.atypicality[mut], kind="stable")]
    rows = [prior.typical.copy()]
    approved = np.empty((0, len(x0)))
    if problem.approved_examples is not None and len(problem.approved_examples):
        approved = cheapest_approved(problem, problem.approved_examples[:1000], 20, pool=approved_pool)
    for j in order:
        x = x0.copy()
        x[j] = prior.typical[j]
        rows.append(x)
    a, b = allowed_range(sa, x0)
    for j in order:
        k = sa.kind[j]
        if k in (CONTINUOUS, INTEGER):
            extremes = (a[j], b[j]) if prior.typical[j] <= x0[j] else (b[j], a[j])  # towards approved traffic first
            for v in extremes:
                x = x0.copy()
                x[j] = v
                rows.append(x)
        elif k == BINARY:
            x = x0.copy()
            x[j] = 1.0 - x0[j]
            rows.append(x)
    for j in order:
        if sa.kind[j] == CATEGORICAL:
            for v in (value_grid(problem, prior, j) if grids is None or j not in grids else grids[j])[:3]:
                x = x0.copy()
                x[j] = v
                rows.append(x)
    rows.extend(approved)
    X = project_rows(problem, np.array(rows))
    return unique_rows(X[(X != x0[None, :]).any(axis=1)])


APPROVED_POOL = 64  # approved examples repaired per target: the cheapest on the bounds alone (see cheapest_approved)


def cheapest_approved(problem, A: np.ndarray, k: int, *, pool: int | None = APPROVED_POOL) -> np.ndarray:
    """The ``k`` cheapest distinct approved examples ``A`` projected onto this target's rules (bounds, then
    relations), cheapest first, ties in the order of ``A``.

    The bounds projection is cheap and exact for all of ``A``; repairing the relations costs about a microsecond a
    row, and every target of a run would repair the same ~1,000 rows. So only the ``pool`` rows cheapest after the
    bounds are repaired (the relations move a few features, so the cheapest rows stay near the front: on
    ``release_check`` the same 20 rows as repairing all 1,000, for every target). Without relations nothing is
    repaired and the result is exactly the cheapest ``k`` of all of ``A``; ``pool=None`` repairs every row (exact)."""
    A = np.atleast_2d(np.asarray(A, np.float64))
    X0 = np.ascontiguousarray(problem.x0, dtype=np.float64)[None, :]
    P = problem.kernels.project(A, X0, np.zeros(len(A), np.int64), problem.schema)
    ra = problem.relations
    if pool is not None and ra is not None and not ra.empty and len(P) > pool:
        P = P[np.argsort(cost_rows(problem, P), kind="stable")[:pool]]
    P = problem.repair(P)
    order = np.argsort(cost_rows(problem, P), kind="stable")
    return _first_distinct(P, order, k)


def _first_distinct(X: np.ndarray, order: np.ndarray, k: int) -> np.ndarray:
    """``unique_rows(X)`` sorted stably by a key whose stable order is ``order``, first ``k``: rows of ``X`` in
    ``order``, skipping a row equal to one before it in ``X`` (equal rows share their key, so the first of them in
    ``order`` is the first in ``X``), stopping at ``k``. Same equality as :func:`unique_rows`."""
    K = np.ascontiguousarray(X, np.float64) + 0.0  # -0.0 becomes 0.0
    w = K.shape[1] * 8
    b = K.tobytes()
    nan = np.asarray(np.isnan(K).any(axis=1), dtype=bool)
    seen: set[bytes] = set()
    keep: list[int] = []
    for i in order.tolist():
        if len(keep) >= k:
            break
        if not nan[i]:
            key = b[i * w : (i + 1) * w]
            if key in seen:
                continue
            seen.add(key)
        keep.append(i)
    return X[keep]


def unique_rows(X: np.ndarray) -> np.ndarray:
    """Distinct rows in order of first appearance (rows equal as numbers: 0.0 and -0.0 are the same, a row with a
    missing value is never equal to another, as ``np.unique(X, axis=0)`` compares them)."""
    if len(X) < 2:
        return X
    if X.dtype != np.float64 or X.ndim != 2:
        _, first = np.unique(X, axis=0, return_index=True)
        return X[np.sort(first)]
    K = np.ascontiguousarray(X) + 0.0  # -0.0 becomes 0.0
    nan = np.asarray(np.isnan(K).any(axis=1), dtype=bool).tolist()
    seen: set[bytes] = set()
    keep = []
    for i, k in enumerate(row_keys(K)):
        if not nan[i]:
            if k in seen:
                continue
            seen.add(k)
        keep.append(i)
    return X[keep]


class Seen:
    """Which candidates were already asked, so no query is spent twice on the same row."""

    def __init__(self):
        self._keys: set[bytes] = set()

    def __contains__(self, x) -> bool:
        """A row (array), or a row's bytes."""
        if isinstance(x, bytes):
            return x in self._keys
        return np.ascontiguousarray(x, np.float64).tobytes() in self._keys

    def add(self, X: np.ndarray) -> None:
        self._keys.update(row_keys(np.ascontiguousarray(np.atleast_2d(X), np.float64)))

    def take(self, keys: list[bytes], limit: int, out: list[bytes], start: int = 0) -> tuple[int, int]:
        """Append to ``out`` the first ``limit`` of ``keys[start:]`` (rows as bytes) not seen before and distinct,
        and mark them seen: ``new`` then ``add`` without leaving bytes. Returns how many were taken and where the
        scan stopped (every key before that is now seen, so a caller may resume there)."""
        seen, taken = self._keys, 0
        if limit <= 0:
            return 0, start
        i = start
        for i in range(start, len(keys)):
            k = keys[i]
            if k in seen:
                continue
            seen.add(k)
            out.append(k)
            taken += 1
            if taken >= limit:
                return taken, i + 1
        return taken, len(keys)

    def claim(self, key: bytes, out: list[bytes]) -> bool:
        """``take([key], 1, out)`` for one row's bytes: True when it was new (then appended to ``out`` and seen)."""
        if key in self._keys:
            return False
        self._keys.add(key)
        out.append(key)
        return True

    def unseen(self, keys: list[bytes]) -> list[int]:
        """Positions of the ``keys`` (rows as bytes) not seen before and not repeating an earlier one (nothing is
        marked seen)."""
        seen, mine, out = self._keys, set(), []
        for i, k in enumerate(keys):
            if k in seen or k in mine:
                continue
            mine.add(k)
            out.append(i)
        return out

    def new(self, X: np.ndarray, limit: int | None = None) -> np.ndarray:
        """Rows of ``X`` not seen before (and distinct), in order, at most ``limit``."""
        A = np.atleast_2d(np.ascontiguousarray(X, np.float64))
        seen, keys, out = self._keys, set(), []
        for i, key in enumerate(row_keys(A)):
            if key in seen or key in keys:
                continue
            keys.add(key)
            out.append(i)
            if limit is not None and len(out) >= limit:
                break
        return A[out].reshape(len(out), X.shape[-1] if X.ndim == 2 else len(X))


class CostReducer:
    """Label-only walk from the cheapest evasion back towards the original.

    For each feature the incumbent ``inc`` changed (most expensive first) it tries to revert it fully, then
    bisects the fraction of the change that can be kept (several fractions per feature per batch). It remembers,
    per feature, the largest fraction known to fail, so each query narrows a bracket; the bracket carries over
    when a cheaper incumbent replaces the old one."""

    def __init__(self, problem, *, min_gain: float = 1e-3, project=None, eager: bool = False):
        self.problem, self.min_gain = problem, min_gain
        self.eager = eager  # bisect a change whose revert is not answered yet too (large batches: no round to wait)
        self._project = project if project is not None else (lambda X: project_rows(problem, X))
        self.x0 = np.asarray(problem.x0, np.float64)
        self.inc: np.ndarray | None = None
        self._inc_costs: tuple[np.ndarray, float] | None = None
        self.fail = np.full(len(self.x0), -1.0)  # per feature: largest fraction of inc's change known to fail

    def set_incumbent(self, x: np.ndarray) -> None:
        if self.inc is not None and np.array_equal(x, self.inc):
            return
        if self.inc is not None:
            old, new = self.inc - self.x0, x - self.x0
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(old != 0, new / old, 0.0)
            same_dir = (ratio > 0) & (ratio <= 1.0)
            self.fail = np.where(same_dir & (self.fail >= 0), np.minimum(self.fail / np.where(ratio > 0, ratio, 1), 1.0), -1.0)
            numeric = (self.problem.schema.kind == CONTINUOUS) | (self.problem.schema.kind == INTEGER)
            self.fail = np.where(numeric | (old == new), self.fail, -1.0)
        self.inc = np.asarray(x, np.float64).copy()
        self._inc_costs = None  # (per-feature costs, total cost) of the incumbent, computed when first needed
        self._planned: dict[tuple[int, bytes], np.ndarray] = {}  # (k, fail) -> candidates before the seen filter

    def _incumbent_costs(self) -> tuple[np.ndarray, float]:
        if self._inc_costs is None:
            inc = self.inc
            assert inc is not None  # called by _plan only, which propose calls only with an incumbent
            self._inc_costs = (feature_costs(self.problem, inc[None, :])[0],
                               float(cost_rows(self.problem, inc[None, :])[0]))
        return self._inc_costs

    def propose(self, k: int, seen: Seen) -> np.ndarray:
        """Up to ``k`` new candidates, each the incumbent with one feature moved back."""
        if self.inc is None or k <= 0:
            return np.empty((0, len(self.x0)))
        key = (k, self.fail.tobytes())  # the candidates depend only on the incumbent, the brackets and k
        X = self._planned.get(key)
        if X is None:
            if len(self._planned) >= 16:
                self._planned.clear()
            X = self._planned[key] = self._plan(k)
        return seen.new(X, k) if len(X) else X

    def _plan(self, k: int) -> np.ndarray:
        """:meth:`propose`'s candidates before dropping the ones already asked (projected, cheaper than inc)."""
        sa = self.problem.schema
        inc = self.inc
        assert inc is not None  # propose returns early without an incumbent
        per, inc_cost = self._incumbent_costs()
        feats = [j for j in np.argsort(-per, kind="stable") if per[j] > 0 and per[j] * (1 - max(self.fail[j], 0)) > self.min_gain]
        if not feats:
            return np.empty((0, len(self.x0)))
        numeric = [(sa.kind[j] in (CONTINUOUS, INTEGER)) for j in feats]
        # full reverts first, then bisection fractions spread over the numeric features (one matrix, filled by column)
        revert = [j for j in feats if self.fail[j] < 0]
        slots = max(k - len(revert), 0)
        num_feats = [j for j, isnum in zip(feats, numeric) if isnum and (self.eager or self.fail[j] >= 0)]
        m = max(1, int(np.ceil(slots / len(num_feats)))) if num_feats and slots else 0
        n = len(revert) + m * len(num_feats)
        if not n:
            return np.empty((0, len(self.x0)))
        rows = np.repeat(inc[None, :], n, axis=0)
        rows[np.arange(len(revert)), revert] = self.x0[revert]
        steps = np.arange(1, m + 1)
        at = len(revert)
        for j in num_feats if m else []:
            lo = max(self.fail[j], 0.0)
            f = lo + (1.0 - lo) * steps / (m + 1)  # the same arithmetic as one fraction at a time
            rows[at : at + m, j] = self.x0[j] + f * (inc[j] - self.x0[j])
            at += m
        X = self._project(rows)
        return X[cost_rows(self.problem, X) < inc_cost]

    def update(self, X: np.ndarray, evaded: np.ndarray) -> None:
        """Learn from told candidates that differ from the incumbent in one feature, moved towards the original."""
        if self.inc is None:
            return
        delta = self.inc - self.x0
        X = np.atleast_2d(X)
        D = X != self.inc[None, :]
        rows = np.flatnonzero((D.sum(axis=1) == 1) & ~np.asarray(evaded, bool))  # one feature moved, not evaded
        if not len(rows):
            return
        js = D[rows].argmax(axis=1)  # the moved feature
        moved = delta[js] != 0
        rows, js = rows[moved], js[moved]
        f = (X[rows, js] - self.x0[js]) / delta[js]  # the fraction of inc's change kept
        back = (f >= 0.0) & (f < 1.0)
        np.maximum.at(self.fail, js[back], f[back])
