"""Adversarial training: attack the current model with the scenario's strategies, add the evasions as fraud,
retrain, repeat.

Evasions come from the training data's caught fraud (never the holdout, which measures), through the normal run
machinery: each round's attack is a real run file. Each (strategy, target) contributes its ``per_target``
cheapest evading queries, repeated ``weight`` times (a sample weight without changing the trainer).
"""
from __future__ import annotations

import numpy as np

from . import TREE_KINDS, Candidate, register_defence


@register_defence("adversarial_training")
class AdversarialTraining:
    kinds = TREE_KINDS

    def __init__(self, *, rounds: int = 2, targets: int = 150, per_target: int = 3, weight: int = 1,
                 budget: int | None = 100, strategies: list[str] | None = None):
        if rounds < 1 or targets < 1 or per_target < 1 or weight < 1:
            raise ValueError("rounds, targets, per_target and weight must be >= 1")
        self.rounds, self.targets, self.per_target, self.weight = int(rounds), int(targets), int(per_target), int(weight)
        self.budget, self.strategies = budget, (tuple(strategies) if strategies else None)

    def build(self, ctx) -> list[Candidate]:
        X, y = ctx.data.X_train, ctx.data.y_train
        model = ctx.data.base_model
        if model is None:
            model = ctx.train().model
        history, trained = [], None
        budget = min(int(self.budget or ctx.scenario.attack.budget), ctx.scenario.attack.budget)
        for r in range(self.rounds):
            thr = ctx.threshold(model)
            outcome = ctx.attack(model, thr, name=f"adversarial_training-round{r + 1}", rows="train",
                                 strategies=self.strategies, budget=budget, limit=self.targets, seed=ctx.seed + 1000 + r)
            ev = ctx.evasions(outcome, self.per_target)
            history.append({"round": r + 1, "targets": outcome.targets, "evasions_added": int(len(ev) * self.weight)})
            if len(ev) == 0:
                break
            X = np.vstack([X] + [ev] * self.weight)
            y = np.concatenate([y, np.ones(len(ev) * self.weight, dtype=y.dtype)])
            trained = ctx.train(X=X, y=y, provenance={"adversarial_rounds": r + 1})
            model = trained.model
        if trained is None:
            trained = ctx.train(provenance={"adversarial_rounds": 0})
        return [Candidate(name="adversarial_training", method=self.name, model=trained.model, members=[trained],
                          params={"rounds": self.rounds, "targets": self.targets, "per_target": self.per_target,
                                  "weight": self.weight, "budget": budget,
                                  "strategies": list(self.strategies or ctx.scenario.attack.strategies),
                                  "history": history},
                          notes=f"{sum(h['evasions_added'] for h in history)} evasions added as fraud over "
                                f"{len(history)} rounds")]
