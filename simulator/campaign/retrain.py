"""Retraining with label delay: the labelled stream as the defender knows it on a given day, and model fits on it.

On day ``D`` the defender knows a transaction is fraud only if its chargeback has arrived (``label_day <= D``);
everything else counts as legitimate. A fit uses the days ``[D - wait - window + 1, D - wait]`` (old enough for most
labels to have come in); their last ``validation_share`` of days set the thresholds and the validation AUC, the
rest (legitimate rows subsampled) train the model.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..target import TargetModel
from ..target.train import fit_model, threshold_at_fpr
from .defence import Bands, DriftReference, auc

MAX_REFERENCE_ROWS = 200_000
#: Training threads. One: on shared cores, OpenMP workers spin-waiting for a busy sibling made two threads up to ten
#: times slower than one in our measurements; scoring keeps every core (it does not suffer the same way).
TRAIN_THREADS = 1
PREDICT_THREADS = 0  # all cores: scoring, unlike training, did not suffer from shared cores


#: Rows per scoring call: a model library's buffers follow the batch (XGBoost's in-place predict on a day of a
#: million customers, 2 million rows, was a campaign's peak memory); every row's score is the same in any batch.
SCORE_ROWS = 131_072


def score_rows(model: TargetModel, X: np.ndarray) -> np.ndarray:
    """``model.predict_score(X)`` in batches of at most :data:`SCORE_ROWS` rows."""
    if len(X) <= SCORE_ROWS:
        return model.predict_score(X)
    return np.concatenate([model.predict_score(X[i:i + SCORE_ROWS]) for i in range(0, len(X), SCORE_ROWS)])


@dataclass(frozen=True, eq=False)
class DayData:
    """What the defender keeps of one day: features and the (delayed) labels."""

    day: int
    transaction_id: np.ndarray  # int64
    X: np.ndarray  # float32 (n, d) in model order
    label_day: np.ndarray  # int32, -1 for never


@dataclass(frozen=True, eq=False)
class SpilledDay:
    """A day whose features wait on disk until a fit reads them (the history days of a campaign): the same as a
    :class:`DayData` to the stream and the fits, without holding ``X`` in memory."""

    day: int
    transaction_id: np.ndarray
    label_day: np.ndarray
    path: Path  # a float32 .npy file, (n, d) in model order
    owner: object = None  # what keeps the file's folder (a campaign's HistoryDays) alive

    @property
    def X(self) -> np.ndarray:
        return np.load(self.path, allow_pickle=False)


class LabelledStream:
    """The last days of traffic, for retraining (older days are dropped once no fit can use them)."""

    def __init__(self, keep_days: int):
        self.keep_days = keep_days
        self.days: OrderedDict[int, DayData | SpilledDay] = OrderedDict()

    def add(self, data: DayData | SpilledDay) -> None:
        self.days[data.day] = data
        while len(self.days) > self.keep_days:
            self.days.popitem(last=False)

    def trim(self, keep_days: int) -> None:
        """Keep only the last ``keep_days`` days from now on."""
        self.keep_days = keep_days
        while len(self.days) > self.keep_days:
            self.days.popitem(last=False)

    def window(self, first: int, last: int) -> list[DayData | SpilledDay]:
        return [d for k, d in self.days.items() if first <= k <= last]


@dataclass
class Fit:
    """A trained model version with its bands, validation AUC, drift reference and the labels it used."""

    version: int
    model: TargetModel
    bands: Bands
    validation_auc: float
    drift: DriftReference
    info: dict  # the training_runs row (without run_id)
    labels: dict[str, np.ndarray]  # transaction_id, role, label of every label the fit used


def train_booster(X: np.ndarray, y: np.ndarray, names, *, kind: str, seed: int, threads: int = TRAIN_THREADS,
                  params: dict | None = None) -> TargetModel:
    """The baseline's learner and parameters (:mod:`simulator.target.train`), on ``threads`` threads."""
    names = list(names)
    model, used = fit_model(X, y, names, kind=kind, seed=seed, params=params, threads=threads,
                            predict_threads=PREDICT_THREADS)
    model.card = {"kind": kind, "feature_names": names, "train_rows": int(len(y)), "train_positives": int(np.sum(y)),
                  "seed": seed, "params": used}
    return model


def _rows(days: list, mask: np.ndarray) -> np.ndarray:
    """The rows of the days' stacked features where ``mask`` is set, without stacking them all."""
    if not days:
        return np.zeros((0, 0), np.float32)
    starts = np.cumsum([0] + [len(d.transaction_id) for d in days])
    return np.concatenate([d.X[mask[a:b]] for d, a, b in zip(days, starts[:-1], starts[1:])])


