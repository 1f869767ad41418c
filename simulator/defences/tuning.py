"""Robustness-aware tuning: an Optuna NSGA-II study over hyperparameters and defence settings.

Two objectives per trial: clean AUC on the holdout (maximise) and the strongest strategy's cheap success within
100 queries (minimise; the strongest strategy is the one that did best against the baseline). Each trial trains a
model, sets its threshold at the scenario's FPR and attacks it with that strategy through the run machinery, on
``limit`` targets at ``budget`` queries. The study lives in an Optuna ``JournalStorage`` file
(``tuning.journal`` in the output folder), so a rerun resumes it and only runs the trials still missing. The whole
Pareto front goes to the report and to the DuckDB table ``hardening_pareto``; the candidate is the front's trial
with the lowest cheap success among those within ``harden.max_auc_loss`` of the baseline's AUC.
"""
from __future__ import annotations

from . import TREE_KINDS, Candidate, DefenceBase, register_defence
from .monotone import Monotone
from .squeeze import squeeze_spec
from .wrappers import SqueezedModel, squeeze_matrix


@register_defence("tuning")
class Tuning(DefenceBase):
    kinds = TREE_KINDS

    def __init__(self, *, trials: int = 12, budget: int = 100, limit: int | None = 20, population: int = 6,
                 max_rounds: int = 300, journal: str = "tuning.journal"):
        if trials < 1 or budget < 1 or population < 2:
            raise ValueError("trials and budget must be >= 1, population >= 2")
        self.trials, self.budget, self.limit, self.population, self.journal = \
            int(trials), int(budget), limit, int(population), journal
        self.max_rounds = max(10, int(max_rounds))

    def _space(self, trial, base: dict) -> dict:
        p = {"rounds": trial.suggest_int("rounds", min(40, self.max_rounds), self.max_rounds, log=True)}
        if "max_depth" in base:  # depth-wise trees
            p["max_depth"] = trial.suggest_int("max_depth", 2, 8)
            p["eta"] = trial.suggest_float("eta", 0.03, 0.3, log=True)
            p["min_child_weight"] = trial.suggest_float("min_child_weight", 1.0, 50.0, log=True)
        if "num_leaves" in base:  # leaf-wise trees
            p["num_leaves"] = trial.suggest_int("num_leaves", 4, 64, log=True)
            p["learning_rate"] = trial.suggest_float("learning_rate", 0.03, 0.3, log=True)
            p["min_data_in_leaf"] = trial.suggest_int("min_data_in_leaf", 10, 200, log=True)
        return p

    def _model(self, ctx, values: dict):
        """Train the model a trial's values describe: hyperparameters, then monotone and squeeze settings."""
        tree = {k: v for k, v in values.items() if k not in ("monotone", "squeeze_bins")}
        if values.get("monotone"):
            tree["monotone_constraints"] = Monotone(interactions=False).constraints(ctx)
        bins = int(values.get("squeeze_bins") or 0)
        if bins:
            from ..schema import Kind

            cols = [j for j, s in enumerate(ctx.schema.specs)
                    if s.mutable and s.kind in (Kind.CONTINUOUS, Kind.INTEGER) and s.cost <= 1.0]
            spec = squeeze_spec(ctx.data.X_train, ctx.names, cols, bins)
            trained = ctx.train(tree, X=squeeze_matrix(ctx.data.X_train, ctx.names, spec))
            return trained, SqueezedModel(trained.model, spec), {"type": "squeeze", "squeeze": spec}
        trained = ctx.train(tree)
        return trained, trained.model, None

    def build(self, ctx) -> list[Candidate]:
        import optuna
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        from ..measures import cheap_at

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        base = ctx.data.base_params
        strongest = ctx.strongest
        budget = min(self.budget, ctx.scenario.attack.budget)
        storage = JournalStorage(JournalFileBackend(str(ctx.work_dir / self.journal)))
        study = optuna.create_study(study_name=f"{ctx.scenario.name}-tuning", storage=storage, load_if_exists=True,
                                    directions=["maximize", "minimize"],
                                    sampler=optuna.samplers.NSGAIISampler(population_size=self.population, seed=ctx.seed))

        def objective(trial):
            values = self._space(trial, base)
            values["monotone"] = trial.suggest_categorical("monotone", [False, True])
            values["squeeze_bins"] = trial.suggest_categorical("squeeze_bins", [0, 8, 16])
            _, model, _ = self._model(ctx, values)
            thr = ctx.threshold(model)
            auc = float(_auc(ctx, model))
            out = ctx.attack(model, thr, name=f"tuning-trial{trial.number}", strategies=(strongest,), budget=budget,
                             limit=self.limit)
            per = {r["strategy"]: r for r in out.summary.iter_rows(named=True)}
            cheap = float(cheap_at(per, strongest, 100) or 0.0)
            return auc, cheap

        done = len([t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE])
        if done < self.trials:
            study.optimize(objective, n_trials=self.trials - done)
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        front = {t.number for t in study.best_trials}
        pareto = [{"trial": t.number, "clean_auc": t.values[0], "strongest_cheap_success_at_100": t.values[1],
                   "on_front": t.number in front, "params": dict(t.params)} for t in complete]
        floor = (ctx.base_auc or 0.0) - ctx.scenario.harden.max_auc_loss
        pool = [t for t in study.best_trials if t.values[0] >= floor] or list(study.best_trials)
        pick = min(pool, key=lambda t: (t.values[1], -t.values[0]))
        trained, model, wrapper = self._model(ctx, dict(pick.params))
        return [Candidate(name="tuning", method=self.name, model=model, members=[trained],
                          params={"trial": pick.number, **pick.params, "trials": len(complete),
                                  "attack_budget": budget, "objective_strategy": strongest},
                          wrapper=wrapper, extra_tables={"hardening_pareto": pareto},
                          notes=f"Pareto trial {pick.number} of {len(complete)} "
                                f"(front: {len(front)}; AUC floor {floor:.4f})")]


def _auc(ctx, model) -> float:
    from ..target.train import roc_auc

    return roc_auc(ctx.data.y_hold, model.predict_score(ctx.data.X_hold))
