"""One meaning per measure: every measure computed through each of the four doors on the same run agrees.

The doors: the CLI (``fraudsim run`` prints the summary table), the notebook API (``RunResult.summary()`` and the
views), the gates (:mod:`simulator.report.gates`) and the HTML report. The reference is computed here, in NumPy,
straight from the ``queries`` table (and scikit-learn's ``roc_auc_score`` for the AUC).
"""
from __future__ import annotations

import math
import re

import duckdb
import numpy as np
import pytest
import yaml
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

import simulator as fs
from simulator import measures
from simulator.campaign.defence import auc as campaign_auc
from simulator.cli import app
from simulator.report import build_report, evaluate_gates, open_run
from simulator.report.html_report import summary_rows
from simulator.target.train import roc_auc as train_auc

SCENARIO = {"name": "measures", "seed": 5, "world": {"customers": 2000, "days": 6},
            "attack": {"limit": 8, "budget": 40, "strategies": ["random", "evolutionary"]},
            "output": "measures.duckdb"}
BUDGETS = (10, 40)


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """One run through the CLI; its printed summary table and its file."""
    d = tmp_path_factory.mktemp("measures")
    (d / "s.yaml").write_text(yaml.safe_dump(SCENARIO))
    out = d / "m.duckdb"
    res = CliRunner().invoke(app, ["run", str(d / "s.yaml"), "-o", str(out), "--quiet"], env={"COLUMNS": "200"},
                             terminal_width=200)
    assert res.exit_code == 0, res.output
    return out, res.output


