"""Stateful probe detection: near-duplicate transactions of the same card or the same device within a window.

Every transaction (the defender cannot tell probes from customers) is reduced to a short signature: three
continuous coordinates (log amount, hour, log distance, each scaled to [0, 1]) and one code (merchant category,
card present, country mismatch). Two transactions are *near duplicates* when their codes are equal and the L1
distance of their coordinates is below ``radius``. Each card keeps its last ``memory`` signatures; each device
too, in a direct-mapped table of ``DEVICE_SLOTS`` slots tagged by device id (a device evicts another that hashes
to its slot, as a fixed-size production cache would). A transaction is *detected* when the card or the device
already holds ``min_matches`` near duplicates from the last ``window`` seconds that were declined (or sent to
review): a search around a decline is what probing looks like, while a customer's repeated in-app purchases go
through. With ``declined_only`` off, every near duplicate counts. With ``block`` set, a detection blocks the card
and the device for ``block_s`` seconds: their later transactions are declined (and count as declined attempts).

:func:`reference_detect` is a plain-Python twin (exact device keys, no slots) used by the tests.
"""
from __future__ import annotations

from collections import deque

import numpy as np
from numba import njit

DEVICE_SLOTS = 1 << 17
N_COORDS = 3
_LOG_AMOUNT_MAX = float(np.log1p(20_000.0))
_LOG_DISTANCE_MAX = float(np.log1p(5_000.0))


