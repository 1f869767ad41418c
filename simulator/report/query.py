"""Read-only SQL over a run file: the door behind ``fraudsim query``.

Writes must be impossible through it, so three independent locks:

1. The statement is parsed by DuckDB itself (``duckdb.extract_statements``): exactly one statement, of a reading
   kind (``SELECT``/``WITH``/``FROM``/``VALUES``/``DESCRIBE``/``SHOW``/``SUMMARIZE``, ``EXPLAIN`` of one of those, or a
   catalogue ``PRAGMA`` such as ``table_info``). Its syntax tree (``json_serialize_sql``) is then walked: table
   functions other than a few harmless ones (``range``, ``unnest``, ``duckdb_tables()``, ...) and file names in
   ``FROM`` are refused, so ``read_csv``, ``read_parquet``, ``read_text``, ``glob`` or ``'x.csv'`` never run.
2. The file is opened read-only.
3. Before the user's SQL runs, the connection disables external access (no file system, no network, no
   extensions) and locks its configuration, so nothing the parser missed can reach outside the run file.

Examples
--------
>>> check_statement("SELECT strategy, count(*) FROM targets GROUP BY 1")
'SELECT'
>>> check_statement("DROP TABLE queries")
Traceback (most recent call last):
...
simulator.report.query.QueryError: DROP statements are not allowed: fraudsim query only reads (SELECT, WITH, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN, PRAGMA table_info)
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from ..errors import FraudsimError
from .views import open_run

if TYPE_CHECKING:  # imported where frames are made: `fraudsim query` prints a table without Polars
    import polars as pl

READ_KINDS = "SELECT, WITH, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN, PRAGMA table_info"
ALLOWED_PRAGMAS = frozenset({"table_info", "show", "show_tables", "show_tables_expanded", "database_size",
                             "storage_info", "version", "platform", "functions", "collations"})
ALLOWED_TABLE_FUNCTIONS = frozenset({
    "range", "generate_series", "unnest", "repeat", "json_each", "json_tree",
    "pragma_table_info", "pragma_show", "pragma_storage_info", "pragma_database_size", "pragma_version",
    "pragma_platform", "pragma_collations", "pragma_functions",
    "duckdb_tables", "duckdb_views", "duckdb_columns", "duckdb_schemas", "duckdb_databases", "duckdb_types",
    "duckdb_functions", "duckdb_constraints", "duckdb_indexes", "duckdb_keywords", "duckdb_settings",
    "duckdb_sequences", "duckdb_dependencies",
})
_FILE_LIKE = re.compile(r"[/\\]|\.[A-Za-z0-9]{1,8}(\.gz|\.zst)?$|^[a-z0-9]+://")


class QueryError(FraudsimError):
    """SQL given to ``fraudsim query`` is malformed, or is refused because it could write or read other files."""

    kind = "query error"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for prefix in ("Parser Error: ", "Binder Error: ", "Catalog Error: ", "Conversion Error: ", "Invalid Input Error: "):
        text = text.replace(prefix, "")
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _walk(node: Any):
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


def _check_tree(sql: str, con: duckdb.DuckDBPyConnection | None = None) -> None:
    """Refuse table functions outside the allow-list and file names used as tables, from DuckDB's own parse tree
    (``json_serialize_sql`` only parses: the user's SQL never runs here; ``con`` saves starting a scratch database)."""
    if con is not None:
        tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()[0][0])
    else:
        with duckdb.connect() as scratch:  # an empty in-memory database
            tree = json.loads(scratch.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()[0][0])
    if tree.get("error"):
        raise QueryError(f"cannot check this statement ({tree.get('error_message', 'unknown parse error')[:160]})")
    for node in _walk(tree.get("statements", [])):
        kind = node.get("type")
        if kind == "TABLE_FUNCTION":
            fn = node.get("function") or {}
            name = str(fn.get("function_name", "?")).lower()
            if name not in ALLOWED_TABLE_FUNCTIONS:
                raise QueryError(f"table function {name}() is not allowed: a query reads only this run file's "
                                 "tables and views, never other files")
        elif kind == "BASE_TABLE":
            name = str(node.get("table_name", ""))
            if _FILE_LIKE.search(name):
                raise QueryError(f"reading the file {name!r} is not allowed: a query reads only this run file's "
                                 "tables and views")


