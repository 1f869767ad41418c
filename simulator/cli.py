"""The ``fraudsim`` command: run, validate, generate, train.

Bad input prints one line (file: field: reason) and exits with code 2; ``--debug`` shows the traceback.
"""
from __future__ import annotations

import functools
import os
import signal
import sys
import unicodedata
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.markup import escape
from rich.text import Text

from .errors import FraudsimError, Terminated, install_sigterm, signal_received

if TYPE_CHECKING:  # imported in the command bodies that need them, so `fraudsim --help` starts fast
    import polars as pl

app = typer.Typer(add_completion=False, no_args_is_help=False, pretty_exceptions_enable=False,
                  help="fraudsim: how easily can a fraudster who can only query your fraud model get fraud through?")
# logs and pipes get the whole table, unless COLUMNS says how wide
out = Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS", "").isdigit() else 120)
err = Console(stderr=True)
EXIT_OK, EXIT_GATE_FAILED, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3
EXIT_SIGINT, EXIT_SIGTERM = 130, 143


def one_line(text: object) -> str:
    """User text made safe for one terminal line: control characters, newlines and other invisible separators are
    written as escapes (``\\n``, ``\\x1b``, ``\\u2028``); everything else, brackets included, stays as it is."""
    return "".join(repr(ch)[1:-1] if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in str(text))


def say_error(kind: str, message: object) -> None:
    """Print ``fraudsim: <kind>: <message>`` as one line on stderr; the message is never read as Rich markup."""
    err.print(Text.assemble((f"fraudsim: {kind}:", "bold red"), " ", one_line(message)), highlight=False,
              soft_wrap=True, emoji=False)


def _fail(exc: BaseException, debug: bool) -> None:
    if debug:
        raise exc
    if isinstance(exc, FraudsimError):
        say_error(exc.kind, exc)
        raise typer.Exit(EXIT_BAD_INPUT)
    raise exc


def _internal_error(exc: BaseException, debug: bool) -> None:
    if debug:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    say_error("internal error", f"{type(exc).__name__}: {first}" + ("" if debug else " (a bug in fraudsim; rerun "
                                                                      "with --debug for the traceback and report it)"))
    raise typer.Exit(EXIT_INTERNAL)


def _interrupted(code: int) -> None:
    say_error("interrupted", "stopped by " + ("Ctrl-C" if code == EXIT_SIGINT else "SIGTERM") +
              "; nothing was written (an earlier finished run file stays as it was)")
    raise typer.Exit(code)


