"""Progress for runs, campaigns, sweeps and world generation, wherever they are watched from.

Everything that reports progress takes one small callback, :data:`Progress`: ``start(description, total)``
returns ``advance(n)``. This module turns it into what suits the place:

- a terminal: Rich bars (:func:`rich_progress`);
- a log or a pipe (CI): plain lines on stderr, one when a task starts, then every ~10 s (even when it does not
  move) or every 10 % of it, and one when it ends (:func:`line_progress`), so a long job is never silent for
  minutes;
- a Jupyter notebook: ``tqdm.auto`` bars (:func:`notebook_progress`), on by default there
  (:func:`api_progress`);
- ``-q``: nothing (:func:`progress_for` with ``quiet=True``).

Each of them also says once per process "compiling kernels (once)…" when Numba has to compile fraudsim's
kernels because its on-disk cache is cold (:func:`compile_note`): the only time a first run is slow for no visible
reason.

Examples
--------
>>> import io
>>> clock = iter([0.0, 0.5, 3.0, 12.0, 12.5]).__next__
>>> buf = io.StringIO()
>>> with line_progress(buf, clock=clock, compile_notes=False) as start:
...     advance = start("attack: random", 100)
...     advance(5); advance(30); advance(65)
>>> print(buf.getvalue(), end="")
fraudsim: attack: random 0/100
fraudsim: attack: random 35/100 (35%), 3 s
fraudsim: attack: random 100/100 (100%), done in 12 s
"""
from __future__ import annotations

import contextlib
import sys
import threading
import time
from typing import IO, Any, Callable, Iterator

Advance = Callable[[int], None]
Progress = Callable[[str, "int | None"], Advance]

EVERY_S = 10.0  # a plain line at least this often while a task moves ...
EVERY_SHARE = 0.1  # ... and at each tenth of it (but not more than once a second)
NOTE = "fraudsim: compiling kernels (once)… later runs load them from Numba's cache"


def no_progress(description: str, total: int | None) -> Advance:
    return lambda n: None


