"""A finished run (or campaign) as the notebook API hands it back: its DuckDB file, with helpers to read it.

Both engines return these; the runner and the campaign import them from here (neither imports the other)."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from .measures import budgets_for, has_exact, summary_sql

if TYPE_CHECKING:
    import polars as pl

    from .scenario import Scenario


@dataclass
class RunResult:
    """A finished run: its DuckDB file, with helpers to read it."""

    path: Path
    run_id: str
    scenario: "Scenario"
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # derived steps that failed (the run itself is complete)

    @contextlib.contextmanager
    def _con(self) -> Iterator[Any]:
        from .store import open_readonly

        con = open_readonly(self.path)
        try:
            yield con
        finally:
            con.close()

    def sql(self, query: str, params: list | None = None) -> "pl.DataFrame":
        with self._con() as con:
            return con.sql(query, params=params or None).pl()

    def summary(self) -> "pl.DataFrame":
        return summarize(self.path, self.run_id)

    @property
    def plot(self):
        """Charts for notebooks: ``res.plot.success_curve()``, ``.cost_histogram()``, ``.feature_heatmap()``."""
        from .report.api import PlotAccessor

        return PlotAccessor(self)

    def to_html(self, path: str | Path | None = None, *, gates: list[str] | None = None) -> str:
        """The self-contained HTML report (written to ``path`` when given)."""
        from .report.api import to_html

        return to_html(self, path, gates=gates)

    def compare(self, other: "RunResult") -> "pl.DataFrame":
        """This run and ``other`` side by side on the same measures, with deltas."""
        from .report.api import compare

        return compare(self, other)

    def _repr_html_(self) -> str:
        from html import escape

        return (f"<b>fraudsim run</b> {escape(str(self.run_id))} → <code>{escape(str(self.path))}</code><br>"
                + self.summary()._repr_html_())


class CampaignResult(RunResult):
    """A finished campaign: a :class:`RunResult` with the per-round table."""

    def rounds(self) -> "pl.DataFrame":
        return self.sql("SELECT * FROM rounds WHERE run_id = ? ORDER BY round", [self.run_id])


def summarize(path: Path, run_id: str | None = None) -> "pl.DataFrame":
    """The per-strategy summary of a run file (the ``run_summary`` view's query, :func:`simulator.measures.summary_sql`)."""
    from .store import open_readonly

    con = open_readonly(path)
    try:
        if run_id is None:
            run_id = con.execute("SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1").fetchall()[0][0]
        budget = con.execute("SELECT budget FROM runs WHERE run_id = ?", [run_id]).fetchall()[0][0]
        return con.sql(summary_sql(budgets_for(int(budget)), exact=has_exact(con, run_id)), params=[run_id]).pl()
    finally:
        con.close()
