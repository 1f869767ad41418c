"""The world's clock: builds the populations once, then steps day by day into labelled, featured frames."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import polars as pl

from simulator.world import catalogue as cat
from simulator.world.behaviour import (
    RawEvents,
    WorldState,
    advance_lifecycle,
    fraud_events,
    legit_events,
    mark_friendly_fraud,
)
from simulator.world.features import StreamingPipeline
from simulator.world.population import (
    FRAUD_TYPES,
    Customers,
    Fraudsters,
    Merchants,
    build_customers,
    build_fraudsters,
    build_merchants,
)

FEATURES: tuple[str, ...] = (
    "amount",
    "hour",
    "merchant_cat",
    "distance_km",
    "txn_count_1h",
    "txn_count_24h",
    "amount_ratio_30d",
    "card_present",
    "new_device",
    "country_mismatch",
    "account_age_days",
    "credit_limit",
)
LABEL = "is_fraud"
DISTANCE_CAP_KM = 5000.0

#: Output columns and dtypes, in order.
SCHEMA: dict[str, type[pl.DataType]] = {
    "transaction_id": pl.Int64,
    "timestamp": pl.Int64,
    "day": pl.Int32,
    "customer_id": pl.Int32,
    "merchant_id": pl.Int32,
    "device_id": pl.Int32,
    "fraud_type": pl.Int8,
    "is_fraud": pl.Int8,
    "mean_amount_30d": pl.Float64,  # not a model feature: what amount_ratio_30d divides by (relations read it)
    "amount": pl.Float64,
    "hour": pl.Int32,
    "merchant_cat": pl.Int32,
    "distance_km": pl.Float64,
    "txn_count_1h": pl.Int32,
    "txn_count_24h": pl.Int32,
    "amount_ratio_30d": pl.Float64,
    "card_present": pl.Int8,
    "new_device": pl.Int8,
    "country_mismatch": pl.Int8,
    "account_age_days": pl.Int32,
    "credit_limit": pl.Float64,
}

#: Columns of the raw events :meth:`World.step` accepts in ``extra`` (``loc_x``/``loc_y`` optional).
EXTRA_COLUMNS = ("customer_id", "timestamp", "merchant_id", "device_id", "amount", "card_present", "fraud_type")


@dataclass(frozen=True)
class WorldConfig:
    """Size and fraud pressure of a world. Everything else is fixed by the catalogue and the seed."""

    customers: int = 20_000
    merchants: int = 2_000
    days: int = 30
    fraudsters: int = 60  # number of fraudster agents (mix of the 4 behaviours)
    fraud_rate_scale: float = 1.0  # multiplies how active fraudsters are

    def __post_init__(self) -> None:
        if self.customers < 1:
            raise ValueError(f"WorldConfig.customers must be >= 1, got {self.customers}")
        if self.days < 0:
            raise ValueError(f"WorldConfig.days must be >= 0, got {self.days}")
        if self.fraudsters < 0:
            raise ValueError(f"WorldConfig.fraudsters must be >= 0, got {self.fraudsters}")
        if not self.fraud_rate_scale >= 0:
            raise ValueError(f"WorldConfig.fraud_rate_scale must be >= 0, got {self.fraud_rate_scale}")


class World:
    """An agent-based card-transaction world, stepped one day at a time.

    Examples
    --------
    >>> world = World(WorldConfig(customers=500, merchants=200, days=2, fraudsters=8), seed=1)
    >>> day0 = world.step()
    >>> world.day
    1
    >>> day0.columns[:8]
    ['transaction_id', 'timestamp', 'day', 'customer_id', 'merchant_id', 'device_id', 'fraud_type', 'is_fraud']
    """

    def __init__(self, config: WorldConfig = WorldConfig(), seed: int = 0) -> None:
        self.config = config
        self.seed = seed
        population_seed, lifecycle_seed, legit_seed, fraud_seed = np.random.SeedSequence(seed).spawn(4)
        rng = np.random.default_rng(population_seed)
        self.customers: Customers = build_customers(config.customers, rng)
        self.merchants: Merchants = build_merchants(config.merchants, rng)
        self.fraudsters: Fraudsters = build_fraudsters(
            config.fraudsters, self.customers, self.customers.device_total, rng
        )
        first_free_device = int(self.customers.device_total + self.fraudsters.device_count.sum(dtype=np.int64))
        self.state = WorldState.initial(self.customers, first_free_device)
        self._lifecycle_rng = np.random.default_rng(lifecycle_seed)
        self._legit_rng = np.random.default_rng(legit_seed)
        self._fraud_rng = np.random.default_rng(fraud_seed)

        known_customer = np.repeat(np.arange(self.customers.n, dtype=np.int32), self.customers.device_count)
        known_device = (
            np.repeat(self.customers.device_start, self.customers.device_count)
            + np.arange(len(known_customer))
            - np.repeat(
                np.cumsum(self.customers.device_count, dtype=np.int64) - self.customers.device_count,
                self.customers.device_count,
            )
        ).astype(np.int32)
        self.pipeline = StreamingPipeline(
            self.customers.n, self.customers.profile_mean_amount, known_customer, known_device
        )
        self._day = 0
        self._next_transaction_id = 0
        self._pool: ThreadPoolExecutor | None = None
        #: (day, future of that day's own raw events), see prefetch()
        self._prefetched: tuple[int, Future[RawEvents]] | None = None

    @property
    def day(self) -> int:
        """The next day :meth:`step` will simulate (0 before the first step)."""
        return self._day

    def generate(self) -> pl.DataFrame:
        """The whole stream: :meth:`step` for each remaining day up to ``config.days``, concatenated.

        Same result as calling :meth:`step` in a loop, only faster (see :meth:`stream`).
        """
        frames = list(self.stream())
        if not frames:
            return pl.DataFrame(schema=SCHEMA)
        return pl.concat(frames, rechunk=False)  # one chunk per day; rechunking would only copy

    def stream(self) -> Iterator[pl.DataFrame]:
        """Yield each remaining day's transactions up to ``config.days``, one frame per day, as :meth:`step` would.

        Only the customers' state and the streaming pipeline's stay in memory, so a caller that writes each day
        away (``fraudsim generate`` to Parquet) makes worlds larger than memory. While the pipeline featurises
        day ``d`` (Numba, GIL released), a worker thread already simulates the raw events of day ``d + 1``. The
        two touch disjoint state (behaviour: world state and its generators; pipeline: its own state), so the
        output does not depend on the overlap.

        Examples
        --------
        >>> w = World(WorldConfig(customers=300, merchants=100, days=3, fraudsters=4), seed=2)
        >>> [int(f["day"].unique().item()) for f in w.stream()]
        [0, 1, 2]
        """
        days = range(self._day, self.config.days)
        if not days:
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="world-behaviour") as pool:
            upcoming = pool.submit(self._simulate_day, days[0], None)
            for day in days:
                events = upcoming.result()
                if day + 1 < days.stop:
                    upcoming = pool.submit(self._simulate_day, day + 1, None)
                yield self._finish_day(events)

    def step(self, extra: pl.DataFrame | None = None) -> pl.DataFrame:
        """Simulate the next day and return its transactions, features computed by the streaming pipeline.

        ``extra`` lets a campaign inject its own raw events into this day: columns
        ``customer_id, timestamp, merchant_id, device_id, amount, card_present, fraud_type`` and
        optionally ``loc_x, loc_y`` (default: the merchant for card present, else the customer's
        home). Timestamps must fall inside the day. They are featurised with everything else, so
        they move velocities, running means and known devices just like native events.
        """
        return self.step_injected(extra)[0]

    def step_injected(self, extra: pl.DataFrame | None = None) -> tuple[pl.DataFrame, np.ndarray]:
        """:meth:`step`, also returning where each ``extra`` event landed: ``rows[i]`` is the output row of
        ``extra`` row ``i`` (a campaign needs it to hand each probe's outcome back to the agent that sent it)."""
        injected = None if extra is None else self._extra_events(extra, self._day)  # validate before any change
        events, order = self._simulate_day_order(self._day, injected)
        n_injected = 0 if injected is None else len(injected)
        rows = np.empty(n_injected, np.int64)
        if n_injected:
            position = np.empty(len(order), np.int64)
            position[order] = np.arange(len(order))
            rows[:] = position[len(order) - n_injected :]
        return self._finish_day(events), rows

    def prefetch(self) -> None:
        """Start simulating the next day's own events (customers' shopping, fraudsters' attacks) on a worker
        thread; the next :meth:`step` or :meth:`step_injected` picks them up. The output is the same as without
        prefetching. Until that step, the caller must not touch ``state`` (the worker advances it) and must not
        allocate devices from it."""
        if self._prefetched is not None:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="world-prefetch")
        self._prefetched = (self._day, self._pool.submit(self._native_events, self._day))

    def _simulate_day(self, day: int, injected: RawEvents | None) -> RawEvents:
        """Raw events of ``day`` in time order (advances the world state and the behaviour generators)."""
        return self._simulate_day_order(day, injected)[0]

    def _native_events(self, day: int) -> RawEvents:
        advance_lifecycle(self.state, self.customers, day, self._lifecycle_rng)
        legit = legit_events(self.customers, self.merchants, self.state, day, self._legit_rng)
        scale = self.config.fraud_rate_scale
        mark_friendly_fraud(legit, self.customers, self.fraudsters, self._fraud_rng, scale)
        fraud = fraud_events(self.customers, self.merchants, self.fraudsters, self.state, day, self._fraud_rng, scale)
        return RawEvents.concat([legit, fraud])

    def _simulate_day_order(self, day: int, injected: RawEvents | None) -> tuple[RawEvents, np.ndarray]:
        if self._prefetched is not None:
            prefetched_day, future = self._prefetched
            self._prefetched = None
            if prefetched_day != day:  # cannot happen through the public methods
                raise RuntimeError(f"prefetched day {prefetched_day} but simulating day {day}")
            native = future.result()
        else:
            native = self._native_events(day)
        events = native if injected is None else RawEvents.concat([native, injected])
        # Time order; ties broken by customer, then by generation order (legit, fraud, injected).
        order = np.argsort((events.timestamp << 32) | events.customer.astype(np.int64), kind="stable")
        return events.take(order), order

    def _finish_day(self, events: RawEvents) -> pl.DataFrame:
        frame = self._featurise(events, self._day)
        self._day += 1
        return frame

    def _featurise(self, events: RawEvents, day: int) -> pl.DataFrame:
        n = len(events)
        stream = self.pipeline.process(events.customer, events.timestamp, events.amount, events.device)
        c = self.customers
        cust = events.customer
        distance = np.minimum(
            np.hypot(events.loc_x - c.home_xy[cust, 0], events.loc_y - c.home_xy[cust, 1]), DISTANCE_CAP_KM
        )
        country = cat.country_of(events.loc_x, events.loc_y)
        ids = np.arange(self._next_transaction_id, self._next_transaction_id + n, dtype=np.int64)
        self._next_transaction_id += n
        columns = {
            "transaction_id": ids,
            "timestamp": events.timestamp,
            "day": np.full(n, day, np.int32),
            "customer_id": cust,
            "merchant_id": events.merchant,
            "device_id": events.device,
            "fraud_type": events.fraud_type,
            "is_fraud": (events.fraud_type > 0).astype(np.int8),
            "mean_amount_30d": stream.mean_amount_30d,
            "amount": events.amount,
            "hour": ((events.timestamp % cat.SECONDS_PER_DAY) // cat.SECONDS_PER_HOUR).astype(np.int32),
            "merchant_cat": self.merchants.category[events.merchant].astype(np.int32),
            "distance_km": distance,
            "txn_count_1h": stream.txn_count_1h,
            "txn_count_24h": stream.txn_count_24h,
            "amount_ratio_30d": stream.amount_ratio_30d,
            "card_present": events.card_present,
            "new_device": stream.new_device,
            "country_mismatch": (country != c.home_country[cust]).astype(np.int8),
            "account_age_days": (c.account_age_days[cust] + day).astype(np.int32),
            "credit_limit": c.credit_limit[cust],
        }
        return pl.DataFrame({name: pl.Series(name, columns[name], dtype=dtype) for name, dtype in SCHEMA.items()})

    def _extra_events(self, extra: pl.DataFrame, day: int) -> RawEvents:
        missing = [col for col in EXTRA_COLUMNS if col not in extra.columns]
        if missing:
            raise ValueError(f"World.step(extra=...): missing columns {missing}")
        n = extra.height
        customer = extra["customer_id"].to_numpy().astype(np.int32)
        timestamp = extra["timestamp"].to_numpy().astype(np.int64)
        merchant = extra["merchant_id"].to_numpy().astype(np.int32)
        lo, hi = day * cat.SECONDS_PER_DAY, (day + 1) * cat.SECONDS_PER_DAY
        if n and (timestamp.min() < lo or timestamp.max() >= hi):
            raise ValueError(f"World.step(extra=...): timestamps must lie in day {day}, [{lo}, {hi})")
        if n and (customer.min() < 0 or customer.max() >= self.customers.n):
            raise ValueError("World.step(extra=...): customer_id out of range")
        if n and (merchant.min() < 0 or merchant.max() >= self.merchants.n):
            raise ValueError("World.step(extra=...): merchant_id out of range")
        card_present = extra["card_present"].to_numpy().astype(np.int8)
        if "loc_x" in extra.columns and "loc_y" in extra.columns:
            loc_x = extra["loc_x"].to_numpy().astype(np.float64)
            loc_y = extra["loc_y"].to_numpy().astype(np.float64)
        else:
            default = np.where(
                card_present[:, None] == 1, self.merchants.xy[merchant], self.customers.home_xy[customer]
            )
            loc_x, loc_y = default[:, 0].copy(), default[:, 1].copy()
        return RawEvents(
            customer=customer,
            timestamp=timestamp,
            merchant=merchant,
            device=extra["device_id"].to_numpy().astype(np.int32),
            amount=np.round(extra["amount"].to_numpy().astype(np.float64), 2),
            card_present=card_present,
            loc_x=loc_x,
            loc_y=loc_y,
            fraud_type=extra["fraud_type"].to_numpy().astype(np.int8),
        )


def default_feature_specs() -> dict[str, dict]:
    """What a fraudster can change in the default scenario, in the scenario-file shape.

    Velocities, the amount ratio, account age and credit limit are frozen: they come from the
    stream and the account, not from the attacker's choices for one transaction.
    """
    return {
        "amount": {"type": "continuous", "min": 0.5, "max": 20000.0, "cost": 1.0},
        "hour": {"type": "integer", "min": 0, "max": 23, "cost": 0.5},
        "merchant_cat": {"type": "categorical", "categories": list(range(cat.N_CATEGORIES)), "cost": 0.5},
        "distance_km": {"type": "continuous", "min": 0.0, "max": DISTANCE_CAP_KM, "cost": 1.0},
        "country_mismatch": {"type": "binary", "direction": "decrease", "cost": 0.5},
        "new_device": {"type": "binary", "direction": "decrease", "cost": 1.0},
        "card_present": {"type": "binary", "direction": "increase", "cost": 2.0},
    }


__all__ = ["FEATURES", "FRAUD_TYPES", "LABEL", "SCHEMA", "World", "WorldConfig", "default_feature_specs"]
