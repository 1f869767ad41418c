"""The defender's side of a campaign: decision policy (bands, rules, probe detection, review), chargeback labels
with delay, drift monitoring (PSI) and a fast AUC.

Examples
--------
>>> psi(np.array([0.5, 0.5]), np.array([0.5, 0.5]))
0.0
>>> round(auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])), 2)
0.75
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..measures import roc_auc as auc  # noqa: F401  (the one AUC, under the campaign's name)
from .config import DefenceSpec

DECISIONS = ("approve", "review", "decline")
APPROVE, REVIEW, DECLINE = 0, 1, 2
REASONS = ("", "model", "rule_velocity", "rule_new_device_amount", "probe_detection", "blocked")
R_NONE, R_MODEL, R_VELOCITY, R_NEW_DEVICE, R_PROBE, R_BLOCKED = range(len(REASONS))
#: fraud_type codes that an analyst reviewing the transaction cannot tell from the customer's own purchases
FRIENDLY, POISONING = 4, 5
NO_LABEL = -1


@dataclass(frozen=True)
class Bands:
    review: float
    decline: float


def refused_before_detection(score: np.ndarray, feats: dict[str, np.ndarray], bands: Bands,
                             spec: DefenceSpec) -> np.ndarray:
    """Transactions the rules or the model's bands decline or send to review (what probe detection remembers)."""
    out = score >= bands.review
    rules = spec.rules
    if rules.velocity_1h is not None:
        out |= feats["txn_count_1h"] >= rules.velocity_1h
    if rules.velocity_24h is not None:
        out |= feats["txn_count_24h"] >= rules.velocity_24h
    if rules.new_device_amount is not None:
        out |= (feats["new_device"] >= 0.5) & (feats["amount"] > rules.new_device_amount)
    return out


def decide(score: np.ndarray, feats: dict[str, np.ndarray], detected: np.ndarray, blocked: np.ndarray,
           fraud_type: np.ndarray, bands: Bands, spec: DefenceSpec, rng: np.random.Generator):
    """Decision, reason and final outcome (approved after any review) of each transaction.

    Order: a blocked card or device declines; then probe detection (decline with ``action: block``, review with
    ``flag``); then the rules; then the model's bands. Reviewed fraud is stopped with ``review_catch_rate``;
    friendly fraud and poisoning look like the customer's own purchases to an analyst and pass."""
    n = len(score)
    decision = np.zeros(n, np.int8)
    reason = np.zeros(n, np.int8)

    def apply(mask, d, r):
        free = mask & (reason == R_NONE)
        decision[free] = d
        reason[free] = r

    rules, pd = spec.rules, spec.probe_detection
    if pd.enabled:
        apply(blocked, DECLINE, R_BLOCKED)
        apply(detected, DECLINE if pd.action == "block" else REVIEW, R_PROBE)
    velocity = np.zeros(n, bool)
    if rules.velocity_1h is not None:
        velocity |= feats["txn_count_1h"] >= rules.velocity_1h
    if rules.velocity_24h is not None:
        velocity |= feats["txn_count_24h"] >= rules.velocity_24h
    apply(velocity, DECLINE, R_VELOCITY)
    if rules.new_device_amount is not None:
        apply((feats["new_device"] >= 0.5) & (feats["amount"] > rules.new_device_amount), DECLINE, R_NEW_DEVICE)
    apply(score >= bands.decline, DECLINE, R_MODEL)
    apply(score >= bands.review, REVIEW, R_MODEL)
    looks_own = (fraud_type == 0) | (fraud_type == FRIENDLY) | (fraud_type == POISONING)
    stopped = (decision == REVIEW) & ~looks_own & (rng.random(n) < spec.policy.review_catch_rate)
    approved = (decision == APPROVE) | ((decision == REVIEW) & ~stopped)
    return decision, reason, approved


def label_days(day: int, fraud_type: np.ndarray, amount: np.ndarray, spec: DefenceSpec,
               rng: np.random.Generator) -> np.ndarray:
    """Day each transaction's fraud label (chargeback) arrives, ``NO_LABEL`` when it never does.

    Legitimate transactions never get one; poisoning never does (the ring owns the account); friendly fraud always
    does (it is a dispute); other fraud is reported with ``report_rate``, or ``small_report_rate`` at or below
    ``small_amount`` (a cardholder rarely notices a one-euro test)."""
    ls = spec.labels
    n = len(fraud_type)
    u = rng.random(n)
    jitter = rng.integers(0, ls.delay_jitter_days + 1, size=n)
    p = np.where(amount <= ls.small_amount, ls.small_report_rate, ls.report_rate)
    p = np.where(fraud_type == FRIENDLY, 1.0, np.where(fraud_type == POISONING, 0.0, p))
    reported = (fraud_type > 0) & (u < p)
    return np.where(reported, day + ls.delay_days + jitter, NO_LABEL).astype(np.int32)


def psi(expected: np.ndarray, actual: np.ndarray, floor: float = 1e-4) -> float:
    """Population stability index of two histograms over the same bins."""
    p = np.maximum(np.asarray(expected, np.float64), floor)
    q = np.maximum(np.asarray(actual, np.float64), floor)
    return float(np.sum((q - p) * np.log(q / p)))


class DriftReference:
    """Bins and shares of each feature and of the score on a model's training window; PSI of new traffic."""

    def __init__(self, X: np.ndarray, score: np.ndarray, bins: int):
        self.bins = bins
        self.edges = [self._edges(X[:, j]) for j in range(X.shape[1])]
        self.score_edges = self._edges(score)
        self.shares = [self._shares(X[:, j], e) for j, e in enumerate(self.edges)]
        self.score_shares = self._shares(score, self.score_edges)

    def _edges(self, col: np.ndarray) -> np.ndarray:
        values = np.unique(col)
        if len(values) <= 2 * self.bins:  # discrete: one bin per value
            return (values[:-1] + values[1:]) / 2.0
        return np.unique(np.quantile(col, np.linspace(0, 1, self.bins + 1)[1:-1]))

    @staticmethod
    def _shares(col: np.ndarray, edges: np.ndarray) -> np.ndarray:
        counts = np.bincount(np.searchsorted(edges, col, side="right"), minlength=len(edges) + 1)
        return counts / max(1, len(col))

    def measure(self, X: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, float]:
        feats = np.array([psi(s, self._shares(X[:, j], e)) for j, (e, s) in enumerate(zip(self.edges, self.shares))])
        return feats, psi(self.score_shares, self._shares(score, self.score_edges))
