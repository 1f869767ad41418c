"""Progress bars (Rich; they also render in Jupyter) behind the runner's small callback interface."""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


@contextlib.contextmanager
def rich_progress(console: Console | None = None) -> Iterator[Callable[[str, int | None], Callable[[int], None]]]:
    with Progress(SpinnerColumn(), TextColumn("[bold]{task.description:<24}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console or Console(stderr=True), transient=False) as prog:
        def start(description: str, total: int | None) -> Callable[[int], None]:
            task = prog.add_task(description, total=total if total is not None else 1)
            return lambda n: prog.advance(task, n)

        yield start
