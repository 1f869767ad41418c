"""Interruption and concurrency on real processes: Ctrl-C and SIGTERM at random moments, kill -9, two writers.

Each case starts ``fraudsim run`` as a process on a long attack, waits until it is writing, then interrupts it. The
previous finished file must stay byte-identical and readable, the partial file (and its WAL, and the lock) gone."""
from __future__ import annotations

import hashlib
import random
import signal
import subprocess
import sys
import time

import pytest
import yaml

from simulator.store import open_readonly

from .conftest import scenario_dict

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
CLI = [sys.executable, "-c", "from simulator.cli import main; main()"]


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def long_run(team_files, tmp_path):
    """A scenario whose attack runs for minutes, and a finished run file already at its output."""
    out = tmp_path / "run.duckdb"
    quick = dict(scenario_dict(team_files, budget=20, strategies=["random"]), output=str(out))
    quick["data"] = dict(quick["data"], path=str(team_files["data"]))
    quick["model"] = {"path": str(team_files["xgb"])}
    (tmp_path / "quick.yaml").write_text(yaml.safe_dump(quick))
    p = subprocess.run(CLI + ["run", str(tmp_path / "quick.yaml"), "-q"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    slow = dict(quick, attack=dict(quick["attack"], budget=100_000, limit=100, strategies=["random", "evolutionary"]))
    (tmp_path / "slow.yaml").write_text(yaml.safe_dump(slow))
    return tmp_path / "slow.yaml", out


def _start(scenario):
    return subprocess.Popen(CLI + ["run", str(scenario), "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _wait_writing(proc, out, timeout=240):
    partial = out.with_name(out.name + ".partial")
    t0 = time.monotonic()
    while not partial.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < timeout, "the run never started writing"
        time.sleep(0.05)


def _leftovers(out):
    return [p.name for p in out.parent.iterdir() if p.name.startswith(out.name) and p.name != out.name]


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_at_random_moments_keeps_the_previous_file(long_run, sig, code):
    scenario, out = long_run
    before = _digest(out)
    rng = random.Random(int(sig))
    for _ in range(3 if sig == signal.SIGINT else 1):
        proc = _start(scenario)
        _wait_writing(proc, out)
        time.sleep(rng.uniform(0.0, 2.0))
        proc.send_signal(sig)
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=60)
        stopped_s = time.monotonic() - t0
        assert proc.returncode == code, err
        assert len(err.strip().splitlines()) == 1 and "interrupted" in err, err
        assert stopped_s < 15, stopped_s  # typically well under a second; the CI machine may be loaded
        assert _digest(out) == before and _leftovers(out) == []
    con = open_readonly(out)
    assert con.execute("SELECT status FROM runs").fetchall() == [("finished",)]
    con.close()


@pytest.mark.slow
def test_kill_9_then_the_next_run_cleans_up_and_a_second_writer_is_refused(long_run, tmp_path):
    scenario, out = long_run
    before = _digest(out)
    proc = _start(scenario)
    _wait_writing(proc, out)
    # a second run on the same output is refused at once, naming the holder
    p = subprocess.run(CLI + ["run", str(scenario), "-q"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert f"pid {proc.pid}" in p.stderr
    time.sleep(0.5)
    proc.kill()
    proc.wait(timeout=30)
    assert _digest(out) == before
    open_readonly(out).close()  # the previous finished file is intact and readable
    partial = out.with_name(out.name + ".partial")
    assert partial.exists()
    p = subprocess.run(CLI + ["query", str(partial), "SELECT count(*) FROM runs"], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 2 and "not a result" in p.stderr
    # the next run takes the lock (the kernel dropped the dead holder's), reports and removes the stale partial
    proc = _start(scenario)
    lock = out.with_name(out.name + ".lock")
    t0 = time.monotonic()
    while not (lock.exists() and lock.read_text().strip() == str(proc.pid)):
        assert proc.poll() is None and time.monotonic() - t0 < 240, proc.communicate()
        time.sleep(0.05)
    time.sleep(0.5)
    _wait_writing(proc, out)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert "removed" in err and ".partial" in err, err
    assert proc.returncode == 130 and _digest(out) == before and _leftovers(out) == []


@pytest.mark.parametrize("signal_exc, code", [("term", 143), ("int", 130)])
def test_a_signal_wrapped_by_a_kernel_call_keeps_its_exit_code(signal_exc, code):
    """A signal that lands while a Numba kernel runs comes back as ``SystemError: CPUDispatcher(...) returned a
    result with an exception set`` with the signal's exception as its cause (CI saw exit 3 for a SIGTERM)."""
    from simulator.cli import _interrupt_code
    from simulator.errors import Terminated

    original = Terminated() if signal_exc == "term" else KeyboardInterrupt()
    try:
        try:
            raise original
        except BaseException as exc:
            raise SystemError("CPUDispatcher(<function _mutate>) returned a result with an exception set") from exc
    except SystemError as wrapped:
        assert _interrupt_code(wrapped) == code
    assert _interrupt_code(RuntimeError("boom")) is None
    assert _interrupt_code(RuntimeError("Query interrupted")) == 130
