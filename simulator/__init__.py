"""fraudsim: an adversarial simulator for tabular fraud models.

The public API is these few names; everything else is internal.

>>> import simulator as fs
>>> sorted(n for n in fs.__all__)
['FeatureSchema', 'RunResult', 'Scenario', 'load_model', 'run']
"""
__version__ = "0.1.0"

from .runner import RunResult, run  # noqa: E402
from .scenario import Scenario  # noqa: E402
from .schema import FeatureSchema  # noqa: E402
from .target import load_model  # noqa: E402

__all__ = ["Scenario", "run", "RunResult", "load_model", "FeatureSchema"]
