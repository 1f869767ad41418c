"""Kernels: Numba (and CuPy when present) agree with the NumPy reference; projection always yields valid rows."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from simulator.kernels import MODE_LOCAL, MODE_UNIFORM, cpu, gpu, reference
from simulator.schema import FeatureSchema

SPECS = {
    "amount": {"type": "continuous", "min": 0.5, "max": 20000, "cost": 1.0},
    "hour": {"type": "integer", "min": 0, "max": 23, "cost": 0.5},
    "cat": {"type": "categorical", "categories": [0, 2, 3, 7]},
    "flag_dec": {"type": "binary", "direction": "decrease"},
    "flag_inc": {"type": "binary", "direction": "increase", "cost": 2},
    "dist": {"type": "continuous", "min": 0, "max": 100, "direction": "increase"},
    "count": {"type": "integer", "min": 0, "max": 50, "direction": "decrease"},
    "age": {"type": "integer", "min": 0, "max": 5000, "mutable": False},
}
NAMES = list(SPECS) + ["frozen_unlisted"]
SCHEMA = FeatureSchema.from_mapping(NAMES, SPECS).with_bounds_from(__import__("polars").DataFrame({"frozen_unlisted": [0.0, 9.0]}))
SA = SCHEMA.arrays()
D = len(NAMES)


def valid_originals(rng, m, nan_share=0.0):
    """Valid original rows; with ``nan_share`` that share of the values (any feature) are missing (NaN)."""
    X0 = np.column_stack([
        np.round(rng.uniform(0.5, 20000, m), 2), rng.integers(0, 24, m), rng.choice([0, 2, 3, 7], m),
        rng.integers(0, 2, m), rng.integers(0, 2, m), rng.uniform(0, 100, m), rng.integers(0, 51, m),
        rng.integers(0, 5001, m), rng.normal(size=m),
    ]).astype(np.float64)
    if nan_share:
        X0[rng.random(X0.shape) < nan_share] = np.nan
    return X0


nan_shares = st.sampled_from([0.0, 0.0, 0.3, 1.0])


finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
wild = st.one_of(finite, st.just(np.nan), st.just(np.inf), st.just(-np.inf), st.sampled_from([0.5, 1.5, 2.5, -0.5]))


@settings(max_examples=200, deadline=None)
@given(X=hnp.arrays(np.float64, st.tuples(st.integers(1, 20), st.just(D)), elements=wild),
       seed=st.integers(0, 2**32 - 1), m=st.integers(1, 4), nan_share=nan_shares)
def test_projection_is_valid_and_matches_reference(X, seed, m, nan_share):
    rng = np.random.default_rng(seed)
    X0 = valid_originals(rng, m, nan_share)
    origin = rng.integers(0, m, len(X))
    got = cpu.project(X, X0, origin, SA)
    ref = reference.project(X, X0, origin, SA)
    np.testing.assert_array_equal(got, ref)
    assert not cpu.violations(got, X0, origin, SA).any()
    assert not reference.violations(got, X0, origin, SA).any()
    # projecting a valid point changes nothing (idempotent)
    np.testing.assert_array_equal(cpu.project(got, X0, origin, SA), got)
    # NaN is data: a missing original stays missing where the candidate leaves it missing (or is frozen), and a
    # present original never becomes missing
    x0 = X0[origin]
    assert not (np.isnan(got) & ~np.isnan(x0)).any()
    keep = np.isnan(x0) & (~np.isfinite(X) | ~SA.mutable[None, :])
    assert np.isnan(got[keep]).all()
    np.testing.assert_allclose(cpu.cost(got, X0, origin, SA), reference.cost(got, X0, origin, SA), rtol=1e-12)


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 30), mode=st.sampled_from([MODE_LOCAL, MODE_UNIFORM]),
       p=st.floats(0, 1), step=st.floats(0, 2), nan_share=nan_shares)
def test_mutate_matches_reference_and_is_valid(seed, n, mode, p, step, nan_share):
    rng = np.random.default_rng(seed)
    X0 = valid_originals(rng, 3, nan_share)
    origin = rng.integers(0, 3, n)
    base = cpu.project(X0[origin] + rng.normal(size=(n, D)) * 10, X0, origin, SA)
    U, Z, V = rng.random((n, D)), rng.standard_normal((n, D)), rng.random(n)
    args = (base, X0, origin, U, Z, V, np.full(n, step), np.full(n, p), mode, SA)
    got, ref = cpu.mutate(*args), reference.mutate(*args)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-9)
    assert not cpu.violations(got, X0, origin, SA).any()
    assert not reference.violations(got, X0, origin, SA).any()
    frozen_nan = np.isnan(X0[origin]) & ~SA.mutable[None, :]
    assert np.isnan(got[frozen_nan]).all()
    np.testing.assert_allclose(cpu.cost(got, X0, origin, SA), reference.cost(got, X0, origin, SA), rtol=1e-12)


@settings(max_examples=100, deadline=None)
@given(X=hnp.arrays(np.float64, st.tuples(st.integers(1, 20), st.just(D)), elements=wild),
       seed=st.integers(0, 2**32 - 1), nan_share=nan_shares)
def test_violations_and_cost_agree_with_reference_on_any_input(X, seed, nan_share):
    rng = np.random.default_rng(seed)
    X0 = valid_originals(rng, 3, nan_share)
    origin = rng.integers(0, 3, len(X))
    np.testing.assert_array_equal(cpu.violations(X, X0, origin, SA), reference.violations(X, X0, origin, SA))
    np.testing.assert_allclose(cpu.cost(X, X0, origin, SA), reference.cost(X, X0, origin, SA), rtol=1e-12)


def test_missing_values_by_hand():
    """The NaN rules one by one (BRIEF convention 3), on every backend."""
    X0 = np.zeros((1, D))
    X0[0, :] = [100, 10, 2, 1, 0, 50, 5, 100, 0]
    j = {n: NAMES.index(n) for n in NAMES}
    X0[0, [j["amount"], j["dist"], j["age"], j["cat"], j["flag_inc"]]] = np.nan
    o = np.array([0])
    for impl in (cpu, reference):
        assert not impl.violations(X0, X0, o, SA)[0]  # NaN == NaN: unchanged, frozen or not
        assert impl.cost(X0, X0, o, SA)[0] == 0
        for name, value, bad in (("amount", 5.0, False), ("dist", 1.0, False),  # direction: none from a missing one
                                 ("dist", 101.0, True), ("cat", 7.0, False), ("cat", 5.0, True),
                                 ("flag_inc", 0.0, False), ("age", 3.0, True),  # frozen NaN must stay NaN
                                 ("hour", np.nan, True), ("frozen_unlisted", np.nan, True),  # present -> NaN
                                 ("amount", np.inf, True)):
            X = X0.copy()
            X[0, j[name]] = value
            assert impl.violations(X, X0, o, SA)[0] == bad, (impl.__name__, name, value)
        X = X0.copy()
        X[0, j["amount"]], X[0, j["cat"]] = 7.0, 3.0  # NaN -> value costs the full weight (1 + 1)
        assert impl.cost(X, X0, o, SA)[0] == pytest.approx(2.0)
        X = X0.copy()
        X[0, j["hour"]] = np.nan  # value -> NaN (invalid, but its cost is defined the same way): weight 0.5
        assert impl.cost(X, X0, o, SA)[0] == pytest.approx(0.5)
        # project: NaN candidates become the original; a frozen NaN stays; a given value is clipped, no direction
        X = X0.copy()
        X[0, :] = np.nan
        P = impl.project(X, X0, o, SA)
        np.testing.assert_array_equal(np.isnan(P[0]), np.isnan(X0[0]))
        np.testing.assert_array_equal(P[0][~np.isnan(X0[0])], X0[0][~np.isnan(X0[0])])
        X = X0.copy()
        X[0, [j["amount"], j["dist"], j["age"], j["cat"]]] = [-5.0, 30.0, 7.0, 6.0]
        P = impl.project(X, X0, o, SA)[0]
        assert P[j["amount"]] == 0.5 and P[j["dist"]] == 30.0 and np.isnan(P[j["age"]]) and P[j["cat"]] == 7.0
    # mutate: a missing mutable value that is picked gets a value within its bounds
    n = 200
    rng = np.random.default_rng(3)
    origin = np.zeros(n, np.int64)
    U, Z, V = rng.random((n, D)), rng.standard_normal((n, D)), rng.random(n)
    for mode in (MODE_LOCAL, MODE_UNIFORM):
        args = (X0[origin], X0, origin, U, Z, V, np.full(n, 0.1), np.full(n, 0.5), mode, SA)
        got = cpu.mutate(*args)
        np.testing.assert_allclose(got, reference.mutate(*args), rtol=1e-12)
        assert not cpu.violations(got, X0, origin, SA).any()
        filled = ~np.isnan(got[:, j["amount"]])
        assert 0 < filled.sum() < n and (got[filled, j["amount"]] >= 0.5).all()
        assert np.isnan(got[:, j["age"]]).all()


def test_violations_catch_each_kind_of_break():
    rng = np.random.default_rng(0)
    X0 = valid_originals(rng, 1)
    X0[0, NAMES.index("flag_dec")] = 0.0
    X0[0, NAMES.index("flag_inc")] = 0.0
    breaks = {"amount": 0.1, "hour": 3.5, "cat": 1.0, "flag_dec": 1.0, "age": X0[0, 7] + 1, "frozen_unlisted": 99.0,
              "dist": -1.0, "count": 51.0}
    for name, value in breaks.items():
        X = X0.copy()
        X[0, NAMES.index(name)] = value
        assert cpu.violations(X, X0, np.array([0]), SA)[0], name
        assert reference.violations(X, X0, np.array([0]), SA)[0], name
    assert not cpu.violations(X0, X0, np.array([0]), SA)[0]


def test_cost_formula_by_hand():
    X0 = np.zeros((1, D))
    X0[0, :] = [100, 10, 2, 1, 0, 50, 5, 100, 0]
    X = X0.copy()
    X[0, 0] = 100 + 19999.5 * 0.1  # amount: 10% of its span, weight 1
    X[0, 1] = 12  # hour: 2/23 of span, weight 0.5
    X[0, 2] = 7  # categorical change: weight 1
    X[0, 4] = 1  # binary flip, weight 2
    expect = 0.1 + 0.5 * 2 / 23 + 1 + 2
    for impl in (cpu, reference):
        assert impl.cost(X, X0, np.array([0]), SA)[0] == pytest.approx(expect)
        assert impl.cost(X0, X0, np.array([0]), SA)[0] == 0


def test_parallel_and_serial_compilations_agree():
    rng = np.random.default_rng(1)
    X0 = valid_originals(rng, 10)
    n = cpu.PARALLEL_MIN_ROWS + 5
    origin = rng.integers(0, 10, n)
    X = X0[origin] + rng.normal(size=(n, D)) * 100
    np.testing.assert_array_equal(cpu._project_p(X, X0, origin, *SA.as_tuple()[:5], SA.categories, SA.n_categories, np.empty_like(X)),
                                  reference.project(X, X0, origin, SA))
    np.testing.assert_allclose(cpu.cost(X, X0, origin, SA), reference.cost(X, X0, origin, SA))


@pytest.mark.gpu
@pytest.mark.skipif(not gpu.available(), reason="needs CuPy and a CUDA GPU")
def test_gpu_agrees_with_cpu():
    rng = np.random.default_rng(2)
    X0 = valid_originals(rng, 50, nan_share=0.1)
    n = 20000
    origin = rng.integers(0, 50, n)
    X = X0[origin] + rng.normal(size=(n, D)) * 100
    np.testing.assert_array_equal(gpu.project(X, X0, origin, SA), cpu.project(X, X0, origin, SA))
    np.testing.assert_allclose(gpu.cost(X, X0, origin, SA), cpu.cost(X, X0, origin, SA), rtol=1e-12)
    np.testing.assert_array_equal(gpu.violations(X, X0, origin, SA), cpu.violations(X, X0, origin, SA))
    U, Z, V = rng.random((n, D)), rng.standard_normal((n, D)), rng.random(n)
    for mode in (MODE_LOCAL, MODE_UNIFORM):
        args = (X0[origin], X0, origin, U, Z, V, np.full(n, 0.1), np.full(n, 0.3), mode, SA)
        got, want = gpu.mutate(*args), cpu.mutate(*args)
        kinds = SA.kind
        exact = (kinds == 1) | (kinds == 2) | (kinds == 3)
        np.testing.assert_array_equal(got[:, exact], want[:, exact])
        np.testing.assert_allclose(got, want, rtol=1e-9)


@settings(max_examples=100, deadline=None)
@given(X=hnp.arrays(np.float64, st.tuples(st.integers(1, 30), st.just(D)),
                    elements=st.one_of(wild, st.floats(allow_nan=True, allow_infinity=True), st.just(-0.0))),
       seed=st.integers(0, 2**32 - 1), nan_share=nan_shares)
def test_projection_of_any_float_matches_reference_serial_and_parallel(X, seed, nan_share):
    # huge values (an integer feature at 1e300 rounds in floating point, no int64 overflow), -0.0, subnormals;
    # the serial build (small batches) and the parallel one give the same bits
    rng = np.random.default_rng(seed)
    X0 = valid_originals(rng, 3, nan_share)
    origin = rng.integers(0, 3, len(X))
    args = (X, X0, origin, *SA.as_tuple()[:5], SA.categories, SA.n_categories)
    serial, parallel = cpu._project_s(*args, np.empty_like(X)), cpu._project_p(*args, np.empty_like(X))
    np.testing.assert_array_equal(serial.view(np.int64), parallel.view(np.int64))
    np.testing.assert_array_equal(serial, reference.project(X, X0, origin, SA))
