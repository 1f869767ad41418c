"""The only door from an attacker to the deployed model.

It enforces the per-target query budget, refuses candidates that break the constraints or the relations between
features (a strategy bug, never silently scored), turns true scores into the feedback the scenario allows, and logs every paid query.

Examples
--------
>>> import numpy as np
>>> from simulator.schema import FeatureSchema
>>> from simulator.kernels import get_kernels
>>> class Half:  # any object with predict_score works; real runs wrap XGBoost/LightGBM
...     def predict_score(self, X): return X[:, 0] / 10
>>> sa = FeatureSchema.from_mapping(["x"], {"x": {"min": 0, "max": 10}}).arrays()
>>> o = Oracle(Half(), threshold=0.5, feedback="decision", budget=2, originals=np.array([[8.0]]),
...            schema_arrays=sa, kernels=get_kernels("cpu"), strategy="demo")
>>> fb = o.query(np.array([0, 0]), np.array([[7.0], [3.0]]))
>>> fb.score is None, fb.declined.tolist(), o.remaining(np.array([0])).tolist()
(True, [True, False], [0])
"""
from __future__ import annotations

import numpy as np

from .errors import BudgetExceeded
from .kernels import Kernels
from .protocol import Feedback  # noqa: F401  (re-exported: Feedback lives in simulator.protocol)
from .schema import SchemaArrays
from .store import QueryLog

FEEDBACK_MODES = ("score", "decision")
_INT64 = (int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max))


