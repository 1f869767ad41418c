"""The baseline models shipped in ``models/``: trained on the world's first days, tested on the rest."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import polars as pl

from .schema import frame_to_matrix
from .target.train import save_model, train_model
from .world import FEATURES, LABEL, World, WorldConfig

TRAIN_FRACTION = 0.6


def split_world(frame: pl.DataFrame, days: int,
                train_fraction: float = TRAIN_FRACTION) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """Training days ``[0, cut)`` and test days ``[cut, days)``; returns both frames and ``cut``."""
    cut = max(1, int(round(days * train_fraction)))
    return frame.filter(pl.col("day") < cut), frame.filter(pl.col("day") >= cut), cut


MODEL_FILES = ("xgb_baseline.json", "xgb_baseline.card.json", "lgbm_baseline.txt", "lgbm_baseline.card.json")


def check_outputs(out_dir: Path, holdout: Path | None) -> None:
    """Before the world is built: ``out_dir`` is a folder (or new), and ``holdout`` is a new file or an earlier
    holdout (Parquet), never a model written here nor someone's other file (``--holdout notes.txt`` was replaced)."""
    from .errors import StoreError
    from .store import check_output_path

    if out_dir.exists() and not out_dir.is_dir():
        raise StoreError("exists and is not a folder; give a folder for the models and their cards", file=str(out_dir),
                         field="--out-dir")
    if holdout is None:
        return
    check_output_path(holdout, field="--holdout", source=str(holdout), create=False, only_replace_runs=False)
    if any(holdout.resolve() == (out_dir / f).resolve() for f in MODEL_FILES):
        raise StoreError("this is where a model or its card is written; give the holdout another name",
                         file=str(holdout), field="--holdout")
    if holdout.is_file() and holdout.stat().st_size:
        with open(holdout, "rb") as f:
            if f.read(4) != b"PAR1":
                raise StoreError("exists and is not a Parquet file; refusing to overwrite it (remove it or choose "
                                 "another name)", file=str(holdout), field="--holdout")


def train_baselines(out_dir: Path, *, customers: int = 20_000, days: int = 30, seed: int = 0, fpr: float = 0.01,
                    holdout: Path | None = None, holdout_days: int = 2) -> Iterator[tuple[Path, dict]]:
    """Train on the first 60% of days, test on the rest; ``holdout`` gets the last ``holdout_days`` days (never
    trained on) as Parquet, small enough to ship as a data sample."""
    check_outputs(Path(out_dir), holdout)
    cfg = WorldConfig(customers=customers, days=days)
    frame = World(cfg, seed=seed).generate()
    train, test, cut = split_world(frame, days)
    names = list(FEATURES)
    Xtr, ytr = frame_to_matrix(train, names), train.get_column(LABEL).to_numpy()
    Xte, yte = frame_to_matrix(test, names), test.get_column(LABEL).to_numpy()
    if holdout is not None:
        holdout.parent.mkdir(parents=True, exist_ok=True)
        sample = test.filter(pl.col("day") >= days - holdout_days).drop("transaction_id")
        sample.write_parquet(holdout, compression="zstd", compression_level=19)
    for kind, fname in (("xgboost", "xgb_baseline.json"), ("lightgbm", "lgbm_baseline.txt")):
        trained = train_model(Xtr, ytr, Xte, yte, names, kind=kind, seed=seed, fpr=fpr,
                              provenance={"world": cfg.__dict__, "world_seed": seed,
                                          "train_days": [0, cut - 1], "test_days": [cut, days - 1]})
        path = save_model(trained, Path(out_dir) / fname)
        yield path, trained.card
