"""Hostile sweep files (found by fuzzing ``fraudsim sweep``): the sweep file and its base read with the scenario
loader's limits, absurd grids refused before anything is validated, and the sweep file's ``output`` never
overwriting what the sweep reads. Each case: one line naming file, field and reason, exit 2, nothing written and
every input byte for byte as it was."""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from typer.testing import CliRunner

from simulator.cli import app
from tests._util import one_line_error

from .conftest import scenario_dict

runner = CliRunner()


@pytest.fixture()
def base(team_files, tmp_path):
    """A team's release check as a sweep's base scenario, in a folder of its own (tmp_path) beside copies of the
    team's data and model, so that a case that overwrites one of them is seen."""
    from simulator.target import card_path_for

    for src in (team_files["xgb"], card_path_for(team_files["xgb"]), team_files["data"]):
        (tmp_path / src.name).write_bytes(src.read_bytes())
    raw = scenario_dict(team_files, limit=1, budget=5, strategies=["random"])
    (tmp_path / "base scenario.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return tmp_path


def sweep_cli(path, *extra):
    return runner.invoke(app, ["sweep", str(path), "--engine", "serial", "-q", *map(str, extra)])


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def refused(base, result, *fragments):
    """One line, exit 2, and the folder as it was before (no sweep file, no .runs folder, inputs untouched)."""
    one_line_error(result, *fragments)
    assert not list(base.glob("*.runs")) and not list(base.glob("*.partial*"))


LAUGHS = "".join(["grid:\n  seed: &l0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n"] +
                 [f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 8)])


@pytest.mark.parametrize("content, fragment", [
    (b"base: base scenario.yaml\ngrid: {seed: [1]}\n# \xff\n", "not UTF-8 text"),
    ("base: base scenario.yaml\ngrid: {seed: [1]}\n".encode("utf-16"), "UTF-16"),
    (b"base: base scenario.yaml\ngrid: " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested more than"),
    (b"base: base scenario.yaml\ngrid: {seed: [1]}\ngrid: {seed: [2]}\n", "duplicate key 'grid'"),
    (("base: base scenario.yaml\n" + LAUGHS).encode(), "billion laughs"),
], ids=["invalid utf-8", "utf-16", "deep nesting", "duplicate key", "billion laughs"])
def test_the_sweep_file_is_read_with_the_scenario_loaders_limits(base, content, fragment):
    sw = base / "sweep.yaml"
    sw.write_bytes(content)
    before = snapshot(base)
    refused(base, sweep_cli(sw), "sweep.yaml", fragment)
    assert snapshot(base) == before


def test_a_base_scenario_that_is_not_utf8_is_one_line(base):
    (base / "kaputt.yaml").write_bytes(b"name: \xff\n")
    sw = base / "sweep.yaml"
    sw.write_text("base: kaputt.yaml\ngrid: {seed: [1]}\n")
    refused(base, sweep_cli(sw), "kaputt.yaml", "not UTF-8 text")


@pytest.mark.parametrize("output", [5, ["a.duckdb"], "", "  "], ids=["int", "list", "empty", "blank"])
def test_an_output_that_is_not_a_file_name_is_one_line(base, output):
    sw = base / "sweep.yaml"
    sw.write_text(yaml.safe_dump({"base": "base scenario.yaml", "grid": {"seed": [1]}, "output": output}))
    refused(base, sweep_cli(sw), "sweep.yaml", "output", "sweep file's name")


@pytest.mark.parametrize("output, fragment", [
    ("base scenario.yaml", "an input of the run"),
    ("holdout.parquet", "an input of the run"),
    ("candidate.json", "an input of the run"),
    ("sweep.yaml", "an input of the run"),
    (".", "is a folder"),
    ("notes.txt", "not a fraudsim run file"),
], ids=["the base", "the data", "the model", "the sweep file itself", "a folder", "some other file"])
def test_the_output_never_overwrites_what_the_sweep_reads(base, output, fragment):
    """These sweeps ran and then moved the sweep file over the base scenario, the data, the sweep file itself."""
    (base / "notes.txt").write_text("keep me")
    sw = base / "sweep.yaml"
    sw.write_text(yaml.safe_dump({"base": "base scenario.yaml", "grid": {"seed": [1]}, "output": output}))
    before = snapshot(base)
    refused(base, sweep_cli(sw), "output", fragment)
    assert snapshot(base) == before


def test_dash_o_over_an_input_is_refused_too(base):
    sw = base / "sweep.yaml"
    sw.write_text(yaml.safe_dump({"base": "base scenario.yaml", "grid": {"seed": [1]}}))
    before = snapshot(base)
    refused(base, sweep_cli(sw, "-o", base / "holdout.parquet"), "--output", "an input of the run")
    assert snapshot(base) == before


def test_an_absurd_grid_is_refused_at_once(base):
    """100 × 100 × 100 variants: every one was validated before the first ran (minutes, then a million runs)."""
    sw = base / "sweep.yaml"
    values = list(range(1, 101))
    sw.write_text(yaml.safe_dump({"base": "base scenario.yaml",
                                  "grid": {"seed": values, "attack.budget": values, "attack.limit": values}}))
    code = "from simulator.cli import main; main()"
    r = subprocess.run([sys.executable, "-c", code, "sweep", str(sw), "--engine", "serial", "-q"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "1,000,000 variants" in r.stderr and "grid" in r.stderr
    assert not list(base.glob("*.runs")) and not list(base.glob("*.duckdb*"))


def test_a_base_name_too_long_for_the_file_system_is_one_line(base):
    """Path.is_file raised OSError (ENAMETOOLONG) on a 300-character base name: exit 3 (fuzz_cli seed 8)."""
    sw = base / "sweep.yaml"
    sw.write_text(yaml.safe_dump({"base": "x" * 300 + ".yaml", "grid": {"seed": [1]}}))
    refused(base, sweep_cli(sw), "sweep.yaml", "base", "not found")
