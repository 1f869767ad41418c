"""The DuckDB run store: schema, batched appends from Arrow, run lifecycle.

A run writes to ``<output>.partial`` and is moved to ``<output>`` only when it finishes, so a failed or
interrupted run never leaves a half-written file where a finished one is expected.

Tables (a contract; see the README): ``runs``, ``queries``, ``targets``, ``transactions``, ``model_versions``,
``defence_events``, ``feature_columns`` (which column holds which feature: :func:`feature_columns` names them,
:func:`read_feature_columns` reads them back) and ``fraudsim_meta`` (which marks the file as a fraudsim store and
carries its version). Missing feature values are stored as NaN.
"""
from __future__ import annotations

import json
import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ContextManager, Protocol, Sequence

import duckdb

from .errors import StoreError
from .threads import model_threads, omp_threads, usable_cores  # noqa: F401  (usable_cores: re-exported)

if TYPE_CHECKING:  # imported where rows are written, so reading a run (fraudsim gate) does not load them
    from concurrent.futures import Future, ThreadPoolExecutor

    import numpy as np
    import pyarrow as pa

SCHEMA_VERSION = 3  # 2: campaign tables and columns; 3: feature_columns, queries.opening (README, migration notes)
QUERY_FIXED_COLUMNS = ("run_id", "round", "agent_id", "strategy", "target_id", "query_index", "score", "decision",
                       "evaded", "cost", "opening")  # "opening" (schema 3) comes after the feature columns
TARGET_FIXED_COLUMNS = ("run_id", "strategy", "target_id", "original_score", "queries_used", "evaded",
                        "queries_to_first_evasion", "first_evasion_cost", "min_cost", "cheap_evaded",
                        "queries_to_first_cheap_evasion")
TRANSACTION_FIXED_COLUMNS = ("run_id", "transaction_id", "is_fraud", "score", "decision", "model_version", "split",
                             "timestamp", "day", "customer_id", "merchant_id", "device_id", "fraud_type", "round",
                             "is_probe", "ring_id", "agent_id", "approved", "reason", "label_day")
#: Columns a feature column may not be named (case-insensitively: DuckDB identifiers are): the fixed columns of the
#: tables that carry features, and the columns the views put beside them (``best_evasions.cheap``).
RESERVED_COLUMNS = frozenset(c.lower() for c in QUERY_FIXED_COLUMNS + TARGET_FIXED_COLUMNS + TRANSACTION_FIXED_COLUMNS
                             + ("cheap",))
CHEAP_COST = 1.0  # an evasion is "cheap" when its cost is at most this (one flag plus small moves)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def feature_columns(feature_names: Sequence[str]) -> tuple[str, ...]:
    """The stored column name of each feature (same order) in ``queries``, ``targets`` and ``transactions``.

    A feature's column is named as the feature unless that name collides, case-insensitively (DuckDB identifiers
    are case-insensitive), with a fixed column of those tables or with an earlier feature's column; then it is
    ``feature_<name>`` (``_2``, ``_3``, ... appended until unique). The mapping is stored in each run file's
    ``feature_columns`` table; readers use :func:`read_feature_columns`, never this function.

    Examples
    --------
    >>> feature_columns(["amount", "score", "Amount", "select", "feature_score"])
    ('amount', 'feature_score_2', 'feature_Amount', 'select', 'feature_score')
    """
    names = [str(n) for n in feature_names]
    taken = set(RESERVED_COLUMNS)
    out: list[str | None] = [None] * len(names)
    for j, n in enumerate(names):  # first pass: every name that can stay itself does
        if n and n.lower() not in taken:
            out[j] = n
            taken.add(n.lower())
    for j, n in enumerate(names):
        if out[j] is None:
            base = f"feature_{n}"
            col, k = base, 1
            while col.lower() in taken:
                k += 1
                col = f"{base}_{k}"
            out[j] = col
            taken.add(col.lower())
    return tuple(c for c in out if c is not None)


def read_feature_columns(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """(feature, stored column) pairs in model order, from a run file's ``feature_columns`` table; files older than
    schema version 3 (no such table) stored every feature under its own name after the fixed ``targets`` columns."""
    def cols(table: str) -> list[str]:
        return [r[0] for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? AND table_catalog = "
            "current_database() ORDER BY ordinal_position", [table]).fetchall()]

    if cols("feature_columns"):
        return [(f, c) for f, c in con.execute(
            "SELECT feature, column_name FROM feature_columns ORDER BY position").fetchall()]
    query_cols = set(cols("queries"))
    return [(c, c) for c in cols("targets") if c not in TARGET_FIXED_COLUMNS and c in query_cols]


