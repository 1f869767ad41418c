"""Shared fixtures: a small real world, a real XGBoost and LightGBM model trained on it, saved natively."""
from __future__ import annotations

import polars as pl
import pytest

from simulator.schema import frame_to_matrix
from simulator.target.train import save_model, train_model
from simulator.world import FEATURES, LABEL, World, WorldConfig

SPECS = {
    "amount": {"type": "continuous", "min": 0.5, "max": 20000, "cost": 1.0},
    "hour": {"type": "integer", "min": 0, "max": 23, "cost": 0.5},
    "merchant_cat": {"type": "categorical", "categories": list(range(10)), "cost": 0.5},
    "country_mismatch": {"type": "binary", "direction": "decrease", "cost": 0.5},
    "new_device": {"type": "binary", "direction": "decrease"},
    "account_age_days": {"type": "integer", "min": 0, "max": 20000, "mutable": False},
}


@pytest.fixture(scope="session")
def world_frames():
    frame = World(WorldConfig(customers=3000, days=8), seed=11).generate()
    return frame.filter(pl.col("day") < 5), frame.filter(pl.col("day") >= 5)


@pytest.fixture(scope="session")
def team_files(tmp_path_factory, world_frames):
    """A validation team's inputs: holdout Parquet, XGBoost JSON and LightGBM text models with cards."""
    train, test = world_frames
    d = tmp_path_factory.mktemp("team")
    names = list(FEATURES)
    args = (frame_to_matrix(train, names), train[LABEL].to_numpy(), frame_to_matrix(test, names), test[LABEL].to_numpy(), names)
    xgb_path = save_model(train_model(*args, kind="xgboost", seed=1), d / "candidate.json")
    lgb_path = save_model(train_model(*args, kind="lightgbm", seed=1), d / "candidate_lgbm.txt")
    test.drop("transaction_id").write_parquet(d / "holdout.parquet")
    return {"dir": d, "xgb": xgb_path, "lgbm": lgb_path, "data": d / "holdout.parquet", "frame": test}


def scenario_dict(files, **attack):
    return {
        "name": "release-check", "seed": 7,
        "data": {"path": "holdout.parquet", "label": "is_fraud"},
        "model": {"path": files["xgb"].name},
        "features": SPECS,
        "attack": {"targets": "caught_fraud", "limit": 6, "budget": 60, "feedback": "score",
                   "strategies": ["random", "evolutionary"], **attack},
        "output": "release-check.duckdb",
    }


@pytest.fixture()
def write_scenario(team_files):
    """Write a scenario YAML next to the team's files; returns its path."""
    import yaml

    def _write(raw: dict, name: str = "scenario.yaml"):
        path = team_files["dir"] / name
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return path

    return _write
