"""The command line: bad input is one line naming file, field and reason, exit code 2, and no run file."""
import copy
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from simulator.cli import app

from .conftest import scenario_dict
from tests._util import one_line_error

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _edit(raw, dotted, value):
    raw = copy.deepcopy(raw)
    node = raw
    keys = dotted.split(".")
    for k in keys[:-1]:
        node = node[k]
    if value is _DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return raw


_DELETE = object()

BAD_SCENARIOS = [
    ("unknown key", "attack.budjet", 5, ["attack.budjet", "unknown key"]),
    ("budget -1", "attack.budget", -1, ["attack.budget", "greater than 0"]),
    ("budget 0", "attack.budget", 0, ["attack.budget", "greater than 0"]),
    ("threshold > 1", "model.threshold", 1.5, ["model.threshold", "less than or equal to 1"]),
    ("threshold < 0", "model.threshold", -0.1, ["model.threshold", "greater than or equal to 0"]),
    ("min > max", "features.amount.min", 50000, ["features.amount", "min (50000) > max (20000)"]),
    ("feature not in model", "features.shoe_size", {"type": "integer", "min": 1, "max": 50},
     ["features.shoe_size", "the model has no feature 'shoe_size'"]),
    ("missing data file", "data.path", "nowhere.parquet", ["nowhere.parquet", "data.path", "file not found"]),
    ("missing model file", "model.path", "nowhere.json", ["nowhere.json", "model.path", "file not found"]),
    ("unknown strategy", "attack.strategies", ["random", "telepathy"], ["attack.strategies.1", "unknown strategy 'telepathy'"]),
    ("needs score", "attack.feedback", "decision", ["attack.strategies.1", "needs score feedback"]),
]


@pytest.mark.parametrize("case, key, value, fragments", BAD_SCENARIOS, ids=[c[0] for c in BAD_SCENARIOS])
@pytest.mark.parametrize("command", ["run", "validate"])
def test_bad_scenarios(case, key, value, fragments, command, team_files, write_scenario):
    raw = _edit(scenario_dict(team_files), key, value)
    path = write_scenario(raw, f"bad_{command}.yaml")
    out = team_files["dir"] / "release-check.duckdb"
    out.unlink(missing_ok=True)
    one_line_error(invoke(command, path), *fragments)
    assert not out.exists() and not (team_files["dir"] / "release-check.duckdb.partial").exists()


def test_bad_data_files(team_files, write_scenario, tmp_path):
    import polars as pl

    frame = pl.read_parquet(team_files["data"])
    cases = {
        "no_hour.parquet": (frame.drop("hour"), ["no_hour.parquet", "hour", "missing model feature 'hour'"]),
        "inf.parquet": (frame.with_columns(pl.when(pl.int_range(pl.len()) == 3).then(float("inf")).otherwise(pl.col("credit_limit")).alias("credit_limit")),
                        ["inf.parquet", "credit_limit", "1 infinite values"]),
        "text.parquet": (frame.with_columns(pl.col("amount").cast(pl.Utf8)), ["text.parquet", "amount", "non-numeric"]),
    }
    for name, (bad, fragments) in cases.items():
        bad.write_parquet(team_files["dir"] / name)
        raw = _edit(scenario_dict(team_files), "data.path", name)
        one_line_error(invoke("validate", write_scenario(raw, "bad_data.yaml")), *fragments)


@pytest.mark.parametrize("command", ["run", "validate"])
def test_empty_data_and_bad_labels_are_one_line_exit_2_no_run_file(command, team_files, write_scenario, tmp_path):
    """Issue 8's bad input: an empty data file, a header-only CSV, a label column that is not 0/1."""
    import polars as pl

    d = team_files["dir"]
    frame = pl.read_parquet(team_files["data"]).head(300)
    (d / "empty.csv").write_bytes(b"")
    frame.head(0).write_csv(d / "header_only.csv")
    frame.head(0).write_parquet(d / "no_rows.parquet")
    frame.with_columns(pl.when(pl.int_range(pl.len()) == 7).then(2).otherwise(pl.col("is_fraud")).alias("is_fraud")) \
        .write_parquet(d / "label_2.parquet")
    frame.with_columns(pl.when(pl.col("is_fraud") == 1).then(pl.lit("yes")).otherwise(pl.lit("no")).alias("is_fraud")) \
        .write_parquet(d / "label_text.parquet")
    frame.with_columns(pl.when(pl.int_range(pl.len()) == 5).then(None).otherwise(pl.col("is_fraud")).alias("is_fraud")) \
        .write_parquet(d / "label_null.parquet")
    cases = {
        "empty.csv": ["empty.csv", "data.path", "the file is empty"],
        "header_only.csv": ["header_only.csv", "data.path", "no rows"],
        "no_rows.parquet": ["no_rows.parquet", "data.path", "no rows"],
        "label_2.parquet": ["label_2.parquet", "data.label (is_fraud)", "must be 0/1", "row 7, value 2"],
        "label_text.parquet": ["label_text.parquet", "data.label (is_fraud)", "must be 0/1", "String"],
        "label_null.parquet": ["label_null.parquet", "data.label (is_fraud)", "missing values", "row 5"],
    }
    out = tmp_path / "never.duckdb"
    for name, fragments in cases.items():
        raw = _edit(scenario_dict(team_files), "data.path", name)
        raw["attack"]["targets"] = "declined"  # the label is checked even when the targets do not need it
        one_line_error(invoke(command, write_scenario(raw, f"bad_{name}.yaml"), *(["-o", out] if command == "run" else [])),
                       *fragments)
        assert not out.exists() and not out.with_name(out.name + ".partial").exists()


