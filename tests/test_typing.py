"""mypy over the package with the project's configuration (``[tool.mypy]`` in pyproject.toml): zero errors.

No module is exempt: the configuration has no ``ignore_errors`` override. Skipped when mypy is not installed (it
is in the ``test`` extra, so CI runs it).
"""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # mypy from a cold cache: 30-40 s of CPU, minutes on a loaded 2-core machine
def test_package_type_checks_clean(tmp_path):
    api = pytest.importorskip("mypy.api")
    # A canary checked in the same run: proves the configuration still reports errors (a global ignore_errors or
    # a broken config would otherwise pass silently).
    canary = tmp_path / "fraudsim_typing_canary.py"
    canary.write_text('from simulator.errors import ScenarioError\n\nlimit: int = ScenarioError("x").reason\n')
    stdout, stderr, status = api.run(["--config-file", str(ROOT / "pyproject.toml"),
                                      "--cache-dir", str(tmp_path / "mypy-cache"), "--no-error-summary",
                                      str(ROOT / "simulator"), str(canary)])
    errors = [line for line in stdout.splitlines() if ": error:" in line]
    canary_errors = [e for e in errors if canary.name in e]
    package_errors = [e for e in errors if canary.name not in e]
    assert not package_errors, f"mypy found {len(package_errors)} error(s):\n" + "\n".join(package_errors[:40])
    assert len(canary_errors) == 1 and "[assignment]" in canary_errors[0], (stdout, stderr)
    assert status == 1


def test_package_ships_its_typing_marker():
    """py.typed is in the package and declared as package data, so installed users' type checkers read the hints."""
    assert (ROOT / "simulator" / "py.typed").is_file()
    assert '"py.typed"' in (ROOT / "pyproject.toml").read_text(encoding="utf-8")


def test_no_module_is_exempt_from_mypy():
    """Every module of the package is checked: no ``[[tool.mypy.overrides]]`` entry turns its errors off."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mypy"]
    assert not config.get("ignore_errors", False)
    exempt = [o["module"] for o in config.get("overrides", []) if o.get("ignore_errors", False)]
    assert not exempt, f"modules exempt from mypy: {exempt}"
