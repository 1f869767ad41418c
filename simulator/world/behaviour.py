"""One day of raw events, vectorised: legit shopping, the fraudsters' attacks, friendly-fraud disputes.

Every function here takes the populations, the mutable :class:`WorldState` and a
``numpy.random.Generator`` and returns :class:`RawEvents` (unsorted, no model features yet): the
world sorts them by time and hands them to the streaming pipeline in
:mod:`simulator.world.features`. Draws happen in whole-day arrays, so the cost of a day is a few
dozen NumPy calls whatever the population size.

Realism knobs that keep fraud from being trivially separable live here: legit customers travel
(far away, abroad), buy new phones and borrow devices, shop at night, use VPNs and make big one-off
purchases; some fraud happens near the victim's home, through a proxy, or on a stolen known device,
and friendly fraud is an ordinary purchase that is disputed later.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from simulator.world import catalogue as cat
from simulator.world.population import (
    ACCOUNT_TAKEOVER,
    CARD_TESTING,
    FRIENDLY_FRAUD,
    MAX_DEVICES,
    STOLEN_CARD_BURST,
    Customers,
    Fraudsters,
    Merchants,
    draw_from_rows,
    sample_in_ranges,
)

#: Device id of a card-present transaction: the physical card is read at the terminal, no device.
NO_DEVICE = -1

# Legit lifecycle and habits (per customer-day or per transaction probabilities).
TRIP_START_PER_DAY = 0.012
TRIP_FOREIGN_BOOST = 2.5
NEW_PHONE_PER_DAY = 0.002
BORROWED_DEVICE_SHARE = 0.01
VPN_SHARE = 0.015
DAY_TRIP_SHARE = 0.03
FOLLOW_UP_SHARE = 0.2  # purchases made minutes after the previous one (shopping trips)
FOLLOW_UP_MEAN_S = 900.0
BIG_PURCHASE_SHARE = 0.006
WEEKEND_FACTOR, WEEKDAY_FACTOR = 1.15, 0.95

# Fraud behaviour tables: category mixes, burst lengths and gaps.
ATO_CATEGORIES = np.array([cat.ELECTRONICS, cat.JEWELLERY, cat.TRAVEL, cat.DIGITAL_GOODS, cat.ONLINE_RETAIL])
ATO_CATEGORY_P = np.array([0.35, 0.20, 0.25, 0.10, 0.10])
BURST_CATEGORIES = np.array(
    [cat.ELECTRONICS, cat.JEWELLERY, cat.GROCERY, cat.FUEL, cat.RESTAURANTS, cat.GAMBLING, cat.ONLINE_RETAIL]
)
BURST_CATEGORY_P = np.array([0.25, 0.12, 0.18, 0.15, 0.10, 0.10, 0.10])
MEAN_GAP_S = {CARD_TESTING: 75.0, ACCOUNT_TAKEOVER: 1200.0, STOLEN_CARD_BURST: 1500.0}
PROXY_NEAR_VICTIM = {CARD_TESTING: 0.4, ACCOUNT_TAKEOVER: 0.35, STOLEN_CARD_BURST: 0.2}
ATO_KNOWN_DEVICE_SHARE = 0.2
BURST_CARD_PRESENT_SHARE = 0.6
LOCAL_BURST_SHARE = 0.5
CASH_OUT_SHARE = 0.35
FRIENDLY_DISPUTE_ONLINE_WEIGHT = 2.0


@dataclass(eq=False)
class RawEvents:
    """A batch of transactions before features: one array per field, all the same length."""

    customer: np.ndarray  # int32
    timestamp: np.ndarray  # int64, seconds since simulation start
    merchant: np.ndarray  # int32
    device: np.ndarray  # int32, NO_DEVICE for card present
    amount: np.ndarray  # float64, rounded to cents
    card_present: np.ndarray  # int8
    loc_x: np.ndarray  # float64, where the transaction happened (merchant, or buyer's IP location)
    loc_y: np.ndarray
    fraud_type: np.ndarray  # int8

    def __len__(self) -> int:
        return len(self.customer)

    @classmethod
    def concat(cls, parts: list[RawEvents]) -> RawEvents:
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)})

    def take(self, index: np.ndarray) -> RawEvents:
        return RawEvents(**{f.name: getattr(self, f.name)[index] for f in fields(self)})


@dataclass(eq=False)
class WorldState:
    """What changes between days: trips in progress and the devices customers currently own."""

    trip_until: np.ndarray  # int32, first day the customer is home again (<= day: at home)
    trip_city: np.ndarray  # int16
    trip_xy: np.ndarray  # (n, 2) float64
    devices: np.ndarray  # (n, MAX_DEVICES) int32, -1 padded
    device_count: np.ndarray  # int8
    primary_slot: np.ndarray  # int8
    next_device_id: int

    @classmethod
    def initial(cls, customers: Customers, next_device_id: int) -> WorldState:
        n = customers.n
        slots = np.arange(MAX_DEVICES)
        devices = np.where(
            slots[None, :] < customers.device_count[:, None], customers.device_start[:, None] + slots[None, :], -1
        ).astype(np.int32)
        return cls(
            trip_until=np.zeros(n, np.int32),
            trip_city=customers.home_city.copy(),
            trip_xy=customers.home_xy.copy(),
            devices=devices,
            device_count=customers.device_count.copy(),
            primary_slot=np.zeros(n, np.int8),
            next_device_id=int(next_device_id),
        )

    def allocate_devices(self, k: int) -> np.ndarray:
        """Fresh device ids, never used by anyone before."""
        ids = np.arange(self.next_device_id, self.next_device_id + k, dtype=np.int64)
        self.next_device_id += k
        if self.next_device_id >= np.iinfo(np.int32).max:
            raise OverflowError("device ids exhausted int32")
        return ids.astype(np.int32)


def _segment_starts(counts: np.ndarray) -> np.ndarray:
    return np.cumsum(counts) - counts


def advance_lifecycle(state: WorldState, customers: Customers, day: int, rng: np.random.Generator) -> None:
    """Start trips and hand out new phones for ``day`` (in place)."""
    n = customers.n
    at_home = state.trip_until <= day
    starting = np.flatnonzero(at_home & (rng.random(n) < TRIP_START_PER_DAY))
    weights = cat.CITY_POPULATION * np.where(cat.CITY_COUNTRY != cat.HOME_COUNTRY, TRIP_FOREIGN_BOOST, 1.0)
    dest = rng.choice(cat.N_CITIES, size=len(starting), p=weights / weights.sum())
    home = customers.home_city[starting]
    dest = np.where(dest == home, (dest + 1) % cat.N_CITIES, dest)
    state.trip_city[starting] = dest
    state.trip_until[starting] = day + 1 + rng.geometric(0.3, size=len(starting))
    state.trip_xy[starting] = cat.CITY_XY[dest] + rng.normal(size=(len(starting), 2)) * 15.0
    cat.clip_to_map(state.trip_xy)

    buyers = np.flatnonzero(rng.random(n) < NEW_PHONE_PER_DAY)
    full = state.device_count[buyers] >= MAX_DEVICES
    slot = np.where(full, (state.primary_slot[buyers] + 1) % MAX_DEVICES, state.device_count[buyers])
    state.devices[buyers, slot] = state.allocate_devices(len(buyers))
    state.device_count[buyers] = np.minimum(state.device_count[buyers] + 1, MAX_DEVICES)
    state.primary_slot[buyers] = slot


def _pick_merchant(
    merchants: Merchants, card_present: np.ndarray, city: np.ndarray, category: np.ndarray, u: np.ndarray, by_risk: bool
) -> np.ndarray:
    """A physical merchant in ``city`` or an online one, of ``category``; by popularity or by risk."""
    merchant = np.empty(len(category), np.int32)
    cp = card_present.astype(bool)
    cell = city[cp].astype(np.int64) * cat.N_CATEGORIES + category[cp]
    cdf = merchants.physical_risk_cdf if by_risk else merchants.physical_popularity_cdf
    pos = sample_in_ranges(cdf, merchants.physical_offsets[cell], merchants.physical_offsets[cell + 1], u[cp])
    merchant[cp] = merchants.physical_order[pos]
    web = ~cp
    cdf = merchants.online_risk_cdf if by_risk else merchants.online_popularity_cdf
    c = category[web].astype(np.int64)
    pos = sample_in_ranges(cdf, merchants.online_offsets[c], merchants.online_offsets[c + 1], u[web])
    merchant[web] = merchants.online_order[pos]
    return merchant


def pick_merchant(
    merchants: Merchants, card_present: np.ndarray, city: np.ndarray, category: np.ndarray, u: np.ndarray, by_risk: bool
) -> np.ndarray:
    """Public twin of the merchant draw the behaviours use (campaigns turn probes into events with it).

    Card-present rows need a physical merchant of ``category`` in ``city`` (see :func:`has_shop`)."""
    return _pick_merchant(merchants, np.asarray(card_present, np.int8), np.asarray(city, np.int64),
                          np.asarray(category, np.int64), np.asarray(u, np.float64), by_risk)


def has_shop(merchants: Merchants, city: np.ndarray, category: np.ndarray) -> np.ndarray:
    """Whether ``city`` has a physical merchant of ``category`` (vectorised)."""
    cell = np.asarray(city, np.int64) * cat.N_CATEGORIES + np.asarray(category, np.int64)
    return merchants.physical_offsets[cell + 1] > merchants.physical_offsets[cell]


def legit_events(
    customers: Customers, merchants: Merchants, state: WorldState, day: int, rng: np.random.Generator
) -> RawEvents:
    """Every customer's ordinary shopping for ``day``."""
    n = customers.n
    travelling = state.trip_until > day
    day_factor = WEEKEND_FACTOR if day % 7 in (5, 6) else WEEKDAY_FACTOR
    counts = rng.poisson(customers.daily_rate * day_factor * np.where(travelling, 1.3, 1.0))
    cust = np.repeat(np.arange(n, dtype=np.int32), counts)
    m = len(cust)

    # When: preferred hours; a share follows the customer's previous purchase within minutes.
    hour_cdf = np.cumsum(cat.HOUR_PROFILES, axis=1)
    hour_cdf[:, -1] = 1.0
    hour = draw_from_rows(hour_cdf, customers.hour_profile[cust], rng.random(m))
    second = hour * cat.SECONDS_PER_HOUR + rng.integers(0, cat.SECONDS_PER_HOUR, size=m)
    follows = rng.random(m) < FOLLOW_UP_SHARE
    follows[_segment_starts(counts)[counts > 0]] = False
    prev = np.maximum(np.arange(m) - 1, 0)
    later = second[prev] + rng.exponential(FOLLOW_UP_MEAN_S, size=m).astype(np.int64)
    second = np.where(follows, later, second)
    timestamp = day * cat.SECONDS_PER_DAY + np.minimum(second, cat.SECONDS_PER_DAY - 1).astype(np.int64)

    # What: the customer's category mix, holidays lean on travel and restaurants, rare big buys.
    category = draw_from_rows(customers.category_cdf, cust, rng.random(m)).astype(np.int64)
    away = travelling[cust]
    holiday = away & (rng.random(m) < 0.25)
    category[holiday] = np.where(rng.random(int(holiday.sum())) < 0.4, cat.TRAVEL, cat.RESTAURANTS)
    big = rng.random(m) < BIG_PURCHASE_SHARE
    category[big] = rng.choice(np.array([cat.ELECTRONICS, cat.JEWELLERY, cat.TRAVEL]), size=int(big.sum()))

    card_present = (rng.random(m) < cat.CATEGORY_PHYSICAL_SHARE[category] * customers.card_present_habit[cust]).astype(
        np.int8
    )

    # Where: shops in the city the customer is in (sometimes a day trip), online from where they are.
    city = np.where(away, state.trip_city[cust], customers.home_city[cust]).astype(np.int64)
    day_trip = rng.random(m) < DAY_TRIP_SHARE
    city[day_trip] = rng.choice(cat.N_CITIES, size=int(day_trip.sum()), p=cat.CITY_POPULATION)
    merchant = _pick_merchant(merchants, card_present, city, category, rng.random(m), by_risk=False)
    here = np.where(away[:, None], state.trip_xy[cust], customers.home_xy[cust])
    here += rng.normal(size=(m, 2)) * 3.0
    vpn = rng.random(m) < VPN_SHARE
    here[vpn] = (
        cat.CITY_XY[rng.integers(0, cat.N_CITIES, size=int(vpn.sum()))] + rng.normal(size=(int(vpn.sum()), 2)) * 20.0
    )
    cp = card_present.astype(bool)
    loc = np.where(cp[:, None], merchants.xy[merchant], here)
    cat.clip_to_map(loc)

    # How much: log-normal around the customer's typical amount, capped by the credit limit.
    log_amount = (
        customers.log_typical_amount[cust]
        + cat.CATEGORY_AMOUNT_LOG_OFFSET[category]
        + customers.amount_sigma[cust] * rng.standard_normal(m)
    )
    log_amount += np.where(away, 0.25, 0.0) + np.where(big, rng.uniform(1.2, 2.8, size=m), 0.0)
    amount = _finish_amount(np.exp(log_amount), customers.credit_limit[cust])

    # With what: a known device (mostly the primary one), a borrowed one now and then, none in person.
    u = rng.random(m)
    slot = np.where(
        u < 0.7, state.primary_slot[cust], (rng.random(m) * state.device_count[cust]).astype(np.int64)
    ).astype(np.int64)
    device = state.devices[cust, slot]
    borrowed = ~cp & (rng.random(m) < BORROWED_DEVICE_SHARE)
    device[borrowed] = state.allocate_devices(int(borrowed.sum()))
    device[cp] = NO_DEVICE

    shopping = RawEvents(
        customer=cust,
        timestamp=timestamp,
        merchant=merchant,
        device=device.astype(np.int32),
        amount=amount,
        card_present=card_present,
        loc_x=loc[:, 0].copy(),
        loc_y=loc[:, 1].copy(),
        fraud_type=np.zeros(m, np.int8),
    )
    return RawEvents.concat([shopping, _micro_purchase_sessions(customers, merchants, state, day, rng)])


