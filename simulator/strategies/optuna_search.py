"""Optuna's samplers (TPE, CMA-ES, NSGA-II, random) driven through its ask/tell interface, one study per target."""
from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np

from ..errors import ScenarioError
from ..kernels.reference import BINARY, CATEGORICAL, CONTINUOUS, INTEGER
from ..protocol import Feedback
from .base import Opening, Strategy, register
from .moves import Prior, allowed_range, opening_moves, project_rows

Sampler = Literal["tpe", "cmaes", "nsga2", "random"]
SAMPLERS = ("tpe", "cmaes", "nsga2", "random")


def _make_sampler(name: str, seed: int, *, startup: int = 10, multivariate: bool = False, sigma0: float | None = None,
                  population: int = 20):
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True,
                                          multivariate=multivariate)
    if name == "cmaes":
        try:
            import cmaes  # noqa: F401  (Optuna's CMA-ES sampler needs it)
        except ImportError:
            raise ScenarioError("sampler 'cmaes' needs the cmaes package (pip install cmaes)",
                                field="attack.params.optuna.sampler") from None
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False, n_startup_trials=startup,
                                            sigma0=sigma0)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=population)
    return optuna.samplers.RandomSampler(seed=seed)


@register("optuna")
class OptunaSearch(Strategy):
    """One Optuna study per target over the mutable features (floats, integers, categories; a feature whose
    value falls within ``deadzone`` of the original's is left unchanged, so zero-cost coordinates are reachable).
    Single-objective samplers (``tpe``, ``cmaes``, ``random``) minimise the score until a candidate evades and
    rank evading candidates by cost below every declined one; ``nsga2`` keeps the two objectives apart: the
    score above the threshold (0 once evading) and the cost. The informed opening batch is enqueued as the
    first trials (``opening: typical``; ``none`` leaves it out). TPE's cost grows with the history, so its study
    is rebuilt from the best and latest
    ``window`` trials when it grows past that. Samplers cost milliseconds per trial, so a study stops once its
    best evasion has not become cheaper for ``patience`` trials (0: spend the whole budget)."""

    needs = frozenset({"score"})

    param_bounds = {"deadzone": (0, 1), "window": (1, 100_000), "patience": (1, 1_000_000), "startup": (0, 100_000), "population": (2, 10_000), "sigma0": (1e-6, 10), "local": (0, 1), "skip_dearer": (0, 1_000_000)}  # checked at validate (strategies/params.py)

    def __init__(self, problem, rng, *, sampler: Literal["tpe", "cmaes", "nsga2", "random"] = "tpe",
                 deadzone: float = 0.002, window: int = 60, opening: Opening = "typical", patience: int = 300,
                 startup: int = 10, multivariate: bool = True, sigma0: float | None = None, population: int = 20,
                 skip_dearer: int = 0, local: float = 0.6, **params):
        super().__init__(problem, rng, **params)  # unknown parameters: ScenarioError
        import optuna

        self.sampler_options = dict(startup=int(startup), multivariate=bool(multivariate),
                                    sigma0=None if sigma0 is None else float(sigma0), population=int(population))
        self.skip_dearer, self.local = int(skip_dearer), float(local)

        if sampler not in SAMPLERS:
            raise ScenarioError(f"unknown optuna sampler {sampler!r}; use one of {', '.join(SAMPLERS)}",
                                field="attack.params.optuna.sampler")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.sampler_name, self.deadzone, self.window = sampler, float(deadzone), int(window)
        self.seed = int(rng.integers(2**31 - 1))
        self.multi = sampler == "nsga2"
        self.space = self._space()
        self.study = self._new_study()
        self._pending: list = []
        self._since_rebuild = 0
        self.patience, self._last_best, self._stale = int(patience), np.inf, 0
        if self.check_opening(opening) and self.space:
            moves = opening_moves(problem, Prior.from_problem(problem))[:40]
            self.set_opening(project_rows(problem, np.array([self._point(self._params_of(x)) for x in moves])))
            for x in moves:
                self.study.enqueue_trial(self._params_of(x), skip_if_exists=True)

    # -- search space ----------------------------------------------------------------------------------------------
    def _space(self) -> dict:
        from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

        sa, x0 = self.problem.schema, self.x0
        a, b = allowed_range(sa, x0)
        space: dict[str, BaseDistribution] = {}
        for j in self.mutable_idx:
            k, name = sa.kind[j], f"f{j}"
            if k == CONTINUOUS and b[j] > a[j]:
                space[name] = FloatDistribution(float(a[j]), float(b[j]))
            elif k == INTEGER and b[j] > a[j]:
                space[name] = IntDistribution(int(np.ceil(a[j])), int(np.floor(b[j])))
            elif k == BINARY and sa.direction[j] * (1 - 2 * x0[j]) >= 0:  # the flip is allowed
                space[name] = IntDistribution(0, 1)
            elif k == CATEGORICAL and sa.n_categories[j] > 1:
                space[name] = CategoricalDistribution([float(c) for c in sa.categories[j, : sa.n_categories[j]]])
        return space

    def _new_study(self):
        import optuna

        sampler = _make_sampler(self.sampler_name, self.seed, **self.sampler_options)
        if self.multi:
            return optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
        return optuna.create_study(direction="minimize", sampler=sampler)

    def _params_of(self, x: np.ndarray) -> dict:
        out = {}
        for name, dist in self.space.items():
            v = x[int(name[1:])]
            out[name] = int(round(v)) if type(dist).__name__ == "IntDistribution" else float(v)
        return out

    def _point(self, params: dict) -> np.ndarray:
        sa = self.problem.schema
        x = self.x0.copy()
        for name, v in params.items():
            j = int(name[1:])
            v = float(v)
            if sa.kind[j] in (CONTINUOUS, INTEGER) and abs(v - self.x0[j]) <= self.deadzone * (sa.hi[j] - sa.lo[j]):
                v = self.x0[j]
            x[j] = v
        return x

    # -- protocol ----------------------------------------------------------------------------------------------------
    def _ask(self, n: int) -> np.ndarray:
        """``n`` rows: trials the sampler proposes and, once something evades, a ``local`` share of cheaper
        variants of the best evasion (added to the study as finished trials after their feedback, which costs the
        sampler nothing). A proposed trial dearer than the best evasion cannot improve it: up to ``skip_dearer``
        times per row the study is told, without a query, the best value it could have had, and asked again."""
        rows, self._pending = [], []
        k_local = int(round(self.local * n)) if self.best_x is not None else 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(n - k_local):
                for attempt in range(self.skip_dearer + 1):
                    trial = self.study.ask(self.space)
                    x = project_rows(self.problem, self._point(trial.params))[0]
                    if self.best_x is None or attempt == self.skip_dearer:
                        break
                    c = float(self.cost(x[None, :])[0])
                    if c < self.best_cost:
                        break
                    self.study.tell(trial, [0.0, c] if self.multi else -1.0 + c / (1.0 + c))
                self._pending.append(trial)
                rows.append(x)
        if k_local:
            best_x = self.best_x
            assert best_x is not None  # k_local > 0 only once something evaded
            third = k_local // 3
            near = self.mutate(np.repeat(best_x[None, :], 20 * third, axis=0),
                               step=np.exp(self.rng.uniform(np.log(0.002), np.log(0.1), 20 * third)), p=0.3)
            near = near[self.cost(near) < self.best_cost][:third] if third else near[:0]
            local = np.vstack([near, self.cheaper_redraws(third), self.pull_back(best_x, k_local - 2 * third)])
            while len(local) < k_local:
                local = np.vstack([local, self.pull_back(best_x, k_local - len(local))])
            rows.extend(local[:k_local])
            self._pending.extend([None] * k_local)
        return np.array(rows).reshape(n, self.d)

    def _tell(self, X: np.ndarray, fb: Feedback) -> None:
        import optuna

        if len(self._pending) != len(X):  # told rows it did not ask: nothing to give the study
            return
        assert fb.score is not None  # needs = {"score"}: the scenario is checked to give scores
        cost = self.cost(X)
        declined = fb.declined
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for trial, x, s, dec, c in zip(self._pending, X, fb.score, declined, cost):
                value = [float(s) if dec else 0.0, float(c)] if self.multi else \
                    (float(s) if dec else -1.0 + float(c) / (1.0 + float(c)))
                if trial is not None:
                    self.study.tell(trial, value)
                elif self.space:  # a local row: the study learns from it as from its own trials
                    params = self._params_of(x)
                    objective: dict[str, Any] = {"values": value} if self.multi else {"value": value}
                    self.study.add_trial(optuna.trial.create_trial(
                        params=params, distributions={k: self.space[k] for k in params}, **objective))
        self._pending = []
        if self.best_x is not None:
            improved = self.best_cost < self._last_best * (1 - 1e-3)
            self._stale = 0 if improved else self._stale + len(X)
            self._last_best = min(self._last_best, self.best_cost)
            if self.patience and self._stale >= self.patience:
                self.finished = True
        self._since_rebuild += len(X)
        if self.sampler_name == "tpe" and self._since_rebuild >= self.window:
            self._since_rebuild = 0
            done = self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            best = sorted(done, key=lambda t: t.value)[: self.window // 2]
            kept = {t.number for t in best}
            latest = [t for t in done[-self.window // 2 :] if t.number not in kept]
            self.study = self._new_study()
            self.study.add_trials(best + latest)
