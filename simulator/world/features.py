"""The streaming feature pipeline: raw events in time order -> velocity, ratio and new-device features.

The stateful features are computed by walking the event stream once, in time order, keeping
per-customer state arrays, exactly as a real-time scoring system would; nothing is sampled. Fraud
events are part of the stream, so they count in velocities and pull the running mean.

* ``txn_count_1h`` / ``txn_count_24h``: the customer's earlier events with ``t - W < ts <= t``
  (ties: earlier in stream order counts, the event itself does not). Each customer keeps a chain
  of its events (``next`` pointers) and one head pointer per window; a new event advances the
  heads past expired events and appends itself, so the cost is amortised O(1) per event, exact
  for any burst size.
* ``amount_ratio_30d``: amount over the customer's exponentially time-decayed mean amount, with a
  time constant of 15 days (the same mean age as a flat 30-day window). The mean starts from the
  customer's profile mean with a pseudo-count of ``PRIOR_WEIGHT`` (the history before the
  simulation), so the first transaction is compared with the profile mean. Capped at 1000.
* ``new_device``: 1 the first time a (customer, device) pair appears, 0 after; the customers'
  devices from before the simulation are pre-registered. Card-present events carry no device and
  are never new. Pairs live in an open-addressing hash set of int64 keys.

:func:`reference_stream_features` is a deliberately plain Python version of the same semantics,
used by the tests to check the Numba kernel.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
from numba import njit

WINDOW_1H_S = 3600
WINDOW_24H_S = 86_400
MEAN_TIME_CONSTANT_S = 15.0 * 86_400.0
PRIOR_WEIGHT = 3.0
RATIO_CAP = 1000.0

_EMPTY = np.int64(-1)
_DEVICE_KEY_SHIFT = 31  # key = customer << 31 | device; devices are non-negative int32


@dataclass(frozen=True, eq=False)
class StreamFeatures:
    """The pipeline's output for one batch, aligned with its input events."""

    txn_count_1h: np.ndarray  # int32
    txn_count_24h: np.ndarray  # int32
    amount_ratio_30d: np.ndarray  # float64
    new_device: np.ndarray  # int8
    mean_amount_30d: np.ndarray | None = None  # float64: the mean the ratio divides by (before this event)


@njit(cache=True, nogil=True)
def _hash_slot(key: np.int64, mask: np.int64) -> np.int64:
    h = np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)
    h ^= h >> np.uint64(29)
    return np.int64(h & np.uint64(mask))


@njit(cache=True, nogil=True)
def _insert_key(table: np.ndarray, key: np.int64) -> bool:
    """Add ``key`` to the set; True when it was not there yet. The table must have free slots."""
    mask = np.int64(len(table) - 1)
    i = _hash_slot(key, mask)
    while True:
        k = table[i]
        if k == key:
            return False
        if k == -1:
            table[i] = key
            return True
        i = (i + 1) & mask


@njit(cache=True, nogil=True)
def _rehash(table: np.ndarray, capacity: np.int64) -> np.ndarray:
    out = np.full(capacity, -1, dtype=np.int64)
    for k in table:
        if k != -1:
            _insert_key(out, k)
    return out


@njit(cache=True, nogil=True)
def _insert_pairs(table: np.ndarray, customer: np.ndarray, device: np.ndarray) -> int:
    added = 0
    for i in range(len(customer)):
        if device[i] >= 0:
            if _insert_key(table, (np.int64(customer[i]) << _DEVICE_KEY_SHIFT) | np.int64(device[i])):
                added += 1
    return added


@njit(cache=True, nogil=True)
def _expire_history(
    history_customer: np.ndarray,
    history_next: np.ndarray,
    history_base: np.int64,
    n_drop: np.int64,
    head_1h: np.ndarray,
    head_24h: np.ndarray,
    count_1h: np.ndarray,
    count_24h: np.ndarray,
) -> None:
    """Move the window heads past the oldest ``n_drop`` history events, which are about to be freed."""
    for j in range(n_drop):
        g = history_base + j
        c = history_customer[j]
        if head_1h[c] == g:
            head_1h[c] = history_next[j]
            count_1h[c] -= 1
        if head_24h[c] == g:
            head_24h[c] = history_next[j]
            count_24h[c] -= 1


