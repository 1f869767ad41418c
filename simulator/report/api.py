"""The notebook side of the report: plots that display inline, the HTML report, comparisons, SQL with the views.

Everything takes a ``RunResult`` (anything with ``.path`` and ``.run_id``) or a path to a run file. The lead attaches
these to ``RunResult`` as ``res.plot``, ``res.to_html()`` and ``res.compare(other)``; until then call them directly.

Examples
--------
>>> import simulator as fs, tempfile, os
>>> sc = fs.Scenario.from_dict({"name": "api", "seed": 1, "world": {"customers": 1500, "days": 6},
...                             "attack": {"limit": 3, "budget": 20, "strategies": ["random"]}})
>>> res = fs.run(sc, output=os.path.join(tempfile.mkdtemp(), "api.duckdb"))
>>> fig = plot(res).success_curve()
>>> fig._repr_svg_().startswith("<svg")
True
>>> query(res, "SELECT count(*) AS n FROM success_by_budget WHERE budget = 20")["n"].to_list()
[1]
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import polars as pl

from . import plots, svg
from .compare import compare_runs
from .html_report import build_report, write_report
from .query import query
from .svg import Figure, Series
from .views import install_views, open_run, resolve_run_id

__all__ = ["PlotAccessor", "compare", "curves", "install_views", "plot", "query", "success_by_budget", "to_html"]


def _path_and_id(result: Any) -> tuple[Path, str | None]:
    if isinstance(result, (str, Path)):
        return Path(result), None
    return Path(result.path), getattr(result, "run_id", None)


@contextlib.contextmanager
def _run(result: Any) -> Iterator[tuple[Any, str]]:
    path, run_id = _path_and_id(result)
    con = open_run(path)
    try:
        yield con, resolve_run_id(con, run_id, file=str(path))
    finally:
        con.close()


class PlotAccessor:
    """``res.plot``: each method returns a :class:`~simulator.report.svg.Figure` that Jupyter shows as SVG."""

    def __init__(self, result: Any):
        self._result = result

    def success_curve(self, *, width: int = 760, height: int = 380) -> Figure:
        """Share of targets evaded within N queries (solid) and cheaply (dashed), per strategy."""
        with _run(self._result) as (con, run_id):
            return Figure(plots.success_curve(con, run_id, width=width, height=height), "success vs budget")

    def cost_histogram(self, measure: str = "best", *, width: int = 760) -> Figure:
        """Cost of each target's cheapest (``best``) or first (``first``) evasion, one panel per strategy."""
        if measure not in ("best", "first"):
            raise ValueError("measure is 'best' (cheapest evasion found) or 'first' (first evasion)")
        with _run(self._result) as (con, run_id):
            return Figure(plots.cost_histogram(con, run_id, measure=measure, width=width), "cost of evasion")

    def feature_heatmap(self) -> Figure:
        """Features × strategies: share of successful evasions that changed each feature."""
        with _run(self._result) as (con, run_id):
            return Figure(plots.feature_heatmap(con, run_id), "features changed")

    def arms_race(self, *, width: int = 760) -> Figure:
        """Per round of a campaign: share of attacked targets evaded, per strategy."""
        with _run(self._result) as (con, run_id):
            return Figure(plots.arms_race(con, run_id, width=width), "arms race")

    def _repr_html_(self) -> str:
        return "".join(f._repr_html_() for f in (self.success_curve(), self.cost_histogram(), self.feature_heatmap()))


def plot(result: Any) -> PlotAccessor:
    return PlotAccessor(result)


def to_html(result: Any, path: str | Path | None = None, *, gates: list[str] | None = None) -> str:
    """The whole HTML report as a string; also written to ``path`` when given."""
    file, run_id = _path_and_id(result)
    if path is not None:
        write_report(file, path, run_id, gates=gates)
        return Path(path).read_text(encoding="utf-8")
    return build_report(file, run_id, gates=gates)


def compare(result: Any, other: Any) -> pl.DataFrame:
    """This run (A) against another (B): one row per measure and strategy, with ``delta`` = B − A."""
    (pa, ra), (pb, rb) = _path_and_id(result), _path_and_id(other)
    return compare_runs(pa, pb, run_a=ra, run_b=rb)


def success_by_budget(result: Any) -> pl.DataFrame:
    """The ``success_by_budget`` view of a run as a Polars frame."""
    with _run(result) as (con, run_id):
        return con.sql("SELECT * FROM success_by_budget WHERE run_id = ? ORDER BY strategy, budget", params=[run_id]).pl()


def curves(runs: Mapping[str, Any], *, cheap: bool = False, strategy: str | None = None, title: str | None = None,
           width: int = 760, height: int = 380) -> Figure:
    """Overlay the success-vs-budget curves of several runs (a what-if study), one line per run.

    Each line is ``strategy``'s curve, or by default the worst case over the run's strategies at every budget.
    """
    col = "cheap_success_rate" if cheap else "success_rate"
    series, top = [], 1
    for i, (label, res) in enumerate(runs.items()):
        df = success_by_budget(res)
        if strategy is not None:
            df = df.filter(pl.col("strategy") == strategy)
        df = df.group_by("budget").agg(pl.col(col).max()).sort("budget")
        top = max([top, *df["budget"].to_list()])
        series.append(Series(str(label), df["budget"].to_list(), df[col].to_list(), svg.color_for(i), step=True,
                             width=2.4))
    who = f"strategy {strategy}" if strategy else "worst strategy"
    return Figure(svg.line_chart(series, x_label="query budget N (log scale)",
                                 y_label=("cheaply evaded" if cheap else "evaded") + f" within N ({who})", title=title,
                                 log_x=True, x_range=(1, max(top, 2)), y_range=(0.0, 1.0), y_fmt=svg.pct, width=width,
                                 height=height, extend_steps=False), title or "what-if curves")