class Oracle:
    """Query-limited black-box access for one strategy to a set of targets (originals ``X0``)."""

    def __init__(self, model, *, threshold: float, feedback: str, budget, originals: np.ndarray,
                 schema_arrays: SchemaArrays, kernels: Kernels, strategy: str, target_ids: np.ndarray | None = None,
                 log: QueryLog | None = None, round_: int = 0, agent_id: int | None = None,
                 relations=None, extras: np.ndarray | None = None, defence=None):
        if feedback not in FEEDBACK_MODES:
            raise ValueError(f"feedback must be one of {FEEDBACK_MODES}")
        self.model, self.threshold, self.feedback = model, float(threshold), feedback
        # one number for every target, or one per target (a campaign agent's daily probes)
        self.budget = int(budget) if np.ndim(budget) == 0 else np.asarray(budget, np.int64)
        self.originals = np.ascontiguousarray(originals, dtype=np.float64)
        self.sa, self.kernels, self.strategy = schema_arrays, kernels, strategy
        n = len(self.originals)
        self.target_ids = np.arange(n, dtype=np.int64) if target_ids is None else np.asarray(target_ids, np.int64)
        self.used = np.zeros(n, dtype=np.int64)
        self._budget_of_arrays: int | np.ndarray | None = None  # the budget that _budget_array was made from
        self._budget_array = np.zeros(0, np.int64)
        self.log, self.round, self.agent_id = log, round_, agent_id
        # relations between features (simulator/relations.py) and the extra data columns they read, per original
        self.relations = None if relations is None or relations.empty else relations
        self.extras = extras
        self.defence = defence  # runtime defences (simulator.defences.runtime): may refuse or hold queries

    budget_period = ""  # the budget is for the whole run

    def remaining(self, targets: np.ndarray) -> np.ndarray:
        return self.budget - self.used[targets]

    def query(self, targets: np.ndarray, X: np.ndarray, *, opening: np.ndarray | None = None) -> Feedback:
        """Score candidates ``X`` (row ``i`` for target ``targets[i]``), charge the budget, log, give feedback.
        ``opening`` (per row, optional) marks the strategy's opening moves in the log."""
        targets = np.asarray(targets, dtype=np.int64)
        X = np.ascontiguousarray(X, dtype=np.float64)
        if len(targets) == 0:
            return Feedback(np.zeros(0, bool), np.zeros(0) if self.feedback == "score" else None)
        if self.relations is None:  # the checks, the query numbers and the cost in one kernel pass
            query_index, cost = self._admit_with_cost(targets, X)
        else:
            query_index, cost = self.admit(targets, X), None
        score = self.model.predict_score(X)
        declined = score >= self.threshold
        shown = score
        if self.defence is not None:
            declined, shown = self.defence(targets, self.target_ids[targets], query_index, X, score, declined)
        if self.log is not None:
            self.record(round_=self.round, agent_id=self.agent_id, strategy=self.strategy,
                        target_id=self.target_ids[targets], query_index=query_index, score=score, declined=declined,
                        cost=self.kernels.cost(X, self.originals, targets, self.sa) if cost is None else cost, X=X,
                        opening=opening)
        return self.answer(declined, shown)

    def admit(self, targets: np.ndarray, X: np.ndarray, *, x0: np.ndarray | None = None, schema=None,
              strategy: str | None = None) -> np.ndarray:
        """Check candidates ``X`` (row ``i`` for target ``targets[i]``) against the budget and the constraints, then
        charge the budget; returns each row's 1-based query number for its target. ``x0`` and ``schema`` check every
        row against that one original under that schema instead of the target's own (a campaign agent's template
        under its own mask of the features it may touch). Raises ``BudgetExceeded`` or ``ValueError``; then nothing
        is charged."""
        who = self.strategy if strategy is None else strategy
        asked = np.bincount(targets, minlength=len(self.used))
        over = np.flatnonzero(self.used + asked > self.budget)
        if len(over):
            t = over[0]
            raise BudgetExceeded(f"strategy {who!r} asked {asked[t]} queries for target {self.target_ids[t]} with "
                                 f"{self._budget_of(t) - self.used[t]} left{self.budget_period}")
        if x0 is None:
            invalid = self._invalid(targets, X)
        else:
            invalid = self.kernels.violations(X, np.ascontiguousarray(x0, np.float64)[None, :],
                                              np.zeros(len(X), np.int64), self.sa if schema is None else schema)
        if invalid.any():
            raise ValueError(f"strategy {who!r} produced {int(invalid.sum())} candidates that break the "
                             "constraints; strategies must project with kernels.project")
        query_index = self._next_indices(targets)
        self.used += asked
        return query_index

    def _admit_with_cost(self, targets: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`admit` for the targets' own originals without relations, and each row's cost, from one kernel
        pass that also checks the budget and charges it (:meth:`Kernels.charge`); a batch it refuses goes through
        :meth:`admit`, which raises the error."""
        got = self.kernels.charge(X, self.originals, targets, self.used, self._budgets(), self.sa)
        if got is None:  # admit raises (BudgetExceeded or ValueError), charging nothing
            return self.admit(targets, X), self.kernels.cost(X, self.originals, targets, self.sa)
        return got

    def _budgets(self) -> np.ndarray:
        """The budget per target as the kernels take it (int64), made once per value of ``budget``."""
        if self._budget_of_arrays is not self.budget:
            b = self.budget
            self._budget_array = (np.asarray(b, np.int64) if np.ndim(b) else
                                  np.full(len(self.used), np.clip(int(b), *_INT64), np.int64))
            self._budget_of_arrays = b
        return self._budget_array

    def answer(self, declined: np.ndarray, shown: np.ndarray, feedback: str | None = None) -> Feedback:
        """What the attacker is told: the decision, and the shown score only with ``feedback: score``."""
        mode = self.feedback if feedback is None else feedback
        return Feedback(declined=declined, score=shown if mode == "score" else None)

    def record(self, *, round_: int, agent_id: int | None, strategy: str, target_id: np.ndarray,
               query_index: np.ndarray, score: np.ndarray, declined: np.ndarray, cost: np.ndarray, X: np.ndarray,
               opening: np.ndarray | None = None) -> None:
        """Log paid queries (the ``queries`` table): what the model said, the decision, the cost, the features."""
        if self.log is not None:
            self.log.add(round_=round_, agent_id=agent_id, strategy=strategy, target_id=target_id,
                         query_index=query_index, score=score, decision=declined, evaded=~declined, cost=cost, X=X,
                         opening=opening)

    def _budget_of(self, target: int) -> int:
        budget = np.asarray(self.budget)
        return int(budget if budget.ndim == 0 else budget[target])

    def _invalid(self, targets: np.ndarray, X: np.ndarray) -> np.ndarray:
        """Candidates breaking a bound or a relation. Derived features are frozen in the schema but follow their
        inputs (see :meth:`Kernels.invalid`)."""
        return self.kernels.invalid(X, self.originals, targets, self.sa, self.extras, self.relations)

    def _next_indices(self, targets: np.ndarray) -> np.ndarray:
        """1-based per-target query numbers, in row order within the batch."""
        # strategies usually ask target by target (sorted): then no sort is needed; either way a row's rank among
        # its target's rows is its position minus the position of that target's first row
        ordered = len(targets) < 2 or bool((targets[1:] >= targets[:-1]).all())
        order = None if ordered else np.argsort(targets, kind="stable")
        ts = targets if order is None else targets[order]
        idx = self.used[ts] + (np.arange(1, len(ts) + 1) - np.searchsorted(ts, ts))
        if order is None:
            return idx
        out = np.empty_like(idx)
        out[order] = idx
        return out


class StreamOracle(Oracle):
    """The door in a campaign: the same checks, charges, feedback and log as :class:`Oracle`, with two differences.

    Targets are the agents, each with a daily budget (:meth:`new_day` resets it). Probes are not scored here: they
    become transactions of the day and the deployed defence decides them with everyone else (:meth:`admit` now,
    :meth:`respond` once the day is decided). With ``feedback: score`` an agent sees the risk score the system
    answers: the model's score, or 1.0 when a rule, a block or probe detection declined (``hard`` reasons)."""

    budget_period = " today"

    def __init__(self, budgets: np.ndarray, kernels: Kernels, schema_arrays: SchemaArrays, *, hard_reasons,
                 log: QueryLog | None = None):
        n = len(budgets)
        super().__init__(None, threshold=1.0, feedback="decision", budget=budgets,
                         originals=np.zeros((n, len(schema_arrays.lo))), schema_arrays=schema_arrays, kernels=kernels,
                         strategy="", log=log)
        self.hard_reasons = np.asarray(hard_reasons)

    def new_day(self) -> None:
        self.used[:] = 0

    def respond(self, approved: np.ndarray, score: np.ndarray, reason: np.ndarray, mode: str) -> Feedback:
        hard = np.isin(reason, self.hard_reasons) & ~approved
        return self.answer(~approved, np.where(hard, 1.0, score), mode)
