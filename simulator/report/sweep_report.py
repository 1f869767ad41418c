"""The report of a sweep file (``fraudsim report SWEEP.duckdb``): success as a heatmap over two chosen override
axes, a table of every variant, and the gates over all of them. Self-contained HTML, like the run report.

"Success" is the share of targets evaded at a cost of at most 1 (valid and cheap) by the worst strategy for the
defender, within the variant's budget; "any success" counts every evasion.
"""
from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import duckdb

from .. import __version__
from ..errors import ScenarioError
from .gates import evaluate_gates
from .html_report import CSS, PAGE, _gates_from_scenario, _heat, _section, _table, esc
from .svg import heatmap


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list[dict]:
    cur = con.execute(sql, params or [])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def sweep_rows(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """One row per variant: the ``sweep`` table with its parsed overrides and the worst strategy's success."""
    rows = _rows(con, "SELECT * FROM sweep ORDER BY variant")
    has_targets = bool(con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'targets'").fetchall()[0][0])
    success: dict[str, tuple[float, float]] = {}
    if has_targets:
        for r in _rows(con, """SELECT run_id, max(cheap) AS cheap, max(anyv) AS anyv FROM (
                SELECT run_id, strategy, avg(coalesce(cheap_evaded, false)::DOUBLE) AS cheap,
                       avg(coalesce(evaded, false)::DOUBLE) AS anyv
                FROM targets GROUP BY run_id, strategy) GROUP BY run_id"""):
            success[r["run_id"]] = (r["cheap"], r["anyv"])
    for r in rows:
        r["overrides_map"] = json.loads(r["overrides"] or "{}")
        r["success"], r["any_success"] = success.get(r["run_id"], (None, None))
    return rows


def override_label(key: str, value: Any) -> str:
    """A short label for an override's value (tables, the report's axes): a file path by its file name, a whole
    section such as ``model: {path: ..., threshold: ...}`` by its file name and its other single values, a list by
    its items (or their number, when long). The ``sweep`` table keeps the full JSON."""
    def one(k: str, v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.6g}"
        if isinstance(v, str) and (k == "path" or k.endswith(".path")):
            return Path(v).name
        return str(v)

    if isinstance(value, dict):
        parts = [Path(value["path"]).name] if isinstance(value.get("path"), str) else []
        parts += [f"{k}={one(k, v)}" for k, v in value.items() if k != "path" and not isinstance(v, (dict, list))]
        parts += [f"{k}=[{len(v)} items]" for k, v in value.items() if isinstance(v, list)]
        return ", ".join(parts) or "{}"
    if isinstance(value, list):
        return ", ".join(one(key, v) for v in value) if len(value) <= 4 else f"[{len(value)} items]"
    return one(key, value)


def overrides_label(overrides: dict[str, Any]) -> str:
    """``key=label`` for every override of a variant (see :func:`override_label`)."""
    return "; ".join(f"{k}={override_label(k, v)}" for k, v in overrides.items()) or "(base)"


def _label(key: str | None, v: object) -> str:
    return override_label(key or "", v)


def build_sweep_report(path: str | Path, *, x: str | None = None, y: str | None = None,
                       gates: Sequence[str] | None = None, title: str | None = None) -> str:
    from ..store import open_readonly

    path = Path(path)
    con = open_readonly(path)
    try:
        rows = sweep_rows(con)
        axes = list(dict.fromkeys(k for r in rows for k in r["overrides_map"]))
        for name, axis in (("--x", x), ("--y", y)):
            if axis is not None and axis not in axes:
                raise ScenarioError(f"no override {axis!r} in this sweep (axes: {', '.join(axes) or 'none'})",
                                    file=str(path), field=name)
        x = x or (axes[0] if axes else None)
        y = y or next((a for a in axes if a != x), None)
        verdicts: dict[str, list] = {}
        for r in rows:
            if r["status"] != "finished" or not r["run_id"]:
                continue
            scenario_yaml = con.execute("SELECT scenario_yaml FROM runs WHERE run_id = ?", [r["run_id"]]).fetchall()
            own = list(gates) if gates else _gates_from_scenario(scenario_yaml[0][0] if scenario_yaml else None)
            verdicts[r["variant"]] = evaluate_gates(con, r["run_id"], own) if own else []
    finally:
        con.close()
    sections = [_heatmap_section(rows, x, y), _variants_section(rows, verdicts), _gates_section(rows, verdicts)]
    finished = sum(r["status"] == "finished" for r in rows)
    failed_gates = sum(any(not g.passed for g in v) for v in verdicts.values())
    kpis = '<div class="kpis">' + "".join(
        f'<div class="kpi{cls}"><div class="label">{label}</div><div class="value">{value}</div></div>'
        for label, value, cls in (("variants", len(rows), ""), ("finished", finished, " good"),
                                  ("failed", len(rows) - finished, " bad" if finished < len(rows) else ""),
                                  ("failed a gate", failed_gates, " bad" if failed_gates else ""))) + "</div>"
    toc = " · ".join(f'<a href="#{a}">{t}</a>' for a, t in (("heatmap", "Success"), ("variants", "Variants"),
                                                             ("gates", "Gates")))
    return PAGE.substitute(
        version=esc(__version__), title=esc(title or f"fraudsim sweep report: {path.name}"),
        heading=esc(title or f"Sweep report · {path.name}"),
        subtitle=esc(f"{len(rows)} variants over {', '.join(axes) or 'no overrides'}"), toc=toc, css=CSS, kpis=kpis,
        sections="\n".join(sections), generated=esc(time.strftime("%Y-%m-%d %H:%M")), source=esc(path.name),
        source_q=esc(path.name))


def _heatmap_section(rows: list[dict], x: str | None, y: str | None) -> str:
    lead = ("Share of targets evaded cheaply (cost ≤ 1) by the worst strategy, mean over the variants in each cell "
            "(other overrides averaged); grey: no finished variant.")
    if x is None:
        return _section("heatmap", "Success", "", "<p>This sweep has no overrides to chart.</p>")
    xs = list(dict.fromkeys(_label(x, r["overrides_map"].get(x)) for r in rows))
    ys = list(dict.fromkeys(_label(y, r["overrides_map"].get(y)) for r in rows)) if y else ["all"]
    cells: dict[tuple[str, str], list[float]] = defaultdict(list)
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for r in rows:
        key = (_label(y, r["overrides_map"].get(y)) if y else "all", _label(x, r["overrides_map"].get(x)))
        counts[key] += 1
        if r["success"] is not None:
            cells[key].append(r["success"])
    values = [[(sum(cells[(yy, xx)]) / len(cells[(yy, xx)])) if cells[(yy, xx)] else None for xx in xs] for yy in ys]
    tips = [[f"{y or 'all'} = {yy}, {x} = {xx}: {len(cells[(yy, xx)])} of {counts[(yy, xx)]} variants finished"
             for xx in xs] for yy in ys]
    svg = heatmap([f"{y} = {v}" if y else v for v in ys], [f"{x} = {v}" for v in xs], values, tooltips=tips,
                  legend_label="success", title=f"Cheap success by {x}" + (f" and {y}" if y else ""))
    return _section("heatmap", "Success", lead, f'<div class="fig">{svg}</div>')


def _variants_section(rows: list[dict], verdicts: dict[str, list]) -> str:
    head = [("variant", False), ("overrides", False), ("status", False), ("cheap success", True), ("any success", True),
            ("gates", False), ("wall s", True), ("worker", False), ("error", False)]
    body = []
    for r in rows:
        v = verdicts.get(r["variant"], [])
        gate_txt = "–" if not v else ("pass" if all(g.passed for g in v) else
                                      "FAIL: " + "; ".join(g.name for g in v if not g.passed))
        label = f'<code title="{esc(r["overrides"])}">{esc(overrides_label(r["overrides_map"]))}</code>'
        body.append([esc(r["variant"]), label, esc(r["status"]),
                     _heat(r["success"], (185, 28, 28)), _heat(r["any_success"], (185, 28, 28)), esc(gate_txt),
                     "–" if r["wall_s"] is None else f"{r['wall_s']:.1f}", esc(r["worker"] or "–"), esc(r["error"] or "")])
    classes = ["bad" if r["status"] != "finished" else "" for r in rows]
    return _section("variants", "Variants", "Every variant of the sweep, in order; its tables are in the sweep file "
                    "under its run_id.", _table(head, body, row_classes=classes, name_col=True))


def _gates_section(rows: list[dict], verdicts: dict[str, list]) -> str:
    names = list(dict.fromkeys(g.name for v in verdicts.values() for g in v))
    if not names:
        return _section("gates", "Gates", "", "<p>No gates: give them in the base scenario or with --gate.</p>")
    head = [("gate", False), ("passed", True), ("failed", True), ("failing variants", False)]
    body = []
    for n in names:
        passed = [k for k, v in verdicts.items() for g in v if g.name == n and g.passed]
        failed = [k for k, v in verdicts.items() for g in v if g.name == n and not g.passed]
        body.append([f"<code>{esc(n)}</code>", str(len(passed)), str(len(failed)), esc(", ".join(failed) or "–")])
    not_run = [r["variant"] for r in rows if r["status"] != "finished"]
    lead = "Each gate on every finished variant." + (f" Not evaluated (failed): {', '.join(not_run)}." if not_run else "")
    return _section("gates", "Gates", esc(lead), _table(head, body))


def write_sweep_report(path: str | Path, output: str | Path, *, x: str | None = None, y: str | None = None,
                       gates: Sequence[str] | None = None, title: str | None = None) -> Path:
    text = build_sweep_report(path, x=x, y=y, gates=gates, title=title)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    return output