def _ddl(feature_names: Sequence[str]) -> list[str]:
    feats = "".join(f", {_ident(c)} DOUBLE" for c in feature_columns(feature_names))
    return [
        "CREATE TABLE IF NOT EXISTS fraudsim_meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
        "CREATE TABLE IF NOT EXISTS feature_columns (position INTEGER, feature VARCHAR, column_name VARCHAR)",
        """CREATE TABLE IF NOT EXISTS runs (run_id VARCHAR PRIMARY KEY, scenario VARCHAR, seed BIGINT,
            started_at TIMESTAMP, finished_at TIMESTAMP, status VARCHAR, model_path VARCHAR, model_sha256 VARCHAR,
            model_kind VARCHAR, threshold DOUBLE, feedback VARCHAR, budget BIGINT, scenario_yaml VARCHAR,
            fraudsim_version VARCHAR, error VARCHAR)""",
        f"""CREATE TABLE IF NOT EXISTS queries (run_id VARCHAR, round INTEGER, agent_id INTEGER, strategy VARCHAR,
            target_id BIGINT, query_index INTEGER, score DOUBLE, decision VARCHAR, evaded BOOLEAN, cost DOUBLE{feats},
            opening BOOLEAN)""",
        f"""CREATE TABLE IF NOT EXISTS targets (run_id VARCHAR, strategy VARCHAR, target_id BIGINT,
            original_score DOUBLE, queries_used INTEGER, evaded BOOLEAN, queries_to_first_evasion INTEGER,
            first_evasion_cost DOUBLE, min_cost DOUBLE, cheap_evaded BOOLEAN, queries_to_first_cheap_evasion INTEGER{feats})""",
        f"""CREATE TABLE IF NOT EXISTS transactions (run_id VARCHAR, transaction_id BIGINT, is_fraud INTEGER,
            score DOUBLE, decision VARCHAR, model_version INTEGER, split VARCHAR, "timestamp" BIGINT, day INTEGER,
            customer_id INTEGER, merchant_id INTEGER, device_id INTEGER, fraud_type INTEGER{feats},
            round INTEGER, is_probe BOOLEAN, ring_id INTEGER, agent_id INTEGER, approved BOOLEAN, reason VARCHAR,
            label_day INTEGER)""",
        """CREATE TABLE IF NOT EXISTS model_versions (run_id VARCHAR, version INTEGER, kind VARCHAR, path VARCHAR,
            sha256 VARCHAR, threshold DOUBLE, threshold_rule VARCHAR, test_auc DOUBLE, card VARCHAR,
            created_at TIMESTAMP)""",
        """CREATE TABLE IF NOT EXISTS strategy_metrics (run_id VARCHAR, strategy VARCHAR, target_id BIGINT,
            metric VARCHAR, value DOUBLE)""",
        """CREATE TABLE IF NOT EXISTS defence_events (run_id VARCHAR, round INTEGER, kind VARCHAR,
            target_id BIGINT, detail VARCHAR, created_at TIMESTAMP)""",
        EXACT_BOUNDS_DDL,
        *CAMPAIGN_DDL,
    ]


#: The exact strategy's result per target (simulator/strategies/exact.py): status optimal | time_limit | infeasible;
#: optimum_or_bound is the minimum cost (optimal) or the solver's proven lower bound (time_limit); best_found_cost the
#: kernel cost of the best solution found (the one asked); evades: whether the real model let it through.
EXACT_BOUNDS_DDL = """CREATE TABLE IF NOT EXISTS exact_bounds (run_id VARCHAR, strategy VARCHAR, target_id BIGINT,
    status VARCHAR, optimum_or_bound DOUBLE, best_found_cost DOUBLE, gap DOUBLE, solve_s DOUBLE, evades BOOLEAN)"""

#: Tables only a campaign fills (see simulator/campaign and the README); columns ending in _s or _us are wall-clock.
CAMPAIGN_DDL = (
    """CREATE TABLE IF NOT EXISTS rounds (run_id VARCHAR, round INTEGER, day INTEGER, model_version INTEGER,
        transactions BIGINT, legit BIGINT, fraud BIGINT, probes INTEGER, probes_approved INTEGER,
        attack_success_rate DOUBLE, attack_loss DOUBLE, fraud_loss DOUBLE, probes_detected INTEGER,
        probes_detected_share DOUBLE, poison INTEGER, fpr DOUBLE, friction DOUBLE, review_rate DOUBLE,
        legit_detected_share DOUBLE, clean_auc DOUBLE, psi_score DOUBLE, psi_max DOUBLE, psi_max_feature VARCHAR,
        drift_alerts INTEGER, cards_burned INTEGER, agents_active INTEGER, retrained BOOLEAN,
        scoring_us_per_txn DOUBLE, defence_us_per_txn DOUBLE, probes_blocked INTEGER, legit_affected_share DOUBLE)""",
    """CREATE TABLE IF NOT EXISTS strategy_stats (run_id VARCHAR, round INTEGER, ring_id INTEGER, ring VARCHAR,
        strategy VARCHAR, agents INTEGER, tries INTEGER, successes INTEGER, money DOUBLE, weight DOUBLE,
        next_weight DOUBLE)""",
    """CREATE TABLE IF NOT EXISTS ring_rounds (run_id VARCHAR, round INTEGER, ring_id INTEGER, ring VARCHAR,
        agents_active INTEGER, cards_alive INTEGER, probes INTEGER, approved INTEGER, money_out DOUBLE,
        probe_cost DOUBLE, cards_burned INTEGER, poison INTEGER, playbook_size INTEGER, mean_gap_minutes DOUBLE,
        mean_amount_scale DOUBLE, mean_cards_per_day DOUBLE, mean_features_touched DOUBLE)""",
    """CREATE TABLE IF NOT EXISTS agents (run_id VARCHAR, agent_id INTEGER, ring_id INTEGER, ring VARCHAR,
        template_id BIGINT, probes_per_day INTEGER, knowledge VARCHAR, feedback VARCHAR, cards INTEGER)""",
    """CREATE TABLE IF NOT EXISTS training_runs (run_id VARCHAR, model_version INTEGER, trained_round INTEGER,
        trained_day INTEGER, deployed_round INTEGER, train_day_from INTEGER, train_day_to INTEGER,
        validation_day_from INTEGER, validation_day_to INTEGER, label_as_of_day INTEGER, train_rows BIGINT,
        train_positives BIGINT, validation_rows BIGINT, validation_positives BIGINT, review_threshold DOUBLE,
        decline_threshold DOUBLE, validation_auc DOUBLE, train_s DOUBLE)""",
    """CREATE TABLE IF NOT EXISTS training_labels (run_id VARCHAR, model_version INTEGER, transaction_id BIGINT,
        role VARCHAR, label INTEGER)""",
    """CREATE TABLE IF NOT EXISTS drift (run_id VARCHAR, round INTEGER, model_version INTEGER, feature VARCHAR,
        psi DOUBLE, alert BOOLEAN)""",
)


