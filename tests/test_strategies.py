"""Contract every registered strategy passes (like Optuna's sampler tests and scikit-learn's
``parametrize_with_checks``): adding a strategy adds its tests. A real small XGBoost model is trained once."""
import inspect

import numpy as np
import pytest

from simulator.attack import run_strategy, target_rng
from simulator.errors import ScenarioError
from simulator.kernels import get_kernels
from simulator.oracle import Oracle
from simulator.strategies import REGISTRY, Problem, Strategy, register
from simulator.strategies.base import NEEDS
from simulator.target import load_model
from simulator.testing import HOME_NAMES, home_data, home_world

STRATEGIES = sorted(REGISTRY)
WITH_OPENING = [n for n in STRATEGIES if "opening" in inspect.signature(REGISTRY[n].__init__).parameters]
# every strategy as configured by default, and every one that has an opening move once more without it
CASES = [pytest.param(n, {}, id=n) for n in STRATEGIES] + \
        [pytest.param(n, {"opening": "none"}, id=f"{n}-opening-none") for n in WITH_OPENING]
BUDGET = 60


@pytest.fixture(scope="session")
def world():
    """The contract suite's home world (shared with tests/test_testing.py, trained once): mixed feature types, a
    frozen column, a relation between features, declined targets and approved traffic."""
    return home_world()


class Log:
    """In-memory stand-in for the store's query log: keeps every paid row."""

    def __init__(self, d):
        self.d, self.rows, self.targets = d, [], []

    def add(self, *, target_id, X, **_):
        self.rows.append(np.array(X))
        self.targets.append(np.array(target_id))

    @property
    def X(self):
        return np.vstack(self.rows) if self.rows else np.empty((0, self.d))


def _feedback(cls) -> str:
    return "score" if "score" in cls.needs else "decision"


def _problems(world, cls, budget=BUDGET):
    k = get_kernels("cpu")
    return [Problem(x0=x, schema=world.sa, kernels=k, budget=budget, feedback=_feedback(cls),
                    approved_examples=world.approved, model=world.model if "model" in cls.needs else None,
                    relations=world.relations)
            for x in world.targets]


def _oracle(world, name, budget=BUDGET, log=None):
    return Oracle(world.model, threshold=world.threshold, feedback=_feedback(REGISTRY[name]), budget=budget,
                  originals=world.targets, schema_arrays=world.sa, kernels=get_kernels("cpu"), strategy=name, log=log,
                  relations=world.relations)


def _run(world, name, seed=0, budget=BUDGET, batch_size=None, params=None):
    cls = REGISTRY[name]
    log = Log(len(world.names))
    oracle = _oracle(world, name, budget, log)
    rngs = [target_rng(seed, 0, i) for i in range(len(world.targets))]
    done = run_strategy(cls, dict(params or {}), oracle=oracle, problems=_problems(world, cls, budget), rngs=rngs, batch_size=batch_size)
    return done, oracle, log


# The contract itself (shapes and dtypes of asks, budgets, constraint-valid candidates, reproducible by seed, both
# feedback modes, a foreign schema with NaN) is checked for every strategy and opening by the suite shipped in the
# package, simulator.testing (tests/test_testing.py). Here: what the built-in strategies promise beyond it.


def test_the_engine_respects_budget_and_constraints_with_odd_batches(world):
    """Through the real oracle and driver (which refuse over-budget asks and invalid rows), with a batch size that
    does not divide the budget."""
    for name in STRATEGIES:
        done, oracle, log = _run(world, name, batch_size=7)
        assert (oracle.used <= BUDGET).all()
        t = np.concatenate(log.targets)
        assert np.bincount(t, minlength=len(world.targets)).max() <= BUDGET
        assert not get_kernels("cpu").invalid(log.X, world.targets, t, world.sa, None, world.relations).any()


@pytest.mark.parametrize("name, params", CASES)
def test_best_cost_never_increases_and_an_evasion_is_found(world, name, params):
    cls = REGISTRY[name]
    k = get_kernels("cpu")
    oracle = _oracle(world, name)
    strategies = [cls(p, target_rng(5, 0, i), **params) for i, p in enumerate(_problems(world, cls))]
    history = [[] for _ in strategies]
    for i, s in enumerate(strategies):
        while oracle.remaining(np.array([i]))[0] > 0 and not s.finished:
            n = int(min(10, oracle.remaining(np.array([i]))[0]))
            X = s.ask(n)
            fb = oracle.query(np.full(n, i), X)
            s.tell(X, fb)
            history[i].append(s.best_cost)
            if fb.evaded.any():  # the best is never worse than what was just seen to evade
                assert s.best_cost <= k.cost(X[fb.evaded], world.targets, np.full(int(fb.evaded.sum()), i), world.sa).min()
    for h in history:
        assert all(b <= a for a, b in zip(h, h[1:]))
    assert all(s.best_x is not None for s in strategies), "no evasion on an easy problem"
    for i, s in enumerate(strategies):  # the recorded best really evades and costs what it says
        assert world.model.predict_score(s.best_x[None, :])[0] < world.threshold
        assert k.cost(s.best_x[None, :], world.targets, np.array([i]), world.sa)[0] == pytest.approx(s.best_cost)


@pytest.mark.parametrize("name", STRATEGIES)
def test_declares_needs_and_refuses_unknown_parameters(world, name):
    cls = REGISTRY[name]
    assert set(cls.needs) <= set(NEEDS)
    with pytest.raises(ScenarioError, match="unknown parameter 'no_such_parameter'"):
        cls(_problems(world, cls)[0], np.random.default_rng(0), no_such_parameter=1)


