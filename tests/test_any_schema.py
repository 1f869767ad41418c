"""Any schema: a team's own data and model, with any feature names, kinds and missing values, through the whole path
(run → views → HTML report → gates → compare → query → notebook API → CLI).

The property test draws random schemas from a hostile alphabet (names that collide with fraudsim's own columns,
SQL keywords, quotes, spaces, unicode, names that differ only by case), random data with missing values and a
label, trains a small real XGBoost or LightGBM model on it, writes Parquet or CSV, the model and a scenario YAML,
and runs everything. ``benchmarks/fuzz_any_schema.py`` runs the same case generator longer (up to 200 features).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings, strategies as st
from typer.testing import CliRunner

import simulator as fs
from simulator.cli import app
from simulator.report import VIEW_NAMES, check_run, compare_runs, open_run, run_query, write_report
from simulator.store import RESERVED_COLUMNS, feature_columns, read_feature_columns

#: names a team's columns really have, and names that break naive SQL or collide with fraudsim's columns
HOSTILE = ("score", "strategy", "run_id", "target_id", "cost", "round", "decision", "evaded", "query_index",
           "original_score", "min_cost", "is_fraud", "transaction_id", "day", "timestamp", "cheap", "split",
           "select", "order", "from", "group", "table", "a b", " lead space", "Ünïcode", "日本語", "Amount", "amount",
           "AMOUNT", "merchant_cat", 'quo"te', "it's", "semi;colon", "dash-ed", "dot.ted", "1st", "feature_score",
           "txn_amt_usd", "chan", "mcc", "Column_0", "f0", "%pct", "tab\tname", "a,b")
KINDS = ("continuous", "integer", "binary", "categorical")
LIGHTGBM_UNSAFE = ' "\\\t\n,:[]{}'  # LightGBM refuses JSON-special characters and renames spaces
STRATEGIES = ("greedy", "evolutionary", "boundary", "surrogate")

name_text = st.text(alphabet=st.sampled_from(list("abcXYZ _-é日'\".;0")), min_size=1, max_size=8)


@dataclass
class Case:
    """One drawn team setup: feature names (model order) and kinds, how the data looks, the scenario's knobs."""

    names: list[str]
    kinds: list[str]
    mutable: list[bool]
    directions: list[str]
    bounds_given: list[bool]
    nan_share: list[float]
    model_kind: str = "xgboost"
    data_format: str = "parquet"
    label: str = "is_fraud"
    strategies: tuple[str, ...] = ("random",)
    seed: int = 0
    rows: int = 200
    budget: int = 20
    limit: int = 3
    extra: dict = field(default_factory=dict)


def _unique_names(names: list[str]) -> list[str]:
    out, seen = [], set()
    for n in names:
        k = n
        i = 2
        while k in seen:
            k = f"{n}{i}"
            i += 1
        seen.add(k)
        out.append(k)
    return out


@st.composite
def cases(draw, max_features: int = 30) -> Case:
    d = draw(st.integers(1, max_features))
    names = draw(st.lists(st.one_of(st.sampled_from(HOSTILE), name_text), min_size=d, max_size=d))
    model_kind = draw(st.sampled_from(["xgboost", "xgboost", "lightgbm"]))
    if model_kind == "lightgbm":
        names = ["".join("_" if ch in LIGHTGBM_UNSAFE else ch for ch in n) for n in names]
    names = _unique_names(names)
    label = draw(st.sampled_from(["is_fraud", "Label", "select", "y y", "score"]))
    while label in names:
        label = label + "_"
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=d, max_size=d))
    mutable = draw(st.lists(st.booleans(), min_size=d, max_size=d))
    mutable[draw(st.integers(0, d - 1))] = True
    return Case(
        names=names, kinds=kinds, mutable=mutable,
        directions=draw(st.lists(st.sampled_from(["any", "any", "increase", "decrease"]), min_size=d, max_size=d)),
        bounds_given=draw(st.lists(st.booleans(), min_size=d, max_size=d)),
        nan_share=draw(st.lists(st.sampled_from([0.0, 0.0, 0.1, 0.5]), min_size=d, max_size=d)),
        model_kind=model_kind, data_format=draw(st.sampled_from(["parquet", "csv"])), label=label,
        strategies=("random",) + tuple(draw(st.lists(st.sampled_from(STRATEGIES), max_size=1))),
        seed=draw(st.integers(0, 2**16)))


