"""Runtime defences in single-round runs: rate limits, a review band, stateful probe detection.

The oracle consults one :class:`RuntimeDefences` per strategy (a hook: ``Oracle(..., defence=...)``). For each
batch of queries it sees the model's scores and decisions and may *refuse* a query (declined whatever the
score: the attacker sees a decline and a score of 1) or send it to *review* (held: not an evasion; the score the
attacker sees is the model's). Every refusal or review is logged to ``defence_events``.

Queries happen in time: the attacker's ``i``-th query on a target is made ``i × seconds_between_queries`` after
the start, on the target's card (``card_column`` of the target row, else the target itself) and, with
``device_column``, its device. So "20 queries per card per hour" at one query a minute refuses 40 of every 60.

Lifecycle: the runner builds the stack from the scenario's ``defence:`` section (:func:`build_runtime`) once per
strategy, passes it to the oracle, and calls :meth:`RuntimeDefences.flush` after the strategy finished.
"""
from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import ClassVar, Protocol

import numpy as np

from ..errors import ScenarioError


@dataclass
class QueryBatch:
    rows: np.ndarray  # oracle target rows
    target_ids: np.ndarray
    query_index: np.ndarray  # 1-based per target
    ts: np.ndarray  # seconds since the attack started
    X: np.ndarray
    score: np.ndarray
    declined: np.ndarray  # the model's decision
    refused: np.ndarray  # set by defences: declined regardless of the score
    reviewed: np.ndarray  # set by defences: held for review
    events: list = field(default_factory=list)  # (kind, target_id, detail dict)


class RuntimeDefence(Protocol):
    """One runtime defence: marks queries in a batch as refused or reviewed, appends events."""

    name: ClassVar[str]

    def apply(self, batch: QueryBatch, keys: "Keys") -> None: ...


@dataclass
class Keys:
    card: np.ndarray  # per oracle row
    device: np.ndarray | None


class RateLimit:
    name = "rate_limit"

    def __init__(self, *, key: str, max_queries: int, window_s: float):
        self.key, self.max_queries, self.window_s = key, int(max_queries), float(window_s)
        self.recent: dict[int, deque] = {}

    def apply(self, batch: QueryBatch, keys: Keys) -> None:
        kv = keys.card if self.key == "card" else keys.device
        assert kv is not None  # build_runtime refuses a device limit without defence.device_column
        order = np.lexsort((batch.rows, batch.ts))
        for i in order:
            k = int(kv[batch.rows[i]])
            q = self.recent.setdefault(k, deque())
            t = float(batch.ts[i])
            while q and q[0] <= t - self.window_s:
                q.popleft()
            if len(q) >= self.max_queries:
                if not batch.refused[i]:
                    batch.refused[i] = True
                    batch.events.append(("rate_limit", int(batch.target_ids[i]),
                                         {"key": self.key, "value": k, "query_index": int(batch.query_index[i])}))
            q.append(t)  # every attempt counts against the limit


class ReviewBand:
    name = "review_band"

    def __init__(self, *, review_threshold: float):
        self.review_threshold = float(review_threshold)

    def apply(self, batch: QueryBatch, keys: Keys) -> None:
        hit = ~batch.declined & ~batch.refused & (batch.score >= self.review_threshold)
        batch.reviewed |= hit
        for i in np.flatnonzero(hit):
            batch.events.append(("review", int(batch.target_ids[i]), {"score": float(batch.score[i]),
                                                                      "query_index": int(batch.query_index[i])}))


