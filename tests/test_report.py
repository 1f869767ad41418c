"""The report package against a real small run: views checked with independent SQL/NumPy, gates, JUnit, HTML, API."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import shutil
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest

import simulator as fs
from simulator.errors import ScenarioError, StoreError
from simulator.report.views import VIEWS_VERSION
from simulator.report import (
    VIEW_NAMES,
    build_report,
    check_run,
    compare_runs,
    create_views,
    evaluate_gates,
    exit_code,
    install_views,
    open_run,
    parse_gate,
    plot,
    to_html,
    write_junit,
)
from simulator.report import api as rep_api
from simulator.report.query import QueryError, check_statement
from simulator.target.train import roc_auc

SCENARIO = {"name": "t", "seed": 3, "world": {"customers": 2000, "days": 6},
            "attack": {"limit": 8, "budget": 60, "strategies": ["random", "evolutionary"]}}
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "t.duckdb"
    return fs.run(fs.Scenario.from_dict(SCENARIO), output=out)


@pytest.fixture()
def copy(run, tmp_path):
    """A private copy of the run file, for tests that write to it."""
    dst = tmp_path / "copy.duckdb"
    shutil.copy(run.path, dst)
    return dst


def fingerprint(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def sql(path, q, params=None) -> pl.DataFrame:
    con = open_run(path)
    try:
        return con.sql(q, params=params).pl()
    finally:
        con.close()


def raw(path, q, params=None) -> pl.DataFrame:
    """Independent SQL straight on the tables (no views involved)."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.sql(q, params=params).pl()
    finally:
        con.close()


def first_evasions(path) -> pl.DataFrame:
    """Per strategy and target, from the raw query log: first evading and first cheap evading query index."""
    return raw(path, """SELECT strategy, target_id,
        min(query_index) FILTER (WHERE evaded) AS q, min(query_index) FILTER (WHERE evaded AND cost <= 1.0) AS qc,
        min(cost) FILTER (WHERE evaded) AS best
        FROM queries GROUP BY strategy, target_id""")


# -- views ----------------------------------------------------------------------------------------------------------

def test_open_run_serves_views_without_touching_the_file(run):
    before = fingerprint(run.path)
    con = open_run(run.path)
    try:
        names = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
        for v in VIEW_NAMES:
            con.execute(f"SELECT count(*) FROM {v}").fetchall()
    finally:
        con.close()
    assert set(VIEW_NAMES) <= names
    assert fingerprint(run.path) == before


def test_create_views_is_idempotent_and_persists(copy):
    assert install_views(copy) == list(VIEW_NAMES)
    con = duckdb.connect(str(copy))
    try:
        create_views(con)  # again, on a read-write connection, as the runner would
        create_views(con)
    finally:
        con.close()
    persisted = raw(copy, "SELECT view_name FROM duckdb_views() WHERE NOT internal")["view_name"].to_list()
    assert sorted(persisted) == sorted(VIEW_NAMES)
    assert raw(copy, "SELECT value FROM fraudsim_meta WHERE key = 'views_version'")["value"].to_list() == [VIEWS_VERSION]
    # a plain read-only connection (no helper) sees the same numbers as the temporary views
    a = raw(copy, "SELECT * FROM success_by_budget ORDER BY strategy, budget")
    b = sql(copy, "SELECT * FROM success_by_budget ORDER BY strategy, budget")
    assert a.equals(b)


def test_views_created_on_a_partial_file_survive_the_rename(tmp_path, run):
    """The runner creates the views on ``<output>.partial`` and renames the file when it finishes."""
    partial = tmp_path / "x.duckdb.partial"
    shutil.copy(run.path, partial)
    con = duckdb.connect(str(partial))
    create_views(con)
    con.execute("CHECKPOINT").fetchall()
    con.close()
    final = partial.rename(tmp_path / "x.duckdb")
    assert raw(final, "SELECT count(*) AS n FROM feature_changes")["n"][0] > 0


