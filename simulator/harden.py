"""``fraudsim harden``: train hardened candidates of a fraud model and measure each one before/after.

The scenario names the training data (``train:``, or the world's training days), the holdout (``data:``, or the
world's test days), the base model (``model.path``, or the baseline parameters), the features an attacker may
change, the attack used to measure (``attack:``) and the methods to try (``harden: {methods, max_auc_loss}``).

Every candidate, the base model included as ``baseline``, is measured the same way on the holdout:

- clean AUC (the holdout is clean traffic: no probes, no poison), recall and FPR at its threshold, set at
  ``model.threshold_fpr`` on the holdout's legitimate rows (so every candidate has the same FPR);
- latency per query (one row at a time, and per row in a batch);
- the scenario's attack, run through the normal run machinery (:func:`simulator.runner.execute`) into a real run
  file ``attacks/<candidate>.duckdb``: success (any, and cheap) within 10/100/1000 queries per strategy and the
  median best cost;
- confidence stability: how far the score moves under small legitimate perturbations of clean transactions.

Output, written atomically (a temporary folder renamed at the end): the candidates' native model files with
their cards, ``candidates.json``, ``harden.html`` and ``harden.duckdb`` (``hardening_candidates``,
``hardening_results``, ``hardening_pareto``).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from .errors import DataError, ModelError, ScenarioError
from .measures import cheap_at
from .scenario import Scenario
from .schema import FeatureSchema, Kind, frame_to_matrix
from .target.train import roc_auc, threshold_at_fpr, train_model

STABILITY_STEP = 0.02  # a legitimate perturbation moves a feature by N(0, 2% of its range)
STABILITY_ROWS = 400
STABILITY_DRAWS = 8


# -- data ----------------------------------------------------------------------------------------------------------


@dataclass
class HardenData:
    names: tuple[str, ...]
    X_train: np.ndarray
    y_train: np.ndarray
    train_sha256: str
    train_source: str
    holdout: pl.DataFrame  # features (model order) and the label as ``is_fraud`` plus world columns if any
    X_hold: np.ndarray
    y_hold: np.ndarray
    schema: FeatureSchema
    base_model: Any | None  # loaded model file, or None: train the baseline
    base_params: dict
    params_source: str
    kind: str


def _frame_sha256(X: np.ndarray, y: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(X, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(y, dtype=np.int8).tobytes())
    return h.hexdigest()


def load_data(sc: Scenario) -> HardenData:
    """Read and check the training data, holdout and base model; raises one-line errors on bad input."""
    from .runner import _labels, _schema, read_data
    from .target import load_model
    from .target.params import baseline_params, training_params

    base_model = load_model(sc.model.path, sc.model.kind) if sc.model.path is not None else None
    if sc.uses_world:
        from .baseline import split_world
        from .world import FEATURES, LABEL, World, WorldConfig, default_feature_specs

        ws = sc.world_spec
        cfg = WorldConfig(customers=ws.customers, merchants=ws.merchants, days=ws.days, fraudsters=ws.fraudsters,
                          fraud_rate_scale=ws.fraud_rate_scale)
        try:
            stream = World(cfg, seed=sc.seed).generate()
        except ValueError as exc:
            raise ScenarioError(str(exc).replace("WorldConfig.", ""), file=sc.source, field="world") from None
        train_frame, hold, _ = split_world(stream, ws.days, ws.train_fraction)
        train_src, label, hold_label, default_specs = "<world train days>", LABEL, LABEL, default_feature_specs()
        if sc.train is not None:
            train_frame, train_src, label = read_data(sc.train.path, field_name="train.path"), str(sc.train.path), sc.train.label
        names = tuple(base_model.feature_names) if base_model is not None else tuple(FEATURES)
    else:
        assert sc.data is not None
        if sc.train is None:
            raise ScenarioError("a harden scenario on a team's data needs the training data: train: {path, label}",
                                file=sc.source, field="train")
        train_frame, train_src, label = read_data(sc.train.path, field_name="train.path"), str(sc.train.path), sc.train.label
        hold = read_data(sc.data.path)
        hold_label, default_specs = sc.data.label, None
        if base_model is not None:
            names = tuple(base_model.feature_names)
        else:  # no model file: every numeric training column but the label
            names = tuple(c for c in train_frame.columns if c != label and
                          (train_frame.schema[c].is_numeric() or train_frame.schema[c] == pl.Boolean))
    missing = [n for n in names if n not in train_frame.columns]
    if missing:
        raise DataError(f"the training data lacks model feature {missing[0]!r} ({len(missing)} of {len(names)} missing)",
                        file=train_src, field=missing[0])
    for n in names:
        dt = train_frame.schema[n]
        if not (dt.is_numeric() or dt == pl.Boolean):
            raise DataError(f"non-numeric column ({dt}); encode it as numbers", file=train_src, field=n)
    y_train = _labels(train_frame, label, train_src, needed=True)
    assert y_train is not None  # needed=True raises on a missing label instead of returning None
    if y_train.sum() == 0 or y_train.sum() == len(y_train):
        raise DataError("the training label has a single class; both 0 and 1 are needed", file=train_src, field=label)
    hold_src = str(sc.data.path) if sc.data is not None else "<world test days>"
    missing = [n for n in names if n not in hold.columns]
    if missing:
        raise DataError(f"the holdout lacks model feature {missing[0]!r}", file=hold_src, field=missing[0])
    y_hold = _labels(hold, hold_label, hold_src, needed=True)
    assert y_hold is not None  # as above
    if y_hold.sum() == 0:
        raise DataError("the holdout has no fraud to attack", file=hold_src, field=hold_label)

    class _Names:  # the schema helper wants an object with feature names
        feature_names = names
        path = sc.model.path

    schema = _schema(sc, base_model or _Names(), hold, default_specs)
    schema.validate_frame(hold, source=hold_src)
    X_train = frame_to_matrix(train_frame, names)
    X_hold = frame_to_matrix(hold, names)
    kind = base_model.kind if base_model is not None else (sc.model.kind or "xgboost")
    if base_model is not None:
        params, psrc = training_params(base_model)
    else:
        params, psrc = baseline_params(kind), "baseline"
    keep = [c for c in ("timestamp", "day", "customer_id", "merchant_id", "device_id", "fraud_type", "transaction_id")
            if c in hold.columns and c not in names]
    holdout = hold.select([*keep, *names]).with_columns(pl.Series("is_fraud", y_hold)) if "is_fraud" not in names \
        else hold.select([*keep, *names])
    return HardenData(names=names, X_train=X_train, y_train=y_train.astype(np.int8),
                      train_sha256=_frame_sha256(X_train, y_train), train_source=train_src, holdout=holdout,
                      X_hold=X_hold, y_hold=y_hold.astype(np.int8), schema=schema, base_model=base_model,
                      base_params=params, params_source=psrc, kind=kind)


# -- the context defences train and attack through ------------------------------------------------------------------


@dataclass
class AttackOutcome:
    path: Path
    run_id: str
    summary: pl.DataFrame
    targets: int


@dataclass
class HardenContext:
    """What a defence may use: the data, the base set-up, and helpers to train and to attack a model."""

    scenario: Scenario
    data: HardenData
    work_dir: Path
    seed: int
    fpr: float
    strongest: str | None = None  # the strategy with the highest cheap success at 100 against the baseline
    base_auc: float | None = None
    _count: int = 0
    # trained models by (training data hash, parameters, seed): a method that retrains the baseline's own set-up
    # (adversarial training's round 0 without a model file) gets the baseline back instead of training it again
    _trained: dict = field(default_factory=dict)
    trainings: int = 0  # models actually trained (the cache's misses)

    @property
    def names(self) -> tuple[str, ...]:
        return self.data.names

    @property
    def schema(self) -> FeatureSchema:
        return self.data.schema

    def train(self, params: dict | None = None, *, X: np.ndarray | None = None, y: np.ndarray | None = None,
              seed: int | None = None, provenance: dict | None = None):
        """Train one model of the base kind with the base parameters overridden by ``params``."""
        p = {k: v for k, v in self.data.base_params.items() if k not in ("seed", "nthread")}
        p.update(self.scenario.harden.train_params if self.scenario.harden else {})
        p.update(params or {})
        X = self.data.X_train if X is None else X
        y = self.data.y_train if y is None else y
        seed = self.seed if seed is None else seed
        sha = self.data.train_sha256 if X is self.data.X_train and y is self.data.y_train else _frame_sha256(X, y)
        key = (sha, json.dumps(p, sort_keys=True, default=str), seed)
        if key in self._trained:
            return self._trained[key]
        try:
            trained = train_model(X, y, self.data.X_hold, self.data.y_hold, self.names, kind=self.data.kind,
                                  seed=seed, fpr=self.fpr, params=p,
                                  provenance=dict(provenance or {}, training_data_sha256=sha))
        except Exception as exc:  # the library refused a parameter: the user's train_params, if there are any
            user = self.scenario.harden.train_params if self.scenario.harden else {}
            if not user or not (isinstance(exc, (TypeError, ValueError)) or type(exc).__name__ in LIBRARY_ERRORS):
                raise
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise ScenarioError(f"training with these parameters failed: {first}", file=self.scenario.source,
                                field="harden.train_params") from None
        self.trainings += 1
        self._trained[key] = trained
        return trained

    def threshold(self, model) -> float:
        return threshold_at_fpr(self.data.y_hold, model.predict_score(self.data.X_hold), self.fpr)

    def attack(self, model, threshold: float, *, name: str, rows: str = "holdout", strategies: tuple[str, ...] | None = None,
               budget: int | None = None, limit: int | None = None, seed: int | None = None,
               keep: bool = False) -> AttackOutcome:
        """Attack ``model`` with the scenario's strategies through the run machinery; ``rows='train'`` attacks
        caught fraud of the training data (for adversarial training), else the holdout's targets."""
        from .runner import Prepared, _select_targets, execute, summarize

        sc = self.scenario
        att = sc.attack.model_dump()
        if strategies is not None:
            att["strategies"] = list(strategies)
            att["params"] = {k: v for k, v in att["params"].items() if k in strategies}
        if budget is not None:
            att["budget"] = int(budget)
        if limit is not None:
            att["limit"] = int(limit)
        sc_att = sc.replace(attack=att, seed=sc.seed if seed is None else seed, gates=())
        if rows == "holdout":
            frame, X, y = self.data.holdout, self.data.X_hold, self.data.y_hold
            scores = model.predict_score(X)
            target_rows = _select_targets(sc_att, y, scores, threshold, spread=sc.uses_world)
        else:
            frame, X, y, scores, target_rows = self._train_rows(model, threshold, sc_att)
        self._count += 1
        folder = self.work_dir / ("attacks" if keep else "scratch")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.duckdb"
        if path.exists():
            path.unlink()
        prep = Prepared(scenario=sc_att, model=model, threshold=float(threshold),
                        threshold_rule=f"at {self.fpr:.2%} FPR on the holdout's legitimate rows", schema=self.schema,
                        frame=frame, X=X, labels=y, scores=scores,
                        ids=frame.get_column("transaction_id").to_numpy().astype(np.int64)
                        if "transaction_id" in frame.columns else np.arange(frame.height, dtype=np.int64),
                        target_rows=target_rows, model_card={"candidate": name, **(getattr(model, "card", None) or {})})
        res = execute(prep, output=path)
        return AttackOutcome(path=res.path, run_id=res.run_id, summary=summarize(res.path, res.run_id),
                             targets=len(target_rows))

    def _train_rows(self, model, threshold: float, sc_att: Scenario):
        """Caught training fraud that the attack can start from (finite, inside the feature bounds), and up to
        2,000 approved legitimate rows as the approved examples strategies may use."""
        X, y = self.data.X_train, self.data.y_train
        sa = self.schema.arrays()
        ok = np.isfinite(X).all(axis=1)
        mut = sa.mutable
        ok &= ((X[:, mut] >= sa.lo[mut]) & (X[:, mut] <= sa.hi[mut])).all(axis=1)
        scores = model.predict_score(X)
        rng = np.random.default_rng(sc_att.seed)
        fraud = np.flatnonzero(ok & (y == 1) & (scores >= threshold))
        legit = np.flatnonzero(ok & (y == 0) & (scores < threshold))
        if len(fraud) == 0:
            raise DataError("no caught fraud in the training data to attack for adversarial training",
                            file=self.data.train_source, field="train")
        limit = sc_att.attack.limit or len(fraud)
        fraud = np.sort(rng.choice(fraud, min(limit, len(fraud)), replace=False))
        legit = np.sort(rng.choice(legit, min(2000, len(legit)), replace=False))
        rows = np.concatenate([fraud, legit])
        Xs = np.ascontiguousarray(X[rows])
        frame = pl.DataFrame({n: Xs[:, j] for j, n in enumerate(self.names)}).with_columns(
            pl.Series("transaction_id", rows.astype(np.int64)))
        return frame, Xs, y[rows], scores[rows], np.arange(len(fraud))

    def evasions(self, outcome: AttackOutcome, per_target: int, max_cost: float | None = None) -> np.ndarray:
        """The cheapest ``per_target`` evading candidates per (strategy, target) of an attack run, as rows; with
        ``max_cost``, only evasions at most that cost (``1.0``: the cheap ones the measure counts)."""
        from .store import _ident, open_readonly

        cols = ", ".join(_ident(n) for n in self.names)
        cap = float("inf") if max_cost is None else float(max_cost)
        con = open_readonly(outcome.path)
        try:
            rows = con.execute(f"""SELECT {cols} FROM (SELECT *, row_number() OVER (PARTITION BY strategy, target_id
                ORDER BY cost, query_index) AS k FROM queries WHERE run_id = ? AND evaded AND cost <= ?) WHERE k <= ?
                ORDER BY strategy, target_id, k""", [outcome.run_id, cap, int(per_target)]).fetchall()
        finally:
            con.close()
        return np.asarray(rows, dtype=np.float64).reshape(-1, len(self.names))