def _column(kind: str, rng: np.random.Generator, n: int) -> tuple[np.ndarray, dict]:
    if kind == "binary":
        return rng.integers(0, 2, n).astype(float), {"type": "binary"}
    if kind == "categorical":
        cats = sorted(rng.choice(np.arange(-3, 40), size=int(rng.integers(2, 6)), replace=False).tolist())
        return rng.choice(cats, n).astype(float), {"type": "categorical", "categories": cats}
    scale = float(10 ** rng.uniform(-2, 4))
    v = rng.normal(0, scale, n)
    if kind == "integer":
        v = np.round(v)
    return v, {"type": kind}


def make_team_files(case: Case, d: Path) -> Path:
    """Write the team's data, model and scenario to ``d``; returns the scenario path."""
    rng = np.random.default_rng(case.seed)
    n, k = case.rows, len(case.names)
    cols, specs = [], {}
    for j, (name, kind) in enumerate(zip(case.names, case.kinds)):
        v, spec = _column(kind, rng, n)
        if case.nan_share[j]:
            v[rng.random(n) < case.nan_share[j]] = np.nan
            v[0] = 0.0 if kind != "categorical" else spec["categories"][0]  # never all missing
        cols.append(v)
        if not case.mutable[j]:
            continue  # unlisted: frozen
        if kind in ("continuous", "integer"):
            if case.bounds_given[j]:
                lo, hi = np.nanmin(v), np.nanmax(v)
                spec.update(min=float(math.floor(lo) - 1), max=float(math.ceil(hi) + 1))
            spec["cost"] = float(rng.choice([0.5, 1.0, 2.0]))
        if case.directions[j] != "any" and kind != "categorical":
            spec["direction"] = case.directions[j]
        specs[name] = spec
    X = np.column_stack(cols)
    w = rng.normal(size=k)
    z = np.nan_to_num((X - np.nanmean(X, 0)) / (np.nanstd(X, 0) + 1e-9)) @ w
    y = (rng.random(n) < 1 / (1 + np.exp(-2 * z))).astype(np.int64)
    y[:2] = [0, 1]  # both classes
    frame = pl.DataFrame({name: X[:, j] for j, name in enumerate(case.names)})
    frame = frame.with_columns(pl.Series(case.label, y), pl.Series("txn_ref", [f"T{i:05d}" for i in range(n)]),
                               pl.Series("timestamp", ["2026-12-01T10:00:00"] * n) if "timestamp" not in case.names
                               else pl.Series("memo", ["x"] * n))
    data = d / ("team data.csv" if case.data_format == "csv" else "team data.parquet")
    frame.write_csv(data) if case.data_format == "csv" else frame.write_parquet(data)
    model_path = _train(case, X, y, d)
    score = _score(case, model_path, X)
    threshold = float(np.quantile(score, 0.6))
    scenario = {
        "name": "any-schema", "seed": case.seed,
        "data": {"path": data.name, "label": case.label},
        "model": {"path": model_path.name, "threshold": threshold},
        "features": specs,
        "attack": {"targets": "declined", "limit": case.limit, "budget": case.budget, "feedback": "score",
                   "strategies": list(case.strategies)},
        "output": "run.duckdb",
    }
    path = d / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def _train(case: Case, X: np.ndarray, y: np.ndarray, d: Path) -> Path:
    if case.model_kind == "lightgbm":
        import lightgbm as lgb

        booster = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 4, "min_data_in_leaf": 5, "seed": 1,
                             "num_threads": 1}, lgb.Dataset(X, y, feature_name=case.names), num_boost_round=4)
        path = d / "model.txt"
        booster.save_model(str(path))
        return path
    import xgboost as xgb

    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1, "seed": 1},
                        xgb.DMatrix(X, y, feature_names=case.names), num_boost_round=4)
    path = d / "model.json"
    booster.save_model(str(path))
    return path


def _score(case: Case, path: Path, X: np.ndarray) -> np.ndarray:
    return fs.load_model(path).predict_score(X)


