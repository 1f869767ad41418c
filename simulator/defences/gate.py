"""A robust decision gate: decline only on evidence the attacker cannot change cheaply; rank with everything.

Two models over the same features. The **gate** is trained with every attacker-cheap feature held constant, so
its trees never split on them and its score does not move whatever the attacker does to them. A feature is
cheap unless it is frozen, or a binary/categorical feature whose one change costs more than ``max_cost`` (``1``:
what cheap success counts; a numeric mutable feature always has cheap small moves). The **rank** model is the
baseline (all features). The candidate (:class:`~simulator.defences.wrappers.GatedModel`) scores
``0.5 + 0.5 * gate`` where the gate is at or above its own cut (set to decline a little more than the scenario's
FPR of the holdout's legitimate rows, ties included) and ``0.5 * rank`` below it: the threshold every candidate
gets at the scenario's FPR then lies among the gate's scores, so only the gate declines, and the rank
model orders everything under it, so the clean AUC stays close to the baseline's.

The price is recall at the threshold: fraud whose only evidence is in cheap features (a distance, an amount) is
no longer declined but ranked high below the threshold (for a review queue, say). The table shows it in the
recall column; ``recall_after_attack`` (recall times one minus the strongest strategy's cheap success) is the
share of fraud still declined after a cheap attacker adapts.
"""
from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np

from ..schema import Kind
from . import TREE_KINDS, Candidate, DefenceBase, register_defence
from .wrappers import GatedModel


def robust_columns(schema, max_cost: float) -> list[int]:
    """Positions of the features an attacker cannot change at cost <= ``max_cost``."""
    out = []
    for j, s in enumerate(schema.specs):
        if not s.mutable or (s.kind in (Kind.BINARY, Kind.CATEGORICAL) and s.cost > max_cost):
            out.append(j)
    return out


@register_defence("robust_gate")
class RobustGate(DefenceBase):
    kinds = TREE_KINDS

    def __init__(self, *, max_cost: float = 1.0):
        if not max_cost > 0:
            raise ValueError("max_cost must be > 0")
        self.max_cost = float(max_cost)

    def build(self, ctx) -> list[Candidate]:
        keep = robust_columns(ctx.schema, self.max_cost)
        cheap = [j for j in range(len(ctx.names)) if j not in keep]
        Xg = np.array(ctx.data.X_train, dtype=np.float64, copy=True)
        Xg[:, cheap] = 0.0  # constant: no split on them, so the gate's score ignores them
        gate = ctx.train(X=Xg, y=ctx.data.y_train, provenance={"gate_ignores": [ctx.names[j] for j in cheap]})
        if ctx.data.base_model is not None:  # the model file, saved again as this candidate's second member
            base = copy.copy(ctx.data.base_model)  # saving sets the copy's path, not the baseline's
            rank = SimpleNamespace(model=base, card=dict(getattr(base, "card", None) or {}))
        else:
            rank = ctx.train()  # the baseline's own set-up: the context returns the model already trained
        # the cut declines MORE than the scenario's FPR of the holdout's legitimate rows (ties included), so the
        # threshold the harness sets at that FPR lands among the gate's scores and the rank model never declines
        g = np.sort(gate.model.predict_score(ctx.data.X_hold[ctx.data.y_hold == 0]))[::-1]
        cut = float(g[min(int(np.floor(ctx.fpr * len(g))), len(g) - 1)]) if len(g) else 0.5
        model = GatedModel(gate.model, rank.model, cut)
        return [Candidate(name="robust_gate", method=self.name, model=model, members=[gate, rank],
                          params={"max_cost": self.max_cost, "gate_features": [ctx.names[j] for j in keep],
                                  "ignored": [ctx.names[j] for j in cheap], "cut": cut},
                          wrapper={"type": "gate", "cut": cut},
                          notes=f"declines on {', '.join(ctx.names[j] for j in keep) or 'nothing'} only (gate cut "
                                f"{cut:.4g} at the scenario's FPR); below the cut, ranked by the baseline (member 1)")]
