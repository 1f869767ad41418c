"""Campaign setup: the world's history days, the baseline model (trained here or the scenario's own file), the
templates the agents start from. Everything that can fail on bad input fails here, before any output is written;
the result (:class:`CampaignPrepared`) is only read by a run (:mod:`.engine`), so it can run twice."""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import polars as pl

from .. import __version__
from ..errors import ScenarioError
from ..schema import FeatureSchema, frame_to_matrix
from ..target import TargetModel, load_model
from ..target.train import DEFAULT_KIND, check_trainable, threshold_at_fpr
from .config import AdversariesSpec, DefenceSpec, RoundsSpec
from .defence import DECLINE, Bands, DriftReference, auc, label_days
from .retrain import Fit, LabelledStream, SpilledDay, fit_version, score_rows

Progress = Callable[[str, int | None], Callable[[int], None]]
PUBLIC_EXAMPLES = 1000


def _no_progress(description: str, total: int | None) -> Callable[[int], None]:
    return lambda n: None


def _load_trim() -> Callable[[], None]:
    try:
        import ctypes

        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return lambda: None
    return lambda: None if trim(0) else None


#: Hands the C heap's free pages back to the system (glibc's ``malloc_trim``; nothing elsewhere). A day's arrays of
#: up to 32 MB come from the heap, not from their own mappings, and the heap keeps what they free: called once a day,
#: a campaign's resident memory stays near what it uses.
release_memory = _load_trim()


class HistoryDays:
    """The history days (with ``label_day``, then ``score`` and ``decision_code``), one Arrow IPC file a day in a
    temporary folder, read back one day at a time: a campaign's memory does not grow with its history or its number
    of customers times days. The folder goes when the object does."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="fraudsim-history-"))
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.folder), True)
        self._n = 0

    def _path(self, i: int) -> Path:
        return self.folder / f"day-{i:05d}.arrow"

    def add(self, frame: pl.DataFrame) -> None:
        frame.write_ipc(self._path(self._n))
        self._n += 1

    def save_features(self, i: int, X: np.ndarray) -> Path:
        """Day ``i``'s features as the labelled stream keeps them (float32), for :class:`.retrain.SpilledDay`."""
        path = self.folder / f"features-{i:05d}.npy"
        np.save(path, X.astype(np.float32), allow_pickle=False)
        return path

    def replace(self, i: int, frame: pl.DataFrame) -> None:
        tmp = self._path(i).with_suffix(".tmp")
        frame.write_ipc(tmp)
        os.replace(tmp, self._path(i))  # a new file: a reader's memory map of the old one stays valid

    def read(self, i: int, columns: list[str] | None = None) -> pl.DataFrame:
        if not 0 <= i < self._n:
            raise IndexError(i)
        return pl.read_ipc(self._path(i), columns=columns)

    def __getitem__(self, i: int) -> pl.DataFrame:
        return self.read(i)

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[pl.DataFrame]:
        return (self.read(i) for i in range(self._n))


@dataclass
class CampaignPrepared:
    """A campaign ready to run: the world after its history days, the baseline deployed, the templates chosen.

    Carries the attribute names the CLI reads from a single-round ``Prepared`` (model, threshold, ...)."""

    is_campaign = True
    scenario: Any
    adversaries: AdversariesSpec
    defence: DefenceSpec
    rounds: int
    world: Any
    names: tuple[str, ...]
    schema: FeatureSchema
    fit: Fit  # version 1
    stream: LabelledStream
    history: HistoryDays  # the history days, with label_day/score/decision_code columns (on disk, one day at a time)
    cut: int  # first validation day of the history
    wait: int
    templates_X: np.ndarray
    templates_id: np.ndarray
    templates_score: np.ndarray
    templates_type: np.ndarray
    approved_examples: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def model(self) -> TargetModel:
        return self.fit.model

    @property
    def threshold(self) -> float:
        return self.fit.bands.decline

    @property
    def threshold_rule(self) -> str:
        return str((self.fit.model.card or {}).get("threshold_rule", ""))

    @property
    def model_card(self) -> dict:
        return dict(self.fit.model.card or {})

    @property
    def target_rows(self) -> np.ndarray:
        return self.templates_id