class StatefulDetection:
    """k-NN similarity of each query to the card's (and device's) recent queries (simulator.defences.stateful)."""

    name = "stateful_detection"

    def __init__(self, *, sa, threshold: float, k: int, buffer: int, window_s: float | None, action: str,
                 block_s: float, use_device: bool, history: np.ndarray | None = None, history_keys: np.ndarray | None = None):
        from .stateful import KnnState, embed

        self.sa, self.threshold, self.action, self.block_s = sa, float(threshold), action, float(block_s)
        self.use_device = use_device
        self._embed = embed
        dim = embed(np.zeros((1, sa.n_features)), sa).shape[1]
        win = np.inf if window_s is None else float(window_s)
        self.cards = KnnState(1, dim, buffer=buffer, k=k, window=win)
        self.devices = KnnState(1, dim, buffer=buffer, k=k, window=win)
        self.blocked_until: dict[tuple[str, int], float] = {}
        self._card_ids: dict[int, int] = {}
        self._dev_ids: dict[int, int] = {}
        if history is not None and len(history):  # the card's own earlier transaction(s), before the attack
            assert history_keys is not None  # each history row's card
            hk = np.array([self._dense(self._card_ids, int(c)) for c in history_keys])
            self.cards.process(hk, np.full(len(hk), -1.0), embed(history, sa))

    @staticmethod
    def _dense(table: dict, k: int) -> int:
        return table.setdefault(k, len(table))

    def apply(self, batch: QueryBatch, keys: Keys) -> None:
        order = np.lexsort((batch.rows, batch.ts))
        emb = self._embed(batch.X[order], self.sa)
        ts = batch.ts[order]
        ck = np.array([self._dense(self._card_ids, int(keys.card[r])) for r in batch.rows[order]], np.int64)
        dist = self.cards.process(ck, ts, emb)
        if self.use_device and keys.device is not None:
            dk = np.array([self._dense(self._dev_ids, int(keys.device[r])) for r in batch.rows[order]], np.int64)
            dist = np.minimum(dist, self.devices.process(dk, ts, emb))
        for n, i in enumerate(order):
            card = ("card", int(keys.card[batch.rows[i]]))
            dev = ("device", int(keys.device[batch.rows[i]])) if keys.device is not None else None
            t = float(batch.ts[i])
            if self.blocked_until.get(card, -np.inf) > t or (dev and self.blocked_until.get(dev, -np.inf) > t):
                batch.refused[i] = True
                continue
            if dist[n] < self.threshold:
                batch.events.append(("probe_detected", int(batch.target_ids[i]),
                                     {"distance": float(dist[n]), "query_index": int(batch.query_index[i])}))
                if self.action == "block":
                    batch.refused[i] = True
                    self.blocked_until[card] = t + self.block_s
                    if dev:
                        self.blocked_until[dev] = t + self.block_s
                else:
                    batch.reviewed[i] = True


class RuntimeDefences:
    """The stack the oracle calls: rate limits first, then probe detection, then the review band."""

    def __init__(self, defences: list, keys: Keys, *, seconds_between_queries: float, strategy: str,
                 store=None, run_id: str | None = None):
        self.defences, self.keys, self.dt = defences, keys, float(seconds_between_queries)
        self.strategy, self.store, self.run_id = strategy, store, run_id
        self.events: list = []
        self.counts: dict[str, int] = {}

    def __call__(self, rows, target_ids, query_index, X, score, declined) -> tuple[np.ndarray, np.ndarray]:
        """(declined, score the attacker sees) after every defence had its say."""
        n = len(rows)
        batch = QueryBatch(rows=np.asarray(rows), target_ids=np.asarray(target_ids), query_index=np.asarray(query_index),
                           ts=np.asarray(query_index, np.float64) * self.dt, X=X, score=score,
                           declined=np.asarray(declined, bool), refused=np.zeros(n, bool), reviewed=np.zeros(n, bool))
        for d in self.defences:
            d.apply(batch, self.keys)
        for kind, *_ in batch.events:
            self.counts[kind] = self.counts.get(kind, 0) + 1
        self.events.extend(batch.events)
        out_declined = batch.declined | batch.refused | batch.reviewed
        shown = np.where(batch.refused, 1.0, score)
        return out_declined, shown

    def flush(self) -> None:
        if self.store is None or not self.events:
            self.events = []
            return
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        self.store.append("defence_events", {
            "run_id": [self.run_id] * len(self.events), "round": [0] * len(self.events),
            "kind": [e[0] for e in self.events], "target_id": [e[1] for e in self.events],
            "detail": [json.dumps(dict(e[2], strategy=self.strategy)) for e in self.events],
            "created_at": [now] * len(self.events)})
        self.events = []


