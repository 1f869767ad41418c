"""Ensembles and a randomised threshold band (a moving target).

``members`` models trained with different seeds and slightly different tree parameters, scored by their mean. The
second candidate (``band > 0``) scales each query's score by ``exp(u)``, ``u ~ U(-band, band)``: the same as drawing
the decline threshold per query from a band around the fixed one, so repeated probes of one point disagree and a
search by small steps sees noise. Its threshold is set on one noisy draw over the holdout.
"""
from __future__ import annotations

from . import TREE_KINDS, Candidate, DefenceBase, register_defence
from .wrappers import BandModel, EnsembleModel

DEPTH_KEYS = ("max_depth",)


@register_defence("ensemble")
class Ensemble(DefenceBase):
    kinds = TREE_KINDS

    def __init__(self, *, members: int = 5, band: float = 0.3, jitter: bool = True):
        if members < 2:
            raise ValueError("members must be >= 2")
        if band < 0:
            raise ValueError("band must be >= 0")
        self.members, self.band, self.jitter = int(members), float(band), bool(jitter)

    def build(self, ctx) -> list[Candidate]:
        base = ctx.data.base_params
        trained, member_params = [], []
        for k in range(self.members):
            p = {}
            if self.jitter:  # vary the trees a little: depth/leaves by member, subsampling
                if "max_depth" in base and int(base["max_depth"]) > 0:
                    p["max_depth"] = max(2, int(base["max_depth"]) + (k % 3) - 1)
                if "num_leaves" in base:
                    p["num_leaves"] = max(4, int(base["num_leaves"]) + 8 * ((k % 3) - 1))
            member_params.append(p)
            trained.append(ctx.train(p, seed=ctx.seed + 101 * (k + 1)))
        model = EnsembleModel([t.model for t in trained])
        params = {"members": self.members, "member_params": member_params,
                  "member_seeds": [ctx.seed + 101 * (k + 1) for k in range(self.members)]}
        out = [Candidate(name="ensemble", method=self.name, model=model, members=trained, params=params,
                         wrapper={"type": "ensemble"}, notes=f"mean score of {self.members} models")]
        if self.band > 0:
            band = BandModel(EnsembleModel([t.model for t in trained]), self.band, seed=ctx.seed)
            out.append(Candidate(name="ensemble_band", method=self.name, model=band, members=trained,
                                 params=dict(params, band=self.band),
                                 wrapper={"type": "band", "band": self.band, "seed": ctx.seed, "inner": {"type": "ensemble"}},
                                 notes=f"ensemble with a randomised threshold band of ±{self.band:g} in log-score"))
        return out
