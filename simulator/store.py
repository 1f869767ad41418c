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
import os
from pathlib import Path
from typing import Sequence

import duckdb
import numpy as np
import pyarrow as pa

from .errors import StoreError

SCHEMA_VERSION = 3  # 2: campaign tables and columns; 3: feature_columns (README, migration notes)
QUERY_FIXED_COLUMNS = ("run_id", "round", "agent_id", "strategy", "target_id", "query_index", "score", "decision",
                       "evaded", "cost")
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
        self.columns = feature_columns(self.feature_names)  # stored column of each feature
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
                         [str(SCHEMA_VERSION), json.dumps(list(self.feature_names), ensure_ascii=False)])
        self.con.execute("DELETE FROM feature_columns")
        if self.feature_names:
            self.con.executemany("INSERT INTO feature_columns VALUES (?, ?, ?)",
                                 [[j, f, c] for j, (f, c) in enumerate(zip(self.feature_names, self.columns))])

    def feature_table(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """Feature columns of a batch (rows of ``X`` in model order) keyed by their stored column names."""
        return {c: X[:, j] for j, c in enumerate(self.columns)}

    def append(self, table: str, data: pa.Table | dict) -> None:
        """Append a whole batch (Arrow table, or a dict of equal-length arrays) in one statement."""
        tbl = data if isinstance(data, pa.Table) else pa.table(data)
        if tbl.num_rows == 0:
            return
        self.con.register("_batch", tbl)
        try:
            cols = ", ".join(_ident(c) for c in tbl.column_names)
            self.con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _batch").fetchall()
        finally:
            self.con.unregister("_batch")

    def execute(self, sql: str, params: Sequence | None = None) -> None:
        """Run a statement to completion (DuckDB refuses new work while a result is unread)."""
        self.con.execute(sql, params or []).fetchall()

    def finish(self) -> Path:
        """Close and move the finished file into place (replacing an older run file at that path).

        Call it as soon as the run's own tables are written and the run is marked finished: steps derived from them
        (views, summary, report) run on the finished file, so their failure never costs the run."""
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


class QueryLog:
    """Buffers oracle queries as column chunks and appends them to ``queries`` in large batches."""

    def __init__(self, store: Store | None, run_id: str, flush_rows: int = 200_000):
        self.store, self.run_id, self.flush_rows = store, run_id, flush_rows
        self._chunks: list[dict] = []
        self._rows = 0
        self.total_rows = 0

    def add(self, *, round_: int, agent_id: int | None, strategy: str, target_id: np.ndarray, query_index: np.ndarray,
            score: np.ndarray, decision: np.ndarray, evaded: np.ndarray, cost: np.ndarray, X: np.ndarray) -> None:
        self._chunks.append(dict(round=round_, agent_id=agent_id, strategy=strategy, target_id=target_id,
                                 query_index=query_index, score=score, decision=decision, evaded=evaded, cost=cost, X=X))
        self._rows += len(target_id)
        self.total_rows += len(target_id)
        if self._rows >= self.flush_rows:
            self.flush()

    def flush(self) -> None:
        if not self._chunks or self.store is None:
            self._chunks, self._rows = [], 0
            return
        ch = self._chunks
        n = [len(c["target_id"]) for c in ch]
        X = np.concatenate([c["X"] for c in ch])
        cols = {
            "run_id": _dict_column([self.run_id], [sum(n)]),
            "round": np.repeat([c["round"] for c in ch], n).astype(np.int32),
            "agent_id": pa.array(np.repeat([-1 if c["agent_id"] is None else c["agent_id"] for c in ch], n).astype(np.int32),
                                 mask=np.repeat([c["agent_id"] is None for c in ch], n)),
            "strategy": _dict_column([c["strategy"] for c in ch], n),
            "target_id": np.concatenate([c["target_id"] for c in ch]).astype(np.int64),
            "query_index": np.concatenate([c["query_index"] for c in ch]).astype(np.int32),
            "score": np.concatenate([c["score"] for c in ch]).astype(np.float64),
            "decision": pa.DictionaryArray.from_arrays(
                pa.array(np.concatenate([c["decision"] for c in ch]).astype(np.int8)), pa.array(["approve", "decline"])),
            "evaded": np.concatenate([c["evaded"] for c in ch]).astype(bool),
            "cost": np.concatenate([c["cost"] for c in ch]).astype(np.float64),
        }
        cols.update(self.store.feature_table(X))
        self.store.append("queries", pa.table(cols))
        self._chunks, self._rows = [], 0


def _dict_column(values: list[str], counts: Sequence[int]) -> pa.DictionaryArray:
    """A string column of runs of repeated values, built without a Python object per row."""
    uniq = sorted(set(values))
    codes = np.repeat(np.array([uniq.index(v) for v in values], dtype=np.int32), counts)
    return pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(uniq, pa.string()))
