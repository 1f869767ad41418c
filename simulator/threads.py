"""How many threads the model libraries may use: one rule for every adapter and for the query log's writer.

``OMP_NUM_THREADS``, when set, bounds every model library's threads: XGBoost and LightGBM size their OpenMP pools
from it, and the ONNX adapter sizes ONNX Runtime's intra-op pool from it (ONNX Runtime has its own pool and does
not read the variable itself). Unset, each library takes the cores this process may run on (ONNX Runtime at most
:data:`simulator.target.onnx.MAX_THREADS`).
"""
from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity; ``os.cpu_count()`` where that is not known)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def omp_threads() -> int | None:
    """``OMP_NUM_THREADS`` as a positive number of threads (the first level of a nested list such as ``"2,1"``),
    or None when it is unset or not a positive integer (then OpenMP uses its own default, every core)."""
    try:
        n = int(os.environ.get("OMP_NUM_THREADS", "").split(",")[0])
    except ValueError:
        return None
    return n if n > 0 else None


def model_threads(default_max: int | None = None) -> int:
    """The threads a model library scores with: ``OMP_NUM_THREADS`` when set, at most the usable cores (more only
    oversubscribe them); otherwise the usable cores, at most ``default_max`` when given."""
    cores = usable_cores()
    omp = omp_threads()
    if omp is not None:
        return max(1, min(omp, cores))
    return max(1, cores if default_max is None else min(cores, default_max))