def _column(prep, name: str | None, field: str) -> np.ndarray | None:
    if name is None:
        return None
    if name not in prep.frame.columns:
        raise ScenarioError(f"the data has no column {name!r}", file=prep.scenario.source, field=field)
    return prep.frame.get_column(name).cast(float).to_numpy()


def build_runtime(spec, prep, *, strategy: str, store=None, run_id: str | None = None) -> RuntimeDefences | None:
    """The runtime defence stack a single-round scenario's ``defence:`` section describes (``None``: none)."""
    from ..target.train import threshold_at_fpr

    if spec is None or not hasattr(spec, "rate_limits"):  # none, or a campaign's defence (not run here)
        return None
    rows = prep.target_rows
    card_col = _column(prep, spec.card_column, "defence.card_column")
    dev_col = _column(prep, spec.device_column, "defence.device_column")
    card = card_col[rows].astype(np.int64) if card_col is not None else prep.ids[rows].astype(np.int64)
    device = dev_col[rows].astype(np.int64) if dev_col is not None else None
    keys = Keys(card=card, device=device)
    stack: list = []
    for i, rl in enumerate(spec.rate_limits):
        if rl.key == "device" and device is None:
            raise ScenarioError("a device rate limit needs defence.device_column", file=prep.scenario.source,
                                field=f"defence.rate_limits.{i}.key")
        stack.append(RateLimit(key=rl.key, max_queries=rl.max_queries, window_s=rl.window_s))
    sd = spec.stateful_detection
    if sd is not None:
        sa = prep.schema.arrays()
        threshold = sd.threshold
        if threshold is None:
            threshold = calibrate_on_data(prep, sa, sd, card_col)
        stack.append(StatefulDetection(sa=sa, threshold=threshold, k=sd.k, buffer=sd.buffer, window_s=sd.window_s,
                                       action=sd.action, block_s=sd.block_s, use_device=sd.key in ("device", "both"),
                                       history=prep.X[rows] if sd.include_original else None, history_keys=card))
    rb = spec.review_band
    if rb is not None:
        if rb.review_threshold is not None:
            thr = rb.review_threshold
        else:
            if prep.labels is None:
                raise ScenarioError("review_fpr needs a label column; give review_threshold", file=prep.scenario.source,
                                    field="defence.review_band")
            thr = threshold_at_fpr(prep.labels, prep.scores, rb.review_fpr)
        stack.append(ReviewBand(review_threshold=min(thr, prep.threshold)))
    if not stack:
        return None
    return RuntimeDefences(stack, keys, seconds_between_queries=spec.seconds_between_queries, strategy=strategy,
                           store=store, run_id=run_id)


def calibrate_on_data(prep, sa, sd, card_col) -> float:
    """The detector's threshold at ``calibrate_fpr`` of legitimate rows, replaying them per card in time order
    (needs ``card_column``; rows are in file order when there is no ``timestamp`` column)."""
    from .stateful import calibrate, knn_distances, embed

    if card_col is None:
        raise ScenarioError("stateful_detection needs a threshold, or defence.card_column to calibrate it on the "
                            "data's legitimate transactions", file=prep.scenario.source,
                            field="defence.stateful_detection.threshold")
    legit = np.flatnonzero(prep.labels == 0) if prep.labels is not None else np.arange(prep.frame.height)
    ts = prep.frame.get_column("timestamp").cast(float).to_numpy() if "timestamp" in prep.frame.columns \
        else np.arange(prep.frame.height, dtype=np.float64)
    legit = legit[np.lexsort((legit, ts[legit]))]
    _, dense = np.unique(card_col[legit], return_inverse=True)
    d = knn_distances(dense, ts[legit], embed(prep.X[legit], sa), k=sd.k, buffer=sd.buffer,
                      window=np.inf if sd.window_s is None else sd.window_s)
    return calibrate(d, sd.calibrate_fpr)