def _stack(days: list, as_of: int, *, features: bool = True):
    X = np.concatenate([d.X for d in days]) if days and features else np.zeros((0, 0), np.float32)
    tid = np.concatenate([d.transaction_id for d in days]) if days else np.zeros(0, np.int64)
    ld = np.concatenate([d.label_day for d in days]) if days else np.zeros(0, np.int32)
    y = ((ld >= 0) & (ld <= as_of)).astype(np.int8)
    return X, tid, y


def fit_version(stream: LabelledStream, *, version: int, names, kind: str, as_of: int, first: int, last: int,
                validation_from: int, legit_fraction: float, review_fpr: float, decline_fpr: float,
                decline_threshold: float | None, review_threshold: float | None, bins: int, seed: int,
                trained_round: int, audit: bool) -> Fit:
    """Train a model on days ``[first, validation_from)`` and set its bands on ``[validation_from, last]``, with the
    labels known on day ``as_of``."""
    t0 = time.perf_counter()
    train_days = stream.window(first, validation_from - 1)
    val_days = stream.window(validation_from, last)
    if not train_days:  # a window of one day: validate on what it trained on
        train_days = val_days
    # the training days are never stacked whole: only the rows kept (all fraud, a share of the rest) and, below,
    # the drift reference's sample are taken from them
    _, tid_tr, y_tr = _stack(train_days, as_of, features=False)
    _, tid_val, y_val = _stack(val_days, as_of, features=False)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 104729, version]))
    keep = (y_tr == 1) | (rng.random(len(y_tr)) < legit_fraction)
    X_fit, y_fit, tid_fit = _rows(train_days, keep), y_tr[keep], tid_tr[keep]
    if y_fit.sum() == 0 or y_fit.sum() == len(y_fit):
        raise RuntimeError(f"model version {version}: the training window has no labelled fraud yet")
    model = train_booster(X_fit, y_fit, names, kind=kind, seed=seed + version)
    s_val = np.concatenate([score_rows(model, d.X) for d in val_days])  # a day at a time: the same scores
    decline = decline_threshold if decline_threshold is not None else threshold_at_fpr(y_val, s_val, decline_fpr)
    review = review_threshold if review_threshold is not None else threshold_at_fpr(y_val, s_val, review_fpr)
    review = min(review, decline)
    val_auc = auc(y_val, s_val)
    n_all = len(y_tr) + len(y_val)  # the reference: the training then the validation rows, or a sample of them
    ref = np.sort(rng.choice(n_all, MAX_REFERENCE_ROWS, replace=False)) if n_all > MAX_REFERENCE_ROWS else None
    take = np.zeros(n_all, bool)
    take[ref if ref is not None else slice(None)] = True
    X_all = np.concatenate([_rows(train_days, take[:len(y_tr)]), _rows(val_days, take[len(y_tr):])])
    drift = DriftReference(X_all.astype(np.float64), model.predict_score(X_all), bins)
    model.card = dict(model.card or {}, threshold=decline, review_threshold=review, test_auc=val_auc,
                      provenance={"version": version, "days": [first, last], "labels_as_of_day": as_of},
                      threshold_rule=("given in the scenario" if decline_threshold is not None else
                                      f"lowest score declining at most {decline_fpr:.2%} of the legitimate validation "
                                      f"days (labels known on day {as_of})"))
    labels: dict[str, np.ndarray] = {"transaction_id": np.zeros(0, np.int64), "role": np.zeros(0, object),
                                     "label": np.zeros(0, np.int32)}
    if audit:
        pos = y_val == 1  # validation rows: only the fraud labels were used as such (the rest count as legit)
        labels = {"transaction_id": np.concatenate([tid_fit, tid_val[pos]]),
                  "role": np.concatenate([np.full(len(tid_fit), "train", object), np.full(int(pos.sum()), "validation", object)]),
                  "label": np.concatenate([y_fit, y_val[pos]]).astype(np.int32)}
    info = {"model_version": version, "trained_round": trained_round, "trained_day": as_of,
            "deployed_round": trained_round + 1, "train_day_from": first, "train_day_to": validation_from - 1,
            "validation_day_from": validation_from, "validation_day_to": last, "label_as_of_day": as_of,
            "train_rows": int(len(y_fit)), "train_positives": int(y_fit.sum()), "validation_rows": int(len(y_val)),
            "validation_positives": int(y_val.sum()), "review_threshold": review, "decline_threshold": decline,
            "validation_auc": val_auc, "train_s": time.perf_counter() - t0}
    return Fit(version=version, model=model, bands=Bands(review=review, decline=decline), validation_auc=val_auc,
               drift=drift, info=info, labels=labels)