def reference(path) -> dict[str, dict[str, float | None]]:
    """Every per-strategy measure computed in NumPy from the oracle's log (``queries``), not from ``targets``."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        thr = con.execute("SELECT threshold FROM runs").fetchone()[0]
        rows = con.execute("SELECT strategy, target_id, query_index, cost, score FROM queries "
                           "ORDER BY strategy, target_id, query_index").fetchall()
    finally:
        con.close()
    per: dict[str, dict[int, list]] = {}
    for s, t, q, c, score in rows:
        per.setdefault(s, {}).setdefault(t, []).append((q, c, score < thr))
    out = {}
    for s, targets in per.items():
        first_q, first_c, best_c, cheap_q = [], [], [], []
        for qs in targets.values():
            ev = [(q, c) for q, c, e in qs if e]
            first_q.append(min(ev)[0] if ev else math.inf)
            first_c.append(min(ev)[1] if ev else None)
            best_c.append(min(c for _, c in ev) if ev else None)
            cheap = [q for q, c in ev if c <= 1.0]
            cheap_q.append(min(cheap) if cheap else math.inf)
        fq, cq = np.array(first_q), np.array(cheap_q)
        med = lambda xs: float(np.median([x for x in xs if x is not None and math.isfinite(x)])) \
            if any(x is not None and math.isfinite(x) for x in xs) else None
        m = {"targets": float(len(fq)), "success_rate": float(np.isfinite(fq).mean()),
             "cheap_success_rate": float(np.isfinite(cq).mean()),
             "median_queries_to_evasion": med(first_q), "median_queries_to_cheap_evasion": med(cheap_q),
             "median_first_cost": med(first_c), "median_best_cost": med(best_c)}
        for b in BUDGETS:
            m[measures.rate_name(b)] = float((fq <= b).mean())
            m[measures.rate_name(b, cheap=True)] = float((cq <= b).mean())
        out[s] = m
    return out


def close(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a == pytest.approx(b, rel=1e-9, abs=1e-12)


def test_every_measure_agrees_through_the_four_doors(cli_run):
    path, printed = cli_run
    ref = reference(path)
    assert set(ref) == {"random", "evolutionary"}
    assert any(m["success_rate"] > 0 for m in ref.values())  # something to measure

    # notebook: RunResult.summary() (the CLI prints the same frame) and the run_summary view
    res = fs.RunResult(path=path, run_id=None, scenario=None)  # type: ignore[arg-type]
    summary = {r["strategy"]: r for r in fs.runner.summarize(path).iter_rows(named=True)}
    con = open_run(path)
    try:
        view = {r[1]: dict(zip([d[0] for d in con.description], r))
                for r in con.execute("SELECT * FROM run_summary").fetchall()}
        run_id = con.execute("SELECT run_id FROM runs").fetchone()[0]
        budget = con.execute("SELECT budget FROM runs").fetchone()[0]
        _, html_rows = summary_rows(con, run_id, budget)
    finally:
        con.close()
    res.run_id = run_id
    assert {r["strategy"]: r for r in res.summary().iter_rows(named=True)} == summary
    html = {r["strategy"]: r for r in html_rows}

    names = [n for n in ref["random"] if n != "targets"]
    gate_names = names + ["success_at_10", "cheap_success_at_40", "median_evasion_cost"]  # aliases too
    for s, m in ref.items():
        for name in names:
            assert close(summary[s][name], m[name]), ("summary", s, name, summary[s][name], m[name])
            assert close(html[s][name], m[name]), ("html", s, name)
            if name in view[s]:
                assert close(view[s][name], m[name]), ("run_summary", s, name)
        gates = evaluate_gates(path, None, [f"{g}[{s}] >= 0" for g in gate_names])
        for g, r in zip(gate_names, gates):
            expected = m[measures.canonical(g)]
            expected = math.inf if expected is None else expected  # a median over no evasion: "not reached"
            assert close(r.observed, expected), ("gate", s, g, r.observed, expected)
            assert r.name.startswith(measures.canonical(g) + "[")
        assert summary[s][measures.rate_name(40)] == pytest.approx(view[s]["success_rate"])

    # the CLI's printed table: the same numbers, formatted
    fmt = lambda v, pct=False: "–" if v is None else (f"{v:.0%}" if pct else f"{v:.2f}" if v < 10 else f"{v:.0f}")
    for s, m in ref.items():
        line = next(ln for ln in printed.splitlines() if re.match(rf"\s*{s}\s", ln))
        cells = line.split()
        expect = [s, str(int(m["targets"])), fmt(m["success_rate_at_10"], True), fmt(m["success_rate_at_40"], True),
                  fmt(m["cheap_success_rate_at_40"], True), fmt(m["median_queries_to_evasion"]),
                  fmt(m["median_first_cost"]), fmt(m["median_best_cost"])]
        assert cells == expect, (printed, expect)

    # the HTML report prints the summary rows above and the same worst-strategy rate in its headline
    text = build_report(path)
    worst = max(ref.values(), key=lambda m: m["success_rate_at_40"])["success_rate_at_40"]
    assert f'<div class="value">{worst:.0%}</div>' in text


def test_model_measures_agree(cli_run):
    path, _ = cli_run
    con = duckdb.connect(str(path), read_only=True)
    try:
        y, score, declined = map(np.array, zip(*con.execute(
            "SELECT is_fraud, score, decision = 'decline' FROM transactions WHERE split = 'test'").fetchall()))
        card_auc = con.execute("SELECT test_auc FROM model_versions").fetchone()[0]
    finally:
        con.close()
    expected = {"auc": roc_auc_score(y, score), "false_positive_rate": declined[y == 0].mean(),
                "recall": declined[y == 1].mean()}
    # the NumPy AUC (training cards, campaigns, hardening) is one function under its older names
    assert train_auc is measures.roc_auc and campaign_auc is measures.roc_auc
    assert measures.roc_auc(y, score) == pytest.approx(expected["auc"])
    # the model card's test AUC is the same number on the same rows
    assert card_auc == pytest.approx(expected["auc"])
    gates = evaluate_gates(path, None, [f"{k} >= 0" for k in expected])
    con = open_run(path)
    try:
        perf = dict(zip(["auc", "false_positive_rate", "recall"], con.execute(
            "SELECT auc, false_positive_rate, recall FROM model_performance WHERE split = 'test'").fetchone()))
    finally:
        con.close()
    text = build_report(path)
    for (k, v), g in zip(expected.items(), gates):
        assert g.observed == pytest.approx(v) and perf[k] == pytest.approx(v), k
    assert f"{expected['auc']:.3f}</div>" in text and f"{expected['auc']:.4f}" in text


def test_roc_auc_matches_scikit_learn_with_ties():
    rng = np.random.default_rng(0)
    for n in (2, 7, 100, 5000):
        y = rng.integers(0, 2, n)
        y[0], y[-1] = 0, 1
        s = np.round(rng.random(n), 1)  # many ties
        assert measures.roc_auc(y, s) == pytest.approx(roc_auc_score(y, s))
    assert math.isnan(measures.roc_auc(np.zeros(3), np.arange(3.0)))


def test_report_shows_file_names_integer_categories_and_one_relative_change(team_files, write_scenario, tmp_path):
    """Report truths: no absolute local path, categories as integers, the relative change a median like the change
    next to it, the model's AUC labelled as clean."""
    from .conftest import scenario_dict

    raw = scenario_dict(team_files, budget=40, limit=5)
    raw["output"] = str(tmp_path / "r.duckdb")
    res = fs.run(fs.Scenario.from_yaml(write_scenario(raw, "truths.yaml")))
    text = build_report(res.path)
    for where in (team_files["dir"], tmp_path):
        assert str(where) not in text
    assert team_files["xgb"].name in text
    assert "Clean AUC" in text and "clean AUC" in text
    con = open_run(res.path)
    try:
        cats = con.execute("SELECT original_value, evading_value FROM evasion_feature_changes "
                           "WHERE feature = 'merchant_cat'").fetchall()
        rows = con.execute("SELECT feature, median_delta, median_relative_delta, mean_relative_delta, changed "
                           "FROM feature_changes WHERE changed > 0").fetchall()
    finally:
        con.close()
    assert cats and not re.search(r">\d+\.0<", text)  # no "5.0" for a category
    assert rows
    for f, med, med_rel, _, n in rows:
        if f in ("merchant_cat", "country_mismatch", "new_device"):
            continue
        if med_rel is not None and med is not None:
            assert f"{med:+.4g}" + f' <span class="muted">({med_rel:+.0%} rel.)</span>' in text
