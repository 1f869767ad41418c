"""Wires a scenario into one run: data or world, model, targets, oracle, strategies, store, summary.

:func:`prepare` does everything that can fail on bad input and touches no output file; :func:`run` then writes
the run to DuckDB (to ``<output>.partial`` first, moved into place only when finished).
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Protocol, Sequence, cast, overload

import numpy as np
import polars as pl
import pyarrow as pa

from . import __version__
from .attack import run_strategy, target_rng
from .errors import DataError, ScenarioError
from .kernels import get_kernels
from .measures import SUCCESS_BUDGETS, budgets_for, has_exact, summary_sql  # noqa: F401  (re-exported)
from .oracle import Oracle
from .scenario import Scenario
from .schema import FeatureSchema, frame_to_matrix
from .recorder import Recorder, derive, now, recording
from .result import RunResult, summarize  # noqa: F401  (re-exported: simulator.runner.RunResult)
from .strategies import Problem, get_strategy
from .target import TargetModel, load_model
from .target.train import DEFAULT_KIND, check_trainable, roc_auc, train_model

if TYPE_CHECKING:
    from .campaign.setup import CampaignPrepared

WORLD_COLUMNS = ("timestamp", "day", "customer_id", "merchant_id", "device_id", "fraud_type")


@dataclass
class Prepared:
    """Everything a run needs, checked: the model, its threshold, the feature schema, the traffic and targets."""

    scenario: Scenario
    model: TargetModel
    threshold: float
    threshold_rule: str
    schema: FeatureSchema
    frame: pl.DataFrame  # the traffic the targets come from (a team's data, or the world's later days)
    X: np.ndarray  # its features in model order
    labels: np.ndarray | None
    scores: np.ndarray
    ids: np.ndarray  # target ids: row numbers in the data file, or world transaction ids
    target_rows: np.ndarray  # rows of ``frame`` under attack
    train_frame: pl.DataFrame | None = None  # the world's training days, when the model was trained here
    model_card: dict = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    relations: Any = None  # simulator.relations.RelationArrays, or None without relations
    extras: np.ndarray | None = None  # (rows of frame, e): the extra data columns the relations read


Progress = Callable[[str, int | None], Callable[[int], None]]  # (description, total) -> advance(n)


def _no_progress(description: str, total: int | None) -> Callable[[int], None]:
    return lambda n: None


def read_data(path: Path, *, field_name: str = "data.path") -> pl.DataFrame:
    import stat as _stat

    try:
        st = path.stat()
    except FileNotFoundError:
        raise DataError("file not found", file=str(path), field=field_name) from None
    except OSError as exc:
        raise DataError(f"cannot be read ({exc.strerror or type(exc).__name__})", file=str(path), field=field_name) from None
    if not _stat.S_ISREG(st.st_mode):
        raise DataError("a folder, not a data file" if _stat.S_ISDIR(st.st_mode) else
                        "not a regular file (a device, a FIFO or a socket)", file=str(path), field=field_name)
    if st.st_size == 0:
        raise DataError("the file is empty (no header, no rows)", file=str(path), field=field_name)
    csv = path.suffix.lower() in (".csv", ".tsv")
    try:
        if csv:
            sep = "\t" if path.suffix.lower() == ".tsv" else ","
            return _csv_header_names(pl.read_csv(path, separator=sep), path, sep)
        return pl.read_parquet(path)
    except Exception as exc:  # polars raises several error types for unreadable files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"cannot be read as {'CSV' if csv else 'Parquet'} ({first[:160]})", file=str(path),
                        field=field_name) from None


def check_feature_data(frame: pl.DataFrame, names, *, source: str) -> None:
    """Before bounds or scores are computed from the data: it has rows, and every model feature is a column of
    numbers (or booleans) with at least one value. One-line ``DataError`` naming the column otherwise."""
    if frame.height == 0:
        raise DataError("the data has no rows (only a header, or an empty file)", file=source, field="data.path")
    for name in names:
        col = frame.get_column(name)
        if not (col.dtype.is_numeric() or col.dtype == pl.Boolean or col.dtype == pl.Null):
            raise DataError(f"non-numeric model feature column (type {col.dtype}); it must hold numbers", file=source,
                            field=name)
        if col.dtype == pl.Null or col.null_count() == frame.height:
            raise DataError("model feature column has no values (every row is null)", file=source, field=name)


def _csv_header_names(frame: pl.DataFrame, path: Path, sep: str) -> pl.DataFrame:
    """Column names as the CSV standard reads the header (Polars keeps a quoted name's doubled quotes: ``"a""b"``)."""
    import csv

    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            header = next(csv.reader(fh, delimiter=sep))
    except (OSError, UnicodeDecodeError, StopIteration, csv.Error):
        return frame
    if len(header) == frame.width and len(set(header)) == len(header) and header != frame.columns:
        frame = frame.rename(dict(zip(frame.columns, header)))
    return frame


@overload
def prepare(scenario: Scenario, *, progress: Progress = ..., validate_only: Literal[False] = ...,
            data: Any = ..., model: Any = ...) -> Prepared: ...
@overload
def prepare(scenario: Scenario, *, progress: Progress = ..., validate_only: bool,
            data: Any = ..., model: Any = ...) -> Prepared | None: ...
def prepare(scenario: Scenario, *, progress: Progress = _no_progress, validate_only: bool = False,
            data: Any = None, model: Any = None) -> Prepared | None:
    """Load and check everything; for a world scenario, build the world and train the baseline model.

    With ``validate_only`` a world scenario stops after checking its configuration (no world, no training) and
    returns None (so does a campaign); the model, when one is given, is loaded and makes one test scoring call (an
    endpoint must answer, in shape). A campaign scenario gives a
    :class:`~simulator.campaign.setup.CampaignPrepared`, which carries the attributes read from a ``Prepared``
    (typed as one here so callers need not narrow; :func:`execute` tells them apart by ``is_campaign``).

    ``data`` (a Polars or pandas DataFrame, or a path) and ``model`` (a model object, a path or a URL) stand in
    for the scenario's ``data`` and ``model`` sections (the notebook API)."""
    try:
        get_kernels(scenario.attack.backend)  # fails early for backend: gpu without a GPU
    except ScenarioError as exc:
        raise ScenarioError(exc.reason, file=scenario.source, field=exc.field) from None
    if scenario.adversaries is not None:  # a campaign: rounds of rings against the defence (simulator/campaign)
        from .campaign.setup import prepare_campaign

        return prepare_campaign(scenario, progress=progress, validate_only=validate_only)
    if scenario.uses_world and data is None:
        return _prepare_world(scenario, progress, validate_only, model)
    return _prepare_data(scenario, progress, validate_only, data, model)


def load_target(scenario: Scenario, model: Any = None) -> TargetModel:
    """The scenario's model (``model.path`` or ``model.url``), or ``model`` (an object, path or URL) instead,
    with ``model.features`` as the input order of a model saved without names."""
    src = model if model is not None else scenario.model
    return load_model(src, features=scenario.model.features, source=scenario.source)


def probe(model: TargetModel, X: np.ndarray) -> None:
    """One test scoring call through the adapter (``fraudsim validate``): the model answers, in shape."""
    rows = np.asarray(X[:2], dtype=np.float64)
    model.check_scores(model.predict_score(rows), len(rows))


def frame_from(data: Any) -> tuple[pl.DataFrame, str]:
    """A data argument of the notebook API as a Polars frame, and a name for messages."""
    if isinstance(data, pl.DataFrame):
        return data, "<DataFrame>"
    if isinstance(data, (str, Path)):
        return read_data(Path(data)), str(data)
    if type(data).__module__.startswith("pandas"):
        try:
            return pl.from_pandas(data), "<pandas DataFrame>"
        except Exception as exc:  # pyarrow/polars conversion errors of odd column types
            raise DataError(f"cannot convert the pandas DataFrame ({str(exc).splitlines()[0][:160]})",
                            field="data") from None
    raise DataError(f"data must be a Polars or pandas DataFrame or a file path, not {type(data).__name__}", field="data")


def _threshold_for(scenario: Scenario, model: TargetModel) -> tuple[float, str]:
    if scenario.model.threshold is not None:
        return float(scenario.model.threshold), "given in the scenario"
    card_thr = (model.card or {}).get("threshold")
    if isinstance(card_thr, (int, float)) and 0 <= card_thr <= 1:
        return float(card_thr), "from the model card: " + str((model.card or {}).get("threshold_rule", ""))
    raise ScenarioError("required: the decline threshold (no model card beside the model gives one)",
                        file=scenario.source, field="model.threshold")


class _HasFeatureNames(Protocol):
    """What :func:`_schema` reads of a model: its feature names (harden passes names without a model file)."""

    @property
    def feature_names(self) -> Sequence[str]: ...


def _schema(scenario: Scenario, model: _HasFeatureNames, frame: pl.DataFrame, default_specs: dict | None = None) -> FeatureSchema:
    specs = {k: v.as_dict() for k, v in scenario.features.items()} if scenario.features is not None else (default_specs or {})
    try:
        schema = FeatureSchema.from_mapping(model.feature_names, specs, cost_scale=scenario.cost_scale).with_bounds_from(frame)
        schema.arrays()  # e.g. cost_scale iqr without the data to measure it: fail before the first query
    except ScenarioError as exc:
        raise ScenarioError(exc.reason, file=scenario.source, field=exc.field) from None
    if not schema.mutable_names:
        raise ScenarioError("no mutable feature: list at least one feature the attacker can change",
                            file=scenario.source, field="features")
    try:
        schema.arrays()  # what the kernels get: fails here, not after the first query, on a missing min/max
    except ScenarioError as exc:
        raise ScenarioError(exc.reason, file=scenario.source, field=exc.field) from None
    return schema


def _relations(scenario: Scenario, model: TargetModel, schema: FeatureSchema, columns) -> tuple[FeatureSchema, Any]:
    """Compile the scenario's relations against the model's features and the data's columns; derived features
    become frozen in the schema with cost 0 (they follow their inputs and cost nothing of their own; a spec in
    ``features`` only documents their range)."""
    if not scenario.relations:
        return schema, None
    from dataclasses import replace

    from .relations import check_feasible_space, compile_relations, parse_relations

    src = scenario.source
    rels = parse_relations(scenario.relations, source=src)
    ra = compile_relations(rels, model.feature_names, list(columns), source=src)
    specs = list(schema.specs)
    for j in map(int, np.flatnonzero(ra.derived)):  # listed in features or not: never moved directly, costs nothing
        specs[j] = replace(specs[j], mutable=False, cost=0.0)
    schema = FeatureSchema(specs)
    check_feasible_space(ra, schema.arrays(), source=src)
    return schema, ra


def _extras(frame: pl.DataFrame, ra) -> np.ndarray | None:
    if ra is None or not ra.extra_names:
        return None
    return frame_to_matrix(frame, ra.extra_names)


def _select_targets(scenario: Scenario, labels: np.ndarray | None, scores: np.ndarray, threshold: float,
                    *, spread: bool = False) -> np.ndarray:
    """Rows to attack: the first ``limit`` matching rows in row order or, with ``spread`` (world runs, where
    neighbouring frauds come from the same burst), a seeded sample of ``limit`` of them, kept in row order."""
    kind = scenario.attack.targets
    declined = scores >= threshold
    if kind == "declined":
        mask = declined
    else:
        if labels is None:
            raise DataError(f"attack.targets '{kind}' needs a label column", file=scenario.source, field="data.label")
        mask = (labels == 1) & declined if kind == "caught_fraud" else (labels == 1)
    rows = np.flatnonzero(mask)
    limit = scenario.attack.limit
    if limit is not None and spread and len(rows) > limit:
        rows = np.sort(np.random.default_rng(scenario.seed).choice(rows, limit, replace=False))
    elif limit is not None:
        rows = rows[:limit]
    if len(rows) == 0:
        raise DataError(f"no {kind.replace('_', ' ')} to attack: no row is a target at threshold {threshold:g}",
                        file=scenario.source, field="attack.targets")
    return rows


def _labels(frame: pl.DataFrame, label: str, source: str, needed: bool) -> np.ndarray | None:
    if label not in frame.columns:
        if needed:
            raise DataError(f"label column {label!r} is missing", file=source, field="data.label")
        return None
    col = frame.get_column(label)
    where = f"data.label ({label})"
    if not (col.dtype.is_numeric() or col.dtype == pl.Boolean):
        raise DataError(f"the label column must be 0/1, got {col.dtype} values such as {col.drop_nulls().head(1).to_list()}",
                        file=source, field=where)
    if col.null_count():
        i = int(np.argmax(col.is_null().to_numpy()))
        raise DataError(f"the label column must be 0/1 without missing values ({col.null_count()} missing, first at row {i})",
                        file=source, field=where)
    y = col.cast(pl.Float64).to_numpy()
    bad = ~np.isin(y, [0.0, 1.0])
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"the label column must be 0/1 ({int(bad.sum())} rows are not; first: row {i}, value {y[i]:g})",
                        file=source, field=where)
    return y.astype(np.int8)