def guarded(command: Callable[..., Any]) -> Callable[..., Any]:
    """One exit-code policy for every command: bad input 2 (one line), internal error 3 (one line, the traceback
    under ``--debug``), Ctrl-C 130 and SIGTERM 143 (one line, the partial file removed by the store)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = bool(kwargs.get("debug", False))
        restore = install_sigterm()
        try:
            with warnings.catch_warnings():
                if not debug:  # NumPy's and the libraries' RuntimeWarnings are not the user's business
                    warnings.simplefilter("ignore", RuntimeWarning)
                    warnings.simplefilter("ignore", UserWarning)
                return command(*args, **kwargs)
        except typer.Exit:
            raise
        except FraudsimError as exc:
            if debug:
                import traceback

                traceback.print_exception(exc, file=sys.stderr)
            say_error(exc.kind, exc)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except Terminated:
            _interrupted(EXIT_SIGTERM)
        except KeyboardInterrupt:
            _interrupted(EXIT_SIGINT)
        except RecursionError as exc:
            _internal_error(exc, debug)
        except Exception as exc:  # anything else is fraudsim's bug, not the user's: exit 3, never 1
            code = _interrupt_code(exc)  # a signal wrapped by DuckDB, Numba or a writer thread
            if code is None and signal_received() is not None:  # whatever a signal's exception became on its way
                code = EXIT_SIGTERM if signal_received() == signal.SIGTERM else EXIT_SIGINT
            if code is not None:
                _interrupted(code)
            if _damaged_file(exc):  # a run file truncated or corrupted past the blocks checked when it was opened
                where = kwargs.get("run_file") or kwargs.get("runs") or kwargs.get("sweep_file")
                where = ", ".join(map(str, where)) if isinstance(where, list) else where
                say_error("store error", (f"{where}: " if where else "") + "the file is damaged or truncated ("
                          + (str(exc).strip().splitlines() or [""])[0][:200] + ")")
                raise typer.Exit(EXIT_BAD_INPUT) from None
            _internal_error(exc, debug)
        finally:
            restore()

    return wrapper


def _damaged_file(exc: BaseException) -> bool:
    """DuckDB's errors for a file whose blocks are missing or fail their checksum: bad input, not fraudsim's bug."""
    import duckdb

    text = str(exc)
    return isinstance(exc, duckdb.Error) and ("Could not read enough bytes" in text or "Corrupt database file" in text)


def _interrupt_code(exc: BaseException | None) -> int | None:
    """The exit code of a signal hidden inside another error, or None. DuckDB reports a Ctrl-C that arrived during
    a statement as ``InterruptException`` or, from a cursor of a background writer, as ``RuntimeError: Query
    interrupted``; a signal that lands while a Numba kernel runs comes back as ``SystemError: ... returned a result
    with an exception set`` whose cause is the ``KeyboardInterrupt`` or :class:`Terminated`. Look along the chain."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, Terminated):
            return EXIT_SIGTERM
        if isinstance(exc, KeyboardInterrupt) or type(exc).__name__ == "InterruptException" \
                or str(exc).startswith("Query interrupted"):
            return EXIT_SIGINT
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def summary_table(df: pl.DataFrame, title: str, width: int | None = None) -> Table:
    """Success within a few budgets (any evasion, then cheap ones), median queries and costs, per strategy.

    The table fits ``width`` columns (the output's width by default; 80 is enough for the usual columns): where it
    would not, the least telling columns are left out, the caption says which."""
    succ = [c for c in df.columns if c.startswith("success_rate_at_")]
    cheap = [c for c in df.columns if c.startswith("cheap_success_rate_at_")]
    budget = lambda c: c.rsplit("_", 1)[1]
    shown = [c for c in succ if budget(c) in ("10", "50", "100")] + succ[-1:]
    shown = list(dict.fromkeys(shown))
    shown_cheap = list(dict.fromkeys([c for c in cheap if budget(c) == "100"] + cheap[-1:]))
    exact = "median_ratio_to_exact" in df.columns  # the run has the exact strategy
    fmt = lambda v, pct=False: "–" if v is None else (f"{v:.0%}" if pct else f"{v:.2f}" if v < 10 else f"{v:.0f}")
    # (header, cell per row); headers break over two lines so that the usual table fits 80 columns
    cols: list[tuple[str, Callable[[dict], str]]] = [("n", lambda r: str(r["targets"]))]
    share: Callable[[str], Callable[[dict], str]] = lambda c: (lambda r: fmt(r[c], True))
    cols += [(f"≤{budget(c)}", share(c)) for c in shown]
    cols += [(f"cheap\n≤{budget(c)}", share(c)) for c in shown_cheap]
    cols += [("med\nq", lambda r: fmt(r["median_queries_to_evasion"])),
             ("cost\n1st", lambda r: fmt(r["median_first_cost"])), ("best", lambda r: fmt(r["median_best_cost"]))]
    if exact:
        cols += [("÷exact", lambda r: fmt(r["median_ratio_to_exact"])),
                 ("p90\n÷exact", lambda r: fmt(r["p90_ratio_to_exact"]))]
    # left out first when the width is short: the in-between budgets, then the tail of the exact ratio
    drop_order: list[str] = [h for h in ("≤50", "≤10", "p90\n÷exact", "cost\n1st") if h in dict(cols)]
    if len(shown_cheap) > 1:
        drop_order.insert(2, f"cheap\n≤{budget(shown_cheap[0])}")
    caption = ("≤N: share of targets evaded within N queries; cheap: evading at cost ≤ 1; med q, costs: medians over "
               "the evaded targets")
    rows = list(df.iter_rows(named=True))
    width = out.width if width is None else width
    left_out: list[str] = []
    while True:
        table = Table(title=title, title_justify="left", caption=caption + (
                      f" ({', '.join(h.replace(chr(10), ' ') for h in left_out)} left out to fit {width} columns)"
                      if left_out else ""), caption_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1),
                      collapse_padding=True, pad_edge=False)
        table.add_column("strategy", style="bold", no_wrap=True)
        kept = [(h, f) for h, f in cols if h not in left_out]
        for h, _ in kept:
            table.add_column(h, justify="right", no_wrap=True)
        for r in rows:
            table.add_row(r["strategy"], *[f(r) for _, f in kept])
        if not drop_order or _natural_width(table) <= width:
            return table
        left_out.append(drop_order.pop(0))


