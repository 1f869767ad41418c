"""Metrics as SQL views over a run file, so every number in a report or a gate is one ``SELECT`` away.

:func:`create_views` writes the views into a run file (the runner calls it before it finishes; it is idempotent,
so it also upgrades an older finished file opened read-write). Readers use :func:`open_run`, which opens a file
read-only and, when the file's views are missing or older than this code, creates the same views as temporary
ones on that connection, so old files read the same as new ones and the file is never touched.

The views (documented with SQL examples in the README, "Reports and SQL over the run file"):

``run_summary``            one row per run and strategy: targets, evasions, success rates at the full budget, medians,
                           and (files with an ``exact_bounds`` table) best cost ÷ exact minimum, median and p90
``success_by_budget``      the curve: share of targets evaded (and cheaply evaded) within N queries
``queries_to_evasion``     distribution of the number of queries to the first evasion
``cost_distribution``      histogram (bins of 0.25) of the cost of the best and of the first evasion
``best_evasions``          one row per evaded target: its cheapest evading query, all features
``evasion_feature_changes`` long form: each feature of the best evasion against the target's original value
``feature_changes``        per strategy and feature: how often successful evasions changed it, and by how much
``success_by_segment``     success by merchant category, amount band, fraud type and ring (when present)
``round_measures``         per round: the campaign's ``rounds`` row when there is one, oracle queries and evasions,
                           defence events (a plain run is one round 0)
``round_strategy_measures`` per round and strategy, from the oracle query log
``model_performance``      per model version and split, on clean traffic (no probes, no poisoning rows): AUC,
                           false-positive rate, recall at the threshold
"""
from __future__ import annotations

from pathlib import Path

import duckdb

from ..errors import StoreError
from ..measures import EXACT_RATIO_COLUMNS, EXACT_RATIO_JOIN, STRATEGY_MEASURES, strategy_sql  # noqa: F401
from ..store import CHEAP_COST, _ident, connect_run_file, open_readonly, read_feature_columns

VIEWS_VERSION = "4"  # 4: run_summary from simulator.measures (median costs over evaded targets), model_performance on clean traffic, median_relative_delta; 3: best cost / exact minimum in run_summary; 2: features by their stored columns (feature_columns), success_by_segment names every branch
COST_BIN = 0.25  # width of the cost histogram bins
AMOUNT_BANDS = (10, 50, 200, 1000, 5000)  # upper edges of the amount bands; the last band is open
VIEW_NAMES = ("run_summary", "success_by_budget", "queries_to_evasion", "cost_distribution", "best_evasions",
              "evasion_feature_changes", "feature_changes", "success_by_segment", "round_measures",
              "round_strategy_measures", "model_performance")