def test_success_by_budget_matches_the_raw_query_log(run):
    curve = sql(run.path, "SELECT * FROM success_by_budget")
    fe = first_evasions(run.path)
    budget = SCENARIO["attack"]["budget"]
    assert curve["budget"].max() == budget and curve["budget"].min() == 1
    for s in SCENARIO["attack"]["strategies"]:
        f = fe.filter(pl.col("strategy") == s)
        q = f["q"].fill_null(10**9).to_numpy()
        qc = f["qc"].fill_null(10**9).to_numpy()
        c = curve.filter(pl.col("strategy") == s).sort("budget")
        assert c["targets"].unique().to_list() == [len(f)]
        for row in c.iter_rows(named=True):
            n = row["budget"]
            assert row["evaded"] == int((q <= n).sum())
            assert row["success_rate"] == pytest.approx((q <= n).mean())
            assert row["cheap_success_rate"] == pytest.approx((qc <= n).mean())
        assert np.all(np.diff(c["success_rate"].to_numpy()) >= 0)
        # every N where a target is first evaded is a point of the curve, so reading it there is exact
        assert set(f["q"].drop_nulls().to_list()) <= set(c["budget"].to_list())
        for n in (1, 2, 3, 5, 10, 50, budget):
            assert n in c["budget"].to_list()


def test_queries_to_evasion_and_cost_distribution(run):
    fe = first_evasions(run.path)
    qte = sql(run.path, "SELECT * FROM queries_to_evasion")
    cost = sql(run.path, "SELECT * FROM cost_distribution WHERE measure = 'best'")
    for s in SCENARIO["attack"]["strategies"]:
        q = fe.filter(pl.col("strategy") == s)["q"].drop_nulls().to_numpy()
        row = qte.filter(pl.col("strategy") == s).row(0, named=True)
        assert row["evaded"] == len(q)
        assert row["median_queries"] == pytest.approx(np.median(q))
        assert row["min_queries"] == q.min() and row["max_queries"] == q.max()
        best = fe.filter(pl.col("strategy") == s)["best"].drop_nulls().to_numpy()
        c = cost.filter(pl.col("strategy") == s)
        assert c["targets"].sum() == len(best)
        assert c["share"].sum() == pytest.approx(1.0)
        for lo, hi, n in c.select("cost_from", "cost_to", "targets").iter_rows():
            assert n == int(((best >= lo - 1e-12) & (best < hi - 1e-12)).sum())


def test_best_evasions_are_the_cheapest_and_feature_changes_match(run):
    names = json.loads(raw(run.path, "SELECT value FROM fraudsim_meta WHERE key = 'features'")["value"][0])
    best = sql(run.path, "SELECT * FROM best_evasions")
    fe = first_evasions(run.path).drop_nulls("best")
    assert best.height == fe.height  # one row per evaded (strategy, target)
    joined = best.join(fe, on=["strategy", "target_id"])
    assert np.allclose(joined["cost"].to_numpy(), joined["best"].to_numpy())
    assert joined["score"].max() < raw(run.path, "SELECT threshold FROM runs")["threshold"][0]
    targets = raw(run.path, "SELECT * FROM targets")
    pairs = best.join(targets, on=["strategy", "target_id"], suffix="_orig")
    summary = sql(run.path, "SELECT * FROM feature_changes")
    for s in SCENARIO["attack"]["strategies"]:
        p = pairs.filter(pl.col("strategy") == s)
        for f in names:
            changed = ~np.isclose(p[f].to_numpy(), p[f + "_orig"].to_numpy(), rtol=0, atol=1e-9)
            row = summary.filter((pl.col("strategy") == s) & (pl.col("feature") == f)).row(0, named=True)
            assert row["evasions"] == p.height
            assert row["changed"] == int(changed.sum()), (s, f)
    # frozen features are never changed
    frozen = summary.filter(pl.col("feature").is_in(["txn_count_1h", "account_age_days", "credit_limit"]))
    assert frozen["changed"].sum() == 0


def test_success_by_segment(run):
    seg = sql(run.path, "SELECT * FROM success_by_segment")
    assert {"merchant_cat", "amount_band", "fraud_type"} <= set(seg["segment"].to_list())
    per_strategy = raw(run.path, "SELECT strategy, count(*) AS n, avg(evaded::DOUBLE) AS s FROM targets GROUP BY 1")
    for kind in ("merchant_cat", "amount_band", "fraud_type"):
        t = seg.filter(pl.col("segment") == kind).group_by("strategy").agg(pl.col("targets").sum(), pl.col("evaded").sum())
        chk = t.join(per_strategy, on="strategy")
        assert (chk["targets"] == chk["n"]).all()
        assert np.allclose(chk["evaded"].to_numpy() / chk["n"].to_numpy(), chk["s"].to_numpy())
    mc = raw(run.path, "SELECT strategy, CAST(CAST(merchant_cat AS BIGINT) AS VARCHAR) AS value, "
                       "avg(evaded::DOUBLE) AS s FROM targets GROUP BY ALL")
    got = seg.filter(pl.col("segment") == "merchant_cat").join(mc, on=["strategy", "value"])
    assert got.height == mc.height and np.allclose(got["success_rate"].to_numpy(), got["s"].to_numpy())