# -- measures --------------------------------------------------------------------------------------------------------


def confidence_stability(model, X: np.ndarray, schema: FeatureSchema, threshold: float, *, seed: int = 0,
                         step: float = STABILITY_STEP, rows: int = STABILITY_ROWS, draws: int = STABILITY_DRAWS) -> dict:
    """How far the score moves under small legitimate perturbations of clean transactions.

    Each of up to ``rows`` clean rows gets ``draws`` perturbations: every mutable continuous or integer feature
    moves by N(0, ``step`` × its range) (integers rounded), projected onto the feature constraints. Returns the
    mean and 95th percentile of |Δscore| and the share of perturbations that flip the decision."""
    from .kernels import get_kernels

    rng = np.random.default_rng(seed)
    sa = schema.arrays()
    idx = rng.choice(len(X), min(rows, len(X)), replace=False) if len(X) > rows else np.arange(len(X))
    X0 = np.ascontiguousarray(X[idx])
    X0 = X0[np.isfinite(X0).all(axis=1)]
    cols = np.flatnonzero(sa.mutable & np.isin(sa.kind, [int(Kind.CONTINUOUS), int(Kind.INTEGER)]))
    if len(X0) == 0 or len(cols) == 0:
        return {"stability_mean_abs_delta": float("nan"), "stability_p95_abs_delta": float("nan"),
                "stability_flip_rate": float("nan")}
    origin = np.repeat(np.arange(len(X0)), draws)
    P = X0[origin].copy()
    span = (sa.hi - sa.lo)[cols]
    P[:, cols] += rng.normal(0.0, 1.0, (len(P), len(cols))) * step * span
    ints = cols[sa.kind[cols] == int(Kind.INTEGER)]
    P[:, ints] = np.round(P[:, ints])
    P = get_kernels("cpu").project(P, X0, origin, sa)
    s0 = model.predict_score(X0)
    s1 = model.predict_score(P)
    d = np.abs(s1 - s0[origin])
    flip = (s1 >= threshold) != (s0[origin] >= threshold)
    return {"stability_mean_abs_delta": float(d.mean()), "stability_p95_abs_delta": float(np.quantile(d, 0.95)),
            "stability_flip_rate": float(flip.mean())}


