"""The report's charts, each built from one view of a run file (shared by the HTML report and notebooks)."""
from __future__ import annotations

import math

import duckdb

from ..store import CHEAP_COST
from . import svg
from .svg import Panel, Series


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list) -> list[dict]:
    rel = con.sql(sql, params=params)
    cols = rel.columns
    return [dict(zip(cols, r)) for r in rel.fetchall()]


def strategy_colors(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, str]:
    """One stable colour per strategy, in the order the scenario listed them (else alphabetical)."""
    names = [r["strategy"] for r in _rows(con, "SELECT DISTINCT strategy FROM targets WHERE run_id = ? ORDER BY 1",
                                          [run_id])]
    return {n: svg.color_for(i) for i, n in enumerate(names)}


def success_curve(con: duckdb.DuckDBPyConnection, run_id: str, *, title: str | None = None, width: int = 760,
                  height: int = 380) -> str:
    """Share of targets evaded within N queries (solid) and cheaply evaded (dashed), per strategy, log N axis."""
    rows = _rows(con, "SELECT strategy, budget, success_rate, cheap_success_rate FROM success_by_budget "
                      "WHERE run_id = ? ORDER BY strategy, budget", [run_id])
    colors = strategy_colors(con, run_id)
    budget = con.execute("SELECT budget FROM runs WHERE run_id = ?", [run_id]).fetchall()[0][0] or \
        max([r["budget"] for r in rows] + [10])
    series = []
    for name, color in colors.items():
        pts = [r for r in rows if r["strategy"] == name]
        xs = [r["budget"] for r in pts]
        series.append(Series(f"{name}: evaded", xs, [r["success_rate"] for r in pts], color, step=True, width=2.4))
        series.append(Series(f"{name}: cheap (cost ≤ {CHEAP_COST:g})", xs, [r["cheap_success_rate"] for r in pts],
                             color, dash="6 4", step=True, width=2.0))
    return svg.line_chart(series, x_label="query budget N (queries per target, log scale)",
                          y_label="targets evaded within N", title=title, log_x=True,
                          x_range=(1, max(int(budget), 2)), y_range=(0.0, 1.0), y_fmt=svg.pct, width=width,
                          height=height)


def cost_histogram(con: duckdb.DuckDBPyConnection, run_id: str, *, measure: str = "best", title: str | None = None,
                   width: int = 760) -> str:
    """Histogram of the cost of each target's cheapest (``best``) or first (``first``) evasion, one panel a strategy."""
    colors = strategy_colors(con, run_id)
    rows = _rows(con, "SELECT strategy, cost_from, cost_to, targets FROM cost_distribution WHERE run_id = ? AND measure = ? "
                      "ORDER BY strategy, cost_from", [run_id, measure])
    stats = {r["strategy"]: r for r in _rows(con, "SELECT strategy, targets, evaded, median_best_cost AS med_best, "
                                                 "median_first_cost AS med_first FROM run_summary WHERE run_id = ?",
                                                 [run_id])}
    panels = []
    for name, color in colors.items():
        st = stats.get(name, {})
        med = st.get("med_best" if measure == "best" else "med_first")
        caption = (f"{st.get('evaded', 0)} of {st.get('targets', 0)} targets evaded"
                   + (f", median cost {med:.3g}" if med is not None else ""))
        panels.append(Panel(name, [(r["cost_from"], r["cost_to"], r["targets"]) for r in rows if r["strategy"] == name],
                            color, caption))
    label = "cost of the cheapest evasion found" if measure == "best" else "cost of the first evasion"
    return svg.histogram_panels(panels, x_label=label, y_label="targets", title=title, width=width,
                                marker=(CHEAP_COST, f"cheap ≤ {CHEAP_COST:g}"))


def feature_change_table(con: duckdb.DuckDBPyConnection, run_id: str) -> tuple[list[str], list[str], dict]:
    """(features changed by some evasion, in model order; strategies; {(feature, strategy): row of feature_changes})."""
    rows = _rows(con, "SELECT * FROM feature_changes WHERE run_id = ? ORDER BY feature_order, strategy", [run_id])
    strategies = list(strategy_colors(con, run_id))
    by = {(r["feature"], r["strategy"]): r for r in rows}
    feats = []
    for r in rows:
        if r["feature"] not in feats and any((by.get((r["feature"], s)) or {}).get("changed") for s in strategies):
            feats.append(r["feature"])
    return feats, strategies, by


