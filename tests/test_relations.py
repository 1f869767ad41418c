"""Relations between features: grammar, one-line errors, and the repair/violation kernels (Numba == NumPy reference,
repaired candidates always satisfy the relations or are their target's infeasible anchor)."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from simulator.errors import ScenarioError
from simulator.kernels import get_kernels
from simulator.kernels import relations as rk
from simulator.relations import Derived, Implication, Linear, compile_relations, parse_relation, parse_relations
from simulator.schema import FeatureSchema

NAMES = ["amount usd", "Tries", "flag", "select", "ratio", "frozen"]
SPECS = {
    "amount usd": {"type": "continuous", "min": 0, "max": 100},
    "Tries": {"type": "integer", "min": 0, "max": 10, "direction": "increase"},
    "flag": {"type": "binary", "direction": "decrease"},
    "select": {"type": "categorical", "categories": [0, 1, 2, 5]},
}
RELATIONS = [
    'if flag == 1 then select in [0, 2]',
    '"amount usd" >= 20 * flag',
    'Tries + "amount usd" <= 90',
    'if Tries > 5 then "amount usd" <= 50',
    'if select != 5 then Tries <= 8',
    'ratio = min("amount usd" / mean, 3)',
]


def _setup():
    schema = FeatureSchema.from_mapping(NAMES, SPECS)
    specs = list(schema.specs)
    from dataclasses import replace
    specs[4] = replace(specs[4], lo=0.0, hi=1000.0, cost=0.0)
    specs[5] = replace(specs[5], lo=-5.0, hi=5.0)
    sa = FeatureSchema(specs).arrays()
    ra = compile_relations(parse_relations(RELATIONS), NAMES, ["mean", "other"])
    return sa, ra


def test_grammar_examples():
    r = parse_relation("if card_present == 1 then merchant_cat in [0, 2, 5]")
    assert isinstance(r, Implication) and r.then.values == (0.0, 2.0, 5.0)
    r = parse_relation("2 * a - b / 4 + 3 <= (c - 1) * -2")
    assert isinstance(r, Linear) and dict(r.terms) == {"a": 2.0, "b": -0.25, "c": 2.0} and r.const == 1.0
    r = parse_relation('`ratio x` = (amount + 1) / "mean 30d"')
    assert isinstance(r, Derived) and r.feature == "ratio x" and r.inputs == ("amount", "mean 30d")
    assert parse_relation("if größe not in [1, 2] then SELECT >= -1.5").then.op == ">="


@pytest.mark.parametrize("text,reason", [
    ("a * b >= 1", "non-linear"),
    ("a / b <= 1", "division by a feature"),
    ("min(a, 1) >= 0", "non-linear"),
    ("if a == b then c == 1", "not a number"),
    ("a > b", "strict"),
    ("a = a + 1", "input of itself"),
    ("if a == 1", "expected 'then'"),
    ("a >= 1 )", "unexpected"),
    ("a $ 3", "cannot read"),
])
def test_grammar_errors_are_one_line(text, reason):
    with pytest.raises(ScenarioError) as e:
        parse_relations(["a >= 0", text], source="sc.yaml")
    msg = str(e.value)
    assert msg.startswith("sc.yaml: relations.1: ") and reason in msg and "\n" not in msg


def test_unknown_names_and_missing_inputs():
    rels = parse_relations(["ratio = amount / mean"])
    with pytest.raises(ScenarioError, match=r"relations.0: unknown derived feature's input 'mean'"):
        compile_relations(rels, ["amount", "ratio"], ["amount", "ratio"], source="x.yaml")
    with pytest.raises(ScenarioError, match="unknown feature 'nope'"):
        compile_relations(parse_relations(["nope >= 1"]), ["amount"], [])
    with pytest.raises(ScenarioError, match="not a model feature"):
        compile_relations(parse_relations(["mean = amount * 2"]), ["amount"], ["mean"])
    ra = compile_relations(rels, ["amount", "ratio"], ["amount", "ratio", "mean"])
    assert ra.extra_names == ("mean",) and ra.derived.tolist() == [False, True]


def _originals(X0, means, n, data):
    """Drawn originals moved into ``_setup``'s bounds, their extra columns, and the original of each of ``n`` rows."""
    X0 = np.array(X0)
    X0[:, 1] = np.clip(X0[:, 1], 0, 10)
    X0[:, 0] = np.clip(X0[:, 0], 0, 100)
    m = len(X0)
    E = np.c_[np.array(means[:m]), np.zeros(m)]
    return X0, E, np.array([data.draw(st.integers(0, m - 1)) for _ in range(n)], np.int64)


row = st.tuples(st.floats(-20, 120), st.integers(-2, 12).map(float), st.sampled_from([0.0, 1.0]),
                st.sampled_from([0.0, 1.0, 2.0, 5.0]), st.floats(0, 10), st.floats(-5, 5))