def test_model_performance_matches_numpy(run):
    perf = sql(run.path, "SELECT * FROM model_performance WHERE split = 'test'").row(0, named=True)
    t = raw(run.path, "SELECT is_fraud, score, decision FROM transactions WHERE split = 'test'")
    y, s = t["is_fraud"].to_numpy(), t["score"].to_numpy()
    assert perf["auc"] == pytest.approx(roc_auc(y, s), abs=1e-12)
    declined = (t["decision"] == "decline").to_numpy()
    assert perf["false_positive_rate"] == pytest.approx(declined[y == 0].mean())
    assert perf["recall"] == pytest.approx(declined[y == 1].mean())


def add_rounds(path: Path) -> None:
    """Turn the copy into a 3-round campaign: a ``rounds`` row per round (retrained before round 2), the queries
    spread over the rounds, and a defence event, as the campaign runner writes them."""
    con = duckdb.connect(str(path))
    con.execute("UPDATE queries SET round = (query_index - 1) * 3 // 60").fetchall()
    if not con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'rounds'").fetchall()[0][0]:
        con.execute("CREATE TABLE rounds (run_id VARCHAR, round INTEGER, model_version INTEGER, "
                    "attack_success_rate DOUBLE, fpr DOUBLE, retrained BOOLEAN)").fetchall()
    con.execute("INSERT INTO rounds (run_id, round, model_version, attack_success_rate, fpr, retrained) "
                "SELECT run_id, r, 1 + (r >= 2)::INT, 0.5 - r * 0.1, 0.01, r = 2 FROM runs, range(3) t(r)").fetchall()
    con.execute("INSERT INTO defence_events SELECT run_id, 1, 'retrain', NULL, 'x', now() FROM runs").fetchall()
    create_views(con)
    con.close()


def test_round_measures_with_and_without_campaign_rounds(run, copy):
    plain = sql(run.path, "SELECT * FROM round_measures")
    total = raw(run.path, "SELECT count(*) n FROM queries")["n"][0]
    assert plain["round"].to_list() == [0] and plain["queries"].to_list() == [total]
    assert plain["evaded_targets"][0] == raw(run.path, "SELECT count(*) n FROM targets WHERE evaded")["n"][0]
    add_rounds(copy)
    rm = raw(copy, "SELECT * FROM round_measures ORDER BY round")
    assert rm["round"].to_list() == [0, 1, 2]
    assert rm["attack_success_rate"].to_list() == pytest.approx([0.5, 0.4, 0.3])  # the rounds table's own columns
    assert rm["defence_events"].to_list() == [0, 1, 0]
    indep = raw(copy, "SELECT round, count(DISTINCT (strategy, target_id)) FILTER (WHERE evaded) AS e FROM queries "
                      "GROUP BY round ORDER BY round")
    assert rm["evaded_targets"].to_list() == indep["e"].to_list()
    per = raw(copy, "SELECT * FROM round_strategy_measures")
    indep = raw(copy, "SELECT round, strategy, count(DISTINCT target_id) FILTER (WHERE evaded) AS e FROM queries GROUP BY ALL")
    chk = per.join(indep, on=["round", "strategy"])
    assert chk.height == 6 and (chk["evaded"] == chk["e"]).all()
    page = build_report(copy)
    check_html(page)
    assert 'id="rounds"' in page and "Arms race" in page and "model v2" in page and "attack success rate" in page
    assert 'id="rounds"' not in build_report(run.path)