def _prepare_data(scenario: Scenario, progress: Progress, validate_only: bool = False, data: Any = None,
                  model_obj: Any = None) -> Prepared:
    t0 = time.perf_counter()
    if not scenario.model.given and model_obj is None:  # allowed only for fraudsim harden, which trains one
        raise ScenarioError("a run on a team's data needs the model to attack (model.path or model.url; fraudsim "
                            "harden can train one from train:)", file=scenario.source, field="model.path")
    model = load_target(scenario, model_obj)
    threshold, rule = _threshold_for(scenario, model)
    if data is not None:
        frame, src = frame_from(data)
    else:
        assert scenario.data is not None
        src = str(scenario.data.path)
        frame = read_data(scenario.data.path)
    if frame.height == 0:
        raise DataError("the file has no rows (only a header): nothing to attack", file=src, field="data.path")
    model.check_columns(frame.columns, source=src)
    check_feature_data(frame, model.feature_names, source=src)
    schema = _schema(scenario, model, frame)
    schema.validate_frame(frame, source=src)
    schema, ra = _relations(scenario, model, schema, frame.columns)
    label = scenario.data.label if scenario.data is not None else "is_fraud"
    labels = _labels(frame, label, src, needed=scenario.attack.targets != "declined")
    X = frame_to_matrix(frame, model.feature_names)
    if validate_only:
        probe(model, X)
    scores = model.predict_score(X)
    rows = _select_targets(scenario, labels, scores, threshold)
    return Prepared(scenario=scenario, model=model, threshold=threshold, threshold_rule=rule, schema=schema,
                    frame=frame, X=X, labels=labels, scores=scores, ids=np.arange(len(frame), dtype=np.int64),
                    target_rows=rows, model_card=dict(model.card or {}), timings={"prepare_s": time.perf_counter() - t0},
                    relations=ra, extras=_extras(frame, ra))


