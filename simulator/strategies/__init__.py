"""Search strategies behind one ask/tell protocol (see :mod:`simulator.strategies.base`).

A new strategy is one module here with one class decorated by ``@register("name")``; importing this package
registers them all.
"""
from .base import REGISTRY, Problem, Strategy, get_strategy, register
from . import boundary, evolutionary, exact, greedy, optuna_search, random_search, surrogate, tree  # noqa: F401  (registration side effect)

__all__ = ["REGISTRY", "Problem", "Strategy", "get_strategy", "register"]
