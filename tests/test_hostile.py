"""Hostile and careless input (issue 10): every named case is one line on stderr naming file, field and reason,
exit 2, and no run file; internal errors exit 3; user text is printed literally."""
from __future__ import annotations

import json
import os
import sys

import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from simulator.cli import app, one_line
from simulator.errors import ModelError, ScenarioError
from simulator.scenario import Scenario

from .conftest import scenario_dict
from tests._util import one_line_error

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def world(**extra):
    raw = {"name": "w", "world": {"customers": 500, "days": 6}, "attack": {"limit": 2, "budget": 10,
                                                                         "strategies": ["random"]}}
    for k, v in extra.items():
        raw[k] = v if not isinstance(v, dict) or not isinstance(raw.get(k), dict) else {**raw[k], **v}
    return raw


def campaign(**ring):
    return {"name": "c", "world": {"customers": 3000, "days": 10},
            "adversaries": {"rings": [{"name": "r", "agents": 2, "strategies": ["random"], **ring}]}, "rounds": 2}


def write(tmp_path, text, name="s.yaml"):
    p = tmp_path / name
    p.write_text(text) if isinstance(text, str) else p.write_bytes(text)
    return p


# -- the loader: encodings, special files, YAML bombs ---------------------------------------------------------------

@pytest.mark.parametrize("case, content, fragment", [
    ("utf16", "name: x\n".encode("utf-16"), "UTF-16"),
    ("invalid utf8", b"name: \xff\xfe\xfa\n", "not UTF-8"),
    ("duplicate key", "name: a\nseed: 1\nname: b\n", "duplicate key 'name'"),
    ("deep nesting", "name: x\nattack: " + "[" * 1000 + "]" * 1000 + "\n", "nested more than"),
    ("deep mapping", "name: x\n" + "".join("  " * i + f"k{i}:\n" for i in range(200)), "nested more than"),
    ("billion laughs", "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{k}: &{k} [{', '.join(['*' + p] * 10)}]\n" for p, k in zip("abcdefg", "bcdefgh")), "billion laughs"),
    ("recursive alias", "name: x\nattack: &a\n  params: {random: *a}\n", "recursive alias"),
    ("not a mapping", "- 1\n- 2\n", "must be a mapping"),
    ("non-string key", "name: x\n1: 2\n", "keys must be strings"),
])
def test_loader_refuses(tmp_path, case, content, fragment):
    path = write(tmp_path, content)
    one_line_error(invoke("validate", path), str(path), fragment)


def test_aliases_in_strategy_params_are_refused_at_validate(tmp_path):
    laughs = "".join(f"    {k}: &{k} [{', '.join(['*' + p] * 10)}]\n" for p, k in zip("abcdefg", "bcdefgh"))
    text = ("name: x\nworld: {customers: 500, days: 6}\nattack:\n  strategies: [evolutionary]\n  params:\n"
            "   evolutionary:\n    a: &a [x, x, x, x, x, x, x, x, x, x]\n" + laughs)
    one_line_error(invoke("validate", write(tmp_path, text)), "billion laughs")


@pytest.mark.parametrize("target", ["dir", "devzero", "fifo", "long name", "missing"])
def test_special_scenario_paths(tmp_path, target):
    if target == "dir":
        path, fragment = tmp_path, "a folder"
    elif target == "devzero":
        path, fragment = "/dev/zero", "not a regular file"
    elif target == "fifo":
        path = tmp_path / "fifo.yaml"
        os.mkfifo(path)
        fragment = "not a regular file"
    elif target == "long name":
        path, fragment = tmp_path / ("x" * 300 + ".yaml"), "name too long"
    else:
        path, fragment = tmp_path / "nope.yaml", "file not found"
    one_line_error(invoke("validate", path), fragment)


def test_huge_scenario_file(tmp_path):
    path = write(tmp_path, "name: x\n#" + "x" * (2 << 20) + "\n")
    one_line_error(invoke("validate", path), "over the limit")


# -- bounds, finite numbers, paths ---------------------------------------------------------------------------------

