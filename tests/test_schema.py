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