def _prepare_world(scenario: Scenario, progress: Progress, validate_only: bool, model_obj: Any = None) -> Prepared | None:
    from .world import FEATURES, LABEL, World, WorldConfig, default_feature_specs

    ws = scenario.world_spec
    if scenario.features is not None:
        unknown = [n for n in scenario.features if n not in FEATURES]
        if unknown:
            raise ScenarioError(f"the world has no feature {unknown[0]!r} (features: {', '.join(FEATURES)})",
                                file=scenario.source, field=f"features.{unknown[0]}")
    if validate_only:
        if scenario.features is not None:  # the specs themselves (bounds come from the world when it runs)
            try:
                FeatureSchema.from_mapping(list(FEATURES), {k: v.as_dict() for k, v in scenario.features.items()})
            except ScenarioError as exc:
                raise ScenarioError(exc.reason, file=scenario.source, field=exc.field) from None
        if scenario.model.given or model_obj is not None:
            model = load_target(scenario, model_obj)
            model.check_columns(FEATURES, source="<world>")
            probe(model, np.zeros((2, len(model.feature_names))))
        else:
            check_trainable(scenario.model.kind or DEFAULT_KIND, source=scenario.source)
        return None
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    cfg = WorldConfig(customers=ws.customers, merchants=ws.merchants, days=ws.days, fraudsters=ws.fraudsters,
                      fraud_rate_scale=ws.fraud_rate_scale)
    try:
        world = World(cfg, seed=scenario.seed)
    except ValueError as exc:  # the world's own limits, e.g. too few merchants for its cities
        raise ScenarioError(str(exc).replace("WorldConfig.", ""), file=scenario.source, field="world") from None
    advance = progress("world", ws.days)
    days = []
    for _ in range(ws.days):
        days.append(world.step())
        advance(1)
    stream = pl.concat(days)
    timings["world_s"] = time.perf_counter() - t0
    from .baseline import split_world

    train, test, cut = split_world(stream, ws.days, ws.train_fraction)
    if test.height == 0 or train.height == 0:
        raise ScenarioError("the world is too small to split into training and attack days", file=scenario.source, field="world.days")
    t1 = time.perf_counter()
    names = list(FEATURES)
    X_test = frame_to_matrix(test, names)
    y_test = test.get_column(LABEL).to_numpy().astype(np.int8)
    if scenario.model.given or model_obj is not None:
        model = load_target(scenario, model_obj)
        model.check_columns(test.columns, source="<world>")
        X_test = frame_to_matrix(test, model.feature_names)
        threshold, rule = _threshold_for(scenario, model)
        card = dict(model.card or {})
    else:
        adv = progress("train model", None)
        trained = train_model(frame_to_matrix(train, names), train.get_column(LABEL).to_numpy(), X_test, y_test, names,
                              kind=scenario.model.kind or DEFAULT_KIND, seed=scenario.seed, fpr=scenario.model.threshold_fpr,
                              provenance={"world": cfg.__dict__, "world_seed": scenario.seed, "train_days": [0, cut - 1]})
        adv(1)
        model, card = trained.model, trained.card
        if scenario.model.threshold is not None:
            threshold, rule = float(scenario.model.threshold), "given in the scenario"
        else:
            threshold, rule = trained.threshold, card["threshold_rule"]
    timings["train_s"] = time.perf_counter() - t1
    schema = _schema(scenario, model, stream, default_feature_specs())
    schema.validate_frame(test, source="<world>")
    schema, ra = _relations(scenario, model, schema, test.columns)
    scores = model.predict_score(X_test)
    rows = _select_targets(scenario, y_test, scores, threshold, spread=True)
    return Prepared(scenario=scenario, model=model, threshold=threshold, threshold_rule=rule, schema=schema,
                    frame=test, X=X_test, labels=y_test, scores=scores,
                    ids=test.get_column("transaction_id").to_numpy().astype(np.int64), target_rows=rows,
                    train_frame=train, model_card=card, timings=timings, relations=ra, extras=_extras(test, ra))