BOUNDS = [
    ("seed 2^63", {"seed": 2**63}, "seed", "less than or equal to 2147483647"),
    ("budget 2^31-1", {"attack": {"budget": 2**31 - 1}}, "attack.budget", "less than or equal to 100000"),
    ("queries product", {"attack": {"budget": 100_000, "limit": 1000}}, "attack.budget", "one stored row per query"),
    ("days 10^9", {"world": {"days": 10**9}}, "world.days", "less than or equal to 730"),
    ("customers 10^12", {"world": {"customers": 10**12}}, "world.customers", "less than or equal to 1000000"),
    ("customer days", {"world": {"customers": 1_000_000, "days": 700}}, "world.customers", "all kept in memory"),
    ("fraud_rate_scale inf", {"world": {"fraud_rate_scale": float("inf")}}, "world.fraud_rate_scale", "finite"),
    ("fraud_rate_scale 1e300", {"world": {"fraud_rate_scale": 1e300}}, "world.fraud_rate_scale", "less than"),
    ("nan threshold", {"model": {"threshold": float("nan")}}, "model.threshold", "finite"),
    ("boolean threshold", {"model": {"threshold": True}}, "model.threshold", "not true"),
    ("long name", {"name": "n" * 100_000}, "name", "at most 64"),
    ("batch_size", {"attack": {"batch_size": 10**9}}, "attack.batch_size", "less than or equal to 10000"),
    ("output mapping", {"output": {"a": 1}}, "output", "must be a file path (a string), got dict"),
    ("output number", {"output": 5}, "output", "must be a file path"),
    ("model path list", {"model": {"path": [1]}}, "model.path", "must be a file path"),
    ("step string", {"attack": {"strategies": ["evolutionary"], "params": {"evolutionary": {"step": "x"}}}},
     "attack.params.evolutionary.step", "expected a number"),
    ("step inf", {"attack": {"strategies": ["evolutionary"], "params": {"evolutionary": {"step": float("inf")}}}},
     "attack.params.evolutionary.step", "finite"),
    ("elite 0", {"attack": {"strategies": ["evolutionary"], "params": {"evolutionary": {"elite": 0}}}},
     "attack.params.evolutionary.elite", "greater than or equal to 1"),
    ("elite float", {"attack": {"strategies": ["evolutionary"], "params": {"evolutionary": {"elite": 2.5}}}},
     "attack.params.evolutionary.elite", "whole number"),
    ("unknown param", {"attack": {"strategies": ["evolutionary"], "params": {"evolutionary": {"stepp": 1}}}},
     "attack.params.evolutionary.stepp", "unknown parameter"),
    ("optuna sampler", {"attack": {"strategies": ["optuna"], "params": {"optuna": {"sampler": "magic"}}}},
     "attack.params.optuna.sampler", "expected one of 'tpe'"),
    ("gate unknown strategy", {"gates": ["success_rate_at_10[evolutionary] <= 0.1"]}, "gates.0",
     "does not run"),
]


@pytest.mark.parametrize("case, edit, field, fragment", BOUNDS, ids=[b[0] for b in BOUNDS])
def test_bounds_and_types(tmp_path, case, edit, field, fragment):
    path = write(tmp_path, yaml.safe_dump(world(**edit)) if "inf" not in case and "nan" not in case else
                 json.dumps(world(**edit)).replace("Infinity", ".inf").replace("NaN", ".nan"))
    text = one_line_error(invoke("validate", path), str(path), field, fragment)
    assert f": {field}:" in text


@pytest.mark.parametrize("case, ring, field, fragment", [
    ("probes_per_day", {"probes_per_day": 2**31 - 1}, "probes_per_day", "less than or equal to 10000"),
    ("restock inf", {"restock_per_day": float("inf")}, "restock_per_day", "finite"),
    ("gap 1e300", {"gap_minutes": 1e300}, "gap_minutes", "less than or equal"),
    ("ring params typed", {"strategies": ["boundary"], "params": {"boundary": {"tol": "tiny"}}},
     "params.boundary.tol", "expected a number"),
])
def test_campaign_bounds(tmp_path, case, ring, field, fragment):
    text = json.dumps(campaign(**ring)).replace("Infinity", ".inf")
    one_line_error(invoke("validate", write(tmp_path, text)), field, fragment)


