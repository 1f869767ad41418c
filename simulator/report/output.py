"""Printing and writing result frames for the CLI: Rich tables, CSV, JSON (an array of row objects), Parquet."""
from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..errors import FraudsimError
from .gates import GateResult, check_run, exit_code, format_value

if TYPE_CHECKING:  # frames come from the callers; `fraudsim gate` prints without loading Polars
    import polars as pl

FORMATS = ("table", "csv", "json", "parquet")


class OutputError(FraudsimError):
    """The output options are inconsistent (e.g. Parquet without a file)."""

    kind = "output error"


MAX_CELL_CHARS = 10_000  # characters of one value shown in a terminal table


def _cell(v: object) -> Text:
    if v is None:
        return Text("NULL", style="dim")
    if isinstance(v, bool):
        return Text(str(v).lower())
    if isinstance(v, float):
        if math.isnan(v):
            return Text("NaN", style="dim")
        if math.isinf(v):
            return Text("∞" if v > 0 else "-∞")
        return Text(f"{v:.6g}")
    if isinstance(v, int):
        return Text(str(v))
    if isinstance(v, (_dt.datetime, _dt.date)):
        return Text(v.isoformat(sep=" ") if isinstance(v, _dt.datetime) else v.isoformat())
    text = json.dumps(v, default=str) if isinstance(v, (list, dict)) else str(v)
    if len(text) > MAX_CELL_CHARS:  # the table is for a look: a 100 MB value took minutes to lay out
        return Text.assemble(text[:MAX_CELL_CHARS], (f"… ({len(text):,} characters; --format csv for all)", "dim"))
    return Text(text)


def frame_table(df: pl.DataFrame, *, title: str | None = None, caption: str | None = None) -> Table:
    """A Rich table of a frame; numbers right-aligned, NULLs dimmed."""
    return rows_table(list(df.columns), [dtype.is_numeric() for dtype in df.schema.values()], df.iter_rows(),
                      title=title, caption=caption)


def rows_table(columns: Sequence[str], numeric: Sequence[bool], rows, *, title: str | None = None,
               caption: str | None = None) -> Table:
    """A Rich table of rows (tuples of Python values) under ``columns``; numeric columns right-aligned."""
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left", show_lines=False)
    for name, num in zip(columns, numeric):
        table.add_column(name, justify="right" if num else "left", overflow="fold")
    for row in rows:
        table.add_row(*[_cell(v) for v in row])
    return table


def _flat(df: pl.DataFrame) -> pl.DataFrame:
    """CSV has no nested values: write lists and structs as JSON text."""
    nested = [c for c, t in df.schema.items() if t.is_nested()]
    if not nested:
        return df
    import polars as pl

    return df.with_columns([pl.Series(c, [None if v is None else json.dumps(v, default=str) for v in df[c].to_list()],
                                      dtype=pl.String) for c in nested])


def write_frame(df: pl.DataFrame, fmt: str, output: Path | None) -> str | None:
    """Write ``df`` as csv/json/parquet to ``output``, or return the csv/json text when there is no file."""
    if fmt not in FORMATS or fmt == "table":
        raise OutputError(f"unknown format {fmt!r}; use one of: {', '.join(FORMATS)}", field="--format")
    if fmt == "parquet":
        if output is None:
            raise OutputError("--format parquet needs an output file: add -o FILE.parquet", field="--output")
        output.parent.mkdir(parents=True, exist_ok=True)
        df.write_parquet(output)
        return None
    text = _flat(df).write_csv() if fmt == "csv" else df.write_json() + "\n"
    if output is None:
        return text
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    return None


def gate_table(results: Sequence[GateResult], *, title: str = "Gates") -> Table:
    table = Table(title=Text(title), title_justify="left")  # a file name may hold brackets: never markup
    table.add_column("", no_wrap=True)
    table.add_column("gate", style="bold")
    table.add_column("observed", justify="right")
    table.add_column("")
    for r in results:
        verdict = Text("PASS", style="bold green") if r.passed else Text("FAIL", style="bold red")
        metric = r.name.split("[")[0].split()[0]
        table.add_row(verdict, Text(r.name, style="bold"), format_value(metric, r.observed), Text(r.detail, style="dim"))
    return table


def compare_table(df: pl.DataFrame, a_name: str, b_name: str) -> Table:
    table = Table(title=Text(f"A: {a_name}   B: {b_name}"), title_justify="left",
                  caption="Δ = B − A; better/worse for the defender", caption_justify="left")
    for col, just in (("measure", "left"), ("strategy", "left"), ("A", "right"), ("B", "right"), ("Δ", "right"),
                      ("", "left")):
        table.add_column(col, justify=just, overflow="fold")  # type: ignore[arg-type]
    styles = {"better": "green", "worse": "red", "changed": "yellow", "same": "dim"}
    for r in df.iter_rows(named=True):
        if r["a_text"] is not None or r["b_text"] is not None:
            a, b, d = Text(r["a_text"] or "–"), Text(r["b_text"] or "–"), Text("")
        else:
            pct = "rate" in r["measure"]
            a, b = _val(r["a"], pct), _val(r["b"], pct)
            d = Text("" if r["delta"] is None else (f"{r['delta']:+.1%}" if pct else f"{r['delta']:+.4g}"))
        v = r["verdict"] or ""
        table.add_row(Text(r["measure"]), Text(r["strategy"] or ""), a, b, d, Text(v, style=styles.get(v, "")))
    return table


def _val(v: float | None, pct: bool) -> Text:
    if v is None:
        return Text("–", style="dim")
    if math.isinf(v):
        return Text("∞")
    if not pct and float(v).is_integer() and abs(v) >= 10_000:
        return Text(f"{v:,.0f}")
    return Text(f"{v:.1%}" if pct else f"{v:.4g}")


def report_gates(path: str | Path, run_id: str | None, gates: Sequence[str], *, out: Console, err: Console,
                 junit: Path | None = None, title: str | None = None) -> int:
    """Evaluate gates on a finished run, print the verdicts (failures named on ``err``), write JUnit when asked, and
    return the exit code: 0 when all pass, 1 when any fails. Bad input raises a ``FraudsimError`` (exit 2)."""
    try:
        results = check_run(path, run_id, gates, junit=junit)
    except FraudsimError as exc:  # name the run file the gates were checked on
        if exc.file is None:
            exc.file = str(path)
        raise
    if results:
        out.print(gate_table(results, title=title or f"Gates on {Path(path).name}"))
    failed = [r.name for r in results if not r.passed]
    if failed:
        err.print(Text.assemble((f"{len(failed)} of {len(results)} gates failed:", "bold red"), " ", "; ".join(failed)),
                  highlight=False, soft_wrap=True)
    elif results:
        out.print(f"[green]all {len(results)} gates passed[/]", highlight=False)
    if junit is not None:
        out.print(f"JUnit: {junit}", highlight=False, markup=False)
    return exit_code(results)
