"""Every scenario in scenarios/ validates and runs with a small budget; data scenarios pass the independent
checker from shared/tools when it is present."""
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import simulator as fs

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))
CHECKER = ROOT.parent / "shared" / "tools" / "check-run.py"


def small(path: Path, tmp: Path) -> Path:
    """The scenario with absolute paths and a small attack, written to tmp."""
    raw = yaml.safe_load(path.read_text())
    for section in ("data", "model"):
        if isinstance(raw.get(section), dict) and "path" in raw[section]:
            raw[section]["path"] = str((path.parent / raw[section]["path"]).resolve())
    if "attack" in raw:
        raw["attack"].update(budget=30, limit=4)
    raw["output"] = str(tmp / "run.duckdb")
    out = tmp / path.name
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out


def test_there_are_example_scenarios():
    assert len(SCENARIOS) >= 3


#: examples whose small run still takes over ~15 s of CPU (the campaign's several rounds of retraining)
SLOW_SCENARIOS = {"campaign_default"}


@pytest.mark.parametrize("path", [pytest.param(p, marks=pytest.mark.slow) if p.stem in SLOW_SCENARIOS else p
                                  for p in SCENARIOS], ids=[p.stem for p in SCENARIOS])
def test_scenario_runs_small(path, tmp_path):
    fs.Scenario.from_yaml(path)  # the file as shipped is valid
    sc_path = small(path, tmp_path)
    model = yaml.safe_load(sc_path.read_text()).get("model") or {}
    if model.get("url"):  # an endpoint example: serve the baseline model as its comments say, on a free port
        from simulator.serve import ScoringServer
        from simulator.target import load_model

        with ScoringServer(load_model(ROOT / "models" / "xgb_baseline.json"), model.get("protocol", "mlflow"),
                           model_name=model.get("model_name") or "fraud") as srv:
            raw = yaml.safe_load(sc_path.read_text())
            raw["model"]["url"] = srv.url
            sc_path.write_text(yaml.safe_dump(raw, sort_keys=False))
            res = fs.run(sc_path)
            assert srv.rows_scored > 0
    else:
        res = fs.run(sc_path)
    assert res.path.exists() and res.summary().height >= 1
    if "data" in yaml.safe_load(path.read_text()) and CHECKER.exists():
        p = subprocess.run([sys.executable, str(CHECKER), str(sc_path), str(res.path)], capture_output=True, text=True,
                           timeout=300)
        assert p.returncode == 0, p.stdout + p.stderr
        assert "all checks hold" in p.stdout
    # no logged query breaks a relation the scenario ships (an independent NumPy reading of the relations)
    from tests.relations_check import broken

    counts, skipped = broken(sc_path, res.path)
    assert not any(counts.values()), counts
    if yaml.safe_load(path.read_text()).get("relations"):
        assert counts, "no relation could be checked"