def _natural_width(table: Table) -> int:
    from rich.measure import Measurement

    wide = Console(width=10_000)
    return Measurement.get(wide, wide.options, table).maximum


@app.command()
@guarded
def run(scenario: Optional[Path] = typer.Argument(None, help="scenario YAML; the built-in default when omitted"),
        output: Optional[Path] = typer.Option(None, "--output", "-o", help="DuckDB file to write (overrides the scenario)"),
        seed: Optional[int] = typer.Option(None, help="override the scenario seed"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars or lines"),
        junit: Optional[Path] = typer.Option(None, "--junit", help="write the scenario's gates' verdicts as JUnit XML"),
        debug: bool = typer.Option(False, help="show tracebacks")) -> None:
    """Run a scenario: build or load the traffic and model, attack the targets, write DuckDB, print a summary.

    With ``gates`` in the scenario: exit 0 when all pass, 1 when any fails."""
    from .runner import execute, prepare
    from .scenario import Scenario
    from .store import check_export_path, check_output_path, output_lock

    sc = Scenario.default() if scenario is None else Scenario.from_yaml(scenario)
    if seed is not None:
        sc = sc.replace(seed=seed)
    path = Path(output) if output is not None else sc.output_path()
    check_output_path(path, field="--output" if output is not None else "output", inputs=sc.input_paths(),
                      source=None if output is not None else sc.source)
    if junit is not None and not sc.gates:
        err.print(Text(f"fraudsim: warning: --junit given but the scenario has no gates; no JUnit file written "
                       f"(add 'gates:' to {one_line(sc.source or 'the scenario')})", style="yellow"), soft_wrap=True)
        junit = None
    if junit is not None:
        check_export_path(junit, field="--junit", protected=[path, *sc.input_paths()])
    with output_lock(path) as lock:  # a second run on the same output is refused here, before any work
        if lock.stale_removed:
            err.print(Text(f"fraudsim: note: removed {one_line(lock.stale_removed)}, left by a run that was killed",
                           style="yellow"), soft_wrap=True)
        from .progress import progress_for  # bars on a terminal, plain lines in logs, nothing with -q

        with progress_for(err, quiet=quiet) as prog:
            prep = prepare(sc, progress=prog)
            res = execute(prep, output=path, progress=prog)
    if getattr(prep, "is_campaign", False):  # a campaign: its header, this summary, then the per-round table
        from .campaign.report import print_campaign

        print_campaign(out, prep, res, summary_table)
    else:
        auc = prep.model_card.get("test_auc")
        out.print(Text.assemble((sc.name, "bold"), f": {prep.model.kind} model, threshold {prep.threshold:.4g} "
                                f"({one_line(prep.threshold_rule)})"
                                + (f", test AUC {auc:.3f}" if isinstance(auc, float) else "")), highlight=False)
        out.print(f"{len(prep.target_rows)} targets ({sc.attack.targets}), budget {sc.attack.budget} queries each, "
                  f"feedback: {sc.attack.feedback}", highlight=False, markup=False)
        try:  # derived from the finished file: a failure here is a warning, the run is safe on disk
            out.print(summary_table(res.summary(), f"Attack success ({res.run_id})"))
        except Exception as exc:
            err.print(f"warning: {one_line(res.path)}: summary not shown ({type(exc).__name__}: "
                      f"{one_line(str(exc).splitlines()[0][:200]) if str(exc) else ''})",
                      highlight=False, markup=False, soft_wrap=True)
        out.print(Text.assemble("results: ", (one_line(res.path), "bold"),
                                " (DuckDB: runs, queries, targets, transactions, model_versions)"), highlight=False)
    if sc.gates:
        from .report.output import report_gates

        code = report_gates(res.path, res.run_id, sc.gates, junit=junit, out=out, err=err)
        raise typer.Exit(code)


@app.command()
@guarded
def validate(scenario: Path = typer.Argument(..., help="scenario YAML"),
             debug: bool = typer.Option(False, help="show tracebacks")) -> None:
    """Check a scenario and the model and data it points to, without running anything."""
    from .runner import prepare
    from .scenario import Scenario

    sc = Scenario.from_yaml(scenario)
    prep = prepare(sc, validate_only=True)
    if sc.output is not None:
        from .store import check_output_path

        check_output_path(sc.output, field="output", inputs=sc.input_paths(), source=sc.source, create=False)
    shown = escape(one_line(scenario))
    if prep is None and sc.adversaries is not None:
        rings = sc.adversaries.rings
        out.print(f"[green]ok[/] {shown}: campaign {sc.name!r}, {len(rings)} rings, "
                  f"{sum(r.agents for r in rings)} agents, strategies "
                  f"{', '.join(sorted({s for r in rings for s in r.strategies}))}", highlight=False)
        return
    if prep is None:
        out.print(f"[green]ok[/] {shown}: world scenario {sc.name!r}, strategies {', '.join(sc.attack.strategies)}, "
                  f"budget {sc.attack.budget}", highlight=False)
        return
    out.print(f"[green]ok[/] {shown}: {prep.model.kind} model with {len(prep.model.feature_names)} features, "
              f"{prep.frame.height} rows, {len(prep.target_rows)} targets, mutable: "
              f"{escape(one_line(', '.join(prep.schema.mutable_names)))}", highlight=False)


@app.command()
@guarded
def generate(output: Path = typer.Option(Path("world.parquet"), "--output", "-o",
                                         help="a .parquet file, or a folder for one Hive partition per day"),
             customers: int = typer.Option(20_000, min=1), days: int = typer.Option(30, min=1),
             seed: int = typer.Option(0, min=0), fraudsters: int = typer.Option(60, min=0),
             quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar or lines"),
             debug: bool = typer.Option(False, help="show tracebacks")) -> None:
    """Write a labelled synthetic transaction data set from the agent-based world, one day at a time (memory
    stays bounded: worlds larger than memory go to a folder, ``-o world/``, as ``day=<d>/part-0.parquet``)."""
    from .world import World, WorldConfig
    from .world.parquet import check_target, write_world

    try:
        if output.suffix.lower() == ".parquet":  # one file: the same path checks as every other output
            from .store import check_output_path

            check_output_path(output, field="--output", only_replace_runs=False)
        check_target(output)
        world = World(WorldConfig(customers=customers, days=days, fraudsters=fraudsters), seed=seed)
        from .progress import progress_for

        with progress_for(err, quiet=quiet) as prog:
            advance = prog("world days", days)
            stats = write_world(world, output, on_day=lambda n: advance(1))
    except FraudsimError as exc:
        _fail(exc, debug)
        return
    out.print(f"wrote {stats.rows:,} transactions ({stats.fraud:,} fraud) over {stats.days} days to {output} "
              f"in {stats.seconds:.1f} s", highlight=False)


@app.command()
@guarded
def train(out_dir: Path = typer.Option(Path("models"), "--out-dir", help="folder for the models and their cards"),
          customers: int = typer.Option(20_000, min=1), days: int = typer.Option(30, min=2),
          seed: int = typer.Option(0, min=0), fpr: float = typer.Option(0.01, min=1e-6, max=0.5),
          holdout: Optional[Path] = typer.Option(None, help="also write the last test days as Parquet here"),
          holdout_days: int = typer.Option(2, min=1, help="days in the holdout sample")) -> None:
    """Train the baseline XGBoost and LightGBM models on the world; save them natively with JSON cards."""
    from .baseline import train_baselines

    for path, card in train_baselines(out_dir, customers=customers, days=days, seed=seed, fpr=fpr, holdout=holdout,
                                      holdout_days=holdout_days):
        out.print(f"wrote {path} (test AUC {card['test_auc']:.3f}, threshold {card['threshold']:.4g})", highlight=False)


@app.command()
@guarded
def harden(scenario: Path = typer.Argument(..., help="harden scenario YAML (train:, data:, model:, features:, attack:, harden:)"),
           output: Optional[Path] = typer.Option(None, "--output", "-o", help="folder to write (default: <name>-harden)"),
           quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress lines"),
           debug: bool = typer.Option(False, help="show tracebacks")) -> None:
    """Train hardened candidates of a model (adversarial training, monotone constraints, squeezing, ensembles,
    robustness-aware tuning) and measure each before/after: clean AUC, FPR, attack success, confidence stability."""
    from .harden import harden as run_harden, table_rows, verdict
    from .scenario import Scenario

    try:
        sc = Scenario.from_yaml(scenario)
        from .progress import step_log

        with step_log(err, quiet=quiet, prefix="harden: ") as say:
            res = run_harden(sc, output, log=say)
    except FraudsimError as exc:
        _fail(exc, debug)
        return
    head, body = table_rows(res.candidates)
    assert sc.harden is not None  # run_harden refuses a scenario without a harden: section
    table = Table(title=f"Hardening {sc.name}: before/after (strongest strategy: {res.strongest})",
                  title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1),
                  caption="thresholds at the same FPR on the holdout's legitimate rows; cheap≤100: share of targets "
                          "evaded at cost ≤ 1 within 100 queries; cost: median best cost; |Δs|p95, flips: score "
                          f"moves under small legitimate perturbations; ★ best: most fraud still declined after the attack, within max_auc_loss {sc.harden.max_auc_loss:g}", caption_justify="left")
    for h in head:
        table.add_column(h, justify="left" if h == "candidate" else "right", no_wrap=True)
    for r in body:
        table.add_row(*r)
    Console(width=max(out.width, 200) if not sys.stdout.isatty() else None).print(table)
    for line in verdict(res.candidates, res.best, sc.harden.max_auc_loss):
        out.print(line, highlight=False)
    out.print(f"wrote [bold]{res.out_dir}[/] (candidates.json, harden.html, harden.duckdb, models/, attacks/)",
              highlight=False)


