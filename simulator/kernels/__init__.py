"""Array kernels behind one dispatcher: ``get_kernels("cpu" | "gpu" | "auto")``.

Every backend offers ``project``, ``cost``, ``violations`` and ``mutate`` with the semantics documented in
:mod:`simulator.kernels.reference`; candidates for many targets can share one call through ``origin``.

Examples
--------
>>> import numpy as np
>>> from simulator.schema import FeatureSchema
>>> sa = FeatureSchema.from_mapping(["amount", "flag"], {"amount": {"min": 0, "max": 10},
...                                  "flag": {"type": "binary", "direction": "decrease"}}).arrays()
>>> k = get_kernels("cpu")
>>> k.project(np.array([[12.5, 1.0]]), np.array([[3.0, 0.0]]), np.array([0]), sa).tolist()
[[10.0, 0.0]]
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np

from ..errors import ScenarioError
from . import cpu, gpu, reference, relations
from .reference import MODE_LOCAL, MODE_UNIFORM

__all__ = ["Kernels", "get_kernels", "MODE_LOCAL", "MODE_UNIFORM", "reference"]


@dataclass(frozen=True)
class Kernels:
    """The kernel set of one backend; strategies and the oracle call only these."""

    name: str
    _impl: ModuleType

    def project(self, X, X0, origin, sa) -> np.ndarray:
        return self._impl.project(X, X0, origin, sa)

    def cost(self, X, X0, origin, sa) -> np.ndarray:
        return self._impl.cost(X, X0, origin, sa)

    def violations(self, X, X0, origin, sa) -> np.ndarray:
        return self._impl.violations(X, X0, origin, sa)

    def admit(self, X, X0, origin, used, sa) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The oracle's checks of a batch in one pass: ``(query_index, invalid, cost, asked)``, see
        :func:`simulator.kernels.reference.admit` (``invalid`` is :meth:`violations`: no relations)."""
        return self._impl.admit(X, X0, origin, used, sa)

    def charge(self, X, X0, origin, used, budget, sa) -> tuple[np.ndarray, np.ndarray] | None:
        """:meth:`admit`, and for a batch with no invalid candidate and within ``budget`` (int64 per original) the
        charge ``used += asked`` in place: ``(query_index, cost)``, or None for a refused batch (nothing charged),
        see :func:`simulator.kernels.reference.charge`."""
        return self._impl.charge(X, X0, origin, used, budget, sa)

    def mutate(self, base, X0, origin, U, Z, V, step, p, mode, sa) -> np.ndarray:
        return self._impl.mutate(base, X0, origin, U, Z, V, step, p, mode, sa)

    # relations between features (simulator/relations.py): applied after ``project``; ``E`` holds the extra data
    # columns of each original (or None)
    def repair(self, X, X0, origin, E, sa, ra) -> np.ndarray:
        if self.name == "gpu":
            return relations.gpu_repair(X, X0, origin, E, sa, ra)
        return relations.repair(X, X0, origin, E, sa, ra)

    def project_repair(self, X, X0, origin, E, sa, ra) -> np.ndarray:
        """``repair(project(X, ...), ...)`` in one call (``ra`` None or empty: ``project`` alone); the GPU does
        both steps on the device."""
        if self.name == "gpu":
            return relations.gpu_project_repair(X, X0, origin, E, sa, ra)
        return relations.project_repair(X, X0, origin, E, sa, ra)

    def bind_project_repair(self, X0, E, sa, ra):
        """``f(X) = project_repair(X, X0, zeros, E, sa, ra)`` for one original ``X0`` (1, d), its arguments
        prepared once (for callers projecting a few rows many times)."""
        if self.name == "gpu":
            return lambda X: relations.gpu_project_repair(X, X0, np.zeros(len(X), np.int64), E, sa, ra)
        return relations.bind_project_repair(X0, E, sa, ra)

    def bind_repair(self, X0, E, sa, ra):
        """``f(X) = repair(X, X0, zeros, E, sa, ra)`` for one original ``X0`` (1, d), arguments prepared once
        (``X`` itself without relations)."""
        if ra is None or ra.empty:
            return lambda X: X
        if self.name == "gpu":
            return lambda X: relations.gpu_repair(X, X0, np.zeros(len(X), np.int64), E, sa, ra)
        return relations.bind_repair(X0, E, sa, ra)

    def relation_violations(self, X, X0, origin, E, ra) -> np.ndarray:
        if self.name == "gpu":
            return relations.gpu_violations(X, X0, origin, E, ra)
        return relations.violations(X, X0, origin, E, ra)

    def invalid(self, X, X0, origin, sa, E=None, ra=None) -> np.ndarray:
        """Candidates the oracle refuses: breaking a bound, or a relation. Derived features are frozen in the schema
        but follow their inputs: their bounds are not checked, the relations check that they equal their recomputed
        value. The one definition the oracle, the strategies and the contract suite use."""
        if ra is None:
            return self.violations(X, X0, origin, sa)
        Xb = np.array(X, dtype=np.float64, copy=True)
        Xb[:, ra.derived] = np.asarray(X0)[origin][:, ra.derived]
        return self.violations(Xb, X0, origin, sa) | self.relation_violations(X, X0, origin, E, ra)


def get_kernels(backend: str = "auto") -> Kernels:
    """``auto`` takes the GPU when CuPy sees a device, the CPU otherwise; ``gpu`` without one is an error."""
    if backend == "cpu":
        return Kernels("cpu", cpu)
    if backend == "gpu":
        if not gpu.available():
            raise ScenarioError("backend 'gpu' needs CuPy and a CUDA GPU, and none was found; use cpu or auto",
                                field="attack.backend")
        return Kernels("gpu", gpu)
    if backend == "auto":
        return Kernels("gpu", gpu) if gpu.available() else Kernels("cpu", cpu)
    raise ScenarioError(f"unknown backend {backend!r}; use auto, cpu or gpu", field="attack.backend")
