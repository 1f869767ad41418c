import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from simulator.errors import BudgetExceeded
from simulator.kernels import get_kernels
from simulator.oracle import Oracle
from simulator.schema import FeatureSchema
from simulator.store import QueryLog


class LinearModel:
    """A real (if tiny) scoring function: the oracle only needs predict_score."""

    def predict_score(self, X):
        return 1 / (1 + np.exp(-(X[:, 0] - 5)))


SA = FeatureSchema.from_mapping(["x", "y"], {"x": {"min": 0, "max": 10}}).arrays()


def make(budget=5, feedback="score", n_targets=3, log=None):
    X0 = np.column_stack([np.full(n_targets, 8.0), np.arange(n_targets, dtype=float)])
    return Oracle(LinearModel(), threshold=0.5, feedback=feedback, budget=budget, originals=X0, schema_arrays=SA,
                  kernels=get_kernels("cpu"), strategy="t", target_ids=np.arange(n_targets) + 100, log=log), X0


@settings(max_examples=50, deadline=None)
@given(budget=st.integers(1, 20), asks=st.lists(st.lists(st.integers(0, 2), max_size=8), max_size=12))
def test_budget_is_never_exceeded(budget, asks):
    oracle, X0 = make(budget)
    for batch in asks:
        t = np.array(batch, dtype=np.int64)
        X = X0[t] if len(t) else np.empty((0, 2))
        would_exceed = (oracle.used + np.bincount(t, minlength=3) > budget).any()
        if would_exceed:
            used_before = oracle.used.copy()
            with pytest.raises(BudgetExceeded):
                oracle.query(t, X)
            np.testing.assert_array_equal(oracle.used, used_before)  # nothing charged, nothing scored
        else:
            oracle.query(t, X)
        assert (oracle.used <= budget).all()


def test_feedback_modes_and_logging():
    log = QueryLog(None, "run")
    oracle, X0 = make(budget=4, feedback="decision", log=log)
    fb = oracle.query(np.array([0, 0, 1]), np.array([[8.0, 0.0], [2.0, 0.0], [9.0, 1.0]]))
    assert fb.score is None and fb.declined.tolist() == [True, False, True]
    ch = log._chunks[0]
    assert ch["query_index"].tolist() == [1, 2, 1] and ch["target_id"].tolist() == [100, 100, 101]
    assert ch["score"][1] == pytest.approx(1 / (1 + np.exp(3)))  # the true score is logged even if not shown
    fb = oracle.query(np.array([0]), np.array([[3.0, 0.0]]))
    assert log._chunks[1]["query_index"].tolist() == [3]
    oracle_s, _ = make(feedback="score")
    assert oracle_s.query(np.array([2]), np.array([[5.0, 2.0]])).score.tolist() == [0.5]


def test_invalid_candidates_are_refused():
    oracle, X0 = make()
    with pytest.raises(ValueError, match="break the constraints"):
        oracle.query(np.array([0]), np.array([[11.0, 0.0]]))  # x above its max
    with pytest.raises(ValueError, match="break the constraints"):
        oracle.query(np.array([1]), np.array([[5.0, 7.0]]))  # y is frozen
    assert oracle.used.sum() == 0