def latency(model, X: np.ndarray, *, single: int = 50, batch: int = 4_000) -> dict:
    """Microseconds for a one-row query (the fastest of ``single``: the model's own cost, robust to a loaded
    machine), and microseconds per row in a batch."""
    row = np.ascontiguousarray(X[:1])
    model.predict_score(row)
    times = []
    for _ in range(single):
        t0 = time.perf_counter()
        model.predict_score(row)
        times.append(time.perf_counter() - t0)
    B = np.ascontiguousarray(X[np.arange(batch) % len(X)])
    t0 = time.perf_counter()
    model.predict_score(B)
    return {"latency_us_per_query": float(np.min(times) * 1e6),
            "latency_us_per_row_batch": float((time.perf_counter() - t0) / batch * 1e6)}


def measure(ctx: HardenContext, name: str, model, threshold: float) -> dict:
    """Every measure of one candidate: clean, latency, stability, and the attack (per strategy)."""
    d = ctx.data
    scores = model.predict_score(d.X_hold)
    y = d.y_hold.astype(bool)
    declined = scores >= threshold
    clean = {"clean_auc": roc_auc(d.y_hold, scores), "recall": float(declined[y].mean()),
             "fpr": float(declined[~y].mean()), "threshold": float(threshold)}
    clean.update(latency(model, d.X_hold))
    clean.update(confidence_stability(model, d.X_hold[~y], d.schema, threshold, seed=ctx.seed))
    kind = ctx.scenario.attack.targets
    none_left = not (declined & y).any() if kind == "caught_fraud" else (not declined.any() if kind == "declined" else False)
    if none_left:  # e.g. a candidate that catches no fraud at this FPR: nothing to attack, listed as such
        return {"model": clean, "attack": {}, "attack_file": None, "attack_run_id": None, "targets": 0}
    outcome = ctx.attack(model, threshold, name=name, keep=True)
    per_strategy = {r["strategy"]: {k: v for k, v in r.items() if k != "strategy"} for r in outcome.summary.iter_rows(named=True)}
    return {"model": clean, "attack": per_strategy, "attack_file": str(Path("attacks") / outcome.path.name),
            "attack_run_id": outcome.run_id, "targets": outcome.targets}


