import numpy as np
import polars as pl
import pytest

from simulator.errors import DataError, ScenarioError
from simulator.schema import Direction, FeatureSchema, Kind


def test_unlisted_features_are_frozen_and_order_follows_the_model():
    s = FeatureSchema.from_mapping(["b", "a", "c"], {"a": {"type": "binary", "direction": "decrease"}})
    assert s.names == ("b", "a", "c")
    assert [sp.mutable for sp in s] == [False, True, False]
    assert s["a"].kind == Kind.BINARY and s["a"].direction == Direction.DECREASE


def test_feature_missing_from_model_is_an_error():
    with pytest.raises(ScenarioError, match="features.zz: the model has no feature 'zz'"):
        FeatureSchema.from_mapping(["a"], {"zz": {}})


@pytest.mark.parametrize("raw, msg", [
    ({"type": "continuous", "min": 5, "max": 1}, "min .5. > max .1."),
    ({"type": "integer", "min": 0.5, "max": 3}, "whole number"),
    ({"type": "categorical"}, "non-empty 'categories'"),
    ({"type": "weird"}, "unknown type"),
    ({"direction": "up"}, "unknown direction"),
    ({"cost": -1}, "cost must be"),
])
def test_bad_specs(raw, msg):
    with pytest.raises(ScenarioError, match=msg):
        FeatureSchema.from_mapping(["a"], {"a": raw})


def test_bounds_filled_from_data_and_arrays():
    s = FeatureSchema.from_mapping(["a", "k"], {"a": {}, "k": {"type": "integer"}})
    with pytest.raises(ScenarioError, match="no min/max"):
        s.arrays()
    s = s.with_bounds_from(pl.DataFrame({"a": [1.5, 9.0], "k": [2.2, 7.9]}))
    a = s.arrays()
    assert a.lo.tolist() == [1.5, 2.0] and a.hi.tolist() == [9.0, 8.0]


def test_validate_frame_reports_file_field_and_reason():
    s = FeatureSchema.from_mapping(["a", "c"], {"a": {"min": 0, "max": 10}, "c": {"type": "categorical", "categories": [1, 2]}})
    s.validate_frame(pl.DataFrame({"a": [1.0, 2.0], "c": [1, 2]}))
    with pytest.raises(DataError, match=r"d.parquet: a: 1 infinite values"):
        s.validate_frame(pl.DataFrame({"a": [1.0, float("inf")], "c": [1, 2]}), source="d.parquet")
    with pytest.raises(DataError, match=r"c: 1 rows break the feature spec categorical \{1, 2\}"):
        s.validate_frame(pl.DataFrame({"a": [1.0, 2.0], "c": [1, 3]}))
    with pytest.raises(DataError, match="a: non-numeric"):
        s.validate_frame(pl.DataFrame({"a": ["x", "y"], "c": [1, 2]}))
    with pytest.raises(DataError, match="column 'c' is missing"):
        s.validate_frame(pl.DataFrame({"a": [1.0]}))
    with pytest.raises(DataError, match=r"a: 1 rows break .*value 11"):
        s.validate_frame(pl.DataFrame({"a": [1.0, 11.0], "c": [1, 2]}))


def test_missing_values_are_data():
    """NaN and null pass validation in frozen and mutable features (bounds are checked on present values only),
    and bounds taken from data ignore them."""
    s = FeatureSchema.from_mapping(["a", "c", "f"], {"a": {"min": 0, "max": 10}, "c": {"type": "categorical", "categories": [1, 2]}})
    s.validate_frame(pl.DataFrame({"a": [1.0, float("nan"), None], "c": [1, None, 2], "f": [None, float("nan"), 3.0]}))
    with pytest.raises(DataError, match=r"a: 1 rows break .*value 11"):
        s.validate_frame(pl.DataFrame({"a": [float("nan"), 11.0], "c": [1, 2], "f": [0.0, 0.0]}))
    with pytest.raises(DataError, match=r"f: 1 infinite"):
        s.validate_frame(pl.DataFrame({"a": [1.0, 2.0], "c": [1, 2], "f": [float("-inf"), None]}))
    b = FeatureSchema.from_mapping(["m", "z"], {"m": {"type": "integer"}}).with_bounds_from(
        pl.DataFrame({"m": [float("nan"), 2.5, None, 7.0], "z": [None, None, None, None]}, schema={"m": pl.Float64, "z": pl.Float64}))
    a = b.arrays()
    assert a.lo.tolist() == [2.0, 0.0] and a.hi.tolist() == [7.0, 0.0]  # all-null frozen z: a harmless [0, 0]
    with pytest.raises(ScenarioError, match="features.m: no min/max for 'm' and the data has no value"):
        FeatureSchema.from_mapping(["m"], {"m": {}}).with_bounds_from(pl.DataFrame({"m": [None, None]}, schema={"m": pl.Float64}))
    FeatureSchema.from_mapping(["m"], {"m": {"min": 0, "max": 1}}).with_bounds_from(
        pl.DataFrame({"m": [None, None]}, schema={"m": pl.Float64})).arrays()  # given bounds need no data