# -- reading finished runs: query, report, gate, compare (the work is in simulator/report) -------------------------


def _output_format(fmt: Optional[str], output: Optional[Path]) -> str:
    """``--format`` when given, else the output file's suffix (.csv, .json, .parquet), else a table."""
    from .report.output import FORMATS, OutputError

    if fmt is None:
        suffix = output.suffix.lower().lstrip(".") if output is not None else ""
        fmt = suffix if suffix in FORMATS else ("csv" if output is not None else "table")
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise OutputError(f"unknown format {fmt!r}; use one of: {', '.join(FORMATS)}", field="--format")
    if fmt == "parquet" and output is None:
        raise OutputError("--format parquet needs an output file: add -o FILE.parquet", field="--output")
    if fmt == "table" and output is not None:
        raise OutputError("a table is for the terminal; with -o use --format csv, json or parquet", field="--format")
    return fmt


def _emit(df: pl.DataFrame, fmt: str, output: Optional[Path]) -> None:
    from .report.output import write_frame

    text = write_frame(df, fmt, output)
    if text is not None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        err.print(f"wrote {df.height:,} rows to {one_line(output)}", highlight=False, markup=False)


@app.command(context_settings={"ignore_unknown_options": True})
@guarded
def query(run_file: Path = typer.Argument(..., help="a fraudsim run file (.duckdb)"),
          sql: str = typer.Argument(..., help="one read-only statement: SELECT, WITH, DESCRIBE, SHOW, SUMMARIZE, "
                                              "EXPLAIN or PRAGMA table_info (SQL that starts with '--' may follow "
                                              "a lone '--')"),
          fmt: Optional[str] = typer.Option(None, "--format", "-f", help="table, csv, json or parquet "
                                            "(default: from the -o suffix, else table)"),
          output: Optional[Path] = typer.Option(None, "--output", "-o", help="write to this file (needed for parquet)"),
          max_rows: int = typer.Option(50, "--max-rows", min=1, help="rows shown in table format"),
          timeout: float = typer.Option(300.0, "--timeout", help="stop the statement after this many seconds"),
          memory_limit: str = typer.Option("4GB", "--memory-limit", help="most memory the statement may use"),
          debug: bool = typer.Option(False, help="show tracebacks")) -> None:
    """Run one read-only SQL query on a run file (views such as success_by_budget included) and print the result."""
    from .report.output import rows_table
    from .report.query import run_query, run_query_rows

    try:
        fmt = _output_format(fmt, output)
        if output is not None:
            from .store import check_export_path

            check_export_path(output, protected=[run_file])
        if fmt == "table":  # DuckDB's rows straight into the table: no Polars or Arrow to load for a look
            res, cut = run_query_rows(run_file, sql, limit=max_rows, timeout_s=timeout, memory_limit=memory_limit)
            out.print(rows_table(res.columns, res.numeric, res.rows))
            if cut:
                out.print(f"first {max_rows} rows shown; use --max-rows N or --format csv for all", style="dim",
                          highlight=False)
        else:
            df, _ = run_query(run_file, sql, timeout_s=timeout, memory_limit=memory_limit)
            _emit(df, fmt, output)
    except FraudsimError as exc:
        _fail(exc, debug)


