"""Feature squeezing: coarsen the features an attacker can change cheaply before the model sees them.

Each squeezed feature is cut into ``bins`` quantile bins of the training data and every value is replaced by its
bin's median, at training and at scoring time alike (the card's ``wrapper.squeeze`` holds the cut points and
values; :class:`~simulator.defences.wrappers.SqueezedModel` applies them). Small moves inside a bin no longer move
the score at all, so a search needs bigger (costlier) steps. By default the squeezed features are the mutable
continuous and integer ones whose cost weight is at most ``max_cost``.
"""
from __future__ import annotations

import numpy as np

from ..schema import Kind
from . import TREE_KINDS, Candidate, DefenceBase, register_defence
from .wrappers import SqueezedModel, squeeze_matrix


def squeeze_spec(X: np.ndarray, names, columns, bins: int) -> dict:
    spec = {}
    for j in columns:
        col = X[:, j]
        col = col[~np.isnan(col)]
        if len(col) == 0:
            continue
        edges = np.unique(np.quantile(col, np.linspace(0, 1, bins + 1)[1:-1]))
        idx = np.searchsorted(edges, col, side="right")
        values = [float(np.median(col[idx == k])) if (idx == k).any() else float(edges[min(k, len(edges) - 1)])
                  for k in range(len(edges) + 1)]
        spec[names[j]] = {"edges": [float(e) for e in edges], "values": values}
    return spec


@register_defence("squeeze")
class Squeeze(DefenceBase):
    kinds = TREE_KINDS

    def __init__(self, *, bins: int = 12, features: list[str] | None = None, max_cost: float = 1.0):
        if bins < 2:
            raise ValueError("bins must be >= 2")
        self.bins, self.features, self.max_cost = int(bins), features, float(max_cost)

    def columns(self, ctx) -> list[int]:
        if self.features is not None:
            unknown = [f for f in self.features if f not in ctx.names]
            if unknown:
                raise ValueError(f"no model feature {unknown[0]!r} to squeeze")
            return [ctx.names.index(f) for f in self.features]
        return [j for j, s in enumerate(ctx.schema.specs)
                if s.mutable and s.kind in (Kind.CONTINUOUS, Kind.INTEGER) and s.cost <= self.max_cost]

    def build(self, ctx) -> list[Candidate]:
        cols = self.columns(ctx)
        spec = squeeze_spec(ctx.data.X_train, ctx.names, cols, self.bins)
        Xs = squeeze_matrix(ctx.data.X_train, ctx.names, spec)
        trained = ctx.train(X=Xs, provenance={"squeezed": sorted(spec)})
        model = SqueezedModel(trained.model, spec)
        return [Candidate(name="squeeze", method=self.name, model=model, members=[trained],
                          params={"bins": self.bins, "features": sorted(spec)},
                          wrapper={"type": "squeeze", "squeeze": spec},
                          notes="the model file scores squeezed inputs; apply wrapper.squeeze first")]
