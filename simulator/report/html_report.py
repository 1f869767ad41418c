"""The HTML report: one self-contained file (inline CSS and SVG, no script, no font or image from anywhere else).

Sections: the verdict at a glance, gates (when given or listed in the scenario), the per-strategy summary, the
success-vs-budget curve, the per-round arms race (when a ``rounds`` table has rows), what attackers changed, the
cost of evasion, success by segment, the worst evasions side by side with the original transactions, the model
cards, and the scenario itself. Every value from the run file is escaped with :func:`html.escape`.
"""
from __future__ import annotations

import datetime as _dt
import html
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from string import Template

import duckdb
import yaml

from .. import __version__
from ..store import CHEAP_COST
from . import metrics as M
from . import plots
from .gates import GateResult, evaluate_gates, format_value
from ..measures import budgets_for, has_exact, rate_name, summary_sql
from .views import open_run, resolve_run_id

WORST_EVASIONS = 6
MAX_FEATURES_SIDE_BY_SIDE = 16
CHART_W = 1080  # the report's content width, so charts are drawn at their display size


def esc(v: object) -> str:
    return html.escape("" if v is None else str(v), quote=True)


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list | dict | None = None) -> list[dict]:
    rel = con.sql(sql, params=params)
    cols = rel.columns
    return [dict(zip(cols, r)) for r in rel.fetchall()]


def _pct(v: float | None, digits: int = 0) -> str:
    return "–" if v is None else f"{v:.{digits}%}"


def _num(v: float | None) -> str:
    if v is None:
        return "–"
    if isinstance(v, float) and math.isinf(v):
        return "∞"
    if isinstance(v, float) and math.isnan(v):
        return "missing"
    if isinstance(v, int) or (isinstance(v, float) and v.is_integer() and abs(v) < 1e15):
        return f"{int(v):,}"
    return f"{v:.4g}"


def summary_rows(con: duckdb.DuckDBPyConnection, run_id: str, budget: int) -> tuple[list[int], list[dict]]:
    """The per-strategy summary: the same SQL as ``RunResult.summary()`` and the CLI (:func:`measures.summary_sql`),
    with the queries spent."""
    bs = list(budgets_for(budget))
    rows = _rows(con, summary_sql(tuple(bs), exact=has_exact(con, run_id)), [run_id])
    spent = dict(con.execute("SELECT strategy, sum(queries_used) FROM targets WHERE run_id = ? GROUP BY 1",
                             [run_id]).fetchall())
    for r in rows:
        r["queries"] = spent.get(r["strategy"])
    return bs, rows


