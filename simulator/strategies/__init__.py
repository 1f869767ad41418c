"""Search strategies behind one ask/tell protocol (see :mod:`simulator.strategies.base`).

A new strategy is one module here with one class decorated by ``@register("name")``; importing this package
registers them all. A team's own strategy registers the same way from its own module, and
:mod:`simulator.testing` checks it against the contract.
"""
from ..protocol import Feedback, Problem
from .base import REGISTRY, BaseStrategy, Strategy, get_strategy, register
from . import boundary, evolutionary, exact, greedy, optuna_search, random_search, surrogate, tree  # noqa: F401  (registration side effect)

__all__ = ["REGISTRY", "BaseStrategy", "Feedback", "Problem", "Strategy", "get_strategy", "register"]
