"""One definition per measure: the SQL each measure is computed by, and the one NumPy AUC.

Every door reads these: the CLI summary and ``RunResult.summary()`` (:func:`simulator.result.summarize`), the
``run_summary`` view, the gates and ``compare`` (:mod:`simulator.report.metrics`) and the HTML report. A leaf
module (NumPy only), so any layer may import it.

Per-strategy measures, aggregates over the ``targets`` rows of one run and strategy (canonical names):

=====================================  ==========================================================================
``targets``                            targets attacked
``success_rate_at_<N>``                share of targets evaded within N queries (a target never evaded counts as not
                                       evaded); ``success_rate`` is the same within the run's whole budget
``cheap_success_rate_at_<N>``          share of targets evaded at cost <= 1 within N queries; ``cheap_success_rate``
``median_queries_to_evasion``          median, over the **evaded** targets only, of the queries to the first evasion;
                                       ``NULL`` when no target was evaded (the gates read that as ``inf``: "not
                                       reached")
``median_queries_to_cheap_evasion``    the same for the first cheap evasion, over the cheaply evaded targets
``median_first_cost``                  median cost of the first evading query, over the evaded targets
``median_best_cost``                   median cost of the cheapest evading query, over the evaded targets
=====================================  ==========================================================================

Aliases the gates accept (older scenario files): ``success_at_<N>`` and ``cheap_success_at_<N>`` for the rates,
``median_evasion_cost`` for ``median_best_cost``.

Model measures (per model version and split, the ``model_performance`` view): ``auc`` (rank-sum, average ranks
for ties, over rows with a label), ``false_positive_rate`` (legitimate rows declined), ``recall`` (frauds declined).
:func:`roc_auc` is the same AUC for arrays in memory (training cards, hardening); a test checks they agree.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported in roc_auc: `fraudsim gate` reads these definitions without loading NumPy
    import numpy as np

# per-strategy measures over `targets`; ``{t}`` is the table's qualifier ("" or "t."); NULL queries/costs mean
# "not evaded"
_STRATEGY_SQL: dict[str, str] = {
    "targets": "count(*)",
    "success_rate": "avg(coalesce({t}evaded, false)::DOUBLE)",
    "cheap_success_rate": "avg(coalesce({t}cheap_evaded, false)::DOUBLE)",
    "median_queries_to_evasion": "median({t}queries_to_first_evasion)",
    "median_queries_to_cheap_evasion": "median({t}queries_to_first_cheap_evasion)",
    "median_first_cost": "median({t}first_evasion_cost) FILTER (WHERE {t}evaded)",
    "median_best_cost": "median({t}min_cost) FILTER (WHERE {t}evaded)",
}
STRATEGY_MEASURES = tuple(_STRATEGY_SQL)


def strategy_sql(name: str, table: str = "") -> str:
    """The SQL aggregate of a per-strategy measure over ``targets`` (``table``: its alias, e.g. ``"t"``)."""
    return _STRATEGY_SQL[name].format(t=f"{table}." if table else "")


# which value is worst for the defender across strategies
WORST: dict[str, str] = {
    "success_rate": "max", "cheap_success_rate": "max", "median_queries_to_evasion": "min",
    "median_queries_to_cheap_evasion": "min", "median_first_cost": "min", "median_best_cost": "min",
}
ALIASES: dict[str, str] = {"median_evasion_cost": "median_best_cost"}
# the exact strategy's limit (simulator/strategies/exact.py): best cost / exact minimum, in run_summary
EXACT_RATIO_COLUMNS = """,
  quantile_cont(coalesce(t.min_cost, 'inf'::DOUBLE) / e.optimum_or_bound, 0.5) FILTER (WHERE e.target_id IS NOT NULL)
    AS median_ratio_to_exact,
  quantile_cont(coalesce(t.min_cost, 'inf'::DOUBLE) / e.optimum_or_bound, 0.9) FILTER (WHERE e.target_id IS NOT NULL)
    AS p90_ratio_to_exact"""
EXACT_RATIO_JOIN = """ LEFT JOIN (SELECT run_id, target_id, any_value(optimum_or_bound) AS optimum_or_bound FROM exact_bounds
  WHERE status = 'optimal' AND optimum_or_bound > 0 GROUP BY run_id, target_id) e
  ON e.run_id = t.run_id AND e.target_id = t.target_id"""

SUCCESS_BUDGETS = (10, 50, 100, 500, 1000)  # the budgets N a summary reports success within (plus the run's own)


def budgets_for(budget: int) -> tuple[int, ...]:
    """The budgets a summary of a run with ``budget`` queries per target reports: the standard ones below it, then
    the budget itself."""
    return tuple(b for b in SUCCESS_BUDGETS if b < budget) + (int(budget),)


RATE_AT = re.compile(r"^(cheap_)?success_(?:rate_)?at_(\d+)$")


def success_at_sql(n: int, *, cheap: bool = False, table: str = "") -> str:
    """Share of targets evaded (cheaply) within ``n`` queries."""
    col = (f"{table}." if table else "") + ("queries_to_first_cheap_evasion" if cheap else "queries_to_first_evasion")
    return f"avg(coalesce({col} <= {int(n)}, false)::DOUBLE)"


def rate_name(n: int, *, cheap: bool = False) -> str:
    """The canonical column/gate name of a success rate within ``n`` queries."""
    return f"{'cheap_' if cheap else ''}success_rate_at_{int(n)}"


def canonical(name: str) -> str:
    """The canonical name of a measure given under an alias (``success_at_100`` -> ``success_rate_at_100``).

    >>> canonical("success_at_100"), canonical("cheap_success_at_5"), canonical("median_evasion_cost")
    ('success_rate_at_100', 'cheap_success_rate_at_5', 'median_best_cost')
    """
    m = RATE_AT.match(name)
    if m:
        return rate_name(int(m.group(2)), cheap=bool(m.group(1)))
    return ALIASES.get(name, name)


def strategy_select(budgets: tuple[int, ...] | list[int] = (), table: str = "") -> str:
    """The ``SELECT`` list of the per-strategy summary: every measure above, rates at each of ``budgets``."""
    cols = ["count(*) AS targets"]
    cols += [f"{success_at_sql(b, table=table)} AS {rate_name(b)}" for b in budgets]
    cols += [f"{success_at_sql(b, cheap=True, table=table)} AS {rate_name(b, cheap=True)}" for b in budgets]
    cols += [f"{strategy_sql(k, table)} AS {k}" for k in STRATEGY_MEASURES if k != "targets"]
    return ",\n  ".join(cols)


def has_exact(con, run_id: str) -> bool:
    """Whether the run has results of the exact strategy (table ``exact_bounds``)."""
    n = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'exact_bounds'").fetchall()[0][0]
    return bool(n) and bool(con.execute("SELECT count(*) FROM exact_bounds WHERE run_id = ?", [run_id]).fetchall()[0][0])


def summary_sql(budgets: tuple[int, ...] | list[int], *, exact: bool = False) -> str:
    """The per-strategy summary of one run (parameter: its ``run_id``): every measure above, success rates within
    each of ``budgets``; with ``exact``, the ratio of its best cost to the exact minimum (median and 90th percentile
    over targets). The one summary the CLI, ``RunResult.summary()`` and the HTML report print."""
    return f"""