# -- where are we? -----------------------------------------------------------------------------------------------
def in_notebook() -> bool:
    """True inside a Jupyter kernel (IPython's ZMQ shell), where bars should be notebook widgets."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:
        return False
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except Exception:
        return False


# -- "compiling kernels (once)" ----------------------------------------------------------------------------------
_noted = threading.Event()


@contextlib.contextmanager
def compile_note(write: Callable[[str], None]) -> Iterator[None]:
    """While active, the first time Numba compiles one of fraudsim's kernels (a cache miss: a first run, a new
    Numba or a changed kernel), ``write`` the note, once per process. Costs nothing when the cache is warm: Numba
    raises the ``numba:compile`` event only when it really compiles."""
    if _noted.is_set():
        yield
        return
    from numba.core import event

    class _Listener(event.Listener):
        def on_start(self, ev: Any) -> None:
            dispatcher = (ev.data or {}).get("dispatcher")
            module = getattr(getattr(dispatcher, "py_func", None), "__module__", "") or ""
            if module.startswith("simulator.") and not _noted.is_set():
                _noted.set()
                write(NOTE)

        def on_end(self, ev: Any) -> None:
            pass

    listener = _Listener()
    event.register("numba:compile", listener)
    try:
        yield
    finally:
        event.unregister("numba:compile", listener)


# -- the displays --------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def rich_progress(console: Any = None, *, compile_notes: bool = True) -> Iterator[Progress]:
    """Rich bars on a terminal (stderr by default)."""
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RichProgress, SpinnerColumn, TextColumn,
                               TimeElapsedColumn)

    console = console or Console(stderr=True)
    with RichProgress(SpinnerColumn(), TextColumn("[bold]{task.description:<24}"), BarColumn(bar_width=24),
                      MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=False) as prog:
        def start(description: str, total: int | None) -> Advance:
            task = prog.add_task(description, total=total if total is not None else 1)
            return lambda n: prog.advance(task, n)

        note = (lambda m: prog.console.print(m, style="yellow", highlight=False, markup=False))
        with compile_note(note) if compile_notes else contextlib.nullcontext():
            yield start


def _seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 100 else f"{int(s // 60)} min {s % 60:02.0f} s"


@contextlib.contextmanager
def line_progress(stream: IO[str] | None = None, *, every_s: float = EVERY_S, every_share: float = EVERY_SHARE,
                  clock: Callable[[], float] = time.monotonic, compile_notes: bool = True,
                  heartbeat: bool | None = None) -> Iterator[Progress]:
    """Plain progress lines for logs and pipes: ``fraudsim: <task> <done>/<total> (<share>), <elapsed>``.

    A line when a task starts, when it has moved by a tenth (at most once a second) or every ``every_s``, and when
    it ends. With ``heartbeat`` (the default unless a ``clock`` is given) a task that does not move (training a
    model, a slow step) still gets a line every ``every_s``, so a log is never silent for long."""
    out = stream if stream is not None else sys.stderr
    lock = threading.RLock()
    current: list[_LineTask] = []  # the task that runs now (tasks run one after another)

    def write(line: str) -> None:
        with lock:
            out.write(line + "\n")
            out.flush()

    def start(description: str, total: int | None) -> Advance:
        task = _LineTask(description, total or None, clock(), write, every_share)
        with lock:
            current[:] = [task]
            write(f"fraudsim: {description} " + (f"0/{total}" if total else "…"))

        def advance(n: int) -> None:
            if n <= 0:
                return
            with lock:
                task.advance(int(n), clock(), every_s)

        return advance

    stop = threading.Event()
    beat = None
    if heartbeat if heartbeat is not None else clock is time.monotonic:
        def beat_loop() -> None:
            while not stop.wait(min(1.0, every_s / 2)):
                with lock:
                    if current and not current[0].ended and clock() - current[0].last_t >= every_s:
                        current[0].line(clock())

        beat = threading.Thread(target=beat_loop, name="fraudsim-progress", daemon=True)
        beat.start()
    try:
        with compile_note(write) if compile_notes else contextlib.nullcontext():
            yield start
    finally:
        stop.set()
        if beat is not None:
            beat.join(timeout=2.0)


class _LineTask:
    """One task of :func:`line_progress`: what is done, and when the last line was written."""

    def __init__(self, description: str, total: int | None, t0: float, write: Callable[[str], None],
                 every_share: float):
        self.description, self.total, self.t0, self.write, self.every_share = description, total, t0, write, every_share
        self.done, self.last_t, self.last_step, self.ended = 0, t0, 0, False

    def line(self, now: float) -> None:
        self.last_t = now
        if self.total:
            self.write(f"fraudsim: {self.description} {self.done}/{self.total} ({100 * self.done / self.total:.0f}%), "
                       f"{_seconds(now - self.t0)}")
        else:
            self.write(f"fraudsim: {self.description} … {_seconds(now - self.t0)}")

    def advance(self, n: int, now: float, every_s: float) -> None:
        if self.ended:
            return
        self.done += n
        if not self.total:  # an unsized task: its first advance ends it
            self.ended = True
            self.write(f"fraudsim: {self.description} done in {_seconds(now - self.t0)}")
        elif self.done >= self.total:
            self.ended = True
            self.write(f"fraudsim: {self.description} {self.total}/{self.total} (100%), done in "
                       f"{_seconds(now - self.t0)}")
        else:
            step = int(self.done / self.total / self.every_share)
            if now - self.last_t >= every_s or (step > self.last_step and now - self.last_t >= 1.0):
                self.last_step = step
                self.line(now)


@contextlib.contextmanager
def notebook_progress(*, compile_notes: bool = True) -> Iterator[Progress]:
    """``tqdm.auto`` bars: widgets in Jupyter when ipywidgets is installed (``pip install 'fraudsim[notebook]'``),
    tqdm's text bars otherwise (they render in a notebook's output too)."""
    import importlib.util

    if importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.auto import tqdm
    else:  # tqdm.auto would warn "IProgress not found" and fall back to this anyway
        from tqdm import tqdm

    bars: list[Any] = []

    def start(description: str, total: int | None) -> Advance:
        bar = tqdm(total=total if total is not None else 1, desc=description, unit="q" if "attack" in description
                   else "it", leave=True, dynamic_ncols=True)
        bars.append(bar)

        def advance(n: int) -> None:
            bar.update(n)
            if bar.total is not None and bar.n >= bar.total:
                bar.close()

        return advance

    try:
        with compile_note(tqdm.write) if compile_notes else contextlib.nullcontext():
            yield start
    finally:
        for bar in bars:
            bar.close()


@contextlib.contextmanager
def step_log(console: Any = None, *, quiet: bool = False, prefix: str = "") -> Iterator[Callable[[str], None] | None]:
    """For work reported as steps rather than counts (``fraudsim harden``): one line per step on stderr with the
    time since the start, ``fraudsim: harden: measuring baseline (12 s)``; ``None`` with ``quiet``."""
    if quiet:
        yield None
        return
    from rich.console import Console
    from rich.text import Text

    console = console or Console(stderr=True)
    t0 = time.monotonic()

    def say(message: str) -> None:
        console.print(Text(f"fraudsim: {prefix}{message} ({_seconds(time.monotonic() - t0)})", style="dim"),
                      highlight=False, soft_wrap=True)

    with compile_note(lambda m: console.print(Text(m, style="yellow"), highlight=False, soft_wrap=True)):
        yield say


@contextlib.contextmanager
def progress_for(console: Any = None, *, quiet: bool = False) -> Iterator[Progress]:
    """What the CLI shows on stderr (``console``, a Rich console): nothing with ``-q``, Rich bars on a terminal,
    plain lines otherwise."""
    if quiet:
        yield no_progress
        return
    file = getattr(console, "file", None) or sys.stderr
    if _is_terminal(file):
        with rich_progress(console) as prog:
            yield prog
    else:
        with line_progress(file) as prog:
            yield prog


@contextlib.contextmanager
def api_progress(progress: "bool | None | Progress" = None) -> Iterator[Progress]:
    """Progress for the Python API (``simulator.run(..., progress=...)``): ``None`` (the default) means bars in a
    notebook and nothing elsewhere; ``True`` means bars in a notebook, Rich bars on a terminal, lines otherwise;
    ``False`` nothing; a callable is used as it is."""
    if callable(progress):
        yield progress
        return
    if progress is None:
        progress = in_notebook()
    if not progress:
        yield no_progress
    elif in_notebook():
        with notebook_progress() as prog:
            yield prog
    else:
        with progress_for(None) as prog:
            yield prog
