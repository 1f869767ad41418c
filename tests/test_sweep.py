"""fraudsim sweep: variants of a base scenario run as tasks, merged into one DuckDB file, resumable.

The data and model here look nothing like fraudsim's world: German and unicode column names with spaces, an SQL
keyword, a label called ``Betrug?``, missing values in the holdout. The Ray tests skip without the ``ray`` extra.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from simulator.cli import app
from simulator.sweep import _Merger, load_sweep, run_sweep
from simulator.target.train import save_model, train_model
from tests._util import one_line_error

# "merchant_cat" too: today's segment view needs it (h2 makes the views work on any names)
NAMES = ["Betrag €", "select", "merchant_cat", "Entfernung km", "neues Gerät"]
LABEL = "Betrug?"
runner = CliRunner()


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    rng = np.random.default_rng(5)
    n = 3000
    X = np.column_stack([rng.lognormal(4, 1.2, n).clip(1, 9000), rng.integers(0, 5, n), rng.integers(0, 24, n),
                         rng.exponential(80, n).clip(0, 3000), rng.integers(0, 2, n)]).astype(float)
    logit = np.log(X[:, 0]) / 2 + 1.5 * X[:, 4] + X[:, 3] / 400 - 5
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    d = tmp_path_factory.mktemp("sweep team")
    trained = train_model(X[:2000], y[:2000], X[2000:], y[2000:], NAMES, kind="xgboost", seed=3, fpr=0.05)
    save_model(trained, d / "Modell v1.json")
    hold = X[2000:].copy()
    hold[rng.random(len(hold)) < 0.05, 3] = np.nan  # a team's holdout has gaps: "Entfernung km" missing in 5% of rows
    pl.DataFrame({**{c: hold[:, j] for j, c in enumerate(NAMES)}, LABEL: y[2000:]}).write_parquet(d / "Daten.parquet")
    (d / "kaputt.json").write_text("{ not a model")
    base = {"name": "pruefung-v1", "seed": 3, "data": {"path": "Daten.parquet", "label": LABEL},
            "model": {"path": "Modell v1.json"},
            "features": {"Betrag €": {"min": 1, "max": 9000}, "Entfernung km": {"min": 0, "max": 3000},
                         "neues Gerät": {"type": "binary", "direction": "decrease"}, "select": {"mutable": False}},
            "attack": {"targets": "declined", "limit": 3, "budget": 20, "strategies": ["random"]},
            "gates": ["success_rate_at_10 <= 1.0"], "output": "ignored.duckdb"}
    (d / "base scenario.yaml").write_text(yaml.safe_dump(base, allow_unicode=True, sort_keys=False))
    return d


def write_sweep(folder: Path, body: dict, name: str = "sweep.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump({"base": "base scenario.yaml", **body}, allow_unicode=True, sort_keys=False))
    return path


def table(path: Path, sql: str) -> list[tuple]:
    """The rows, with a missing value (NaN, which never equals itself) as the string "NaN", so that two files compare
    equal row for row exactly when their values and their gaps agree."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        return [tuple("NaN" if isinstance(v, float) and v != v else v for v in row) for row in con.execute(sql).fetchall()]
    finally:
        con.close()