def strongest_strategy(per_strategy: dict, budget: int = 100) -> str:
    """The strategy with the highest cheap success within ``budget`` (then the highest success; ties by name)."""
    return max(sorted(per_strategy), key=lambda s: (cheap_at(per_strategy, s, budget) or 0.0,
                                                    per_strategy[s].get("success_rate_at_" + str(budget)) or 0.0))


# -- the driver -----------------------------------------------------------------------------------------------------


@dataclass
class HardenResult:
    out_dir: Path
    candidates: list[dict]
    strongest: str
    best: str | None
    timings: dict = field(default_factory=dict)


def check(sc: Scenario) -> list:
    """Validate the methods against the model kind before anything is read or written; returns the defences."""
    from .defences import check_applicable, make_defence

    if sc.harden is None:
        raise ScenarioError("a harden scenario needs a harden: section (methods, max_auc_loss)", file=sc.source,
                            field="harden")
    kind = sc.model.kind or "xgboost"
    if sc.model.path is not None:
        from .target import detect_kind

        if not Path(sc.model.path).is_file():
            raise ModelError("file not found", file=str(sc.model.path), field="model.path")
        kind = sc.model.kind or detect_kind(Path(sc.model.path))
    rounds = sc.harden.train_params.get("rounds")
    if rounds is not None and (isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1):
        raise ScenarioError(f"rounds must be a whole number >= 1 (got {rounds!r})", file=sc.source,
                            field="harden.train_params.rounds")
    defences = []
    try:
        for i, m in enumerate(sc.harden.methods):
            check_applicable(m, kind, field=f"harden.methods.{i}")
            defences.append(make_defence(m, sc.harden.params.get(m), field=f"harden.params.{m}"))
    except ScenarioError as exc:
        raise ScenarioError(exc.reason, file=sc.source, field=exc.field) from None
    return defences


