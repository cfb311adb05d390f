"""The counter-based generator of :mod:`fastperm.rng` as CUDA device functions.

Same specification and wrapping uint64 arithmetic as the CPU backends, so a
GPU thread draws exactly the permutation a CPU run draws for the same
``(seed, stream, counter)``. Without a per-thread buffer, each 32-bit draw is
computed from its counter (one SplitMix64 word gives draws 2q and 2q + 1).
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from .. import rng_scalars as scalars

TWO32, MASK32, S32 = scalars.TWO32, scalars.MASK32, scalars.S32


def _device(fn, inline):
    return cuda.jit(device=True)(fn)


# the generator's scalar functions, from the one source shared with the CPU backend
mix64, make_key, word, draw, normal = scalars.compiled(_device, "_cuda")


@cuda.jit(device=True)
def bounded(key, c, r):
    """Unbiased integer in ``[0, r)`` from draws ``c, c+1, ...`` (Lemire); returns (value,
    next c)."""
    ru = np.uint64(r)
    m = draw(key, c) * ru
    c += 1
    low = m & MASK32
    if low < ru:
        t = (TWO32 - ru) % ru
        while low < t:
            m = draw(key, c) * ru
            c += 1
            low = m & MASK32
    return np.int64(m >> S32), c


@cuda.jit(device=True)
def augment_into(x, key, resample, out):
    """``out = x[p]``: the Fisher–Yates permutation or the resampling of ``key`` (one thread)."""
    d = x.shape[0]
    c = 0
    if resample:
        for m in range(d):
            j, c = bounded(key, c, d)
            out[m] = x[j]
    else:
        for m in range(d):
            out[m] = x[m]
        for i in range(d - 1, 0, -1):
            j, c = bounded(key, c, i + 1)
            tmp = out[i]
            out[i] = out[j]
            out[j] = tmp


@cuda.jit
def _indices_kernel(seed, stream, index, copy, resample, ident, out):
    if cuda.grid(1) == 0:
        augment_into(ident, make_key(seed, stream, index, copy), resample, out)


def augmented_indices(seed, stream, index, copy, d, resample):
    """The permutation (or resampling indices) of ``range(d)`` drawn on the device (for tests)."""
    from .device import quiet_simulator

    ident = cuda.to_device(np.arange(d, dtype=np.float64))
    out = cuda.device_array(d, dtype=np.float64)
    with quiet_simulator():
        _indices_kernel[1, 1](np.uint64(seed), stream, index, copy, resample, ident, out)
    return out.copy_to_host().astype(np.int64)


@cuda.jit
def _bounded_kernel(key, r, out, used):
    if cuda.grid(1) == 0:
        c = 0
        for q in range(out.shape[0]):
            out[q], c = bounded(key, c, r)
        used[0] = c


def bounded_draws(key, r, count):
    """``count`` bounded integers in ``[0, r)`` of ``key`` and the draws they used (tests)."""
    from .device import quiet_simulator

    out = cuda.device_array(count, dtype=np.int64)
    used = cuda.device_array(1, dtype=np.int64)
    with quiet_simulator():
        _bounded_kernel[1, 1](np.uint64(key), r, out, used)
    return out.copy_to_host(), int(used.copy_to_host()[0])


def permutation(seed, stream, index, copy, d):
    """The permutation of ``range(d)`` of the specification, drawn on the device (tests)."""
    return augmented_indices(seed, stream, index, copy, d, False)


def resample_indices(seed, stream, index, copy, d):
    """The resampling indices of the specification, drawn on the device (tests)."""
    return augmented_indices(seed, stream, index, copy, d, True)