def signatures(amount: np.ndarray, hour: np.ndarray, distance: np.ndarray, merchant_cat: np.ndarray,
               card_present: np.ndarray, country_mismatch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(coords float32 (n, 3), code int32 (n,)) of transactions, from their features."""
    coords = np.empty((len(amount), N_COORDS), np.float32)
    coords[:, 0] = np.log1p(np.maximum(amount, 0.0)) / _LOG_AMOUNT_MAX
    coords[:, 1] = np.asarray(hour, np.float64) / 24.0
    coords[:, 2] = np.log1p(np.maximum(distance, 0.0)) / _LOG_DISTANCE_MAX
    code = (np.asarray(merchant_cat, np.int64) * 4 + np.asarray(card_present, np.int64) * 2
            + np.asarray(country_mismatch, np.int64)).astype(np.int32)
    return coords, code


@njit(cache=True, nogil=True)
def _slot(device: np.int64, mask: np.int64) -> np.int64:
    h = np.uint64(device) * np.uint64(0x9E3779B97F4A7C15)
    return np.int64((h >> np.uint64(20)) & np.uint64(mask))


_TS, _CODE, _FLAG, _X = 0, 1, 2, 3  # fields of a memory record: time, code, declined, coordinates
_RECORD = _X + N_COORDS


@njit(cache=True, nogil=True)
def _count(mem, row, t, c, x, window, radius, declined_only):
    k = 0
    for j in range(mem.shape[1]):
        r = mem[row, j]
        if r[_TS] > t - window and r[_CODE] == c and (r[_FLAG] != 0.0 or not declined_only):
            d = 0.0
            for q in range(x.shape[0]):
                d += abs(np.float32(r[_X + q]) - x[q])
            if d < radius:
                k += 1
    return k


@njit(cache=True, nogil=True)
def _push(mem, pos, row, t, c, x, declined):
    j = pos[row]
    r = mem[row, j]
    r[_TS] = t
    r[_CODE] = c
    r[_FLAG] = 1.0 if declined else 0.0
    for q in range(x.shape[0]):
        r[_X + q] = x[q]
    pos[row] = (j + 1) % mem.shape[1]


@njit(cache=True, nogil=True)
def detect_kernel(customer, device, timestamp, coords, code, declined,
                  card_mem, card_pos, card_blocked_until, dev_tag, dev_mem, dev_pos, dev_blocked_until,
                  window, radius, min_matches, block, block_s, declined_only,
                  out_matches, out_detected, out_blocked):
    """Walk one time-sorted batch, updating the card and device memories in place. ``declined``: the rules or
    the model would decline or review the transaction (known before detection runs). A memory is one contiguous
    record per card (or device slot): ``memory`` entries of (time, code, declined, coordinates)."""
    mask = np.int64(dev_tag.shape[0] - 1)
    for i in range(customer.shape[0]):
        c = customer[i]
        t = timestamp[i]
        x = coords[i]
        s = np.int64(-1)
        if device[i] >= 0:
            s = _slot(np.int64(device[i]), mask)
            if dev_tag[s] != device[i]:
                dev_tag[s] = device[i]
                dev_blocked_until[s] = np.iinfo(np.int64).min
                for j in range(dev_mem.shape[1]):
                    dev_mem[s, j, _TS] = -np.inf
                dev_pos[s] = 0
        blocked = card_blocked_until[c] > t
        if s >= 0 and dev_blocked_until[s] > t:
            blocked = True
        m = _count(card_mem, c, t, code[i], x, window, radius, declined_only)
        if s >= 0:
            m = max(m, _count(dev_mem, s, t, code[i], x, window, radius, declined_only))
        out_matches[i] = m
        out_blocked[i] = blocked
        hit = m >= min_matches
        out_detected[i] = hit
        if hit and block:
            card_blocked_until[c] = max(card_blocked_until[c], t + block_s)
            if s >= 0:
                dev_blocked_until[s] = max(dev_blocked_until[s], t + block_s)
        refused = declined[i] or blocked or (hit and block)
        _push(card_mem, card_pos, c, t, code[i], x, refused)
        if s >= 0:
            _push(dev_mem, dev_pos, s, t, code[i], x, refused)


class ProbeDetector:
    """Carries the card and device memories from day to day (a batch is one day, in time order)."""

    def __init__(self, n_customers: int, *, window_s: float, radius: float, min_matches: int, memory: int,
                 block: bool, block_s: float, declined_only: bool = True, device_slots: int = DEVICE_SLOTS):
        lo = np.iinfo(np.int64).min
        self.params = (np.int64(window_s), np.float64(radius), np.int64(min_matches), bool(block), np.int64(block_s),
                       bool(declined_only))
        self.card_mem = np.zeros((n_customers, memory, _RECORD), np.float64)
        self.card_mem[:, :, _TS] = -np.inf
        self.card_pos = np.zeros(n_customers, np.int32)
        self.card_blocked_until = np.full(n_customers, lo, np.int64)
        self.dev_tag = np.full(device_slots, -1, np.int64)
        self.dev_mem = np.zeros((device_slots, memory, _RECORD), np.float64)
        self.dev_mem[:, :, _TS] = -np.inf
        self.dev_pos = np.zeros(device_slots, np.int32)
        self.dev_blocked_until = np.full(device_slots, lo, np.int64)

    def process(self, customer, device, timestamp, coords, code, declined) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(near-duplicate matches, detected, blocked) for one time-sorted batch."""
        n = len(customer)
        matches = np.zeros(n, np.int16)
        detected = np.zeros(n, np.bool_)
        blocked = np.zeros(n, np.bool_)
        detect_kernel(np.ascontiguousarray(customer, np.int64), np.ascontiguousarray(device, np.int64),
                      np.ascontiguousarray(timestamp, np.int64), np.ascontiguousarray(coords, np.float32),
                      np.ascontiguousarray(code, np.int32), np.ascontiguousarray(declined, np.bool_),
                      self.card_mem, self.card_pos, self.card_blocked_until, self.dev_tag, self.dev_mem, self.dev_pos,
                      self.dev_blocked_until, *self.params, matches, detected, blocked)
        return matches, detected, blocked


def reference_detect(customer, device, timestamp, coords, code, declined, *, window_s, radius, min_matches, memory,
                     block, block_s, declined_only=True):
    """Plain-Python twin of :class:`ProbeDetector` over one stream (devices keyed exactly)."""
    mem: dict = {}
    blocked_until: dict = {}
    n = len(customer)
    matches, detected, blocked = np.zeros(n, np.int16), np.zeros(n, bool), np.zeros(n, bool)
    for i in range(n):
        keys = [("c", int(customer[i]))] + ([("d", int(device[i]))] if device[i] >= 0 else [])
        t = int(timestamp[i])
        x = np.asarray(coords[i], np.float32)
        blocked[i] = any(blocked_until.get(k, -2**62) > t for k in keys)
        m = 0
        for k in keys:
            hist = mem.setdefault(k, deque(maxlen=memory))
            m = max(m, sum(1 for (s, y, c, f) in hist
                           if s > t - window_s and c == code[i] and (f or not declined_only)
                           and sum(float(v) for v in np.abs(y - x)) < radius))
        matches[i] = m
        detected[i] = m >= min_matches
        if detected[i] and block:
            for k in keys:
                blocked_until[k] = max(blocked_until.get(k, -2**62), t + int(block_s))
        refused = bool(declined[i]) or bool(blocked[i]) or bool(detected[i] and block)
        for k in keys:
            mem[k].append((t, x, int(code[i]), refused))
    return matches, detected, blocked