def run_id_for(prep: Prepared) -> str:
    """Deterministic: the same scenario, model and data give the same id, so reruns give identical tables."""
    h = hashlib.sha256()
    h.update(prep.scenario.to_yaml().encode())
    h.update(str(prep.model.sha256 or prep.model_card.get("test_auc")).encode())
    h.update(np.ascontiguousarray(prep.X[prep.target_rows]).tobytes())
    h.update(__version__.encode())
    return f"{prep.scenario.name}-{h.hexdigest()[:12]}"


def _strategy_tables(done, target_ids, feasible, cls, run_id: str, sname: str) -> dict[str, dict]:
    """Rows a strategy keeps per target in tables of its own (``Strategy.records``); infeasible targets get the
    strategy's ``infeasible_record``."""
    out: dict[str, dict[str, list]] = {}
    for t, ok, s in zip(target_ids, feasible, done):
        recs = s.records() if s is not None else cls.infeasible_record()
        for table, rec in recs.items():
            cols = out.setdefault(table, {"run_id": [], "strategy": [], "target_id": []})
            for key, v in (("run_id", run_id), ("strategy", sname), ("target_id", int(t)), *rec.items()):
                cols.setdefault(key, []).append(v)
    return out


WORLD_COLUMN_TYPES = {"timestamp": pl.Int64, "day": pl.Int32, "customer_id": pl.Int32, "merchant_id": pl.Int32,
                      "device_id": pl.Int32, "fraud_type": pl.Int32}


