"""The named measures of a run, as gates check them and ``compare`` lines them up; each is defined once, in
:mod:`simulator.measures` (the same SQL the summary, the ``run_summary`` view and the HTML report read).

Per-strategy measures (a value per strategy; "worst" says which strategy value speaks for the run):

=====================================  ====================================================================  =====
``success_rate_at_<N>``                share of targets evaded within N queries                               max
``cheap_success_rate_at_<N>``          share of targets evaded with cost <= 1 within N queries                max
``success_rate``                       share of targets evaded within the run's whole budget                  max
``cheap_success_rate``                 same, cheap evasions only                                              max
``median_queries_to_evasion``          median over the evaded targets of the queries to the first evasion;    min
                                       ``inf`` ("not reached") when no target was evaded
``median_queries_to_cheap_evasion``    same, for the first cheap evasion                                      min
``median_first_cost``                  median over the evaded targets of the cost of the first evasion        min
``median_best_cost``                   median over the evaded targets of the cost of the cheapest evasion     min
=====================================  ====================================================================  =====

Aliases accepted (older scenario files): ``success_at_<N>``, ``cheap_success_at_<N>``, ``median_evasion_cost``
(= ``median_best_cost``). A gate is reported under its canonical name.

Model measures (one value): ``auc``, ``false_positive_rate`` (legitimate transactions declined), ``recall`` (frauds
declined) and ``threshold``, from the ``model_performance`` view (clean traffic: no probes, no poisoning rows) for
the latest model version, on the ``test`` split when the run has one (all its transactions otherwise).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import duckdb

from .. import measures
from ..errors import ScenarioError

RATE_AT = re.compile(r"^(cheap_)?success_rate_at_(\d+)$")
STRATEGY_METRICS = dict(measures.WORST)
MODEL_METRICS = ("auc", "false_positive_rate", "recall", "threshold")
KNOWN = ("success_rate_at_<N>", "cheap_success_rate_at_<N>", *STRATEGY_METRICS, *MODEL_METRICS)


@dataclass(frozen=True)
class MetricSpec:
    """A parsed metric name: its family, the budget N for ``*_at_<N>``, and how strategies combine."""

    name: str
    family: str  # "success_rate", "cheap_success_rate", one of STRATEGY_METRICS, or a model metric
    budget: int | None
    worst: str | None  # "max" or "min" over strategies; None for model metrics

    @property
    def per_strategy(self) -> bool:
        return self.worst is not None


def metric_spec(name: str) -> MetricSpec | None:
    """Recognise a metric name, or ``None`` when it is not one.

    Examples
    --------
    >>> metric_spec("cheap_success_rate_at_100")
    MetricSpec(name='cheap_success_rate_at_100', family='cheap_success_rate', budget=100, worst='max')
    >>> metric_spec("auc").per_strategy, metric_spec("succes_rate") is None
    (False, True)
    >>> metric_spec("success_at_10").name  # an alias, under its canonical name
    'success_rate_at_10'
    """
    name = measures.canonical(name)
    m = RATE_AT.match(name)
    if m:
        return MetricSpec(name, "cheap_success_rate" if m.group(1) else "success_rate", int(m.group(2)), "max")
    if name in STRATEGY_METRICS:
        return MetricSpec(name, name, None, STRATEGY_METRICS[name])
    if name in MODEL_METRICS:
        return MetricSpec(name, name, None, None)
    return None


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list) -> list[tuple]:
    return con.execute(sql, params).fetchall()


def run_budget(con: duckdb.DuckDBPyConnection, run_id: str) -> int | None:
    rows = _rows(con, "SELECT budget FROM runs WHERE run_id = ?", [run_id])
    return int(rows[0][0]) if rows and rows[0][0] is not None else None


def strategies(con: duckdb.DuckDBPyConnection, run_id: str) -> list[str]:
    return [r[0] for r in _rows(con, "SELECT DISTINCT strategy FROM targets WHERE run_id = ? ORDER BY 1", [run_id])]


def strategy_values(con: duckdb.DuckDBPyConnection, run_id: str, spec: MetricSpec) -> dict[str, float | None]:
    """The metric for each strategy of the run (SQL over ``targets``)."""
    if spec.budget is not None:
        expr = measures.success_at_sql(spec.budget, cheap=spec.family == "cheap_success_rate")
    else:
        expr = measures.strategy_sql(spec.family)
    sql = f"SELECT strategy, {expr} FROM targets WHERE run_id = $run GROUP BY strategy ORDER BY strategy"
    return {s: (None if v is None else float(v)) for s, v in con.execute(sql, {"run": run_id}).fetchall()}


def model_values(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, Any]:
    """AUC, false-positive rate, recall and threshold of the latest model version (test split when present)."""
    ver = _rows(con, "SELECT max(version) FROM model_versions WHERE run_id = ?", [run_id])[0][0]
    if ver is None:
        ver = _rows(con, "SELECT max(model_version) FROM transactions WHERE run_id = ?", [run_id])[0][0]
    out: dict[str, Any] = {"model_version": ver, "split": None, "auc": None, "false_positive_rate": None,
                           "recall": None, "threshold": None, "transactions": 0}
    thr = _rows(con, "SELECT threshold FROM model_versions WHERE run_id = ? AND version = ?", [run_id, ver])
    if not thr:
        thr = _rows(con, "SELECT threshold FROM runs WHERE run_id = ?", [run_id])
    out["threshold"] = thr[0][0] if thr else None
    if ver is None:
        return out
    from .views import has_current_views, model_performance_sql

    where = "run_id = $run AND model_version = $ver"
    if has_current_views(con):
        source = "model_performance"
    else:  # a connection opened without the views: the view's own SQL, inline
        source = f"({model_performance_sql(con)})"
    rows = con.execute(f"SELECT split, auc, false_positive_rate, recall, transactions FROM {source} WHERE {where}",
                       {"run": run_id, "ver": ver}).fetchall()
    by_split = {r[0]: r for r in rows}
    if "test" in by_split:
        out["split"] = "test"
        _, auc, fpr, recall, n = by_split["test"]
    else:  # no test split: all the version's labelled transactions together
        out["split"] = "all"
        sql = model_performance_sql(con, split="'all'")
        got = con.execute(f"SELECT auc, false_positive_rate, recall, transactions FROM ({sql}) WHERE {where}",
                          {"run": run_id, "ver": ver}).fetchall()
        auc, fpr, recall, n = got[0] if got else (None, None, None, 0)
    out.update(auc=auc, false_positive_rate=fpr, recall=recall, transactions=n)
    return out


def worst(values: dict[str, float | None], how: str) -> tuple[str | None, float | None]:
    """The strategy whose value is worst for the defender (``max`` or ``min``), ignoring missing values."""
    known = {k: v for k, v in values.items() if v is not None and not (isinstance(v, float) and math.isnan(v))}
    if not known:
        return None, None
    key = (max if how == "max" else min)(known, key=lambda k: known[k])
    return key, known[key]


def check_budget(spec: MetricSpec, budget: int | None, field: str) -> None:
    if spec.budget is not None and budget is not None and spec.budget > budget:
        raise ScenarioError(f"{spec.name} asks about {spec.budget} queries but the run's budget is {budget} queries "
                            f"per target; use N <= {budget}", field=field)