def test_campaign_rounds_temperature_and_fraudsters(tmp_path):
    raw = campaign()
    raw["rounds"] = 10**18
    one_line_error(invoke("validate", write(tmp_path, yaml.safe_dump(raw))), "rounds", "less than or equal to 365")
    raw = campaign()
    raw["adversaries"]["evolution"] = {"temperature": 1e300, "mutation": 1.0}
    one_line_error(invoke("validate", write(tmp_path, yaml.safe_dump(raw))), "temperature", "less than or equal")
    raw = campaign()
    raw["world"]["fraudsters"] = 0
    one_line_error(invoke("validate", write(tmp_path, yaml.safe_dump(raw))), "world.fraudsters", "at least 1")


def test_typed_params_accept_what_the_constructor_takes():
    sc = Scenario.from_dict(world(attack={"strategies": ["evolutionary", "optuna"],
                                          "params": {"evolutionary": {"step": 1, "elite": 3},
                                                     "optuna": {"sampler": "random", "multivariate": False}}}))
    assert sc.attack.params["evolutionary"] == {"step": 1, "elite": 3}
    with pytest.raises(ScenarioError, match="multivariate: expected true or false"):
        Scenario.from_dict(world(attack={"strategies": ["optuna"], "params": {"optuna": {"multivariate": 1}}}))


# -- messages are literal, one line ---------------------------------------------------------------------------------

def test_markup_and_control_characters_are_printed_literally(tmp_path):
    (tmp_path / "br[").mkdir()
    path = write(tmp_path, "name: x\nattack: {'budjet[/x]': 1, strategies: [random]}\n", "br[/b]ackets.yaml")
    text = one_line_error(invoke("validate", path), "br[/b]ackets.yaml", "attack.budjet[/x]", "unknown key")
    path = write(tmp_path, "name: x\nattack: {strategies: ['tele[word]\\npathy']}\n")
    one_line_error(invoke("validate", path), "unknown strategy 'tele[word]")
    assert one_line("a\nb\x1b[31m\u2028") == "a\\nb\\x1b[31m\\u2028"


def test_internal_error_exits_3_with_one_line_and_debug_traceback(tmp_path, monkeypatch):
    import simulator.runner as runner_mod

    def boom(*a, **k):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(runner_mod, "prepare", boom)
    path = write(tmp_path, yaml.safe_dump(world()))
    one_line_error(invoke("validate", path), "internal error", "ZeroDivisionError: a bug", "--debug", code=3)
    r = invoke("validate", path, "--debug")
    assert r.exit_code == 3 and "Traceback" in r.stderr and "ZeroDivisionError" in r.stderr


# -- data, models, cards --------------------------------------------------------------------------------------------

def _team_scenario(team_files, write_scenario, **edits):
    raw = scenario_dict(team_files)
    for key, value in edits.items():
        section, _, sub = key.partition("__")
        if sub:
            raw[section] = dict(raw[section], **{sub: value})
        else:
            raw[section] = value
    return write_scenario(raw, "hostile.yaml")


@pytest.mark.parametrize("case", ["zero rows", "header-only csv", "ragged csv", "all-null column", "struct column",
                                  "string frozen column", "data is a folder"])
