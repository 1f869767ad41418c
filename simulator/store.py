"""The DuckDB run store: schema, batched appends from Arrow, run lifecycle.

A run writes to ``<output>.partial`` and is moved to ``<output>`` only when it finishes, so a failed or
interrupted run never leaves a half-written file where a finished one is expected.

Tables (a contract; see the README): ``runs``, ``queries``, ``targets``, ``transactions``, ``model_versions``,
``defence_events`` and ``fraudsim_meta`` (which marks the file as a fraudsim store and carries its version).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import duckdb

from .errors import StoreError

if TYPE_CHECKING:  # imported where rows are written, so reading a run (fraudsim gate) does not load them
    import numpy as np
    import pyarrow as pa

SCHEMA_VERSION = 2  # 2: campaign tables and columns (README, migration notes)
QUERY_FIXED_COLUMNS = ("run_id", "round", "agent_id", "strategy", "target_id", "query_index", "score", "decision",
                       "evaded", "cost")
TARGET_FIXED_COLUMNS = ("run_id", "strategy", "target_id", "original_score", "queries_used", "evaded",
                        "queries_to_first_evasion", "first_evasion_cost", "min_cost", "cheap_evaded",
                        "queries_to_first_cheap_evasion")
RESERVED_COLUMNS = frozenset(QUERY_FIXED_COLUMNS + TARGET_FIXED_COLUMNS)
CHEAP_COST = 1.0  # an evasion is "cheap" when its cost is at most this (one flag plus small moves)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _ddl(feature_names: Sequence[str]) -> list[str]:
    feats = "".join(f", {_ident(f)} DOUBLE" for f in feature_names)
    return [
        "CREATE TABLE IF NOT EXISTS fraudsim_meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
        """CREATE TABLE IF NOT EXISTS runs (run_id VARCHAR PRIMARY KEY, scenario VARCHAR, seed BIGINT,
            started_at TIMESTAMP, finished_at TIMESTAMP, status VARCHAR, model_path VARCHAR, model_sha256 VARCHAR,
            model_kind VARCHAR, threshold DOUBLE, feedback VARCHAR, budget BIGINT, scenario_yaml VARCHAR,
            fraudsim_version VARCHAR, error VARCHAR)""",
        f"""CREATE TABLE IF NOT EXISTS queries (run_id VARCHAR, round INTEGER, agent_id INTEGER, strategy VARCHAR,
            target_id BIGINT, query_index INTEGER, score DOUBLE, decision VARCHAR, evaded BOOLEAN, cost DOUBLE{feats})""",
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
        *CAMPAIGN_DDL,
    ]


#: Tables only a campaign fills (see simulator/campaign and the README); columns ending in _s or _us are wall-clock.
CAMPAIGN_DDL = (
    """CREATE TABLE IF NOT EXISTS rounds (run_id VARCHAR, round INTEGER, day INTEGER, model_version INTEGER,
        transactions BIGINT, legit BIGINT, fraud BIGINT, probes INTEGER, probes_approved INTEGER,
        attack_success_rate DOUBLE, attack_loss DOUBLE, fraud_loss DOUBLE, probes_detected INTEGER,
        probes_detected_share DOUBLE, poison INTEGER, fpr DOUBLE, friction DOUBLE, review_rate DOUBLE,
        legit_detected_share DOUBLE, clean_auc DOUBLE, psi_score DOUBLE, psi_max DOUBLE, psi_max_feature VARCHAR,
        drift_alerts INTEGER, cards_burned INTEGER, agents_active INTEGER, retrained BOOLEAN,
        scoring_us_per_txn DOUBLE, defence_us_per_txn DOUBLE)""",
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


class Store:
    """A fraudsim DuckDB file opened for writing one run."""

    def __init__(self, path: str | Path, feature_names: Sequence[str]):
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.feature_names = tuple(feature_names)
        self.logs: list[QueryLog] = []  # query logs writing in the background; finish/abandon wait for them
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for stale in (self.partial, Path(str(self.partial) + ".wal")):
            stale.unlink(missing_ok=True)
        try:
            self.con = duckdb.connect(str(self.partial))
        except duckdb.Error as exc:
            raise StoreError(f"cannot create the run file ({exc})", file=str(self.partial), field="output") from None
        for stmt in _ddl(self.feature_names):
            self.con.execute(stmt)
        self.con.execute("INSERT OR REPLACE INTO fraudsim_meta VALUES ('schema_version', ?), ('features', ?)",
                         [str(SCHEMA_VERSION), ",".join(self.feature_names)])

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
        """Close and move the finished file into place (replacing an older run file at that path)."""
        for log in self.logs:
            log.close()
        self.con.execute("CHECKPOINT")
        self.con.close()
        os.replace(self.partial, self.path)
        return self.path

    def fail(self, run_id: str, exc: BaseException) -> None:
        """Mark the run failed with its error, then drop the partial file (see :meth:`abandon`)."""
        try:
            self.execute("UPDATE runs SET status = 'failed', error = ?, finished_at = now() WHERE run_id = ?",
                         [f"{type(exc).__name__}: {exc}"[:2000], run_id])
        finally:
            self.abandon()

    def abandon(self) -> None:
        """Drop the partial file of a failed run; an older finished file at ``path`` stays untouched."""
        for log in self.logs:
            log.close(discard=True)
        try:
            self.con.close()
        except duckdb.Error:
            pass
        for f in (self.partial, Path(str(self.partial) + ".wal")):
            f.unlink(missing_ok=True)


def open_readonly(path: str | Path) -> duckdb.DuckDBPyConnection:
    """Open a finished run file for analysis; refuses files that are not fraudsim stores."""
    path = Path(path)
    if not path.is_file():
        raise StoreError("file not found", file=str(path))
    try:
        con = duckdb.connect(str(path), read_only=True)
        ok = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'fraudsim_meta'").fetchall()[0][0]
    except duckdb.Error as exc:
        raise StoreError(f"not a DuckDB file ({str(exc).splitlines()[0][:120]})", file=str(path)) from None
    if not ok:
        con.close()
        raise StoreError("not a fraudsim run file (no fraudsim_meta table)", file=str(path))
    return con


BACKGROUND_MIN_CPUS = 4  # the query log writes on its own thread only with cores to spare (see QueryLog)


class QueryLog:
    """Buffers oracle queries as column chunks and appends them to ``queries`` in large batches.

    Every ``flush_rows`` rows (one DuckDB row group: written straight to the file, never twice through the WAL) the
    buffered chunks become one Arrow table, built with a single copy into contiguous feature columns, and are
    appended in one statement. With ``background`` (the default on machines with at least
    ``BACKGROUND_MIN_CPUS`` cores) a writer thread does this on its own cursor of the store's connection, in order,
    while the oracle keeps scoring (DuckDB and NumPy release the GIL); at most ``max_pending`` batches wait, so
    memory stays bounded. On 2 cores the model's OpenMP threads already use both, and a third busy thread stalls
    their barriers (measured on a loaded 2-core machine: no faster than writing in line, often slower), so there
    the caller's thread writes. :meth:`flush` returns once every row added so far is in ``queries``; a failed write
    is raised there (or at the next :meth:`add`). The store closes its logs before it finishes or drops its file.
    A ``store`` that is not a :class:`Store` (the campaign's own background writer) gets the batches in the
    caller's thread.
    """

    def __init__(self, store: Store | None, run_id: str, flush_rows: int = 122_880, *, background: bool | None = None,
                 max_pending: int = 2):
        if background is None:  # only where a core is free: on 2 cores the model's own threads (OpenMP) use both
            background = (os.cpu_count() or 1) >= BACKGROUND_MIN_CPUS
        self.store, self.run_id, self.flush_rows = store, run_id, flush_rows
        # anything else with ``append`` and ``feature_names`` (the campaign's own background writer) gets the
        # batches in this thread
        self.background, self.max_pending = background and isinstance(store, Store), max_pending
        self._chunks: list[dict] = []
        self._rows = 0
        self.total_rows = 0
        self._pool = None  # the writer thread and its cursor, made on the first background write
        self._cursor = None
        self._pending: list = []
        if isinstance(store, Store):
            store.logs.append(self)

    def add(self, *, round_: int, agent_id: int | None, strategy: str, target_id: np.ndarray, query_index: np.ndarray,
            score: np.ndarray, decision: np.ndarray, evaded: np.ndarray, cost: np.ndarray, X: np.ndarray) -> None:
        self._chunks.append(dict(round=round_, agent_id=agent_id, strategy=strategy, target_id=target_id,
                                 query_index=query_index, score=score, decision=decision, evaded=evaded, cost=cost, X=X))
        self._rows += len(target_id)
        self.total_rows += len(target_id)
        if self._rows >= self.flush_rows:
            self._submit()

    def flush(self) -> None:
        """Write every buffered row and wait until all of them are in ``queries``."""
        self._submit(wait=True)

    def close(self, *, discard: bool = False) -> None:
        """Flush (or, with ``discard``, drop the buffer and ignore write errors), then stop the writer thread."""
        try:
            if discard:
                self._chunks, self._rows = [], 0
                self._wait(raise_errors=False)
            else:
                self.flush()
        finally:
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
            if chunks:
                self._write(chunks, None)
            return
        if chunks:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._cursor = self.store.con.cursor()
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="query-log")
            self._pending.append(self._pool.submit(self._write, chunks, self._cursor))
        while self._pending and (wait or self._pending[0].done() or len(self._pending) > self.max_pending):
            self._pending.pop(0).result()  # re-raises a failed write in the caller's thread

    def _wait(self, raise_errors: bool) -> None:
        while self._pending:
            fut = self._pending.pop(0)
            try:
                fut.result()
            except Exception:
                if raise_errors:
                    raise

    def _write(self, chunks: list[dict], con) -> None:
        if con is None:
            self.store.append("queries", self._table(chunks))
        else:
            self.store.append("queries", self._table(chunks), con=con)

    def _table(self, ch: list[dict]) -> pa.Table:
        import numpy as np
        import pyarrow as pa

        n = [len(c["target_id"]) for c in ch]
        ends = np.cumsum(n)
        XT = np.empty((len(self.store.feature_names), int(ends[-1])))  # one copy into contiguous feature columns
        for c, a, b in zip(ch, ends - n, ends):
            XT[:, a:b] = c["X"].T
        cols = {
            "run_id": _dict_column([self.run_id], [int(ends[-1])]),
            "round": np.repeat([c["round"] for c in ch], n).astype(np.int32),
            "agent_id": pa.array(np.repeat([-1 if c["agent_id"] is None else c["agent_id"] for c in ch], n).astype(np.int32),
                                 mask=np.repeat([c["agent_id"] is None for c in ch], n)),
            "strategy": _dict_column([c["strategy"] for c in ch], n),
            "target_id": np.concatenate([c["target_id"] for c in ch]).astype(np.int64, copy=False),
            "query_index": np.concatenate([c["query_index"] for c in ch]).astype(np.int32),
            "score": np.concatenate([c["score"] for c in ch]).astype(np.float64, copy=False),
            "decision": pa.DictionaryArray.from_arrays(
                pa.array(np.concatenate([c["decision"] for c in ch]).astype(np.int8)), pa.array(["approve", "decline"])),
            "evaded": np.concatenate([c["evaded"] for c in ch]).astype(bool, copy=False),
            "cost": np.concatenate([c["cost"] for c in ch]).astype(np.float64, copy=False),
        }
        for j, f in enumerate(self.store.feature_names):
            cols[f] = XT[j]
        return pa.table(cols)


def _dict_column(values: list[str], counts: Sequence[int]) -> pa.DictionaryArray:
    """A string column of runs of repeated values, built without a Python object per row."""
    import numpy as np
    import pyarrow as pa

    uniq = sorted(set(values))
    codes = np.repeat(np.array([uniq.index(v) for v in values], dtype=np.int32), counts)
    return pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(uniq, pa.string()))