def test_missing_values_in_a_teams_data_are_scored_not_refused(team_files, write_scenario, tmp_path):
    import polars as pl

    frame = pl.read_parquet(team_files["data"])
    holes = pl.int_range(pl.len()) % 5 == 0
    frame.with_columns(pl.when(holes).then(None).otherwise(pl.col("credit_limit")).alias("credit_limit"),
                       pl.when(holes).then(float("nan")).otherwise(pl.col("amount")).alias("amount")) \
        .write_parquet(team_files["dir"] / "holes.parquet")
    raw = _edit(scenario_dict(team_files), "data.path", "holes.parquet")
    r = invoke("validate", write_scenario(raw, "holes.yaml"))
    assert r.exit_code == 0, r.output


def test_model_that_is_neither_xgboost_nor_lightgbm(team_files, write_scenario):
    (team_files["dir"] / "model.bin").write_bytes(b"\x80\x04\x95not a model")
    raw = _edit(scenario_dict(team_files), "model.path", "model.bin")
    one_line_error(invoke("run", write_scenario(raw, "bad_model.yaml")), "model.bin", "model.path",
                   "neither an XGBoost JSON/UBJ model nor a LightGBM text model")


def test_missing_scenario_and_bad_yaml(tmp_path):
    one_line_error(invoke("run", tmp_path / "none.yaml"), "none.yaml", "file not found")
    (tmp_path / "broken.yaml").write_text("name: x\nattack: [1, 2\n")
    one_line_error(invoke("validate", tmp_path / "broken.yaml"), "broken.yaml", "not valid YAML")


def test_validate_and_run_ok(team_files, write_scenario, tmp_path):
    path = write_scenario(scenario_dict(team_files), "ok.yaml")
    r = invoke("validate", path)
    assert r.exit_code == 0 and "ok" in r.output and "6 targets" in r.output
    r = invoke("run", path, "-o", tmp_path / "ok.duckdb", "--quiet")
    assert r.exit_code == 0, r.output
    assert "evolutionary" in r.output and (tmp_path / "ok.duckdb").exists()


def test_generate_writes_parquet(tmp_path):
    r = invoke("generate", "-o", tmp_path / "w.parquet", "--customers", 500, "--days", 3, "--seed", 4)
    assert r.exit_code == 0, r.output
    import polars as pl

    df = pl.read_parquet(tmp_path / "w.parquet")
    assert df.height > 100 and "is_fraud" in df.columns


def test_entry_point_runs_as_a_process(team_files, write_scenario):
    """The installed console script path: a real process, one line on stderr, exit 2."""
    raw = _edit(scenario_dict(team_files), "attack.budget", -1)
    p = subprocess.run([sys.executable, "-m", "simulator.cli", "validate", str(write_scenario(raw, "proc.yaml"))],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "attack.budget" in p.stderr


@pytest.mark.parametrize("gate, code", [("success_rate_at_60 <= 0", 1), ("success_rate_at_60 <= 1", 0)])
def test_run_gates_exit_code_and_junit(gate, code, team_files, write_scenario, tmp_path):
    import xml.etree.ElementTree as ET

    raw = scenario_dict(team_files)
    raw["gates"] = [gate, "auc >= 0.5"]
    junit = tmp_path / "results.xml"
    r = invoke("run", write_scenario(raw, "gated.yaml"), "-o", tmp_path / "g.duckdb", "-q", "--junit", junit)
    assert r.exit_code == code, r.output
    cases = ET.parse(junit).getroot().iter("testcase")
    failed = {c.get("name"): c.find("failure") is not None for c in cases}
    assert len(failed) == 2 and failed[gate] == (code == 1)
    assert not any(v for k, v in failed.items() if k != gate)


def test_malformed_gate_is_bad_input(team_files, write_scenario):
    raw = scenario_dict(team_files)
    raw["gates"] = ["success_rate_at_100 <=< 0.05"]
    one_line_error(invoke("validate", write_scenario(raw, "badgate.yaml")), "gates.0")


def test_gpu_backend_without_a_gpu_fails_before_any_query(tmp_path):
    from simulator.kernels import gpu

    if gpu.available():
        pytest.skip("this machine has a GPU")
    path = tmp_path / "gpu.yaml"
    path.write_text("name: g\nworld: {customers: 1000, days: 4}\nattack: {backend: gpu}\n")
    one_line_error(invoke("run", path, "-o", tmp_path / "g.duckdb"), "gpu.yaml", "attack.backend", "needs CuPy")
    assert not (tmp_path / "g.duckdb").exists()