def test_bad_data(team_files, write_scenario, case):
    d = team_files["dir"]
    frame = pl.read_parquet(team_files["data"])
    if case == "zero rows":
        name, fragment = "empty.parquet", "no rows"
        frame.head(0).write_parquet(d / name)
    elif case == "header-only csv":
        name, fragment = "header.csv", "no rows"
        (d / name).write_text(",".join(frame.columns) + "\n")
    elif case == "ragged csv":
        name, fragment = "ragged.csv", "cannot be read as CSV"
        (d / name).write_text("amount,hour\n1,2\n3,4,5,6\n")
    elif case == "all-null column":
        name, fragment = "nulls.parquet", "account_age_days: model feature column has no values"
        frame.with_columns(pl.lit(None, pl.Float64).alias("account_age_days")).write_parquet(d / name)
    elif case == "struct column":
        name, fragment = "struct.parquet", "amount: non-numeric"
        frame.with_columns(pl.struct(pl.col("amount"), pl.col("hour")).alias("amount")).write_parquet(d / name)
    elif case == "string frozen column":
        name, fragment = "str.parquet", "account_age_days: non-numeric"
        frame.with_columns(pl.col("account_age_days").cast(pl.Utf8)).write_parquet(d / name)
    else:
        name, fragment = "adir.parquet", "a folder"
        (d / name).mkdir(exist_ok=True)
    path = _team_scenario(team_files, write_scenario, data__path=name)
    one_line_error(invoke("validate", path), name, fragment)


def _copy_model(team_files, name, card=None, content=None):
    d = team_files["dir"]
    (d / name).write_bytes(content if content is not None else team_files["lgbm"].read_bytes())
    card_path = d / (name.rsplit(".", 1)[0] + ".card.json")
    if card is None:
        card_path.unlink(missing_ok=True)
    else:
        card_path.write_bytes(card if isinstance(card, bytes) else card.encode())
    return name


@pytest.mark.parametrize("case, card, fragment", [
    ("not utf8", b'{"threshold": 0.5, "x": "\xff"}', "not UTF-8"),
    ("not an object", "[0.5]", "must be a JSON object, got list"),
    ("deep", '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested more than"),
    ("threshold text", '{"threshold": "high"}', "threshold: must be a number between 0 and 1"),
    ("threshold true", '{"threshold": true}', "threshold: must be a number between 0 and 1, got true"),
    ("threshold 7", '{"threshold": 7}', "threshold: must be a number between 0 and 1"),
    ("NaN", '{"threshold": NaN}', "not valid JSON"),
])
def test_bad_model_cards(team_files, write_scenario, case, card, fragment):
    name = _copy_model(team_files, f"carded_{case.replace(' ', '_')}.txt", card=card)
    raw = scenario_dict(team_files)
    raw["model"] = {"path": name}
    path = write_scenario(raw, "card.yaml")
    one_line_error(invoke("validate", path), ".card.json", fragment)


def test_truncated_lightgbm_is_one_line_in_process(team_files):
    """Every truncation point of a real LightGBM model: a ModelError, never a crash (the test process would die)."""
    from simulator.target import load_model

    data = team_files["lgbm"].read_bytes()
    d = team_files["dir"]
    cuts = sorted(set(range(0, len(data), max(1, len(data) // 150))) | {len(data) - 1, len(data) - 2})
    for n in cuts:
        (d / "trunc.txt").write_bytes(data[:n])
        try:
            load_model(d / "trunc.txt", "lightgbm")
        except ModelError as exc:
            assert "\n" not in str(exc) and "trunc.txt" in str(exc)


def test_crafted_lightgbm_does_not_hang(team_files):
    import random

    from simulator.target import load_model

    rng = random.Random(7)
    d = team_files["dir"]
    for i in range(30):
        junk = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 400)))
        (d / "crafted.txt").write_bytes(b"tree\nobjective=binary sigmoid:1\n" + junk)
        with pytest.raises(ModelError, match="not a LightGBM text model"):
            load_model(d / "crafted.txt", "lightgbm")


def test_lightgbm_tree_with_a_cycle_is_refused(team_files):
    from simulator.target import load_model

    text = team_files["lgbm"].read_text()
    lines = text.split("\n")
    i = next(k for k, ln in enumerate(lines) if ln.startswith("left_child=") and len(ln.split()) >= 3)
    vals = lines[i].split("=", 1)[1].split()
    vals[-1] = "0"  # the last internal node points back at the root
    lines[i] = "left_child=" + " ".join(vals)
    (team_files["dir"] / "cycle.txt").write_text("\n".join(lines))
    with pytest.raises(ModelError, match="reached twice|not reachable|tree_sizes"):
        load_model(team_files["dir"] / "cycle.txt", "lightgbm")


def test_lightgbm_output_never_reaches_the_terminal(team_files, capfd):
    from simulator.target import load_model

    model = load_model(team_files["lgbm"])
    assert model.kind == "lightgbm"
    captured = capfd.readouterr()
    assert "[LightGBM]" not in captured.out + captured.err


def test_deep_xgboost_json_is_one_line(tmp_path):
    from simulator.target import load_model

    (tmp_path / "deep.json").write_text('{"learner": ' + "[" * 300_000 + "]" * 300_000 + "}")
    with pytest.raises(ModelError, match="nested 300,001 levels deep"):
        load_model(tmp_path / "deep.json")


# -- output paths ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["directory", "under a file", "long name", "dot", "empty", "the model", "the data",
                                  "the scenario", "a parquet"])