def _micro_purchase_sessions(
    customers: Customers, merchants: Merchants, state: WorldState, day: int, rng: np.random.Generator
) -> RawEvents:
    """In-app purchase bursts: several small digital-goods buys minutes apart on the customer's own phone."""
    sessions = rng.poisson(customers.micro_sessions_per_day)
    session_customer = np.repeat(np.arange(customers.n, dtype=np.int32), sessions)
    s = len(session_customer)
    if s == 0:
        return _empty_events()
    length = 2 + rng.poisson(2.0, size=s)
    hour_cdf = np.cumsum(cat.HOUR_PROFILES, axis=1)
    hour_cdf[:, -1] = 1.0
    hour = draw_from_rows(hour_cdf, customers.hour_profile[session_customer], rng.random(s))
    start = hour * cat.SECONDS_PER_HOUR + rng.integers(0, cat.SECONDS_PER_HOUR, size=s)
    category = np.full(s, cat.DIGITAL_GOODS, np.int64)
    shop = _pick_merchant(
        merchants,
        np.zeros(s, np.int8),
        customers.home_city[session_customer].astype(np.int64),
        category,
        rng.random(s),
        by_risk=False,
    )
    device = state.devices[session_customer, state.primary_slot[session_customer]]
    away = state.trip_until[session_customer] > day
    where = np.where(away[:, None], state.trip_xy[session_customer], customers.home_xy[session_customer])

    e = int(length.sum())
    ev = np.repeat(np.arange(s), length)
    first = _segment_starts(length)
    gap = np.where(np.arange(e) == first[ev], 0.0, rng.exponential(150.0, size=e))
    elapsed = np.cumsum(gap)
    offset = (elapsed - elapsed[first][ev]).astype(np.int64)
    start = np.maximum(np.minimum(start, cat.SECONDS_PER_DAY - 1 - offset[first + length - 1]), 0)
    price = rng.choice(np.array([0.99, 1.99, 2.99, 4.99, 9.99, 19.99]), size=e, p=[0.3, 0.25, 0.15, 0.15, 0.1, 0.05])
    loc = where[ev] + rng.normal(size=(e, 2)) * 3.0
    cat.clip_to_map(loc)
    cust = session_customer[ev]
    return RawEvents(
        customer=cust,
        timestamp=(day * cat.SECONDS_PER_DAY + np.minimum(start[ev] + offset, cat.SECONDS_PER_DAY - 1)).astype(
            np.int64
        ),
        merchant=shop[ev],
        device=device[ev].astype(np.int32),
        amount=_finish_amount(price, customers.credit_limit[cust]),
        card_present=np.zeros(e, np.int8),
        loc_x=loc[:, 0].copy(),
        loc_y=loc[:, 1].copy(),
        fraud_type=np.zeros(e, np.int8),
    )


