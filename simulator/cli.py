"""The ``fraudsim`` command: run, validate, generate, train.

Bad input prints one line (file: field: reason) and exits with code 2; ``--debug`` shows the traceback.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import polars as pl
import typer
from rich.console import Console
from rich.table import Table

from .errors import FraudsimError

app = typer.Typer(add_completion=False, no_args_is_help=False, pretty_exceptions_enable=False,
                  help="fraudsim: how easily can a fraudster who can only query your fraud model get fraud through?")
out = Console()
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
    """Success within each budget (all evasions, then cheap ones), median queries and costs, per strategy."""
    succ = [c for c in df.columns if c.startswith("success_at_")]
    cheap = [c for c in df.columns if c.startswith("cheap_success_at_")]
    table = Table(title=title, title_justify="left", caption="evaded ≤N: share of targets with an evading query "
                  "within N queries; cheap: cost ≤ 1", caption_justify="left")
    table.add_column("strategy", style="bold", no_wrap=True)
    table.add_column("n", justify="right")
    for c in succ:
        table.add_column(f"≤{c.rsplit('_', 1)[1]}", justify="right")
    for c in cheap[-2:]:
        table.add_column(f"cheap ≤{c.rsplit('_', 1)[1]}", justify="right")
    for c in ("med q", "1st cost", "best cost"):
        table.add_column(c, justify="right")
    fmt = lambda v, pct=False: "–" if v is None else (f"{v:.0%}" if pct else f"{v:.3g}")
    for r in df.iter_rows(named=True):
        table.add_row(r["strategy"], str(r["targets"]), *[fmt(r[c], True) for c in succ],
                      *[fmt(r[c], True) for c in cheap[-2:]], fmt(r["median_queries_to_evasion"]),
                      fmt(r["median_first_cost"]), fmt(r["median_best_cost"]))
    return table


@app.command()
def run(scenario: Optional[Path] = typer.Argument(None, help="scenario YAML; the built-in default when omitted"),
        output: Optional[Path] = typer.Option(None, "--output", "-o", help="DuckDB file to write (overrides the scenario)"),
        seed: Optional[int] = typer.Option(None, help="override the scenario seed"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
        debug: bool = typer.Option(False, help="show tracebacks")) -> None:
    """Run a scenario: build or load the traffic and model, attack the targets, write DuckDB, print a summary."""
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
    auc = prep.model_card.get("test_auc")
    out.print(f"[bold]{sc.name}[/]: {prep.model.kind} model, threshold {prep.threshold:.4g} ({prep.threshold_rule})"
              + (f", test AUC {auc:.3f}" if isinstance(auc, float) else ""), highlight=False)
    out.print(f"{len(prep.target_rows)} targets ({sc.attack.targets}), budget {sc.attack.budget} queries each, "
              f"feedback: {sc.attack.feedback}", highlight=False)
    out.print(summary_table(res.summary(), f"Attack success ({res.run_id})"))
    out.print(f"cheap = evading with cost ≤ 1. Results: [bold]{res.path}[/] (SQL: tables runs, queries, targets, "
              f"transactions, model_versions)", highlight=False)


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


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
