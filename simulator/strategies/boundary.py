"""Label-only boundary attack in the spirit of HopSkipJump, for ``feedback: decision``."""
from __future__ import annotations

import numpy as np

from ..kernels import MODE_UNIFORM
from ..kernels.reference import CONTINUOUS, INTEGER
from ..protocol import Feedback
from .base import Opening, Strategy, register
from .moves import CostReducer, Prior, Seen, cost_rows, project_rows, unique_rows


@register("boundary")
class Boundary(Strategy):
    """Needs only the decision. Starts from points the model approves, taken from what the attacker has seen
    approved (``Problem.approved_examples`` projected onto this target's rules, the typical one and the cheapest
    first); bisects the segment from the original to the cheapest approved start (a batch of points per step)
    to land on the decision boundary; then walks along the boundary towards the original: reverting or
    bisecting one feature at a time, and, when that stalls, a HopSkipJump step (estimate the boundary's normal
    from the decisions on random probes around the boundary point, step along it into the approved side, bisect
    back towards the original). Every candidate is projected onto the constraints."""

    batch_size = 10

    param_bounds = {"tol": (1e-6, 1), "probe_step": (1e-6, 1), "max_starts": (1, 100_000), "explore": (0, 1)}  # checked at validate (strategies/params.py)

    def __init__(self, problem, rng, *, tol: float = 0.1, probe_step: float = 0.02, max_starts: int = 200,
                 explore: float = 0.8, opening: Opening = "typical", **params):
        super().__init__(problem, rng, **params)  # unknown parameters: ScenarioError
        play_opening = self.check_opening(opening)
        self.explore = float(explore)
        self.tol, self.probe_step = float(tol), float(probe_step)
        self.prior = Prior.from_problem(problem)
        self.seen = Seen()
        self.seen.add(self._X0)
        self.reducer = CostReducer(problem)
        # the opening: approved-looking starts; without it, random redraws until one is approved (as HopSkipJump)
        self.starts = self.set_opening(self._start_points(int(max_starts)) if play_opening else np.empty((0, self.d)))
        self.phase = "start"
        self.line: tuple[np.ndarray, float, float] | None = None  # (approved end, declined t, approved t)
        self.probe_base: np.ndarray | None = None
        self.grad: np.ndarray | None = None
        self.grad_rounds = 0
        self.stalls = 0
        self.inc: np.ndarray | None = None  # the walk's incumbent (the run's best is ``best_x``)
        self.spare: list[np.ndarray] = []
        self._tags: list[tuple[str, float]] = []
        sa = problem.schema
        self.numeric = np.flatnonzero(sa.mutable & ((sa.kind == CONTINUOUS) | (sa.kind == INTEGER)) & (sa.hi > sa.lo))
        self.scale = np.where(sa.hi > sa.lo, sa.hi - sa.lo, 1.0)

    def _start_points(self, k: int) -> np.ndarray:
        rows = [self.prior.typical[None, :]]
        A = self.problem.approved_examples
        if A is not None and len(A):
            P = unique_rows(project_rows(self.problem, np.asarray(A[:2000], np.float64)))
            rows.append(P[np.argsort(cost_rows(self.problem, P), kind="stable")[:k]])
        X = unique_rows(np.vstack(rows)) if len(rows) > 1 else rows[0]
        order = np.r_[0, 1 + np.argsort(cost_rows(self.problem, X[1:]), kind="stable")] if len(X) > 1 else [0]
        X = X[order]
        return X[(X != self.x0).any(axis=1)]

    # -- candidate makers ----------------------------------------------------------------------------------------
    def _segment(self, xa: np.ndarray, ts: np.ndarray) -> np.ndarray:
        return project_rows(self.problem, self.x0[None, :] + ts[:, None] * (xa - self.x0)[None, :])

    def _line_batch(self, n: int) -> list[tuple[np.ndarray, tuple[str, float]]]:
        assert self.line is not None  # _start_line sets it before the phase becomes "line"
        xa, lo, hi = self.line
        ts = lo + (hi - lo) * np.arange(1, n + 1) / (n + 1)
        X = self._segment(xa, ts)
        out: list[tuple[np.ndarray, tuple[str, float]]] = []
        for x, t in zip(X, ts):
            if x not in self.seen and not any(np.array_equal(x, o[0]) for o in out):
                out.append((x, ("line", float(t))))
        return out

    def _probes(self, n: int) -> list[tuple[np.ndarray, tuple[str, float]]]:
        """Random small moves of the numeric features around the boundary point (HopSkipJump's estimate of the
        boundary normal); discrete features stay as they are."""
        base = self.probe_base
        assert base is not None  # set with the phase "probe"
        U = np.zeros((n, self.d))
        U[:, self.numeric] = self.rng.standard_normal((n, len(self.numeric)))
        U /= np.maximum(np.linalg.norm(U, axis=1, keepdims=True), 1e-12)
        X = project_rows(self.problem, base[None, :] + self.probe_step * U * self.scale[None, :])
        self._probe_dirs = (X - base[None, :]) / self.scale[None, :]
        return [(x, ("probe", float(i))) for i, x in enumerate(X)]

    def _steps(self, n: int) -> list[tuple[np.ndarray, tuple[str, float]]]:
        """Points along the estimated normal into the approved side, at geometrically spaced distances."""
        base, g = self.probe_base, self.grad
        assert base is not None and g is not None  # set by the "probe" phase before the phase becomes "step"
        dist = max(float(np.abs((base - self.x0) / self.scale).sum()), 0.05)
        eps = dist * np.geomspace(0.05, 1.0, n) / np.sqrt(1 + self.grad_rounds)
        X = project_rows(self.problem, base[None, :] + eps[:, None] * (g * self.scale)[None, :])
        return [(x, ("step", float(e))) for x, e in zip(X, eps) if x not in self.seen]

    # -- protocol ----------------------------------------------------------------------------------------------
    def _ask(self, n: int) -> np.ndarray:
        plan: list[tuple[np.ndarray, tuple[str, float]]] = []
        if self.phase == "start":
            plan = [(x, ("start", 0.0)) for x in self.seen.new(self.starts, n)]
        elif self.phase == "line":
            plan = self._line_batch(n)
        elif self.phase == "probe":
            plan = self._probes(n)
        elif self.phase == "step":
            plan = self._steps(n)
        elif self.phase == "walk":
            assert self.inc is not None  # _start_line sets it before any phase that leads to "walk"
            self.reducer.set_incumbent(self.inc)
            plan = [(x, ("reduce", 0.0)) for x in self.reducer.propose(n, self.seen)]
        # a share of every batch explores: random redraws cheaper than the best evasion (new starts for the walk)
        k = int(round(self.explore * n)) if self.best_x is not None else 0
        plan = plan[: n - k]
        plan += [(x, ("explore", 0.0)) for x in self.seen.new(self.cheaper_redraws(n - len(plan)), n - len(plan))]
        while len(plan) < n:  # fill: cheaper random variants of the best evasion, or random redraws
            m = n - len(plan)
            if self.best_x is not None:
                X = self.pull_back(self.best_x, m)
                if self.rng.random() < 0.5:
                    X = np.vstack([self.cheaper_redraws(m), X])
            else:
                X = self.mutate(np.repeat(self._X0, m, axis=0), step=0.0, p=self.rng.uniform(0.0, 0.6, m),
                                mode=MODE_UNIFORM)
            new = self.seen.new(X, m)
            if not len(new):
                new = X
            plan += [(x, ("fill", 0.0)) for x in new[:m]]
        X = np.array([p[0] for p in plan]).reshape(n, self.d)
        self._tags = [p[1] for p in plan]
        self.seen.add(X)
        return X

    def _start_line(self, xa: np.ndarray) -> None:
        self.line, self.phase = (xa.copy(), 0.0, 1.0), "line"
        self.inc = xa.copy()

    def _tell(self, X: np.ndarray, fb: Feedback) -> None:
        ok = fb.evaded
        tags = self._tags if len(self._tags) == len(X) else [("fill", 0.0)] * len(X)
        self._tags = []
        kinds = [t[0] for t in tags]
        if "reduce" in kinds:
            self.reducer.update(X, ok)
        if ok.any() and self.inc is not None:  # the walk's own incumbent: the cheapest evasion on this start's path
            c = self.cost(X[ok])
            if c.min() < self.cost(self.inc[None, :])[0]:
                self.inc = X[ok][int(np.argmin(c))].copy()
        if self.phase == "start":
            found = [i for i, k in enumerate(kinds) if k in ("start", "fill", "explore") and ok[i]]
            if found:
                order = sorted(found, key=lambda i: self.cost(X[i : i + 1])[0])
                self.spare = [X[i].copy() for i in order[1:]]  # other approved starts, for restarts
                self._start_line(X[order[0]])
            elif not len(self.seen.new(self.starts, 1)):
                self.phase = "fill"
        elif self.phase == "fill" and ok.any():
            self._start_line(X[int(np.argmin(np.where(ok, self.cost(X), np.inf)))])
        elif self.phase == "line":
            assert self.line is not None  # _start_line sets it before the phase becomes "line"
            xa, lo, hi = self.line
            ts = np.array([t[1] for t in tags])
            is_line = np.array([k == "line" for k in kinds])
            if (is_line & ok).any():
                hi = float(ts[is_line & ok].min())
            below = is_line & ~ok & (ts < hi)
            if below.any():
                lo = float(ts[below].max())
            self.line = (xa, lo, hi)
            if hi - lo <= self.tol or not is_line.any():
                self.phase = "walk"
        elif self.phase == "probe":
            phi = np.where(ok, 1.0, -1.0)
            dirs = self._probe_dirs[: len(phi)]
            g = ((phi - phi.mean())[:, None] * dirs).sum(axis=0) if phi.std() > 0 else (phi[:, None] * dirs).sum(axis=0)
            norm = np.linalg.norm(g)
            if norm > 0:
                self.grad, self.phase = g / norm, "step"
            else:
                self.phase, self.stalls = "stalled", self.stalls + 1
        elif self.phase == "step":
            self.grad_rounds += 1
            hit = [i for i, k in enumerate(kinds) if k == "step" and ok[i]]
            if hit:
                inc = self.inc
                self._start_line(X[hit[0]])
                self.inc = inc
            else:
                self.phase, self.stalls = "stalled", self.stalls + 1
        if self.phase == "walk" and self.inc is not None:
            self.reducer.set_incumbent(self.inc)
            if not len(self.reducer.propose(1, self.seen)):
                self.phase = "stalled"
        if self.phase == "stalled":  # the coordinate walk is stuck: a HopSkipJump step, then another start
            if self.stalls % 2 == 0 and len(self.numeric) and self.stalls < 40:
                assert self.inc is not None  # only phases after _start_line stall
                self.probe_base, self.phase = self.inc.copy(), "probe"
            elif self.spare:
                self._start_line(self.spare.pop(0))
                self.stalls += 1
            elif len(self.numeric) and self.stalls < 40:
                assert self.inc is not None  # only phases after _start_line stall
                self.probe_base, self.phase = self.inc.copy(), "probe"
                self.stalls += 1
            else:
                self.phase = "done"  # only random cheaper variants of the best are left