SELECT t.strategy, {strategy_select(budgets, "t")}{EXACT_RATIO_COLUMNS + ", count(e.target_id) AS exact_targets" if exact else ""}
FROM targets t{EXACT_RATIO_JOIN if exact else ""} WHERE t.run_id = ? GROUP BY t.strategy ORDER BY t.strategy"""


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum formula, average ranks for ties (vectorised); NaN without both
    classes.

    >>> import numpy as np
    >>> round(roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])), 2)
    0.75
    >>> roc_auc(np.array([0, 1, 1]), np.array([0.5, 0.5, 0.9]))
    0.75
    """
    import numpy as np

    y = np.asarray(y).astype(bool)
    score = np.asarray(score, dtype=np.float64)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    start = np.cumsum(counts) - counts
    ranks = (start + (counts + 1) / 2.0)[inverse.ravel()]
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def cheap_at(per_strategy: dict, strategy: str, budget: int) -> float | None:
    """Cheap success within ``budget`` queries (or the run's budget when smaller) of ``strategy``, read from a
    per-strategy summary (``{strategy: {measure: value}}``, as :func:`simulator.result.summarize` gives rows)."""
    row = per_strategy.get(strategy)
    if not row:
        return None
    keys = sorted((int(k.rsplit("_", 1)[1]), k) for k in row if k.startswith("cheap_success_rate_at_"))
    fit = [k for b, k in keys if b <= budget]
    return row[fit[-1]] if fit else None