@njit(cache=True, nogil=True)
def stream_kernel(
    customer: np.ndarray,
    timestamp: np.ndarray,
    amount: np.ndarray,
    device: np.ndarray,
    first_global: np.int64,
    history_base: np.int64,
    history_ts: np.ndarray,
    history_next: np.ndarray,
    last_event: np.ndarray,
    head_1h: np.ndarray,
    head_24h: np.ndarray,
    count_1h: np.ndarray,
    count_24h: np.ndarray,
    mean_sum: np.ndarray,
    mean_weight: np.ndarray,
    mean_time: np.ndarray,
    device_table: np.ndarray,
    out_count_1h: np.ndarray,
    out_count_24h: np.ndarray,
    out_ratio: np.ndarray,
    out_new_device: np.ndarray,
    out_mean: np.ndarray,
) -> int:
    """Walk one time-sorted batch, updating the per-customer state in place; returns new device pairs.

    Event ``i`` has global index ``first_global + i``; ``history_*`` hold the events from global
    index ``history_base`` on, this batch's included (``history_next`` of new events preset to -1).
    """
    added = 0
    for i in range(len(customer)):
        c = customer[i]
        t = timestamp[i]
        g = first_global + i

        h = head_1h[c]
        while h >= 0 and history_ts[h - history_base] <= t - WINDOW_1H_S:
            h = history_next[h - history_base]
            count_1h[c] -= 1
        head_1h[c] = h
        h = head_24h[c]
        while h >= 0 and history_ts[h - history_base] <= t - WINDOW_24H_S:
            h = history_next[h - history_base]
            count_24h[c] -= 1
        head_24h[c] = h
        out_count_1h[i] = count_1h[c]
        out_count_24h[i] = count_24h[c]

        prev = last_event[c]
        if prev >= history_base:
            history_next[prev - history_base] = g
        last_event[c] = g
        if head_1h[c] < 0:
            head_1h[c] = g
        if head_24h[c] < 0:
            head_24h[c] = g
        count_1h[c] += 1
        count_24h[c] += 1

        mean = mean_sum[c] / mean_weight[c]
        out_ratio[i] = min(amount[i] / mean, RATIO_CAP)
        out_mean[i] = mean
        decay = math.exp(-(t - mean_time[c]) / MEAN_TIME_CONSTANT_S)
        mean_sum[c] = mean_sum[c] * decay + amount[i]
        mean_weight[c] = mean_weight[c] * decay + 1.0
        mean_time[c] = t

        new = False
        if device[i] >= 0:
            new = _insert_key(device_table, (np.int64(c) << _DEVICE_KEY_SHIFT) | np.int64(device[i]))
        out_new_device[i] = 1 if new else 0
        added += 1 if new else 0
    return added