# -- gates -----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, metric, strategy, op, thr", [
    ("success_rate_at_100 <= 0.05", "success_rate_at_100", None, "<=", 0.05),
    ("cheap_success_rate_at_100<=0.1", "cheap_success_rate_at_100", None, "<=", 0.1),
    ("  median_queries_to_evasion >= 500 ", "median_queries_to_evasion", None, ">=", 500.0),
    ("auc > .85", "auc", None, ">", 0.85),
    ("false_positive_rate < 2e-2", "false_positive_rate", None, "<", 0.02),
    ("success_rate_at_100[evolutionary] <= 0.1", "success_rate_at_100", "evolutionary", "<=", 0.1),
    ("success_rate_at_100 [ random ] == 1", "success_rate_at_100", "random", "==", 1.0),
])
def test_parse_gate(text, metric, strategy, op, thr):
    g = parse_gate(text)
    assert (g.metric, g.strategy, g.op, g.threshold) == (metric, strategy, op, thr)
    assert parse_gate(g.expression) == g


@pytest.mark.parametrize("text, words", [
    ("succes_rate_at_100 <= 0.1", ["unknown metric", "success_rate_at_<N>", "auc"]),
    ("success_rate_at_100 = 0.1", ["expected a comparison"]),
    ("success_rate_at_100 => 0.1", ["expected a comparison"]),
    ("success_rate_at_100 <=", ["expected a number"]),
    ("success_rate_at_100 <= 0.1 or auc > 1", ["unexpected"]),
    ("success_rate_at_100[evolutionary <= 0.1", ["strategy name in brackets"]),
    ("auc[random] >= 0.8", ["no per-strategy value"]),
    ("success_rate_at_0 <= 0.1", ["at least 1"]),
    ("<= 0.1", ["metric name"]),
    ("", ["metric name"]),
])
def test_malformed_gates_say_why_in_one_line(text, words):
    with pytest.raises(ScenarioError) as info:
        parse_gate(text, index=3)
    msg = str(info.value)
    assert msg.startswith("gates.3: ") and "\n" not in msg
    for w in words:
        assert w in msg


def test_evaluate_gates_worst_case_and_per_strategy(run):
    fe = first_evasions(run.path)
    rate = {s: (fe.filter(pl.col("strategy") == s)["q"].fill_null(10**9).to_numpy() <= 10).mean()
            for s in SCENARIO["attack"]["strategies"]}
    worst = max(rate, key=rate.get)
    res = evaluate_gates(run.path, None, ["success_rate_at_10 <= 0", "success_rate_at_10[random] <= 1",
                                          "success_rate_at_10 >= 0", "auc >= 0.5", "false_positive_rate <= 0.5"])
    assert [r.passed for r in res] == [rate[worst] <= 0, True, True, True, True]
    assert res[0].observed == pytest.approx(rate[worst]) and res[0].strategy == worst
    assert res[1].observed == pytest.approx(rate["random"]) and res[1].strategy == "random"
    assert exit_code(res) == (1 if rate[worst] > 0 else 0)
    assert exit_code(res[1:]) == 0
    test = raw(run.path, "SELECT is_fraud, score FROM transactions WHERE split = 'test'")
    assert res[3].observed == pytest.approx(roc_auc(test["is_fraud"].to_numpy(), test["score"].to_numpy()))