def harden(sc: Scenario, out_dir: str | Path | None = None, *, log=None) -> HardenResult:
    """Run the hardening scenario; writes ``out_dir`` (default ``<name>-harden``) atomically."""
    say = log or (lambda msg: None)
    defences = check(sc)
    out_dir = check_out_dir(sc, Path(out_dir) if out_dir is not None else Path(f"{sc.name}-harden"))
    data = load_data(sc)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp.mkdir()
    try:
        journal = out_dir / "tuning.journal"
        if journal.is_file():  # resume an earlier tuning study
            shutil.copy2(journal, tmp / "tuning.journal")
        result = _harden_into(sc, data, defences, tmp, say)
        _swap_in(tmp, out_dir)
        result.out_dir = out_dir
        return result
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


#: the model libraries' errors for a parameter they refuse (a bad ``harden.train_params`` value)
LIBRARY_ERRORS = ("XGBoostError", "LightGBMError")
#: what a harden writes into its folder; a folder holding anything else is not replaced
OUTPUT_ENTRIES = frozenset({"candidates.json", "harden.html", "harden.duckdb", "models", "attacks", "tuning.journal"})


def check_out_dir(sc: Scenario, out_dir: Path) -> Path:
    """The output folder, resolved; refuses (one line, before anything is read or written) a file, a folder that
    holds an input of the scenario, and a folder with anything in it but an earlier harden's output, since the
    finished folder replaces it whole (``-o .`` deleted the scenario, the data and the model)."""
    from .errors import StoreError

    def bad(reason: str) -> StoreError:
        return StoreError(reason, file=str(out_dir), field="--output")

    try:
        resolved = out_dir.resolve()
        if resolved.exists() and not resolved.is_dir():
            raise bad("exists and is not a folder; harden writes a folder (candidates.json, harden.html, ...)")
        for inp in sc.input_paths():
            if resolved == Path(inp).resolve() or resolved in Path(inp).resolve().parents:
                raise bad(f"holds {str(inp)!r}, an input of the scenario; the folder is replaced whole: write the "
                          "results elsewhere")
        other = sorted(e.name for e in resolved.iterdir() if e.name not in OUTPUT_ENTRIES) if resolved.is_dir() else []
    except OSError as exc:
        raise bad(f"cannot be used as an output ({exc.strerror or type(exc).__name__})") from None
    if other:
        raise bad(f"exists and holds {other[0]!r}, which is not the output of an earlier fraudsim harden; the folder "
                  "is replaced whole: remove it or choose another name")
    return resolved


def _swap_in(tmp: Path, out_dir: Path) -> None:
    shutil.rmtree(tmp / "scratch", ignore_errors=True)
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
        os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out_dir)


