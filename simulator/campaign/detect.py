"""Stateful probe detection over the stream of one card and one device.

Probes from one fraudster share a card or a device, and a search keeps part of a transaction and changes the rest;
customers rarely repeat a declined transaction and do not share a device with other cards. Two modes:

``linked`` (the default; Chen, Carlini & Wagner 2019, "Stateful Detection of Black-Box Adversarial Attacks", keyed
by card and device as they suggest per account, with exact near duplicates instead of a learned distance). Each
card and each device keeps its last ``memory`` attempts (time, declined, amount, distance, and the device of a card
or the card of a device). A transaction is *detected* when

- its device served another card within ``window`` seconds (the device is shared: one fraudster, many cards);
- its card was seen on such a shared device within the window (the card is *linked*) and this attempt is declined
  or repeats the amount or the distance of an earlier attempt of the card;
- the card or the device holds ``min_matches`` earlier *declined* (or reviewed) attempts in the window that it
  nearly duplicates: the same amount or the same distance (float32), whatever else changed;
- its distance repeats that of a declined attempt of another card within the window: one template tried on many
  stolen cards (a global table keyed by the distance; customers' distances to their merchants rarely coincide).
- its card repeats an exact amount at *another* merchant within the window, with both attempts' scores elevated
  (``elevated``: at least ``repeat_score`` × the review threshold, computed by the caller) or, whatever the scores,
  from ``repeat_amount`` up: a replayed pattern moves to new shops, customers repeat an amount at the same shop;
- with ``link_detected``, a detected card stays linked for the window (its later declined or repeated attempts).

``l1`` (the earlier detector): every transaction is reduced to three scaled coordinates (log amount, hour, log
distance) and a code (merchant category, card present, country mismatch); near duplicates have equal codes and an
L1 distance under ``radius``; detected at ``min_matches`` declined near duplicates of the card or device.

In both modes devices live in a direct-mapped table of ``DEVICE_SLOTS`` slots tagged by device id (a device evicts
another that hashes to its slot, as a fixed-size production cache would). With ``declined_only`` off, every near
duplicate counts. With ``block`` set, a detection blocks the card and the device for ``block_s`` seconds: their
later transactions are declined (and count as declined attempts).

Measured live on the default campaign (the rings lose detected cards and adapt): ``linked`` with the defaults
(12 h, ``min_matches`` 3, ``repeat_score`` 0.5, ``repeat_amount`` 20, 1 h blocks) detects 66% of the probes at
0.064% of legitimate transactions affected (flagged or blocked); ``benchmarks/bench_probe_detection.py`` replays a
run and prints the curve. ``l1`` detected 2-6%.

:func:`reference_detect` and :func:`reference_linked` are plain-Python twins (exact device keys, no slots) used by
the tests.
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
    """(coords float32 (n, 5), code int32 (n,)) of transactions, from their features: the ``N_COORDS`` scaled
    coordinates the ``l1`` mode measures distances on, then the raw amount and distance the ``linked`` mode compares."""
    coords = np.empty((len(amount), N_COORDS + 2), np.float32)
    coords[:, 0] = np.log1p(np.maximum(amount, 0.0)) / _LOG_AMOUNT_MAX
    coords[:, 1] = np.asarray(hour, np.float64) / 24.0
    coords[:, 2] = np.log1p(np.maximum(distance, 0.0)) / _LOG_DISTANCE_MAX
    coords[:, N_COORDS] = amount
    coords[:, N_COORDS + 1] = distance
    code = (np.asarray(merchant_cat, np.int64) * 4 + np.asarray(card_present, np.int64) * 2
            + np.asarray(country_mismatch, np.int64)).astype(np.int32)
    return coords, code


@njit(cache=True, nogil=True)
def _slot(device: np.int64, mask: np.int64) -> np.int64:
    h = np.uint64(device) * np.uint64(0x9E3779B97F4A7C15)
    return np.int64((h >> np.uint64(20)) & np.uint64(mask))


@njit(cache=True, nogil=True)
def _claim(key: np.int64, mask: np.int64, tag, mem, pos):
    """The direct-mapped slot of ``key`` (a device, or a template's distance bits); a slot that held another key is
    taken over and its memory emptied (every record's time, field 0 in both record layouts, set to -inf). Returns
    the slot and whether it was taken over."""
    s = _slot(key, mask)
    if tag[s] == key:
        return s, False
    tag[s] = key
    for j in range(mem.shape[1]):
        mem[s, j, 0] = -np.inf
    pos[s] = 0
    return s, True


@njit(cache=True, nogil=True)
def _block(c, s, until, card_blocked_until, dev_blocked_until):
    """Block the card (and its device slot ``s``, when it has one) until ``until`` at the least."""
    card_blocked_until[c] = max(card_blocked_until[c], until)
    if s >= 0:
        dev_blocked_until[s] = max(dev_blocked_until[s], until)


@njit(cache=True, nogil=True)
def _arrive(c, device, t, mask, dev_tag, dev_mem, dev_pos, card_blocked_until, dev_blocked_until):
    """A transaction of card ``c`` arrives at time ``t``: its device's slot (-1 without a device; a slot taken over
    starts unblocked), and whether the card or that device is blocked at ``t``."""
    s = np.int64(-1)
    if device >= 0:
        s, fresh = _claim(np.int64(device), mask, dev_tag, dev_mem, dev_pos)
        if fresh:
            dev_blocked_until[s] = np.iinfo(np.int64).min
    blocked = card_blocked_until[c] > t
    if s >= 0 and dev_blocked_until[s] > t:
        blocked = True
    return s, blocked


_TS, _CODE, _FLAG, _X = 0, 1, 2, 3  # fields of a memory record: time, code, declined, coordinates
_RECORD = _X + N_COORDS


@njit(cache=True, nogil=True)
def _count(mem, row, t, c, x, window, radius, declined_only):
    k = 0
    for j in range(mem.shape[1]):
        r = mem[row, j]
        if r[_TS] > t - window and r[_CODE] == c and (r[_FLAG] != 0.0 or not declined_only):
            d = 0.0
            for q in range(N_COORDS):
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
    for q in range(N_COORDS):
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
        s, blocked = _arrive(c, device[i], t, mask, dev_tag, dev_mem, dev_pos, card_blocked_until, dev_blocked_until)
        m = _count(card_mem, c, t, code[i], x, window, radius, declined_only)
        if s >= 0:
            m = max(m, _count(dev_mem, s, t, code[i], x, window, radius, declined_only))
        out_matches[i] = m
        out_blocked[i] = blocked
        hit = m >= min_matches
        out_detected[i] = hit
        if hit and block:
            _block(c, s, t + block_s, card_blocked_until, dev_blocked_until)
        refused = declined[i] or blocked or (hit and block)
        _push(card_mem, card_pos, c, t, code[i], x, refused)
        if s >= 0:
            _push(dev_mem, dev_pos, s, t, code[i], x, refused)


# -- linked mode: near duplicates of declined attempts, devices shared by cards, cards linked to them -----------------

_L_TS, _L_FLAG, _L_AMOUNT, _L_DIST, _L_OTHER, _L_MERCHANT, _L_ELEVATED = range(7)  # a linked-mode record: time,
_L_RECORD = 7  # declined, amount, distance, the other key (device of a card, card of a device), merchant, elevated score


@njit(cache=True, nogil=True)
def _linked_scan(mem, row, t, a, x, other, merchant, window, declined_only):
    """(near duplicates of declined attempts, near duplicates of any attempt, records of another key, elevated
    repeats, moved repeats) in a memory row. A near duplicate repeats the amount or the distance exactly: the probe kept that part and
    changed the rest. An elevated repeat is an earlier attempt with an elevated score and the same amount at another
    merchant (a replayed pattern moved to a new shop; customers repeat an amount at the same merchant); a moved
    repeat, the same amount at another merchant whatever the scores."""
    m, anyeq, foreign, rep, moved = 0, 0, 0, 0, 0
    for j in range(mem.shape[1]):
        r = mem[row, j]
        if not r[_L_TS] > t - window:
            continue
        if other >= 0 and r[_L_OTHER] >= 0 and r[_L_OTHER] != other:
            foreign += 1
        same_amount = np.float32(r[_L_AMOUNT]) == a
        if same_amount or np.float32(r[_L_DIST]) == x:
            anyeq += 1
            if r[_L_FLAG] != 0.0 or not declined_only:
                m += 1
        if same_amount and r[_L_MERCHANT] >= 0 and r[_L_MERCHANT] != merchant:
            moved += 1
            if r[_L_ELEVATED] != 0.0:
                rep += 1
    return m, anyeq, foreign, rep, moved


@njit(cache=True, nogil=True)
def _linked_push(mem, pos, row, t, a, x, other, declined, merchant, elevated):
    j = pos[row]
    r = mem[row, j]
    r[_L_TS] = t
    r[_L_FLAG] = 1.0 if declined else 0.0
    r[_L_AMOUNT] = a
    r[_L_DIST] = x
    r[_L_OTHER] = other
    r[_L_MERCHANT] = merchant
    r[_L_ELEVATED] = 1.0 if elevated else 0.0
    pos[row] = (j + 1) % mem.shape[1]


@njit(cache=True, nogil=True)
def linked_kernel(customer, device, timestamp, coords, declined, merchant, elevated, card_mem, card_pos,
                  card_blocked_until, card_linked_until, dev_tag, dev_mem, dev_pos, dev_blocked_until, tpl_tag, tpl_mem,
                  tpl_pos, window, min_matches, block, block_s, declined_only, link_detected, repeat_amount,
                  out_matches, out_detected, out_blocked):
    """The ``linked`` detector over one time-sorted batch (memories updated in place). A transaction is detected when

    - its device served another card within the window (one fraudster, many stolen cards: customers do not share
      devices), or
    - its card was seen on such a shared device within the window and this attempt is declined (or reviewed) or
      repeats the amount or distance of an earlier attempt of the card, or
    - the card or the device holds ``min_matches`` earlier declined attempts in the window that it nearly duplicates
      (same amount or same distance: a search that keeps part of a transaction and changes the rest), or
    - its distance repeats that of a declined attempt of *another* card within the window (one template tried on
      many stolen cards; a table of ``tpl_tag`` slots keyed by the float32 distance, direct-mapped like devices), or
    - its score is elevated (``elevated``: the caller's threshold below the review band) and an earlier attempt of the
      card in the window, elevated too, had the same amount at another merchant (a replayed pattern; ``merchant``
      -1: unknown, never another), or
    - its amount is at least ``repeat_amount`` and an earlier attempt of the card in the window had the same amount at
      another merchant (customers' exact repeats of a sizeable amount are at the same merchant).

    With ``link_detected``, a detected card is linked for the window as if seen on a shared device."""
    mask = np.int64(dev_tag.shape[0] - 1)
    tmask = np.int64(tpl_tag.shape[0] - 1)
    for i in range(customer.shape[0]):
        c = customer[i]
        t = timestamp[i]
        a = coords[i, N_COORDS]
        x = coords[i, N_COORDS + 1]
        s, blocked = _arrive(c, device[i], t, mask, dev_tag, dev_mem, dev_pos, card_blocked_until, dev_blocked_until)
        mer = np.float64(merchant[i])
        m, anyeq, _, rep, moved = _linked_scan(card_mem, c, t, a, x, -1, mer, window, declined_only)
        repeat = merchant[i] >= 0 and ((elevated[i] and rep > 0) or (a >= repeat_amount and moved > 0))
        shared = False
        if s >= 0:
            md, _, foreign, _, _ = _linked_scan(dev_mem, s, t, a, x, c, mer, window, declined_only)
            m = max(m, md)
            if foreign > 0:
                shared = True
                card_linked_until[c] = max(card_linked_until[c], t + window)
                for j in range(dev_mem.shape[1]):  # every card seen on this device within the window is linked
                    r = dev_mem[s, j]
                    if r[_L_TS] > t - window and r[_L_OTHER] >= 0:
                        k = np.int64(r[_L_OTHER])
                        card_linked_until[k] = max(card_linked_until[k], t + window)
        linked = card_linked_until[c] > t and (declined[i] or anyeq > 0)
        key = np.int64(np.float32(x).view(np.int32))
        u, _ = _claim(key, tmask, tpl_tag, tpl_mem, tpl_pos)
        template = False
        for j in range(tpl_mem.shape[1]):
            r = tpl_mem[u, j]
            if r[0] > t - window and r[1] != c and (r[2] != 0.0 or not declined_only):
                template = True
        out_matches[i] = min(m, 32767)
        out_blocked[i] = blocked
        hit = shared or linked or template or repeat or m >= min_matches
        out_detected[i] = hit
        if hit and block:
            _block(c, s, t + block_s, card_blocked_until, dev_blocked_until)
        if hit and link_detected:
            card_linked_until[c] = max(card_linked_until[c], t + window)
        refused = declined[i] or blocked or (hit and block)
        j = tpl_pos[u]
        tpl_mem[u, j, 0] = t
        tpl_mem[u, j, 1] = c
        tpl_mem[u, j, 2] = 1.0 if refused else 0.0
        tpl_pos[u] = (j + 1) % tpl_mem.shape[1]
        _linked_push(card_mem, card_pos, c, t, a, x, np.float64(device[i]) if device[i] >= 0 else -1.0, refused, mer,
                     elevated[i])
        if s >= 0:
            _linked_push(dev_mem, dev_pos, s, t, a, x, np.float64(c), refused, mer, elevated[i])


MODES = ("linked", "l1")


class ProbeDetector:
    """Carries the card and device memories from day to day (a batch is one day, in time order).

    ``mode='linked'`` (the default): near duplicates of declined attempts, devices shared by cards and cards linked
    to them (:func:`linked_kernel`; ``radius`` is not used). ``mode='l1'``: the earlier detector, near duplicates by
    L1 distance of the scaled coordinates under ``radius`` with equal codes (:func:`detect_kernel`)."""

    def __init__(self, n_customers: int, *, window_s: float, radius: float, min_matches: int, memory: int,
                 block: bool, block_s: float, declined_only: bool = True, device_slots: int = DEVICE_SLOTS,
                 mode: str = "linked", link_detected: bool = True, repeat_amount: float | None = None):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.mode = mode
        lo = np.iinfo(np.int64).min
        rec = _L_RECORD if mode == "linked" else _RECORD
        # the kernel's scalar arguments in its order (the linked kernel takes no radius): one tuple type for both
        self.params: tuple[np.int64 | np.float64 | bool, ...]
        if mode == "linked":
            self.params = (np.int64(window_s), np.int64(min_matches), bool(block), np.int64(block_s), bool(declined_only),
                           bool(link_detected), np.float64(np.inf if repeat_amount is None else repeat_amount))
        else:
            self.params = (np.int64(window_s), np.float64(radius), np.int64(min_matches), bool(block),
                           np.int64(block_s), bool(declined_only))
        self.card_mem = np.zeros((n_customers, memory, rec), np.float64)
        self.card_mem[:, :, 0] = -np.inf
        self.card_pos = np.zeros(n_customers, np.int32)
        self.card_blocked_until = np.full(n_customers, lo, np.int64)
        self.card_linked_until = np.full(n_customers, lo, np.int64)
        self.dev_tag = np.full(device_slots, -1, np.int64)
        self.dev_mem = np.zeros((device_slots, memory, rec), np.float64)
        self.dev_mem[:, :, 0] = -np.inf
        self.dev_pos = np.zeros(device_slots, np.int32)
        self.dev_blocked_until = np.full(device_slots, lo, np.int64)
        self.tpl_tag = np.full(device_slots, np.iinfo(np.int64).min, np.int64)  # linked mode: distances seen
        self.tpl_mem = np.zeros((device_slots if mode == "linked" else 1, memory, 3), np.float64)
        self.tpl_mem[:, :, 0] = -np.inf
        self.tpl_pos = np.zeros(device_slots, np.int32)

    @classmethod
    def from_spec(cls, n_customers: int, spec) -> "ProbeDetector":
        """The detector a campaign's ``defence.probe_detection`` section describes."""
        return cls(n_customers, window_s=spec.window_hours * 3600, radius=spec.radius, min_matches=spec.min_matches,
                   memory=spec.memory, block=spec.action == "block", block_s=spec.block_hours * 3600,
                   declined_only=spec.declined_only, mode=getattr(spec, "mode", "linked"),
                   link_detected=getattr(spec, "link_detected", True),
                   repeat_amount=getattr(spec, "repeat_amount", None))

    def process(self, customer, device, timestamp, coords, code, declined, *, merchant=None,
                elevated=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(near-duplicate matches, detected, blocked) for one time-sorted batch. ``merchant`` (ids, -1 unknown) and
        ``elevated`` (the score is above the caller's repeat threshold) feed the linked mode's elevated-repeat rule;
        without them it never fires."""
        n = len(customer)
        matches = np.zeros(n, np.int16)
        detected = np.zeros(n, np.bool_)
        blocked = np.zeros(n, np.bool_)
        args = (np.ascontiguousarray(customer, np.int64), np.ascontiguousarray(device, np.int64),
                np.ascontiguousarray(timestamp, np.int64), np.ascontiguousarray(coords, np.float32))
        # each call's arguments as one tuple: mypy maps no positional argument after a star of unknown length
        if self.mode == "linked":
            mer = np.full(n, -1, np.int64) if merchant is None else np.ascontiguousarray(merchant, np.int64)
            elev = np.zeros(n, np.bool_) if elevated is None else np.ascontiguousarray(elevated, np.bool_)
            call = (*args, np.ascontiguousarray(declined, np.bool_), mer, elev, self.card_mem, self.card_pos,
                    self.card_blocked_until, self.card_linked_until, self.dev_tag, self.dev_mem, self.dev_pos,
                    self.dev_blocked_until, self.tpl_tag, self.tpl_mem, self.tpl_pos, *self.params, matches,
                    detected, blocked)
            linked_kernel(*call)
        else:
            call = (*args, np.ascontiguousarray(code, np.int32), np.ascontiguousarray(declined, np.bool_),
                    self.card_mem, self.card_pos, self.card_blocked_until, self.dev_tag, self.dev_mem,
                    self.dev_pos, self.dev_blocked_until, *self.params, matches, detected, blocked)
            detect_kernel(*call)
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
        x = np.asarray(coords[i][:N_COORDS], np.float32)
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


def reference_linked(customer, device, timestamp, coords, declined, *, window_s, min_matches, memory, block, block_s,
                     declined_only=True, merchant=None, elevated=None, link_detected=True, repeat_amount=None):
    """Plain-Python twin of the ``linked`` mode of :class:`ProbeDetector` over one stream (devices keyed exactly)."""
    cards: dict = {}
    devs: dict = {}
    blocked_until: dict = {}
    linked_until: dict = {}
    templates: dict = {}
    n = len(customer)
    matches, detected, blocked = np.zeros(n, np.int16), np.zeros(n, bool), np.zeros(n, bool)
    f32 = np.float32
    merchant = np.full(n, -1) if merchant is None else merchant
    elevated = np.zeros(n, bool) if elevated is None else elevated
    for i in range(n):
        c, d, t, mer, elev = int(customer[i]), int(device[i]), int(timestamp[i]), int(merchant[i]), bool(elevated[i])
        a, x = f32(coords[i][N_COORDS]), f32(coords[i][N_COORDS + 1])
        keys = [("c", c)] + ([("d", d)] if d >= 0 else [])
        blocked[i] = any(blocked_until.get(k, -2**62) > t for k in keys)
        live_c = [r for r in cards.setdefault(c, deque(maxlen=memory)) if r[0] > t - window_s]
        live_d = [r for r in devs.setdefault(d, deque(maxlen=memory)) if r[0] > t - window_s] if d >= 0 else []

        def near(r):
            return f32(r[2]) == a or f32(r[3]) == x

        m = max(sum(1 for r in live for _ in [0] if near(r) and (r[1] or not declined_only)) for live in (live_c, live_d))
        anyeq = sum(1 for r in live_c if near(r))
        moved = [r for r in live_c if f32(r[2]) == a and 0 <= r[5] != mer]
        big = repeat_amount is not None and float(a) >= float(repeat_amount)
        repeat = mer >= 0 and ((elev and any(r[6] for r in moved)) or (big and len(moved) > 0))
        shared = any(r[4] != c for r in live_d)
        if shared:
            for k in [c] + [r[4] for r in live_d]:
                linked_until[k] = max(linked_until.get(k, -2**62), t + int(window_s))
        linked = linked_until.get(c, -2**62) > t and (bool(declined[i]) or anyeq > 0)
        tpl = templates.setdefault(float(x), deque(maxlen=memory))
        template = any(r[0] > t - window_s and r[1] != c and (r[2] or not declined_only) for r in tpl)
        matches[i] = m
        detected[i] = shared or linked or template or repeat or m >= min_matches
        if detected[i] and block:
            for k in keys:
                blocked_until[k] = max(blocked_until.get(k, -2**62), t + int(block_s))
        if detected[i] and link_detected:
            linked_until[c] = max(linked_until.get(c, -2**62), t + int(window_s))
        refused = bool(declined[i]) or bool(blocked[i]) or bool(detected[i] and block)
        tpl.append((t, c, refused))
        cards[c].append((t, refused, float(a), float(x), d, mer, elev))
        if d >= 0:
            devs[d].append((t, refused, float(a), float(x), c, mer, elev))
    return matches, detected, blocked
