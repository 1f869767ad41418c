"""Populations as struct-of-arrays: one row per customer, merchant or fraudster, never one object.

Built once from a seed. Everything here is fixed for the life of a world; what changes from day
to day (trips, new phones) lives in :class:`simulator.world.behaviour.WorldState`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from simulator.world import catalogue as cat

#: Most devices a customer keeps on record at once (a new phone beyond that replaces the oldest).
MAX_DEVICES = 4

#: Fraudster behaviours (the ``fraud_type`` codes of the output).
LEGIT, CARD_TESTING, ACCOUNT_TAKEOVER, STOLEN_CARD_BURST, FRIENDLY_FRAUD = 0, 1, 2, 3, 4
FRAUD_TYPES: dict[int, str] = {
    LEGIT: "legit",
    CARD_TESTING: "card_testing",
    ACCOUNT_TAKEOVER: "account_takeover",
    STOLEN_CARD_BURST: "stolen_card_burst",
    FRIENDLY_FRAUD: "friendly_fraud",
}
#: Share of fraudster agents of each behaviour, and how many attacks per day an average one runs.
FRAUDSTER_MIX = {CARD_TESTING: 0.25, ACCOUNT_TAKEOVER: 0.28, STOLEN_CARD_BURST: 0.30, FRIENDLY_FRAUD: 0.17}
FRAUDSTER_ATTACKS_PER_DAY = {CARD_TESTING: 1.1, ACCOUNT_TAKEOVER: 1.9, STOLEN_CARD_BURST: 1.5, FRIENDLY_FRAUD: 7.5}


def _cumulative(weights: np.ndarray) -> np.ndarray:
    return np.cumsum(weights, dtype=np.float64)


@njit(cache=True, nogil=True)
def sample_in_ranges(cumulative: np.ndarray, lo: np.ndarray, hi: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Weighted draw of one position in each half-open range ``[lo, hi)`` of a weight array.

    ``cumulative`` is the running sum of the weights; ``u`` are uniforms in [0, 1). One binary
    search inside each range, so picking merchants for a day of transactions is a single pass.
    Ranges must be non-empty.
    """
    out = np.empty(len(u), np.int64)
    for i in range(len(u)):
        a = lo[i]
        b = hi[i] - 1
        before = cumulative[a - 1] if a > 0 else 0.0
        target = before + u[i] * (cumulative[b] - before)
        while a < b:  # first position in [lo, hi-1] whose running sum exceeds the target
            mid = (a + b) // 2
            if cumulative[mid] > target:
                b = mid
            else:
                a = mid + 1
        out[i] = a
    return out