def run_whole_path(case: Case, d: Path, *, full: bool = True) -> dict:
    """Everything a team does with a run, on this case; returns a few counts. Raises on any failure. Without
    ``full``, the run is compared with itself and only ``fraudsim query`` is run as a command (quicker)."""
    scenario = make_team_files(case, d)
    cli = CliRunner()
    res = fs.run(scenario, output=d / "a.duckdb")
    assert res.warnings == [], res.warnings
    n_targets = res.sql("SELECT count(DISTINCT target_id) AS n FROM targets")["n"][0]
    assert 1 <= n_targets <= case.limit
    per = res.sql("SELECT strategy, target_id, count(*) AS n, max(query_index) AS m FROM queries GROUP BY ALL")
    assert per["n"].max() <= case.budget and (per["n"] == per["m"]).all()
    assert res.sql("SELECT count(*) AS n FROM targets")["n"][0] == n_targets * len(case.strategies)
    # the mapping: non-colliding names are their own column; every feature has exactly one column
    con = duckdb.connect(str(res.path), read_only=True)
    try:
        pairs = read_feature_columns(con)
        views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
        meta = json.loads(con.execute("SELECT value FROM fraudsim_meta WHERE key = 'features'").fetchall()[0][0])
    finally:
        con.close()
    assert [f for f, _ in pairs] == case.names == meta
    assert [c for _, c in pairs] == list(feature_columns(case.names))
    for f, c in pairs:
        if f.lower() not in RESERVED_COLUMNS and sum(g.lower() == f.lower() for g in case.names) == 1:
            assert c == f
    assert views == set(VIEW_NAMES)  # written into the finished file
    # frozen features (unlisted) are unchanged in every query, NaN equal to NaN
    frozen = [c for (f, c), m in zip(pairs, case.mutable) if not m]
    if frozen:
        q = '"' + frozen[0].replace('"', '""') + '"'
        changed = res.sql(f"SELECT count(*) AS n FROM queries q JOIN targets t USING (run_id, strategy, target_id) "
                          f"WHERE NOT (q.{q} = t.{q} OR (isnan(q.{q}) AND isnan(t.{q})))")["n"][0]
        assert changed == 0
    con = open_run(res.path)
    try:
        for v in VIEW_NAMES:
            con.execute(f"SELECT * FROM {v}").fetchall()
        listed = {r[0] for r in con.execute("SELECT DISTINCT feature FROM evasion_feature_changes").fetchall()}
        assert listed <= set(case.names)
        shown = {r[0] for r in con.execute("SELECT DISTINCT feature FROM feature_changes WHERE changed > 0").fetchall()}
        segments = {r[0] for r in con.execute("SELECT DISTINCT segment FROM success_by_segment").fetchall()}
    finally:
        con.close()
    html = res.to_html(d / "report.html")
    assert "<html" in html and (d / "report.html").is_file()
    for f in shown:
        assert escape(f) in html or escape(f, quote=False) in html
    gates = check_run(res.path, None, ["success_rate_at_10 <= 1.0", "median_queries_to_evasion >= 0"])
    assert all(g.passed for g in gates if g.observed is not None) and gates[0].passed
    summary = res.summary()
    assert summary.height == len(case.strategies)
    heatmap = res.plot.feature_heatmap()._repr_html_()
    assert all(escape(f) in heatmap or escape(f, quote=False) in heatmap for f in shown)
    assert "<svg" in res.plot._repr_html_() and res._repr_html_()
    df, _ = run_query(res.path, "SELECT * FROM best_evasions LIMIT 3")
    assert df.width >= len(case.names)
    if not full:
        assert compare_runs(res.path, res.path).height > 0
        r = cli.invoke(app, ["query", str(res.path), "SELECT feature, count(*) FROM evasion_feature_changes GROUP BY 1"])
        assert r.exit_code == 0, (r.output, r.exception)
        return {"features": len(case.names), "targets": int(n_targets), "queries": int(per["n"].sum()),
                "segments": len(segments), "collisions": sum(f != c for f, c in pairs)}
    # a second run (another seed, one strategy) to compare with
    other = yaml.safe_load(scenario.read_text(encoding="utf-8"))
    other["seed"] = case.seed + 1
    other["attack"]["strategies"] = ["random"]
    scenario_b = d / "scenario_b.yaml"
    scenario_b.write_text(yaml.safe_dump(other, sort_keys=False, allow_unicode=True), encoding="utf-8")
    res_b = fs.run(scenario_b, output=d / "b.duckdb")
    cmp = res.compare(res_b)
    assert cmp.height > 0
    assert compare_runs(res.path, res_b.path).height == cmp.height
    write_report(res_b.path, d / "b.html")
    for args in (["query", res.path, "SELECT feature, count(*) FROM evasion_feature_changes GROUP BY 1"],
                 ["report", res.path, "-o", d / "cli.html"], ["gate", res.path, "success_rate_at_10 <= 1.0"],
                 ["compare", res.path, res_b.path], ["validate", scenario]):
        r = cli.invoke(app, [str(a) for a in args])
        assert r.exit_code == 0, (args[0], r.exit_code, r.output, r.exception)
    return {"features": len(case.names), "targets": int(n_targets), "queries": int(per["n"].sum()),
            "segments": len(segments), "collisions": sum(f != c for f, c in pairs)}


