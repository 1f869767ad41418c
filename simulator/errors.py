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


_RECEIVED: list[int] = []  # the signals (SIGINT, SIGTERM) the CLI's handlers received, oldest first


def install_sigterm():
    """Turn SIGTERM into :class:`Terminated` and SIGINT into ``KeyboardInterrupt`` in the main thread, and remember
    that they came (:func:`signal_received`); returns a function that restores the old handlers (a no-op outside
    the main thread, where Python cannot set signal handlers).

    Remembering matters because the exception a handler raises can be lost on its way out: raised inside a
    finalizer it is printed and ignored, raised while DuckDB calls back into Python (an Arrow scan) it comes back as
    a DuckDB error naming it. :func:`raise_if_signalled` at the engine's steps turns a lost one into the right
    exception again, and the CLI maps any error after a signal to the signal's exit code."""
    import signal
    import sys
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    _RECEIVED.clear()

    def _term(signum, frame):
        _RECEIVED.append(signum)
        raise Terminated()

    def _int(signum, frame):
        _RECEIVED.append(signum)
        raise KeyboardInterrupt()

    try:
        old_term = signal.signal(signal.SIGTERM, _term)
    except (ValueError, OSError):
        return lambda: None
    old_int = None
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # an ignored SIGINT (nohup, `cmd &`) stays so
        try:
            old_int = signal.signal(signal.SIGINT, _int)
        except (ValueError, OSError):
            pass

    old_hook = sys.unraisablehook

    def _unraisable(u) -> None:
        # a signal's exception raised where Python cannot propagate it (a finalizer, a ctypes callback such as
        # llvmlite's object cache while Numba compiles) is printed as "Exception ignored ..." and dropped; it is
        # recorded above and raised again at the next cancellation point, so it is not printed
        if u.exc_type is not None and issubclass(u.exc_type, (KeyboardInterrupt, Terminated)) and _RECEIVED:
            return
        old_hook(u)

    sys.unraisablehook = _unraisable

    def restore() -> None:
        signal.signal(signal.SIGTERM, old_term)
        if old_int is not None:
            signal.signal(signal.SIGINT, old_int)
        sys.unraisablehook = old_hook

    return restore


def signal_received() -> int | None:
    """The first SIGINT/SIGTERM the CLI's handlers received since they were installed, or None."""
    return _RECEIVED[0] if _RECEIVED else None


def raise_if_signalled() -> None:
    """A cancellation point: raise :class:`Terminated` or ``KeyboardInterrupt`` if a signal came and its exception
    was lost (see :func:`install_sigterm`); nothing otherwise. Cheap enough for every step of a loop."""
    if _RECEIVED:
        import signal

        raise Terminated() if _RECEIVED[0] == signal.SIGTERM else KeyboardInterrupt()