CSS = """
:root { --ink:#1f2937; --muted:#6b7280; --line:#e5e7eb; --bg:#f8fafc; --card:#ffffff; --accent:#1d4ed8;
        --good:#047857; --bad:#b91c1c; --warn:#b45309; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink); font: 14px/1.5 -apple-system, "Segoe UI", Roboto,
       "Helvetica Neue", Arial, sans-serif; }
header.top { background:#0f172a; color:#e2e8f0; padding:22px 0 18px; }
.wrap { max-width:1180px; margin:0 auto; padding:0 28px; }
header.top h1 { margin:0 0 4px; font-size:22px; font-weight:650; color:#fff; letter-spacing:-0.01em; }
header.top .sub { color:#94a3b8; font-size:13px; }
header.top .sub b { color:#e2e8f0; font-weight:600; }
.badge { display:inline-block; padding:1px 8px; border-radius:999px; font-size:12px; font-weight:600;
         vertical-align:middle; }
.badge.ok { background:#d1fae5; color:#065f46; } .badge.fail { background:#fee2e2; color:#991b1b; }
.badge.info { background:#e0e7ff; color:#3730a3; }
nav.toc { margin-top:12px; font-size:13px; }
nav.toc a { color:#cbd5e1; text-decoration:none; margin-right:14px; }
nav.toc a:hover { color:#fff; text-decoration:underline; }
main { padding:8px 0 40px; }
section { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:18px 22px 20px;
          margin:18px 0; }
section h2 { margin:0 0 4px; font-size:17px; font-weight:650; }
section p.lead { margin:0 0 14px; color:var(--muted); font-size:13px; max-width:900px; }
.kpis { display:grid; grid-template-columns:repeat(auto-fit, minmax(160px, 1fr)); gap:12px; margin:18px 0 0; }
.kpi { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:12px 14px; }
.kpi .label { font-size:12px; color:var(--muted); text-transform:uppercase; letter-spacing:0.04em; }
.kpi .value { font-size:26px; font-weight:650; margin-top:2px; font-variant-numeric:tabular-nums; }
.kpi .note { font-size:12px; color:var(--muted); }
.kpi.bad .value { color:var(--bad); } .kpi.warn .value { color:var(--warn); } .kpi.good .value { color:var(--good); }
table { border-collapse:collapse; width:100%; font-size:13px; }
th, td { padding:6px 10px; border-bottom:1px solid var(--line); text-align:left; vertical-align:top; }
th { font-weight:600; color:#374151; background:#f9fafb; white-space:nowrap; }
td.n, th.n { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
tbody tr:hover td { background:#f8fafc; }
.muted { color:var(--muted); }
.fig { overflow-x:auto; }
.tbl { overflow-x:auto; }
td.name { white-space:nowrap; font-weight:600; }
.grid2 { display:grid; grid-template-columns:repeat(auto-fit, minmax(460px, 1fr)); gap:18px; }
.stack > div + div { margin-top:18px; }
.bar { position:relative; min-width:58px; }
.bar span.fill { position:absolute; left:0; top:3px; bottom:3px; border-radius:3px; opacity:0.22; }
.bar span.txt { position:relative; }
span.heat { display:block; margin:-6px -10px; padding:6px 10px; }
.evasion { border:1px solid var(--line); border-radius:8px; padding:12px 14px; margin:0 0 14px; }
.evasion h3 { margin:0 0 6px; font-size:14px; font-weight:600; }
.evasion .meta { font-size:12px; color:var(--muted); margin-bottom:8px; }
tr.changed td { background:#fff7ed; }
tr.changed td.delta { color:#9a3412; font-weight:600; }
pre { background:#0f172a; color:#e2e8f0; padding:14px 16px; border-radius:8px; overflow-x:auto; font-size:12.5px;
      line-height:1.45; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size:12.5px; }
details > summary { cursor:pointer; color:var(--accent); font-size:13px; margin:6px 0; }
.gate-pass { color:var(--good); font-weight:600; } .gate-fail { color:var(--bad); font-weight:600; }
footer { color:var(--muted); font-size:12px; padding:10px 0 30px; }
@media print { body { background:#fff; } section { break-inside:avoid; border:none; } nav.toc { display:none; } }
"""