@app.command()
@guarded
def report(run_file: Path = typer.Argument(..., help="a fraudsim run file (.duckdb)"),
           output: Path = typer.Option(Path("report.html"), "--output", "-o", help="HTML file to write"),
           run_id: Optional[str] = typer.Option(None, help="which run in the file (default: the latest)"),
           gate: list[str] = typer.Option([], "--gate", "-g", help="also show this gate's verdict (repeatable); "
                                           "default: the scenario's gates"),
           title: Optional[str] = typer.Option(None, help="title of the report"),
           x_axis: Optional[str] = typer.Option(None, "--x", help="sweep files: the override on the heatmap's columns "
                                                "(default: the first)"),
           y_axis: Optional[str] = typer.Option(None, "--y", help="sweep files: the override on its rows "
                                                "(default: the second)"),
           debug: bool = typer.Option(False, help="show tracebacks")) -> None:
    """Write a self-contained HTML report of a run (opens offline): summary, curves, heatmap, worst evasions, cards.

    On a sweep file: success as a heatmap over two override axes, every variant, and the gates over all."""
    import time

    from .report.html_report import write_report

    from .store import check_export_path, open_readonly

    open_readonly(run_file).close()  # a .partial, a folder, a file that is not a run: one line before anything
    check_export_path(output, protected=[run_file])
    t0 = time.perf_counter()
    try:
        from .sweep import is_sweep_file

        if is_sweep_file(run_file):  # a sweep: success over two override axes, every variant, gates over all
            from .report.sweep_report import write_sweep_report

            path = write_sweep_report(run_file, output, x=x_axis, y=y_axis, gates=gate or None, title=title)
        else:
            path = write_report(run_file, output, run_id, gates=gate or None, title=title)
    except FraudsimError as exc:
        _fail(exc, debug)
        return
    out.print(f"wrote {one_line(path)} ({path.stat().st_size / 1024:,.0f} KB) in {time.perf_counter() - t0:.1f} s",
              highlight=False, markup=False)


