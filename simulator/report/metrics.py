"""The named measures of a run, each one SQL query over the run file: what gates check and ``compare`` lines up.

Per-strategy measures (a value per strategy; "worst" says which strategy value speaks for the run):

===================================  ======================================================================  =====
``success_rate_at_<N>``              share of targets evaded within N queries                                 max
``cheap_success_rate_at_<N>``        share of targets evaded with cost <= 1 within N queries                  max
``success_rate``                     share of targets evaded within the run's whole budget                    max
``cheap_success_rate``               same, cheap evasions only                                                max
``median_queries_to_evasion``        median over all targets of the queries to the first evasion; a target    min
                                     never evaded counts as infinite, so this is ``inf`` when half or more
                                     of the targets held
``median_queries_to_cheap_evasion``  same, for the first cheap evasion                                         min
``median_evasion_cost``              median over all targets of the cost of the cheapest evasion (``inf``     min
                                     when not evaded)
===================================  ======================================================================  =====

Model measures (one value): ``auc``, ``false_positive_rate`` (legitimate transactions declined), ``recall`` (frauds
declined) and ``threshold``, from ``transactions`` of the latest model version, on the ``test`` split when the run
has one (all its transactions otherwise).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import duckdb

from ..errors import ScenarioError

RATE_AT = re.compile(r"^(cheap_)?success_rate_at_(\d+)$")
STRATEGY_METRICS = {
    "success_rate": "max", "cheap_success_rate": "max", "median_queries_to_evasion": "min",
    "median_queries_to_cheap_evasion": "min", "median_evasion_cost": "min",
}
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
    """
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
    inf = "'infinity'::DOUBLE"
    expr = {
        "success_rate": "avg(coalesce(queries_to_first_evasion <= $n, false)::DOUBLE)" if spec.budget is not None
        else "avg(coalesce(evaded, false)::DOUBLE)",
        "cheap_success_rate": "avg(coalesce(queries_to_first_cheap_evasion <= $n, false)::DOUBLE)"
        if spec.budget is not None else "avg(coalesce(cheap_evaded, false)::DOUBLE)",
        "median_queries_to_evasion": f"median(coalesce(queries_to_first_evasion::DOUBLE, {inf}))",
        "median_queries_to_cheap_evasion": f"median(coalesce(queries_to_first_cheap_evasion::DOUBLE, {inf}))",
        "median_evasion_cost": f"median(CASE WHEN evaded THEN min_cost ELSE {inf} END)",
    }[spec.family]
    sql = f"SELECT strategy, {expr} FROM targets WHERE run_id = $run GROUP BY strategy ORDER BY strategy"
    params = {"run": run_id} | ({"n": spec.budget} if "$n" in expr else {})
    return {s: (None if v is None else float(v)) for s, v in con.execute(sql, params).fetchall()}


def model_values(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, object]:
    """AUC, false-positive rate, recall and threshold of the latest model version (test split when present)."""
    ver = _rows(con, "SELECT max(version) FROM model_versions WHERE run_id = ?", [run_id])[0][0]
    if ver is None:
        ver = _rows(con, "SELECT max(model_version) FROM transactions WHERE run_id = ?", [run_id])[0][0]
    out: dict[str, object] = {"model_version": ver, "split": None, "auc": None, "false_positive_rate": None,
                              "recall": None, "threshold": None, "transactions": 0}
    thr = _rows(con, "SELECT threshold FROM model_versions WHERE run_id = ? AND version = ?", [run_id, ver])
    if not thr:
        thr = _rows(con, "SELECT threshold FROM runs WHERE run_id = ?", [run_id])
    out["threshold"] = thr[0][0] if thr else None
    if ver is None:
        return out
    has_test = _rows(con, "SELECT count(*) FROM (SELECT 1 FROM transactions WHERE run_id = ? AND model_version = ? "
                          "AND split = 'test' LIMIT 1)", [run_id, ver])[0][0] > 0
    split_filter = "AND split = 'test'" if has_test else ""
    out["split"] = "test" if has_test else "all"
    sql = f"""
WITH t AS (SELECT score, is_fraud, decision FROM transactions
           WHERE run_id = $run AND model_version = $ver {split_filter} AND is_fraud IS NOT NULL),
g AS (SELECT score, sum(is_fraud) AS pos, count(*) - sum(is_fraud) AS neg FROM t GROUP BY score),
c AS (SELECT pos, neg, coalesce(sum(neg) OVER (ORDER BY score ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
        AS neg_below FROM g)
SELECT (SELECT CASE WHEN sum(pos) > 0 AND sum(neg) > 0 THEN sum(pos * (neg_below + 0.5 * neg)) / (sum(pos) * sum(neg))
        END FROM c),
  (SELECT avg((decision = 'decline')::DOUBLE) FILTER (WHERE is_fraud = 0) FROM t),
  (SELECT avg((decision = 'decline')::DOUBLE) FILTER (WHERE is_fraud = 1) FROM t),
  (SELECT count(*) FROM t)"""
    auc, fpr, recall, n = con.execute(sql, {"run": run_id, "ver": ver}).fetchall()[0]
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