@settings(max_examples=3, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],  # no slow shrinking
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=cases())
def test_any_schema_runs_the_whole_path(case, tmp_path_factory):
    run_whole_path(case, tmp_path_factory.mktemp("any"))


def _named_case(names, kinds=None, **kw) -> Case:
    d = len(names)
    return Case(names=list(names), kinds=list(kinds or ["continuous"] * d), mutable=[True] * d,
                directions=["any"] * d, bounds_given=[False] * d, nan_share=[0.0] * d, **kw)


@pytest.mark.parametrize("names", [
    ["score", "txn_amt_usd"], ["select", "order", "mcc"], ["a b", "chan"], ["Ünïcode", 'quo"te', "it's"],
    ["strategy", "run_id", "target_id", "cost", "round", "cheap"],
], ids=["score", "sql-keywords", "space", "unicode-quotes", "fraudsim-columns"])
def test_named_hostile_schemas(names, tmp_path):
    counts = run_whole_path(_named_case(names, seed=3, strategies=("random", "greedy")), tmp_path, full=False)
    assert counts["targets"] >= 1


def test_collisions_are_stored_under_safe_names_and_shown_by_real_name(tmp_path):
    """``score`` (a fixed column) and ``Amount``/``amount`` (equal to DuckDB) through the whole path, CLI included."""
    case = _named_case(["score", "Amount", "amount", "amt"], kinds=["continuous", "integer", "continuous", "binary"],
                       seed=5, strategies=("random",), budget=60)
    res_counts = run_whole_path(case, tmp_path)
    assert res_counts["collisions"] == 2
    con = duckdb.connect(str(tmp_path / "a.duckdb"), read_only=True)
    try:
        cols = [r[0] for r in con.execute("SELECT column_name FROM information_schema.columns "
                                          "WHERE table_name = 'queries'").fetchall()]
        stored = con.execute("SELECT feature, column_name FROM feature_columns ORDER BY position").fetchall()
    finally:
        con.close()
    assert stored == [("score", "feature_score"), ("Amount", "Amount"), ("amount", "feature_amount"), ("amt", "amt")]
    assert cols.count("score") == 1 and {"feature_score", "Amount", "feature_amount", "amt"} <= set(cols)


def test_segments_each_branch_alone(tmp_path):
    """success_by_segment binds with any single branch first (the amount band alone was a BinderException)."""
    for names in (["amount", "x"], ["merchant_cat", "x"], ["x"]):
        kinds = ["categorical" if n == "merchant_cat" else "continuous" for n in names]
        d = tmp_path / "_".join(names)
        d.mkdir()
        res = fs.run(make_team_files(_named_case(names, kinds, seed=1), d), output=d / "r.duckdb")
        seg = res.sql("SELECT DISTINCT segment FROM success_by_segment")["segment"].to_list()
        want = {"amount": ["amount_band"], "merchant_cat": ["merchant_cat"], "x": ["all"]}[names[0]]
        assert seg == want