@app.command()
@guarded
def gate(run_file: Path = typer.Argument(..., help="a fraudsim run file (.duckdb)"),
         expressions: list[str] = typer.Argument(..., help="gates such as 'success_rate_at_100 <= 0.05' "
                                                 "or 'auc >= 0.85' (quote each one)"),
         junit: Optional[Path] = typer.Option(None, "--junit", help="also write the verdicts as JUnit XML"),
         run_id: Optional[str] = typer.Option(None, help="which run in the file (default: the latest)"),
         debug: bool = typer.Option(False, help="show tracebacks")) -> None:
    """Check gates on a finished run: exit 0 when all pass, 1 when any fails (2 for bad input)."""
    from .report.output import report_gates

    if junit is not None:
        from .store import check_export_path

        check_export_path(junit, field="--junit", protected=[run_file])
    try:
        code = report_gates(run_file, run_id, expressions, junit=junit, out=out, err=err)
    except FraudsimError as exc:
        _fail(exc, debug)
        return
    raise typer.Exit(code)


@app.command()
@guarded
def compare(runs: list[str] = typer.Argument(..., help="two runs: A (the baseline) and B (the candidate); or more "
                                            "run files, FILE::RUN_ID, or a sweep file (all its variants)"),
            fmt: Optional[str] = typer.Option(None, "--format", "-f", help="table, csv, json or parquet"),
            output: Optional[Path] = typer.Option(None, "--output", "-o", help="write to this file (needed for parquet)"),
            debug: bool = typer.Option(False, help="show tracebacks")) -> None:
    """Runs side by side: success per strategy, AUC, FPR, threshold, model. Two runs: with deltas B − A; more (or
    a sweep file): one column per run and the spread."""
    from .report.output import compare_table

    try:
        fmt = _output_format(fmt, output)
        if output is not None:
            from .store import check_export_path

            check_export_path(output, protected=[Path(r.split("::")[0]) for r in runs])
        if len(runs) == 2 and not any("::" in r for r in runs) and not _is_sweep(runs):
            from .report.compare import compare_runs

            run_a, run_b = (Path(r) for r in runs)
            df = compare_runs(run_a, run_b)
            if fmt == "table":
                out.print(compare_table(df, str(run_a), str(run_b)))
                return
        else:
            from .report.compare_many import compare_many
            from .report.output import frame_table

            df = compare_many(runs)
            if fmt == "table":
                out.print(frame_table(df, caption="spread = max − min over the runs"))
                return
        _emit(df, fmt, output)
    except FraudsimError as exc:
        _fail(exc, debug)