MAX_NAME_BYTES = 240  # file systems allow 255; "<name>.partial.wal" and "<name>.lock" must fit too
DUCKDB_MAGIC = b"DUCK"  # bytes 8..12 of every DuckDB file


# -- output files: checked before any work, one writer at a time ---------------------------------------------------

def check_output_path(path: str | Path, *, field: str = "output", inputs: Sequence[Path] = (),
                      source: str | None = None, create: bool = True, only_replace_runs: bool = True) -> Path:
    """Refuse an output path that cannot be a run file (a folder, a path under a file, a name too long for the file
    system) or that would overwrite an input of the run or a file that is not a fraudsim run; with ``create``, make
    its folder. Returns the path. Errors are ``StoreError`` naming ``source`` (or the path) and ``field``."""
    text = str(path)
    path = Path(path)
    where = source or text

    def bad(reason: str) -> StoreError:
        return StoreError(reason, file=where, field=field)

    if text.strip() in ("", ".", "..") or text.endswith(("/", os.sep)):
        raise bad(f"{text!r} is a folder, not a file; give a file name such as run.duckdb")
    too_long = [p.name for p in (path, *path.parents) if len(p.name.encode("utf-8", "surrogateescape")) > 255]
    if len(path.name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        raise bad(f"the file name is {len(path.name.encode('utf-8', 'surrogateescape'))} bytes long; the limit is "
                  f"{MAX_NAME_BYTES} (so that '.partial.wal' still fits the file system's 255)")
    if too_long:
        raise bad(f"a folder name in the path is longer than the file system's 255 bytes: {too_long[0][:40]}...")
    try:
        if path.is_dir():
            raise bad(f"{text!r} is a folder, not a file; give a file name such as run.duckdb")
        for parent in path.parents:
            if parent.exists() or parent.is_symlink():
                if not parent.is_dir():
                    raise bad(f"{str(parent)!r} is a file, so nothing can be written under it")
                break
        exists = path.exists()
    except OSError as exc:
        raise bad(f"cannot be used as an output ({exc.strerror or type(exc).__name__})") from None
    for inp in inputs:
        if inp is not None and _same_file(path, Path(inp)):
            raise bad(f"this would overwrite {str(inp)!r}, an input of the run; write the run elsewhere")
    if only_replace_runs and exists and not is_run_file(path):
        raise bad(f"{text!r} exists and is not a fraudsim run file; refusing to overwrite it (remove it or choose "
                  "another name)")
    if create:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise bad(f"cannot create the folder {str(path.parent)!r} ({exc.strerror})") from None
    return path


def check_export_path(path: str | Path, *, field: str = "--output", protected: Sequence[Path] = ()) -> Path:
    """For ``-o`` of report, query and compare: a plain file that is neither a run file nor one of ``protected``
    (the run files read, their models and data), nor any DuckDB, Parquet or LightGBM file."""
    path = check_output_path(path, field=field, inputs=protected, source=str(path), create=False,
                             only_replace_runs=False)
    if path.is_file() and _looks_like_input(path):
        raise StoreError("this is a run file or a model/data file; refusing to overwrite it with an export",
                         file=str(path), field=field)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the folder {str(path.parent)!r} ({exc.strerror})", file=str(path),
                         field=field) from None
    return path


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _head(path: Path, n: int = 16) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return b""


def is_run_file(path: Path) -> bool:
    """True for an empty file or a DuckDB file (what a run may replace); False for anything else."""
    try:
        if not path.is_file():
            return False
        if path.stat().st_size == 0:
            return True
    except OSError:
        return False
    return _head(path)[8:12] == DUCKDB_MAGIC


def _looks_like_input(path: Path) -> bool:
    """A run file, Parquet data, or a model: LightGBM text, XGBoost JSON or UBJ (``learner`` near the start), ONNX (a
    protobuf starting with field 1, ``ir_version``: no text export starts with byte 0x08)."""
    head = _head(path, 64)
    xgboost = head.lstrip()[:1] == b"{" and b"learner" in head
    return head[8:12] == DUCKDB_MAGIC or head.startswith((b"PAR1", b"tree\n", b"\x08")) or xgboost


