"""The ``fraudsim`` command: run, validate, generate, train.

Bad input prints one line (file: field: reason) and exits with code 2; ``--debug`` shows the traceback.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import polars as pl
import typer
from rich import box
from rich.console import Console
from rich.table import Table

from .errors import FraudsimError

app = typer.Typer(add_completion=False, no_args_is_help=False, pretty_exceptions_enable=False,
                  help="fraudsim: how easily can a fraudster who can only query your fraud model get fraud through?")
out = Console(width=None if sys.stdout.isatty() else 120)  # logs and pipes get the whole table
err = Console(stderr=True)
EXIT_BAD_INPUT = 2


def _fail(exc: BaseException, debug: bool) -> None:
    if debug:
        raise exc
    if isinstance(exc, FraudsimError):
        err.print(f"[bold red]fraudsim: {exc.kind}:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
        raise typer.Exit(EXIT_BAD_INPUT)
    raise exc


def summary_table(df: pl.DataFrame, title: str) -> Table:
    """Success within a few budgets (any evasion, then cheap ones), median queries and costs, per strategy."""
    succ = [c for c in df.columns if c.startswith("success_at_")]
    cheap = [c for c in df.columns if c.startswith("cheap_success_at_")]
    budget = lambda c: c.rsplit("_", 1)[1]
    shown = [c for c in succ if budget(c) in ("10", "50", "100")] + succ[-1:]
    shown = list(dict.fromkeys(shown))
    shown_cheap = list(dict.fromkeys([c for c in cheap if budget(c) == "100"] + cheap[-1:]))
    table = Table(title=title, title_justify="left", caption="≤N: share of targets evaded within N queries; "
                  "cheap: evading at cost ≤ 1; med q: median queries to the first evasion", caption_justify="left",
                  box=box.SIMPLE_HEAD, padding=(0, 1))
    table.add_column("strategy", style="bold", no_wrap=True)
    table.add_column("n", justify="right")
    for c in shown:
        table.add_column(f"≤{budget(c)}", justify="right", no_wrap=True)
    for c in shown_cheap:
        table.add_column(f"cheap≤{budget(c)}", justify="right", no_wrap=True)
    for c in ("med q", "cost 1st", "best"):
        table.add_column(c, justify="right", no_wrap=True)
    fmt = lambda v, pct=False: "–" if v is None else (f"{v:.0%}" if pct else f"{v:.2f}" if v < 10 else f"{v:.0f}")
    for r in df.iter_rows(named=True):
        table.add_row(r["strategy"], str(r["targets"]), *[fmt(r[c], True) for c in shown],
                      *[fmt(r[c], True) for c in shown_cheap], fmt(r["median_queries_to_evasion"]),
                      fmt(r["median_first_cost"]), fmt(r["median_best_cost"]))
    return table


@app.command()
def run(scenario: Optional[Path] = typer.Argument(None, help="scenario YAML; the built-in default when omitted"),
        output: Optional[Path] = typer.Option(None, "--output", "-o", help="DuckDB file to write (overrides the scenario)"),
        seed: Optional[int] = typer.Option(None, help="override the scenario seed"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
        junit: Optional[Path] = typer.Option(None, "--junit", help="write the scenario's gates' verdicts as JUnit XML"),
        debug: bool = typer.Option(False, help="show tracebacks")) -> None:
    """Run a scenario: build or load the traffic and model, attack the targets, write DuckDB, print a summary.

    With ``gates`` in the scenario: exit 0 when all pass, 1 when any fails."""
    from .runner import execute, prepare
    from .scenario import Scenario

    try:
        sc = Scenario.default() if scenario is None else Scenario.from_yaml(scenario)
        if seed is not None:
            sc = sc.replace(seed=seed)
        if quiet:
            prep = prepare(sc)
            res = execute(prep, output=output)
        else:
            from .progress import rich_progress

            with rich_progress(err) as prog:
                prep = prepare(sc, progress=prog)
                res = execute(prep, output=output, progress=prog)
    except FraudsimError as exc:
        _fail(exc, debug)
        return
    if getattr(prep, "is_campaign", False):  # a campaign: its header, this summary, then the per-round table
        from .campaign.report import print_campaign

        print_campaign(out, prep, res, summary_table)
    else:
        auc = prep.model_card.get("test_auc")
        out.print(f"[bold]{sc.name}[/]: {prep.model.kind} model, threshold {prep.threshold:.4g} ({prep.threshold_rule})"
                  + (f", test AUC {auc:.3f}" if isinstance(auc, float) else ""), highlight=False)
        out.print(f"{len(prep.target_rows)} targets ({sc.attack.targets}), budget {sc.attack.budget} queries each, "
                  f"feedback: {sc.attack.feedback}", highlight=False)
        out.print(summary_table(res.summary(), f"Attack success ({res.run_id})"))
        out.print(f"results: [bold]{res.path}[/] (DuckDB: runs, queries, targets, transactions, model_versions)",
                  highlight=False)
    if sc.gates or junit is not None:
        from .report.output import report_gates

        try:
            code = report_gates(res.path, res.run_id, sc.gates, junit=junit, out=out, err=err)
        except FraudsimError as exc:
            _fail(exc, debug)
            return
        raise typer.Exit(code)


@app.command()
def validate(scenario: Path = typer.Argument(..., help="scenario YAML"),
             debug: bool = typer.Option(False, help="show tracebacks")) -> None:
    """Check a scenario and the model and data it points to, without running anything."""
    from .runner import prepare
    from .scenario import Scenario

    try:
        sc = Scenario.from_yaml(scenario)
        prep = prepare(sc, validate_only=True)
    except FraudsimError as exc:
        _fail(exc, debug)
        return
    if prep is None and sc.adversaries is not None:
        rings = sc.adversaries.rings
        out.print(f"[green]ok[/] {scenario}: campaign {sc.name!r}, {len(rings)} rings, "
                  f"{sum(r.agents for r in rings)} agents, strategies "
                  f"{', '.join(sorted({s for r in rings for s in r.strategies}))}", highlight=False)
        return
    if prep is None:
        out.print(f"[green]ok[/] {scenario}: world scenario {sc.name!r}, strategies {', '.join(sc.attack.strategies)}, "
                  f"budget {sc.attack.budget}", highlight=False)
        return
    out.print(f"[green]ok[/] {scenario}: {prep.model.kind} model with {len(prep.model.feature_names)} features, "
              f"{prep.frame.height} rows, {len(prep.target_rows)} targets, mutable: {', '.join(prep.schema.mutable_names)}",
              highlight=False)


@app.command()
def generate(output: Path = typer.Option(Path("world.parquet"), "--output", "-o", help="Parquet file to write"),
             customers: int = typer.Option(20_000, min=1), days: int = typer.Option(30, min=1),
             seed: int = typer.Option(0, min=0), fraudsters: int = typer.Option(60, min=0)) -> None:
    """Write a labelled synthetic transaction data set from the agent-based world."""
    from .world import World, WorldConfig

    frame = World(WorldConfig(customers=customers, days=days, fraudsters=fraudsters), seed=seed).generate()
    output.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(output)
    out.print(f"wrote {frame.height:,} transactions ({frame['is_fraud'].sum():,} fraud) to {output}", highlight=False)


@app.command()
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
def harden(scenario: Path = typer.Argument(..., help="harden scenario YAML (train:, data:, model:, features:, attack:, harden:)"),
           output: Optional[Path] = typer.Option(None, "--output", "-o", help="folder to write (default: <name>-harden)"),
           quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress lines"),
           debug: bool = typer.Option(False, help="show tracebacks")) -> None:
    """Train hardened candidates of a model (adversarial training, monotone constraints, squeezing, ensembles,
    robustness-aware tuning) and measure each before/after: clean AUC, FPR, attack success, confidence stability."""
    from .harden import harden as run_harden, table_rows
    from .scenario import Scenario

    try:
        sc = Scenario.from_yaml(scenario)
        res = run_harden(sc, output, log=None if quiet else (lambda m: err.print(f"[dim]{m}[/]", highlight=False)))
    except FraudsimError as exc:
        _fail(exc, debug)
        return
    head, body = table_rows(res.candidates)
    table = Table(title=f"Hardening {sc.name}: before/after (strongest strategy: {res.strongest})",
                  title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1),
                  caption="thresholds at the same FPR on the holdout's legitimate rows; cheap≤100: share of targets "
                          "evaded at cost ≤ 1 within 100 queries; cost: median best cost; |Δs|p95, flips: score "
                          f"moves under small legitimate perturbations; ★ best within max_auc_loss {sc.harden.max_auc_loss:g}", caption_justify="left")
    for h in head:
        table.add_column(h, justify="left" if h == "candidate" else "right", no_wrap=True)
    for r in body:
        table.add_row(*r)
    Console(width=max(out.width, 200) if not sys.stdout.isatty() else None).print(table)
    base = res.candidates[0]["strongest_cheap_success_at_100"]
    if res.best is None:
        out.print("no candidate cut the strongest strategy's cheap success within the allowed AUC loss", highlight=False)
    else:
        b = next(r for r in res.candidates if r["name"] == res.best)
        rel = 1 - b["strongest_cheap_success_at_100"] / base if base else 0.0
        out.print(f"best: {res.best}: cheap success at 100 of {res.strongest} {base:.0%} -> "
                  f"{b['strongest_cheap_success_at_100']:.0%} ({rel:.0%} relative), AUC loss {b['auc_loss']:+.4f}",
                  highlight=False)
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
        err.print(f"wrote {df.height:,} rows to {output}", highlight=False)


@app.command()
def query(run_file: Path = typer.Argument(..., help="a fraudsim run file (.duckdb)"),
          sql: str = typer.Argument(..., help="one read-only statement: SELECT, WITH, DESCRIBE, SHOW, SUMMARIZE, "
                                              "EXPLAIN or PRAGMA table_info"),
          fmt: Optional[str] = typer.Option(None, "--format", "-f", help="table, csv, json or parquet "
                                            "(default: from the -o suffix, else table)"),
          output: Optional[Path] = typer.Option(None, "--output", "-o", help="write to this file (needed for parquet)"),
          max_rows: int = typer.Option(50, "--max-rows", min=1, help="rows shown in table format"),
          debug: bool = typer.Option(False, help="show tracebacks")) -> None:
    """Run one read-only SQL query on a run file (views such as success_by_budget included) and print the result."""
    from .report.output import frame_table
    from .report.query import run_query

    try:
        fmt = _output_format(fmt, output)
        df, cut = run_query(run_file, sql, limit=max_rows if fmt == "table" else None)
        if fmt == "table":
            out.print(frame_table(df))
            if cut:
                out.print(f"first {max_rows} rows shown; use --max-rows N or --format csv for all", style="dim",
                          highlight=False)
        else:
            _emit(df, fmt, output)
    except FraudsimError as exc:
        _fail(exc, debug)


@app.command()
def report(run_file: Path = typer.Argument(..., help="a fraudsim run file (.duckdb)"),
           output: Path = typer.Option(Path("report.html"), "--output", "-o", help="HTML file to write"),
           run_id: Optional[str] = typer.Option(None, help="which run in the file (default: the latest)"),
           gate: list[str] = typer.Option([], "--gate", "-g", help="also show this gate's verdict (repeatable); "
                                           "default: the scenario's gates"),
           title: Optional[str] = typer.Option(None, help="title of the report"),
           debug: bool = typer.Option(False, help="show tracebacks")) -> None:
    """Write a self-contained HTML report of a run (opens offline): summary, curves, heatmap, worst evasions, cards."""
    import time

    from .report.html_report import write_report

    t0 = time.perf_counter()
    try:
        path = write_report(run_file, output, run_id, gates=gate or None, title=title)
    except FraudsimError as exc:
        _fail(exc, debug)
        return
    out.print(f"wrote {path} ({path.stat().st_size / 1024:,.0f} KB) in {time.perf_counter() - t0:.1f} s", highlight=False)


@app.command()
def gate(run_file: Path = typer.Argument(..., help="a fraudsim run file (.duckdb)"),
         expressions: list[str] = typer.Argument(..., help="gates such as 'success_rate_at_100 <= 0.05' "
                                                 "or 'auc >= 0.85' (quote each one)"),
         junit: Optional[Path] = typer.Option(None, "--junit", help="also write the verdicts as JUnit XML"),
         run_id: Optional[str] = typer.Option(None, help="which run in the file (default: the latest)"),
         debug: bool = typer.Option(False, help="show tracebacks")) -> None:
    """Check gates on a finished run: exit 0 when all pass, 1 when any fails (2 for bad input)."""
    from .report.output import report_gates

    try:
        code = report_gates(run_file, run_id, expressions, junit=junit, out=out, err=err)
    except FraudsimError as exc:
        _fail(exc, debug)
        return
    raise typer.Exit(code)


@app.command()
def compare(run_a: Path = typer.Argument(..., help="run file A (the baseline)"),
            run_b: Path = typer.Argument(..., help="run file B (the candidate)"),
            fmt: Optional[str] = typer.Option(None, "--format", "-f", help="table, csv, json or parquet"),
            output: Optional[Path] = typer.Option(None, "--output", "-o", help="write to this file (needed for parquet)"),
            debug: bool = typer.Option(False, help="show tracebacks")) -> None:
    """Two runs side by side: success per strategy, AUC, FPR, threshold, model, with deltas B − A."""
    from .report.compare import compare_runs
    from .report.output import compare_table

    try:
        fmt = _output_format(fmt, output)
        df = compare_runs(run_a, run_b)
        if fmt == "table":
            out.print(compare_table(df, str(run_a), str(run_b)))
        else:
            _emit(df, fmt, output)
    except FraudsimError as exc:
        _fail(exc, debug)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
