"""The one writer of a run's result tables, and the one run lifecycle.

Runs and campaigns both write through a :class:`Recorder`: it opens the store (``<output>.partial`` under the
output's lock), writes the ``runs`` row as ``running``, appends every table from named columns (a dict of
equal-length arrays or an Arrow table; a column the table does not have is an error, never a silent shift), and
ends the run once: :meth:`Recorder.finish` marks it ``finished`` and moves the file into place, :meth:`Recorder.fail`
marks it ``failed`` and drops the partial file (an older finished file stays untouched). :func:`recording` wraps
that lifecycle around a block; :func:`derive` then adds what is derived from the finished file (the views).

The table definitions themselves are the store's DDL (:mod:`simulator.store`), the DuckDB contract of the README.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import threading
from collections import deque
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa

from . import __version__
from .errors import raise_if_signalled
from .store import CHEAP_COST, QueryLog, Store, _ident


#: DuckDB's buffer pool while a run writes (it spills to a temporary folder beyond it if a query needs more).
DUCKDB_MEMORY_LIMIT = "64MB"


def now() -> datetime:
    """Wall-clock time as the store keeps it (UTC, naive)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class BackgroundWriter:
    """A store's writes on one background thread, in the order they were made: DuckDB's inserts (which release the
    GIL) overlap the caller's next steps. Nothing else touches the connection until :meth:`drain`; at most
    ``max_pending`` writes, holding at most ``max_pending_bytes`` of Arrow data, wait, so memory stays bounded (a
    day of a million customers' transactions is hundreds of megabytes)."""

    def __init__(self, store: Store, max_pending: int = 16, max_pending_bytes: int = 256 << 20):
        from concurrent.futures import ThreadPoolExecutor

        self.store, self.feature_names, self.max_pending = store, store.feature_names, max_pending
        self.max_pending_bytes = max_pending_bytes
        self.columns, self.feature_table = store.columns, store.feature_table
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="run-store")
        self._pending: deque = deque()
        self._lock = threading.Lock()  # writes may come from another thread too (a query log's own writer)

    def append(self, table: str, data) -> None:
        self._submit(self.store.append, table, data)

    def execute(self, sql: str, params=None) -> None:
        self._submit(self.store.execute, sql, params)

    def _submit(self, fn, *args) -> None:
        size = sum(int(getattr(a, "nbytes", 0)) for a in args)  # an Arrow table's buffers
        with self._lock:
            self._pending.append((self._pool.submit(fn, *args), size))
            while self._pending and (self._pending[0][0].done() or len(self._pending) > self.max_pending
                                     or sum(s for _, s in self._pending) > self.max_pending_bytes):
                self._pending.popleft()[0].result()  # re-raises a failed write here, in the caller's thread

    def drain(self) -> None:
        with self._lock:
            while self._pending:
                self._pending.popleft()[0].result()

    def close(self) -> None:
        try:
            self.drain()
        finally:
            self._pool.shutdown(wait=True)


