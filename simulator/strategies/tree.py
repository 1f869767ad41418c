"""Gray/white box: read the granted tree ensemble to find the cheapest feature changes that flip the decision."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..kernels.reference import BINARY, CATEGORICAL
from ..protocol import Feedback
from ..target.trees import OP_IN, OP_LT, OP_NOT_IN, tree_ensemble
from .base import Strategy, register
from .moves import Seen, cost_rows, project_rows


@dataclass(frozen=True)
class Split:
    feature: int
    threshold: float
    strict: bool  # True: left when x < t (XGBoost); False: left when x <= t (LightGBM)
    categories: tuple[float, ...] = ()  # LightGBM categorical split: left when x is one of these


def reachable_splits(model, x0: np.ndarray, mutable: np.ndarray) -> list[Split]:
    """The splits of ``model``'s trees (its neutral :class:`~simulator.target.trees.TreeEnsemble`) an attacker
    can still reach: at a split on a frozen feature only the branch the original takes is followed."""
    ens = tree_ensemble(model)
    seen = ens.reachable(x0, mutable)
    out: list[Split] = []
    for k in np.flatnonzero(seen & ~ens.is_leaf):
        j = int(ens.feature[k])
        if not mutable[j]:
            continue
        op = int(ens.op[k])
        if op in (OP_IN, OP_NOT_IN):
            out.append(Split(j, np.nan, op == OP_NOT_IN, tuple(float(c) for c in ens.categories(int(k)))))
        else:
            out.append(Split(j, float(ens.threshold[k]), op == OP_LT))
    return out


@register("tree")
class TreeSearch(Strategy):
    """Needs the model file. Walks the trees (XGBoost or LightGBM JSON dumps) to list, per mutable feature, the
    split thresholds still reachable from this target (frozen features fixed), so each feature's range falls
    into regions where the model cannot tell values apart; the cheapest valid value of each region is its
    representative. Small ensembles are searched exactly (every combination scored offline); large ones by a
    beam search that changes one more feature per level. The offline scores give a Pareto front of cost
    against score; the threshold lies above the score of every approved example the attacker has seen, so the
    cheapest front point below that is a sure evasion, and cheaper points are asked in order to bisect the
    unknown threshold. The offline search itself costs no query."""

    needs = frozenset({"model"})

    param_bounds = {"exact_limit": (1, 10_000_000), "beam": (1, 10_000), "max_values": (2, 10_000)}  # checked at validate (strategies/params.py)

    def __init__(self, problem, rng, *, exact_limit: int = 200_000, beam: int = 40, max_values: int = 128, **params):
        super().__init__(problem, rng, **params)  # unknown parameters: ScenarioError
        self.exact_limit, self.beam, self.max_values = int(exact_limit), int(beam), int(max_values)
        self.seen = Seen()
        self.seen.add(self._X0)
        self.model = problem.model
        self.front_X = np.empty((0, self.d))
        self.front_s = np.empty(0)
        self.thr_lo, self.thr_hi = -np.inf, np.inf  # evading below thr_lo for sure, declined from thr_hi on
        self.method = ""
        if self.model is not None and len(self.mutable_idx):
            self._search()

    # -- offline search ---------------------------------------------------------------------------------------------
    def _score(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict_score(X), np.float64)

    def _regions(self) -> dict[int, np.ndarray]:
        """Per mutable feature: one cheapest valid value per region the reachable splits cut its range into."""
        sa, x0 = self.problem.schema, self.x0
        splits = reachable_splits(self.model, x0, sa.mutable)
        out: dict[int, np.ndarray] = {}
        for jj in self.mutable_idx:
            j = int(jj)
            mine = [s for s in splits if s.feature == j]
            if sa.kind[j] == CATEGORICAL:
                vals = sa.categories[j, : sa.n_categories[j]]
            elif sa.kind[j] == BINARY:
                vals = np.array([0.0, 1.0])
            else:
                cuts: list[float] = []
                for s in mine:
                    if s.categories:
                        cuts.extend(s.categories)
                        continue
                    t = s.threshold
                    if s.strict:  # x < t goes left: t itself is the first value on the right
                        below = float(np.nextafter(np.float32(t), np.float32(-np.inf)))
                        cuts.extend([below, t])
                    else:
                        cuts.extend([t, float(np.nextafter(np.float32(t), np.float32(np.inf)))])
                vals = np.array(cuts + [sa.lo[j], sa.hi[j]], np.float64)
            X = np.repeat(x0[None, :], len(vals) + 1, axis=0)
            X[1:, j] = vals
            X = project_rows(self.problem, X)
            v = np.unique(X[:, j])
            # the region of a value: which side of every reachable threshold it falls on
            thr = np.array(sorted({s.threshold for s in mine if not s.categories}), np.float32)
            region: np.ndarray
            if sa.kind[j] == CATEGORICAL or not len(thr):
                region = v if sa.kind[j] == CATEGORICAL else np.zeros(len(v))
            else:
                v32 = v.astype(np.float32)
                strict = mine[0].strict
                region = np.searchsorted(thr, v32, side="right" if strict else "left")
            cost = np.abs(v - x0[j])
            keep: dict[float, tuple[float, float]] = {}  # region -> (cheapest value, its cost)
            for val, r, c in zip(v, region, cost):
                if r not in keep or c < keep[r][1]:
                    keep[r] = (val, c)
            reps = np.array(sorted((val for val, _ in keep.values()), key=lambda val: abs(val - x0[j])))
            out[j] = reps[: self.max_values]
        return out

    def _search(self) -> None:
        regions = self._regions()
        feats = [j for j in regions if len(regions[j]) > 1]
        if not feats:
            return
        sizes = [len(regions[j]) for j in feats]
        if np.prod(np.array(sizes, dtype=float)) <= self.exact_limit:
            self.method = "exact"
            grids = np.meshgrid(*[regions[j] for j in feats], indexing="ij")
            X = np.repeat(self._X0, grids[0].size, axis=0)
            for j, g in zip(feats, grids):
                X[:, j] = g.ravel()
            X = project_rows(self.problem, X)  # relations between features may move some values
            S = np.concatenate([self._score(X[i : i + 50_000]) for i in range(0, len(X), 50_000)])
        else:
            self.method = "beam"
            X, S = self._beam(regions, feats)
        C = cost_rows(self.problem, X)
        order = np.lexsort((S, C))
        C, S, X = C[order], S[order], X[order]
        on_front = S < np.minimum.accumulate(np.r_[np.inf, S[:-1]])  # lower score than every cheaper point
        self.front_X, self.front_s, self.front_c = X[on_front], S[on_front], C[on_front]
        A = self.problem.approved_examples
        if A is not None and len(A):  # every approved example scored below the threshold
            self.thr_lo = float(self._score(np.asarray(A, np.float64)).max())

    def _beam(self, regions: dict[int, np.ndarray], feats: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Beam search over 'change one more feature': keep the lowest scores and the best score drop per cost."""
        states = self._X0.copy()
        scores = self._score(states)
        allX, allS = [states], [scores]
        for _ in range(len(feats)):
            kids = []
            for j in feats:
                free = states[:, j] == self.x0[j]
                if not free.any():
                    continue
                base = states[free]
                vals = regions[j][regions[j] != self.x0[j]]
                K = np.repeat(base, len(vals), axis=0)
                K[:, j] = np.tile(vals, len(base))
                kids.append(K)
            if not kids:
                break
            K = np.unique(project_rows(self.problem, np.vstack(kids)), axis=0)
            s = self._score(K)
            allX.append(K)
            allS.append(s)
            c = cost_rows(self.problem, K)
            half = max(self.beam // 2, 1)
            by_score = np.argsort(s, kind="stable")[:half]
            ratio = (s - scores.max()) / np.maximum(c, 1e-9)
            by_ratio = np.argsort(ratio, kind="stable")[:half]
            keep = np.unique(np.r_[by_score, by_ratio])
            states, scores = K[keep], s[keep]
        X, S = np.vstack(allX), np.concatenate(allS)
        X, S = self._tighten(X, S)
        return X, S

    def _tighten(self, X: np.ndarray, S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For the cheapest points at each score level, try undoing each changed feature (offline)."""
        C = cost_rows(self.problem, X)
        order = np.lexsort((S, C))
        front = order[S[order] < np.minimum.accumulate(np.r_[np.inf, S[order][:-1]])]
        rows = []
        for x in X[front]:
            for j in np.flatnonzero(x != self.x0):
                y = x.copy()
                y[j] = self.x0[j]
                rows.append(y)
        if rows:
            R = project_rows(self.problem, np.array(rows))
            X, S = np.vstack([X, R]), np.concatenate([S, self._score(R)])
        return X, S

    # -- protocol --------------------------------------------------------------------------------------------------
    def _plan(self, n: int) -> list[np.ndarray]:
        """The cheapest sure evasion (score below ``thr_lo``) and cheaper front points that bisect the threshold."""
        if not len(self.front_s):
            return []
        out = []
        cheaper = self.front_c < self.best_cost
        sure = np.flatnonzero(cheaper & (self.front_s < self.thr_lo))
        if len(sure):
            out.append(self.front_X[sure[0]])  # front is sorted by cost: the first is the cheapest
        unsure = np.flatnonzero(cheaper & (self.front_s >= self.thr_lo) & (self.front_s < self.thr_hi))
        if len(unsure) and len(out) < n:
            k = min(n - len(out), len(unsure))
            pick = unsure[np.unique(np.linspace(0, len(unsure) - 1, k + 2).round().astype(int))[1:-1]] if len(unsure) > k else unsure
            out.extend(self.front_X[pick])
        return out

    def _ask(self, n: int) -> np.ndarray:
        out = list(self.seen.new(np.array(self._plan(n)).reshape(-1, self.d), n)) if len(self.front_s) else []
        while len(out) < n:  # the front is settled: cheaper random variants of the best evasion, or local moves
            m = n - len(out)
            if self.best_x is not None:
                X = self.pull_back(self.best_x, m)
            else:
                X = self.mutate(np.repeat(self._X0, m, axis=0), step=self.rng.uniform(0.01, 0.5, m), p=0.4)
            new = self.seen.new(X, m)
            out.extend(new if len(new) else X[:m])
        X = np.array(out[:n]).reshape(n, self.d)
        self.seen.add(X)
        return X

    def _tell(self, X: np.ndarray, fb: Feedback) -> None:
        if not len(self.front_s):
            return
        s = self._score(X)  # the attacker's own copy of the model: the same scores the oracle computed
        if fb.evaded.any():
            self.thr_lo = max(self.thr_lo, float(s[fb.evaded].max()) + 1e-12)
        if fb.declined.any():
            self.thr_hi = min(self.thr_hi, float(s[fb.declined].min()))
        if not len(self._plan(1)) and self.best_x is not None:
            self.finished = True  # nothing cheaper can evade according to the model

    def metrics(self) -> dict[str, float]:
        return {"tree_front_size": float(len(self.front_s)), "tree_exact": float(self.method == "exact")}