def test_grid_runs_every_variant_merges_and_resumes(team, tmp_path):
    sw = write_sweep(team, {"grid": {"attack.budget": [10, 20], "seed": [1, 2]}, "output": str(tmp_path / "s.duckdb")})
    res = run_sweep(sw, engine="serial")
    assert [r["status"] for r in res.rows] == ["finished"] * 4 and res.skipped == 0, [r["error"] for r in res.rows]
    rows = table(res.path, "SELECT variant, overrides, status, engine, run_id, run_file, wall_s FROM sweep ORDER BY variant")
    assert [json.loads(r[1]) for r in rows] == [{"attack.budget": b, "seed": s} for b in (10, 20) for s in (1, 2)]
    assert {r[3] for r in rows} == {"serial"} and all(r[6] > 0 for r in rows)
    # where the time went: one process ran all four; its kernels came from Numba (compiled or from the cache)
    (worker, stats), = res.workers.items()
    assert stats["variants"] == 4 and stats["first_variant_s"] > 0
    assert table(res.path, "SELECT DISTINCT worker FROM sweep") == [(worker,)]
    assert stats["numba_compiled"] + stats["numba_cached"] > 0 and res.timings["merge_s"] > 0
    # every variant's tables are in the sweep file with their run_id, row for row as in its own run file
    for variant, _, _, _, run_id, run_file, _ in rows:
        own = table(Path(run_file), 'SELECT target_id, query_index, score, "Betrag €" FROM queries ORDER BY ALL')
        merged = table(res.path, f"SELECT target_id, query_index, score, \"Betrag €\" FROM queries "
                                 f"WHERE run_id = '{run_id}' ORDER BY ALL")
        assert own == merged and len(own) > 0
        budget = json.loads(rows[int(variant[1:])][1])["attack.budget"]
        assert table(res.path, f"SELECT budget FROM runs WHERE run_id = '{run_id}'") == [(budget,)]
    assert table(res.path, "SELECT count(DISTINCT run_id) FROM targets") == [(4,)]
    assert table(res.path, "SELECT count(DISTINCT run_id) FROM success_by_budget") == [(4,)]  # the views work
    mtimes = [Path(r[5]).stat().st_mtime_ns for r in rows]
    again = run_sweep(sw, engine="serial")  # resumable: nothing runs again
    assert again.skipped == 4 and [Path(r["run_file"]).stat().st_mtime_ns for r in again.rows] == mtimes
    assert table(again.path, "SELECT count(*) FROM queries") == table(res.path, "SELECT count(*) FROM queries")
    # fraudsim report on a sweep file: the heatmap over two override axes, every variant, the gates over all
    html = tmp_path / "sweep report.html"
    r = runner.invoke(app, ["report", str(res.path), "-o", str(html), "--x", "seed", "--y", "attack.budget"])
    assert r.exit_code == 0, r.output
    text = html.read_text()
    assert "Cheap success by seed and attack.budget" in text and all(f"v00{i}" in text for i in range(4))
    assert "success_rate_at_10 &lt;= 1" in text or "success_rate_at_10 <= 1" in text
    one_line_error(runner.invoke(app, ["report", str(res.path), "-o", str(html), "--x", "nope"]), "--x", "nope")
    # fraudsim compare on N runs: a sweep file gives one column per variant; three run files, one per file
    r = runner.invoke(app, ["compare", str(res.path), "-f", "csv"])
    assert r.exit_code == 0, r.output
    header = r.stdout.splitlines()[0].split(",")
    assert header == ["measure", "strategy", "s:v000", "s:v001", "s:v002", "s:v003", "spread"]
    budget_row = next(line for line in r.stdout.splitlines() if line.startswith("budget,"))
    assert budget_row.split(",")[2:] == ["10", "10", "20", "20", "10.0"]
    r = runner.invoke(app, ["compare", *(row[5] for row in rows[:3]), "-f", "json"])
    assert r.exit_code == 0 and len(json.loads(r.stdout)[0]) == 3 + 3


def test_the_merge_follows_variant_order_whatever_order_the_variants_end_in(team, tmp_path):
    # the sweep file is built while the variants run: a variant that ends early waits for those before it, so the
    # file is the same row for row whatever the order (Ray's tasks end in any order)
    sw = write_sweep(team, {"variants": [{"seed": 1}, {"model.path": "kaputt.json"}, {"seed": 2}, {"seed": 3}],
                            "output": str(tmp_path / "s.duckdb")})
    res = run_sweep(sw, engine="serial")
    assert [r["status"] for r in res.rows] == ["finished", "failed", "finished", "finished"]
    names = [r["variant"] for r in res.rows]
    merger = _Merger(tmp_path / "reversed.duckdb", names).start()
    for r in reversed(res.rows):
        merger.add(r)
    merger.finish(res.rows)
    assert merger.wait() == tmp_path / "reversed.duckdb"
    tables = [t for (t,) in table(res.path, "SELECT table_name FROM duckdb_tables() ORDER BY 1")]
    assert {"sweep", "queries", "targets", "runs"} <= set(tables)
    for t in tables:
        assert table(res.path, f"SELECT * FROM {t}") == table(tmp_path / "reversed.duckdb", f"SELECT * FROM {t}"), t
    assert table(res.path, "SELECT count(DISTINCT run_id) FROM queries") == [(3,)]
    # stopped half-way (Ctrl-C, a worker that takes the driver down): the earlier sweep file stays, no partial file
    before = table(res.path, "SELECT * FROM queries")
    merger = _Merger(res.path, names).start()
    merger.add(res.rows[0])
    merger.abort()
    assert table(res.path, "SELECT * FROM queries") == before
    assert not list(tmp_path.glob("*.partial*"))


