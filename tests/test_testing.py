"""The shipped strategy contract (simulator/testing.py): every registered strategy passes it, a team's strategy
can use it as a pytest base class, and it catches strategies that break the contract in each way it checks."""
import inspect
import subprocess
import sys

import numpy as np
import pytest

from simulator.kernels import MODE_UNIFORM
from simulator.strategies import REGISTRY, BaseStrategy, Strategy, register
from simulator.testing import CHECKS, ContractError, StrategyContract, check_strategy


BUILT_IN = sorted(n for n in REGISTRY if REGISTRY[n].__module__.startswith("simulator.strategies."))
WITH_OPENING = [n for n in BUILT_IN if "opening" in inspect.signature(REGISTRY[n].__init__).parameters]


@pytest.mark.parametrize("name, params", [pytest.param(n, {}, id=n) for n in BUILT_IN]
                         + [pytest.param(n, {"opening": "none"}, id=f"{n}-opening-none") for n in WITH_OPENING])
def test_every_registered_strategy_passes_the_contract(name, params):
    check_strategy(name, **params)


# -- how a team tests its own strategy (the README shows this) ---------------------------------------------------
@register("team-redraw")
class TeamRedraw(Strategy):
    """Random valid redraws of the changeable features, each changed with probability ``p``."""

    def __init__(self, problem, rng, *, p: float = 0.4, **params):
        super().__init__(problem, rng, **params)
        self.p = p

    def _ask(self, n):
        return self.mutate(np.repeat(self._X0, n, axis=0), step=0.0, p=self.p, mode=MODE_UNIFORM)


class TestTeamRedraw(StrategyContract):
    strategy = "team-redraw"
    params = {"p": 0.3}


# -- broken strategies: the suite must fail on each --------------------------------------------------------------
class Unprojected(TeamRedraw):
    def _ask(self, n):  # forgets to project: leaves the bounds and moves frozen columns
        return self._X0 + self.rng.normal(0, 300, (n, self.d))


class GlobalRandom(TeamRedraw):
    def _ask(self, n):  # draws from NumPy's global generator, not the one it was given
        p = np.random.uniform(0.1, 0.9)
        return self.mutate(np.repeat(self._X0, n, axis=0), step=0.0, p=p, mode=MODE_UNIFORM)


class FillsMissing(TeamRedraw):
    def _ask(self, n):  # "cleans" missing values, so a NaN in a frozen column becomes 0
        return np.nan_to_num(super()._ask(n))


class NeedsScores(TeamRedraw):
    def _tell(self, X, feedback):  # assumes a score is always there
        self.lowest = float(feedback.score.min())


class Float32(TeamRedraw):
    def _ask(self, n):
        return super()._ask(n).astype(np.float32)


class NeedsFiveQueries(TeamRedraw):
    def __init__(self, problem, rng, **params):  # refuses budgets below its opening: any budget >= 1 must work
        super().__init__(problem, rng, **params)
        if problem.budget < 5:
            raise ValueError("needs at least 5 queries for its opening")


class ClaimsABest(TeamRedraw):
    def _tell(self, X, feedback):  # records a best it never asked
        self.best_x, self.best_cost = self.x0.copy(), 0.0


@pytest.mark.parametrize("cls, check, message", [
    (Unprojected, "constraints", "break the constraints"),
    (GlobalRandom, "determinism", "same seed"),
    (FillsMissing, "foreign_schema", "NaN"),
    (NeedsScores, "feedback_modes", "decision-only"),
    (Float32, "ask_shapes", "float32"),
    (NeedsFiveQueries, "budget", "could not be built: ValueError: needs at least 5"),
    (ClaimsABest, "best", "best_x is not one of the asked candidates"),
])
def test_the_contract_catches_a_broken_strategy(cls, check, message):
    with pytest.raises(ContractError, match=message) as err:
        check_strategy(cls, checks=[check])
    assert str(err.value).startswith(f"{check}: strategy {cls.__qualname__!r} ")
    with pytest.raises(ContractError):  # all checks: the first broken one reports
        check_strategy(cls)


def test_fills_missing_passes_everything_but_the_foreign_schema():
    """The NaN bug only shows on data unlike fraudsim's own: the foreign schema check is what finds it."""
    check_strategy(FillsMissing, checks=[c for c in CHECKS if c != "foreign_schema"])


def test_check_strategy_checks_params_and_names():
    from simulator.errors import ScenarioError

    with pytest.raises(ScenarioError, match="attack.params.team-redraw.p: expected a number"):
        check_strategy("team-redraw", checks=["ask_shapes"], p="lots")
    with pytest.raises(ValueError, match="unknown check 'speed'"):
        check_strategy("team-redraw", checks=["speed"])


def test_strategy_base_is_abstract_and_register_wants_typed_keyword_parameters():
    assert issubclass(Strategy, BaseStrategy)
    assert {"ask", "tell"} <= BaseStrategy.__abstractmethods__

    class NoAsk(Strategy):
        pass

    with pytest.raises(TypeError, match="abstract"):
        NoAsk(None, np.random.default_rng(0))
    for sig, why in [("problem, rng, width=3, **params", "must be keyword-only"),
                     ("problem, rng, *, width=3, **params", "needs a type annotation"),
                     ("problem, rng, *, width: int, **params", "needs a default")]:
        ns: dict = {}
        exec(f"def __init__(self, {sig}):\n    pass", ns)
        with pytest.raises(TypeError, match=f"strategy 'bad': parameter 'width' {why}"):
            register("bad")(type("Bad", (Strategy,), {"__init__": ns["__init__"], "_ask": lambda self, n: None}))
    assert "bad" not in REGISTRY


def test_strategies_do_not_import_the_oracle_and_old_imports_still_work():
    code = ("import sys, simulator.strategies, simulator.testing; "
            "print(sorted(m for m in sys.modules if m in ('simulator.oracle', 'simulator.store', 'simulator.runner')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    from simulator import protocol
    from simulator.oracle import Feedback
    from simulator.strategies import Problem
    from simulator.strategies.base import Feedback as F2, Problem as P2

    assert Feedback is F2 is protocol.Feedback and Problem is P2 is protocol.Problem


@pytest.mark.parametrize("strategies, params, field, reason", [
    (["random", "optuna"], {"optuna": {"sigma0": float("nan")}}, "attack.params.optuna.sigma0",
     "must be a finite number, got nan"),
    (["random", "optuna"], {"optuna": {"sigma0": "wide"}}, "attack.params.optuna.sigma0",
     "expected a number (float) or null, got 'wide'"),
    (["random", "boundary"], {"boundary": {"tol": 0.1, "nope": 1}}, "attack.params.boundary.nope",
     "unknown parameter 'nope' for strategy 'boundary' (accepts: explore, max_starts, opening, probe_step, tol)"),
    (["random", "evolutionary"], {"evolutionary": {"elite": True}}, "attack.params.evolutionary.elite",
     "expected a whole number (int), got True"),
])
def test_validate_checks_typed_strategy_parameters_in_one_line(strategies, params, field, reason, team_files,
                                                                write_scenario):
    from typer.testing import CliRunner

    from simulator.cli import app

    from .conftest import scenario_dict

    path = write_scenario(scenario_dict(team_files, strategies=strategies, params=params), "params.yaml")
    r = CliRunner().invoke(app, ["validate", str(path)])
    assert r.exit_code == 2, r.output
    assert r.stderr.strip().splitlines() == [f"fraudsim: scenario error: {path}: {field}: {reason}"]