def _is_sweep(paths: list[str]) -> bool:
    from .sweep import is_sweep_file

    return any(Path(p).is_file() and is_sweep_file(p) for p in paths)


@app.command()
@guarded
def sweep(sweep_file: Path = typer.Argument(..., help="sweep YAML: base scenario plus grid or variants"),
          engine: str = typer.Option("ray", "--engine", "-e", help="ray (the optional extra) or serial"),
          address: Optional[str] = typer.Option(None, "--address", help="an existing Ray cluster (default: start one "
                                                "on this machine)"),
          output: Optional[Path] = typer.Option(None, "--output", "-o", help="sweep DuckDB file (overrides the file's)"),
          quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar or lines"),
          debug: bool = typer.Option(False, help="show tracebacks")) -> None:
    """Run every variant of a base scenario (a grid or a list of overrides) as its own task, then merge the runs
    into one DuckDB file with a ``sweep`` table. Reruns skip finished variants.

    Exit 0 when every variant finished and passed its gates, 1 otherwise (2 for bad input)."""
    import json

    from .report.sweep_report import overrides_label
    from .sweep import check_engine, run_sweep

    try:
        check_engine(engine, address)
        from .progress import progress_for

        with progress_for(err, quiet=quiet) as prog:  # run_sweep reads the sweep file while Ray starts
            res = run_sweep(sweep_file, output=output, engine=engine, address=address, progress=prog)
    except FraudsimError as exc:
        _fail(exc, debug)
        return
    table = Table(title=f"Sweep {sweep_file} ({engine})", title_justify="left", box=box.SIMPLE_HEAD)
    for c in ("variant", "overrides", "status", "wall s", "worker", "gates / error"):
        table.add_column(c, overflow="fold")
    for r in res.rows:
        note = r["error"] or (f"failed: {r['gates_failed']}" if r["gates_failed"] else "")
        table.add_row(r["variant"], overrides_label(json.loads(r["overrides"] or "{}")), r["status"],
                      "–" if r["wall_s"] is None else f"{r['wall_s']:.1f}",
                      r["worker"] or "–", note)
    out.print(table)
    done = len(res.rows) - len(res.failed)
    out.print(f"{done} of {len(res.rows)} variants finished ({res.skipped} from an earlier run), "
              f"{len(res.failed)} failed, {len(res.gates_failed)} failed a gate; results: [bold]{res.path}[/]",
              highlight=False)
    raise typer.Exit(1 if res.failed or res.gates_failed else 0)


def main() -> None:
    try:
        app()
    except Terminated:
        say_error("interrupted", "stopped by SIGTERM")
        sys.exit(EXIT_SIGTERM)
    except KeyboardInterrupt:
        say_error("interrupted", "stopped by Ctrl-C")
        sys.exit(EXIT_SIGINT)


if __name__ == "__main__":
    main()
