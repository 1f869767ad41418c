"""CuPy path: the reference semantics evaluated on the GPU (one definition for both devices).

Inputs and outputs are NumPy arrays; the transfers are part of the call, so this only pays for large batches.
"""
from __future__ import annotations

import numpy as np

from . import reference


def available() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # ImportError, or CUDA present but no usable device/driver
        return False


def _cp():
    import cupy

    return cupy


def _to(xp, *arrays):
    return [xp.asarray(a) for a in arrays]


def project(X, X0, origin, sa):
    cp = _cp()
    return cp.asnumpy(reference.project(*_to(cp, X, X0, origin), sa, xp=cp))


def cost(X, X0, origin, sa):
    cp = _cp()
    return cp.asnumpy(reference.cost(*_to(cp, X, X0, origin), sa, xp=cp))


def violations(X, X0, origin, sa):
    cp = _cp()
    return cp.asnumpy(reference.violations(*_to(cp, X, X0, origin), sa, xp=cp))


def admit(X, X0, origin, used, sa):
    cp = _cp()
    qi, bad, c, asked = reference.admit(*_to(cp, X, X0), origin, used, sa, xp=cp)
    return qi, cp.asnumpy(bad), cp.asnumpy(c), asked


def charge(X, X0, origin, used, budget, sa):
    cp = _cp()
    got = reference.charge(*_to(cp, X, X0), origin, used, budget, sa, xp=cp)
    return None if got is None else (got[0], cp.asnumpy(got[1]))


def mutate(base, X0, origin, U, Z, V, step, p, mode, sa):
    cp = _cp()
    args = _to(cp, np.asarray(base, np.float64), X0, origin, U, Z, V, np.asarray(step, np.float64), np.asarray(p, np.float64))
    return cp.asnumpy(reference.mutate(*args, mode, sa, xp=cp))