def _finish_amount(amount: np.ndarray, credit_limit: np.ndarray) -> np.ndarray:
    """Round to cents within [0.5, min(20000, credit limit)]."""
    return np.round(np.clip(amount, 0.5, np.minimum(credit_limit, 20_000.0)), 2)


def fraud_events(
    customers: Customers,
    merchants: Merchants,
    fraudsters: Fraudsters,
    state: WorldState,
    day: int,
    rng: np.random.Generator,
    activity_scale: float = 1.0,
) -> RawEvents:
    """The attacks the card-testing, account-takeover and stolen-card fraudsters run on ``day``."""
    attacking = fraudsters.kind != FRIENDLY_FRAUD
    n_attacks = rng.poisson(fraudsters.attacks_per_day * activity_scale) * attacking
    agent = np.repeat(np.arange(fraudsters.n), n_attacks)
    kind = fraudsters.kind[agent]
    a = len(agent)
    if a == 0 or customers.n == 0:
        return _empty_events()
    is_ct, is_ato, is_sc = kind == CARD_TESTING, kind == ACCOUNT_TAKEOVER, kind == STOLEN_CARD_BURST

    # Victims: any card for testing, high limits for takeovers, often a neighbour for stolen cards.
    victim = rng.integers(0, customers.n, size=a)
    total_limit = customers.limit_cdf[-1]
    rich = np.searchsorted(customers.limit_cdf, rng.random(a) * total_limit, side="right")
    victim = np.where(is_ato, np.minimum(rich, customers.n - 1), victim)
    city = fraudsters.city[agent].astype(np.int64)
    lo, hi = customers.by_city_offsets[city], customers.by_city_offsets[city + 1]
    local = is_sc & (rng.random(a) < LOCAL_BURST_SHARE) & (hi > lo)
    neighbour = customers.by_city_order[np.minimum(lo + (rng.random(a) * (hi - lo)).astype(np.int64), customers.n - 1)]
    victim = np.where(local, neighbour, victim).astype(np.int32)

    # Per attack: burst length, start time, channel, device, where the buyer appears to be.
    length = np.where(
        is_ct,
        3 + rng.poisson(3.0, size=a),
        np.where(is_ato, 1 + rng.poisson(1.2, size=a), 2 + rng.poisson(1.8, size=a)),
    )
    hour_cdf = np.stack([np.cumsum(cat.FRAUD_HOURS_ONLINE), np.cumsum(cat.FRAUD_HOURS_IN_PERSON)])
    hour_cdf[:, -1] = 1.0
    hour = draw_from_rows(hour_cdf, is_sc.astype(np.int64), rng.random(a))
    start = hour * cat.SECONDS_PER_HOUR + rng.integers(0, cat.SECONDS_PER_HOUR, size=a)
    attack_cp = is_sc & (rng.random(a) < BURST_CARD_PRESENT_SHARE)
    pool_device = fraudsters.device_start[agent] + (rng.random(a) * fraudsters.device_count[agent]).astype(np.int32)
    known_device = state.devices[victim, state.primary_slot[victim]]
    attack_device = np.where(is_ato & (rng.random(a) < ATO_KNOWN_DEVICE_SHARE), known_device, pool_device)
    proxy_share = np.where(
        is_ct,
        PROXY_NEAR_VICTIM[CARD_TESTING],
        np.where(is_ato, PROXY_NEAR_VICTIM[ACCOUNT_TAKEOVER], PROXY_NEAR_VICTIM[STOLEN_CARD_BURST]),
    )
    proxy = rng.random(a) < proxy_share
    origin = np.where(
        proxy[:, None],
        customers.home_xy[victim] + rng.normal(size=(a, 2)) * 40.0,
        fraudsters.xy[agent] + rng.normal(size=(a, 2)) * 5.0,
    )
    test_category = np.where(rng.random(a) < 0.6, cat.DIGITAL_GOODS, cat.ONLINE_RETAIL)
    test_merchant = _pick_merchant(merchants, np.zeros(a, np.int8), city, test_category, rng.random(a), by_risk=True)
    cash_out = is_ct & (rng.random(a) < CASH_OUT_SHARE)

    # Expand attacks into events.
    e = int(length.sum())
    ev = np.repeat(np.arange(a), length)
    first = _segment_starts(length)
    k = np.arange(e) - first[ev]
    ev_kind = kind[ev]
    gap_mean = np.select(
        [ev_kind == CARD_TESTING, ev_kind == ACCOUNT_TAKEOVER],
        [MEAN_GAP_S[CARD_TESTING], MEAN_GAP_S[ACCOUNT_TAKEOVER]],
        MEAN_GAP_S[STOLEN_CARD_BURST],
    )
    gap = np.where(k == 0, 0.0, rng.exponential(1.0, size=e) * gap_mean)
    elapsed = np.cumsum(gap)
    offset = (elapsed - elapsed[first][ev]).astype(np.int64)
    span = offset[first + length - 1]
    start = np.maximum(np.minimum(start, cat.SECONDS_PER_DAY - 1 - span), 0)  # keep the burst inside the day
    timestamp = day * cat.SECONDS_PER_DAY + np.minimum(start[ev] + offset, cat.SECONDS_PER_DAY - 1)

    last_of_attack = k == length[ev] - 1
    ev_cash_out = cash_out[ev] & last_of_attack
    category = np.where(
        ev_kind == CARD_TESTING,
        test_category[ev],
        np.where(
            ev_kind == ACCOUNT_TAKEOVER,
            rng.choice(ATO_CATEGORIES, size=e, p=ATO_CATEGORY_P),
            rng.choice(BURST_CATEGORIES, size=e, p=BURST_CATEGORY_P),
        ),
    )
    category = np.where(ev_cash_out, cat.ELECTRONICS, category).astype(np.int64)
    # Card present needs a category that has shops (not online retail).
    card_present = (attack_cp[ev] & (cat.CATEGORY_PHYSICAL_SHARE[category] > 0)).astype(np.int8)
    merchant = _pick_merchant(merchants, card_present, city[ev], category, rng.random(e), by_risk=True)
    keep_tester = (ev_kind == CARD_TESTING) & ~ev_cash_out
    merchant = np.where(keep_tester, test_merchant[ev], merchant).astype(np.int32)

    ev_victim = victim[ev]
    z = rng.standard_normal(e)
    test_amount = rng.uniform(0.5, 5.0, size=e)
    cash_amount = np.exp(np.log(120.0) + 0.7 * z)
    ato_amount = np.exp(np.log(np.maximum(4.0 * customers.profile_mean_amount[ev_victim], 200.0)) + 0.6 * z)
    burst_amount = np.exp(np.log(80.0) + 0.6 * cat.CATEGORY_AMOUNT_LOG_OFFSET[category] + 0.6 * z)
    amount = np.select(
        [ev_cash_out, ev_kind == CARD_TESTING, ev_kind == ACCOUNT_TAKEOVER],
        [cash_amount, test_amount, ato_amount],
        burst_amount,
    )
    amount = _finish_amount(amount, customers.credit_limit[ev_victim])

    cp = card_present.astype(bool)
    device = np.where(cp, NO_DEVICE, attack_device[ev]).astype(np.int32)
    loc = np.where(cp[:, None], merchants.xy[merchant], origin[ev] + rng.normal(size=(e, 2)) * 2.0)
    cat.clip_to_map(loc)
    return RawEvents(
        customer=ev_victim,
        timestamp=timestamp.astype(np.int64),
        merchant=merchant,
        device=device,
        amount=amount,
        card_present=card_present,
        loc_x=loc[:, 0].copy(),
        loc_y=loc[:, 1].copy(),
        fraud_type=ev_kind.astype(np.int8),
    )