class OutputLock:
    """An exclusive, advisory lock on ``<output>.lock`` (``flock``; the kernel drops it when the holder dies, even
    by kill -9), which holds the holder's pid. Taking it also removes a ``.partial`` left by a killed run."""

    def __init__(self, path: Path):
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self.partial = path.with_name(path.name + ".partial")
        self.fd: int | None = None
        self.count = 0
        self.stale_removed: str | None = None

    def acquire(self) -> None:
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock, the partial-file protocol still protects finished files
            return
        for _ in range(100):
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise StoreError(f"cannot create the lock file ({exc.strerror})", file=str(self.lock_path),
                                 field="output") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise StoreError(f"another fraudsim run (pid {holder}) is writing this output now; wait for it to "
                                 "finish or choose another output", file=str(self.path), field="output") from None
            try:  # the holder before us may have removed the lock file just before we locked it: start again
                same = os.path.samestat(os.fstat(fd), os.stat(self.lock_path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        else:
            raise StoreError("cannot take the lock on this output", file=str(self.path), field="output")
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        for stale in (self.partial, Path(str(self.partial) + ".wal")):
            if stale.exists():
                stale.unlink(missing_ok=True)
                self.stale_removed = self.stale_removed or str(stale)

    def release(self) -> None:
        """Drop what an unfinished run left (only the holder can have written it), then the lock."""
        if self.fd is None:
            return
        for leftover in (self.partial, Path(str(self.partial) + ".wal")):
            with contextlib.suppress(OSError):
                leftover.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            os.unlink(self.lock_path)
        os.close(self.fd)
        self.fd = None


_HELD: dict[str, OutputLock] = {}
_HELD_GUARD = threading.Lock()


@contextlib.contextmanager
def output_lock(path: str | Path) -> Iterator[OutputLock]:
    """Hold the output's lock for the duration; re-entrant within one process (the CLI takes it before preparing
    the run, the store again when it opens the file)."""
    path = Path(path)
    key = os.path.abspath(path)
    with _HELD_GUARD:
        lock = _HELD.get(key)
        if lock is None:
            lock = OutputLock(path)
            lock.acquire()
            _HELD[key] = lock
        lock.count += 1
    try:
        yield lock
    finally:
        with deferred_signals(), _HELD_GUARD:  # a second Ctrl-C must not stop the cleanup half-way
            lock.count -= 1
            if lock.count == 0:
                _HELD.pop(key, None)
                lock.release()


@contextlib.contextmanager
def deferred_signals() -> Iterator[list[int]]:
    """Hold Ctrl-C and SIGTERM while the finished file is moved into place: a signal that arrives meanwhile is
    recorded (the caller then leaves the old file alone) and delivered again on exit."""
    got: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield got
        return
    sigs = (signal.SIGINT, signal.SIGTERM)
    old = {}
    try:
        for s in sigs:
            old[s] = signal.signal(s, lambda signum, frame: got.append(signum))
        yield got
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if got:
            signal.raise_signal(got[0])


#: Rows per DuckDB row group in a run file (DuckDB's default is 122,880; a queries table is about 10% larger). An
#: append of this many rows is compressed and written to the file as it runs, so the query log's writer thread
#: (batches of this size) leaves only its last batch to the final flush and checkpoint. Every fraudsim writer of a
#: run file opens it with :func:`connect_run_file`: a connection with DuckDB's default would merge the row groups
#: (rewrite the tables) at its first checkpoint. The file reads as any other.
ROW_GROUP_ROWS = 16_384
RUN_CATALOG = "run_file"  # the run file's name in its writer's connection (the connection's default database)


def connect_run_file(path: str | Path) -> duckdb.DuckDBPyConnection:
    """A read-write connection whose default database is the DuckDB file ``path``, attached with
    ``ROW_GROUP_ROWS``-row row groups (a setting of ``ATTACH`` only); its temporary files go to ``<path>.tmp`` as
    they would by default. A cursor of it starts in the in-memory database: ``USE run_file`` first."""
    con = duckdb.connect()
    try:
        con.execute(f"SET temp_directory = {_literal(str(path) + '.tmp')}")
        con.execute(f"ATTACH {_literal(str(path))} AS {RUN_CATALOG} (ROW_GROUP_SIZE {ROW_GROUP_ROWS})")
        con.execute(f"USE {RUN_CATALOG}")
    except BaseException:
        con.close()
        raise
    return con


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class Store:
    """A fraudsim DuckDB file opened for writing one run (holding the output's lock until finished or failed)."""

    def __init__(self, path: str | Path, feature_names: Sequence[str]):
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.feature_names = tuple(feature_names)
        self.columns = feature_columns(self.feature_names)  # stored column of each feature
        check_output_path(self.path)
        self._lock_cm: ContextManager[OutputLock] | None = output_lock(self.path)
        self.lock = self._lock_cm.__enter__()
        self.logs: list[QueryLog] = []  # query logs writing in the background; finish/abandon wait for them
        for stale in (self.partial, Path(str(self.partial) + ".wal")):
            stale.unlink(missing_ok=True)
        try:
            self.con = connect_run_file(self.partial)
        except duckdb.Error as exc:
            self._unlock()
            raise StoreError(f"cannot create the run file ({str(exc).splitlines()[0][:160]})", file=str(self.partial),
                             field="output") from None
        except BaseException:  # Ctrl-C while attaching: the lock's release drops what was created
            self._unlock()
            raise
        try:
            for stmt in _ddl(self.feature_names):
                self.con.execute(stmt)
            self.con.execute("INSERT OR REPLACE INTO fraudsim_meta VALUES ('schema_version', ?), ('features', ?)",
                             [str(SCHEMA_VERSION), json.dumps(list(self.feature_names), ensure_ascii=False)])
            self.con.execute("DELETE FROM feature_columns")
            if self.feature_names:
                self.con.executemany("INSERT INTO feature_columns VALUES (?, ?, ?)",
                                     [[j, f, c] for j, (f, c) in enumerate(zip(self.feature_names, self.columns))])
        except BaseException:  # Ctrl-C while creating the file: nothing may stay behind
            self.abandon()
            raise

    def feature_table(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """Feature columns of a batch (rows of ``X`` in model order) keyed by their stored column names."""
        return {c: X[:, j] for j, c in enumerate(self.columns)}

    def append(self, table: str, data: pa.Table | dict, *, con: duckdb.DuckDBPyConnection | None = None) -> None:
        """Append a whole batch (Arrow table, or a dict of equal-length arrays) in one statement; ``con`` is a cursor
        of this store's connection when the append runs on another thread (see :class:`QueryLog`)."""
        import pyarrow as pa

        con = self.con if con is None else con
        tbl = data if isinstance(data, pa.Table) else pa.table(data)
        if tbl.num_rows == 0:
            return
        con.register("_batch", tbl)
        try:
            cols = ", ".join(_ident(c) for c in tbl.column_names)
            con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _batch").fetchall()
        finally:
            con.unregister("_batch")

    def execute(self, sql: str, params: Sequence | None = None) -> None:
        """Run a statement to completion (DuckDB refuses new work while a result is unread)."""
        self.con.execute(sql, params or []).fetchall()

    def finish(self) -> Path:
        """Close and move the finished file into place (replacing an older run file at that path).

        Call it as soon as the run's own tables are written and the run is marked finished: steps derived from them
        (views, summary, report) run on the finished file, so their failure never costs the run. A Ctrl-C or
        SIGTERM that arrives before the move leaves the older file in place and is raised afterwards."""
        for log in self.logs:
            log.close()
        self.con.execute("CHECKPOINT")
        self.con.close()
        try:
            with deferred_signals() as got:
                if not got:
                    os.replace(self.partial, self.path)
        finally:
            self._unlock()
            for f in (self.partial, Path(str(self.partial) + ".wal")):
                f.unlink(missing_ok=True)
        return self.path

    def fail(self, run_id: str, exc: BaseException) -> None:
        """Drop the partial file of a failed or interrupted run (see :meth:`abandon`). The error is the caller's
        to raise: nothing here may replace it (a closed connection, a second Ctrl-C while cleaning up)."""
        with deferred_signals():  # a Ctrl-C pending from an interrupted DuckDB call must not cut the cleanup short
            try:
                if isinstance(exc, Exception):  # a crash: record it, in case the file is kept for debugging
                    self.execute("UPDATE runs SET status = 'failed', error = ?, finished_at = now() WHERE run_id = ?",
                                 [f"{type(exc).__name__}: {exc}"[:2000], run_id])
            except Exception:
                pass
            finally:
                self.abandon()

    def abandon(self) -> None:
        """Drop the partial file of a failed run; an older finished file at ``path`` stays untouched."""
        for log in self.logs:
            log.close(discard=True)
        try:
            self.con.close()
        except Exception:
            pass
        try:
            for f in (self.partial, Path(str(self.partial) + ".wal")):
                f.unlink(missing_ok=True)
        finally:
            self._unlock()

    def _unlock(self) -> None:
        cm, self._lock_cm = getattr(self, "_lock_cm", None), None
        if cm is not None:
            cm.__exit__(None, None, None)


def open_readonly(path: str | Path) -> duckdb.DuckDBPyConnection:
    """Open a finished run file for analysis; refuses files that are not fraudsim stores."""
    path = Path(path)
    if path.name.endswith((".partial", ".partial.wal", ".wal", ".lock")):
        raise StoreError("this is the unfinished file of a run still being written, or left by a run that was "
                         "killed; it is not a result (read the finished file without the suffix)", file=str(path))
    if not path.is_file():
        raise StoreError("file not found" if not path.is_dir() else "a folder, not a run file", file=str(path))
    if path.stat().st_size and _head(path)[8:12] != DUCKDB_MAGIC:
        raise StoreError("not a DuckDB file", file=str(path))
    try:
        con = duckdb.connect(str(path), read_only=True)
        ok = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'fraudsim_meta'").fetchall()[0][0]
    except duckdb.Error as exc:
        raise StoreError(f"not a DuckDB file ({str(exc).splitlines()[0][:120]})", file=str(path)) from None
    if not ok:
        con.close()
        raise StoreError("not a fraudsim run file (no fraudsim_meta table)", file=str(path))
    try:  # a file of a newer fraudsim may hold tables this one would misread: refused, not guessed at
        rows = con.execute("SELECT value FROM fraudsim_meta WHERE key = 'schema_version'").fetchall()
    except duckdb.Error as exc:
        con.close()
        raise StoreError(f"unreadable fraudsim_meta ({str(exc).splitlines()[0][:120]})", file=str(path)) from None
    version = rows[0][0] if rows else None
    if version is not None and not (str(version).isdigit() and int(version) <= SCHEMA_VERSION):
        con.close()
        raise StoreError(f"schema version {str(version)[:20]!r} is not one this fraudsim reads (1 to {SCHEMA_VERSION}); "
                         "a file written by a newer fraudsim needs that version", file=str(path),
                         field="fraudsim_meta.schema_version")
    return con


BACKGROUND_MIN_CPUS = 4  # with this many usable cores the query log always writes on its own thread (see QueryLog)


def spare_core() -> bool:
    """Whether a core stays free for the query log's writer thread while the model scores: at least
    ``BACKGROUND_MIN_CPUS`` usable cores, or the model libraries' threads held below the usable cores by
    ``OMP_NUM_THREADS`` (:func:`simulator.threads.model_threads`: XGBoost and LightGBM size their OpenMP pools from it,
    the ONNX adapter ONNX Runtime's intra-op pool; without it they take every core)."""
    cores = usable_cores()
    return cores >= BACKGROUND_MIN_CPUS or (omp_threads() is not None and model_threads() < cores)


SPILL_ROWS = 122_880  # rows per spilled batch (a multiple of ROW_GROUP_ROWS)
BACKGROUND_ROWS = ROW_GROUP_ROWS  # rows per batch of the writer thread: whole row groups, each compressed as it is
# appended; the last, partial one is what the final flush still writes


class QuerySink(Protocol):
    """Where a :class:`QueryLog` writes its batches: a :class:`Store`, or anything with the store's ``append`` and
    its ``feature_names``/``columns`` (the run's background writer, ``simulator.recorder.BackgroundWriter``)."""

    @property
    def feature_names(self) -> Sequence[str]: ...

    @property
    def columns(self) -> Sequence[str]: ...

    def append(self, table: str, data: pa.Table | dict) -> None: ...


class QueryLog:
    """Buffers oracle queries as column chunks and writes them to ``queries`` in large batches.

    Every ``flush_rows`` rows the buffered chunks become one Arrow table, built with a single copy into contiguous
    feature columns. What happens to it depends on the machine:

    - ``background`` (the default where :func:`spare_core` finds a core the model's threads leave free: at least
      ``BACKGROUND_MIN_CPUS`` cores, or ``OMP_NUM_THREADS`` below the usable cores): a writer thread builds the table
      and appends it to ``queries`` on its own cursor of the store's connection, in order, while the oracle keeps
      scoring (DuckDB and NumPy release the GIL); at most ``max_pending`` batches wait, so memory stays bounded.
      Each batch is exactly one of the run file's row groups (``BACKGROUND_ROWS`` = ``ROW_GROUP_ROWS``), which
      DuckDB compresses and writes to the file during the append, while the model works: :meth:`flush` (and the
      store's final ``CHECKPOINT``) find only the last, partial batch left.
    - otherwise (2 cores with the libraries' default threads: the model's OpenMP threads already use both, and a
      third busy thread stalls their barriers) the table is *spilled*: written as an Arrow IPC record batch to an anonymous temporary file beside
      the run file (a plain sequential write, no DuckDB work in the oracle's loop), and :meth:`flush` loads the
      spill, memory-mapped, and the tail in one ``INSERT`` (a DuckDB append is far cheaper as one statement than
      as many). The file has no name on Linux (``O_TMPFILE``; elsewhere it is unlinked at once or removed on close),
      so a kill -9 or Ctrl-C leaves nothing behind, and memory stays bounded whatever the run's size.

    :meth:`flush` returns once every row added so far is in ``queries``, in the order added; a failed write is
    raised there (or at the next :meth:`add`). The store closes its logs before it finishes or drops its file.
    A ``store`` that is not a :class:`Store` (the campaign's own background writer) gets the batches in the
    caller's thread.
    """

    def __init__(self, store: QuerySink | None, run_id: str, flush_rows: int | None = None, *,
                 background: bool | None = None, max_pending: int = 2):
        if background is None:  # only where a core is free: on 2 cores the model's own threads (OpenMP) use both
            background = spare_core()
        if flush_rows is None:  # the writer thread: small batches; one DuckDB append: whole row groups
            flush_rows = BACKGROUND_ROWS if background else SPILL_ROWS
        self.store, self.run_id, self.flush_rows = store, run_id, flush_rows
        # anything else with ``append`` and ``feature_names`` (the campaign's own background writer) gets the
        # batches in this thread
        self._own: Store | None = store if isinstance(store, Store) else None  # the store itself: its cursor, its folder
        self.background, self.max_pending = background and self._own is not None, max_pending
        self._spill_ok = self._own is not None and not self.background
        self._chunks: list[dict] = []
        self._rows = 0
        self.total_rows = 0
        # the writer thread and its cursor, made on the first background write
        self._pool: ThreadPoolExecutor | None = None
        self._cursor: duckdb.DuckDBPyConnection | None = None
        self._pending: list[Future[None]] = []
        self._spill: tuple[IO[bytes], Any] | None = None  # (file, IPC writer) while spilled batches wait for flush
        self._spill_schema: pa.Schema | None = None
        self._spill_rows = 0
        self._positional: bool | None = None  # whether _insert may append by position (checked at the first write)
        if isinstance(store, Store):
            store.logs.append(self)

    def add(self, *, round_: int, agent_id: int | None, strategy: str, target_id: np.ndarray, query_index: np.ndarray,
            score: np.ndarray, decision: np.ndarray, evaded: np.ndarray, cost: np.ndarray, X: np.ndarray,
            opening: np.ndarray | None = None) -> None:
        m = len(target_id)
        chunk: dict[str, Any] = {"round": round_, "agent_id": agent_id, "strategy": strategy, "target_id": target_id,
                                 "query_index": query_index, "score": score, "decision": decision, "evaded": evaded,
                                 "cost": cost, "X": X, "opening": opening, "n": m}
        self.total_rows += m
        while self._rows + chunk["n"] >= self.flush_rows:  # batches of exactly flush_rows rows: whole row groups
            head, chunk = _split_chunk(chunk, self.flush_rows - self._rows)
            self._chunks.append(head)
            self._rows += head["n"]
            self._submit()
        if chunk["n"]:
            self._chunks.append(chunk)
            self._rows += chunk["n"]

    def flush(self) -> None:
        """Write every buffered row and wait until all of them are in ``queries``. In a :class:`Store`, the commit of
        the last write also checkpoints the file (:func:`_checkpoint_at_commit`): its rows are compressed into the
        file there instead of being written to the write-ahead log first and compressed at the next checkpoint."""
        self._wait(raise_errors=True)  # the full batches first, committed as usual
        if self._own is None or (not self._chunks and self._spill is None):
            self._submit(wait=True)
            return
        with _checkpoint_at_commit(self._own.con):
            self._submit(wait=True)

    def close(self, *, discard: bool = False) -> None:
        """Flush (or, with ``discard``, drop the buffer and ignore write errors), then stop the writer thread."""
        try:
            if discard:
                self._chunks, self._rows = [], 0
                self._drop_spill()
                self._wait(raise_errors=False)
            else:
                self.flush()
        finally:
            self._drop_spill()
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
            if self._cursor is not None:
                self._cursor.close()
                self._cursor = None

    def _submit(self, wait: bool = False) -> None:
        chunks, self._chunks, self._rows = self._chunks, [], 0
        if self.store is None:
            return
        if not self.background:
            if self._spill_ok and not wait:  # a full batch in the oracle's loop: spill it, load it at flush
                if chunks:
                    self._spill_write(self._table(chunks))
            elif self._spill is not None:  # flush: the spilled batches and the tail, in one statement
                self._load_spill(chunks)
            elif chunks:
                self._write(chunks, None)
            return
        if chunks:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                assert self._own is not None  # background only writes to a Store (see __init__)
                self._cursor = self._own.con.cursor()
                self._cursor.execute(f"USE {RUN_CATALOG}")  # a cursor starts in the connection's in-memory database
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="query-log")
            self._pending.append(self._pool.submit(self._write, chunks, self._cursor))
        while self._pending and (wait or self._pending[0].done() or len(self._pending) > self.max_pending):
            self._pending.pop(0).result()  # re-raises a failed write in the caller's thread

    # -- the spill: Arrow IPC record batches in an anonymous file next to the run file ----------------------------
    def _spill_write(self, tbl: pa.Table) -> None:
        import tempfile

        import pyarrow as pa

        if self._spill is None:
            assert self._own is not None  # only a Store's log spills (see __init__)
            folder = self._own.partial.parent
            f = tempfile.TemporaryFile(dir=folder if os.access(folder, os.W_OK) else None, prefix=".fraudsim-spill-")
            try:
                self._spill = (f, pa.ipc.new_stream(f, tbl.schema))
            except BaseException:
                f.close()
                raise
            self._spill_schema = tbl.schema
        if not tbl.schema.equals(self._spill_schema):
            tbl = tbl.cast(self._spill_schema)
        self._spill[1].write_table(tbl)
        self._spill_rows += tbl.num_rows

    def _load_spill(self, chunks: list[dict]) -> None:
        """Append the spilled batches (read over a memory map of the file, no copy) and then ``chunks`` to
        ``queries`` in one statement, and drop the spill."""
        import mmap

        import pyarrow as pa

        assert self._spill is not None and self._own is not None  # called only while spilled (a Store's log)
        f, writer = self._spill
        try:
            writer.close()
            f.flush()
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            try:
                tables = [pa.ipc.open_stream(pa.py_buffer(mm)).read_all()]
                if chunks:
                    tables.append(self._table(chunks).cast(tables[0].schema))
                tbl = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
                del tables
                self._insert(tbl, self._own.con)
                del tbl
            finally:
                try:
                    mm.close()
                except BufferError:  # a failed append may still hold the table: the map goes with it
                    pass
        finally:
            self._drop_spill()

    def _drop_spill(self) -> None:
        spill, self._spill, self._spill_rows = self._spill, None, 0
        if spill is not None:
            f, writer = spill
            try:
                writer.close()
            except Exception:  # already closed, or the write it failed on is the error being raised
                pass
            f.close()

    def _wait(self, raise_errors: bool) -> None:
        while self._pending:
            fut = self._pending.pop(0)
            try:
                fut.result()
            except Exception:
                if raise_errors:
                    raise

    def _write(self, chunks: list[dict], con: duckdb.DuckDBPyConnection | None) -> None:
        assert self.store is not None  # _submit returns early without a store
        if self._own is None:
            self.store.append("queries", self._table(chunks))
        else:
            self._insert(self._table(chunks), self._own.con if con is None else con)

    def _insert(self, tbl: pa.Table, con: duckdb.DuckDBPyConnection) -> None:
        """Append ``tbl`` to the store's ``queries``: as a relation inserted by position when its columns are the
        table's, in order (as the store creates it: no view registered and dropped around the statement, about
        0.8 ms of CPU less per append), else by name (:meth:`Store.append`)."""
        assert self._own is not None  # only a Store's log inserts itself
        if self._positional is None:
            self._positional = [d[0] for d in con.execute("SELECT * FROM queries LIMIT 0").description] == \
                tbl.column_names
        if self._positional:
            con.from_arrow(tbl).insert_into("queries")
        else:
            self._own.append("queries", tbl, con=con)

    def _table(self, ch: list[dict]) -> pa.Table:
        import numpy as np
        import pyarrow as pa

        store = self.store
        assert store is not None  # _submit returns early without a store
        n = [c["n"] for c in ch]
        total = sum(n)
        XT = np.empty((len(store.feature_names), total))  # one copy into contiguous feature columns
        a = 0
        for c in ch:
            b = a + c["n"]
            XT[:, a:b] = c["X"].T
            a = b
        same_round = len({c["round"] for c in ch}) == 1
        agents = [c["agent_id"] for c in ch]
        cols = {
            "run_id": _dict_column([self.run_id], [total]),
            "round": (np.full(total, ch[0]["round"], np.int32) if same_round
                      else np.repeat(np.array([c["round"] for c in ch], np.int32), n)),
            "agent_id": (pa.nulls(total, pa.int32()) if all(g is None for g in agents) else
                         pa.array(np.repeat([-1 if g is None else g for g in agents], n).astype(np.int32),
                                  mask=np.repeat([g is None for g in agents], n))),
            "strategy": _dict_column([c["strategy"] for c in ch], n),
            "target_id": _cat([c["target_id"] for c in ch], np.int64),
            "query_index": _cat([c["query_index"] for c in ch], np.int32),
            "score": _cat([c["score"] for c in ch], np.float64),
            "decision": pa.DictionaryArray.from_arrays(
                pa.array(_cat([c["decision"] for c in ch], bool).view(np.int8)), pa.array(["approve", "decline"])),
            "evaded": _cat([c["evaded"] for c in ch], bool),
            "cost": _cat([c["cost"] for c in ch], np.float64),
        }
        for column, col in zip(store.columns, XT):
            cols[column] = col
        known = [c.get("opening") is not None for c in ch]  # NULL where the writer does not say (campaign probes)
        if not any(known):
            cols["opening"] = pa.nulls(total, pa.bool_())
        else:
            cols["opening"] = pa.array(np.concatenate([np.asarray(c["opening"], bool) if k else np.zeros(m, bool)
                                                       for c, k, m in zip(ch, known, n)]),
                                       mask=None if all(known) else np.repeat(~np.array(known), n))
        return pa.table(cols)


@contextlib.contextmanager
def _checkpoint_at_commit(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Commits in this block checkpoint the database. A DuckDB commit whose write-ahead log would pass
    ``checkpoint_threshold`` checkpoints instead of writing its rows to the log; with the threshold at 0 for the
    query log's last write, its partial row group is compressed into the file once (a ``CHECKPOINT`` right after
    finds nothing left) instead of being serialized into the log and compressed at the next checkpoint (7-14% less
    CPU for that write and the checkpoint; ``benchmarks/bench_oracle.py``). A commit that cannot checkpoint (another
    transaction open) writes the log as usual. The setting is the database's: restored after."""
    old = con.execute("SELECT current_setting('checkpoint_threshold')").fetchall()[0][0]
    restore = f"SET checkpoint_threshold = {_literal(old)}"
    con.execute("SET checkpoint_threshold = '0b'")
    try:
        yield
    except BaseException:
        with contextlib.suppress(duckdb.Error):  # the write's own error is the one to raise
            con.execute(restore)
        raise
    con.execute(restore)


_ROW_FIELDS = ("target_id", "query_index", "score", "decision", "evaded", "cost", "X", "opening")


def _split_chunk(chunk: dict, k: int) -> tuple[dict, dict]:
    """A query log chunk's first ``k`` rows and the rest (views, no copy)."""
    head, tail = dict(chunk, n=k), dict(chunk, n=chunk["n"] - k)
    for f in _ROW_FIELDS:
        v = chunk[f]
        if v is not None:
            head[f], tail[f] = v[:k], v[k:]
    return head, tail


def _cat(parts: list, dtype) -> np.ndarray:
    """One contiguous array of ``dtype`` from the chunks' arrays (a single copy)."""
    import numpy as np

    return np.concatenate([np.asarray(p) for p in parts]).astype(dtype, copy=False)


def _dict_column(values: list[str], counts: Sequence[int]) -> pa.DictionaryArray:
    """A string column of runs of repeated values, built without a Python object per row."""
    import numpy as np
    import pyarrow as pa

    uniq = sorted(set(values))
    codes = np.repeat(np.array([uniq.index(v) for v in values], dtype=np.int32), counts)
    return pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(uniq, pa.string()))