def check_statement(sql: str, *, con: duckdb.DuckDBPyConnection | None = None) -> str:
    """Check that ``sql`` is one reading statement; return its kind, or raise :class:`QueryError` saying why not.
    ``con``, an open connection, is used only to parse (none: a scratch in-memory database)."""
    if not sql or not sql.strip():
        raise QueryError("no SQL given")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(f"bad SQL: {_first_line(exc)}") from None
    if len(statements) != 1:
        raise QueryError(f"give exactly one statement (got {len(statements)}): fraudsim query runs one read-only query")
    stmt = statements[0]
    kind = stmt.type.name
    text = stmt.query.strip().rstrip(";").strip()
    first_word = (text.split(None, 1) or ["?"])[0].upper()
    if kind == "SELECT":
        _check_tree(text, con)
        return "SELECT"
    if kind == "EXPLAIN":
        inner = re.sub(r"^\s*EXPLAIN\s+(ANALY[SZ]E\s+)?", "", text, flags=re.IGNORECASE)
        inner_statements = duckdb.extract_statements(inner) if inner != text else []
        if len(inner_statements) != 1 or inner_statements[0].type.name != "SELECT":
            raise QueryError("EXPLAIN is allowed only for a SELECT-style query")
        _check_tree(inner, con)
        return "EXPLAIN"
    if kind == "PRAGMA":
        m = re.match(r"^\s*PRAGMA\s+([A-Za-z_]+)", text, flags=re.IGNORECASE)
        name = m.group(1).lower() if m else "?"
        if name not in ALLOWED_PRAGMAS or "=" in text:
            raise QueryError(f"PRAGMA {name} is not allowed: only catalogue pragmas such as table_info, show_tables, "
                             "database_size")
        return "PRAGMA"
    if first_word == "PRAGMA":
        raise QueryError("this PRAGMA changes a setting: not allowed (fraudsim query only reads)")
    shown = first_word if first_word.isalpha() else kind
    raise QueryError(f"{shown} statements are not allowed: fraudsim query only reads ({READ_KINDS})")


DEFAULT_TIMEOUT_S = 300.0  # a statement over a run file takes seconds; a runaway recursive CTE never ends
DEFAULT_MEMORY_LIMIT = "4GB"


def lock_down(con: duckdb.DuckDBPyConnection, *, memory_limit: str | None = None) -> None:
    """No file system, network or extension loading from here on, and no way to turn that back on; at most
    ``memory_limit`` of memory (DuckDB's setting, e.g. ``"4GB"``)."""
    settings = ["SET autoinstall_known_extensions = false", "SET autoload_known_extensions = false",
                "SET enable_external_access = false"]
    if memory_limit:
        if not re.fullmatch(r"\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)", memory_limit.strip(), re.IGNORECASE):
            raise QueryError(f"memory limit {memory_limit!r} is not a size such as 512MB or 4GB", field="--memory-limit")
        settings.append(f"SET memory_limit = '{memory_limit.strip()}'")
    for setting in settings + ["SET lock_configuration = true"]:
        con.execute(setting).fetchall()


def _with_time_limit(con: duckdb.DuckDBPyConnection, work, timeout_s: float | None):
    """Run ``work()`` in a worker thread; past ``timeout_s`` interrupt DuckDB and raise a one-line QueryError.
    Ctrl-C in the main thread interrupts the statement too."""
    if timeout_s is None:
        return work()
    import threading

    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = work()
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=target, name="fraudsim-query", daemon=True)
    worker.start()
    try:
        worker.join(timeout_s)
    except BaseException:
        con.interrupt()
        worker.join(5)
        raise
    if worker.is_alive():
        con.interrupt()
        worker.join(10)
        raise QueryError(f"the statement ran longer than {timeout_s:g} s and was stopped (raise the limit with "
                         "--timeout SECONDS)", field="--timeout")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def run_query(path: str | Path, sql: str, *, limit: int | None = None, timeout_s: float | None = DEFAULT_TIMEOUT_S,
              memory_limit: str | None = DEFAULT_MEMORY_LIMIT) -> tuple[pl.DataFrame, bool]:
    """Run one read-only statement on a run file; returns the result and whether rows beyond ``limit`` were cut.

    The run's views (``success_by_budget`` etc.) are available even in files written before they existed. The
    statement is stopped after ``timeout_s`` seconds and may use at most ``memory_limit`` of memory.
    """
    return _run(path, sql, lambda con: _fetch(con, sql, limit), timeout_s, memory_limit)