# -- cost_scale: what a numeric feature's cost is per --------------------------------------------------------------
def _cost(schema, x, x0):
    from simulator.kernels import get_kernels, reference

    sa = schema.arrays()
    X, X0 = np.atleast_2d(np.asarray(x, float)), np.atleast_2d(np.asarray(x0, float))
    cpu = get_kernels("cpu").cost(X, X0, np.zeros(len(X), np.int64), sa)
    np.testing.assert_allclose(cpu, reference.cost(X, X0, np.zeros(len(X), np.int64), sa))  # one meaning everywhere
    return cpu


def test_cost_scale_range_iqr_and_unit():
    # 'Distance Km' has a long tail: range 0-5000, but half the rows lie between 10 and 60 km
    rng = np.random.default_rng(0)
    d = np.r_[rng.uniform(10, 60, 1000), 5000.0, 0.0]
    q1, q3 = np.quantile(d, [0.25, 0.75])
    frame = pl.DataFrame({"Distance Km": d, "SELECT": np.arange(len(d)) % 24})
    specs = {"Distance Km": {"cost": 2.0}, "SELECT": {"type": "integer", "min": 0, "max": 23, "cost": 0.5}}
    x0, x = [20.0, 3.0], [57.0, 5.0]
    rng_ = FeatureSchema.from_mapping(["Distance Km", "SELECT"], specs).with_bounds_from(frame)
    iqr = FeatureSchema.from_mapping(["Distance Km", "SELECT"], specs, cost_scale="iqr").with_bounds_from(frame)
    unit = FeatureSchema.from_mapping(["Distance Km", "SELECT"], specs, cost_scale="unit").with_bounds_from(frame)
    assert _cost(rng_, x, x0)[0] == pytest.approx(2.0 * 37 / 5000 + 0.5 * 2 / 23)  # as before: per range
    assert _cost(iqr, x, x0)[0] == pytest.approx(2.0 * 37 / (q3 - q1) + 0.5 * 2 / 12, rel=1e-6)
    assert _cost(unit, x, x0)[0] == pytest.approx(2.0 * 37 + 0.5 * 2)
    assert iqr.arrays().scale.tolist() == pytest.approx([q3 - q1, 12.0], rel=1e-6)
    assert "(iqr)" in iqr["Distance Km"].describe()


def test_cost_scale_per_feature_overrides_the_default_and_flags_keep_their_cost():
    frame = pl.DataFrame({"amount": [0.0, 10.0, 20.0, 30.0, 1000.0], "flag": [0, 1, 0, 1, 0]})
    s = FeatureSchema.from_mapping(["amount", "flag"], {"amount": {"cost_scale": "unit"},
                                   "flag": {"type": "binary", "cost": 3.0}}, cost_scale="iqr").with_bounds_from(frame)
    assert _cost(s, [[15.0, 1.0]], [[10.0, 0.0]])[0] == pytest.approx(5.0 + 3.0)


def test_cost_scale_iqr_of_zero_falls_back_to_the_range():
    frame = pl.DataFrame({"n": [0.0] * 20 + [4.0, 8.0]})
    s = FeatureSchema.from_mapping(["n"], {"n": {}}, cost_scale="iqr").with_bounds_from(frame)
    assert s.arrays().scale.tolist() == [8.0]


@pytest.mark.parametrize("mapping, default, field", [
    ({"a": {"cost_scale": "log"}}, "range", "features.a.cost_scale"),
    ({"a": {}}, "stdev", "cost_scale"),
])
def test_unknown_cost_scale_names_the_field(mapping, default, field):
    with pytest.raises(ScenarioError, match="unknown cost_scale") as err:
        FeatureSchema.from_mapping(["a"], mapping, cost_scale=default)
    assert err.value.field == field


def test_cost_scale_iqr_without_data_is_refused():
    s = FeatureSchema.from_mapping(["a"], {"a": {"min": 0, "max": 10}}, cost_scale="iqr")
    with pytest.raises(ScenarioError, match="needs data") as err:
        s.arrays()
    assert err.value.field == "features.a.cost_scale"
