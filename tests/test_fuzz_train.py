"""Hostile ``fraudsim train`` outputs (found by fuzzing): ``--holdout notes.txt`` replaced the user's file with
Parquet, ``--holdout`` on a model's own path was overwritten by the model, and ``--out-dir`` on a file was exit 3
(FileExistsError) after the world was built. Each is refused before any work: one line, exit 2, files unchanged."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from simulator.cli import app
from tests._util import one_line_error

runner = CliRunner()


@pytest.mark.parametrize("args, fragments", [
    (["--out-dir", "notes.txt"], ["notes.txt", "--out-dir", "not a folder"]),
    (["--out-dir", "m", "--holdout", "notes.txt"], ["notes.txt", "--holdout", "not a Parquet file"]),
    (["--out-dir", "m", "--holdout", "m/xgb_baseline.json"], ["--holdout", "where a model or its card is written"]),
    (["--out-dir", "m", "--holdout", "m"], ["--holdout", "is a folder"]),
], ids=["out-dir is a file", "holdout over a text file", "holdout over a model", "holdout is a folder"])
def test_train_refuses_outputs_that_would_replace_other_files(tmp_path, monkeypatch, args, fragments):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("keep me")
    (tmp_path / "m").mkdir()
    one_line_error(runner.invoke(app, ["train", "--customers", "200", "--days", "3", *args]), *fragments)
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    assert not list((tmp_path / "m").iterdir())