def test_bad_output_paths(team_files, write_scenario, tmp_path, case):
    d = team_files["dir"]
    path = write_scenario(scenario_dict(team_files), "out.yaml")
    target, fragment = {
        "directory": (tmp_path, "is a folder"),
        "under a file": (team_files["data"] / "x.duckdb", "is a file, so nothing can be written under it"),
        "long name": (tmp_path / ("y" * 300 + ".duckdb"), "the limit is 240"),
        "dot": (".", "is a folder"),
        "empty": ("", "is a folder"),
        "the model": (team_files["xgb"], "an input of the run"),
        "the data": (team_files["data"], "an input of the run"),
        "the scenario": (path, "an input of the run"),
        "a parquet": (d / "other.parquet", "is not a fraudsim run file"),
    }[case]
    if case == "a parquet":
        pl.DataFrame({"a": [1]}).write_parquet(target)
    before = {p.name: p.stat().st_mtime_ns for p in d.iterdir() if p.is_file()}
    one_line_error(invoke("run", path, "-o", target, "-q"), "--output", fragment)
    after = {p.name: p.stat().st_mtime_ns for p in d.iterdir() if p.is_file()}
    assert before == after


def test_exports_never_overwrite_a_run_file(team_files, write_scenario, tmp_path):
    out = tmp_path / "run.duckdb"
    r = invoke("run", write_scenario(scenario_dict(team_files, budget=20), "exp.yaml"), "-o", out, "-q")
    assert r.exit_code == 0, r.output
    before = out.read_bytes()
    one_line_error(invoke("query", out, "SELECT 1", "-o", out), "an input of the run")
    one_line_error(invoke("report", out, "-o", out), "an input of the run")
    one_line_error(invoke("compare", out, out, "-o", out, "--format", "csv"), "an input of the run")
    other = tmp_path / "other.duckdb"
    other.write_bytes(before)
    one_line_error(invoke("query", out, "SELECT 1", "-o", other, "--format", "csv"), "refusing to overwrite")
    one_line_error(invoke("report", out, "-o", team_files["lgbm"]), "refusing to overwrite")
    assert out.read_bytes() == before
    # SQL that starts with a comment is SQL, not an option; a lone '--' works too
    r = invoke("query", out, "-- a comment\nSELECT 42 AS answer", "--format", "csv")
    assert r.exit_code == 0 and "42" in r.output, r.output
    r = invoke("query", out, "--format", "csv", "--", "--x\nSELECT 7 AS seven")
    assert r.exit_code == 0 and "7" in r.output, r.output
    # a statement that never ends is stopped by the time limit
    r = invoke("query", out, "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
               "--timeout", "2")
    one_line_error(r, "ran longer than 2 s")
    one_line_error(invoke("query", out, "SELECT 1", "--memory-limit", "lots"), "memory limit 'lots'")
    # .partial files are never results
    partial = tmp_path / "run.duckdb.partial"
    partial.write_bytes(before)
    one_line_error(invoke("query", partial, "SELECT 1"), "not a result")
    one_line_error(invoke("report", partial, "-o", tmp_path / "r.html"), "not a result")


