"""From a strategy's candidate (a row in model-feature space) to a raw event the world can featurise.

A probe is a real transaction: the agent picks what it controls, the stream decides the rest.

* ``amount``: the candidate's amount, capped by the card's credit limit, in cents.
* ``hour``: the event's hour of the day; the minute comes from the agent's timing (see ``probe_times``).
* ``merchant_cat`` and ``card_present``: a merchant of that category, drawn as fraudsters draw them (riskier
  merchants more often); in person when the category has shops, online otherwise (two categories have no shops).
* ``distance_km`` and ``country_mismatch``: online, the buyer appears at that distance from the cardholder's home,
  in a direction that gives the asked country (match or mismatch); in person, at a shop in the city whose distance
  and country fit best.
* ``new_device``: 1 uses a device never seen before; 0 uses the device the agent keeps for that card (the victim's own when
  the agent has it; else its own, which the stream learns after its first use, so the first such probe still
  shows a new device).
* velocities, the amount ratio, account age and credit limit are not chosen: they come from the stream and the
  account, probes included.

Examples
--------
>>> from simulator.world import World, WorldConfig
>>> w = World(WorldConfig(customers=300, merchants=300, days=2, fraudsters=0), seed=1)
>>> names = ("amount", "hour", "merchant_cat", "distance_km", "card_present", "new_device", "country_mismatch")
>>> X = np.array([[25.0, 3, 7, 40.0, 0, 1, 0], [90.0, 14, 0, 2.0, 1, 0, 0]])
>>> ev = realise(w, 0, names, X, np.array([5, 6]), np.array([10**6, 10**6 + 1]), np.array([3 * 3600, 14 * 3600]),
...              np.random.default_rng(0))
>>> ev["amount"].to_list(), ev["card_present"].to_list(), ev["device_id"].to_list()[1]
([25.0, 90.0], [0, 1], -1)
"""
from __future__ import annotations

import numpy as np
import polars as pl

from ..world import catalogue as cat
from ..world.behaviour import NO_DEVICE, has_shop, pick_merchant

N_ANGLES = 16


