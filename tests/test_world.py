"""Tests of simulator.world: reproducibility, schema, the streaming pipeline, fraud mix and learnability."""

from __future__ import annotations

import doctest

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import simulator.world.world as world_module
from simulator.world import FEATURES, FRAUD_TYPES, LABEL, SCHEMA, World, WorldConfig, default_feature_specs
from simulator.world.features import StreamingPipeline, reference_stream_features

SMALL = WorldConfig(customers=1_500, merchants=200, days=4, fraudsters=12)
MEDIUM = WorldConfig(customers=8_000, merchants=1_000, days=30, fraudsters=24)


@pytest.fixture(scope="module")
def small_frame() -> pl.DataFrame:
    return World(SMALL, seed=7).generate()


@pytest.fixture(scope="module")
def medium_frame() -> pl.DataFrame:
    return World(MEDIUM, seed=0).generate()


def roc_auc(label: np.ndarray, score: np.ndarray) -> float:
    """Mann-Whitney AUC with average ranks for ties (no scikit-learn in the core dependencies)."""
    label = np.asarray(label).astype(bool)
    order = np.argsort(score, kind="mergesort")
    _, inverse, counts = np.unique(np.asarray(score)[order], return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2.0
    ranks = np.empty(len(score))
    ranks[order] = average_rank[inverse]
    positives = int(label.sum())
    negatives = len(label) - positives
    return float((ranks[label].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def _pipeline(n_customers: int, known: list[tuple[int, int]] = (), prior: float = 10.0) -> StreamingPipeline:
    known_arr = np.array(known, dtype=np.int32).reshape(-1, 2)
    return StreamingPipeline(n_customers, np.full(n_customers, prior), known_arr[:, 0], known_arr[:, 1])


def _run(pipeline: StreamingPipeline, customer, timestamp, amount=None, device=None):
    n = len(customer)
    amount = np.full(n, 10.0) if amount is None else amount
    device = np.full(n, -1) if device is None else device
    return pipeline.process(np.asarray(customer), np.asarray(timestamp), np.asarray(amount, float), np.asarray(device))


# --------------------------------------------------------------------------------------------- reproducibility


def test_same_seed_same_frame_and_different_seed_differs(small_frame: pl.DataFrame) -> None:
    assert World(SMALL, seed=7).generate().equals(small_frame)
    assert not World(SMALL, seed=8).generate().equals(small_frame)


def test_generate_equals_concatenated_steps(small_frame: pl.DataFrame) -> None:
    world = World(SMALL, seed=7)
    days = [world.step() for _ in range(SMALL.days)]
    assert world.day == SMALL.days
    assert pl.concat(days).equals(small_frame)
    assert [d["day"].unique().to_list() for d in days] == [[i] for i in range(SMALL.days)]


# --------------------------------------------------------------------------------------------- schema and bounds


def test_columns_dtypes_and_order(small_frame: pl.DataFrame) -> None:
    assert list(small_frame.schema.items()) == list(SCHEMA.items())
    assert tuple(small_frame.columns[-len(FEATURES) :]) == FEATURES
    assert small_frame.columns[:8] == [
        "transaction_id",
        "timestamp",
        "day",
        "customer_id",
        "merchant_id",
        "device_id",
        "fraud_type",
        LABEL,
    ]
    assert FEATURES == (
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
    assert set(FRAUD_TYPES) == {0, 1, 2, 3, 4}


def test_bounds_and_ordering(small_frame: pl.DataFrame) -> None:
    f = small_frame
    assert f.null_count().sum_horizontal().item() == 0
    assert not any(f[c].is_nan().any() for c in f.columns if f[c].dtype == pl.Float64)
    assert f["transaction_id"].to_list() == list(range(f.height))
    assert f["timestamp"].diff().drop_nulls().min() >= 0
    assert (f["timestamp"] // 86_400 == f["day"].cast(pl.Int64)).all()
    assert f["hour"].min() >= 0 and f["hour"].max() <= 23
    assert f["merchant_cat"].min() >= 0 and f["merchant_cat"].max() <= 9
    for col in ("card_present", "new_device", "country_mismatch", LABEL):
        assert set(f[col].unique().to_list()) <= {0, 1}
    assert f["amount"].min() >= 0.5 and f["amount"].max() <= 20_000
    assert (f["amount"] * 100 - (f["amount"] * 100).round()).abs().max() < 1e-6
    assert f["distance_km"].min() >= 0 and f["distance_km"].max() <= 5000
    assert f["amount_ratio_30d"].min() > 0 and f["amount_ratio_30d"].max() <= 1000
    assert f["txn_count_1h"].min() >= 0 and (f["txn_count_1h"] <= f["txn_count_24h"]).all()
    assert ((f["fraud_type"] > 0).cast(pl.Int8) == f[LABEL]).all()
    # Card-present transactions carry no device and are never "new device".
    assert (f.filter(pl.col("card_present") == 1)["new_device"] == 0).all()


def test_feature_specs_cover_mutable_features() -> None:
    specs = default_feature_specs()
    assert set(specs) <= set(FEATURES)
    assert {"txn_count_1h", "txn_count_24h", "amount_ratio_30d", "account_age_days", "credit_limit"}.isdisjoint(specs)
    assert {spec["type"] for spec in specs.values()} <= {"continuous", "integer", "binary", "categorical"}
    assert specs["merchant_cat"]["categories"] == list(range(10))


def test_docstring_examples_run() -> None:
    assert doctest.testmod(world_module, raise_on_error=True).failed == 0


# --------------------------------------------------------------------------------------------- streaming pipeline


def test_numba_pipeline_equals_reference_on_a_world(small_frame: pl.DataFrame) -> None:
    world = World(SMALL, seed=7)  # same populations as the frame
    c = world.customers
    known_customer = np.repeat(np.arange(c.n), c.device_count)
    known_device = np.concatenate([np.arange(s, s + k) for s, k in zip(c.device_start, c.device_count, strict=True)])
    expected = reference_stream_features(
        small_frame["customer_id"].to_numpy(),
        small_frame["timestamp"].to_numpy(),
        small_frame["amount"].to_numpy(),
        small_frame["device_id"].to_numpy(),
        c.profile_mean_amount,
        known_customer,
        known_device,
    )
    np.testing.assert_array_equal(small_frame["txn_count_1h"].to_numpy(), expected.txn_count_1h)
    np.testing.assert_array_equal(small_frame["txn_count_24h"].to_numpy(), expected.txn_count_24h)
    np.testing.assert_array_equal(small_frame["new_device"].to_numpy(), expected.new_device)
    np.testing.assert_allclose(small_frame["amount_ratio_30d"].to_numpy(), expected.amount_ratio_30d, rtol=1e-12)


def test_velocity_counts_on_a_hand_built_stream() -> None:
    pipeline = _pipeline(3)
    # Customer 0: three transactions 10 minutes apart, then one exactly an hour after the first,
    # which has just left the hour (windows are (t - W, t]). Customer 1 interleaves on its own.
    out = _run(pipeline, [0, 1, 0, 0, 0, 1], [0, 100, 600, 1200, 3600, 3699])
    assert out.txn_count_1h.tolist() == [0, 0, 1, 2, 2, 1]
    assert out.txn_count_24h.tolist() == [0, 0, 1, 2, 3, 1]
    # Next day, as a new batch: exactly 24 h after t=600 that event has left the window.
    out = _run(pipeline, [0, 0, 1], [86_400 + 600, 86_400 + 3_600, 200_000])
    assert out.txn_count_24h.tolist() == [2, 1, 0]
    assert out.txn_count_1h.tolist() == [0, 1, 0]


def test_pipeline_rejects_out_of_order_batches() -> None:
    pipeline = _pipeline(1)
    _run(pipeline, [0], [1_000])
    with pytest.raises(ValueError):
        _run(pipeline, [0], [999])
    with pytest.raises(ValueError):
        _run(pipeline, [0, 0], [2_000, 1_500])


def test_new_device_first_use_only() -> None:
    pipeline = _pipeline(2, known=[(0, 7)])
    out = _run(pipeline, [0, 0, 0, 1, 0, 1, 0], [0, 10, 20, 30, 40, 50, 60], device=[7, 9, 9, 9, -1, 9, 3])
    # 7 was known before the simulation; 9 is new to customer 0 once, then new to customer 1 once.
    assert out.new_device.tolist() == [0, 1, 0, 1, 0, 0, 1]
    out = _run(pipeline, [0, 1], [100_000, 100_001], device=[3, 7])
    assert out.new_device.tolist() == [0, 1]


def test_amount_ratio_starts_from_profile_mean() -> None:
    pipeline = _pipeline(1, prior=20.0)
    out = _run(pipeline, [0, 0], [0, 0], amount=np.array([40.0, 40.0]))
    assert out.amount_ratio_30d[0] == pytest.approx(2.0)
    assert out.amount_ratio_30d[1] == pytest.approx(40.0 / ((3 * 20.0 + 40.0) / 4.0))


def test_fraudster_device_becomes_known_after_first_use(small_frame: pl.DataFrame) -> None:
    fraud = small_frame.filter(pl.col("device_id") >= 0)
    firsts = fraud.group_by(["customer_id", "device_id"]).agg(pl.col("new_device").sum().alias("new_uses"))
    assert firsts["new_uses"].max() <= 1


def test_injected_events_are_featurised_with_the_stream() -> None:
    world = World(SMALL, seed=3)
    world.step()
    day = world.day
    t0 = day * 86_400 + 3 * 3600
    extra = pl.DataFrame(
        {
            "customer_id": [5, 5, 5],
            "timestamp": [t0, t0 + 60, t0 + 120],
            "merchant_id": [0, 0, 0],
            "device_id": [999_999, 999_999, 999_999],
            "amount": [1.0, 2.0, 3.0],
            "card_present": [0, 0, 0],
            "fraud_type": [1, 1, 1],
        }
    )
    frame = world.step(extra=extra)
    injected = frame.filter(pl.col("device_id") == 999_999).sort("timestamp")
    assert injected.height == 3
    assert injected["new_device"].to_list() == [1, 0, 0]
    assert (injected["txn_count_1h"].diff().drop_nulls() == 1).all()
    assert injected["is_fraud"].to_list() == [1, 1, 1]
    with pytest.raises(ValueError):
        world.step(extra=extra)  # timestamps belong to the previous day now


def test_step_injected_returns_the_row_of_each_extra_event() -> None:
    world = World(SMALL, seed=4)
    day = world.day
    ts = day * 86_400 + np.array([50_000, 3_600, 3_600, 80_000])  # unsorted, with a tie
    extra = pl.DataFrame(
        {
            "customer_id": [7, 9, 2, 7],
            "timestamp": ts,
            "merchant_id": [1, 2, 3, 4],
            "device_id": [123_456, 123_457, 123_458, 123_459],
            "amount": [11.0, 22.0, 33.0, 44.0],
            "card_present": [0, 0, 0, 0],
            "fraud_type": [1, 2, 3, 1],
        }
    )
    frame, rows = world.step_injected(extra)
    got = frame[rows.tolist()]
    assert got["amount"].to_list() == [11.0, 22.0, 33.0, 44.0]
    assert got["customer_id"].to_list() == [7, 9, 2, 7]
    assert got["device_id"].to_list() == [123_456, 123_457, 123_458, 123_459]
    assert frame["timestamp"].is_sorted()
    plain, none = World(SMALL, seed=4).step_injected(None)
    assert len(none) == 0 and plain.height > 0


_GAPS = st.one_of(
    st.sampled_from([0, 1, 599, 600, 3_599, 3_600, 3_601, 86_399, 86_400, 86_401]), st.integers(0, 100_000)
)


@settings(max_examples=60, deadline=None)
@given(
    events=st.lists(
        st.tuples(st.integers(0, 3), _GAPS, st.integers(-1, 4), st.floats(0.5, 5_000.0)), min_size=1, max_size=60
    ),
    cuts=st.lists(st.integers(1, 59), max_size=4),
)
def test_numba_pipeline_matches_reference_on_random_streams(events, cuts) -> None:
    customer = np.array([e[0] for e in events], np.int32)
    timestamp = np.cumsum([e[1] for e in events]).astype(np.int64)
    device = np.array([e[2] for e in events], np.int32)
    amount = np.round(np.array([e[3] for e in events]), 2)
    prior = np.array([10.0, 50.0, 200.0, 3.0])
    known = [(0, 0), (1, 1), (2, 4)]
    expected = reference_stream_features(
        customer, timestamp, amount, device, prior, np.array([k[0] for k in known]), np.array([k[1] for k in known])
    )
    pipeline = StreamingPipeline(4, prior, np.array([k[0] for k in known]), np.array([k[1] for k in known]))
    bounds = [0, *sorted({c for c in cuts if c < len(events)}), len(events)]
    parts = [
        pipeline.process(customer[a:b], timestamp[a:b], amount[a:b], device[a:b])
        for a, b in zip(bounds, bounds[1:], strict=False)
    ]
    np.testing.assert_array_equal(np.concatenate([p.txn_count_1h for p in parts]), expected.txn_count_1h)
    np.testing.assert_array_equal(np.concatenate([p.txn_count_24h for p in parts]), expected.txn_count_24h)
    np.testing.assert_array_equal(np.concatenate([p.new_device for p in parts]), expected.new_device)
    np.testing.assert_allclose(
        np.concatenate([p.amount_ratio_30d for p in parts]), expected.amount_ratio_30d, rtol=1e-12
    )


# --------------------------------------------------------------------------------------------- fraud


def test_all_fraud_types_occur_at_a_plausible_rate(medium_frame: pl.DataFrame) -> None:
    counts = dict(medium_frame.group_by("fraud_type").len().iter_rows())
    assert set(counts) == {0, 1, 2, 3, 4}
    rate = medium_frame[LABEL].mean()
    assert 0.003 <= rate <= 0.03


def test_fraud_is_not_trivially_separable(medium_frame: pl.DataFrame) -> None:
    legit = medium_frame.filter(pl.col(LABEL) == 0)
    # Risky-looking legit traffic exists ...
    assert legit["country_mismatch"].sum() > 0
    assert legit["new_device"].sum() > 0
    assert legit.filter(pl.col("hour") < 5).height > 0
    assert legit.filter(pl.col("amount_ratio_30d") > 10).height > 0
    # ... and so does normal-looking fraud.
    fraud = medium_frame.filter(pl.col(LABEL) == 1)
    assert fraud.filter((pl.col("distance_km") < 100) & (pl.col("new_device") == 0)).height > 0


@pytest.mark.slow  # about 40 s of CPU (a medium world and 200 rounds of XGBoost), 2 minutes on loaded cores
def test_xgboost_on_a_time_split_lands_in_the_target_auc(medium_frame: pl.DataFrame) -> None:
    xgb = pytest.importorskip("xgboost")
    cut = MEDIUM.days * 2 // 3
    train = medium_frame.filter(pl.col("day") < cut)
    test = medium_frame.filter(pl.col("day") >= cut)

    def matrix(frame: pl.DataFrame) -> np.ndarray:
        # C-contiguous float32: xgboost's fast path (column-major float64 is many times slower).
        return np.ascontiguousarray(frame.select(FEATURES).to_numpy(), dtype=np.float32)

    params = {
        "objective": "binary:logistic",
        "max_depth": 5,
        "eta": 0.1,
        "tree_method": "hist",
        "nthread": 2,
        "seed": 0,
    }
    booster = xgb.train(params, xgb.DMatrix(matrix(train), label=train[LABEL].to_numpy()), num_boost_round=200)
    score = booster.predict(xgb.DMatrix(matrix(test)))
    auc = roc_auc(test[LABEL].to_numpy(), score)
    assert 0.83 <= auc <= 0.97, auc
