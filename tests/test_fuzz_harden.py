"""Hostile ``fraudsim harden`` input (found by fuzzing): the output folder is replaced whole when the hardening
ends, so ``-o .`` deleted the scenario, the data and the model, and ``-o`` on a file or on a folder of other things
moved them away. Each is refused before anything is read or written: one line naming ``--output``, exit 2, every
file as it was."""
from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from simulator.cli import app
from simulator.target import card_path_for
from tests._util import one_line_error

from .conftest import SPECS

runner = CliRunner()


@pytest.fixture()
def folder(team_files, tmp_path):
    """A team's folder: harden scenario, training data (the holdout here), model with its card, and notes."""
    for src in (team_files["xgb"], card_path_for(team_files["xgb"]), team_files["data"]):
        (tmp_path / src.name).write_bytes(src.read_bytes())
    raw = {"name": "hh", "seed": 5, "train": {"path": "holdout.parquet", "label": "is_fraud"},
           "data": {"path": "holdout.parquet", "label": "is_fraud"},
           "model": {"path": team_files["xgb"].name, "threshold_fpr": 0.02}, "features": SPECS,
           "attack": {"targets": "caught_fraud", "limit": 2, "budget": 10, "strategies": ["random"]},
           "harden": {"methods": ["squeeze"]}}
    (tmp_path / "harden.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    (tmp_path / "notes.txt").write_text("keep me")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "plan.md").write_text("keep me too")
    return tmp_path


def snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("out, fragment", [
    (".", "an input of the scenario"),
    ("..", "an input of the scenario"),
    ("notes.txt", "is not a folder"),
    ("holdout.parquet", "is not a folder"),
    ("mine", "'plan.md', which is not the output of an earlier fraudsim harden"),
], ids=["the scenario's folder", "its parent", "a file", "the data", "a folder of other things"])
def test_the_output_folder_never_replaces_what_is_not_its_own(folder, monkeypatch, out, fragment):
    monkeypatch.chdir(folder)
    before = snapshot(folder)
    one_line_error(runner.invoke(app, ["harden", "harden.yaml", "-o", out, "-q"]), "--output", fragment)
    assert snapshot(folder) == before
    assert not list(folder.glob(".*")) and not list(folder.parent.glob(f".{folder.name}*"))


@pytest.mark.parametrize("params", [{"members": float("inf")}, {"members": 1e300, "band": float("-inf")}],
                         ids=["inf members", "huge members"])
def test_infinite_method_parameters_are_one_line(folder, params):
    """``int(inf)`` raised OverflowError past the parameter check: exit 3 (a traceback before harden was guarded)."""
    raw = yaml.safe_load((folder / "harden.yaml").read_text())
    raw["harden"] = {"methods": ["ensemble"], "params": {"ensemble": params}}
    (folder / "inf.yaml").write_text(yaml.safe_dump(raw))
    one_line_error(runner.invoke(app, ["harden", str(folder / "inf.yaml"), "-o", str(folder / "out"), "-q"]),
                   "inf.yaml", "harden.params.ensemble")
    assert not (folder / "out").exists()


@pytest.mark.parametrize("train_params, fragment", [
    ({"max_depth": "deep"}, "training with these parameters failed"),
    ({"rounds": -5}, "rounds must be a whole number >= 1"),
    ({"rounds": 0.5}, "rounds must be a whole number >= 1"),
], ids=["library refuses a value", "negative rounds", "fractional rounds"])
def test_bad_train_params_are_one_line(folder, train_params, fragment):
    """XGBoost's own error for max_depth: deep was exit 3; rounds: -5 trained candidates with no trees."""
    raw = yaml.safe_load((folder / "harden.yaml").read_text())
    raw["harden"]["train_params"] = train_params
    (folder / "tp.yaml").write_text(yaml.safe_dump(raw))
    one_line_error(runner.invoke(app, ["harden", str(folder / "tp.yaml"), "-o", str(folder / "out"), "-q"]),
                   "tp.yaml", "harden.train_params", fragment)
    assert not (folder / "out").exists() and not list(folder.glob(".out*"))
