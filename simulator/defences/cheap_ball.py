"""Cheap-ball augmentation: every fraud training row, replicated with random moves an attacker could make cheaply,
labelled fraud.

The attacks fraudsim measures look for an evasion within the *cheap ball* of a caught fraud: the candidates whose
cost (the schema's cost weights, the same :func:`~simulator.kernels.reference.cost` the measure uses) is at most
``max_cost`` (``1``: what "cheap success" counts). Adversarial training (:mod:`.adversarial`) shows the model the
few points a strategy happened to find; this shows it the whole ball, before any attack runs: for each fraud row,
``copies`` random points of its ball join the training data as fraud (robust training by data augmentation, the
tree-ensemble analogue of training on the worst case in a norm ball: Chen et al. 2019, Vos & Verwer's GROOT,
Calzavara et al.'s Treant, all of which fit trees so that a whole threat-model neighbourhood gets one label).

Each copy draws a budget ``u ~ U(0, max_cost)`` and picks each mutable feature with probability ``active`` (at
least one: a single-feature move is what a greedy search makes first). Picked binary and categorical features are
moved at their flat cost (dropped when together they exceed ``u``), the rest of the budget is split at random
(Dirichlet) over the picked numeric features. A numeric feature then moves
either towards the value of a random legitimate training row (share ``mimic``: the attacker's move, copying what
approved traffic looks like; half of these stop part of the way, where a search that walks an evasion back towards
the original ends) or in a random allowed direction, at most as far as its share of the budget buys. The
copies are projected onto the feature constraints (bounds, integers, directions, frozen features) and any copy
that ends above ``max_cost`` is dropped. Then the base model is retrained on the training data plus the copies.

With ``rounds`` > 0 adversarial-training rounds follow on the augmented data (the evasions a strategy still finds,
added as fraud; see :mod:`.adversarial`).

Relations between features (derived features) are not replayed on the copies: derived features keep the
original's value.
"""
from __future__ import annotations

import numpy as np

from ..schema import Kind
from . import register_defence
from .adversarial import _AdversarialRounds