def _harden_into(sc: Scenario, data: HardenData, defences: list, work: Path, say) -> HardenResult:
    from .defences import Candidate

    assert sc.harden is not None  # check() refused a scenario without a harden: section
    max_auc_loss = sc.harden.max_auc_loss
    timings: dict[str, float] = {}
    ctx = HardenContext(scenario=sc, data=data, work_dir=work, seed=sc.seed, fpr=sc.model.threshold_fpr)
    t0 = time.perf_counter()
    if data.base_model is not None:
        base = Candidate(name="baseline", method="baseline", model=data.base_model, members=[],
                         params=dict(data.base_params), notes=f"the model file; parameters from the {data.params_source}")
    else:
        trained = ctx.train()
        base = Candidate(name="baseline", method="baseline", model=trained.model, members=[trained],
                         params=dict(trained.card["params"]), notes="trained here with the baseline parameters")
    base_thr = ctx.threshold(base.model)
    say("measuring baseline")
    base_m = measure(ctx, "baseline", base.model, base_thr)
    timings["baseline_s"] = time.perf_counter() - t0
    ctx.strongest = strongest_strategy(base_m["attack"])
    ctx.base_auc = base_m["model"]["clean_auc"]
    measured: list[tuple[Any, float, dict, float]] = [(base, base_thr, base_m, timings["baseline_s"])]
    for defence in defences:
        t1 = time.perf_counter()
        say(f"method {defence.name}: training")
        cands = defence.build(ctx)
        build_s = (time.perf_counter() - t1) / max(1, len(cands))
        for cand in cands:
            t2 = time.perf_counter()
            say(f"measuring {cand.name}")
            thr = ctx.threshold(cand.model)
            m = measure(ctx, cand.name, cand.model, thr)
            measured.append((cand, thr, m, build_s + time.perf_counter() - t2))
        timings[f"method_{defence.name}_s"] = time.perf_counter() - t1
    timings["models_trained"] = float(ctx.trainings)
    rows = _write_candidates(sc, ctx, measured, work)
    best = _pick_best(rows, ctx.strongest, max_auc_loss)
    for r in rows:
        r["best"] = r["name"] == best
    (work / "candidates.json").write_text(json.dumps({
        "scenario": sc.name, "strongest_strategy": ctx.strongest, "max_auc_loss": max_auc_loss,
        "threshold_fpr": ctx.fpr, "best": best, "training_data_sha256": data.train_sha256, "candidates": rows},
        indent=2, default=_json_default) + "\n")
    _write_duckdb(sc, ctx, measured, rows, work / "harden.duckdb")
    (work / "harden.html").write_text(html_section(rows, ctx.strongest, best, max_auc_loss,
                                                   [c.extra_tables.get("hardening_pareto", []) for c, *_ in measured]))
    return HardenResult(out_dir=work, candidates=rows, strongest=ctx.strongest, best=best, timings=timings)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, Path):
        return str(o)
    return str(o)


def _clean_float(v):
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _write_candidates(sc: Scenario, ctx: HardenContext, measured, work: Path) -> list[dict]:
    """Save each candidate's native model file(s) and its card; one row per candidate for candidates.json."""
    import shutil as _sh

    from .target import file_sha256, get_adapter
    from .target.train import save_model

    models_dir = work / "models"
    models_dir.mkdir(exist_ok=True)
    rows = []
    suffix = get_adapter(ctx.data.kind).native_suffix
    for cand, thr, m, seconds in measured:
        files = []
        if cand.name == "baseline" and ctx.data.base_model is not None and ctx.data.base_model.path is not None:
            src = Path(ctx.data.base_model.path)
            dst = models_dir / f"baseline{src.suffix}"
            _sh.copyfile(src, dst)
            files.append(dst.name)
        for k, member in enumerate(cand.members):
            fname = f"{cand.name}{'' if len(cand.members) == 1 else f'-m{k}'}{suffix}"
            save_model(member, models_dir / fname)  # the candidate's card below replaces a single member's
            files.append(fname)
        card = {
            "name": cand.name, "method": cand.method, "kind": ctx.data.kind, "model_files": files,
            "sha256": {f: file_sha256(models_dir / f) for f in files},
            "params": cand.params, "wrapper": cand.wrapper,
            "training_params": cand.members[0].card.get("params") if cand.members else cand.params,
            "training_data_sha256": (cand.members[0].card.get("provenance", {}).get("training_data_sha256")
                                     if cand.members else (getattr(cand.model, "card", None) or {}).get(
                                         "training_data_sha256")),  # a given model file: only if its card says
            "training_data": ctx.data.train_source, "feature_names": list(ctx.names),
            "threshold": thr, "threshold_rule": f"lowest score declining at most {ctx.fpr:.2%} of the holdout's "
                                                f"legitimate rows (model.threshold_fpr)",
            "notes": cand.notes,
        }
        card_file = models_dir / f"{cand.name}.card.json"
        card_file.write_text(json.dumps(card, indent=2, default=_json_default) + "\n")
        mm = m["model"]
        rows.append({"name": cand.name, "method": cand.method, "model_files": [f"models/{f}" for f in files],
                     "model_file": f"models/{files[0]}" if files else None, "card_file": f"models/{card_file.name}",
                     "threshold": thr, "params": cand.params, "wrapper": cand.wrapper, "notes": cand.notes,
                     "clean_auc": _clean_float(mm["clean_auc"]),
                     "auc_loss": _clean_float((measured[0][2]["model"]["clean_auc"] or 0) - (mm["clean_auc"] or 0)),
                     **{k: _clean_float(v) for k, v in mm.items() if k not in ("clean_auc",)},
                     "seconds": seconds, "attack_file": m["attack_file"], "attack_targets": m["targets"],
                     "attack": {s: {k: _clean_float(v) for k, v in r.items()} for s, r in m["attack"].items()},
                     # the worst case for the defender: the strategy that does best against THIS candidate (not the
                     # baseline's strongest: a defence may stop one strategy and leave another untouched)
                     "strongest_against": (strong := strongest_strategy(m["attack"]) if m["attack"] else None),
                     "strongest_cheap_success_at_100": cheap_at(m["attack"], strong, 100) if strong else None})
        r = rows[-1]  # the share of fraud still declined once the strongest cheap attacker has adapted
        r["recall_after_attack"] = (r["recall"] * (1.0 - r["strongest_cheap_success_at_100"])
                                    if r.get("recall") is not None and r["strongest_cheap_success_at_100"] is not None
                                    else None)
    return rows