PAGE = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="fraudsim $version">
<title>$title</title>
<style>$css</style>
</head>
<body>
<header class="top"><div class="wrap">
<h1>$heading</h1>
<div class="sub">$subtitle</div>
<nav class="toc">$toc</nav>
</div></header>
<main><div class="wrap">
$kpis
$sections
<footer>Generated by fraudsim $version on $generated from <code>$source</code>. Every number comes from SQL views
of the run file (<code>fraudsim query $source_q "SELECT * FROM run_summary"</code>).</footer>
</div></main>
</body>
</html>
""")


def _section(anchor: str, title: str, lead: str, body: str) -> str:
    lead_html = f'<p class="lead">{lead}</p>' if lead else ""
    return f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>{lead_html}{body}</section>'


def _table(head: Sequence[tuple[str, bool]], rows: Sequence[Sequence[str]], *, row_classes: Sequence[str] | None = None,
           name_col: bool = False) -> str:
    """``head``: (label, numeric); cells are already-escaped HTML."""
    th = "".join(f'<th class="n">{esc(h)}</th>' if n else f"<th>{esc(h)}</th>" for h, n in head)
    thead = f"<thead><tr>{th}</tr></thead>" if any(h for h, _ in head) else ""
    body = []
    for i, r in enumerate(rows):
        cls = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        tds = "".join(f'<td class="n">{c}</td>' if head[j][1] else (f'<td class="name">{c}</td>' if j == 0 and name_col
                      else f"<td>{c}</td>") for j, c in enumerate(r))
        body.append(f"<tr{cls}>{tds}</tr>")
    return f"<div class=\"tbl\"><table>{thead}<tbody>{''.join(body)}</tbody></table></div>"


def _bar(v: float | None, color: str) -> str:
    if v is None:
        return "–"
    w = max(0.0, min(1.0, v)) * 100
    return (f'<div class="bar"><span class="fill" style="width:{w:.1f}%;background:{color}"></span>'
            f'<span class="txt">{v:.0%}</span></div>')


def _heat(v: float | None, rgb: tuple[int, int, int]) -> str:
    """A percentage in a cell tinted by its value (compact, for wide tables)."""
    if v is None:
        return "–"
    a = 0.06 + 0.5 * max(0.0, min(1.0, v))
    return (f'<span class="heat" style="background:rgba({rgb[0]},{rgb[1]},{rgb[2]},{a:.2f})">{v:.0%}</span>')


def _flatten(obj: object, prefix: str = "") -> list[tuple[str, object]]:
    """Nested card fields as dotted keys: ``{"params": {"eta": 0.1}}`` -> ``[("params.eta", 0.1)]``."""
    if isinstance(obj, dict):
        out: list[tuple[str, object]] = []
        for k, v in obj.items():
            out += _flatten(v, f"{prefix}{k}.")
        return [(k.rstrip("."), v) for k, v in out]
    return [(prefix, obj)]


def _value_html(v: object) -> str:
    if isinstance(v, float):
        return esc(f"{v:.6g}")
    if isinstance(v, (list, tuple)):
        return f"<code>{esc(json.dumps(v, default=str))}</code>"
    return esc(v)


def _code(v: object) -> str:
    """A category or flag as the integer it is (``5411``, not ``5,411`` or ``5411.0``)."""
    if isinstance(v, float) and math.isfinite(v) and v.is_integer():
        return str(int(v))
    return _num(v) if isinstance(v, (int, float)) or v is None else str(v)


def _feature_kinds(scenario_yaml: str | None) -> dict[str, str]:
    """Feature -> its type (``categorical``, ``binary``, ...) from the stored scenario; {} when it has none."""
    try:
        raw = yaml.safe_load(scenario_yaml or "") or {}
    except yaml.YAMLError:
        return {}
    if not isinstance(raw, dict):
        return {}
    feats = raw.get("features")
    if feats is None and raw.get("data") is None:  # a world scenario with the world's own feature specs
        from ..world import default_feature_specs

        feats = default_feature_specs()
    if not isinstance(feats, dict):
        return {}
    return {str(k): str(v.get("type")) for k, v in feats.items() if isinstance(v, dict) and v.get("type")}


def _file_name(path: object) -> str | None:
    """A stored path as its file name only: no absolute local path in a report that gets shared."""
    return None if path in (None, "") else Path(str(path)).name


def _scenario_text(scenario_yaml: str | None) -> str:
    """The stored scenario with every path (``data.path``, ``model.path``, ``train.path``, ``output``) cut to its
    file name."""
    if not scenario_yaml:
        return "(not recorded)"
    try:
        raw = yaml.safe_load(scenario_yaml)
    except yaml.YAMLError:
        return scenario_yaml
    if not isinstance(raw, dict):
        return scenario_yaml
    for section in ("data", "model", "train"):
        if isinstance(raw.get(section), dict) and raw[section].get("path"):
            raw[section]["path"] = _file_name(raw[section]["path"])
    if raw.get("output"):
        raw["output"] = _file_name(raw["output"])
    return yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)


def _gates_from_scenario(scenario_yaml: str | None) -> list[str]:
    try:
        raw = yaml.safe_load(scenario_yaml or "") or {}
    except yaml.YAMLError:
        return []
    gates = raw.get("gates") if isinstance(raw, dict) else None
    return [g for g in gates if isinstance(g, str)] if isinstance(gates, list) else []


def build_report(path: str | Path, run_id: str | None = None, *, gates: Sequence[str] | None = None,
                 title: str | None = None) -> str:
    """The report of one run as an HTML string (see :func:`write_report` to write it)."""
    con = open_run(path)
    try:
        run_id = resolve_run_id(con, run_id, file=str(path))
        return _render(con, run_id, Path(path), gates, title)
    finally:
        con.close()


def write_report(path: str | Path, output: str | Path, run_id: str | None = None, *,
                 gates: Sequence[str] | None = None, title: str | None = None) -> Path:
    text = build_report(path, run_id, gates=gates, title=title)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    return output


def _render(con: duckdb.DuckDBPyConnection, run_id: str, path: Path, gates: Sequence[str] | None,
            title: str | None) -> str:
    run = _rows(con, "SELECT * FROM runs WHERE run_id = ?", [run_id])[0]
    budget = int(run.get("budget") or 1)
    colors = plots.strategy_colors(con, run_id)
    perf = _rows(con, "SELECT * FROM model_performance WHERE run_id = ? ORDER BY model_version, split", [run_id])
    test = [p for p in perf if p["split"] == "test"]
    if test:  # the same numbers model_values computes, read from the view the model section shows anyway
        latest = test[-1]
        model = {"split": "test", "auc": latest["auc"], "false_positive_rate": latest["false_positive_rate"],
                 "recall": latest["recall"], "threshold": latest["threshold"]}
    else:
        model = M.model_values(con, run_id)
    bs, summary = summary_rows(con, run_id, budget)
    gate_texts = list(gates) if gates is not None else _gates_from_scenario(run.get("scenario_yaml"))
    gate_results = evaluate_gates(con, run_id, gate_texts) if gate_texts else []

    sections: list[tuple[str, str, str]] = []  # (anchor, toc label, html)
    if gate_results:
        sections.append(("gates", "Gates", _gates_section(gate_results)))
    sections.append(("summary", "Summary", _summary_section(summary, bs, budget, colors)))
    sections.append(("curve", "Success vs budget", _section(
        "curve", "Success against query budget",
        f"Share of targets with an evading query within N queries (solid), and with a cheap one, cost ≤ {CHEAP_COST:g} "
        "(dashed). A steep early rise means the model gives way to a few probes; a flat curve near zero is robust.",
        f'<div class="fig">{plots.success_curve(con, run_id, width=CHART_W, height=420)}</div>')))
    if plots.has_rounds(con, run_id):
        rings = plots.ring_success(con, run_id, width=CHART_W, title="Probes approved per ring")
        sections.append(("rounds", "Arms race", _section(
            "rounds", "Arms race per round",
            "Each round of the campaign: how often the attackers got through, how often the defence spotted their "
            "probes, what it cost legitimate customers (false-positive rate) and how the model held up; dotted lines "
            "mark the round each retrained model version starts.", f'<div class="fig">{plots.arms_race(con, run_id, width=CHART_W)}</div>'
            + (f'<div class="fig">{rings}</div>' if rings else "") + _rounds_table(con, run_id))))
    kinds = _feature_kinds(run.get("scenario_yaml"))
    sections.append(("features", "Features changed", _features_section(con, run_id, kinds)))
    sections.append(("cost", "Cost", _section(
        "cost", "Cost of evasion",
        f"Per evaded target, the cost of the cheapest evading transaction found within the budget (the sum of the "
        f"scenario's per-feature costs of the changes). Left of the dashed line (cost ≤ {CHEAP_COST:g}) are the cheap "
        "evasions a real fraudster would find easy.",
        f'<div class="fig">{plots.cost_histogram(con, run_id, width=CHART_W)}</div>')))
    seg = _segments_section(con, run_id, colors)
    if seg:
        sections.append(("segments", "Segments", seg))
    sections.append(("worst", "Worst evasions", _worst_section(con, run_id, kinds)))
    sections.append(("model", "Model", _model_section(con, run_id, perf)))
    sections.append(("scenario", "Scenario", _section(
        "scenario", "Scenario", "The scenario this run executed, as stored in the run file (<code>runs.scenario_yaml</code>); "
        "paths are shown as file names.",
        f"<pre>{esc(_scenario_text(run.get('scenario_yaml')))}</pre>")))

    started, finished = run.get("started_at"), run.get("finished_at")
    duration = ""
    if isinstance(started, _dt.datetime) and isinstance(finished, _dt.datetime):
        duration = f" · {(finished - started).total_seconds():.0f} s"
    status = str(run.get("status") or "unknown")
    badge = "ok" if status == "finished" else ("fail" if status == "failed" else "info")
    n_targets = max([r["targets"] for r in summary] + [0])
    subtitle = (f'run <b>{esc(run_id)}</b> <span class="badge {badge}">{esc(status)}</span> · '
                f"{esc(started.strftime('%Y-%m-%d %H:%M') if isinstance(started, _dt.datetime) else started)} UTC"
                f"{esc(duration)} · {esc(run.get('model_kind') or 'model')} model, threshold "
                f"{esc(_num(run.get('threshold')))} · {n_targets} targets × {len(summary)} strategies × budget "
                f"{budget:,} · feedback: {esc(run.get('feedback'))} · seed {esc(run.get('seed'))}")
    toc = "".join(f'<a href="#{esc(a)}">{esc(label)}</a>' for a, label, _ in sections)
    return PAGE.substitute(
        version=esc(__version__), title=esc(title or f"fraudsim report: {run.get('scenario')}"),
        heading=esc(title or f"Adversarial robustness report · {run.get('scenario')}"), subtitle=subtitle, toc=toc,
        css=CSS, kpis=_kpis(summary, budget, model, gate_results),
        sections="\n".join(h for _, _, h in sections), generated=esc(time.strftime("%Y-%m-%d %H:%M")),
        source=esc(path.name), source_q=esc(path.name))


def _kpis(summary: list[dict], budget: int, model: dict, gate_results: list[GateResult]) -> str:
    def card(label: str, value: str, note: str, tone: str = "") -> str:
        return (f'<div class="kpi {tone}"><div class="label">{esc(label)}</div><div class="value">{esc(value)}</div>'
                f'<div class="note">{esc(note)}</div></div>')

    def tone(rate: float | None) -> str:
        if rate is None:
            return ""
        return "bad" if rate >= 0.5 else ("warn" if rate >= 0.1 else "good")

    cards = []
    if gate_results:
        failed = sum(not r.passed for r in gate_results)
        cards.append(card("Gates", "PASS" if not failed else "FAIL",
                          f"{len(gate_results) - failed} of {len(gate_results)} passed", "good" if not failed else "bad"))
    if summary:
        sb, cb = rate_name(budget), rate_name(budget, cheap=True)
        w = max(summary, key=lambda r: r[sb])
        cards.append(card(f"Evaded within {budget:,} queries", _pct(w[sb]), f"worst strategy: {w['strategy']}",
                          tone(w[sb])))
        c = max(summary, key=lambda r: r[cb])
        cards.append(card(f"Cheap evasions (cost ≤ {CHEAP_COST:g})", _pct(c[cb]),
                          f"worst strategy: {c['strategy']}", tone(c[cb])))
        s100n = rate_name(min(100, budget))
        s100 = max(summary, key=lambda r: r.get(s100n) or 0)
        cards.append(card(f"Evaded within {min(100, budget)} queries", _pct(s100.get(s100n)),
                          f"worst strategy: {s100['strategy']}", tone(s100.get(s100n))))
        fast = [r for r in summary if r["median_queries_to_evasion"] is not None]
        if fast:
            q = min(fast, key=lambda r: r["median_queries_to_evasion"])
            cards.append(card("Median queries to evade", _num(q["median_queries_to_evasion"]),
                              f"over evaded targets; {q['strategy']}"))
    if model.get("auc") is not None:
        cards.append(card(f"Clean AUC ({model.get('split')})", f"{model['auc']:.3f}",
                          f"FPR {_pct(model.get('false_positive_rate'), 2)}, recall {_pct(model.get('recall'), 1)} at "
                          f"threshold {_num(model.get('threshold'))}"))
    return f'<div class="kpis">{"".join(cards)}</div>'


def _gates_section(results: list[GateResult]) -> str:
    rows = []
    for r in results:
        verdict = '<span class="gate-pass">✔ pass</span>' if r.passed else '<span class="gate-fail">✘ fail</span>'
        metric = r.name.split("[")[0].split()[0]
        rows.append([verdict, f"<code>{esc(r.name)}</code>", esc(format_value(metric, r.observed)), esc(r.detail)])
    failed = sum(not r.passed for r in results)
    lead = (f"{len(results) - failed} of {len(results)} gates passed." + (" The run fails its release gates." if failed else ""))
    return _section("gates", "Gates", esc(lead), _table([("", False), ("gate", False), ("observed", True), ("", False)], rows))


def _summary_section(summary: list[dict], bs: list[int], budget: int, colors: dict[str, str]) -> str:
    head = [("strategy", False), ("targets", True)] + [(f"≤ {b:,}", True) for b in bs]
    head += [(f"cheap ≤ {b:,}", True) for b in bs[-2:]]
    head += [("median queries", True), ("median 1st cost", True), ("median best cost", True)]
    exact = bool(summary) and "median_ratio_to_exact" in summary[0]
    if exact:  # the run has the exact strategy: best cost over the exact minimum per target
        head += [("best ÷ exact, median", True), ("best ÷ exact, p90", True)]
    rows = []
    for r in summary:
        dot = f'<span style="color:{colors.get(r["strategy"], "#999")}">●</span> '
        rows.append([dot + esc(r["strategy"]), _num(r["targets"])] + [_heat(r[rate_name(b)], (225, 87, 89)) for b in bs]
                    + [_heat(r[rate_name(b, cheap=True)], (242, 142, 43)) for b in bs[-2:]]
                    + [_num(r["median_queries_to_evasion"]), _num(r["median_first_cost"]), _num(r["median_best_cost"])]
                    + ([_num(r["median_ratio_to_exact"]), _num(r["p90_ratio_to_exact"])] if exact else []))
    lead = (f"Share of targets evaded within each query budget (≤ N), and cheaply (cost ≤ {CHEAP_COST:g}); medians over "
            f"the evaded targets. Budget: {budget:,} queries per target and strategy.")
    return _section("summary", "Summary per strategy", esc(lead), _table(head, rows, name_col=True))


ROUND_COLUMNS = ("day", "model_version", "retrained", "probes", "probes_approved", "attack_success_rate",
                 "probes_detected_share", "fpr", "clean_auc", "cards_burned", "drift_alerts", "queries",
                 "evaded_targets", "query_success_rate", "defence_events")


def _rounds_table(con: duckdb.DuckDBPyConnection, run_id: str) -> str:
    rows = _rows(con, "SELECT * FROM round_measures WHERE run_id = ? ORDER BY round", [run_id])
    if not rows:
        return ""
    cols = [c for c in ROUND_COLUMNS if c in rows[0] and any(r[c] not in (None, 0) for r in rows)]

    def cell(c: str, v: object) -> str:
        if isinstance(v, float) and ("rate" in c or "share" in c or c == "fpr"):
            return _pct(v, 1)
        if isinstance(v, bool):
            return "yes" if v else ""
        return _num(v) if isinstance(v, (int, float)) or v is None else esc(v)

    body = [[_num(r["round"])] + [cell(c, r[c]) for c in cols] for r in rows]
    head = [("round", True)] + [(c.replace("_", " "), True) for c in cols]
    return f"<details><summary>Per-round numbers ({len(rows)} rounds)</summary>{_table(head, body)}</details>"


def _change_text(delta: float | None) -> str:
    """A change; ``None`` where there is no difference to show: a missing value given one (or the reverse)."""
    return "filled in" if delta is None or (isinstance(delta, float) and math.isnan(delta)) else f"{delta:+.4g}"


def _features_section(con: duckdb.DuckDBPyConnection, run_id: str, kinds: dict[str, str] | None = None) -> str:
    table = plots.feature_change_table(con, run_id)
    feats, strategies, by = table
    fig = plots.feature_heatmap(con, run_id, table=table)
    rows = []
    for f in feats:
        cells = [f"<code>{esc(f)}</code>"]
        for s in strategies:
            r = by.get((f, s))
            if not r or not r["changed"]:
                cells.append('<span class="muted">–</span>')
            elif (kinds or {}).get(f) in ("categorical", "binary"):  # codes: a median difference means nothing
                cells.append(esc(f"changed in {r['share_changed']:.0%}"))
            else:
                rel = r.get("median_relative_delta")
                cells.append(esc(_change_text(r["median_delta"])) + (f' <span class="muted">({rel:+.0%} rel.)'
                             "</span>" if rel is not None else ""))
        rows.append(cells)
    changes = _table([("feature", False)] + [(f"median change · {s}", True) for s in strategies], rows) if rows else ""
    lead = ("For each evaded target, its cheapest evading query compared with the original transaction: how often each "
            "feature was changed (share of evasions), and the median change when it was, in the feature's units and "
            "relative to the original value (the median of change ÷ |original|, over the same evasions). Features never "
            "changed are left out.")
    return _section("features", "What attackers changed", esc(lead),
                    f'<div class="fig">{fig}</div>' + (f"<details open><summary>Size of the changes</summary>{changes}"
                                                         "</details>" if changes else ""))


SEGMENT_TITLES = {"merchant_cat": "Merchant category", "amount_band": "Amount band", "fraud_type": "Fraud type",
                  "ring": "Fraud ring"}


def _segments_section(con: duckdb.DuckDBPyConnection, run_id: str, colors: dict[str, str]) -> str:
    rows = _rows(con, "SELECT * FROM success_by_segment WHERE run_id = ? ORDER BY segment, value_order, value, strategy",
                 [run_id])
    rows = [r for r in rows if r["segment"] != "all"]
    if not rows:
        return ""
    strategies = list(colors)
    blocks = []
    for seg in dict.fromkeys(r["segment"] for r in rows):
        seg_rows = [r for r in rows if r["segment"] == seg]
        values = list(dict.fromkeys(r["value"] for r in seg_rows))
        by = {(r["value"], r["strategy"]): r for r in seg_rows}
        body = []
        for v in values:
            n = max((by[(v, s)]["targets"] for s in strategies if (v, s) in by), default=0)
            body.append([esc(v), _num(n)] + [_bar(by[(v, s)]["success_rate"], colors[s]) if (v, s) in by else "–"
                                             for s in strategies]
                        + [_bar(by[(v, s)]["cheap_success_rate"], colors[s]) if (v, s) in by else "–" for s in strategies])
        head = [(SEGMENT_TITLES.get(seg, seg), False), ("targets", True)] + [(f"evaded · {s}", True) for s in strategies] \
            + [(f"cheap · {s}", True) for s in strategies]
        blocks.append(f"<div>{_table(head, body)}</div>")
    lead = "Success within the whole budget by segment of the original transaction (evaded, and cheaply evaded)."
    return _section("segments", "Success by segment", esc(lead), f'<div class="stack">{"".join(blocks)}</div>')


def _worst_section(con: duckdb.DuckDBPyConnection, run_id: str, kinds: dict[str, str] | None = None) -> str:
    picks = _rows(con, f"""
        SELECT * FROM best_evasions WHERE run_id = ?
        QUALIFY row_number() OVER (PARTITION BY target_id ORDER BY cost, query_index, strategy) = 1
        ORDER BY original_score DESC, cost, target_id LIMIT {WORST_EVASIONS}""", [run_id])
    if not picks:
        return _section("worst", "Worst evasions", "No target was evaded: there is nothing to show.", "")
    keys = [f"{p['strategy']}\x1f{p['target_id']}" for p in picks]
    all_changes = _rows(con, "SELECT strategy, target_id, feature, original_value, evading_value, delta, changed "
                             "FROM evasion_feature_changes WHERE run_id = ? AND list_contains(?, strategy || chr(31) || "
                             "target_id::VARCHAR) ORDER BY feature_order", [run_id, keys])
    cards = []
    for p in picks:
        changes = [c for c in all_changes if c["strategy"] == p["strategy"] and c["target_id"] == p["target_id"]]
        shown = changes if len(changes) <= MAX_FEATURES_SIDE_BY_SIDE else [c for c in changes if c["changed"]]
        def value(c: dict, key: str) -> str:
            return _code(c[key]) if (kinds or {}).get(c["feature"]) in ("categorical", "binary") else _num(c[key])

        body = [[f"<code>{esc(c['feature'])}</code>", esc(value(c, "original_value")), esc(value(c, "evading_value")),
                 (esc(_change_text(c["delta"])) if (kinds or {}).get(c["feature"]) not in ("categorical", "binary")
                  else "changed") if c["changed"] else '<span class="muted">=</span>'] for c in shown]
        classes = ["changed" if c["changed"] else "" for c in shown]
        n_changed = sum(bool(c["changed"]) for c in changes)
        hidden = len(changes) - len(shown)
        note = f' <span class="muted">({hidden} unchanged features not shown)</span>' if hidden else ""
        table = _table([("feature", False), ("original", True), ("evading", True), ("change", True)], body,
                       row_classes=classes)
        cards.append(f"""<div class="evasion"><h3>Target {esc(p['target_id'])}: score {p['original_score']:.4f} →
            {p['score']:.4f}</h3><div class="meta">strategy <b>{esc(p['strategy'])}</b> · query {esc(p['query_index'])}
            of the budget · cost {p['cost']:.3g}{' (cheap)' if p['cheap'] else ''} · {n_changed} feature(s) changed{note}
            </div>{table}</div>""")
    lead = (f"The {len(picks)} highest-scored targets that were evaded, each with the cheapest evading transaction any "
            "strategy found, side by side with the original. Changed features are highlighted.")
    return _section("worst", "Worst evasions", esc(lead), f'<div class="grid2">{"".join(cards)}</div>')


def _model_section(con: duckdb.DuckDBPyConnection, run_id: str, perf: list[dict]) -> str:
    versions = _rows(con, "SELECT * FROM model_versions WHERE run_id = ? ORDER BY version", [run_id])
    blocks = []
    for v in versions:
        facts = [("version", v.get("version")), ("kind", v.get("kind")), ("threshold", v.get("threshold")),
                 ("threshold rule", v.get("threshold_rule")),
                 ("AUC when trained (card: its test or validation rows)", v.get("test_auc")),
                 ("sha256", v.get("sha256")), ("file", _file_name(v.get("path"))), ("created", v.get("created_at"))]
        facts_html = _table([("", False), ("", False)], [[esc(k), _value_html(val)] for k, val in facts if val is not None])
        prows = [[esc(p["split"]), _num(p["transactions"]), _num(p["frauds"]), esc(f"{p['auc']:.4f}" if p["auc"] is not None else "–"),
                  _pct(p["false_positive_rate"], 2), _pct(p["recall"], 1), _pct(p["decline_rate"], 2)]
                 for p in perf if p["model_version"] == v.get("version")]
        perf_html = _table([("split", False), ("transactions", True), ("frauds", True), ("clean AUC", True), ("FPR", True),
                            ("recall", True), ("declined", True)], prows) if prows else ""
        try:
            card = json.loads(v.get("card") or "{}")
        except json.JSONDecodeError:
            card = {"card": v.get("card")}
        card_rows = [[f"<code>{esc(k)}</code>", _value_html(val)] for k, val in _flatten(card)]
        card_html = (f"<details><summary>Model card ({len(card_rows)} fields)</summary>"
                     f"{_table([('field', False), ('value', False)], card_rows)}</details>") if card_rows else ""
        blocks.append(f"<div><h3 style='font-size:14px;margin:4px 0 8px'>Model version {esc(v.get('version'))}</h3>"
                      f"{facts_html}<div style='height:12px'></div>{perf_html}{card_html}</div>")
    if not blocks:
        blocks.append('<p class="muted">No model version recorded.</p>')
    lead = ("The model versions of this run with their cards; clean AUC, false-positive rate (legitimate transactions "
            "declined) and recall (frauds declined) are recomputed by SQL from the stored transactions of each version "
            "on clean traffic only (a campaign's probes and poisoning rows left out).")
    return _section("model", "Model cards", esc(lead), "".join(blocks))
