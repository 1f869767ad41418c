"""A (mu + lambda) evolutionary search with step-size adaptation, then cost reduction after the first evasion."""
from __future__ import annotations

import numpy as np

from ..kernels import MODE_UNIFORM
from ..protocol import Feedback
from .base import Opening, Strategy, register
from .moves import Prior, opening_moves


@register("evolutionary")
class Evolutionary(Strategy):
    """Keeps an elite of the fittest candidates seen, breeds local mutations of them (each mutable feature moves
    with probability ``p``, continuous steps scaled by an adaptive ``step``), and widens the step after a success,
    narrows it after a failure (a 1/5th-rule in spirit). Fitness is the score until a candidate evades; evading
    candidates are ranked by cost, and half of each later batch pulls the cheapest evasion back towards the
    original. The first batch is the informed opening (:func:`simulator.strategies.moves.opening_moves`), so the
    first elite is built from real, diverse moves rather than from the original alone."""

    needs = frozenset({"score"})

    param_bounds = {"elite": (1, 1000), "step": (0, 10), "p": (0, 1)}  # checked at validate (strategies/params.py)

    def __init__(self, problem, rng, *, elite: int = 6, step: float = 0.08, p: float = 0.3,
                 opening: Opening = "typical", **params):
        super().__init__(problem, rng, **params)  # unknown parameters: ScenarioError
        self.elite_size, self.step, self.p = elite, step, p
        self.opening = self.set_opening(opening_moves(problem, Prior.from_problem(problem)) if self.check_opening(opening)
                                        else np.empty((0, self.d)))
        self.elite_X = self._X0.copy()
        self.elite_f = np.array([np.inf])

    def _fitness(self, X: np.ndarray, fb: Feedback) -> np.ndarray:
        assert fb.score is not None  # needs = {"score"}: the scenario is checked to give scores
        c = self.cost(X)
        return np.where(fb.evaded, -2.0 + c / (1.0 + c), fb.score)

    def _ask(self, n: int) -> np.ndarray:
        if self.n_told == 0:
            opening = self.opening[:n]
            if len(opening) == n:
                return opening
            m = n - len(opening)
            if not len(opening):  # no opening: the first elite comes from redraws spread over the allowed space
                return self.mutate(np.repeat(self._X0, m, axis=0), step=0.0, p=self.rng.uniform(0.0, 0.6, m),
                                   mode=MODE_UNIFORM)
            return np.vstack([opening, self.mutate(np.repeat(self._X0, m, axis=0), step=self.step, p=self.p)])
        if self.best_x is not None:
            n_back = n // 2
            back = self.pull_back(self.best_x, n_back)
        else:
            n_back, back = 0, np.empty((0, self.d))
        m = n - n_back
        # tournament of two over the elite: fitter parents breed more often
        a, b = self.rng.integers(0, len(self.elite_f), (2, m))
        parents = self.elite_X[np.where(self.elite_f[a] <= self.elite_f[b], a, b)]
        steps = self.step * np.exp(self.rng.normal(0.0, 0.5, m))  # log-normal spread around the current step
        return np.vstack([back, self.mutate(parents, step=steps, p=self.p)])

    def _tell(self, X: np.ndarray, fb: Feedback) -> None:
        f = self._fitness(X, fb)
        improved = f.min() < self.elite_f.min()
        self.step = float(np.clip(self.step * (1.5 if improved else 0.85), 0.005, 0.5))
        allX = np.vstack([self.elite_X, X])
        allf = np.concatenate([self.elite_f, f])
        _, first = np.unique(allX, axis=0, return_index=True)  # no duplicate elites
        first = first[np.argsort(allf[first], kind="stable")][: self.elite_size]
        self.elite_X, self.elite_f = allX[first], allf[first]