def prepare_campaign(scenario, *, progress: Progress = _no_progress, validate_only: bool = False):
    """Build the world's history, fit (or load) the baseline, choose templates; ``None`` with ``validate_only``."""
    plan = _check(scenario)
    if validate_only:
        model_given = plan["model_given"]
        if model_given is not None:  # one test scoring call: an endpoint answers, in shape
            rows = np.zeros((2, len(model_given.feature_names)))
            model_given.check_scores(model_given.predict_score(rows), len(rows))
        else:
            check_trainable(scenario.model.kind or DEFAULT_KIND, source=scenario.source)
        return None
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    seeds = np.random.SeedSequence(scenario.seed).spawn(2)
    world, stream, history, names = _history(scenario, plan, progress, np.random.default_rng(seeds[0]))
    timings["world_s"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    fit = _baseline(scenario, plan, stream, names, progress)
    timings["train_s"] = time.perf_counter() - t1
    return _with_templates(scenario, plan, world, stream, history, names, fit, np.random.default_rng(seeds[1]),
                           timings)


def _check(scenario) -> dict:
    """Everything a campaign scenario can get wrong, before any day is simulated."""
    from ..world import FEATURES, default_feature_specs

    adv: AdversariesSpec = scenario.adversaries
    dfc: DefenceSpec = scenario.defence or DefenceSpec()
    rounds = (scenario.rounds or RoundsSpec()).count
    ws = scenario.world_spec
    specs = {k: v.as_dict() for k, v in scenario.features.items()} if scenario.features is not None \
        else default_feature_specs()
    unknown = [n for n in specs if n not in FEATURES]
    if unknown:
        raise ScenarioError(f"the world has no feature {unknown[0]!r} (features: {', '.join(FEATURES)})",
                            file=scenario.source, field=f"features.{unknown[0]}")
    if scenario.relations:  # probes are real transactions the world featurises: they obey its relations by
        # construction; the names are still checked here (strategies in a campaign do not repair with them)
        from ..relations import compile_relations, parse_relations
        from ..world import SCHEMA

        compile_relations(parse_relations(scenario.relations, source=scenario.source), list(FEATURES), list(SCHEMA),
                          source=scenario.source)
    wait = dfc.retrain.wait_days if dfc.retrain.wait_days is not None else \
        dfc.labels.delay_days + dfc.labels.delay_jitter_days
    last = ws.days - 1 - wait
    cut = max(1, int(round((last + 1) * ws.train_fraction)))
    if last < 1 or cut > last:
        raise ScenarioError(f"{ws.days} history days leave too few with known labels (label wait {wait} days); "
                            f"give at least {wait + 3}", file=scenario.source, field="world.days")
    needed = sum(r.agents * r.cards_per_agent + (r.poison.accounts if r.poison else 0) for r in adv.rings)
    if needed > ws.customers:
        raise ScenarioError(f"the rings need {needed} cards and mule accounts but the world has {ws.customers} "
                            "customers", file=scenario.source, field="adversaries.rings")
    model_given = None
    if scenario.model.given:
        model_given = load_model(scenario.model, source=scenario.source)
        model_given.check_columns(FEATURES, source="<world>")
        if dfc.retrain.every and not model_given.trainable:
            raise ScenarioError(f"retraining needs a model fraudsim can train (xgboost or lightgbm), not a "
                                f"{model_given.kind} model; set defence.retrain.every: 0",
                                file=scenario.source, field="defence.retrain.every")
    return {"adv": adv, "dfc": dfc, "rounds": rounds, "ws": ws, "specs": specs, "wait": wait, "last": last,
            "cut": cut, "model_given": model_given}


def _history(scenario, plan: dict, progress: Progress, label_rng: np.random.Generator):
    """The world's history days, with their chargeback days, as the labelled stream and as frames."""
    from ..world import FEATURES, World, WorldConfig

    ws, dfc, model_given = plan["ws"], plan["dfc"], plan["model_given"]
    world = World(WorldConfig(customers=ws.customers, merchants=ws.merchants, days=ws.days + plan["rounds"],
                              fraudsters=ws.fraudsters, fraud_rate_scale=ws.fraud_rate_scale), seed=scenario.seed)
    names = tuple(model_given.feature_names) if model_given is not None else tuple(FEATURES)
    stream = LabelledStream(max(ws.days, dfc.retrain.window_days + plan["wait"] + 1))
    history = HistoryDays()
    advance = progress("world (history)", ws.days)
    for day in range(ws.days):
        frame = world.step()
        ld = label_days(day, frame["fraud_type"].to_numpy(), frame["amount"].to_numpy(), dfc, label_rng)
        X = frame_to_matrix(frame, names)
        stream.add(SpilledDay(day, frame["transaction_id"].to_numpy(), ld, history.save_features(day, X), history))
        history.add(frame.with_columns(pl.Series("label_day", ld)))
        del frame, X
        release_memory()
        advance(1)
    return world, stream, history, names


def _baseline(scenario, plan: dict, stream: LabelledStream, names, progress: Progress) -> Fit:
    """Version 1: the scenario's own model, or one trained on the history's labels known on its last day."""
    ws, dfc, cut, last = plan["ws"], plan["dfc"], plan["cut"], plan["last"]
    pol = dfc.policy
    decline_fpr = pol.decline_fpr if pol.decline_fpr is not None else scenario.model.threshold_fpr
    given_decline = pol.decline_threshold if pol.decline_threshold is not None else scenario.model.threshold
    adv_train = progress("train model", 1)
    if plan["model_given"] is not None:
        fit = _adopt(plan["model_given"], stream, scenario, cut, last, ws.days - 1, pol, decline_fpr, dfc)
    else:
        fit = fit_version(stream, version=1, names=names, kind=scenario.model.kind or DEFAULT_KIND, as_of=ws.days - 1,
                          first=0, last=last, validation_from=cut, legit_fraction=dfc.retrain.legit_fraction,
                          review_fpr=max(pol.review_fpr, decline_fpr), decline_fpr=decline_fpr,
                          decline_threshold=given_decline, review_threshold=pol.review_threshold,
                          bins=dfc.drift.bins, seed=scenario.seed, trained_round=0, audit=dfc.retrain.audit_labels)
    adv_train(1)
    return fit


def _with_templates(scenario, plan: dict, world, stream, history: HistoryDays, names, fit: Fit,
                    pub_rng: np.random.Generator, timings: dict) -> "CampaignPrepared":
    """Score the history with the baseline (one day at a time, written back with its day); templates are its caught
    frauds on the validation days; the public examples a sample of its approved rows."""
    cut = plan["cut"]
    schema = FeatureSchema.from_mapping(names, plan["specs"], cost_scale=scenario.cost_scale).with_bounds_from(history[0])
    tpl_frames, tpl_X, tpl_score, n_pub = [], [], [], []
    for i in range(len(history)):
        h = history[i]
        X = frame_to_matrix(h, names)
        score = score_rows(fit.model, X)
        decision = np.where(score >= fit.bands.decline, 2, np.where(score >= fit.bands.review, 1, 0)).astype(np.int8)
        fraud_type = h["fraud_type"].to_numpy()
        is_tpl = (h["day"].to_numpy() >= cut) & (fraud_type > 0) & (fraud_type < 4) & (decision == DECLINE)
        tpl_frames.append(h.filter(pl.Series(is_tpl)))
        tpl_X.append(X[is_tpl])
        tpl_score.append(score[is_tpl])
        n_pub.append(int((decision == 0).sum()))
        history.replace(i, h.with_columns(pl.Series("score", score), pl.Series("decision_code", decision)))
        del h, X
        release_memory()
    tpl = pl.concat(tpl_frames)
    if tpl.height == 0:
        raise ScenarioError("no caught fraud in the history to take templates from; give more history days or "
                            "customers", file=scenario.source, field="world")
    schema.validate_frame(tpl, source="<world>")
    # a sample of the approved rows in history order (the positions among them; the same draw as on their indices)
    pick = np.sort(pub_rng.choice(sum(n_pub), min(PUBLIC_EXAMPLES, sum(n_pub)), replace=False))
    starts = np.cumsum([0] + n_pub)
    public = []
    for i in np.unique(np.searchsorted(starts, pick, side="right") - 1):
        mine = pick[(pick >= starts[i]) & (pick < starts[i + 1])] - starts[i]
        h = history.read(int(i), columns=[*names, "decision_code"])
        public.append(frame_to_matrix(h, names)[np.flatnonzero(h["decision_code"].to_numpy() == 0)[mine]])
    stream.trim(plan["dfc"].retrain.window_days + plan["wait"] + 1)  # the days a retrain can still use
    return CampaignPrepared(
        scenario=scenario, adversaries=plan["adv"], defence=plan["dfc"], rounds=plan["rounds"], world=world,
        names=names, schema=schema, fit=fit, stream=stream, history=history, cut=cut, wait=plan["wait"],
        templates_X=np.concatenate(tpl_X), templates_id=tpl["transaction_id"].to_numpy(),
        templates_score=np.concatenate(tpl_score), templates_type=tpl["fraud_type"].to_numpy(),
        approved_examples=np.concatenate(public) if public else np.zeros((0, len(names))), timings=timings)


def _adopt(model: TargetModel, stream, scenario, cut, last, as_of, pol, decline_fpr, dfc) -> Fit:
    """Version 1 is the scenario's own model file: its bands on the validation days, its drift reference there
    (it was trained elsewhere, so it has no training labels to record)."""
    from .retrain import _stack

    X_val, _, y_val = _stack(stream.window(cut, last), as_of)
    s_val = model.predict_score(X_val)
    card_thr = (model.card or {}).get("threshold")
    decline = pol.decline_threshold if pol.decline_threshold is not None else scenario.model.threshold
    decline = decline if decline is not None else (card_thr if isinstance(card_thr, (int, float)) else
                                                   threshold_at_fpr(y_val, s_val, decline_fpr))
    review = pol.review_threshold if pol.review_threshold is not None else threshold_at_fpr(y_val, s_val, pol.review_fpr)
    review = min(review, decline)
    model.card = dict(model.card or {}, threshold=decline, review_threshold=review, test_auc=auc(y_val, s_val),
                      threshold_rule="from the scenario or the model card")
    X_ref = X_val.astype(np.float64)
    info = {"model_version": 1, "trained_round": 0, "trained_day": None, "deployed_round": 1, "train_day_from": None,
            "train_day_to": None, "validation_day_from": cut, "validation_day_to": last, "label_as_of_day": as_of,
            "train_rows": 0, "train_positives": 0, "validation_rows": int(len(y_val)),
            "validation_positives": int(y_val.sum()), "review_threshold": review, "decline_threshold": decline,
            "validation_auc": auc(y_val, s_val), "train_s": 0.0}
    empty = {"transaction_id": np.zeros(0, np.int64), "role": np.zeros(0, object), "label": np.zeros(0, np.int32)}
    return Fit(version=1, model=model, bands=Bands(review, decline), validation_auc=info["validation_auc"],
               drift=DriftReference(X_ref, model.predict_score(X_ref), dfc.drift.bins), info=info, labels=empty)


def campaign_run_id(prep: CampaignPrepared) -> str:
    h = hashlib.sha256()
    h.update(prep.scenario.to_yaml().encode())
    h.update(__version__.encode())
    return f"{prep.scenario.name}-{h.hexdigest()[:12]}"
