"""Start-up stays lean: the package root, the CLI and the read-only commands do not load the heavy libraries.

(Timing is measured by ``benchmarks/bench_startup.py``; these tests check the cause: which modules get imported.)
"""
import subprocess
import sys

HEAVY = ("numba", "duckdb", "polars", "xgboost", "lightgbm", "optuna", "pyarrow")


def loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return set(filter(None, out.rstrip("\n").split("\n")[-1].split(",")))


def test_import_simulator_loads_no_heavy_library():
    assert loaded_after("import simulator") == set()


def test_cli_help_loads_no_heavy_library():
    code = ("import contextlib, io\nfrom simulator.cli import app\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n        app(['--help'])\n    except SystemExit:\n        pass")
    assert loaded_after(code) == set()


def test_public_names_still_resolve():
    import simulator as fs

    assert fs.Scenario.__name__ == "Scenario" and fs.RunResult.__name__ == "RunResult"
    assert callable(fs.run) and callable(fs.load_model) and fs.FeatureSchema.__name__ == "FeatureSchema"
    assert set(fs.__all__) <= set(dir(fs))


def test_gate_and_query_paths_load_only_what_they_use():
    # gate reads with DuckDB alone; query returns a Polars frame, but neither loads a model or Numba
    assert loaded_after("import simulator.report.gates, simulator.report.output") == {"duckdb"}
    assert not loaded_after("import simulator.report.query") & {"numba", "xgboost", "lightgbm", "optuna"}


def test_report_names_are_the_functions():
    import simulator.report.compare  # noqa: F401  (the submodules share these names)
    import simulator.report.query  # noqa: F401
    from simulator import report as rep

    assert callable(rep.query) and callable(rep.compare) and callable(rep.compare_runs)
    assert rep.parse_gate("auc >= 0.85").metric == "auc"


def test_import_cli_loads_no_heavy_library():
    assert loaded_after("import simulator.cli") == set()


def test_query_and_gate_commands_load_only_duckdb(tmp_path):
    # the commands themselves, run on a real run file: a table for a look and a gate need DuckDB alone (no Polars,
    # Arrow or NumPy); the run file is written by a real Store
    from simulator.store import Store

    store = Store(tmp_path / "r.duckdb", ["amount", "Straße km"])
    store.execute("INSERT INTO runs (run_id, status) VALUES ('r1', 'finished')")
    store.finish()
    run = str(tmp_path / "r.duckdb")
    for args in (["query", run, "SELECT count(*) AS n, 1.5::DECIMAL(4,1) AS d FROM queries"],
                 ["gate", run, "success_rate <= 0.5"]):
        code = ("import contextlib, io\nfrom simulator.cli import app\nbuf = io.StringIO()\n"
                "with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):\n"
                f"    try:\n        app({args!r})\n    except SystemExit:\n        pass\n"
                "assert '│' in buf.getvalue(), buf.getvalue()")
        assert loaded_after(code) == {"duckdb"}, args