def run_query_rows(path: str | Path, sql: str, *, limit: int, timeout_s: float | None = DEFAULT_TIMEOUT_S,
                   memory_limit: str | None = DEFAULT_MEMORY_LIMIT) -> tuple[QueryRows, bool]:
    """:func:`run_query` for printing at most ``limit`` rows: the rows as DuckDB's Python values, without loading
    Polars or Arrow (so ``fraudsim query`` starts fast). Same checks, limits and errors."""
    return _run(path, sql, lambda con: _fetch_rows(con, sql, limit), timeout_s, memory_limit)


class QueryRows:
    """A small result: column names, whether each is numeric, and the rows as tuples."""

    def __init__(self, columns: list[str], numeric: list[bool], rows: list[tuple]):
        self.columns, self.numeric, self.rows = columns, numeric, rows


NUMERIC_TYPES = frozenset({"tinyint", "smallint", "integer", "bigint", "hugeint", "utinyint", "usmallint", "uinteger",
                           "ubigint", "uhugeint", "float", "double", "decimal"})


def _run(path: str | Path, sql: str, work, timeout_s: float | None, memory_limit: str | None):
    # the run file is opened first only to parse the statement on its connection (one DuckDB database to start,
    # not two); a problem with the SQL is still reported before a problem with the file
    try:
        con, bad_file = open_run(path), None
    except FraudsimError as exc:
        con, bad_file = None, exc
    try:
        check_statement(sql, con=con)
        if timeout_s is not None and not (0 < timeout_s <= 7 * 86400):
            raise QueryError("the time limit must be between 0 and 604800 seconds", field="--timeout")
        if bad_file is not None:
            raise bad_file
    except BaseException:
        if con is not None:
            con.close()
        raise
    assert con is not None
    try:
        lock_down(con, memory_limit=memory_limit)
        try:
            return _with_time_limit(con, lambda: work(con), timeout_s)
        except duckdb.PermissionException as exc:
            raise QueryError(f"refused: {_first_line(exc)}") from None
        except duckdb.OutOfMemoryException as exc:
            raise QueryError(f"the statement needs more memory than the limit ({_first_line(exc)}); raise it with "
                             "--memory-limit", field="--memory-limit") from None
        except duckdb.InterruptException:
            raise QueryError("the statement was interrupted") from None
        except duckdb.Error as exc:
            raise QueryError(f"bad SQL: {_first_line(exc)}") from None
    finally:
        try:
            con.close()
        except duckdb.Error:  # a statement stopped at its time limit may still hold the connection ("busy") on a
            pass  # loaded machine; the one-line error being raised is the answer, and the file was only read


def _fetch_rows(con: duckdb.DuckDBPyConnection, sql: str, limit: int) -> tuple[QueryRows, bool]:
    rel = con.sql(sql)
    if rel is None:  # a statement without a result
        return QueryRows([], [], []), False
    numeric = [str(getattr(t, "id", t)).lower() in NUMERIC_TYPES for t in rel.types]
    rows = rel.limit(limit + 1).fetchall()
    return QueryRows(list(rel.columns), numeric, rows[:limit]), len(rows) > limit


def _fetch(con: duckdb.DuckDBPyConnection, sql: str, limit: int | None) -> tuple[pl.DataFrame, bool]:
    import polars as pl

    rel = con.sql(sql)
    if rel is None:  # a statement without a result
        return pl.DataFrame(), False
    if limit is None:
        return rel.pl(), False
    reader = rel.to_arrow_reader(max(1, min(limit + 1, 10_000)))
    batches, rows = [], 0
    for batch in reader:
        batches.append(batch)
        rows += batch.num_rows
        if rows > limit:
            break
    import pyarrow as pa

    table = pa.Table.from_batches(batches, schema=reader.schema) if batches else reader.schema.empty_table()
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame.head(limit), rows > limit


def query(result_or_path: Any, sql: str) -> pl.DataFrame:
    """Notebook helper: run a read-only query on a run (a ``RunResult`` or a path), views included.

    Examples
    --------
    >>> query("missing.duckdb", "SELECT 1")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    simulator.errors.StoreError: missing.duckdb: file not found
    """
    path = getattr(result_or_path, "path", result_or_path)
    frame, _ = run_query(path, sql)
    return frame