@settings(max_examples=60, deadline=None)
@given(X=st.lists(row, min_size=1, max_size=12), X0=st.lists(row, min_size=1, max_size=3),
       means=st.lists(st.floats(0.5, 50), min_size=3, max_size=3), data=st.data())
def test_repair_numba_matches_reference_and_satisfies(X, X0, means, data):
    sa, ra = _setup()
    k = get_kernels("cpu")
    X0, E, origin = _originals(X0, means, len(X), data)
    X = np.array(X)
    if data.draw(st.booleans()):  # NaN is data
        X[0, 0] = np.nan
    P = k.project(X, X0, origin, sa)
    got = rk.repair(P, X0, origin, E, sa, ra)
    ref = rk.reference_repair(P.copy(), X0, origin, E, sa, ra)
    np.testing.assert_array_equal(got, ref)
    bad = rk.violations(got, X0, origin, E, ra)
    np.testing.assert_array_equal(bad, rk.reference_violations(got, X0, origin, E, ra))
    # a row still breaking a relation is its target's anchor, and the anchor itself is infeasible
    own = np.arange(len(X0))
    anchors = rk.repair(k.project(X0, X0, own, sa), X0, own, E, sa, ra)
    anchor_bad = rk.violations(anchors, X0, own, E, ra)
    assert not (bad & ~anchor_bad[origin]).any()
    # moves respect bounds, kinds and directions (derived column excepted: it follows its inputs)
    chk = got.copy()
    chk[:, 4] = X0[origin, 4]
    nan_in = np.isnan(P).any(axis=1)
    assert not k.violations(chk[~nan_in], X0, origin[~nan_in], sa).any()
    # the derived feature follows its input
    ok = ~np.isnan(got[:, 0])
    np.testing.assert_allclose(got[ok, 4], np.minimum(got[ok, 0] / E[origin[ok], 0], 3))


def test_nan_inputs_count_as_satisfied():
    sa, ra = _setup()
    X0 = np.array([[np.nan, 3.0, 1.0, 1.0, 0.0, 0.0]])
    E = np.array([[2.0, 0.0]])
    out = rk.repair(X0, X0, np.zeros(1, np.int64), E, sa, ra)
    assert np.isnan(out[0, 4])  # derived of NaN is NaN
    # flag == 1 and select 1 breaks an implication without NaN: repaired by moving select
    assert out[0, 3] in (0.0, 2.0)
    assert not rk.violations(out, X0, np.zeros(1, np.int64), E, ra)[0]


@pytest.mark.parametrize("relation,field,reason", [
    ("nope >= 1", "relations.1", "unknown feature 'nope'"),
    ("amount_ratio_30d = amount / no_such_column", "relations.1", "unknown derived feature's input"),
    ("amount * hour >= 1", "relations.1", "non-linear"),
    ("amount >= 30000", "relations.1", "no values within the features' bounds"),
])
def test_bad_relations_exit_2_with_one_line(tmp_path, relation, field, reason):
    import yaml
    from typer.testing import CliRunner

    from simulator.cli import app

    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    raw = yaml.safe_load((root / "scenarios" / "release_check.yaml").read_text())
    for s in ("data", "model"):
        raw[s]["path"] = str((root / "scenarios" / raw[s]["path"]).resolve())
    raw["relations"] = ["distance_km >= 300 * country_mismatch", relation]
    raw["output"] = str(tmp_path / "out.duckdb")
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(raw))
    r = CliRunner().invoke(app, ["run", str(p)])
    assert r.exit_code == 2, r.output
    line = " ".join(r.output.split())
    assert str(p) in line and field in line and reason in line, r.output
    assert not (tmp_path / "out.duckdb").exists()


def _gpu_case(seed):
    """Skips without a GPU; else ``_setup()``, 50 originals, their extra columns and 2,000 noisy candidates."""
    from simulator.kernels import gpu

    if not gpu.available():
        pytest.skip("needs CuPy and a CUDA GPU")
    rng = np.random.default_rng(seed)
    X0 = np.c_[rng.uniform(0, 100, 50), rng.integers(0, 11, 50), rng.integers(0, 2, 50),
               rng.choice([0, 1, 2, 5], 50), np.zeros(50), rng.uniform(-5, 5, 50)]
    E = np.c_[rng.uniform(0.5, 50, 50), np.zeros(50)]
    origin = rng.integers(0, 50, 2000)
    return (*_setup(), X0, E, origin, X0[origin] + rng.normal(scale=30, size=(2000, 6)))


@pytest.mark.gpu
def test_cupy_twin_agrees_with_numba():
    sa, ra, X0, E, origin, X = _gpu_case(0)
    X = get_kernels("cpu").project(X, X0, origin, sa)
    np.testing.assert_array_equal(rk.gpu_repair(X, X0, origin, E, sa, ra), rk.repair(X, X0, origin, E, sa, ra))
    np.testing.assert_array_equal(rk.gpu_violations(X, X0, origin, E, ra), rk.violations(X, X0, origin, E, ra))


