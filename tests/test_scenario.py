"""The scenario model on its own: defaults, paths relative to the file, one-line errors naming file and field."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from simulator.errors import ScenarioError
from simulator.scenario import Scenario


def test_defaults_and_round_trip():
    sc = Scenario.from_dict({"name": "s"})
    assert sc.seed == 0 and sc.uses_world and sc.world_spec.customers > 0
    assert sc.attack.budget == 1000 and sc.attack.feedback == "score"
    assert sc.attack.strategies == ("random", "evolutionary") and sc.gates == ()
    assert sc.output_path() == Path("s.duckdb")
    again = Scenario.from_dict(yaml.safe_load(sc.to_yaml()))
    assert again == sc
    assert Scenario.default().name


def test_paths_resolve_against_the_scenario_file(tmp_path):
    (tmp_path / "sub").mkdir()
    f = tmp_path / "sub" / "s.yaml"
    f.write_text(yaml.safe_dump({"name": "s", "output": "out/r.duckdb", "attack": {"strategies": "random"}}))
    sc = Scenario.from_yaml(f)
    assert sc.output_path() == tmp_path / "sub" / "out" / "r.duckdb"
    assert sc.attack.strategies == ("random",) and sc.source == str(f)
    assert f in sc.input_paths()


def test_gates_accept_the_older_measure_names():
    sc = Scenario.from_dict({"name": "s", "attack": {"budget": 100},
                             "gates": ["success_at_100 <= 0.5", "cheap_success_rate_at_50 <= 0.1",
                                       "median_evasion_cost >= 1"]})
    assert len(sc.gates) == 3


@pytest.mark.parametrize("raw, field, reason", [
    ({"name": "s", "attack": {"budgte": 10}}, "attack.budgte", "unknown key; allowed here: targets"),
    ({"name": "s", "attack": {"budget": 0}}, "attack.budget", "greater than 0"),
    ({"name": "s", "seed": "x"}, "seed", "integer"),
    ({"seed": 1}, "name", "required key is missing"),
    ({"name": "bad name!"}, "name", "pattern"),
    ({"name": "s", "world": {}, "data": {"path": "x.parquet"}}, "data", "either 'world' or 'data'"),
    ({"name": "s", "attack": {"budget": 50}, "gates": ["success_rate_at_100 <= 0.1"]}, "gates.0",
     "budget is 50"),
    ({"name": "s", "gates": ["success_rate_at_10[boundary] <= 0.1"]}, "gates.0", "does not run"),
    # `defence:` is a union of a run's and a campaign's keys: the error names the field without the union's tag
    ({"name": "s", "defence": {"rate_limits": [{"max_queries": 0}]}}, "defence.rate_limits.0.max_queries",
     "greater than 0"),
    ({"name": "s", "defence": {"retrain": {"every": -1}}}, "defence.retrain.every", "greater than or equal to 0"),
])
def test_errors_name_the_field(raw, field, reason):
    with pytest.raises(ScenarioError) as exc:
        Scenario.from_dict(raw, source="s.yaml")
    assert exc.value.field == field, str(exc.value)
    assert reason in str(exc.value)
    assert "\n" not in str(exc.value)


def test_a_file_that_is_not_yaml_names_the_file(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("name: [unclosed\n")
    with pytest.raises(ScenarioError) as exc:
        Scenario.from_yaml(f)
    assert exc.value.file == str(f)
