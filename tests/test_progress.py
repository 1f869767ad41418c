"""Progress everywhere (simulator/progress.py): plain lines when stderr is a log, nothing with -q, bars in a
notebook, a one-time note when Numba compiles, and a run summary that reads at 80 columns."""
import importlib.util
import io
import os
import re
import subprocess
import sys

import pytest
from rich.console import Console

from simulator.progress import NOTE, api_progress, in_notebook, line_progress, no_progress, progress_for

from .conftest import scenario_dict


def _cli(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "simulator.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def test_a_run_in_a_log_prints_plain_progress_lines_and_quiet_silences_them(team_files, write_scenario, tmp_path):
    path = write_scenario(scenario_dict(team_files), "progress.yaml")
    p = _cli("run", path, "-o", tmp_path / "a.duckdb", env={"COLUMNS": "80"})
    assert p.returncode == 0, p.stderr
    lines = p.stderr.splitlines()
    for strategy in ("random", "evolutionary"):  # a start line and an end line per attack, nothing else on stderr
        assert f"fraudsim: attack: {strategy} 0/360" in lines
        assert any(re.fullmatch(rf"fraudsim: attack: {strategy} 360/360 \(100%\), done in \d+ s", ln) for ln in lines)
    assert all(ln.startswith("fraudsim: ") for ln in lines) and "\x1b" not in p.stderr  # plain text, no bars
    # the summary reads at 80 columns: nothing cut, nothing wider
    assert all(len(ln) <= 80 for ln in p.stdout.splitlines()), p.stdout
    assert "…" not in p.stdout and "evolutionary" in p.stdout and "cheap" in p.stdout

    q = _cli("run", path, "-o", tmp_path / "b.duckdb", "-q")
    assert q.returncode == 0 and q.stderr == "", q.stderr
    assert "evolutionary" in q.stdout


def test_lines_come_every_tenth_or_every_ten_seconds_and_once_at_the_end():
    t = [0.0]
    buf = io.StringIO()
    with line_progress(buf, clock=lambda: t[0], compile_notes=False) as start:
        fast = start("fast", 1000)  # 1000 steps in 2 s: a line per tenth at most once a second
        for _ in range(1000):
            t[0] += 0.002
            fast(1)
        slow = start("slow", 10_000)  # 100 steps in 300 s: a line every ~10 s, not every step
        for _ in range(100):
            t[0] += 3.0
            slow(1)
        unsized = start("train model", None)
        t[0] += 4.0
        unsized(1)
        unsized(1)  # already ended: silent
    lines = buf.getvalue().splitlines()
    fast_lines = [ln for ln in lines if "fast" in ln]
    assert fast_lines[0] == "fraudsim: fast 0/1000" and fast_lines[-1] == "fraudsim: fast 1000/1000 (100%), done in 2 s"
    assert 2 <= len(fast_lines) <= 5
    slow_lines = [ln for ln in lines if "slow" in ln]
    assert 25 <= len(slow_lines) <= 35 and slow_lines[-1].endswith("(1%), 5 min 00 s")
    assert lines[-2:] == ["fraudsim: train model …", "fraudsim: train model done in 4 s"]


def test_quiet_and_terminal_choices():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    with progress_for(Console(file=io.StringIO()), quiet=True) as prog:
        assert prog is no_progress
    buf = io.StringIO()
    with progress_for(Console(file=buf)) as prog:  # not a terminal: lines
        prog("x", 2)(2)
    assert buf.getvalue().splitlines() == ["fraudsim: x 0/2", "fraudsim: x 2/2 (100%), done in 0 s"]
    tty = Tty()
    with progress_for(Console(file=tty, force_terminal=True, width=80)) as prog:  # a terminal: a Rich bar
        prog("x", 2)(2)
    assert "fraudsim: x" not in tty.getvalue() and "2/2" in tty.getvalue()
    # the Python API outside a notebook: silent by default, a callable is used as given
    assert not in_notebook()
    with api_progress() as prog:
        assert prog is no_progress
    with api_progress(no_progress) as prog:
        assert prog is no_progress


def test_compiling_kernels_note_once_when_numbas_cache_is_cold(tmp_path):
    code = ("import numpy as np\n"
            "from simulator.progress import line_progress\n"
            "from simulator.schema import FeatureSchema\n"
            "from simulator.kernels import get_kernels\n"
            "sa = FeatureSchema.from_mapping(['a b'], {'a b': {'min': 0, 'max': 10}}).arrays()\n"
            "k, X, o = get_kernels('cpu'), np.array([[1.0]]), np.zeros(1, np.int64)\n"
            "with line_progress() as start:\n"
            "    k.cost(X, X + 1, o, sa); k.violations(X, X + 1, o, sa)\n")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}  # a cold cache of our own
    cold = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert cold.returncode == 0, cold.stderr
    assert cold.stderr.splitlines() == [NOTE]  # two kernels compiled, one note
    warm = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert warm.returncode == 0 and warm.stderr == "", warm.stderr


HAVE_NB = all(importlib.util.find_spec(m) for m in ("nbformat", "nbclient", "ipykernel"))


@pytest.mark.skipif(not HAVE_NB, reason="nbformat, nbclient and ipykernel are needed to run a notebook kernel")
def test_bars_by_default_in_a_notebook(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    cell = ("from simulator.progress import api_progress, in_notebook\n"
            "print(in_notebook())\n"
            "with api_progress() as start:\n"
            "    advance = start('attack: demo', 10)\n"
            "    advance(4); advance(6)\n")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)])
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = nb.cells[0].outputs
    assert not [o for o in outputs if o.output_type == "error"], outputs
    text = {name: "".join(o.text for o in outputs if o.output_type == "stream" and o.name == name)
            for name in ("stdout", "stderr")}
    widgets = [o for o in outputs if o.output_type == "display_data"]
    assert text["stdout"].strip() == "True"
    assert widgets or ("attack: demo" in text["stderr"] and "10/10" in text["stderr"]), outputs


def test_a_task_that_does_not_move_still_gets_a_line_every_few_seconds():
    import time

    buf = io.StringIO()
    with line_progress(buf, every_s=0.3, compile_notes=False) as start:  # the real clock: heartbeat on
        advance = start("train model", None)
        time.sleep(1.2)  # training: no advance for a while (about 4 beats; at least 1 on a loaded machine)
        advance(1)
        time.sleep(0.7)  # ended: no more lines
    lines = buf.getvalue().splitlines()
    assert lines[0] == "fraudsim: train model …" and re.fullmatch(r"fraudsim: train model done in \d+ s", lines[-1])
    beats = lines[1:-1]
    assert 1 <= len(beats) <= 6 and all(re.fullmatch(r"fraudsim: train model … \d+ s", b) for b in beats), lines