def test_a_failed_variant_is_recorded_and_the_others_run(team, tmp_path):
    sw = write_sweep(team, {"variants": [{"model.path": "kaputt.json"}, {"attack.budget": 15}],
                            "output": str(tmp_path / "f.duckdb")})
    result = runner.invoke(app, ["sweep", str(sw), "--engine", "serial", "-q"])
    assert result.exit_code == 1, result.output
    rows = table(tmp_path / "f.duckdb", "SELECT variant, status, error FROM sweep ORDER BY variant")
    assert rows[0][:2] == ("v000", "failed") and "kaputt.json" in rows[0][2] and "\n" not in rows[0][2]
    assert rows[1][:2] == ("v001", "finished") and rows[1][2] is None
    assert table(tmp_path / "f.duckdb", "SELECT count(DISTINCT run_id) FROM queries") == [(1,)]


@pytest.mark.parametrize("body, fragments", [
    ({"grid": {"attack.budjet": [1, 2]}}, ["grid.attack.budjet", "unknown scenario key 'budjet'"]),
    ({"grid": {"attack.budget.max": [1]}}, ["grid.attack.budget.max", "is a value, not a section"]),
    ({"grid": {}}, ["grid", "the grid is empty"]),
    ({"grid": {"seed": []}}, ["grid.seed", "non-empty list"]),
    ({"variants": []}, ["variants", "empty"]),
    ({"variants": [{"attack.budget": -1}]}, ["variant v000", "attack.budget", "greater than 0"]),
    ({}, ["give 'grid'", "'variants'"]),
    ({"grid": {"seed": [1, 2]}, "variants": [{"attack.limit": 2}, {"seed": 4}]},
     ["variants.1.seed", "in both the grid and this variant"]),
], ids=["unknown path", "below a value", "empty grid", "empty values", "empty variants", "bad value", "neither",
        "key in both"])
def test_bad_sweep_files_are_one_line_exit_2_and_write_nothing(team, tmp_path, body, fragments):
    out = tmp_path / "bad.duckdb"
    sw = write_sweep(team, {**body, "output": str(out)}, name="bad sweep.yaml")
    one_line_error(runner.invoke(app, ["sweep", str(sw), "--engine", "serial"]), "bad sweep.yaml", *fragments)
    assert not out.exists() and not (tmp_path / "bad.runs").exists()