def _within(rows: list[dict], max_auc_loss: float) -> list[dict]:
    """The candidates (baseline excluded) whose clean AUC loss is within the limit and whose attack was measured."""
    return [r for r in rows[1:] if r["auc_loss"] is not None and r["auc_loss"] <= max_auc_loss + 1e-12
            and r["strongest_cheap_success_at_100"] is not None]


def _pick_best(rows: list[dict], strongest: str, max_auc_loss: float) -> str | None:
    """The candidate that still declines the most fraud once the strongest cheap attacker has adapted (highest
    ``recall_after_attack``; ties: lower cheap success, then lower AUC loss), within ``max_auc_loss``, and only if
    it beats the baseline on that measure. Ranking by cheap success alone would reward a model that stops being
    evaded by declining (almost) nothing."""
    ok = [r for r in _within(rows, max_auc_loss) if r.get("recall_after_attack") is not None]
    if not ok:
        return None
    best = max(ok, key=lambda r: (r["recall_after_attack"], -r["strongest_cheap_success_at_100"], -r["auc_loss"]))
    base = rows[0].get("recall_after_attack")
    return best["name"] if base is None or best["recall_after_attack"] > base + 1e-12 else None


def verdict(rows: list[dict], best: str | None, max_auc_loss: float) -> list[str]:
    """What the terminal and the HTML section say under the table, in plain text: the pick and why, and the
    largest relative cut of the strongest strategy's cheap success within the AUC limit (the issue's target: >= 50%)
    with the recall it keeps, so a cut bought by declining less fraud is visible next to the pick."""
    base: dict = rows[0] if rows else {}
    b_cs = base.get("strongest_cheap_success_at_100")
    lines = []
    if best is None:
        lines.append(f"No candidate within the clean AUC loss of {max_auc_loss:g} still declines more fraud after the "
                     "strongest attack than the baseline.")
    else:
        b = next(r for r in rows if r["name"] == best)
        lines.append(f"Best: {best}: recall after attack {_pct(base.get('recall_after_attack'))} -> "
                     f"{_pct(b['recall_after_attack'])} (recall {_pct(base.get('recall'))} -> {_pct(b.get('recall'))}; "
                     f"cheap success within 100 queries of the strongest strategy against each model "
                     f"{_pct(b_cs)} -> {_pct(b['strongest_cheap_success_at_100'])}, {b.get('strongest_against')}), "
                     f"clean AUC loss {b['auc_loss']:+.4f}, FPR {_pct(b.get('fpr'), 2)}.")
    ok = _within(rows, max_auc_loss)
    if ok and b_cs:
        c = min(ok, key=lambda r: (r["strongest_cheap_success_at_100"], r["auc_loss"]))
        rel = 1 - c["strongest_cheap_success_at_100"] / b_cs
        lines.append(f"Largest cut of cheap success within {max_auc_loss:g} AUC loss: {c['name']}, {_pct(b_cs)} -> "
                     f"{_pct(c['strongest_cheap_success_at_100'])} ({rel:.0%} relative; target >= 50%: "
                     f"{'reached' if rel >= 0.5 else 'not reached'}), at recall {_pct(c.get('recall'))} "
                     f"(baseline {_pct(base.get('recall'))}).")
    return lines


def _pct(v, digits: int = 1) -> str:
    return "n/a" if v is None else f"{v:.{digits}%}"


