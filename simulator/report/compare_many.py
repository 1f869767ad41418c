"""More than two runs side by side (``fraudsim compare A B C ...``): one column per run on the measures of
:func:`simulator.report.compare.compare_runs`, and the spread (max − min) of each numeric measure.

Each argument is a run file (its latest run) or ``FILE::RUN_ID``; a sweep file expands to all its finished runs.
Rates are compared at the budgets every run reached.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import polars as pl

from ..errors import StoreError
from .compare import SUCCESS_BUDGETS, _info, _strategy_measures
from .views import open_run, resolve_run_id


def _targets(args: Sequence[str | Path]) -> list[tuple[Path, str | None, str]]:
    """(file, run_id or None for the latest, label) per run; a sweep file gives one per finished variant."""
    out = []
    for a in args:
        text = str(a)
        path, _, run_id = text.partition("::")
        p = Path(path)
        con = open_run(p)
        try:
            is_sweep = con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'sweep'").fetchall()[0][0]
            if is_sweep and not run_id:
                for variant, rid in con.execute("SELECT variant, run_id FROM sweep WHERE status = 'finished' "
                                                "ORDER BY variant").fetchall():
                    out.append((p, rid, f"{p.stem}:{variant}"))
                continue
        finally:
            con.close()
        out.append((p, run_id or None, p.stem + (f":{run_id}" if run_id else "")))
    labels = [t[2] for t in out]
    return [(p, r, lab if labels.count(lab) == 1 else f"{lab}#{i + 1}") for i, (p, r, lab) in enumerate(out)]


def compare_many(args: Sequence[str | Path]) -> pl.DataFrame:
    """One row per measure (and strategy), one column per run, and ``spread`` = max − min of the numbers."""
    runs = _targets(args)
    if len(runs) < 2:
        raise StoreError("compare needs at least two runs (files, FILE::RUN_ID, or a sweep file)", field="runs")
    infos, per = [], []
    opened = []
    try:
        for path, run_id, _ in runs:
            con = open_run(path)
            opened.append(con)
            rid = resolve_run_id(con, run_id, file=str(path))
            infos.append((con, rid, _info(con, rid)))
        budget = min(int(i.get("budget") or 1) for _, _, i in infos)
        budgets = [b for b in SUCCESS_BUDGETS if b < budget] + [budget]
        per = [_strategy_measures(con, rid, budgets) for con, rid, _ in infos]
    finally:
        for con in opened:
            con.close()
    labels = [lab for _, _, lab in runs]
    rows: list[dict] = []

    def add(measure: str, strategy: str | None, values: list) -> None:
        nums = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
        row: dict[str, Any] = {"measure": measure, "strategy": strategy}
        row.update({lab: (None if v is None else str(v) if isinstance(v, str) else f"{float(v):.6g}")
                    for lab, v in zip(labels, values)})
        row["spread"] = (max(nums) - min(nums)) if len(nums) == len(values) and nums else None
        rows.append(row)

    info = [i for _, _, i in infos]
    add("run_id", None, [i["run_id"] for i in info])
    add("scenario", None, [i.get("scenario") for i in info])
    add("model", None, [f"{i.get('model_kind')} {str(i.get('model_sha256') or '')[:12]}".strip() for i in info])
    add("feedback", None, [i.get("feedback") for i in info])
    add("budget", None, [i.get("budget") for i in info])
    add("queries", None, [i["queries"] for i in info])
    for m in ("threshold", "auc", "false_positive_rate", "recall"):
        add(m, None, [i["model"].get(m) for i in info])
    strategies = list(dict.fromkeys(s for i in info for s in i["strategies"]))
    measures = ["targets"] + [f"success_rate_at_{b}" for b in budgets] + [f"cheap_success_rate_at_{b}" for b in budgets] \
        + ["median_queries_to_evasion", "median_queries_to_cheap_evasion", "median_first_cost", "median_best_cost"]
    for s in strategies:
        for m in measures:
            add(m, s, [p.get((m, s)) for p in per])
    schema = {"measure": pl.String, "strategy": pl.String, **{lab: pl.String for lab in labels}, "spread": pl.Float64}
    return pl.DataFrame(rows, schema=schema)