def _transactions_table(prep: Prepared, run_id: str, columns: tuple[str, ...]) -> pa.Table:
    parts = []
    for split, frame in (("train", prep.train_frame), ("test", prep.frame)):
        if frame is None:
            continue
        X = prep.X if frame is prep.frame else frame_to_matrix(frame, prep.model.feature_names)
        scores = prep.scores if frame is prep.frame else prep.model.predict_score(X)
        n = frame.height
        cols: dict[str, Any] = {
            "run_id": pl.Series([run_id]).cast(pl.Categorical).extend_constant(run_id, n - 1) if n else pl.Series([], dtype=pl.Utf8),
            # the ids targets are known by (row numbers of a team's file, whatever its own columns are called)
            "transaction_id": pl.Series(prep.ids, dtype=pl.Int64) if frame is prep.frame
            else frame.get_column("transaction_id").cast(pl.Int64),
            "is_fraud": (pl.Series(prep.labels) if frame is prep.frame and prep.labels is not None else
                         frame.get_column("is_fraud") if "is_fraud" in frame.columns else pl.Series([None] * n)).cast(pl.Int32),
            "score": pl.Series(scores),
            "decision": pl.Series(np.where(scores >= prep.threshold, "decline", "approve")).cast(pl.Categorical),
            "model_version": pl.repeat(1, n, dtype=pl.Int32, eager=True),
            "split": pl.repeat(split, n, eager=True).cast(pl.Categorical),
        }
        for c in WORLD_COLUMNS:  # a team's file may have a column of that name meaning something else: NULL then
            if c in frame.columns:
                cols[c] = frame.get_column(c).cast(WORLD_COLUMN_TYPES[c], strict=False) \
                    if frame.get_column(c).dtype.is_numeric() else pl.repeat(None, n, dtype=WORLD_COLUMN_TYPES[c], eager=True)
        for j, c in enumerate(columns):
            cols[c] = pl.Series(X[:, j])
        parts.append(pl.DataFrame(cols))
    return pl.concat(parts, how="vertical_relaxed").to_arrow()


