"""Small inline helpers every Numba training kernel shares: the dot product, the recorded
loss ``mean((w − w*)²)``, the parameters kept at a record, and the epilogue of a diverged
run (the Cython twins' are in ``_cython/vec.pxd``, the CUDA kernels' in
``numba_cuda/sgd.py``)."""

from __future__ import annotations

import numpy as np

from ..._jit import JIT, njit


@njit(inline="always", **JIT)
def dot(a, b):
    """``a · b``."""
    s = 0.0
    for m in range(a.shape[0]):
        s += a[m] * b[m]
    return s


@njit(inline="always", **JIT)
def mse(w, w_star):
    """``mean((w − w_star)²)``, the recorded loss."""
    s = 0.0
    for m in range(w.shape[0]):
        e = w[m] - w_star[m]
        s += e * e
    return s / w.shape[0]


@njit(inline="always", **JIT)
def keep(w_rec, q, w):
    """``w_rec[q] = w`` when the caller keeps the parameters at the recorded steps
    (``w_rec`` has a row per record; none: nothing kept)."""
    if w_rec.shape[0] > 0:
        w_rec[q, :] = w


@njit(inline="always", **JIT)
def stop(row, q, status):
    """A run stopped at record q: NaN from there on in ``row``; returns its ``status`` (the
    step at which it diverged), which the worker returns in turn."""
    row[q:] = np.nan
    return status