def feature_heatmap(con: duckdb.DuckDBPyConnection, run_id: str, *, title: str | None = None,
                    table: tuple[list[str], list[str], dict] | None = None) -> str:
    """Features × strategies: share of each strategy's best evasions that changed the feature.

    ``table`` is :func:`feature_change_table`'s result when the caller already has it."""
    feats, strategies, by = table or feature_change_table(con, run_id)
    if not feats:
        return _empty("No successful evasion changed any feature.", title)
    values, texts, tips = [], [], []
    for f in feats:
        vr: list[float | None] = []
        tr: list[str] = []
        pr: list[str] = []
        for s in strategies:
            r = by.get((f, s))
            if r is None or not r["evasions"]:
                vr.append(None)
                tr.append("–")
                pr.append(f"{f} / {s}: no evasions")
                continue
            vr.append(r["share_changed"])
            tr.append(f"{r['share_changed']:.0%}")
            med = r["median_delta"]
            pr.append(f"{f} / {s}: changed in {r['changed']} of {r['evasions']} evasions"
                      + (f"; median change {med:+.4g}, mean |change| {r['mean_abs_delta']:.4g}" if med is not None else ""))
        values.append(vr)
        texts.append(tr)
        tips.append(pr)
    return svg.heatmap(feats, strategies, values, title=title, cell_text=texts, tooltips=tips,
                       legend_label="evasions changing it")


#: Campaign measures drawn on the arms-race chart when the ``rounds`` table has them: (column, label, colour).
CAMPAIGN_LINES = (("attack_success_rate", "attack success rate", "#e15759"),
                  ("probes_detected_share", "probes detected", "#4e79a7"),
                  ("fpr", "false-positive rate", "#9c755f"),
                  ("review_rate", "review rate", "#b07aa1"),
                  ("clean_auc", "model AUC (clean traffic)", "#59a14f"))


def _table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ? "
                            "AND table_catalog = current_database()", [table]).fetchall()[0][0])


def has_rounds(con: duckdb.DuckDBPyConnection, run_id: str | None = None) -> bool:
    """A ``rounds`` table with rows (for this run) exists: a multi-round campaign was run."""
    if not _table_exists(con, "rounds"):
        return False
    where, params = ("WHERE run_id = ?", [run_id]) if run_id is not None else ("", [])
    return con.execute(f"SELECT count(*) FROM (SELECT 1 FROM rounds {where} LIMIT 1)", params).fetchall()[0][0] > 0


def _round_marks(rows: list[dict]) -> list[tuple[float, str]]:
    """One mark per retraining, at the round its new model version starts (rows without model versions: at the
    rounds flagged ``retrained``)."""
    marks, last = [], None
    versions = any(r.get("model_version") is not None for r in rows)
    for r in rows:
        v = r.get("model_version")
        if versions and last is not None and v is not None and v != last:
            marks.append((float(r["round"]), f"model v{v}"))
        elif not versions and r.get("retrained"):
            marks.append((float(r["round"]), "retrained"))
        last = v if v is not None else last
    return marks


