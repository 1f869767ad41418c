"""Reading runs: metrics as SQL views, gates (pass/fail, exit code, JUnit), the HTML report, notebook plots.

Depends only on the store (``simulator.store``); the runner and the CLI call into it.

Examples
--------
>>> from simulator.report import parse_gate
>>> parse_gate("median_queries_to_evasion >= 500").expression
'median_queries_to_evasion >= 500'
"""
from .api import PlotAccessor, compare, curves, plot, success_by_budget, to_html
from .compare import compare_runs
from .gates import (
    Gate,
    GateResult,
    check_run,
    evaluate_gates,
    exit_code,
    parse_gate,
    parse_gates,
    validate_gates,
    write_junit,
)
from .html_report import build_report, write_report
from .query import QueryError, check_statement, query, run_query
from .views import VIEW_NAMES, create_views, install_views, open_run

__all__ = [
    "VIEW_NAMES",
    "Gate",
    "GateResult",
    "PlotAccessor",
    "QueryError",
    "build_report",
    "check_run",
    "check_statement",
    "compare",
    "compare_runs",
    "create_views",
    "curves",
    "evaluate_gates",
    "exit_code",
    "install_views",
    "open_run",
    "parse_gate",
    "parse_gates",
    "plot",
    "query",
    "run_query",
    "success_by_budget",
    "to_html",
    "validate_gates",
    "write_junit",
    "write_report",
]