def _write_duckdb(sc: Scenario, ctx: HardenContext, measured, rows: list[dict], path: Path) -> None:
    import duckdb

    con = duckdb.connect(str(path))
    try:
        con.execute("""CREATE TABLE hardening_candidates (scenario VARCHAR, candidate VARCHAR, method VARCHAR,
            model_file VARCHAR, card_file VARCHAR, threshold DOUBLE, params VARCHAR, training_data_sha256 VARCHAR,
            is_baseline BOOLEAN, is_best BOOLEAN, attack_file VARCHAR, seconds DOUBLE, created_at TIMESTAMP)""")
        con.execute("""CREATE TABLE hardening_results (scenario VARCHAR, candidate VARCHAR, strategy VARCHAR,
            metric VARCHAR, value DOUBLE)""")
        con.execute("""CREATE TABLE hardening_pareto (scenario VARCHAR, trial INTEGER, clean_auc DOUBLE,
            strongest_cheap_success_at_100 DOUBLE, on_front BOOLEAN, params VARCHAR)""")
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        for r in rows:
            con.execute("INSERT INTO hardening_candidates VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [sc.name, r["name"], r["method"], r["model_file"], r["card_file"], r["threshold"],
                         json.dumps(r["params"], default=_json_default), ctx.data.train_sha256, r["name"] == "baseline",
                         r["best"], r["attack_file"], r["seconds"], now])
        res = []
        for (cand, thr, m, _), r in zip(measured, rows):
            for k, v in m["model"].items():
                res.append((sc.name, cand.name, None, k, _clean_float(v)))
            for s, vals in m["attack"].items():
                for k, v in vals.items():
                    if k != "targets":
                        res.append((sc.name, cand.name, s, k, _clean_float(v)))
                res.append((sc.name, cand.name, s, "targets", float(vals.get("targets") or 0)))
        con.executemany("INSERT INTO hardening_results VALUES (?, ?, ?, ?, ?)", res)
        for cand, *_ in measured:
            for p in cand.extra_tables.get("hardening_pareto", []):
                con.execute("INSERT INTO hardening_pareto VALUES (?, ?, ?, ?, ?, ?)",
                            [sc.name, p["trial"], p["clean_auc"], p["strongest_cheap_success_at_100"], p["on_front"],
                             json.dumps(p["params"], default=_json_default)])
    finally:
        con.close()


# -- presentation ---------------------------------------------------------------------------------------------------

TABLE_COLUMNS = (("clean_auc", "AUC", "{:.4f}"), ("auc_loss", "ΔAUC", "{:+.4f}"), ("recall", "recall", "{:.1%}"),
                 ("fpr", "FPR", "{:.2%}"),
                 ("recall_after_attack", "recall after attack", "{:.1%}"), ("stability_p95_abs_delta", "|Δs|p95", "{:.3f}"),
                 ("stability_flip_rate", "flips", "{:.1%}"), ("latency_us_per_query", "µs/q", "{:.0f}"))


def table_rows(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """The before/after table: one row per candidate (the baseline first), as text cells."""
    strategies = list(rows[0]["attack"]) if rows else []
    head = ["candidate"] + [h for _, h, _ in TABLE_COLUMNS] + \
        [f"{s[:6]} cheap≤100" for s in strategies] + [f"{s[:6]} cost" for s in strategies]
    out = []
    for r in rows:
        cells = [r["name"] + (" ★" if r.get("best") else "")]
        for key, _, fmt in TABLE_COLUMNS:
            v = r.get(key)
            cells.append("–" if v is None else fmt.format(v))
        for s in strategies:
            v = cheap_at(r["attack"], s, 100)
            cells.append("–" if v is None else f"{v:.0%}")
        for s in strategies:
            v = (r["attack"].get(s) or {}).get("median_best_cost")
            cells.append("–" if v is None else f"{v:.2f}")
        out.append(cells)
    return head, out


def html_section(rows: list[dict], strongest: str, best: str | None, max_auc_loss: float, paretos: list) -> str:
    import html as _h

    head, body = table_rows(rows)
    th = "".join(f"<th>{_h.escape(h)}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{_h.escape(c)}</td>" for c in r) + "</tr>" for r in body)
    said = "".join(f"<p>{_h.escape(line)}</p>" for line in verdict(rows, best, max_auc_loss))
    pareto = [p for ps in paretos for p in ps]
    ptable = ""
    if pareto:
        prow = "".join(f"<tr><td>{p['trial']}</td><td>{p['clean_auc']:.4f}</td>"
                       f"<td>{p['strongest_cheap_success_at_100']:.0%}</td><td>{'yes' if p['on_front'] else ''}</td>"
                       f"<td><code>{_h.escape(json.dumps(p['params']))}</code></td></tr>" for p in pareto)
        ptable = ("<h3>Robustness-aware tuning (NSGA-II)</h3><table><tr><th>trial</th><th>clean AUC</th>"
                  "<th>cheap≤100</th><th>Pareto front</th><th>params</th></tr>" + prow + "</table>")
    return ("<!doctype html><meta charset='utf-8'><title>fraudsim harden</title>"
            "<style>body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
            "padding:2px 6px;text-align:right}</style>"
            f"<section id='hardening'><h2>Hardening: before/after</h2><p>Every candidate tried is listed; thresholds are "
            f"set at the same FPR on the holdout's legitimate rows. * cheap≤100: the strongest strategy against each "
            f"model (the highest cheap success within 100 queries; {_h.escape(strongest)} against the baseline).</p><table><tr>{th}</tr>{trs}</table>{said}{ptable}</section>\n")