def execute(prep: Prepared, *, output: Path | None = None, progress: Progress = _no_progress) -> RunResult:
    """Run every strategy against every target and write the run; ``prepare`` must have succeeded.

    The run's own tables are committed, the run marked finished and the file moved into place before any step
    derived from them (:func:`~simulator.recorder.derive`), so a failure there never costs the attack."""
    if getattr(prep, "is_campaign", False):
        from .campaign.engine import execute_campaign

        # cast: prepare returns a CampaignPrepared (typed as Prepared) for a campaign, marked by is_campaign
        return execute_campaign(cast("CampaignPrepared", prep), output=output, progress=progress)
    sc = prep.scenario
    path = Path(output) if output is not None else sc.output_path()
    with recording(path, prep.model.feature_names, run_id_for(prep)) as rec:
        result = _execute(prep, rec, progress)
    result.warnings.extend(derive(result.path))
    return result


def _execute(prep: Prepared, rec: Recorder, progress: Progress) -> RunResult:
    sc = prep.scenario
    timings = dict(prep.timings)
    started = now()
    rec.start(scenario=sc, model=prep.model, threshold=prep.threshold, feedback=sc.attack.feedback,
              budget=sc.attack.budget, started_at=started)
    auc = prep.model_card.get("test_auc")
    if auc is None and prep.labels is not None:
        auc = roc_auc(prep.labels, prep.scores)
    rec.model_version(version=1, model=prep.model, threshold=prep.threshold, rule=prep.threshold_rule, auc=auc,
                      card=prep.model_card, created_at=started)
    t0 = time.perf_counter()
    rec.append("transactions", _transactions_table(prep, rec.run_id, rec.columns))
    timings["transactions_s"] = time.perf_counter() - t0

    rows = prep.target_rows
    originals = np.ascontiguousarray(prep.X[rows])
    target_ids = prep.ids[rows]
    kernels = get_kernels(sc.attack.backend)
    sa = prep.schema.arrays()
    log = rec.query_log()
    ra = prep.relations
    extras = None if prep.extras is None else np.ascontiguousarray(prep.extras[rows])
    feasible = np.ones(len(rows), bool)
    if ra is not None:  # a target whose relations cannot be met even by repairing its original is infeasible
        idx = np.arange(len(rows), dtype=np.int64)
        anchors = kernels.repair(kernels.project(originals, originals, idx, sa), originals, idx, extras, sa, ra)
        feasible = ~kernels.relation_violations(anchors, originals, idx, extras, ra)
    timings["infeasible_targets"] = float((~feasible).sum())
    approved = prep.X[(prep.scores < prep.threshold)][:1000]
    with rec.originals(target_ids, prep.scores[rows], originals):
        for s_idx, sname in enumerate(sc.attack.strategies):
            t1 = time.perf_counter()
            cls = get_strategy(sname)
            from .defences.runtime import build_runtime

            defence = build_runtime(sc.defence, prep, strategy=sname, store=rec, run_id=rec.run_id)
            oracle = Oracle(prep.model, threshold=prep.threshold, feedback=sc.attack.feedback, budget=sc.attack.budget,
                            originals=originals, schema_arrays=sa, kernels=kernels, strategy=sname,
                            target_ids=target_ids, log=log, relations=ra, extras=extras, defence=defence)
            live = np.flatnonzero(feasible)  # infeasible targets get no query (see the exact strategy's table)
            problems = [Problem(x0=originals[i], schema=sa, kernels=kernels, budget=sc.attack.budget,
                                feedback=sc.attack.feedback, approved_examples=approved,
                                model=prep.model if sc.attack.grant_model else None, relations=ra,
                                threshold=prep.threshold if sc.attack.grant_model else None,
                                extras=None if extras is None else extras[i]) for i in range(len(rows))]
            rngs = [target_rng(sc.seed, s_idx, int(t)) for t in target_ids]
            advance = progress(f"attack: {sname}", len(rows) * sc.attack.budget)
            done = run_strategy(cls, dict(sc.attack.params.get(sname, {})), oracle=oracle, problems=problems,
                                rngs=rngs, batch_size=sc.attack.batch_size, on_step=advance, only=live)
            _record_strategy(rec, cls, sname, done, target_ids, feasible)
            advance(len(rows) * sc.attack.budget - int(oracle.used.sum()))  # finished early: fill the bar
            log.flush()
            if defence is not None:
                defence.flush()
            rec.targets_from_queries(sname)
            timings[f"attack_{sname}_s"] = time.perf_counter() - t1
    path = rec.finish()
    return RunResult(path=path, run_id=rec.run_id, scenario=sc, timings=timings)


