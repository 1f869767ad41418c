"""Start-up time of the command line: ``import simulator``, ``fraudsim --help``, ``fraudsim query`` and
``fraudsim gate`` on a small run file, each a fresh process, against ``python -c "import typer, rich"`` (the floor
any Typer/Rich CLI pays) measured in the same run. Goal: every command under 1 s on 2 cores.

usage: python benchmarks/bench_startup.py [--repeat 5] [--run-file RUN.duckdb]
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


def timed(cmd: list[str], repeat: int) -> tuple[float, float]:
    """Median and best wall-clock seconds of ``cmd`` over ``repeat`` fresh processes (one warm-up first)."""
    env = dict(os.environ, NO_COLOR="1", COLUMNS="120")
    subprocess.run(cmd, capture_output=True, env=env)  # warm the file cache and Numba/pyc caches
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, env=env)
        times.append(time.perf_counter() - t0)
        if r.returncode not in (0, 1):
            raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.decode()[-400:]}")
    return statistics.median(times), min(times)


def tiny_run(folder: Path) -> Path:
    import simulator as fs

    sc = fs.Scenario.from_dict({"name": "startup", "seed": 1, "world": {"customers": 1500, "days": 6},
                                "attack": {"limit": 3, "budget": 20, "strategies": ["random"]}})
    return fs.run(sc, output=folder / "startup.duckdb").path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--run-file", type=Path, help="a finished run file (default: a tiny run made here first)")
    args = ap.parse_args(argv)

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
        rows = [(name, *timed(cmd, args.repeat)) for name, cmd in cases]
    loaded = subprocess.run([py, "-c", f"import sys, simulator; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"],
                            capture_output=True, text=True).stdout.strip()
    base = rows[0][1]
    print(f"fresh processes, median (best) of {args.repeat}; {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"{'command':<44}{'median s':>10}{'best s':>9}{'÷ baseline':>12}{'< 1 s':>7}")
    for name, med, best in rows:
        print(f"{name:<44}{med:>10.3f}{best:>9.3f}{med / base:>12.2f}{'yes' if med < 1 else 'NO':>7}")
    print(f"heavy modules loaded by `import simulator`: {loaded or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