class StreamingPipeline:
    """Carries per-customer state from batch to batch (a batch is one day of the world).

    Batches must come in time order (each batch sorted, and starting no earlier than the last
    event seen); only the events of the last 24 hours are kept as history.
    """

    def __init__(
        self,
        n_customers: int,
        prior_mean_amount: np.ndarray,
        known_customer: np.ndarray,
        known_device: np.ndarray,
    ) -> None:
        self.n_customers = n_customers
        self.last_event = np.full(n_customers, -1, np.int64)
        self.head_1h = np.full(n_customers, -1, np.int64)
        self.head_24h = np.full(n_customers, -1, np.int64)
        self.count_1h = np.zeros(n_customers, np.int32)
        self.count_24h = np.zeros(n_customers, np.int32)
        self.mean_sum = PRIOR_WEIGHT * np.asarray(prior_mean_amount, np.float64)
        self.mean_weight = np.full(n_customers, PRIOR_WEIGHT)
        self.mean_time = np.zeros(n_customers, np.float64)
        self.history_base = 0
        self.history_ts = np.zeros(0, np.int64)
        self.history_next = np.zeros(0, np.int64)
        self.history_customer = np.zeros(0, np.int32)
        self.n_events = 0
        self.last_timestamp = np.iinfo(np.int64).min
        self.device_table = np.full(1024, -1, np.int64)
        self.device_pairs = 0
        self._reserve_devices(len(known_customer))
        self.device_pairs += int(
            _insert_pairs(self.device_table, np.asarray(known_customer, np.int32), np.asarray(known_device, np.int32))
        )

    def _reserve_devices(self, extra: int) -> None:
        """Keep the hash set at most half full so probes stay short and inserts always find room."""
        need = 2 * (self.device_pairs + extra)
        if need > len(self.device_table):
            capacity = 1 << max(10, int(need - 1).bit_length())
            self.device_table = _rehash(self.device_table, np.int64(capacity))

    def process(
        self, customer: np.ndarray, timestamp: np.ndarray, amount: np.ndarray, device: np.ndarray
    ) -> StreamFeatures:
        """Features of one time-sorted batch; updates the state."""
        customer = np.ascontiguousarray(customer, np.int32)
        timestamp = np.ascontiguousarray(timestamp, np.int64)
        amount = np.ascontiguousarray(amount, np.float64)
        device = np.ascontiguousarray(device, np.int32)
        n = len(customer)
        if n and (timestamp[0] < self.last_timestamp or np.any(np.diff(timestamp) < 0)):
            raise ValueError("events must be sorted by timestamp and not precede earlier batches")
        if n and (customer.min() < 0 or customer.max() >= self.n_customers):
            raise ValueError("customer id out of range")

        if n:
            # Free history that no event of this batch (or later) can still see.
            n_drop = int(np.searchsorted(self.history_ts, timestamp[0] - WINDOW_24H_S, side="right"))
            _expire_history(
                self.history_customer,
                self.history_next,
                np.int64(self.history_base),
                np.int64(n_drop),
                self.head_1h,
                self.head_24h,
                self.count_1h,
                self.count_24h,
            )
            self.history_base += n_drop
            self.history_ts = np.concatenate([self.history_ts[n_drop:], timestamp])
            self.history_next = np.concatenate([self.history_next[n_drop:], np.full(n, -1, np.int64)])
            self.history_customer = np.concatenate([self.history_customer[n_drop:], customer])
            self.last_timestamp = int(timestamp[-1])

        self._reserve_devices(n)
        mean_amount_30d = np.empty(n, np.float64)
        out = StreamFeatures(
            txn_count_1h=np.empty(n, np.int32),
            txn_count_24h=np.empty(n, np.int32),
            amount_ratio_30d=np.empty(n, np.float64),
            new_device=np.empty(n, np.int8),
            mean_amount_30d=mean_amount_30d,
        )
        added = stream_kernel(
            customer,
            timestamp,
            amount,
            device,
            np.int64(self.n_events),
            np.int64(self.history_base),
            self.history_ts,
            self.history_next,
            self.last_event,
            self.head_1h,
            self.head_24h,
            self.count_1h,
            self.count_24h,
            self.mean_sum,
            self.mean_weight,
            self.mean_time,
            self.device_table,
            out.txn_count_1h,
            out.txn_count_24h,
            out.amount_ratio_30d,
            out.new_device,
            mean_amount_30d,
        )
        self.device_pairs += int(added)
        self.n_events += n
        return out


def reference_stream_features(
    customer: np.ndarray,
    timestamp: np.ndarray,
    amount: np.ndarray,
    device: np.ndarray,
    prior_mean_amount: np.ndarray,
    known_customer: np.ndarray | None = None,
    known_device: np.ndarray | None = None,
) -> StreamFeatures:
    """Plain-Python twin of :class:`StreamingPipeline` over one whole time-sorted stream (slow; for tests)."""
    recent: dict[int, deque[int]] = {}
    known = zip(
        [] if known_customer is None else known_customer, [] if known_device is None else known_device, strict=True
    )
    seen = {(int(c), int(d)) for c, d in known}
    mean_state: dict[int, tuple[float, float, float]] = {}
    n = len(customer)
    c1 = np.zeros(n, np.int32)
    c24 = np.zeros(n, np.int32)
    ratio = np.zeros(n, np.float64)
    means = np.zeros(n, np.float64)
    new = np.zeros(n, np.int8)
    for i in range(n):
        c, t, a, d = int(customer[i]), int(timestamp[i]), float(amount[i]), int(device[i])
        times = recent.setdefault(c, deque())
        while times and times[0] <= t - WINDOW_24H_S:
            times.popleft()
        c24[i] = len(times)
        c1[i] = sum(1 for s in times if s > t - WINDOW_1H_S)
        times.append(t)

        s, w, last = mean_state.get(c, (PRIOR_WEIGHT * float(prior_mean_amount[c]), PRIOR_WEIGHT, 0.0))
        ratio[i] = min(a / (s / w), RATIO_CAP)
        means[i] = s / w
        decay = math.exp(-(t - last) / MEAN_TIME_CONSTANT_S)
        mean_state[c] = (s * decay + a, w * decay + 1.0, float(t))

        if d >= 0 and (c, d) not in seen:
            seen.add((c, d))
            new[i] = 1
    return StreamFeatures(c1, c24, ratio, new, means)