def test_junit_without_gates_warns_and_writes_nothing(team_files, write_scenario, tmp_path):
    junit = tmp_path / "j.xml"
    r = invoke("run", write_scenario(scenario_dict(team_files, budget=20), "nogates.yaml"), "-o",
               tmp_path / "n.duckdb", "-q", "--junit", junit)
    assert r.exit_code == 0 and "no gates" in r.stderr and not junit.exists()


def test_repr_html_escapes_the_path(tmp_path):
    from simulator.runner import RunResult

    res = RunResult(path=tmp_path / "<script>alert(1)</script>.duckdb", run_id="x<b>", scenario=None)  # type: ignore
    res.summary = lambda: pl.DataFrame({"a": [1]})  # type: ignore[method-assign]
    html = res._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;" in html and "x&lt;b&gt;" in html


def test_store_fail_does_not_mask_the_real_error(tmp_path):
    from simulator.store import Store

    store = Store(tmp_path / "f.duckdb", ["a"])
    store.con.close()  # the connection is already gone when the run fails
    store.fail("r", ValueError("the real error"))
    assert not (tmp_path / "f.duckdb.partial").exists() and not (tmp_path / "f.duckdb.lock").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="flock")
def test_second_writer_is_refused_naming_the_holder(tmp_path):
    from simulator.errors import StoreError
    from simulator.store import Store, output_lock

    first = Store(tmp_path / "o.duckdb", ["a"])
    import subprocess

    code = ("import sys\nfrom simulator.store import Store\nfrom simulator.errors import StoreError\n"
            "try:\n    Store(sys.argv[1], ['a'])\nexcept StoreError as e:\n    print(e)\n")
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path / "o.duckdb")], capture_output=True, text=True,
                       timeout=120)
    assert f"another fraudsim run (pid {os.getpid()})" in p.stdout, p.stdout + p.stderr
    with output_lock(tmp_path / "o.duckdb"):  # re-entrant in the holder's own process
        pass
    first.abandon()
    with output_lock(tmp_path / "o.duckdb") as lock:
        assert lock.fd is not None
    assert not (tmp_path / "o.duckdb.lock").exists()
    with pytest.raises(StoreError, match="is a folder"):
        Store(tmp_path, ["a"])


def test_gate_names_keep_their_brackets(team_files, write_scenario, tmp_path):
    """A failing gate on one strategy is printed with its [strategy], in a file whose name has brackets."""
    raw = scenario_dict(team_files, budget=20)
    raw["gates"] = ["success_rate_at_20[evolutionary] <= -1"]
    (tmp_path / "a[b]").mkdir()
    out = tmp_path / "a[b]" / "run[x].duckdb"
    r = invoke("run", write_scenario(raw, "brackets.yaml"), "-o", out, "-q")
    assert r.exit_code == 1, r.output
    assert "success_rate_at_20[evolutionary]" in r.stderr and "run[x].duckdb" in r.output
    one_line_error(invoke("gate", out, "success_rate_at_20[tree] <= 1"), "run[x].duckdb", "tree")


def test_xgboost_json_with_inconsistent_trees_is_refused(team_files, tmp_path):
    """A parent pointer changed by one digit made XGBoost's loader crash the process (found by the fuzzer)."""
    from simulator.target import load_model

    model = json.loads(team_files["xgb"].read_text())
    tree = model["learner"]["gradient_booster"]["model"]["trees"][0]
    internal = [i for i, c in enumerate(tree["left_children"]) if c != -1]
    tree["parents"][tree["left_children"][internal[-1]]] = 0 if internal[-1] else 1
    (tmp_path / "m.json").write_text(json.dumps(model))
    with pytest.raises(ModelError, match="parent pointers disagree"):
        load_model(tmp_path / "m.json")


def test_long_model_path_and_deep_flow_yaml_are_one_line(team_files, write_scenario, tmp_path):
    raw = scenario_dict(team_files)
    raw["model"] = {"path": "x" * 300 + ".json"}
    one_line_error(invoke("validate", write_scenario(raw, "longmodel.yaml")), "model.path", "name too long")
    path = write(tmp_path, "name: x\nattack: " + "[" * 100_000 + "]" * 100_000 + "\n")
    one_line_error(invoke("validate", path), "nested more than 32 levels")
