"""Coordinate (greedy) search: spend queries on the features that moved the score most, then buy cost down."""
from __future__ import annotations

import numpy as np

from ..kernels import MODE_LOCAL
from ..protocol import Feedback
from .base import Opening, Strategy, register
from .moves import (APPROVED_POOL, CostReducer, Prior, Projector, Seen, cost_rows, feature_cost, opening_moves, row_keys,
                    rows_of, value_grids)

_EPS = 1e-7


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), _EPS, 1.0 - _EPS)
    return np.log(p) - np.log1p(-p)


def pareto_combos(options: list[list[tuple[float, float, float]]], cap: int = 4000):
    """Additive knapsack: every choice of one option per feature as (cost, gain, values), pruned to the Pareto
    front (cheaper, or a lower predicted margin). ``options[f]`` lists ``(value, cost, gain)``; returns arrays
    ``cost``, ``gain`` and the chosen option index per feature."""
    return pareto_front([np.array([o[1] for o in opts]) for opts in options],
                        [np.array([o[2] for o in opts]) for opts in options], cap)


def pareto_front(costs: list[np.ndarray], gains: list[np.ndarray], cap: int = 4000):
    """:func:`pareto_combos` on per-feature arrays of option costs and gains."""
    cost, gain = np.zeros(1), np.zeros(1)
    links = []  # per feature: (combination of the features before, option of this one) of each kept combination
    for oc, og in zip(costs, gains):
        m = len(oc)
        c = (cost[:, None] + oc[None, :]).ravel()
        g = (gain[:, None] + og[None, :]).ravel()
        order = np.lexsort((g, c))
        c, g = c[order], g[order]
        keep = g < np.minimum.accumulate(np.concatenate(([np.inf], g[:-1])))  # strictly better than every cheaper
        kept = order[keep][:cap]
        links.append((kept // m, kept % m))
        cost, gain = c[keep][:cap], g[keep][:cap]
    pick = np.zeros((len(cost), len(links)), np.int64)
    row = np.arange(len(cost))
    for f in range(len(links) - 1, -1, -1):  # follow each combination back through the features
        prev, opt = links[f]
        pick[:, f] = opt[row]
        row = prev[row]
    return cost, gain, pick


@register("greedy")
class Greedy(Strategy):
    """Opens with one informed batch (every feature alone to an approved-looking value and to its extremes),
    learns from it each feature's effect on the log-odds score, and then, batch by batch: stacks the moves that
    lowered the score most, line-searches new values on the most sensitive features, and once an evasion is
    found, walks it back towards the original feature by feature (bisection on what each change must keep) and
    proposes the cheapest combinations an additive model of the measured effects predicts to evade."""

    needs = frozenset({"score"})
    batch_size = 40  # candidates per ask: each ask's bookkeeping is paid once for 40 queries (see the README)
    segment_points = 10  # points per round of the segment bisection, whatever the batch
    segment_rounds = 2  # rounds of it, from the original to the first evasion

    param_bounds = {"grid": (2, 1000), "stack_share": (0, 1)}  # checked at validate (strategies/params.py)

    def __init__(self, problem, rng, *, grid: int = 8, stack_share: float = 0.4, opening: Opening = "typical",
                 **params):
        super().__init__(problem, rng, **params)  # unknown parameters: ScenarioError
        self.grid, self.stack_share = int(grid), float(stack_share)
        self.prior = Prior.from_problem(problem)
        grids = value_grids(problem, self.prior, self.mutable_idx, points=self.grid)  # one projection for all
        self.opening = self.set_opening(opening_moves(problem, self.prior, grids, approved_pool=APPROVED_POOL)
                                        if self.check_opening(opening)
                                        else np.empty((0, self.d)))
        self.seen = Seen()
        self._project_rows = Projector(problem)  # project_rows with a memory: many candidates recur step to step
        self._repair = problem.kernels.bind_repair(self._X0, self._project_rows._E, problem.schema,
                                                   self._project_rows._ra)
        self.reducer = CostReducer(problem, project=self._project_rows, eager=True)
        self.margin0: float | None = None  # log-odds score of the original, once asked
        self._x0_askable = self._feasible_original(problem)  # an original that breaks a relation is never asked
        self.singles: dict[int, dict[float, float]] = {int(j): {} for j in self.mutable_idx}  # j -> value -> margin
        self.grids = {j: list(v) for j, v in grids.items()}
        self.max_evaded_margin = -np.inf  # the threshold lies above every evaded score
        self._segment_end: np.ndarray | None = None
        self._segment_lo, self._segment_hi, self._segment_rounds = 0.0, 1.0, 0
        self._segment_ts = np.empty(0)
        self._segment_keys: list[bytes] = []  # the segment's points projected (as bytes), last asked
        self._measured = 0  # single moves measured so far (the knapsack's front changes only with them)
        self._front_cache: tuple | None = None
        self._gains_cache: dict[int, tuple] = {}
        self._options_cache: dict[int, tuple] = {}
        self._grid_key_cache: dict[int, list] = {}
        self._grid_start = {int(j): 0 for j in self.mutable_idx}  # per feature: grid values before it are done
        self._sens_version = 0  # bumped whenever a feature's lowest single-move score changes
        self._quota_cache: tuple | None = None
        self._opening_order: tuple | None = None  # the opening moves by cost, and their costs
        self._opening_cache: list | None = None  # [best cost, projected keys of the cheaper ones, scan position]
        self._asked_bytes = b""  # the last batch asked, as bytes (every row of it is in seen)
        self._knapsack_cache: list | None = None  # [front, state, projected candidate keys, where the scan stopped]
        self._lowest_single: dict[int, float] = {}  # per feature: the lowest log-odds score of its single moves
        self._highest_single = -np.inf

    # -- what was learnt -----------------------------------------------------------------------------------------
    def _base(self) -> float:
        """The log-odds score effects are measured against: the original's, or until it is known the highest
        single move's."""
        return self.margin0 if self.margin0 is not None else (self._highest_single if self._measured else 0.0)

    def _gains(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Feature ``j``'s measured single moves as arrays (values, gain in log-odds against the original), most
        lowering first, ties in the order measured (cached until a move of ``j`` is measured or the original's
        score becomes known; the same arrays object while cached)."""
        base = self._base()
        moves = self.singles[j]
        key = (len(moves), base)
        hit = self._gains_cache.get(j)
        if hit is not None and hit[0] == key:
            return hit[1]
        n = len(moves)
        v = np.fromiter(moves.keys(), np.float64, n)
        g = np.fromiter(moves.values(), np.float64, n) - base
        order = np.argsort(g, kind="stable")
        out = (v[order], g[order])
        self._gains_cache[j] = (key, out)
        return out

    def _sensitivity(self) -> dict[int, float]:
        base = self._base()
        # unmeasured features first
        return {j: base - self._lowest_single[j] if j in self._lowest_single else np.inf for j in self.singles}

    # -- candidate sources ------------------------------------------------------------------------------------------
    def _stacks(self) -> list[np.ndarray]:
        """Best single moves stacked in order of their effect, from the original and onto the lowest-score point."""
        best = [(j, float(self._gains(j)[0][0]), float(self._gains(j)[1][0])) for j in self.singles if self.singles[j]]
        best = [b for b in best if b[2] < 0]
        best.sort(key=lambda t: t[2])
        rows = []
        x = self.x0.copy()
        for j, v, _ in best:
            x = x.copy()
            x[j] = v
            rows.append(x)
        inc = self.lowest_score_x
        for j, v, _ in best:
            if inc[j] != v:
                y = inc.copy()
                y[j] = v
                rows.append(y)
        return rows[1:] + rows[:1]  # the single best move alone was asked in the opening already

    def _line_plan(self, k: int) -> list[tuple[int, int]]:
        """Per feature, most sensitive first, how many grid values a line search of ``k`` tries (kept until something
        new is learnt)."""
        hit = self._quota_cache
        key = (k, self._base(), self._sens_version)  # all the sensitivities depend on
        if hit is None or hit[0] != key:
            sens = self._sensitivity()
            feats = sorted(sens, key=lambda j: -sens[j])
            if k == 1:  # max(1, round(w / sum of w)) is 1 for every feature
                plan = [(j, 1) for j in feats]
            else:
                weights = np.array([min(sens[j], 10.0) if np.isfinite(sens[j]) else 10.0 for j in feats]) + 0.1
                quota = np.maximum(1, np.round(k * weights / weights.sum())).astype(int)
                plan = list(zip(feats, quota.tolist()))
            hit = self._quota_cache = (key, plan)
        return hit[1]

    def _line_search(self, k: int, base: np.ndarray | None = None) -> list[np.ndarray]:
        """Next untried grid values, one feature at a time, more of them on the most sensitive features."""
        rows: list[np.ndarray] = []
        seen = self.seen
        for j, q in self._line_plan(k):
            if base is None:  # from the original: each grid move's row is known by its bytes, built once
                singles, grid = self.singles[j], self._grid_keys(j)
                start = self._grid_start[j]
                for i in range(start, len(grid)):
                    if q <= 0:
                        break
                    v, key, _ = grid[i]
                    if v in singles or key in seen:
                        if i == start:  # measured or asked stays so: later searches start after it
                            start = self._grid_start[j] = i + 1
                        continue
                    x = self.x0.copy()
                    x[j] = v
                    rows.append(x)
                    q -= 1
                continue
            for v in self.grids[j]:
                if q <= 0:
                    break
                x = base.copy()
                x[j] = v  # grid values are valid for this feature whatever the base, as the base is valid
                if x in seen:
                    continue
                rows.append(x)
                q -= 1
        return rows

    def _take_line_search(self, k: int, limit: int, out: list[bytes]) -> None:
        """``take(self._line_search(k), limit)`` from the original, without building the rows it does not take:
        the same rows in the same order, each projected once with its feature's grid (:meth:`_grid_keys`). Rows this
        scan takes are told apart from the ones seen before it, so the scan skips exactly what the list did."""
        if limit <= 0:
            return
        seen = self.seen
        mine: set[bytes] = set()  # projected rows taken by this scan (seen now, not when the list was built)
        for j, q in self._line_plan(k):
            singles, grid = self.singles[j], self._grid_keys(j)
            start = self._grid_start[j]
            for i in range(start, len(grid)):
                if q <= 0:
                    break
                v, key, p = grid[i]
                if v in singles or (key in seen and key not in mine):
                    if i == start:  # measured or asked stays so: later searches start after it
                        start = self._grid_start[j] = i + 1
                    continue
                q -= 1
                if seen.claim(p, out):
                    mine.add(p)
                    if len(mine) >= limit:
                        return

    def _grid_keys(self, j: int) -> list[tuple[float, bytes, bytes]]:
        """Feature ``j``'s grid values with the bytes of the original moved to each (as :class:`Seen` keeps) and
        the bytes of that row projected (every feature's rows in one kernel call, when first needed)."""
        hit = self._grid_key_cache.get(j)
        if hit is None:  # every feature's at once: one kernel call
            feats = [f for f in self.grids if f not in self._grid_key_cache]
            sizes = [len(self.grids[f]) for f in feats]
            X = np.repeat(self._X0, sum(sizes), axis=0)
            at = 0
            for f, m in zip(feats, sizes):
                X[at : at + m, f] = self.grids[f]
                at += m
            raw = row_keys(X)
            P = row_keys(self._project_rows(X, remember=False)) if len(X) else []
            at = 0
            for f, m in zip(feats, sizes):
                self._grid_key_cache[f] = list(zip(self.grids[f], raw[at : at + m], P[at : at + m]))
                at += m
            hit = self._grid_key_cache[j]
        return hit

    def _options(self, j: int):
        """Feature ``j``'s own front of measured moves that lower the score (a dearer move must lower it more),
        staying put first: arrays of values, costs and gains, or None; kept until ``_gains(j)`` changes."""
        gains = self._gains(j)
        hit = self._options_cache.get(j)
        if hit is not None and hit[0] is gains:
            return hit[1]
        v, g = gains
        lower = g < 0
        if not lower.any():
            opt = None
        else:
            v, g = v[lower], g[lower]
            costs = feature_cost(self.problem, j, v)  # of moving feature j alone to each value
            order = np.lexsort((g, costs))
            go = g[order]
            keep = order[go < np.minimum.accumulate(np.concatenate(([np.inf], go[:-1])))]
            opt = (np.concatenate(([self.x0[j]], v[keep])), np.concatenate(([0.0], costs[keep])),
                   np.concatenate(([0.0], g[keep])))
        self._options_cache[j] = (gains, opt)
        return opt

    def _front(self):
        """The Pareto front of combinations of measured single moves, recomputed only when a move was measured."""
        if self._front_cache is not None:  # recomputed as the measured moves grow by a quarter (each costs ms)
            (measured, margin0), front = self._front_cache
            if margin0 == self.margin0 and self._measured - measured < max(1, measured // 5):
                return front
        key = (self._measured, self.margin0)
        feats, values, costs, gains = [], [], [], []
        for j in self.singles:
            opt = self._options(j)
            if opt is None:
                continue
            feats.append(j)
            values.append(opt[0])
            costs.append(opt[1])
            gains.append(opt[2])
        if feats:
            cost, gain, pick = pareto_front(costs, gains)
            values = np.column_stack([values[f][pick[:, f]] for f in range(len(feats))])  # (front, feats)
            front = (np.array(feats, np.int64), values, cost, gain)
        else:
            front = None
        self._front_cache = (key, front)
        return front

    def _knapsack(self, k: int) -> np.ndarray:
        """Cheapest combinations of measured single moves that the additive log-odds model predicts to evade."""
        if self.margin0 is None or not np.isfinite(self.max_evaded_margin):
            return np.empty((0, self.d))
        front = self._front()
        if front is None:
            return np.empty((0, self.d))
        feats, values, cost, gain = front
        ok = (self.margin0 + gain < self.max_evaded_margin) & (cost < self.best_cost)
        idx = np.flatnonzero(ok)[: 4 * k]
        X = np.repeat(self._X0, len(idx), axis=0)
        X[:, feats] = values[idx]
        return X

    def _take_knapsack(self, k: int, limit: int, out: list[bytes]) -> None:
        """``take(self._knapsack(k), limit)``, remembering the projected candidates while nothing they depend on
        changes (the front, the original's score, the highest evaded score, the best cost), and where the last
        scan stopped: every candidate before it has been asked."""
        if self.margin0 is None or not np.isfinite(self.max_evaded_margin):
            return
        front = self._front()
        if front is None:
            return
        state = (self.margin0, self.max_evaded_margin, self.best_cost, k)
        hit = self._knapsack_cache
        if hit is None or hit[0] is not front or hit[1] != state:
            hit = self._knapsack_cache = [front, state, self._knapsack(k), [], 0]
        hit[4] = self._take_lazy(hit[2], hit[3], limit, out, hit[4])

    def _take_lazy(self, X: np.ndarray, keys: list[bytes], limit: int, out: list[bytes], start: int) -> int:
        """``Seen.take`` of the projected rows of ``X`` from ``start``, projecting them (through the memory) only
        as far as the scan goes; ``keys`` holds the projected rows so far and grows. Returns where the scan
        stopped."""
        taken, i, n = 0, start, len(X)
        seen = self.seen
        while taken < limit and i < n:
            if i >= len(keys):
                keys.extend(self._project_rows.keys(X[len(keys) : len(keys) + max(4, 2 * limit)]))
            if seen.claim(keys[i], out):
                taken += 1
            i += 1
        return i

    def _take_cheaper_opening(self, limit: int, out: list[bytes]) -> None:
        """``take`` of the opening moves cheaper than the best evasion, cheapest first: their costs are computed
        once, their projected rows kept while the best cost holds, with where the last scan stopped."""
        if self._opening_order is None:
            c = cost_rows(self.problem, self.opening)
            self._opening_order = (self.opening[np.argsort(c, kind="stable")], np.sort(c))
        rows, costs = self._opening_order
        hit = self._opening_cache
        if hit is None or hit[0] != self.best_cost:
            cheaper = rows[costs < self.best_cost]
            hit = self._opening_cache = [self.best_cost, self._project_rows.keys(cheaper) if len(cheaper) else [], 0]
        _, hit[2] = self.seen.take(hit[1], limit, out, hit[2])

    def _segment(self, n: int) -> list[np.ndarray]:
        """Points between the original and the first evasion (every feature moved back by the same fraction),
        bracketing the fraction where the decision flips; two rounds of ``n`` points."""
        if self._segment_end is None:
            assert self.best_x is not None  # the segment phase starts at the first evasion
            self._segment_end, self._segment_lo, self._segment_hi = self.best_x.copy(), 0.0, 1.0
        self._segment_rounds += 1
        lo, hi = self._segment_lo, self._segment_hi
        ts = lo + (hi - lo) * np.arange(1, n + 1) / (n + 1)
        self._segment_ts = ts
        return list(self.x0[None, :] + ts[:, None] * (self._segment_end - self.x0)[None, :])

    def mutate(self, base: np.ndarray, step, p, mode: int = MODE_LOCAL) -> np.ndarray:
        """As :meth:`Strategy.mutate` (the same draws, the same rows), the repair's arguments bound once."""
        return self._repair(self._mutate_raw(base, step, p, mode))

    def _mutate_raw(self, base: np.ndarray, step, p, mode: int = MODE_LOCAL) -> np.ndarray:
        """:meth:`mutate` before the relations' repair."""
        n = len(base)
        U, Z, V = self.rng.random((n, self.d)), self.rng.standard_normal((n, self.d)), self.rng.random(n)
        step = np.full(n, step, np.float64) if np.ndim(step) == 0 else np.asarray(step, np.float64)
        p = np.full(n, p, np.float64) if np.ndim(p) == 0 else np.array(p, np.float64)
        p.flags.writeable = False  # as random's (a read-only view): the same compiled kernel, none compiled mid-run
        return self.problem.kernels.mutate(base, self._X0, np.zeros(n, np.int64), U, Z, V, step, p, mode,
                                           self.problem.schema)

    def _pull_back_raw(self, x: np.ndarray, n: int) -> np.ndarray:
        """:meth:`Strategy.pull_back` before the projection (the same draws)."""
        diff = x != self.x0
        keep = self.rng.random((n, self.d))
        frac = self.rng.random((n, self.d))
        alpha = np.where(keep < 0.35, 0.0, np.where(keep < 0.7, 1.0, frac))  # 0: revert, 1: keep, else: partway
        alpha = np.where(diff, alpha, 0.0)
        return self.x0 + alpha * (x - self.x0)

    def _fresh_keys(self, R: np.ndarray, finish) -> list[bytes]:
        """``row_keys(finish(R))`` less what ``Seen.take`` would skip anyway, without finishing those rows: a row of
        ``R`` already asked is valid, so projecting or repairing it gives itself (asked: skipped), and a repeated
        row gives a repeat. Random moves around a point with few changes repeat often."""
        R = np.ascontiguousarray(R, np.float64)
        idx = self.seen.unseen(row_keys(R))
        if not idx:
            return []
        return row_keys(np.ascontiguousarray(finish(R[idx] if len(idx) < len(R) else R), np.float64))

    def project(self, X: np.ndarray) -> np.ndarray:
        """As :meth:`Strategy.project` (bounds, then relations), in one kernel call (random moves: not remembered)."""
        return self._project_rows(X, remember=False)

    def _feasible_original(self, problem) -> bool:
        """Whether the oracle would take the original itself: its bounds and relations hold (a team's data may hold
        rows that break a declared relation; the oracle refuses those, so greedy measures from its first answers)."""
        E = None if problem.extras is None else np.asarray(problem.extras, np.float64)[None, :]
        return not bool(problem.kernels.invalid(self._X0, self._X0, np.zeros(1, np.int64), problem.schema, E,
                                                problem.relations).any())

    # -- protocol ------------------------------------------------------------------------------------------------------
    def _ask(self, n: int) -> np.ndarray:
        out: list[bytes] = []  # asked rows as bytes (Seen's keys): no array is rebuilt until the batch is complete
        seen = self.seen

        def take(rows, limit):
            if limit <= 0 or not len(rows):
                return
            seen.take(self._project_rows.keys(np.array(rows)), limit, out)

        def take_projected(X, limit):  # rows already projected (projection leaves a projected row as it is)
            if limit <= 0 or not len(X):
                return
            seen.take(row_keys(np.ascontiguousarray(X, np.float64)), limit, out)

        if self.n_told == 0:
            take(self.opening, n)
        if self.margin0 is None and self.n_told > 0 and self._x0_askable and self.x0 not in seen:
            out.append(self.x0.tobytes())  # one query for the original's score: the base of every measured effect
            seen.add(self._X0)
        if self.best_x is None:
            take(self._stacks(), int(np.ceil(self.stack_share * n)) - len(out) + 1)
            take(self.opening, max(0, n // 4 - 1))
            self._take_line_search(n, n - len(out), out)
            take(self._line_search(n, base=self.lowest_score_x), n - len(out))
        else:
            self.reducer.set_incumbent(self.best_x)
            if self._segment_rounds < self.segment_rounds:  # first, bisect from the original to the first evasion
                m = min(n, self.segment_points)
                self._segment_keys = self._project_rows.keys(np.array(self._segment(m)))  # kept for the tell
                seen.take(self._segment_keys, m, out)
            take_projected(self.reducer.propose(n // 2, seen), n // 2)
            self._take_knapsack(n, max(1, n // 5), out)
            if len(self.opening):  # opening moves not asked yet that would be cheaper, cheapest first
                self._take_cheaper_opening(max(1, n // 5), out)
            k = max(1, n // 5)
            seen.take(self._fresh_keys(self._pull_back_raw(self.best_x, 2 * k), self.project), k, out)  # some repeat
            self._take_line_search(max(1, n // 10), max(1, n // 10) if len(out) < n else 0, out)
            take_projected(self.reducer.propose(n - len(out), seen), n - len(out))
        while len(out) < n:  # nothing planned is left: random local moves around the incumbent
            base = self.best_x if self.best_x is not None else self.lowest_score_x
            m = n - len(out)
            k = 2 * m  # twice as many as needed: moves around a few changed features often repeat
            if self.best_x is not None and self.rng.random() < 0.5:
                R, finish = self._pull_back_raw(base, k), self.project
            else:
                step = self.rng.uniform(0.01, 0.3, k)
                R, finish = self._mutate_raw(np.repeat(base[None, :], k, axis=0), step, 0.2), self._repair
            if not seen.take(self._fresh_keys(R, finish), m, out)[0]:
                out.extend(row_keys(np.ascontiguousarray(finish(R), np.float64))[:m])  # tiny spaces: repeats are
                # allowed rather than asking fewer rows
        asked = self._asked_bytes = b"".join(out[:n])
        return np.frombuffer(asked, dtype=np.float64).reshape(min(n, len(out)), self.d).copy()

    def _tell(self, X: np.ndarray, fb: Feedback) -> None:
        assert fb.score is not None  # needs = {"score"}: the scenario is checked to give scores
        margin = logit(fb.score)
        if np.ascontiguousarray(X, np.float64).tobytes() != self._asked_bytes:  # the rows just asked are known
            self.seen.add(X)
        diff = X != self._X0
        nchanged = diff.sum(axis=1)
        rows = np.flatnonzero(nchanged <= 1)  # the original, or one feature moved: a measured effect
        if len(rows):
            cols = diff[rows].argmax(axis=1)  # the moved feature (first changed column)
            for c, j, x, m in zip(nchanged[rows].tolist(), cols.tolist(), X[rows, cols].tolist(),
                                  margin[rows].tolist()):
                if c == 0:
                    self.margin0 = m
                elif j in self.singles:
                    self.singles[j][x] = m
                    low = min(self._lowest_single.get(j, np.inf), m)
                    if self._lowest_single.get(j) != low:
                        self._lowest_single[j] = low
                        self._sens_version += 1  # the sensitivities (and the line search's plan) may change
                    self._highest_single = max(self._highest_single, m)
                    self._measured += 1
        if fb.evaded.any():
            self.max_evaded_margin = max(self.max_evaded_margin, float(margin[fb.evaded].max()))
        self.reducer.update(X, fb.evaded)
        if self._segment_end is not None and len(self._segment_ts):  # narrow the segment's bracket
            P = rows_of(self._segment_keys, self.d)  # the points projected, as asked
            eq = (P[:, None, :] == X[None, :, :]).all(axis=2)  # (points, rows): equal as numbers
            first = eq.argmax(axis=1).tolist()
            for t, found, i in zip(self._segment_ts.tolist(), eq.any(axis=1).tolist(), first):
                if found:
                    if fb.evaded[i]:
                        self._segment_hi = min(self._segment_hi, float(t))
                    elif t < self._segment_hi:
                        self._segment_lo = max(self._segment_lo, float(t))
            self._segment_ts = np.empty(0)