def mark_friendly_fraud(
    events: RawEvents,
    customers: Customers,
    fraudsters: Fraudsters,
    rng: np.random.Generator,
    activity_scale: float = 1.0,
) -> None:
    """Relabel some legit purchases of each friendly-fraud agent's cohort as disputed (in place).

    The purchase itself is untouched, which is the point: it looks exactly like the customer's
    normal shopping, so it is label noise to any model. Online and larger purchases are disputed
    a little more often, as in practice.
    """
    agent_of = fraudsters.customer_cohort[events.customer]
    candidates = np.flatnonzero((agent_of >= 0) & (events.fraud_type == 0))
    if len(candidates) == 0:
        return
    agent = agent_of[candidates]
    quota = rng.poisson(fraudsters.attacks_per_day * activity_scale) * (fraudsters.kind == FRIENDLY_FRAUD)
    size = events.amount[candidates] / customers.profile_mean_amount[events.customer[candidates]]
    weight = np.where(events.card_present[candidates] == 0, FRIENDLY_DISPUTE_ONLINE_WEIGHT, 1.0) * (
        1.0 + np.minimum(size, 4.0)
    )
    key = (
        rng.exponential(1.0, size=len(candidates)) / weight
    )  # exponential race = weighted sampling without replacement
    order = np.lexsort((key, agent))
    agent_sorted = agent[order]
    rank = np.arange(len(order)) - np.searchsorted(agent_sorted, agent_sorted, side="left")
    chosen = candidates[order[rank < quota[agent_sorted]]]
    events.fraud_type[chosen] = FRIENDLY_FRAUD


def _empty_events() -> RawEvents:
    return RawEvents(
        customer=np.zeros(0, np.int32),
        timestamp=np.zeros(0, np.int64),
        merchant=np.zeros(0, np.int32),
        device=np.zeros(0, np.int32),
        amount=np.zeros(0, np.float64),
        card_present=np.zeros(0, np.int8),
        loc_x=np.zeros(0, np.float64),
        loc_y=np.zeros(0, np.float64),
        fraud_type=np.zeros(0, np.int8),
    )