def arms_race(con: duckdb.DuckDBPyConnection, run_id: str, *, title: str | None = None, width: int = 760,
              height: int = 360) -> str:
    """Per round: the campaign's attack success, probe detection, false-positive rate and clean AUC (from ``rounds``),
    with a mark at each retraining; without a ``rounds`` table, each strategy's success per round of the query log."""
    fmt_round = lambda v: f"{v:g}" if float(v).is_integer() else ""
    if has_rounds(con, run_id):
        rows = _rows(con, "SELECT * FROM round_measures WHERE run_id = ? ORDER BY round", [run_id])
        series = []
        for col, label, color in CAMPAIGN_LINES:
            if rows and col in rows[0] and any(r[col] is not None for r in rows):
                series.append(Series(label, [r["round"] for r in rows], [r[col] for r in rows], color, markers=True,
                                     dash="6 4" if col == "clean_auc" else None))
        if any(r.get("query_success_rate") is not None for r in rows):
            series.append(Series("oracle: targets evaded", [r["round"] for r in rows],
                                 [r["query_success_rate"] for r in rows], "#f28e2b", markers=True))
        if not series:
            return _empty("The rounds table has no rate to draw.", title)
        lo, hi = rows[0]["round"], rows[-1]["round"]
        return svg.line_chart(series, x_label="round", y_label="share", title=title,
                              x_range=(lo - 0.5, hi + 0.5) if lo == hi else (lo, hi), y_range=(0.0, 1.0),
                              y_fmt=svg.pct, x_fmt=fmt_round, vlines=_round_marks(rows)[:8], extend_steps=False,
                              width=width, height=height)
    rows = _rows(con, "SELECT round, strategy, success_rate, cheap_success_rate FROM round_strategy_measures "
                      "WHERE run_id = ? ORDER BY strategy, round", [run_id])
    if not rows:
        return _empty("No rounds recorded.", title)
    series = []
    for name, color in strategy_colors(con, run_id).items():
        pts = [r for r in rows if r["strategy"] == name]
        if not pts:
            continue
        xs = [r["round"] for r in pts]
        series.append(Series(f"{name}: evaded", xs, [r["success_rate"] for r in pts], color, markers=True))
        series.append(Series(f"{name}: cheap", xs, [r["cheap_success_rate"] for r in pts], color, dash="6 4"))
    rounds = sorted({r["round"] for r in rows})
    lo, hi = rounds[0], rounds[-1]
    return svg.line_chart(series, x_label="round", y_label="targets evaded in the round", title=title,
                          x_range=(lo - 0.5, hi + 0.5) if lo == hi else (lo, hi), y_range=(0.0, 1.0), y_fmt=svg.pct,
                          x_fmt=fmt_round, extend_steps=False, width=width, height=height)


def ring_success(con: duckdb.DuckDBPyConnection, run_id: str, *, title: str | None = None, width: int = 760,
                 height: int = 320) -> str | None:
    """Per ring and round: share of the ring's probes that were approved (``ring_rounds``); None without data."""
    if not _table_exists(con, "ring_rounds"):
        return None
    cols = {r[0] for r in con.execute("SELECT column_name FROM information_schema.columns WHERE table_name = "
                                      "'ring_rounds' AND table_catalog = current_database()").fetchall()}
    if not {"round", "probes", "approved"} <= cols:
        return None
    label = "coalesce(ring, 'ring ' || ring_id::VARCHAR)" if "ring" in cols else "'ring ' || ring_id::VARCHAR"
    rows = _rows(con, f"SELECT {label} AS ring, round, sum(approved) / nullif(sum(probes), 0) AS rate FROM ring_rounds "
                      "WHERE run_id = ? GROUP BY ALL ORDER BY ring, round", [run_id])
    if not rows:
        return None
    series = []
    for i, ring in enumerate(dict.fromkeys(r["ring"] for r in rows)):
        pts = [r for r in rows if r["ring"] == ring]
        series.append(Series(str(ring), [r["round"] for r in pts], [r["rate"] for r in pts], svg.color_for(i),
                             markers=True))
    rounds = sorted({r["round"] for r in rows})
    lo, hi = rounds[0], rounds[-1]
    return svg.line_chart(series, x_label="round", y_label="probes approved", title=title,
                          x_range=(lo - 0.5, hi + 0.5) if lo == hi else (lo, hi), y_range=(0.0, 1.0), y_fmt=svg.pct,
                          x_fmt=lambda v: f"{v:g}" if float(v).is_integer() else "", extend_steps=False, width=width,
                          height=height)


def _empty(message: str, title: str | None, width: int = 760, height: int = 80) -> str:
    head = svg._open(width, height, title or message)
    if title:
        head.append(svg._text(16, 22, title, size=14, anchor="start", color=svg.INK, weight="600"))
    head.append(svg._text(width / 2, height / 2 + (12 if title else 4), message, size=13))
    return "\n".join(head + ["</svg>"])


def finite(v: float | None) -> bool:
    return v is not None and not (isinstance(v, float) and (math.isnan(v) or math.isinf(v)))