def test_median_queries_over_evaded_targets_only(copy, run):
    """One rule everywhere (simulator.measures): medians over the evaded targets; none evaded reads as inf in gates."""
    con = duckdb.connect(str(copy))
    ids = con.execute("SELECT target_id FROM targets WHERE strategy = 'random' ORDER BY target_id").fetchall()
    half = [i[0] for i in ids[: len(ids) // 2 + 1]]
    unevade = ("UPDATE targets SET evaded = false, cheap_evaded = false, queries_to_first_evasion = NULL, "
               "queries_to_first_cheap_evasion = NULL, first_evasion_cost = NULL, min_cost = NULL "
               "WHERE strategy = ? AND list_contains(?, target_id)")
    con.execute(unevade, ["random", half]).fetchall()
    left = [r[0] for r in con.execute("SELECT queries_to_first_evasion FROM targets WHERE strategy = 'random' "
                                      "AND queries_to_first_evasion IS NOT NULL").fetchall()]
    con.close()
    r = evaluate_gates(copy, None, ["median_queries_to_evasion[random] >= 0"])
    assert (r[0].observed == pytest.approx(float(np.median(left)))) if left else math.isinf(r[0].observed)
    con = duckdb.connect(str(copy))
    con.execute(unevade, ["random", [i[0] for i in ids]]).fetchall()
    con.close()
    r = evaluate_gates(copy, None, ["median_queries_to_evasion[random] >= 1000", "median_evasion_cost[random] > 100",
                                    "median_best_cost[random] > 100"])
    assert math.isinf(r[0].observed) and r[0].passed
    assert r[1].name == "median_best_cost[random] > 100" and r[1].passed and r[2].passed


def test_gate_errors(run, tmp_path):
    with pytest.raises(ScenarioError, match=r"gates.0: success_rate_at_5000 asks about 5000 queries .* budget is 60"):
        evaluate_gates(run.path, None, ["success_rate_at_5000 <= 0.1"])
    with pytest.raises(ScenarioError, match=r"gates.1: no strategy 'boundary' .*strategies: evolutionary, random"):
        evaluate_gates(run.path, None, ["auc > 0", "success_rate_at_10[boundary] <= 0.1"])
    with pytest.raises(StoreError, match="not a fraudsim run file"):
        bogus = tmp_path / "other.duckdb"
        duckdb.connect(str(bogus)).close()
        evaluate_gates(bogus, None, ["auc > 0"])


def test_junit_file(run, tmp_path):
    path = tmp_path / "ci" / "gates.xml"
    results = check_run(run.path, None, ["auc >= 0.5", "success_rate_at_60 <= 0.0", "cheap_success_rate_at_10 <= 1"],
                        junit=path)
    root = ET.parse(path).getroot()
    suite = root.find("testsuite")
    assert root.tag == "testsuites" and suite is not None
    assert suite.get("tests") == "3" and suite.get("failures") == "1" and suite.get("errors") == "0"
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [r.name for r in results]
    failure = cases[1].find("failure")
    assert failure is not None and cases[0].find("failure") is None and cases[2].find("failure") is None
    observed = results[1].observed
    assert f"observed {observed:.4g}" in failure.get("message") and repr(float(observed)) in failure.text
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["run_id"] == run.run_id
    write_junit([], tmp_path / "empty.xml")
    assert ET.parse(tmp_path / "empty.xml").getroot().get("tests") == "0"


# -- read-only SQL ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stmt", ["DROP TABLE queries", "DELETE FROM queries", "INSERT INTO runs (run_id) VALUES ('x')",
                                  "UPDATE runs SET seed = 1", "ATTACH 'x.duckdb'", "COPY queries TO 'x.csv'",
                                  "INSTALL httpfs", "LOAD httpfs", "EXPORT DATABASE 'x'", "SET threads = 1",
                                  "CREATE TABLE t (a INT)", "SELECT 1; SELECT 2", "SELECT * FROM read_csv('x.csv')",
                                  "SELECT * FROM read_parquet('x.parquet')", "SELECT * FROM read_text('/etc/hostname')",
                                  "SELECT * FROM 'x.csv'", "CALL pragma_table_info('runs')", "PRAGMA threads=1",
                                  "EXPLAIN DELETE FROM queries", "SELECT * FROM query('SELECT 1')"])
def test_check_statement_refuses(stmt):
    with pytest.raises(QueryError):
        check_statement(stmt)


# -- report ----------------------------------------------------------------------------------------------------------

class StrictHTML(HTMLParser):
    """Collects tags and checks nesting: every non-void element closed, in order."""

    VOID = frozenset({"meta", "br", "hr", "img", "input", "link", "col", "area", "base", "source", "wbr"})

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: list[tuple[str, dict]] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
        else:
            self.stack.pop()


def check_html(page: str) -> StrictHTML:
    p = StrictHTML()
    p.feed(page)
    p.close()
    assert not p.errors, p.errors[:5]
    assert not p.stack, p.stack
    assert page.startswith("<!DOCTYPE html>")
    names = [t for t, _ in p.tags]
    assert names.count("html") == 1 and names.count("body") == 1 and "script" not in names
    for tag, attrs in p.tags:
        for key in ("src", "href", "xlink:href", "action"):
            if key in attrs:
                assert attrs[key].startswith("#"), (tag, attrs)
    assert "http" not in page and "//" not in page.replace("://", "")
    return p


