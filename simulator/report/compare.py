"""Two runs side by side on the same measures, with deltas (B − A) and which way each moved for the defender.

The per-strategy measures carry the gate metric names (:mod:`simulator.report.metrics`), so a line of the comparison
can be turned into a gate as is. Rates are compared at the budgets both runs reached.
"""
from __future__ import annotations

import math
from pathlib import Path

import duckdb
import polars as pl

from ..measures import SUCCESS_BUDGETS
from . import metrics as M
from .views import open_run, resolve_run_id

# which direction is better for the defender
HIGHER_IS_BETTER = {"auc": True, "recall": True, "false_positive_rate": False, "median_queries_to_evasion": True,
                    "median_queries_to_cheap_evasion": True, "median_first_cost": True, "median_best_cost": True}
SCHEMA = {"measure": pl.String, "strategy": pl.String, "a": pl.Float64, "b": pl.Float64, "delta": pl.Float64,
          "verdict": pl.String, "a_text": pl.String, "b_text": pl.String}


def _info(con: duckdb.DuckDBPyConnection, run_id: str) -> dict:
    rel = con.sql("SELECT * FROM runs WHERE run_id = ?", params=[run_id])
    run = dict(zip(rel.columns, rel.fetchall()[0]))
    run["queries"] = con.execute("SELECT count(*) FROM queries WHERE run_id = ?", [run_id]).fetchall()[0][0]
    run["model"] = M.model_values(con, run_id)
    run["strategies"] = M.strategies(con, run_id)
    return run


def _strategy_measures(con: duckdb.DuckDBPyConnection, run_id: str, budgets: list[int]) -> dict[tuple[str, str], float | None]:
    out: dict[tuple[str, str], float | None] = {}
    names = [f"success_rate_at_{b}" for b in budgets] + [f"cheap_success_rate_at_{b}" for b in budgets] + \
        ["median_queries_to_evasion", "median_queries_to_cheap_evasion", "median_first_cost", "median_best_cost"]
    for name in names:
        spec = M.metric_spec(name)
        assert spec is not None
        for strategy, v in M.strategy_values(con, run_id, spec).items():
            out[(name, strategy)] = v
    for strategy, n in con.execute("SELECT strategy, count(*) FROM targets WHERE run_id = ? GROUP BY 1", [run_id]).fetchall():
        out[("targets", strategy)] = float(n)
    return out


def _verdict(measure: str, a: float | None, b: float | None) -> str | None:
    if a is None or b is None or (math.isnan(a) or math.isnan(b)):
        return None
    if a == b:
        return "same"
    if "success_rate" in measure:
        higher_better = False
    elif measure in HIGHER_IS_BETTER:
        higher_better = HIGHER_IS_BETTER[measure]
    else:
        return None
    return "better" if (b > a) == higher_better else "worse"


def _delta(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
        return None
    return b - a


def compare_runs(path_a: str | Path, path_b: str | Path, *, run_a: str | None = None,
                 run_b: str | None = None) -> pl.DataFrame:
    """One row per measure (and strategy): value in A, in B, delta B − A, and ``verdict`` (B better/worse/same).

    Text facts (run id, scenario, model, feedback) have ``a_text``/``b_text`` instead of numbers.
    """
    cons = [open_run(path_a), open_run(path_b)]
    try:
        ids = [resolve_run_id(cons[0], run_a, file=str(path_a)), resolve_run_id(cons[1], run_b, file=str(path_b))]
        infos = [_info(c, i) for c, i in zip(cons, ids)]
        budget = min(int(x.get("budget") or 1) for x in infos)
        budgets = [b for b in SUCCESS_BUDGETS if b < budget] + [budget]
        per = [_strategy_measures(c, i, budgets) for c, i in zip(cons, ids)]
    finally:
        for c in cons:
            c.close()
    rows: list[dict] = []

    def text(measure: str, a: object, b: object) -> None:
        rows.append({"measure": measure, "strategy": None, "a": None, "b": None, "delta": None,
                     "verdict": "same" if a == b else "changed", "a_text": None if a is None else str(a),
                     "b_text": None if b is None else str(b)})

    def number(measure: str, strategy: str | None, a: float | None, b: float | None) -> None:
        a = None if a is None else float(a)
        b = None if b is None else float(b)
        rows.append({"measure": measure, "strategy": strategy, "a": a, "b": b, "delta": _delta(a, b),
                     "verdict": _verdict(measure, a, b), "a_text": None, "b_text": None})

    A, B = infos
    text("run_id", A["run_id"], B["run_id"])
    text("scenario", A.get("scenario"), B.get("scenario"))
    text("model", f"{A.get('model_kind')} {str(A.get('model_sha256') or '')[:12]}".strip(),
         f"{B.get('model_kind')} {str(B.get('model_sha256') or '')[:12]}".strip())
    text("feedback", A.get("feedback"), B.get("feedback"))
    number("budget", None, A.get("budget"), B.get("budget"))
    number("queries", None, A["queries"], B["queries"])
    for m in ("threshold", "auc", "false_positive_rate", "recall"):
        number(m, None, A["model"].get(m), B["model"].get(m))
    strategies = list(dict.fromkeys(A["strategies"] + B["strategies"]))
    measures = ["targets"] + [f"success_rate_at_{b}" for b in budgets] + [f"cheap_success_rate_at_{b}" for b in budgets] \
        + ["median_queries_to_evasion", "median_queries_to_cheap_evasion", "median_first_cost", "median_best_cost"]
    for s in strategies:
        for m in measures:
            number(m, s, per[0].get((m, s)), per[1].get((m, s)))
    return pl.DataFrame(rows, schema=SCHEMA)