@njit(cache=True, nogil=True)
def draw_from_rows(cdf: np.ndarray, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Column index drawn from row ``rows[i]`` of a table of cumulative distributions, for each ``u[i]``."""
    last = cdf.shape[1] - 1
    out = np.empty(len(u), np.int64)
    for i in range(len(u)):
        r = rows[i]
        k = 0
        while k < last and cdf[r, k] <= u[i]:
            k += 1
        out[i] = k
    return out


@dataclass(frozen=True, eq=False)
class Customers:
    """Card holders. Amounts are log-normal around ``exp(log_typical_amount)``."""

    home_xy: np.ndarray  # (n, 2) float64, km
    home_city: np.ndarray  # int16
    home_country: np.ndarray  # int8
    log_typical_amount: np.ndarray  # float64
    amount_sigma: np.ndarray  # float64
    profile_mean_amount: np.ndarray  # float64, expected legit amount under the customer's category mix
    hour_profile: np.ndarray  # int8 index into catalogue.HOUR_PROFILES
    card_present_habit: np.ndarray  # float64 multiplier on a category's in-person share
    category_cdf: np.ndarray  # (n, n_categories) float64, cumulative category preference
    device_start: np.ndarray  # int32, first of the customer's initially known device ids
    device_count: np.ndarray  # int8, 1..3
    account_age_days: np.ndarray  # int32, at simulation day 0
    credit_limit: np.ndarray  # float64
    daily_rate: np.ndarray  # float64, expected transactions per day (gamma mixed)
    micro_sessions_per_day: np.ndarray  # float64, bursts of in-app purchases (0 for most customers)
    by_city_order: np.ndarray  # int32 customer ids sorted by home city
    by_city_offsets: np.ndarray  # int64, n_cities + 1
    limit_cdf: np.ndarray  # float64 running sum of credit limits (ATO prefers rich victims)

    @property
    def n(self) -> int:
        return len(self.home_city)

    @property
    def device_total(self) -> int:
        return int(self.device_start[-1] + self.device_count[-1]) if self.n else 0


@dataclass(frozen=True, eq=False)
class Merchants:
    """Shops and web sites. Physical ones sit in a city; online ones only have a headquarters."""

    category: np.ndarray  # int8
    xy: np.ndarray  # (n, 2) float64
    country: np.ndarray  # int8
    city: np.ndarray  # int16, -1 for online merchants
    online: np.ndarray  # bool
    risk: np.ndarray  # float64 in (0, 1)
    popularity: np.ndarray  # float64 > 0
    physical_order: np.ndarray  # int32 ids of physical merchants sorted by (city, category)
    physical_offsets: np.ndarray  # int64, n_cities * n_categories + 1
    physical_popularity_cdf: np.ndarray  # float64 along physical_order
    physical_risk_cdf: np.ndarray
    online_order: np.ndarray  # int32 ids of online merchants sorted by category
    online_offsets: np.ndarray  # int64, n_categories + 1
    online_popularity_cdf: np.ndarray
    online_risk_cdf: np.ndarray

    @property
    def n(self) -> int:
        return len(self.category)


@dataclass(frozen=True, eq=False)
class Fraudsters:
    """Fraudster agents. Each runs one behaviour; friendly fraud agents own a cohort of customers."""

    kind: np.ndarray  # int8, one of CARD_TESTING..FRIENDLY_FRAUD
    xy: np.ndarray  # (n, 2) float64, where the fraudster operates from
    city: np.ndarray  # int16
    device_start: np.ndarray  # int32
    device_count: np.ndarray  # int8
    attacks_per_day: np.ndarray  # float64
    customer_cohort: np.ndarray  # int32 per customer: friendly-fraud agent owning it, or -1

    @property
    def n(self) -> int:
        return len(self.kind)


def build_customers(n: int, rng: np.random.Generator) -> Customers:
    """Draw ``n`` customers clustered in the catalogue's cities."""
    city = rng.choice(cat.N_CITIES, size=n, p=cat.CITY_POPULATION).astype(np.int16)
    spread = np.where(rng.random(n) < 0.85, 25.0, 120.0)  # town centre or suburbs / countryside
    home = cat.CITY_XY[city] + rng.normal(size=(n, 2)) * spread[:, None]
    cat.clip_to_map(home)
    country = cat.country_of(home[:, 0], home[:, 1])

    income_z = rng.normal(size=n)
    log_typical = np.log(35.0) + 0.55 * income_z
    sigma = rng.uniform(0.45, 0.85, size=n)
    preference = rng.dirichlet(cat.CATEGORY_PREFERENCE * 20.0, size=n)
    preference_cdf = np.cumsum(preference, axis=1)
    preference_cdf[:, -1] = 1.0
    # Expected amount under the customer's own category mix: the prior of the 30-day mean feature.
    profile_mean = (preference * np.exp(cat.CATEGORY_AMOUNT_LOG_OFFSET)[None, :]).sum(axis=1)
    profile_mean *= np.exp(log_typical + 0.5 * sigma**2)

    hour_profile = rng.choice(len(cat.HOUR_PROFILE_SHARE), size=n, p=cat.HOUR_PROFILE_SHARE).astype(np.int8)
    card_present_habit = rng.beta(6.0, 2.0, size=n) / 0.75
    device_count = rng.choice(np.array([1, 2, 3], dtype=np.int8), size=n, p=[0.35, 0.45, 0.20])
    device_start = (np.cumsum(device_count, dtype=np.int64) - device_count).astype(np.int32)

    young = rng.random(n) < 0.08
    age = np.where(young, rng.integers(0, 90, size=n), np.exp(rng.normal(np.log(1200.0), 0.7, size=n)))
    age = np.clip(age, 0, 9000).astype(np.int32)
    limit = np.exp(np.log(3000.0) + 0.8 * income_z + rng.normal(0.0, 0.35, size=n))
    limit = np.clip(np.round(limit / 100.0) * 100.0, 300.0, 50_000.0)
    rate = np.clip(rng.gamma(1.6, 2.0 / 1.6, size=n), 0.05, 25.0)
    # A few gamers buy in bursts of small digital items: legit traffic that looks like card testing.
    micro = np.where(rng.random(n) < 0.06, rng.uniform(0.1, 0.6, size=n), 0.0)

    order = np.argsort(city, kind="stable").astype(np.int32)
    offsets = np.searchsorted(city[order], np.arange(cat.N_CITIES + 1)).astype(np.int64)
    return Customers(
        home_xy=home,
        home_city=city,
        home_country=country,
        log_typical_amount=log_typical,
        amount_sigma=sigma,
        profile_mean_amount=profile_mean,
        hour_profile=hour_profile,
        card_present_habit=card_present_habit,
        category_cdf=preference_cdf,
        device_start=device_start,
        device_count=device_count,
        account_age_days=age,
        credit_limit=limit,
        daily_rate=rate,
        micro_sessions_per_day=micro,
        by_city_order=order,
        by_city_offsets=offsets,
        limit_cdf=_cumulative(limit),
    )


def build_merchants(n: int, rng: np.random.Generator) -> Merchants:
    """Draw ``n`` merchants; every (city, in-person category) cell and every online category gets some."""
    in_person_categories = np.flatnonzero(cat.CATEGORY_PHYSICAL_SHARE > 0)
    online_categories = np.flatnonzero(cat.CATEGORY_PHYSICAL_SHARE < 1)
    # Guaranteed rows first, so that every lookup range used by behaviour is non-empty.
    g_city = np.repeat(np.arange(cat.N_CITIES), len(in_person_categories))
    g_cat = np.tile(in_person_categories, cat.N_CITIES)
    o_cat = np.repeat(online_categories, 2)
    n_guaranteed = len(g_cat) + len(o_cat)
    if n < n_guaranteed:
        raise ValueError(
            f"WorldConfig.merchants must be at least {n_guaranteed} (one shop per city and category), got {n}"
        )

    n_rest = n - n_guaranteed
    r_cat = rng.choice(cat.N_CATEGORIES, size=n_rest, p=cat.CATEGORY_MERCHANT_SHARE)
    r_online = rng.random(n_rest) >= cat.CATEGORY_PHYSICAL_SHARE[r_cat]
    r_city = rng.choice(cat.N_CITIES, size=n_rest, p=cat.CITY_POPULATION)

    category = np.concatenate([g_cat, o_cat, r_cat]).astype(np.int8)
    online = np.concatenate([np.zeros(len(g_cat), bool), np.ones(len(o_cat), bool), r_online])
    home_city = np.concatenate([g_city, rng.choice(cat.N_CITIES, size=len(o_cat), p=cat.CITY_POPULATION), r_city])
    spread = np.where(rng.random(n) < 0.8, 20.0, 70.0)
    xy = cat.CITY_XY[home_city] + rng.normal(size=(n, 2)) * spread[:, None]
    cat.clip_to_map(xy)
    city = np.where(online, -1, home_city).astype(np.int16)
    risk = np.clip(cat.CATEGORY_RISK[category] + rng.normal(0.0, 0.12, size=n), 0.02, 0.98)
    popularity = rng.lognormal(0.0, 0.8, size=n)

    physical = np.flatnonzero(~online)
    cell = city[physical].astype(np.int64) * cat.N_CATEGORIES + category[physical]
    p_sort = np.argsort(cell, kind="stable")
    physical_order = physical[p_sort].astype(np.int32)
    physical_offsets = np.searchsorted(cell[p_sort], np.arange(cat.N_CITIES * cat.N_CATEGORIES + 1)).astype(np.int64)

    web = np.flatnonzero(online)
    o_sort = np.argsort(category[web], kind="stable")
    online_order = web[o_sort].astype(np.int32)
    online_offsets = np.searchsorted(category[online_order], np.arange(cat.N_CATEGORIES + 1)).astype(np.int64)

    return Merchants(
        category=category,
        xy=xy,
        country=cat.country_of(xy[:, 0], xy[:, 1]),
        city=city,
        online=online,
        risk=risk,
        popularity=popularity,
        physical_order=physical_order,
        physical_offsets=physical_offsets,
        physical_popularity_cdf=_cumulative(popularity[physical_order]),
        physical_risk_cdf=_cumulative(risk[physical_order] ** 2),
        online_order=online_order,
        online_offsets=online_offsets,
        online_popularity_cdf=_cumulative(popularity[online_order]),
        online_risk_cdf=_cumulative(risk[online_order] ** 2),
    )


def build_fraudsters(n: int, customers: Customers, first_device_id: int, rng: np.random.Generator) -> Fraudsters:
    """Draw ``n`` fraudster agents with the catalogue mix of behaviours (at least one of each when n >= 4)."""
    kinds = np.array(list(FRAUDSTER_MIX), dtype=np.int8)
    share = np.array(list(FRAUDSTER_MIX.values()))
    counts = np.floor(share * n).astype(np.int64)
    if n >= len(kinds):
        counts = np.maximum(counts, 1)
    while counts.sum() > n:  # only possible for tiny n
        counts[np.argmax(counts)] -= 1
    remainder = n - int(counts.sum())
    if remainder:
        counts += np.bincount(rng.choice(len(kinds), size=remainder, p=share), minlength=len(kinds))
    kind = np.repeat(kinds, counts)

    # Online fraud is run from anywhere, often abroad; in-person fraud needs the fraudster on site.
    foreign_city = np.flatnonzero(cat.CITY_COUNTRY != cat.HOME_COUNTRY)
    city = rng.choice(cat.N_CITIES, size=n, p=cat.CITY_POPULATION)
    abroad = (kind != STOLEN_CARD_BURST) & (rng.random(n) < 0.55)
    city[abroad] = rng.choice(foreign_city, size=int(abroad.sum()))
    xy = cat.CITY_XY[city] + rng.normal(size=(n, 2)) * 30.0
    cat.clip_to_map(xy)

    device_count = rng.integers(2, 7, size=n).astype(np.int8)
    device_start = (first_device_id + np.cumsum(device_count, dtype=np.int64) - device_count).astype(np.int32)
    base_rate = np.array([FRAUDSTER_ATTACKS_PER_DAY.get(int(k), 0.0) for k in kind])
    attacks = base_rate * rng.gamma(3.0, 1.0 / 3.0, size=n)

    # Friendly fraud agents stand for a cohort of dishonest customers who dispute their own purchases.
    cohort = np.full(customers.n, -1, dtype=np.int32)
    friendly = np.flatnonzero(kind == FRIENDLY_FRAUD)
    if len(friendly) and customers.n:
        cohort_size = max(20, customers.n // 150)
        members = rng.permutation(customers.n)[: min(customers.n, cohort_size * len(friendly))]
        cohort[members] = friendly[np.arange(len(members)) % len(friendly)]

    return Fraudsters(
        kind=kind,
        xy=xy,
        city=city.astype(np.int16),
        device_start=device_start,
        device_count=device_count,
        attacks_per_day=attacks,
        customer_cohort=cohort,
    )
