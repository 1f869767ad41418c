"""Keep native libraries' own output (LightGBM's ``[Warning]``/``[Fatal]`` lines, XGBoost's warnings) off the
user's terminal: while a native call runs, file descriptors 1 and 2 point at a temporary file.

Python-level writes go through ``sys.stdout``/``sys.stderr`` and are flushed first, so nothing of ours is lost.
What the library printed is kept in ``captured.text`` for callers that want to show it (``--debug``).
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from collections.abc import Iterator

_LOCK = threading.Lock()


class Captured:
    text: str = ""


@contextlib.contextmanager
def native_quiet() -> Iterator[Captured]:
    """Silence fds 1 and 2 for the duration (a no-op when they cannot be duplicated, e.g. some notebooks)."""
    captured = Captured()
    with _LOCK:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (AttributeError, ValueError, OSError):
                pass
        try:
            saved = [os.dup(1), os.dup(2)]
        except OSError:
            yield captured
            return
        sink = tempfile.TemporaryFile()
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            try:
                yield captured
            finally:
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                sink.seek(0)
                captured.text = sink.read(1 << 16).decode(errors="replace")
        finally:
            for fd in saved:
                os.close(fd)
            sink.close()
