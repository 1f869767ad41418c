"""A finished attack is never lost: the run's own tables are committed, the run marked finished and the file moved
into place before any derived step (views, summary, report); a derived step that fails is one warning line.

The failures are injected (fault injection, not a mock of what is tested): the step that writes the views into the
finished file raises, as it would on a full disk or a file another process holds open.
"""
from __future__ import annotations

import duckdb
import pytest
from typer.testing import CliRunner

import simulator as fs
import simulator.report.views as views
from simulator.cli import app

from .conftest import scenario_dict

real_create_views = views.create_views


@pytest.fixture()
def views_step_fails(monkeypatch):
    def broken(con, *, temporary=False):
        if not temporary:  # writing views into the file fails; readers' temporary views still work
            raise OSError("No space left on device (injected)")
        return real_create_views(con, temporary=True)

    monkeypatch.setattr(views, "create_views", broken)


def _finished(path) -> tuple[str, int, list]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        status = con.execute("SELECT status FROM runs").fetchall()[0][0]
        n = con.execute("SELECT count(*) FROM queries").fetchall()[0][0]
        version = con.execute("SELECT value FROM fraudsim_meta WHERE key = 'views_version'").fetchall()
    finally:
        con.close()
    return status, n, version


def test_cli_run_survives_a_failing_derived_step(team_files, write_scenario, tmp_path, views_step_fails):
    raw = scenario_dict(team_files, limit=3, budget=30)
    raw["gates"] = ["success_rate_at_30 <= 1.0"]
    out = tmp_path / "kept.duckdb"
    res = CliRunner().invoke(app, ["run", str(write_scenario(raw, "never_lost.yaml")), "-o", str(out), "-q"])
    assert res.exit_code == 0, (res.exit_code, res.output, res.exception)  # not 1: no gate failed
    warnings = [line for line in res.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and str(out) in warnings[0] and "views" in warnings[0] and "injected" in warnings[0]
    assert "Traceback" not in res.output
    assert out.is_file() and not out.with_name(out.name + ".partial").exists()
    status, n, version = _finished(out)
    assert status == "finished" and n > 0 and version == []  # no views in the file ...
    r = CliRunner().invoke(app, ["query", str(out), "SELECT count(*) AS n FROM run_summary"])  # ... read anyway
    assert r.exit_code == 0, r.output
    assert CliRunner().invoke(app, ["report", str(out), "-o", str(tmp_path / "r.html")]).exit_code == 0


def test_notebook_run_returns_a_result_with_the_warning(team_files, write_scenario, tmp_path, views_step_fails, capsys):
    out = tmp_path / "nb.duckdb"
    res = fs.run(write_scenario(scenario_dict(team_files, limit=2, budget=20), "nb.yaml"), output=out)
    assert res.path == out and len(res.warnings) == 1 and "views" in res.warnings[0]
    assert capsys.readouterr().err.strip() == res.warnings[0]
    assert _finished(out)[0] == "finished"
    assert res.summary()["targets"].to_list() == [2, 2]
    assert "<html" in res.to_html()


def test_campaign_is_finished_before_its_views(tmp_path, views_step_fails):
    sc = {"name": "lost-campaign", "seed": 3, "world": {"customers": 1500, "days": 8}, "rounds": 2,
          "adversaries": {"rings": [{"name": "r", "agents": 2, "strategies": ["random"], "probes_per_day": 4}]}}
    out = tmp_path / "camp.duckdb"
    res = fs.run(fs.Scenario.from_dict(sc), output=out)
    assert len(res.warnings) == 1 and str(out) in res.warnings[0]
    assert _finished(out)[0] == "finished"
    assert res.rounds().height == 2


def test_the_views_are_written_after_the_file_is_in_place(team_files, write_scenario, tmp_path, monkeypatch):
    seen = []

    def spy(con, *, temporary=False):
        if not temporary:
            row = con.execute("SELECT status FROM runs").fetchall()
            seen.append((row[0][0], (tmp_path / "o.duckdb").is_file()))
        return real_create_views(con, temporary=temporary)

    monkeypatch.setattr(views, "create_views", spy)
    fs.run(write_scenario(scenario_dict(team_files, limit=1, budget=10), "order.yaml"), output=tmp_path / "o.duckdb")
    assert seen == [("finished", True)]
    assert _finished(tmp_path / "o.duckdb")[2] == [(views.VIEWS_VERSION,)]
