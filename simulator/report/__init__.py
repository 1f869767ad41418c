"""Reading runs: metrics as SQL views, gates (pass/fail, exit code, JUnit), the HTML report, notebook plots.

Depends only on the store (``simulator.store``); the runner and the CLI call into it.

Examples
--------
>>> from simulator.report import parse_gate
>>> parse_gate("median_queries_to_evasion >= 500").expression
'median_queries_to_evasion >= 500'
"""
from __future__ import annotations

import importlib
import sys
import types
from typing import Any

#: public name -> submodule that defines it; imported on first access so that ``fraudsim gate`` or ``query`` load
#: only what they use (the plots and the HTML report stay unloaded)
_LAZY = {
    "PlotAccessor": "api", "compare": "api", "curves": "api", "plot": "api", "success_by_budget": "api",
    "to_html": "api", "compare_runs": "compare", "Gate": "gates", "GateResult": "gates", "check_run": "gates",
    "evaluate_gates": "gates", "exit_code": "gates", "parse_gate": "gates", "parse_gates": "gates",
    "validate_gates": "gates", "write_junit": "gates", "build_report": "html_report", "write_report": "html_report",
    "QueryError": "query", "check_statement": "query", "query": "query", "run_query": "query",
    "VIEW_NAMES": "views", "create_views": "views", "install_views": "views", "open_run": "views",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'simulator.report' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


class _Package(types.ModuleType):
    """``query`` and ``compare`` name both a submodule and a function; the function wins (as it did when this
    package imported everything eagerly), even after the import system records the submodule on the package."""

    @property
    def query(self):
        from .query import query

        return query

    @query.setter
    def query(self, submodule) -> None:  # the submodule stays reachable through sys.modules
        pass

    @property
    def compare(self):
        from .api import compare

        return compare

    @compare.setter
    def compare(self, submodule) -> None:
        pass


sys.modules[__name__].__class__ = _Package


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