def _fetch(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list[tuple]:
    return con.execute(sql, params or []).fetchall()


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    """Columns of a table of the main database (not temporary objects), in order; [] when it does not exist."""
    rows = _fetch(con, "SELECT column_name FROM information_schema.columns WHERE table_name = ? AND table_catalog = "
                       "current_database() ORDER BY ordinal_position", [table])
    return [r[0] for r in rows]


def feature_names(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The model's features (their real names, in model order)."""
    return [f for f, _ in read_feature_columns(con)]


def _list(items) -> str:
    return "[" + ", ".join(items) + "]"


def _lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def view_definitions(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """The ``SELECT`` behind each view, built for this file (its features, and the optional tables it has)."""
    pairs = read_feature_columns(con)
    feats = [f for f, _ in pairs]  # real names, what the views show in their ``feature`` columns
    cols = [c for _, c in pairs]  # stored columns, what SQL reads
    cheap = f"{CHEAP_COST!r}"
    defs: dict[str, str] = {}

    m = {k: strategy_sql(k, "t") for k in STRATEGY_MEASURES}
    defs["run_summary"] = f"""
SELECT t.run_id, t.strategy, count(*) AS targets, any_value(r.budget) AS budget,
  count(*) FILTER (WHERE t.evaded) AS evaded,
  {m['success_rate']} AS success_rate,
  count(*) FILTER (WHERE t.cheap_evaded) AS cheap_evaded,
  {m['cheap_success_rate']} AS cheap_success_rate,
  {m['median_queries_to_evasion']} AS median_queries_to_evasion,
  {m['median_queries_to_cheap_evasion']} AS median_queries_to_cheap_evasion,
  {m['median_first_cost']} AS median_first_cost,
  {m['median_best_cost']} AS median_best_cost,
  avg(t.original_score) AS mean_original_score""" + (EXACT_RATIO_COLUMNS + "\nFROM targets t LEFT JOIN runs r ON r.run_id = t.run_id"
    + EXACT_RATIO_JOIN if _columns(con, "exact_bounds") else "\nFROM targets t LEFT JOIN runs r USING (run_id)") + """
GROUP BY t.run_id, t.strategy"""

    # Points of the curve: a 1-1.5-2-3-5-7 grid per decade, every N up to 10, the full budget, and every N at
    # which some target was first evaded, so the curve read at those points is exact.
    defs["success_by_budget"] = """
WITH grid AS (
  SELECT r.run_id, p.n FROM runs r, (
    SELECT DISTINCT round(m * pow(10, e))::BIGINT AS n FROM (VALUES (1.0), (1.5), (2.0), (3.0), (5.0), (7.0)) a(m),
      range(0, 12) b(e)
    UNION SELECT range AS n FROM range(1, 10)) p
  WHERE p.n <= r.budget
  UNION SELECT run_id, budget FROM runs WHERE budget IS NOT NULL
  UNION SELECT run_id, queries_to_first_evasion FROM targets WHERE queries_to_first_evasion IS NOT NULL
  UNION SELECT run_id, queries_to_first_cheap_evasion FROM targets WHERE queries_to_first_cheap_evasion IS NOT NULL),
per_strategy AS (SELECT run_id, strategy, count(*) AS targets FROM targets GROUP BY run_id, strategy),
marks AS (
  SELECT s.run_id, s.strategy, g.n, 1 AS is_point, 0 AS evaded, 0 AS cheap FROM per_strategy s JOIN grid g USING (run_id)
  UNION ALL SELECT run_id, strategy, queries_to_first_evasion, 0, 1, 0 FROM targets WHERE queries_to_first_evasion IS NOT NULL
  UNION ALL SELECT run_id, strategy, queries_to_first_cheap_evasion, 0, 0, 1 FROM targets
    WHERE queries_to_first_cheap_evasion IS NOT NULL),
running AS (
  SELECT run_id, strategy, n, is_point, sum(evaded) OVER w AS evaded_within, sum(cheap) OVER w AS cheap_within
  FROM marks WINDOW w AS (PARTITION BY run_id, strategy ORDER BY n, is_point ROWS UNBOUNDED PRECEDING))
SELECT r.run_id, r.strategy, r.n::INTEGER AS budget, s.targets,
  r.evaded_within::BIGINT AS evaded, r.evaded_within / s.targets AS success_rate,
  r.cheap_within::BIGINT AS cheap_evaded, r.cheap_within / s.targets AS cheap_success_rate
FROM running r JOIN per_strategy s USING (run_id, strategy)
WHERE r.is_point = 1"""

    defs["queries_to_evasion"] = f"""
SELECT run_id, strategy, count(*) AS targets, count(queries_to_first_evasion) AS evaded,
  min(queries_to_first_evasion) AS min_queries,
  quantile_cont(queries_to_first_evasion, 0.25) AS p25_queries,
  {strategy_sql("median_queries_to_evasion")} AS median_queries,
  quantile_cont(queries_to_first_evasion, 0.75) AS p75_queries,
  quantile_cont(queries_to_first_evasion, 0.9) AS p90_queries,
  max(queries_to_first_evasion) AS max_queries,
  avg(queries_to_first_evasion) AS mean_queries,
  count(queries_to_first_cheap_evasion) AS cheap_evaded,
  {strategy_sql("median_queries_to_cheap_evasion")} AS median_queries_to_cheap_evasion
FROM targets GROUP BY run_id, strategy"""

    defs["cost_distribution"] = f"""
WITH c AS (
  SELECT run_id, strategy, 'best' AS measure, min_cost AS cost FROM targets WHERE evaded AND min_cost IS NOT NULL
  UNION ALL
  SELECT run_id, strategy, 'first', first_evasion_cost FROM targets WHERE evaded AND first_evasion_cost IS NOT NULL)
SELECT run_id, strategy, measure, floor(cost / {COST_BIN}) * {COST_BIN} AS cost_from,
  floor(cost / {COST_BIN}) * {COST_BIN} + {COST_BIN} AS cost_to, count(*) AS targets,
  count(*) / sum(count(*)) OVER (PARTITION BY run_id, strategy, measure) AS share,
  floor(cost / {COST_BIN}) * {COST_BIN} < {cheap} AS cheap
FROM c GROUP BY run_id, strategy, measure, floor(cost / {COST_BIN})"""

    # the cheapest evading query per target (ties: the earliest); arg_min over a struct key is one hash aggregate
    defs["best_evasions"] = f"""
WITH b AS (
  SELECT unnest(arg_min(q, (q.cost, q.query_index, q.round))) FROM queries q WHERE q.evaded
  GROUP BY q.run_id, q.strategy, q.target_id)
SELECT b.run_id, b.strategy, b.target_id, t.original_score, b.round, b.query_index, b.score, b.cost,
  b.cost <= {cheap} AS cheap{"".join(f", b.{_ident(c)}" for c in cols)}
FROM b JOIN targets t USING (run_id, strategy, target_id)"""

    if feats:
        names = _list(_lit(f) for f in feats)
        orig = _list(f"t.{_ident(c)}::DOUBLE" for c in cols)
        best = _list(f"b.{_ident(c)}::DOUBLE" for c in cols)
        defs["evasion_feature_changes"] = f"""
WITH pairs AS (
  SELECT b.run_id, b.strategy, b.target_id, b.cost,
    unnest({names}) AS feature, unnest(range(1, {len(feats) + 1})) AS feature_order,
    unnest({orig}) AS original_value, unnest({best}) AS evading_value
  FROM best_evasions b JOIN targets t USING (run_id, strategy, target_id))
SELECT run_id, strategy, target_id, feature, feature_order, original_value, evading_value,
  CASE WHEN NOT (isnan(original_value) OR isnan(evading_value)) THEN evading_value - original_value END AS delta,
  coalesce(CASE WHEN isnan(original_value) OR isnan(evading_value) THEN isnan(original_value) <> isnan(evading_value)
                ELSE abs(evading_value - original_value) > 1e-9 * greatest(1.0, abs(original_value)) END,
           (evading_value IS NULL) <> (original_value IS NULL)) AS changed,
  cost AS evasion_cost
FROM pairs"""
    else:  # no feature columns: keep the view so queries against it still bind
        defs["evasion_feature_changes"] = """
SELECT NULL::VARCHAR AS run_id, NULL::VARCHAR AS strategy, NULL::BIGINT AS target_id, NULL::VARCHAR AS feature,
  NULL::BIGINT AS feature_order, NULL::DOUBLE AS original_value, NULL::DOUBLE AS evading_value, NULL::DOUBLE AS delta,
  NULL::BOOLEAN AS changed, NULL::DOUBLE AS evasion_cost WHERE false"""

    defs["feature_changes"] = """
SELECT run_id, strategy, feature, min(feature_order) AS feature_order, count(*) AS evasions,
  count(*) FILTER (WHERE changed) AS changed, avg(changed::DOUBLE) AS share_changed,
  avg(delta) FILTER (WHERE changed) AS mean_delta,
  avg(abs(delta)) FILTER (WHERE changed) AS mean_abs_delta,
  median(delta) FILTER (WHERE changed) AS median_delta,
  avg(CASE WHEN changed AND original_value <> 0 THEN delta / abs(original_value) END) AS mean_relative_delta,
  median(CASE WHEN changed AND original_value <> 0 THEN delta / abs(original_value) END) AS median_relative_delta
FROM evasion_feature_changes GROUP BY run_id, strategy, feature"""

    defs["success_by_segment"] = _segments_sql(con, dict(pairs))
    defs["round_measures"] = _rounds_sql(con)
    defs["round_strategy_measures"] = _round_strategy_sql()
    defs["model_performance"] = model_performance_sql(con)
    return defs


def model_performance_sql(con: duckdb.DuckDBPyConnection, split: str = "split") -> str:
    """AUC, false-positive rate and recall per run, model version and split, on clean traffic (the
    ``model_performance`` view); ``split`` is the expression that groups rows (``"'all'"``: all splits together)."""
    cols = set(_columns(con, "transactions"))
    clean = " AND NOT coalesce(is_probe, false) AND ring_id IS NULL" if {"is_probe", "ring_id"} <= cols else ""
    return """
WITH t AS (  -- clean traffic only: a campaign's probes and poisoning rows are left out
  SELECT run_id, model_version, {split} AS split, score, is_fraud, decision FROM transactions
  WHERE is_fraud IS NOT NULL{clean}),
g AS (
  SELECT run_id, model_version, split, score, sum(is_fraud) AS pos, count(*) - sum(is_fraud) AS neg
  FROM t GROUP BY run_id, model_version, split, score),
c AS (
  SELECT *, coalesce(sum(neg) OVER (PARTITION BY run_id, model_version, split ORDER BY score
    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS neg_below FROM g),
auc AS (
  SELECT run_id, model_version, split,
    CASE WHEN sum(pos) > 0 AND sum(neg) > 0 THEN sum(pos * (neg_below + 0.5 * neg)) / (sum(pos) * sum(neg)) END AS auc
  FROM c GROUP BY run_id, model_version, split),
rates AS (
  SELECT run_id, model_version, split, count(*) AS transactions, sum(is_fraud)::BIGINT AS frauds,
    avg((decision = 'decline')::DOUBLE) FILTER (WHERE is_fraud = 0) AS false_positive_rate,
    avg((decision = 'decline')::DOUBLE) FILTER (WHERE is_fraud = 1) AS recall,
    avg((decision = 'decline')::DOUBLE) AS decline_rate
  FROM t GROUP BY run_id, model_version, split)
SELECT r.run_id, r.model_version, r.split, r.transactions, r.frauds, a.auc, r.false_positive_rate, r.recall,
  r.decline_rate, m.threshold
FROM rates r JOIN auc a USING (run_id, model_version, split)
LEFT JOIN model_versions m ON m.run_id = r.run_id AND m.version = r.model_version""".format(split=split, clean=clean)


def _amount_band_sql(col: str) -> str:
    edges = AMOUNT_BANDS
    parts = [f"WHEN isnan({col}) THEN 'missing'", f"WHEN {col} < {edges[0]} THEN '< {edges[0]:,}'"]
    parts += [f"WHEN {col} < {hi} THEN '{lo:,}–{hi:,}'" for lo, hi in zip(edges, edges[1:])]
    return "CASE " + " ".join(parts) + f" WHEN {col} >= {edges[-1]} THEN '≥ {edges[-1]:,}' END"


def _segments_sql(con: duckdb.DuckDBPyConnection, columns: dict[str, str]) -> str:
    """Success per segment; each kind of segment is added only when the file has the column it needs (the world's
    ``merchant_cat`` and ``amount`` features, ``fraud_type`` and ``ring_id``). Every branch names its columns, so any
    branch can come first."""
    tcols = set(_columns(con, "targets"))
    xcols = set(_columns(con, "transactions"))
    names = ("run_id", "strategy", "target_id", "segment", "value", "value_order", "queries_to_first_evasion",
             "evaded", "cheap_evaded")

    def branch(segment: str, value: str, order: str, source: str = "targets", p: str = "") -> str:
        exprs = (f"{p}run_id", f"{p}strategy", f"{p}target_id", _lit(segment), value, order,
                 f"{p}queries_to_first_evasion", f"{p}evaded", f"{p}cheap_evaded")
        return "SELECT " + ", ".join(f"{e} AS {n}" for e, n in zip(exprs, names)) + f" FROM {source}"

    parts = []
    if "merchant_cat" in columns:
        mc = _ident(columns["merchant_cat"])
        parts.append(branch("merchant_cat", f"coalesce(CAST(TRY_CAST({mc} AS BIGINT) AS VARCHAR), 'unknown')",
                            f"{mc}::DOUBLE"))
    if "amount" in columns:
        amt = _ident(columns["amount"])
        order = f"CASE WHEN isnan({amt}) THEN NULL " + " ".join(f"WHEN {amt} < {e} THEN {i}" for i, e in enumerate(AMOUNT_BANDS)) + \
                f" WHEN {amt} >= {AMOUNT_BANDS[-1]} THEN {len(AMOUNT_BANDS)} END"
        parts.append(branch("amount_band", f"coalesce({_amount_band_sql(amt)}, 'unknown')", f"({order})::DOUBLE"))

    def joined(col: str, label: str) -> str:
        # the target's own transaction in the world's stream (target ids are transaction ids there)
        source = (f"targets t LEFT JOIN (SELECT x.run_id, x.transaction_id, arg_max(x.{col}, x.model_version) AS {col} "
                  f"FROM transactions x SEMI JOIN targets g ON g.run_id = x.run_id AND g.target_id = x.transaction_id "
                  f"GROUP BY x.run_id, x.transaction_id) x ON x.run_id = t.run_id AND x.transaction_id = t.target_id")
        return branch(label, f"coalesce(CAST(x.{col} AS VARCHAR), 'unknown')", f"TRY_CAST(x.{col} AS DOUBLE)",
                      source, "t.")

    if "fraud_type" in xcols and _fetch(con, "SELECT count(x.fraud_type) FROM transactions x SEMI JOIN targets g "
                                             "ON g.run_id = x.run_id AND g.target_id = x.transaction_id")[0][0]:
        parts.append(joined("fraud_type", "fraud_type"))
    if "ring_id" in tcols and _fetch(con, "SELECT count(ring_id) FROM targets")[0][0]:
        parts.append(branch("ring", "coalesce(CAST(ring_id AS VARCHAR), 'none')", "TRY_CAST(ring_id AS DOUBLE)"))
    elif "ring_id" in xcols and _fetch(con, "SELECT count(x.ring_id) FROM transactions x SEMI JOIN targets g "
                                            "ON g.run_id = x.run_id AND g.target_id = x.transaction_id")[0][0]:
        parts.append(joined("ring_id", "ring"))
    if not parts:
        parts.append(branch("all", "'all'", "0.0::DOUBLE"))
    union = "\n  UNION ALL ".join(parts)
    return f"""
WITH s AS (
  {union})
SELECT run_id, strategy, segment, value, min(value_order) AS value_order, count(*) AS targets,
  count(*) FILTER (WHERE evaded) AS evaded, {strategy_sql("success_rate")} AS success_rate,
  {strategy_sql("cheap_success_rate")} AS cheap_success_rate,
  {strategy_sql("median_queries_to_evasion")} AS median_queries_to_evasion
FROM s GROUP BY run_id, strategy, segment, value"""


def _rounds_sql(con: duckdb.DuckDBPyConnection) -> str:
    """Per round: the campaign's own ``rounds`` row (when the run wrote one), the oracle queries of that round and the
    defence events. Rounds come from either source, so a plain run (one round 0 of queries) reads the same way."""
    cheap = f"{CHEAP_COST!r}"
    rcols = _columns(con, "rounds")
    has_rounds = {"run_id", "round"} <= set(rcols)
    own = ["queries", "attacked_targets", "evaded_targets", "query_success_rate", "cheap_evaded_targets",
           "query_cheap_success_rate", "defence_events"]
    extra = [c for c in rcols if c not in {"run_id", "round", *own}] if has_rounds else []
    keys = "SELECT run_id, round FROM rounds UNION " if has_rounds else ""
    events = ("SELECT run_id, round, count(*) AS defence_events FROM defence_events GROUP BY run_id, round"
              if _columns(con, "defence_events") else
              "SELECT NULL::VARCHAR AS run_id, NULL::INTEGER AS round, 0 AS defence_events WHERE false")
    join = "LEFT JOIN (SELECT DISTINCT ON (run_id, round) * FROM rounds) r ON r.run_id = k.run_id AND r.round = k.round" \
        if has_rounds else ""
    return f"""
WITH k AS ({keys}SELECT DISTINCT run_id, round FROM queries),
q AS (
  SELECT run_id, round, count(*) AS queries, count(DISTINCT (strategy, target_id)) AS attacked_targets,
    count(DISTINCT (strategy, target_id)) FILTER (WHERE evaded) AS evaded_targets,
    count(DISTINCT (strategy, target_id)) FILTER (WHERE evaded AND cost <= {cheap}) AS cheap_evaded_targets
  FROM queries GROUP BY run_id, round),
d AS ({events})
SELECT k.run_id, k.round{"".join(f", r.{_ident(c)}" for c in extra)},
  coalesce(q.queries, 0) AS queries, coalesce(q.attacked_targets, 0) AS attacked_targets,
  coalesce(q.evaded_targets, 0) AS evaded_targets, q.evaded_targets / q.attacked_targets AS query_success_rate,
  coalesce(q.cheap_evaded_targets, 0) AS cheap_evaded_targets,
  q.cheap_evaded_targets / q.attacked_targets AS query_cheap_success_rate,
  coalesce(d.defence_events, 0) AS defence_events
FROM k {join}
LEFT JOIN q ON q.run_id = k.run_id AND q.round = k.round
LEFT JOIN d ON d.run_id = k.run_id AND d.round = k.round"""


def _round_strategy_sql() -> str:
    """Per round and strategy, from the oracle query log."""
    cheap = f"{CHEAP_COST!r}"
    return f"""
SELECT run_id, round, strategy, count(*) AS queries, count(DISTINCT target_id) AS targets,
  count(DISTINCT target_id) FILTER (WHERE evaded) AS evaded,
  count(DISTINCT target_id) FILTER (WHERE evaded) / count(DISTINCT target_id) AS success_rate,
  count(DISTINCT target_id) FILTER (WHERE evaded AND cost <= {cheap}) AS cheap_evaded,
  count(DISTINCT target_id) FILTER (WHERE evaded AND cost <= {cheap}) / count(DISTINCT target_id) AS cheap_success_rate,
  avg(score) AS mean_score, min(score) AS min_score
FROM queries GROUP BY run_id, round, strategy"""


def create_views(con: duckdb.DuckDBPyConnection, *, temporary: bool = False) -> list[str]:
    """Create (or replace) every view on ``con``; idempotent. Returns the names created.

    The runner calls this on its store connection before finishing a run; on a finished file, open it read-write
    (``duckdb.connect(path)``) or use :func:`install_views`. With ``temporary`` the views live only on this
    connection (how :func:`open_run` serves files whose views are missing or stale, without writing to them).
    """
    if not _columns(con, "targets"):
        raise StoreError("not a fraudsim run file (no targets table)")
    kind = "TEMP VIEW" if temporary else "VIEW"
    defs = view_definitions(con)
    for name in VIEW_NAMES:
        _fetch(con, f"CREATE OR REPLACE {kind} {name} AS {defs[name]}")
    if not temporary:
        _fetch(con, "INSERT OR REPLACE INTO fraudsim_meta VALUES ('views_version', ?)", [VIEWS_VERSION])
    return list(VIEW_NAMES)


def install_views(path: str | Path) -> list[str]:
    """Add (or refresh) the views in a finished run file, opening it read-write for a moment."""
    con = open_readonly(path)  # checks it is a fraudsim file first
    con.close()
    try:
        con = connect_run_file(path)  # the run file's row groups, so its first checkpoint does not rewrite them
    except duckdb.Error as exc:
        raise StoreError(f"cannot open for writing ({str(exc).splitlines()[0][:120]})", file=str(path)) from None
    try:
        return create_views(con)
    finally:
        con.close()


def has_current_views(con: duckdb.DuckDBPyConnection) -> bool:
    """The file's views are this version's, and all of them are there (one dropped by hand is made again)."""
    rows = _fetch(con, "SELECT value FROM fraudsim_meta WHERE key = 'views_version'")
    if not rows or rows[0][0] != VIEWS_VERSION:
        return False
    present = {r[0] for r in _fetch(con, "SELECT view_name FROM duckdb_views() WHERE schema_name = 'main'")}
    return all(name in present for name in VIEW_NAMES)


#: tables every run file has (a campaign's too); a file without one is damaged or hand-edited
RUN_TABLES = ("runs", "targets", "queries", "transactions", "model_versions")


def require_run_tables(con: duckdb.DuckDBPyConnection, file: str | None = None) -> None:
    """Refuse a file that lacks one of :data:`RUN_TABLES` (one line, before a reader's query fails on it)."""
    missing = [t for t in RUN_TABLES if not _columns(con, t)]
    if missing:
        raise StoreError(f"not a complete fraudsim run file (no {missing[0]} table)", file=file)


def open_run(path: str | Path) -> duckdb.DuckDBPyConnection:
    """Open a run file read-only with the views available (temporary ones when the file lacks current views)."""
    con = open_readonly(path)
    try:
        require_run_tables(con)
        if not has_current_views(con):
            create_views(con, temporary=True)
    except (duckdb.Error, StoreError) as exc:
        con.close()
        reason = exc.reason if isinstance(exc, StoreError) else f"unreadable run file ({str(exc).splitlines()[0][:120]})"
        raise StoreError(reason, file=str(path)) from None
    return con


def latest_run_id(con: duckdb.DuckDBPyConnection) -> str:
    if not _columns(con, "runs"):  # a sweep whose variants all failed, or a damaged file
        raise StoreError("the file holds no run (no runs table)")
    rows = _fetch(con, "SELECT run_id FROM runs ORDER BY started_at DESC NULLS LAST, run_id LIMIT 1")
    if not rows:
        raise StoreError("the file holds no run")
    return rows[0][0]


def resolve_run_id(con: duckdb.DuckDBPyConnection, run_id: str | None, *, file: str | None = None) -> str:
    if run_id is None:
        try:
            return latest_run_id(con)
        except StoreError as exc:
            raise StoreError(exc.reason, file=file) from None
    if not _columns(con, "runs"):
        raise StoreError("the file holds no run (no runs table)", file=file, field="run_id")
    if not _fetch(con, "SELECT 1 FROM runs WHERE run_id = ?", [run_id]):
        known = [r[0] for r in _fetch(con, "SELECT run_id FROM runs ORDER BY run_id LIMIT 5")]
        raise StoreError(f"no run {run_id!r} in this file (runs: {', '.join(known) or 'none'})", file=file, field="run_id")
    return run_id
