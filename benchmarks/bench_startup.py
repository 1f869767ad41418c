"""Start-up time of the command line: ``import simulator``, ``fraudsim --help``, ``fraudsim query`` and
``fraudsim gate`` on a small run file, each a fresh process, against ``python -c "import typer, rich"`` (the floor
any Typer/Rich CLI pays) measured in the same run. Goal: every command under 1 s on 2 cores.

Python's bytecode cache is on for the measured processes, as in any installed package: when the environment turns
it off (``PYTHONDONTWRITEBYTECODE``), every start would compile fraudsim's sources again while the baseline's
libraries come precompiled; the cache then goes to a temporary ``PYTHONPYCACHEPREFIX`` (nothing is written into
the source tree), filled by the warm-up run. ``--no-bytecode`` measures with the environment as it is.

CPU s (user + system of the process) is printed beside wall-clock time: on a machine shared with other busy
processes the wall clock mostly measures the wait for a core, and the CPU ratio is the steadier number.

usage: python benchmarks/bench_startup.py [--repeat 5] [--run-file RUN.duckdb] [--no-bytecode]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("numba", "duckdb", "polars", "xgboost", "lightgbm", "optuna", "pyarrow")


def timed(cmd: list[str], repeat: int, env: dict) -> tuple[float, float, float]:
    """Median and best wall-clock seconds, and median CPU seconds (user + system: what the process itself needs,
    which a loaded machine inflates less than wall time), of ``cmd`` over ``repeat`` fresh processes."""
    subprocess.run(cmd, capture_output=True, env=env)  # warm the file cache and Numba/pyc caches
    times, cpu = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        times.append(time.perf_counter() - t0)
        cpu.append(usage.ru_utime + usage.ru_stime)
        code = os.waitstatus_to_exitcode(status)
        if code not in (0, 1):
            raise SystemExit(f"{' '.join(cmd)} failed ({code}): {proc.stderr.read().decode()[-400:]}")
        proc.stderr.close()
    return statistics.median(times), min(times), statistics.median(cpu)


def tiny_run(folder: Path) -> Path:
    import simulator as fs

    sc = fs.Scenario.from_dict({"name": "startup", "seed": 1, "world": {"customers": 1500, "days": 6},
                                "attack": {"limit": 3, "budget": 20, "strategies": ["random"]}})
    return fs.run(sc, output=folder / "startup.duckdb").path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--run-file", type=Path, help="a finished run file (default: a tiny run made here first)")
    ap.add_argument("--no-bytecode", action="store_true", help="leave PYTHONDONTWRITEBYTECODE as the environment has it")
    args = ap.parse_args(argv)
    env = dict(os.environ, NO_COLOR="1", COLUMNS="120")
    pycache = None
    if not args.no_bytecode and env.pop("PYTHONDONTWRITEBYTECODE", None) is not None:
        pycache = tempfile.TemporaryDirectory(prefix="bench_startup_pyc_")
        env["PYTHONPYCACHEPREFIX"] = pycache.name

    exe = shutil.which("fraudsim", path=str(Path(sys.executable).parent)) or shutil.which("fraudsim")
    cli = [exe] if exe else [sys.executable, "-m", "simulator.cli"]
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        run_file = args.run_file or tiny_run(Path(tmp))
        cases = [
            ('python -c "import typer, rich" (baseline)', [py, "-c", "import typer, rich"]),
            ("import simulator", [py, "-c", "import simulator"]),
            ("fraudsim --help", [*cli, "--help"]),
            ("fraudsim query RUN 'SELECT count(*) ...'", [*cli, "query", str(run_file), "SELECT count(*) FROM queries"]),
            ("fraudsim gate RUN 'auc >= 0.5'", [*cli, "gate", str(run_file), "auc >= 0.5"]),
        ]
        rows = [(name, *timed(cmd, args.repeat, env)) for name, cmd in cases]
    loaded = subprocess.run([py, "-c", f"import sys, simulator; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"],
                            capture_output=True, text=True).stdout.strip()
    base, base_cpu = rows[0][1], rows[0][3]
    print(f"fresh processes, median (best) of {args.repeat}; {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}; bytecode cache "
          f"{'off' if 'PYTHONDONTWRITEBYTECODE' in env else 'on' + (' (temporary prefix)' if pycache else '')}")
    print(f"{'command':<44}{'median s':>10}{'best s':>9}{'÷ baseline':>12}{'CPU s':>8}{'CPU ÷ base':>12}{'< 1 s':>7}")
    for name, med, best, cpu in rows:
        print(f"{name:<44}{med:>10.3f}{best:>9.3f}{med / base:>12.2f}{cpu:>8.3f}{cpu / base_cpu:>12.2f}"
              f"{'yes' if med < 1 else 'NO':>7}")
    print(f"heavy modules loaded by `import simulator`: {loaded or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