def test_engine_ray_without_ray_names_the_extra(team, tmp_path):
    sw = write_sweep(team, {"grid": {"seed": [1]}, "output": str(tmp_path / "r.duckdb")})
    code = ("import sys; sys.modules['ray'] = None\n"  # as if the extra were not installed
            "from simulator.cli import main; sys.argv = ['fraudsim', 'sweep', sys.argv[1]]; main()")
    r = subprocess.run([sys.executable, "-c", code, str(sw)], capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "fraudsim[ray]" in r.stderr and "--engine serial" in r.stderr
    assert not (tmp_path / "r.duckdb").exists()


# -- Ray (the optional extra) ----------------------------------------------------------------------------------

try:
    import ray
except ImportError:
    ray = None
needs_ray = pytest.mark.skipif(ray is None, reason="ray (the optional extra) is not installed: pip install -e '.[ray]'")


@needs_ray
def test_an_address_that_does_not_answer_is_one_line(team, tmp_path):
    sw = write_sweep(team, {"grid": {"seed": [1]}, "output": str(tmp_path / "a.duckdb")})
    one_line_error(runner.invoke(app, ["sweep", str(sw), "--address", "127.0.0.1:9"]), "--address",
                   "no Ray cluster answers at 127.0.0.1:9")
    assert not (tmp_path / "a.duckdb").exists()


def _comparable(path: Path, tbl: str) -> list[tuple]:
    cols = [c for (c, t) in table(path, f"SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = '{tbl}'")
            if t != "TIMESTAMP" and not c.endswith("_s") and not c.endswith("_us") and c not in ("engine", "worker", "run_file", "card")]
    return table(path, f"SELECT {', '.join(chr(34) + c + chr(34) for c in cols)} FROM {tbl} ORDER BY ALL")


@needs_ray
@pytest.mark.slow
def test_ray_sweep_equals_serial_and_a_killed_worker_is_retried_then_failed(team, tmp_path):
    import psutil

    grid = {"grid": {"attack.budget": [10, 20], "seed": [1, 2]}}
    serial = run_sweep(write_sweep(team, {**grid, "output": str(tmp_path / "serial.duckdb")}), engine="serial")
    # one more variant, slow enough to be caught running; its worker is killed each time it runs it
    slow = {"variants": [*({"attack.budget": b, "seed": s} for b in (10, 20) for s in (1, 2)),
                         {"attack.budget": 5000, "attack.limit": 40, "seed": 9}]}
    sw = write_sweep(team, {**slow, "output": str(tmp_path / "ray.duckdb")})
    kills: list[int] = []
    stop = threading.Event()

    def killer():
        partial = load_sweep(sw).run_file(load_sweep(sw).variants[4]).with_suffix(".duckdb.partial")
        while not stop.is_set() and len(kills) < 2:
            if partial.exists():
                for p in psutil.process_iter(["cmdline"]):
                    if any("run_variant" in part for part in (p.info["cmdline"] or [])) and p.pid not in kills:
                        try:
                            lsof = {Path(f.path) for f in p.open_files()}
                        except psutil.Error:
                            continue
                        if partial in lsof:
                            p.send_signal(signal.SIGKILL)
                            kills.append(p.pid)
                            break
            time.sleep(0.05)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    try:
        res = run_sweep(sw, engine="ray", num_cpus=2)
    finally:
        stop.set()
        t.join()
    assert len(kills) == 2, kills  # the first run and its one retry
    statuses = {r["variant"]: r for r in res.rows}
    assert statuses["v004"]["status"] == "failed" and "worker died" in statuses["v004"]["error"]
    assert all(statuses[f"v00{i}"]["status"] == "finished" for i in range(4))
    assert {r["engine"] for r in res.rows} == {"ray"} and len({statuses[f"v00{i}"]["worker"] for i in range(4)}) >= 1
    # Ray reuses its worker processes: some worker ran more than one variant, and none compiled a kernel the
    # serial sweep (same machine) had already put in Numba's on-disk cache
    assert max(w["variants"] for w in res.workers.values()) >= 2, res.workers
    assert all(w["numba_compiled"] == 0 for w in res.workers.values()), res.workers
    for tbl in ("runs", "queries", "targets", "transactions", "model_versions"):
        assert _comparable(res.path, tbl) == _comparable(serial.path, tbl), tbl


def test_variants_times_grid_with_whole_sections_and_short_labels(team, tmp_path):
    """Each variant (here a whole ``model`` section with a path relative to the sweep file, as candidate models with
    their own thresholds come) combined with every point of the grid, variant by variant; the CLI's table and the
    report label a section by its file name, the sweep table keeps the full overrides."""
    (team / "Kandidaten").mkdir(exist_ok=True)
    sw = team / "Kandidaten" / "kandidaten.yaml"
    out = tmp_path / "k.duckdb"
    sw.write_text(yaml.safe_dump({"base": "../base scenario.yaml", "variants": [
        {"model": {"path": "../Modell v1.json", "threshold": 0.2}}, {"model.threshold": 0.6, "attack.limit": 2}],
        "grid": {"seed": [1, 2]}, "output": str(out)}, allow_unicode=True, sort_keys=False))
    loaded = load_sweep(sw)
    assert [v.overrides for v in loaded.variants] == [
        {"model": {"path": "../Modell v1.json", "threshold": 0.2}, "seed": 1},
        {"model": {"path": "../Modell v1.json", "threshold": 0.2}, "seed": 2},
        {"model.threshold": 0.6, "attack.limit": 2, "seed": 1}, {"model.threshold": 0.6, "attack.limit": 2, "seed": 2}]
    assert loaded.variants[0].scenario["model"]["path"] == str((team / "Modell v1.json").resolve())
    assert loaded.axes == ["model", "model.threshold", "attack.limit", "seed"]
    res = runner.invoke(app, ["sweep", str(sw), "--engine", "serial"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "model=Modell v1.json, threshold=0.2; seed=1" in res.output
    thresholds = table(out, "SELECT r.threshold FROM sweep s JOIN runs r USING (run_id) ORDER BY s.variant")
    assert [t for (t,) in thresholds] == [0.2, 0.2, 0.6, 0.6]
    html = tmp_path / "k.html"
    res = runner.invoke(app, ["report", str(out), "--x", "seed", "--y", "model", "-o", str(html)])
    assert res.exit_code == 0, res.output
    assert "model = Modell v1.json, threshold=0.2" in html.read_text()


def test_the_shipped_candidates_sweep_checks_and_runs(tmp_path):
    """scenarios/sweeps/candidates.yaml: every variant valid as shipped; its three candidate models (XGBoost,
    LightGBM, ONNX) run small, serially, into one file whose runs have the models' own kinds and thresholds."""
    pytest.importorskip("onnxruntime")
    root = Path(__file__).resolve().parents[1]
    shipped = root / "scenarios" / "sweeps" / "candidates.yaml"
    assert len(load_sweep(shipped).variants) == 12
    raw = yaml.safe_load(shipped.read_text())
    base = yaml.safe_load((shipped.parent / raw["base"]).read_text())
    for section in ("data", "model"):
        base[section]["path"] = str((root / "scenarios" / base[section]["path"]).resolve())
    base["attack"].update(limit=2, budget=20)
    (tmp_path / "small.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    for v in raw["variants"]:
        v["model"]["path"] = str((shipped.parent / v["model"]["path"]).resolve())
    sw = tmp_path / "candidates.yaml"
    sw.write_text(yaml.safe_dump({"base": "small.yaml", "variants": raw["variants"], "grid": {"seed": [1]},
                                  "output": "candidates.duckdb"}, sort_keys=False))
    res = run_sweep(sw, engine="serial")
    assert not res.failed, res.failed
    kinds = table(res.path, "SELECT r.model_kind, r.threshold FROM sweep s JOIN runs r USING (run_id) ORDER BY s.variant")
    assert kinds == [("xgboost", 0.04482202976942063), ("lightgbm", 0.04302820647379779),
                     ("onnx", 0.04482202976942063)]


@needs_ray
@pytest.mark.slow
def test_a_cluster_kept_up_by_ray_start_runs_the_sweep_and_a_missing_token_is_one_line(team, tmp_path):
    """``fraudsim sweep --address`` on a head node started as a team would (``ray start --head``). Recent Ray turns
    token authentication on by default, and a driver connecting by address then needs ``RAY_AUTH_MODE=token``:
    without it the error says so in one line (Ray's own says only "Failed to connect")."""
    import os
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    # a clean environment: an earlier ray.init in this process sets RAY_AUTH_MODE and others in os.environ
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    head = subprocess.Popen([str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", f"--port={port}",
                             "--include-dashboard=false", "--disable-usage-stats", "--num-cpus=1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, env=env)
    try:
        ip, token = "127.0.0.1", False
        assert head.stdout is not None
        for line in head.stdout:
            ip = line.split("Local node IP:", 1)[1].strip() if "Local node IP:" in line else ip
            token = token or "Token authentication is enabled" in line
            if "Ray runtime started" in line:
                break
        threading.Thread(target=head.stdout.read, daemon=True).start()
        out = tmp_path / "kept up.duckdb"
        sw = write_sweep(team, {"grid": {"seed": [1, 2]}, "output": str(out)}, name="kept up.yaml")
        cmd = [sys.executable, "-m", "simulator.cli", "sweep", str(sw), "--address", f"{ip}:{port}"]
        if token:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
            assert p.returncode == 2, p.stdout + p.stderr
            lines = [x for x in p.stderr.splitlines() if x.strip()]
            assert len(lines) == 1 and "RAY_AUTH_MODE=token" in lines[0] and "--address" in lines[0], p.stderr
            assert not out.exists()
            env["RAY_AUTH_MODE"] = "token"
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
        assert p.returncode == 0, p.stdout + p.stderr
        assert table(out, "SELECT status, engine FROM sweep ORDER BY variant") == [("finished", "ray")] * 2
    finally:
        head.terminate()  # --block: the head node stops its processes on SIGTERM
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