class Recorder:
    """Writes one run's tables; owns its lifecycle (running -> finished | failed) and its file (see the module).

    ``background`` sends the writes to a :class:`BackgroundWriter` (campaigns: the store's inserts overlap the next
    round); SQL that reads the file (:meth:`targets_from_queries`) drains it first."""

    def __init__(self, path: str | Path, feature_names: Sequence[str], run_id: str, *, background: bool = False):
        self.store = Store(path, feature_names)
        self.run_id = run_id
        self.columns = self.store.columns  # stored column of each feature
        self._table_columns: dict[str, set[str]] = {}
        self.finished = False
        try:  # Ctrl-C here must not leave the lock or the partial file behind
            # DuckDB keeps what a run wrote in its buffer pool up to its limit (80% of RAM by default): a campaign
            # at a million customers writes gigabytes; past this limit written blocks are evicted (they are on disk)
            self.store.con.execute(f"SET memory_limit = '{DUCKDB_MEMORY_LIMIT}'")
            for table, column in self.store.con.execute(
                    "SELECT table_name, column_name FROM information_schema.columns WHERE table_catalog = "
                    "current_database()").fetchall():
                self._table_columns.setdefault(table, set()).add(column)
            self._sink: Store | BackgroundWriter = BackgroundWriter(self.store) if background else self.store
        except BaseException:
            self.store.abandon()
            raise

    # -- lifecycle ---------------------------------------------------------------------------------------------------
    def start(self, *, scenario, model, threshold: float, feedback: str, budget: int, started_at: datetime) -> None:
        """The ``runs`` row, status ``running`` (a crash before :meth:`finish` leaves no finished file)."""
        self.insert("runs", {
            "run_id": self.run_id, "scenario": scenario.name, "seed": scenario.seed, "started_at": started_at,
            "finished_at": None, "status": "running", "model_path": str(model.path) if model.path else None,
            "model_sha256": model.sha256, "model_kind": model.kind, "threshold": threshold, "feedback": feedback,
            "budget": budget, "scenario_yaml": scenario.to_yaml(), "fraudsim_version": __version__, "error": None})

    def finish(self) -> Path:
        """Wait for every write, mark the run finished and move the file into place; returns its path."""
        self.flush()
        raise_if_signalled()  # a Ctrl-C whose exception was lost never lets an interrupted run replace the old file
        self.store.execute("UPDATE runs SET status = 'finished', finished_at = ? WHERE run_id = ?", [now(), self.run_id])
        path = self.store.finish()
        self.finished = True
        return path

    def fail(self, exc: BaseException) -> None:
        """Mark the run failed and drop its partial file; the caller raises ``exc``."""
        if isinstance(self._sink, BackgroundWriter):
            try:
                self._sink.close()
            except BaseException:
                pass  # the first error is the one to report
        self.store.fail(self.run_id, exc)

    def flush(self) -> None:
        """Every write made so far is in the file (a background writer drained and closed)."""
        if isinstance(self._sink, BackgroundWriter):
            self._sink.drain()

    # -- writes ------------------------------------------------------------------------------------------------------
    def query_log(self) -> QueryLog:
        """The run's ``queries`` writer (the oracle adds to it)."""
        # a Store or the background writer (a QuerySink: the batches reach it in order, see QueryLog's docstring)
        return QueryLog(self._sink, self.run_id)

    def feature_table(self, X: np.ndarray) -> dict[str, np.ndarray]:
        return self.store.feature_table(X)

    def append(self, table: str, columns: Mapping[str, Any] | pa.Table) -> None:
        """Append a batch from named columns (a dict of equal-length arrays or lists, or an Arrow table)."""
        names = columns.column_names if isinstance(columns, pa.Table) else list(columns)
        self._check(table, names)
        if not isinstance(columns, pa.Table):
            if not columns or len(next(iter(columns.values()))) == 0:
                return
            columns = pa.table({c: v if isinstance(v, (pa.Array, pa.ChunkedArray, np.ndarray)) else pa.array(list(v))
                                for c, v in columns.items()})
        self._sink.append(table, columns)

    def insert(self, table: str, row: Mapping[str, Any]) -> None:
        """One row by name (``INSERT INTO t (a, b) VALUES (?, ?)``): DuckDB converts the Python values."""
        self._check(table, list(row))
        cols = ", ".join(_ident(c) for c in row)
        self._sink.execute(f"INSERT INTO {table} ({cols}) VALUES ({', '.join('?' * len(row))})", list(row.values()))

    def execute(self, sql: str, params: Sequence | None = None) -> None:
        self._sink.execute(sql, params)

    def _check(self, table: str, names: Sequence[str]) -> None:
        known = self._table_columns.get(table)
        if known is None:
            raise KeyError(f"the run file has no table {table!r}")
        unknown = [c for c in names if c not in known]
        if unknown:
            raise KeyError(f"table {table!r} has no column {unknown[0]!r}")

    def model_version(self, *, version: int, model, threshold: float, rule: str, auc: float | None, card: dict,
                      created_at: datetime, sha256: str | None = None, sort_keys: bool = False) -> None:
        """A ``model_versions`` row; ``sha256`` defaults to the model file's (a model trained here: its bytes')."""
        sha = sha256 if sha256 is not None else model.sha256
        self.insert("model_versions", {
            "run_id": self.run_id, "version": version, "kind": model.kind,
            "path": str(model.path) if model.path else None, "sha256": sha, "threshold": threshold,
            "threshold_rule": rule, "test_auc": auc, "card": json.dumps(card, default=str, sort_keys=sort_keys),
            "created_at": created_at})

    def trained_model_sha(self, model) -> str:
        return model.sha256 if model.sha256 is not None else hashlib.sha256(model.to_bytes()).hexdigest()

    def defence_events(self, rounds: Sequence[int | None], kinds: Sequence[str], details: Sequence[str],
                       target_ids: Sequence[int | None] | None = None) -> None:
        n = len(kinds)
        if n == 0:
            return
        self.append("defence_events", pa.table({
            "run_id": pa.array([self.run_id] * n, pa.string()), "round": pa.array(list(rounds), pa.int32()),
            "kind": pa.array(list(kinds), pa.string()),
            "target_id": pa.array(list(target_ids) if target_ids is not None else [None] * n, pa.int64()),
            "detail": pa.array(list(details), pa.string()), "created_at": pa.array([None] * n, pa.timestamp("us"))}))

    @contextlib.contextmanager
    def originals(self, target_ids: np.ndarray, scores: np.ndarray, X: np.ndarray) -> Iterator[None]:
        """The attacked transactions as ``_originals`` (target id, original score, features) for
        :meth:`targets_from_queries`."""
        self.flush()
        tbl = {"target_id": target_ids, "original_score": scores}
        tbl.update(self.store.feature_table(X))
        self.store.con.register("_originals", pa.table(tbl))
        try:
            yield
        finally:
            self.store.con.unregister("_originals")

    def targets_from_queries(self, strategy: str | None = None, *, frozen_from_probe: np.ndarray | None = None) -> None:
        """``targets`` rows (one per strategy and target) from the query log and ``_originals`` (:meth:`originals`):
        queries used, first evasion and its cost, cheapest evasion, cheap evasion, the original's features.

        ``strategy`` limits it to one strategy's queries. With ``frozen_from_probe`` (per feature, True where the
        feature is frozen) a frozen feature's value is the one of the transaction the probe was derived from (a
        campaign agent's own card: the cheapest evading probe's value, else its first probe's), never the template's.
        """
        self.flush()
        best = "(q.cost, q.query_index, q.round)"
        feats = "".join(
            f", coalesce(arg_min(q.{_ident(c)}, {best}) FILTER (WHERE q.evaded), arg_min(q.{_ident(c)}, q.query_index))"
            if frozen_from_probe is not None and frozen_from_probe[j] else f", any_value(o.{_ident(c)})"
            for j, c in enumerate(self.columns))
        where, order = ("AND q.strategy = ?", "q.target_id") if strategy is not None else ("", "q.strategy, q.target_id")
        params = [self.run_id] + ([strategy] if strategy is not None else [])
        self.store.execute(f"""
INSERT INTO targets
SELECT q.run_id, q.strategy, q.target_id, any_value(o.original_score), count(*)::INTEGER, bool_or(q.evaded),
  min(q.query_index) FILTER (WHERE q.evaded),
  arg_min(q.cost, q.query_index) FILTER (WHERE q.evaded),
  min(q.cost) FILTER (WHERE q.evaded),
  coalesce(bool_or(q.evaded AND q.cost <= {CHEAP_COST}), false),
  min(q.query_index) FILTER (WHERE q.evaded AND q.cost <= {CHEAP_COST}){feats}
FROM queries q JOIN _originals o ON o.target_id = q.target_id
WHERE q.run_id = ? {where}
GROUP BY q.run_id, q.strategy, q.target_id
ORDER BY {order}""", params)

    def close_writer(self) -> None:
        """Stop the background writer (every write done); later writes go straight to the store."""
        if isinstance(self._sink, BackgroundWriter):
            self._sink.close()
            self._sink = self.store


@contextlib.contextmanager
def recording(path: str | Path, feature_names: Sequence[str], run_id: str, *, background: bool = False
              ) -> Iterator[Recorder]:
    """The one run lifecycle: a :class:`Recorder` for the block; a block that raises marks the run failed and drops
    its partial file (then re-raises). The block ends the run with :meth:`Recorder.finish`."""
    rec = Recorder(path, feature_names, run_id, background=background)
    try:
        yield rec
        if not rec.finished:
            raise RuntimeError("the run's block ended without Recorder.finish()")
    except BaseException as exc:
        if not rec.finished:
            rec.fail(exc)
        raise


def derive(path: Path) -> list[str]:
    """The steps derived from a finished run file (today: writing its views in). A failure is one warning line on
    stderr naming the file and the step, and the file stays as it is (readers fall back to temporary views)."""
    from .report.views import install_views

    warnings = []
    for step, fn in (("views", install_views),):
        try:
            fn(path)
        except Exception as exc:  # any failure here is reported and survived: the run itself is safe on disk
            msg = f"warning: {path}: {step} not written ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})"
            print(msg, file=sys.stderr, flush=True)
            warnings.append(msg)
    return warnings