def realise(world, day: int, names, X: np.ndarray, customer: np.ndarray, card_device: np.ndarray,
            timestamp: np.ndarray, rng: np.random.Generator, *, fraud_type: np.ndarray | int = 1,
            fresh_devices=None) -> pl.DataFrame:
    """Raw events (the ``extra`` of :meth:`World.step`) for candidate rows ``X`` on cards ``customer``.

    ``card_device`` is the device the agent uses on that card when the candidate asks for a known device;
    ``fresh_devices(k)`` hands out never-seen device ids (default: the world's own counter)."""
    n = len(X)
    idx = {f: j for j, f in enumerate(names)}
    customers, merchants = world.customers, world.merchants

    def col(name: str, default: float) -> np.ndarray:
        return X[:, idx[name]] if name in idx else np.full(n, default)

    customer = np.asarray(customer, np.int64)
    amount = np.round(np.clip(col("amount", 50.0), 0.5, np.minimum(customers.credit_limit[customer], 20_000.0)), 2)
    category = np.clip(np.round(col("merchant_cat", cat.ONLINE_RETAIL)), 0, cat.N_CATEGORIES - 1).astype(np.int64)
    want_cp = col("card_present", 0.0) >= 0.5
    distance = np.maximum(col("distance_km", 0.0), 0.0)
    mismatch = col("country_mismatch", 0.0) >= 0.5
    home = customers.home_xy[customer]
    home_country = customers.home_country[customer]

    # In person: the city whose distance from home is nearest the asked one, among cities with a shop of the
    # category and the asked country relation.
    city_dist = np.hypot(home[:, None, 0] - cat.CITY_XY[None, :, 0], home[:, None, 1] - cat.CITY_XY[None, :, 1])
    foreign = cat.CITY_COUNTRY[None, :] != home_country[:, None]
    shop = has_shop(merchants, np.arange(cat.N_CITIES)[None, :], category[:, None])
    fit = np.where(shop & (foreign == mismatch[:, None]), np.abs(city_dist - distance[:, None]), np.inf)
    city = np.argmin(fit, axis=1)
    card_present = want_cp & np.isfinite(fit[np.arange(n), city])

    merchant = pick_merchant(merchants, card_present.astype(np.int8), city, category, rng.random(n), by_risk=True)

    # Online: a point at the asked distance from home, in the one of N_ANGLES directions (random start) whose
    # point, once kept on the map, is in the asked country and nearest the asked distance; when no direction gives
    # the asked country, the nearest foreign city (mismatch asked) or home (match asked).
    start = rng.random(n) * 2 * np.pi
    angles = start[:, None] + np.arange(N_ANGLES)[None, :] * (2 * np.pi / N_ANGLES)
    px = np.clip(home[:, 0:1] + distance[:, None] * np.cos(angles), 0.0, cat.MAP_WIDTH_KM)
    py = np.clip(home[:, 1:2] + distance[:, None] * np.sin(angles), 0.0, cat.MAP_HEIGHT_KM)
    ok = (cat.country_of(px, py) != home_country[:, None]) == mismatch[:, None]
    err = np.where(ok, np.abs(np.hypot(px - home[:, 0:1], py - home[:, 1:2]) - distance[:, None]), np.inf)
    best = np.argmin(err, axis=1)
    found = np.isfinite(err[np.arange(n), best])
    loc_x, loc_y = px[np.arange(n), best], py[np.arange(n), best]
    foreign_city = np.argmin(np.where(foreign, city_dist, np.inf), axis=1)
    loc_x = np.where(found, loc_x, np.where(mismatch, cat.CITY_XY[foreign_city, 0], home[:, 0]))
    loc_y = np.where(found, loc_y, np.where(mismatch, cat.CITY_XY[foreign_city, 1], home[:, 1]))
    loc_x = np.where(card_present, merchants.xy[merchant, 0], loc_x)
    loc_y = np.where(card_present, merchants.xy[merchant, 1], loc_y)

    fresh = col("new_device", 1.0) >= 0.5
    fresh_ids = (fresh_devices or world.state.allocate_devices)(n)
    device = np.where(fresh, np.asarray(fresh_ids, np.int64), np.asarray(card_device, np.int64))
    device = np.where(card_present, NO_DEVICE, device)
    return pl.DataFrame({
        "customer_id": pl.Series(customer, dtype=pl.Int32),
        "timestamp": pl.Series(np.asarray(timestamp, np.int64), dtype=pl.Int64),
        "merchant_id": pl.Series(merchant, dtype=pl.Int32),
        "device_id": pl.Series(device, dtype=pl.Int32),
        "amount": pl.Series(amount, dtype=pl.Float64),
        "card_present": pl.Series(card_present.astype(np.int8), dtype=pl.Int8),
        "fraud_type": pl.Series(np.broadcast_to(np.asarray(fraud_type, np.int8), (n,)), dtype=pl.Int8),
        "loc_x": pl.Series(loc_x, dtype=pl.Float64),
        "loc_y": pl.Series(loc_y, dtype=pl.Float64),
    })


def probe_times(day: int, hour: np.ndarray, group: np.ndarray, gap_s: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Timestamps inside ``hour`` of ``day``: the probes of one group (an agent) in the same hour follow each other
    ``gap_s`` seconds apart (with jitter), from a random start, wrapping inside the hour."""
    n = len(hour)
    if n == 0:
        return np.zeros(0, np.int64)
    hour = np.clip(np.round(hour), 0, 23).astype(np.int64)
    key = group.astype(np.int64) * 24 + hour
    order = np.argsort(key, kind="stable")
    ks = key[order]
    first = np.r_[True, ks[1:] != ks[:-1]]
    starts = np.flatnonzero(first)
    rank = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    start = rng.integers(0, 3600, size=len(starts))
    offset = np.repeat(start, np.diff(np.r_[starts, n])) + rank * gap_s[order] * rng.uniform(0.7, 1.3, n)
    seconds = np.empty(n, np.int64)
    seconds[order] = np.mod(offset.astype(np.int64), 3600)
    return day * cat.SECONDS_PER_DAY + hour * cat.SECONDS_PER_HOUR + seconds
