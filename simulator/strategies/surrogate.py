"""Model extraction: fit a local LightGBM on the paid queries, attack it offline, spend queries only to confirm."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..kernels import MODE_LOCAL, MODE_UNIFORM
from ..protocol import Feedback
from .base import Opening, Strategy, register
from .greedy import logit
from .moves import CostReducer, Prior, Seen, opening_moves

if TYPE_CHECKING:  # LightGBM is imported when the first surrogate is fitted
    import lightgbm as lgb

LGBM_PARAMS = {"verbose": -1, "num_leaves": 15, "min_data_in_leaf": 3, "learning_rate": 0.2, "num_threads": 1,
               "deterministic": True, "force_row_wise": True, "min_data_in_bin": 1, "feature_pre_filter": False}


@register("surrogate")
class Surrogate(Strategy):
    """Opens with the informed first batch, then fits a LightGBM on every query it has paid for: a regression
    on the log-odds score with ``feedback: score``, a classifier of the decision otherwise (refitted when the
    data grew by ``refit_growth``). Each batch it scores a pool of ``pool`` candidates offline (local moves
    from the best points, fresh redraws, cheaper variants of the best evasion) and asks the oracle only about
    the most promising: the lowest predicted score before the first evasion, then the cheapest predicted
    evasions. ``metrics()`` reports how well the surrogate agrees with the target: on the approved examples and
    on its own queries (predicted before they were asked)."""

    param_bounds = {"pool": (10, 100_000), "refit_growth": (0, 10), "explore": (0, 1)}  # checked at validate (strategies/params.py)

    def __init__(self, problem, rng, *, pool: int = 1500, refit_growth: float = 0.2,
                 explore: float = 0.2, opening: Opening = "typical", **params):
        super().__init__(problem, rng, **params)  # unknown parameters: ScenarioError
        self.pool, self.refit_growth, self.explore = int(pool), float(refit_growth), float(explore)
        self.prior = Prior.from_problem(problem)
        self.opening = self.set_opening(opening_moves(problem, self.prior) if self.check_opening(opening)
                                        else np.empty((0, self.d)))
        self.seen = Seen()
        self.seen.add(self._X0)
        self.reducer = CostReducer(problem)
        self.cols = self.mutable_idx
        self.X_hist: list[np.ndarray] = []
        self.y_hist: list[np.ndarray] = []  # log-odds score, or 1.0 for declined / 0.0 for approved
        self.declined_hist: list[np.ndarray] = []
        self.model: lgb.Booster | None = None
        self.fitted_on = 0
        self.fits = 0
        self.agree = [0, 0]  # decisions predicted right before asking, asked
        self.thr_lo, self.thr_hi = -np.inf, np.inf  # bounds on the threshold's log-odds (score mode)

    # -- the surrogate ----------------------------------------------------------------------------------------------
    @property
    def regression(self) -> bool:
        return self.problem.feedback == "score"

    def _fit(self) -> None:
        import lightgbm as lgb

        X = np.vstack(self.X_hist)[:, self.cols]
        y = np.concatenate(self.y_hist)
        if not self.regression and len(np.unique(y)) < 2:
            return
        params = dict(LGBM_PARAMS, objective="regression" if self.regression else "binary",
                      seed=int(self.rng.integers(2**31 - 1)))
        self.model = lgb.train(params, lgb.Dataset(X, y, params={"verbose": -1}), 60)
        self.fitted_on, self.fits = len(y), self.fits + 1

    def _threshold_margin(self) -> float:
        if np.isfinite(self.thr_lo):
            return self.thr_lo if not np.isfinite(self.thr_hi) else 0.5 * (self.thr_lo + self.thr_hi)
        return -np.inf

    def _predict_declined(self, X: np.ndarray) -> np.ndarray:
        assert self.model is not None  # callers check that a surrogate has been fitted
        p = np.asarray(self.model.predict(X[:, self.cols], num_threads=1))  # an ndarray for dense input
        if self.regression:
            t = self._threshold_margin()
            return p >= t if np.isfinite(t) else np.ones(len(X), bool)
        return p >= 0.5

    def _objective(self, X: np.ndarray) -> np.ndarray:
        """Lower is better: predicted score (or decline probability) before the first evasion; afterwards the
        cost of candidates predicted to evade, ahead of every candidate predicted to be declined."""
        assert self.model is not None  # called only once a surrogate has been fitted
        p = np.asarray(self.model.predict(X[:, self.cols], num_threads=1))  # an ndarray for dense input
        if self.best_x is None:
            return p
        declined = self._predict_declined(X)
        c = self.cost(X)
        # a candidate dearer than the best evasion cannot improve it: after every cheaper one
        return np.where(declined, 1e6 + p, np.where(c < self.best_cost, c, 1e3 + c))

    # -- candidates --------------------------------------------------------------------------------------------
    def _pool(self) -> np.ndarray:
        m = self.pool
        parts = []
        Xh = np.vstack(self.X_hist)
        yh = np.concatenate(self.y_hist)
        elite = Xh[np.argsort(yh, kind="stable")[:8]]
        k = m // 3
        base = elite[self.rng.integers(0, len(elite), k)]
        parts.append(self.mutate(base, step=np.exp(self.rng.uniform(np.log(0.005), np.log(0.3), k)), p=0.3, mode=MODE_LOCAL))
        k2 = m // 6
        parts.append(self.mutate(np.repeat(self._X0, k2, axis=0), step=0.0, p=self.rng.uniform(0.0, 0.7, k2), mode=MODE_UNIFORM))
        if self.best_x is not None:
            parts.append(self.pull_back(self.best_x, m // 4))
            parts.append(self.cheaper_redraws(m // 6, pool=4))
            parts.append(self.mutate(np.repeat(self.best_x[None, :], m // 6, axis=0),
                                     step=np.exp(self.rng.uniform(np.log(0.002), np.log(0.1), m // 6)), p=0.2))
            self.reducer.set_incumbent(self.best_x)
            parts.append(self.reducer.propose(20, Seen()))
        return np.vstack(parts)

    def _ask(self, n: int) -> np.ndarray:
        out: list[np.ndarray] = []
        if self.n_told == 0:
            out.extend(self.seen.new(self.opening, n))
        elif len(self.X_hist) and self.fitted_on and len(np.concatenate(self.y_hist)) >= self.fitted_on * (1 + self.refit_growth):
            self._fit()
        elif self.model is None and len(self.X_hist):
            self._fit()
        if len(out) < n and self.model is not None:
            P = self._pool()
            f = self._objective(P)
            order = np.argsort(f, kind="stable")
            n_exploit = n - len(out) - int(round(self.explore * (n - len(out))))
            picks = self.seen.new(P[order], n_exploit)
            out.extend(picks)
            self.seen.add(picks)
            rest = n - len(out)
            if rest > 0:  # explore: random picks among the better half of the pool
                half = order[: max(len(order) // 2, rest)]
                out.extend(self.seen.new(P[self.rng.permutation(half)], rest))
        while len(out) < n:
            m = n - len(out)
            base = self.best_x if self.best_x is not None else self.lowest_score_x
            if self.model is None and not len(self.opening):  # no opening: a first sample spread over the space
                X = self.mutate(np.repeat(self._X0, m, axis=0), step=0.0, p=self.rng.uniform(0.0, 0.7, m), mode=MODE_UNIFORM)
            else:
                X = self.mutate(np.repeat(base[None, :], m, axis=0), step=self.rng.uniform(0.01, 0.3, m), p=0.3)
            new = self.seen.new(X, m)
            out.extend(new if len(new) else X)
        X = np.array(out[:n]).reshape(n, self.d)
        self.seen.add(X)
        return X

    def _tell(self, X: np.ndarray, fb: Feedback) -> None:
        if self.model is not None:
            pred = self._predict_declined(X)
            self.agree[0] += int((pred == fb.declined).sum())
            self.agree[1] += len(X)
        self.X_hist.append(X.copy())
        self.declined_hist.append(fb.declined.copy())
        if self.regression:
            assert fb.score is not None  # regression means feedback: score
            m = logit(fb.score)
            self.y_hist.append(m)
            if fb.evaded.any():
                self.thr_lo = max(self.thr_lo, float(m[fb.evaded].max()))
            if fb.declined.any():
                self.thr_hi = min(self.thr_hi, float(m[fb.declined].min()))
        else:
            self.y_hist.append(fb.declined.astype(np.float64))
        if self.best_x is not None:
            self.reducer.set_incumbent(self.best_x)

    def metrics(self) -> dict[str, float]:
        out = {"surrogate_fits": float(self.fits), "surrogate_training_rows": float(sum(len(y) for y in self.y_hist))}
        if self.agree[1]:
            out["agreement_on_queries"] = self.agree[0] / self.agree[1]
        A = self.problem.approved_examples
        if self.model is not None and A is not None and len(A) and (not self.regression or np.isfinite(self._threshold_margin())):
            out["agreement_on_approved"] = float((~self._predict_declined(np.asarray(A, np.float64))).mean())
        return out
