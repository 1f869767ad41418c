"""The oracle's fused check (``Kernels.admit``: query numbers, violations, cost and counts in one pass) agrees with
the NumPy reference and with the separate kernels, on any input; the oracle raises the same errors through it."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from simulator.errors import BudgetExceeded
from simulator.kernels import cpu, get_kernels, gpu, reference
from simulator.oracle import Oracle

from .test_kernels import D, SA, nan_shares, valid_originals, wild


@settings(max_examples=100, deadline=None)
@given(X=hnp.arrays(np.float64, st.tuples(st.integers(1, 30), st.just(D)), elements=wild),
       seed=st.integers(0, 2**32 - 1), nan_share=nan_shares, m=st.integers(1, 5))
def test_admit_agrees_with_reference_and_the_separate_kernels(X, seed, nan_share, m):
    rng = np.random.default_rng(seed)
    X0 = valid_originals(rng, m, nan_share)
    origin = rng.integers(0, m, len(X))  # unsorted, repeated, some originals not asked at all
    used = rng.integers(0, 1000, m)
    qi, bad, cost, asked = cpu.admit(X, X0, origin, used, SA)
    rqi, rbad, rcost, rasked = reference.admit(X, X0, origin, used, SA)
    np.testing.assert_array_equal(qi, rqi)
    np.testing.assert_array_equal(bad, rbad)
    np.testing.assert_allclose(cost, rcost, rtol=1e-12)
    np.testing.assert_array_equal(asked, rasked)
    np.testing.assert_array_equal(bad, cpu.violations(X, X0, origin, SA))
    np.testing.assert_array_equal(cost, cpu.cost(X, X0, origin, SA))
    for t in range(m):  # per original: used + 1, used + 2, ... in row order
        np.testing.assert_array_equal(qi[origin == t], used[t] + np.arange(1, (origin == t).sum() + 1))


@settings(max_examples=100, deadline=None)
@given(X=hnp.arrays(np.float64, st.tuples(st.integers(1, 30), st.just(D)), elements=wild),
       seed=st.integers(0, 2**32 - 1), nan_share=nan_shares, m=st.integers(1, 5), valid=st.booleans())
def test_charge_agrees_with_reference_and_charges_only_an_admitted_batch(X, seed, nan_share, m, valid):
    rng = np.random.default_rng(seed)
    X0 = valid_originals(rng, m, nan_share)
    origin = rng.integers(0, m, len(X))
    if valid:  # mostly admissible batches: the originals themselves
        X = X0[origin]
    used = rng.integers(0, 20, m)
    budget = used + rng.integers(-1, 30, m)  # some targets over their budget, most within
    qi, bad, cost, asked = reference.admit(X, X0, origin, used, SA)
    ok = not bad.any() and bool((used + asked <= budget).all())
    for impl in (cpu, reference):
        u = used.copy()
        got = impl.charge(X, X0, origin, u, budget, SA)
        if not ok:
            assert got is None
            np.testing.assert_array_equal(u, used)  # nothing charged
            continue
        np.testing.assert_array_equal(got[0], qi)
        np.testing.assert_allclose(got[1], cost, rtol=1e-12)
        np.testing.assert_array_equal(u, used + asked)


def test_charge_large_batches_and_its_refusals():
    rng = np.random.default_rng(4)
    X0 = valid_originals(rng, 50, 0.2)
    origin = rng.integers(0, 50, cpu.PARALLEL_MIN_ROWS + 7)
    X = X0[origin]
    used = rng.integers(0, 10, 50)
    asked = np.bincount(origin, minlength=50)
    for budget, ok in ((used + asked, True), (used + asked - (np.arange(50) == 7), False)):
        u = used.copy()
        got = cpu.charge(X, X0, origin, u, budget, SA)
        assert (got is not None) == ok
        np.testing.assert_array_equal(u, used + asked if ok else used)
    X = X.copy()
    X[5, 1] = 0.5  # "hour" is an integer: an invalid row refuses the batch whatever the budget
    assert cpu.charge(X[:100], X0, origin[:100], used.copy(), used + 10**6, SA) is None
    with pytest.raises(ValueError, match="charged in place"):
        cpu.charge(X0[[0]], X0, np.array([0]), used.astype(np.int32), used + 5, SA)
    with pytest.raises(IndexError):
        cpu.charge(X0[[0]], X0, np.array([50]), used.copy(), used + 5, SA)


def test_admit_large_batches_take_the_parallel_kernels():
    rng = np.random.default_rng(3)
    X0 = valid_originals(rng, 50, 0.2)
    origin = rng.integers(0, 50, cpu.PARALLEL_MIN_ROWS + 7)
    X = X0[origin] + rng.normal(size=(len(origin), D)) * (rng.random((len(origin), D)) < 0.3)
    used = rng.integers(0, 10, 50)
    for got, want in zip(cpu.admit(X, X0, origin, used, SA), reference.admit(X, X0, origin, used, SA)):
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_admit_refuses_an_original_that_does_not_exist():
    X0 = valid_originals(np.random.default_rng(0), 2)
    with pytest.raises(IndexError):
        cpu.admit(X0[[0, 1, 1]], X0, np.array([0, 2, 1]), np.zeros(2, np.int64), SA)
    with pytest.raises(IndexError):
        cpu.admit(X0[[0]], X0, np.array([-1]), np.zeros(2, np.int64), SA)


@pytest.mark.gpu
@pytest.mark.skipif(not gpu.available(), reason="needs CuPy and a CUDA GPU")
def test_admit_gpu_agrees_with_cpu():
    rng = np.random.default_rng(5)
    X0 = valid_originals(rng, 4, 0.3)
    origin = rng.integers(0, 4, 200)
    X = X0[origin] + rng.normal(size=(200, D)) * (rng.random((200, D)) < 0.3)
    used = rng.integers(0, 10, 4)
    for got, want in zip(gpu.admit(X, X0, origin, used, SA), cpu.admit(X, X0, origin, used, SA)):
        np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.gpu
@pytest.mark.skipif(not gpu.available(), reason="needs CuPy and a CUDA GPU")
def test_charge_gpu_agrees_with_cpu():
    rng = np.random.default_rng(6)
    X0 = valid_originals(rng, 4, 0.3)
    origin = rng.integers(0, 4, 200)
    used = rng.integers(0, 10, 4)
    for budget in (used + 200, used):
        u_gpu, u_cpu = used.copy(), used.copy()
        got, want = gpu.charge(X0[origin], X0, origin, u_gpu, budget, SA), cpu.charge(X0[origin], X0, origin, u_cpu,
                                                                                      budget, SA)
        assert (got is None) == (want is None)
        if want is not None:
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_allclose(got[1], want[1], rtol=1e-12)
        np.testing.assert_array_equal(u_gpu, u_cpu)


class Half:
    def predict_score(self, X):
        return np.clip(X[:, 0] / 20000, 0, 1)


def test_the_oracle_raises_the_same_errors_and_charges_nothing_on_refusal():
    rng = np.random.default_rng(1)
    X0 = valid_originals(rng, 3)
    o = Oracle(Half(), threshold=0.5, feedback="score", budget=3, originals=X0, schema_arrays=SA,
               kernels=get_kernels("cpu"), strategy="s")
    fb = o.query(np.array([2, 0, 2]), X0[[2, 0, 2]])
    assert o.used.tolist() == [1, 0, 2] and len(fb.declined) == 3
    with pytest.raises(BudgetExceeded, match="asked 2 queries for target 2 with 1 left"):
        o.query(np.array([2, 2]), X0[[2, 2]])
    bad = X0[[1]].copy()
    bad[0, 1] = 0.5  # "hour" is an integer
    with pytest.raises(ValueError, match="1 candidates that break the constraints"):
        o.query(np.array([1]), bad)
    assert o.used.tolist() == [1, 0, 2]  # refused batches charge nothing
