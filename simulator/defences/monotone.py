"""Monotone (and interaction) constraints derived from the features' attacker directions.

Which way? A feature with ``direction: decrease`` is one the fraudster can only *lower*, and lowers to look
legitimate (``country_mismatch`` 1 → 0, ``new_device`` 1 → 0): high values are the fraud evidence. The model is
constrained to be non-decreasing in it (``+1``). A feature with ``direction: increase`` (``card_present`` 0 → 1) is
the mirror image: ``-1``. The constraint does not stop the attacker's honest move (lowering the evidence still
lowers the score) but it removes every non-monotone pocket: no value of the feature can look *less* suspicious
than a lower one, so a search cannot find a spurious dip, and the only way down is to give up real evidence.
Features with ``direction: any`` are constrained by the sign of their rank correlation with the label in the
training data when it is clear (``infer_any``), and left free otherwise; frozen features stay free.

Interaction constraints (``interactions: true``, a second candidate) let each tree use the frozen features
together with at most one mutable feature, so the score is additive across what the attacker controls: no
combination of small cheap moves can open a pocket that each move alone does not.
"""
from __future__ import annotations

import numpy as np

from ..schema import Direction, Kind
from . import TREE_KINDS, Candidate, DefenceBase, register_defence


def rank_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman correlation of ``x`` with the label over the rows where ``x`` is present (0 when constant)."""
    ok = ~np.isnan(x)
    x, y = x[ok], y[ok].astype(np.float64)
    if len(x) < 3 or np.all(x == x[0]):
        return 0.0
    order = np.argsort(x, kind="mergesort")
    r = np.empty(len(x))
    r[order] = np.arange(len(x), dtype=np.float64)
    _, inv, counts = np.unique(x, return_inverse=True, return_counts=True)  # average ranks over ties
    sums = np.bincount(inv, weights=r)
    r = (sums / counts)[inv]
    if np.std(y) == 0:
        return 0.0
    return float(np.corrcoef(r, y)[0, 1])


@register_defence("monotone")
class Monotone(DefenceBase):
    kinds = TREE_KINDS

    def __init__(self, *, infer_any: bool = True, min_correlation: float = 0.02, interactions: bool = True):
        self.infer_any, self.min_correlation, self.interactions = bool(infer_any), float(min_correlation), bool(interactions)

    def constraints(self, ctx) -> list[int]:
        out = []
        X, y = ctx.data.X_train, ctx.data.y_train
        for j, spec in enumerate(ctx.schema.specs):
            if not spec.mutable or spec.kind == Kind.CATEGORICAL:  # codes of a category have no order
                out.append(0)
            elif spec.direction == Direction.DECREASE:
                out.append(1)
            elif spec.direction == Direction.INCREASE:
                out.append(-1)
            elif self.infer_any:
                c = rank_correlation(X[:, j], y)
                out.append(int(np.sign(c)) if abs(c) >= self.min_correlation else 0)
            else:
                out.append(0)
        return out

    def interaction_groups(self, ctx) -> list[list[int]]:
        frozen = [j for j, s in enumerate(ctx.schema.specs) if not s.mutable]
        mutable = [j for j, s in enumerate(ctx.schema.specs) if s.mutable]
        return [frozen + [j] for j in mutable] if frozen else [[j] for j in mutable]

    def build(self, ctx) -> list[Candidate]:
        cons = self.constraints(ctx)
        named = {n: c for n, c in zip(ctx.names, cons) if c}
        params = {"monotone_constraints": cons}
        out = []
        trained = ctx.train(params)
        out.append(Candidate(name="monotone", method=self.name, model=trained.model, members=[trained],
                             params={"monotone_constraints": named},
                             notes="+1: score never falls as the feature rises; -1: the reverse"))
        if self.interactions:
            groups = self.interaction_groups(ctx)
            trained = ctx.train(dict(params, interaction_constraints=groups))
            out.append(Candidate(name="monotone_interactions", method=self.name, model=trained.model, members=[trained],
                                 params={"monotone_constraints": named,
                                         "interaction_constraints": [[ctx.names[j] for j in g] for g in groups]},
                                 notes="each tree: frozen features and at most one mutable feature"))
        return out