@pytest.mark.parametrize("name", WITH_OPENING)
def test_opening_is_a_named_optional_part(world, name):
    """The opening parameter is typed with the default 'typical'; with it, the first rows asked are opening moves
    (recorded per query), without it none is; anything else is refused naming the parameter."""
    cls = REGISTRY[name]
    p = inspect.signature(cls.__init__).parameters["opening"]
    assert p.kind is inspect.Parameter.KEYWORD_ONLY and p.default == "typical"
    problem = _problems(world, cls)[0]
    with_opening = cls(problem, np.random.default_rng(0))
    with_opening.ask(5)
    assert with_opening.asked_opening.any()
    without = cls(problem, np.random.default_rng(0), opening="none")
    without.ask(5)
    assert not without.asked_opening.any()
    with pytest.raises(ScenarioError, match="unknown opening 'sometimes'") as err:
        cls(problem, np.random.default_rng(0), opening="sometimes")
    assert err.value.field == f"attack.params.{name}.opening"


def test_registering_a_duplicate_name_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        @register("random")
        class Again(Strategy):
            pass
    assert REGISTRY["random"].__name__ == "RandomSearch"


def test_scenario_rejects_unmet_needs():
    from simulator.scenario import AttackSpec

    with pytest.raises(ScenarioError, match="needs score feedback"):
        AttackSpec(feedback="decision", strategies=["greedy"])
    with pytest.raises(ScenarioError, match="needs the model file"):
        AttackSpec(strategies=["tree"])
    AttackSpec(feedback="decision", strategies=["random", "boundary", "surrogate"])


def test_tree_search_reads_lightgbm_and_xgboost_alike(world):
    """The white-box search walks LightGBM dumps too, and its sure evasion is one the model really approves."""
    import lightgbm as lgb

    from simulator.strategies.tree import TreeSearch, reachable_splits

    X, y = home_data(np.random.default_rng(1), 3000)
    booster = lgb.train({"objective": "binary", "num_leaves": 7, "verbose": -1, "num_threads": 1, "seed": 0},
                        lgb.Dataset(X, y, feature_name=list(HOME_NAMES)), 20)
    model = load_model(booster)
    x0 = world.targets[0]
    splits = reachable_splits(model, x0, world.sa.mutable)
    assert splits and all(world.sa.mutable[s.feature] for s in splits)
    threshold = 0.3
    approved = X[model.predict_score(X) < threshold][:200]
    s0 = model.predict_score(x0[None, :])[0]
    assert s0 >= threshold
    problem = Problem(x0=x0, schema=world.sa, kernels=get_kernels("cpu"), budget=30, feedback="decision",
                      approved_examples=approved, model=model, relations=world.relations)
    s = TreeSearch(problem, np.random.default_rng(0))
    oracle = Oracle(model, threshold=threshold, feedback="decision", budget=30, originals=x0[None, :],
                    schema_arrays=world.sa, kernels=get_kernels("cpu"), strategy="tree", relations=world.relations)
    X1 = s.ask(5)
    s.tell(X1, oracle.query(np.zeros(5, np.int64), X1))
    assert s.best_x is not None and model.predict_score(s.best_x[None, :])[0] < threshold


def test_a_ctrl_c_whose_exception_was_lost_stops_the_run_at_the_next_step(world):
    """A signal's exception can be lost on its way out (raised in a finalizer it is printed and ignored; raised while
    DuckDB calls back into Python it comes back as a DuckDB error): the CLI's handlers remember the signal, and the
    driver's loop raises it again at its next step instead of attacking on for minutes."""
    import os
    import signal
    import time

    from simulator import errors

    restore = errors.install_sigterm()
    try:
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            pytest.skip("SIGINT is ignored in this process (started in the background)")
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)  # the handler runs here and raises
        except KeyboardInterrupt:
            pass  # lost, as in a finalizer
        assert errors.signal_received() == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            _run(world, "random")
    finally:
        restore()
        errors._RECEIVED.clear()
    done, _, log = _run(world, "random", budget=5)  # with the handlers gone and nothing recorded, runs go on
    assert all(s is not None for s in done)


def test_a_ctrl_c_raised_where_python_cannot_propagate_it_is_not_printed():
    """A signal that lands in a finalizer or a ctypes callback (llvmlite's object cache while Numba compiles, in a
    fresh install) is an "unraisable" exception: Python hands it to ``sys.unraisablehook``, which prints "Exception
    ignored ..." with a traceback, and drops it. Under the CLI's handlers it is recorded and raised again at the next
    step instead, and not handed on; any other unraisable error still is."""
    import gc
    import os
    import signal
    import sys
    import time

    from simulator import errors

    class Finalized:
        def __init__(self, kill):
            self.kill = kill

        def __del__(self):
            if self.kill:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.5)  # the handler runs here, inside the finalizer
            else:
                raise ValueError("a real error in a finalizer")

    handed_on = []
    before = sys.unraisablehook
    sys.unraisablehook = handed_on.append  # what would print "Exception ignored ..."
    restore = errors.install_sigterm()
    try:
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            pytest.skip("SIGINT is ignored in this process (started in the background)")
        obj = Finalized(kill=True)
        del obj
        gc.collect()
        assert errors.signal_received() == signal.SIGINT
        assert handed_on == []
        with pytest.raises(KeyboardInterrupt):
            errors.raise_if_signalled()
        obj = Finalized(kill=False)
        del obj
        gc.collect()
        assert [u.exc_type for u in handed_on] == [ValueError]
    finally:
        restore()
        errors._RECEIVED.clear()
        sys.unraisablehook = before