def cheap_ball_sample(X: np.ndarray, X_legit: np.ndarray, sa, *, copies: int, max_cost: float, active: float,
                      mimic: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``copies`` random points of each row's cheap ball (cost at most ``max_cost``); returns the points and the
    index of the row each came from."""
    from ..kernels import get_kernels

    n, d = X.shape
    origin = np.repeat(np.arange(n), copies)
    m = len(origin)
    X0 = X[origin]
    P = X0.copy()
    mut = np.asarray(sa.mutable, dtype=bool)
    kind = np.asarray(sa.kind)
    numeric = mut & np.isin(kind, [int(Kind.CONTINUOUS), int(Kind.INTEGER)])
    flat = mut & ~numeric
    w = np.asarray(sa.cost, dtype=np.float64)
    span = np.where(np.asarray(sa.hi) > np.asarray(sa.lo), np.asarray(sa.hi) - np.asarray(sa.lo), 1.0)
    direction = np.asarray(sa.direction)
    u = rng.random(m) * max_cost
    L = X_legit[rng.integers(0, len(X_legit), m)] if len(X_legit) else X0
    # flat features: copy the legitimate row's value (mimic) or any allowed value, at the feature's whole cost
    chosen = (rng.random((m, d)) < active) & mut[None, :]
    if mut.any():  # every copy moves at least one feature: one picked at random where the draw picked none
        none = ~chosen.any(axis=1)
        mut_idx = np.flatnonzero(mut)
        chosen[np.flatnonzero(none), mut_idx[rng.integers(0, len(mut_idx), int(none.sum()))]] = True
    pick = chosen & flat[None, :]
    flat_cost = (pick * w[None, :]).sum(axis=1)
    pick[flat_cost > u] = False
    flat_cost = (pick * w[None, :]).sum(axis=1)
    for j in np.flatnonzero(flat):
        rows = np.flatnonzero(pick[:, j])
        if len(rows) == 0:
            continue
        if kind[j] == int(Kind.BINARY):
            new = 1.0 - X0[rows, j]
        else:
            k = int(sa.n_categories[j])
            new = np.asarray(sa.categories)[j, rng.integers(0, max(k, 1), len(rows))]
        use_legit = rng.random(len(rows)) < mimic
        new = np.where(use_legit & np.isfinite(L[rows, j]), L[rows, j], new)
        P[rows, j] = new
    # numeric features: the rest of the budget, split at random over the picked ones
    npick = chosen & numeric[None, :]
    g = rng.exponential(1.0, (m, d)) * npick
    tot = g.sum(axis=1, keepdims=True)
    share = np.divide(g, tot, out=np.zeros_like(g), where=tot > 0)
    budget = share * np.maximum(u - flat_cost, 0.0)[:, None]
    free = w <= 0
    reach = np.where(free[None, :], span[None, :], budget / np.where(free, 1.0, w)[None, :] * span[None, :])
    toward = L - X0
    sign = np.where(direction[None, :] == 1, 1.0, np.where(direction[None, :] == -1, -1.0,
                                                                 rng.choice([-1.0, 1.0], (m, d))))
    rand_move = sign * reach * rng.random((m, d))
    # half the mimic moves go part of the way (a search walking an evasion back towards the original stops there)
    part = np.where(rng.random((m, 1)) < 0.5, 1.0, rng.random((m, d)))
    mimic_move = np.clip(np.where(np.isfinite(toward), toward, 0.0) * part, -reach, reach)
    move = np.where(rng.random((m, 1)) < mimic, mimic_move, rand_move)
    P = np.where(npick, P + move, P)
    K = get_kernels("cpu")
    P = K.project(np.ascontiguousarray(P), np.ascontiguousarray(X), origin, sa)
    ok = K.cost(P, np.ascontiguousarray(X), origin, sa) <= max_cost + 1e-9
    return P[ok], origin[ok]


@register_defence("cheap_ball")
class CheapBall(_AdversarialRounds):
    """Fraud rows replicated at random points of their cheap ball, labelled fraud; optional adversarial rounds."""

    min_rounds = 0

    def __init__(self, *, copies: int = 8, max_cost: float = 1.0, active: float = 0.5, mimic: float = 0.5,
                 rounds: int = 0, targets: int = 150, per_target: int = 3, weight: int = 1, budget: int | None = 100,
                 strategies: list[str] | None = None, evasion_cost: float | None = 1.0, monotone: bool = False):
        if copies < 1:
            raise ValueError("copies must be >= 1")
        if not 0 < max_cost:
            raise ValueError("max_cost must be > 0")
        if not (0 < active <= 1 and 0 <= mimic <= 1):
            raise ValueError("active must be in (0, 1] and mimic in [0, 1]")
        super().__init__(rounds=rounds, targets=targets, per_target=per_target, weight=weight, budget=budget,
                         strategies=strategies, max_cost=evasion_cost, monotone=monotone)
        self.copies, self.ball_cost, self.active, self.mimic = int(copies), float(max_cost), float(active), float(mimic)

    def augment(self, ctx, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
        rng = np.random.default_rng(ctx.seed + 4242)
        fraud = X[y == 1]
        legit = X[y == 0]
        P, _ = cheap_ball_sample(fraud, legit, ctx.schema.arrays(), copies=self.copies, max_cost=self.ball_cost,
                                 active=self.active, mimic=self.mimic, rng=rng)
        info = {"copies": self.copies, "ball_cost": self.ball_cost, "active": self.active, "mimic": self.mimic,
                "fraud_rows": len(fraud), "ball_rows_added": len(P)}
        return np.vstack([X, P]), np.concatenate([y, np.ones(len(P), dtype=y.dtype)]), info
