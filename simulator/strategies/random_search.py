"""Constrained random search: the baseline every result is compared with."""
from __future__ import annotations

import numpy as np

from ..kernels import MODE_UNIFORM
from .base import Strategy, register


@register("random")
class RandomSearch(Strategy):
    """Each candidate starts from the original and redraws a random subset of the mutable features uniformly over
    the values their constraints allow (bounds, categories, direction). It learns nothing from feedback."""

    def _ask(self, n: int) -> np.ndarray:
        p = self.rng.uniform(0.0, 0.6, n)
        return self.mutate(np.repeat(self._X0, n, axis=0), step=0.0, p=p, mode=MODE_UNIFORM)