def test_oracle_refuses_a_candidate_that_breaks_a_relation():
    from simulator.oracle import Oracle

    sa, ra = _setup()
    x0 = np.array([[50.0, 3.0, 1.0, 0.0, 25.0, 0.0]])
    E = np.array([[2.0, 0.0]])

    class Model:
        def predict_score(self, X):
            return X[:, 0] / 100

    k = get_kernels("cpu")
    o = Oracle(Model(), threshold=0.5, feedback="score", budget=10, originals=x0, schema_arrays=sa, kernels=k,
               strategy="t", relations=ra, extras=E)
    good = rk.repair(np.array([[40.0, 3.0, 1.0, 0.0, 0.0, 0.0]]), x0, np.zeros(1, np.int64), E, sa, ra)
    assert good[0, 4] == 3.0  # min(40 / 2, 3): the derived feature follows its input
    o.query(np.zeros(1, np.int64), good)
    for bad in ([10.0, 3.0, 1.0, 0.0, 3.0, 0.0],   # amount usd >= 20 * flag broken
                [40.0, 3.0, 1.0, 1.0, 3.0, 0.0],   # flag == 1 but select not in [0, 2]
                [40.0, 3.0, 1.0, 0.0, 2.5, 0.0]):  # the derived feature does not follow its input
        with pytest.raises(ValueError, match="break the constraints"):
            o.query(np.zeros(1, np.int64), np.array([bad]))


def test_independent_relation_check_finds_broken_queries(tmp_path):
    import duckdb
    import polars as pl
    import yaml

    from tests.relations_check import broken

    pl.DataFrame({"mean_amount_30d": [10.0, 20.0]}).write_parquet(tmp_path / "d.parquet")
    sc = tmp_path / "s.yaml"
    sc.write_text(yaml.safe_dump({"data": {"path": "d.parquet"}, "relations": [
        "if card_present == 1 then merchant_cat in [0, 1, 2]", "distance_km >= 300 * country_mismatch",
        "amount_ratio_30d = min(amount / mean_amount_30d, 1000)"]}))
    q = pl.DataFrame({"target_id": [0, 1, 1], "card_present": [1.0, 1.0, 0.0], "merchant_cat": [3.0, 2.0, 7.0],
                      "distance_km": [10.0, 500.0, float("nan")], "country_mismatch": [1.0, 1.0, 1.0],
                      "amount": [50.0, 50.0, 40.0], "amount_ratio_30d": [5.0, 2.0, 9.0]})
    con = duckdb.connect(str(tmp_path / "r.duckdb"))
    con.register("q", q.to_arrow())
    con.execute("CREATE TABLE queries AS SELECT * FROM q")
    con.close()
    counts, skipped = broken(sc, tmp_path / "r.duckdb")
    assert list(counts.values()) == [1, 1, 2] and not skipped  # NaN distance counts as satisfied


@settings(max_examples=60, deadline=None)
@given(X=st.lists(row, min_size=0, max_size=12), X0=st.lists(row, min_size=1, max_size=3),
       means=st.lists(st.floats(0.5, 50), min_size=3, max_size=3), with_relations=st.booleans(), data=st.data())
def test_project_repair_is_project_then_repair(X, X0, means, with_relations, data):
    """The fused kernel (one call, for strategies asking many small batches) equals project then repair, and its
    NumPy reference agrees; without relations it is the projection alone."""
    sa, ra = _setup()
    ra = ra if with_relations else None
    k = get_kernels("cpu")
    X0, E, origin = _originals(X0, means, len(X), data)
    X = np.array(X, dtype=np.float64).reshape(len(X), 6)
    if len(X) and data.draw(st.booleans()):  # NaN and infinities are data
        X[0, data.draw(st.integers(0, 5))] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    P = k.project(X, X0, origin, sa)
    want = P if ra is None else rk.repair(P, X0, origin, E, sa, ra)
    got = k.project_repair(X, X0, origin, E, sa, ra)
    assert got.shape == X.shape
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(rk.reference_project_repair(X, X0, origin, E, sa, ra), want)
    mine = origin == 0  # the bound form, for the rows of one original
    np.testing.assert_array_equal(k.bind_project_repair(X0[:1], E[:1], sa, ra)(X[mine]), want[mine])
    np.testing.assert_array_equal(k.bind_repair(X0[:1], E[:1], sa, ra)(P[mine]), want[mine])


@pytest.mark.gpu
def test_project_repair_cupy_twin_agrees():
    sa, ra, X0, E, origin, X = _gpu_case(1)
    for r in (ra, None):
        np.testing.assert_array_equal(rk.gpu_project_repair(X, X0, origin, E, sa, r),
                                      rk.project_repair(X, X0, origin, E, sa, r))