def test_report_is_valid_self_contained_html(run, tmp_path):
    out = tmp_path / "r.html"
    page = to_html(run, out, gates=["auc >= 0.5", "success_rate_at_10 <= 0"])
    assert out.read_text(encoding="utf-8") == page
    p = check_html(page)
    svgs = [a for t, a in p.tags if t == "svg"]
    assert len(svgs) >= 3  # curve, heatmap, cost histograms
    for section in ("gates", "summary", "curve", "features", "cost", "segments", "worst", "model", "scenario"):
        assert f'id="{section}"' in page
    assert run.run_id in page and "threshold_rule" in page and "customers: 2000" in page
    assert "success_rate_at_10 &lt;= 0" in page


def test_report_escapes_what_it_reads(copy):
    con = duckdb.connect(str(copy))
    con.execute("UPDATE model_versions SET card = ?", [json.dumps({"note": "<script>alert(1)</script>", "x": "a&b"})]).fetchall()
    con.execute("UPDATE runs SET scenario_yaml = 'name: <img src=x onerror=alert(1)>'").fetchall()
    con.close()
    page = build_report(copy)
    check_html(page)
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page and "a&amp;b" in page


def test_report_shows_the_scenarios_gates(copy):
    con = duckdb.connect(str(copy))
    y = con.execute("SELECT scenario_yaml FROM runs").fetchall()[0][0]
    con.execute("UPDATE runs SET scenario_yaml = ?", [y + "gates:\n- auc >= 0.5\n"]).fetchall()
    con.close()
    page = build_report(copy)
    assert 'id="gates"' in page and "auc &gt;= 0.5" in page


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="no headless Chromium on this machine")
def test_report_renders_in_headless_chromium(run, tmp_path):
    page = tmp_path / "r.html"
    to_html(run, page)
    png = tmp_path / "r.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={png}", "--window-size=1300,2400", page.as_uri()],
                   check=True, capture_output=True, timeout=60)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000  # a blank page compresses to a few KB


# -- notebook API, compare ---------------------------------------------------------------------------------------

def test_plot_accessor_figures(run, tmp_path):
    p = plot(run)
    for fig in (p.success_curve(), p.cost_histogram(), p.cost_histogram("first"), p.feature_heatmap(), p.arms_race()):
        s = fig._repr_svg_()
        assert s.startswith("<svg") and s.rstrip().endswith("</svg>") and 'xmlns="http://www.w3.org/2000/svg"' in s
        ET.fromstring(s)  # well-formed XML
        assert fig._repr_html_().startswith("<div")
    assert "random: evaded" in str(p.success_curve())
    saved = p.success_curve().save(tmp_path / "c.svg")
    ET.parse(saved)
    assert "<svg" in p._repr_html_()
    with pytest.raises(ValueError):
        p.cost_histogram("worst")
    both = rep_api.curves({"a": run, "b": run.path}, cheap=True)
    ET.fromstring(both._repr_svg_())


def test_compare_same_run_has_zero_deltas(run):
    df = rep_api.compare(run, run)
    nums = df.filter(pl.col("a").is_not_null() & pl.col("a").is_finite())
    assert nums["delta"].abs().max() == 0
    assert set(df["verdict"].drop_nulls().to_list()) == {"same"}
    assert {"auc", "false_positive_rate", "threshold", "model", "success_rate_at_60", "median_queries_to_evasion"} \
        <= set(df["measure"].to_list())
    direct = compare_runs(run.path, run.path)
    assert direct.equals(df)


def test_open_run_refuses_other_files(tmp_path):
    text = tmp_path / "notes.duckdb"
    text.write_text("hello")
    with pytest.raises(StoreError, match="not a DuckDB file"):
        open_run(text)
    with pytest.raises(StoreError, match="file not found"):
        open_run(tmp_path / "missing.duckdb")


NOTEBOOK = ROOT / "examples" / "what_if_budget.ipynb"
HAVE_NB = all(importlib.util.find_spec(m) for m in ("nbformat", "nbclient", "ipykernel"))


@pytest.mark.slow  # executes a notebook: 45-60 s on 2 loaded cores, the slowest test of the suite
@pytest.mark.skipif(not HAVE_NB, reason="nbformat, nbclient and ipykernel are needed to execute the notebook")
def test_example_notebook_runs(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/svg+xml" in o.get("data", {}) or "<svg" in str(o.get("data", {}).get("text/html", ""))
               for o in outputs)
