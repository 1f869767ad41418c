"""Hostile run files (found by fuzzing the readers: report, gate, compare, query): a file from a newer fraudsim
(``schema_version`` 99) was read as if it were this version's, a file without a ``runs`` table (a sweep whose
variants all failed, or a damaged file) was exit 3, and a view dropped by hand made ``report`` exit 3. Each is one
line naming the file (exit 2), or, for the view, served from temporary views without writing to the file."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import duckdb
import pytest
import yaml
from typer.testing import CliRunner

from simulator.cli import app
from tests._util import one_line_error

from .conftest import scenario_dict

runner = CliRunner()


@pytest.fixture(scope="module")
def run_file(team_files, tmp_path_factory):
    d = tmp_path_factory.mktemp("store")
    raw = scenario_dict(team_files, limit=2, budget=10, strategies=["random"])
    raw["data"]["path"] = str(team_files["data"])
    raw["model"]["path"] = str(team_files["xgb"])
    (d / "s.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    r = runner.invoke(app, ["run", str(d / "s.yaml"), "-q", "-o", str(d / "run.duckdb")])
    assert r.exit_code == 0, r.output
    return d / "run.duckdb"


def edited(run_file, tmp_path, *sql, name="edited.duckdb"):
    path = tmp_path / name
    shutil.copy(run_file, path)
    con = duckdb.connect(str(path))
    for q in sql:
        con.execute(q)
    con.close()
    return path


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


READERS = [
    lambda f, tmp: ["report", f, "-o", tmp / "r.html"],
    lambda f, tmp: ["gate", f, "auc >= 0.5"],
    lambda f, tmp: ["compare", f, f],
    lambda f, tmp: ["query", f, "SELECT count(*) FROM runs"],
]
READER_IDS = ["report", "gate", "compare", "query"]


@pytest.mark.parametrize("reader", READERS, ids=READER_IDS)
@pytest.mark.parametrize("version", ["99", "4", "abc"])
def test_a_file_of_another_schema_version_is_one_line(run_file, tmp_path, reader, version):
    path = edited(run_file, tmp_path, f"UPDATE fraudsim_meta SET value = '{version}' WHERE key = 'schema_version'")
    one_line_error(runner.invoke(app, [str(a) for a in reader(path, tmp_path)]), str(path),
                   "fraudsim_meta.schema_version", f"schema version '{version}'")
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("reader", READERS[:3], ids=READER_IDS[:3])
def test_a_file_without_a_runs_table_is_one_line(run_file, tmp_path, reader):
    path = edited(run_file, tmp_path, "DROP TABLE runs CASCADE")
    one_line_error(runner.invoke(app, [str(a) for a in reader(path, tmp_path)]), str(path), "no runs table")
    assert not (tmp_path / "r.html").exists()


def test_a_view_dropped_by_hand_is_made_again_for_the_report(run_file, tmp_path):
    path = edited(run_file, tmp_path, "DROP VIEW success_by_budget")
    before = digest(path)
    r = runner.invoke(app, ["report", str(path), "-o", str(tmp_path / "r.html")])
    assert r.exit_code == 0, r.output
    assert "success" in (tmp_path / "r.html").read_text().lower()
    assert digest(path) == before  # read-only: the temporary views are not written to the file


def test_gates_on_a_sweep_whose_variants_all_failed(team_files, tmp_path):
    raw = scenario_dict(team_files, limit=1, budget=5, strategies=["random"])
    raw["data"]["path"], raw["model"]["path"] = str(team_files["data"]), str(team_files["xgb"])
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    (tmp_path / "kaputt.json").write_text("{ not a model")
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({"base": "base.yaml", "variants": [
        {"model.path": "kaputt.json"}], "output": "sweep.duckdb"}))
    r = runner.invoke(app, ["sweep", str(tmp_path / "sweep.yaml"), "--engine", "serial", "-q"])
    assert r.exit_code == 1, r.output  # the variant failed; the sweep file records it
    sweep_file = tmp_path / "sweep.duckdb"
    one_line_error(runner.invoke(app, ["gate", str(sweep_file), "auc >= 0.5"]), str(sweep_file), "no runs table")


def test_damage_past_the_header_is_one_line(run_file, tmp_path):
    """8 KiB overwritten at each twentieth of the file: DuckDB opens it and fails a checksum only when a reader
    reaches the block (exit 3 before). Every case is a report or one line, exit 2; some reach the damaged block."""
    data = run_file.read_bytes()
    damaged = 0
    for k in range(1, 20):
        bb = bytearray(data)
        at = len(data) * k // 20 // 4096 * 4096
        bb[at:at + 8192] = b"\xab" * 8192
        path = tmp_path / f"damaged{k}.duckdb"
        path.write_bytes(bytes(bb))
        r = runner.invoke(app, ["report", str(path), "-o", str(tmp_path / f"r{k}.html")])
        if r.exit_code != 0:
            text = one_line_error(r, str(path))
            damaged += "damaged or truncated" in text
            assert not (tmp_path / f"r{k}.html").exists()
    assert damaged >= 1


def test_a_file_without_a_transactions_table_is_one_line(run_file, tmp_path):
    path = edited(run_file, tmp_path, "DROP TABLE transactions CASCADE")
    one_line_error(runner.invoke(app, ["compare", str(path), str(run_file)]), str(path), "no transactions table")


@pytest.mark.parametrize("model", ["xgb", "ubj", "onnx"])
@pytest.mark.parametrize("command", ["gate --junit", "query -o", "compare -o"])
def test_exports_never_overwrite_a_model(team_files, run_file, tmp_path, model, command):
    """``--junit model.json`` replaced an XGBoost model with JUnit XML, ``-o model.onnx`` an ONNX model with CSV."""
    import xgboost as xgb

    if model == "onnx":
        victim = tmp_path / "m.onnx"
        victim.write_bytes((Path(__file__).resolve().parents[1] / "models" / "xgb_export.onnx").read_bytes())
    elif model == "ubj":
        booster = xgb.Booster()
        booster.load_model(str(team_files["xgb"]))
        victim = tmp_path / "m.ubj"
        victim.write_bytes(bytes(booster.save_raw("ubj")))
    else:
        victim = tmp_path / "m.json"
        victim.write_bytes(team_files["xgb"].read_bytes())
    before = digest(victim)
    argv = {"gate --junit": ["gate", run_file, "auc >= 0.5", "--junit", victim],
            "query -o": ["query", run_file, "SELECT 1", "-f", "csv", "-o", victim],
            "compare -o": ["compare", run_file, run_file, "-f", "csv", "-o", victim]}[command]
    one_line_error(runner.invoke(app, [str(a) for a in argv]), str(victim), "model/data file")
    assert digest(victim) == before


def test_a_huge_value_in_a_terminal_table_is_cut(run_file):
    """A 20 MB value took Rich over two minutes of CPU to lay out (100 MB: a hang); the table shows its start."""
    r = runner.invoke(app, ["query", str(run_file), "SELECT repeat('x', 5000000) AS s"])
    assert r.exit_code == 0, r.output
    assert "5,000,000 characters; --format csv for all" in r.output.replace("\n", "") and len(r.output) < 100_000


@pytest.mark.parametrize("table", ["targets", "model_versions", "queries"])
def test_gates_on_a_file_without_a_run_table_are_one_line(run_file, tmp_path, table):
    """gate read the file without open_run's checks: a dropped targets or model_versions table was exit 3
    (fuzz_cli seed 9)."""
    path = edited(run_file, tmp_path, f"DROP TABLE {table} CASCADE")
    one_line_error(runner.invoke(app, ["gate", str(path), "auc >= 0.5", "success_rate_at_10 <= 1"]), str(path),
                   f"no {table} table")
