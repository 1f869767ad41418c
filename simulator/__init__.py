"""fraudsim: an adversarial simulator for tabular fraud models.

The public API is these few names; everything else is internal. They are imported on first use, so
``import simulator`` (and ``fraudsim --help``) stays fast: Numba, DuckDB, Polars and XGBoost load only when a run,
a model or a store needs them.

>>> import simulator as fs
>>> sorted(n for n in fs.__all__)
['FeatureSchema', 'RunResult', 'Scenario', 'load_model', 'run']
>>> fs.Scenario.__name__
'Scenario'
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> the module that defines it (imported on first access)
_LAZY = {"Scenario": ".scenario", "run": ".runner", "RunResult": ".result", "load_model": ".target",
         "FeatureSchema": ".schema"}

__all__ = ["Scenario", "run", "RunResult", "load_model", "FeatureSchema"]

if TYPE_CHECKING:  # for type checkers and IDEs; at runtime __getattr__ below does the imports
    from .result import RunResult
    from .runner import run
    from .scenario import Scenario
    from .schema import FeatureSchema
    from .target import load_model


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'simulator' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