def _record_strategy(rec: Recorder, cls, sname: str, done, target_ids: np.ndarray, feasible: np.ndarray) -> None:
    """A strategy's own tables (``Strategy.records``) and its ``strategy_metrics`` rows."""
    for table, recs in _strategy_tables(done, target_ids, feasible, cls, rec.run_id, sname).items():
        rec.append(table, recs)
    done = [s for s in done if s is not None]
    metrics = [(int(t), k, float(v)) for t, s in zip(target_ids[feasible], done) for k, v in s.metrics().items()]
    if metrics:
        t_ids, keys, values = zip(*metrics)
        rec.append("strategy_metrics", {"run_id": [rec.run_id] * len(metrics), "strategy": [sname] * len(metrics),
                                        "target_id": list(t_ids), "metric": list(keys), "value": list(values)})


def run(scenario: Scenario | dict | str | Path | None = None, *, output: str | Path | None = None,
        progress: Progress | bool | None = None, data: Any = None, model: Any = None) -> RunResult:
    """Run a scenario (an object, a dict, a YAML path, or ``None`` for the built-in default) and return the result.

    ``progress``: ``None`` shows bars in a Jupyter notebook and nothing elsewhere, ``True`` always shows progress
    (bars, or plain lines on stderr when it is not a terminal), ``False`` never.
    ``data`` (a Polars or pandas DataFrame) and ``model`` (an XGBoost/LightGBM booster or classifier, an
    ``onnxruntime.InferenceSession``, a model file or a URL) stand in for the scenario's ``data`` and ``model``.

    Examples
    --------
    >>> import simulator as fs, tempfile, os
    >>> sc = fs.Scenario.from_dict({"name": "tiny", "seed": 1, "world": {"customers": 1500, "days": 6},
    ...                             "attack": {"limit": 3, "budget": 20, "strategies": ["random"]}})
    >>> res = fs.run(sc, output=os.path.join(tempfile.mkdtemp(), "tiny.duckdb"))
    >>> res.summary()["targets"].to_list()
    [3]
    """
    if scenario is None:
        scenario = Scenario.default()
    elif isinstance(scenario, dict):
        scenario = Scenario.from_dict(scenario, base_dir=Path.cwd(), source="<dict>")
    elif not isinstance(scenario, Scenario):
        scenario = Scenario.from_yaml(scenario)
    from .progress import api_progress  # None: tqdm bars in a notebook, nothing elsewhere (simulator/progress.py)

    with api_progress(progress) as prog:
        prep = prepare(scenario, progress=prog, data=data, model=model)
        return execute(prep, output=Path(output) if output else None, progress=prog)
