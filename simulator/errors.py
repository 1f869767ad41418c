"""One exception family per kind of bad input, each carrying where (file, field) and why.

The CLI prints ``str(error)`` as a single line and exits with code 2; no traceback unless ``--debug``.
"""
from __future__ import annotations


class FraudsimError(Exception):
    """Bad input: ``file`` and ``field`` say where, ``reason`` says what is wrong and, ideally, how to fix it."""

    kind = "error"

    def __init__(self, reason: str, *, file: str | None = None, field: str | None = None):
        self.reason = reason
        self.file = None if file is None else str(file)
        self.field = field
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = ": ".join(p for p in (self.file, self.field) if p)
        return f"{where}: {self.reason}" if where else self.reason


class ScenarioError(FraudsimError):
    """The scenario file (or the Python object standing for it) is invalid."""

    kind = "scenario error"


class ModelError(FraudsimError):
    """The model file cannot be loaded, or does not fit the data or the features."""

    kind = "model error"


class DataError(FraudsimError):
    """The data (Parquet/CSV) is missing, malformed or breaks the feature constraints."""

    kind = "data error"


class StoreError(FraudsimError):
    """The DuckDB file is not a fraudsim run store, or cannot be written."""

    kind = "store error"


class BudgetExceeded(RuntimeError):
    """A strategy asked the oracle for more queries than it had left: a bug, never bad input."""


class Terminated(BaseException):
    """Raised in the main thread when the process gets SIGTERM, so a run unwinds like on Ctrl-C (partial file
    removed, previous finished file kept) and the CLI exits 143. Not an ``Exception``: nothing swallows it."""


def install_sigterm():
    """Turn SIGTERM into :class:`Terminated` in the main thread; returns a function that restores the old handler
    (a no-op outside the main thread, where Python cannot set signal handlers)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def _raise(signum, frame):
        raise Terminated()

    try:
        old = signal.signal(signal.SIGTERM, _raise)
    except (ValueError, OSError):
        return lambda: None
    return lambda: signal.signal(signal.SIGTERM, old)
