"""The counter-based generator of :mod:`fastperm.rng` as CUDA device functions.

Same specification and wrapping uint64 arithmetic as the CPU backends, so a
GPU thread draws exactly the permutation a CPU run draws for the same
``(seed, stream, counter)``. Without a per-thread buffer, each 32-bit draw is
computed from its counter (one SplitMix64 word gives draws 2q and 2q + 1).
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from ... import rng as spec

GOLDEN = np.uint64(spec.GOLDEN)
MIX1 = np.uint64(spec.MIX1)
MIX2 = np.uint64(spec.MIX2)
MASK32 = np.uint64(spec.MASK32)
TWO32 = np.uint64(1 << 32)
S27, S30, S31, S32 = np.uint64(27), np.uint64(30), np.uint64(31), np.uint64(32)


@cuda.jit(device=True)
def mix64(z):
    z = (z ^ (z >> S30)) * MIX1
    z = (z ^ (z >> S27)) * MIX2
    return z ^ (z >> S31)


@cuda.jit(device=True)
def key(seed, stream, index, copy):
    """Key of ``(seed, stream, counter(index, copy))``."""
    count = (np.uint64(index) << S32) | np.uint64(copy)
    h = mix64(np.uint64(seed) + GOLDEN)
    h = mix64(h + np.uint64(stream) + GOLDEN)
    return mix64(h + count + GOLDEN)


@cuda.jit(device=True)
def draw(k, c):
    """Draw number ``c`` (32 bits, held in a uint64) of key ``k``."""
    word = mix64(k + np.uint64(c // 2 + 1) * GOLDEN)
    if c & 1:
        return word >> S32
    return word & MASK32


@cuda.jit(device=True)
def bounded(k, c, r):
    """Unbiased integer in ``[0, r)`` from draws ``c, c+1, ...`` (Lemire); returns (value, next c)."""
    ru = np.uint64(r)
    m = draw(k, c) * ru
    c += 1
    low = m & MASK32
    if low < ru:
        t = (TWO32 - ru) % ru
        while low < t:
            m = draw(k, c) * ru
            c += 1
            low = m & MASK32
    return np.int64(m >> S32), c


@cuda.jit(device=True)
def augment_into(x, k, resample, out):
    """``out = x[p]``: the Fisher–Yates permutation or the resampling of key ``k`` (one thread)."""
    d = x.shape[0]
    c = 0
    if resample:
        for m in range(d):
            j, c = bounded(k, c, d)
            out[m] = x[j]
    else:
        for m in range(d):
            out[m] = x[m]
        for i in range(d - 1, 0, -1):
            j, c = bounded(k, c, i + 1)
            tmp = out[i]
            out[i] = out[j]
            out[j] = tmp


@cuda.jit
def _indices_kernel(seed, stream, index, copy, resample, ident, out):
    if cuda.grid(1) == 0:
        augment_into(ident, key(seed, stream, index, copy), resample, out)


def augmented_indices(seed, stream, index, copy, d, resample):
    """The permutation (or resampling indices) of ``range(d)`` drawn on the device (for tests)."""
    from .device import quiet_simulator

    ident = cuda.to_device(np.arange(d, dtype=np.float64))
    out = cuda.device_array(d, dtype=np.float64)
    with quiet_simulator():
        _indices_kernel[1, 1](np.uint64(seed), stream, index, copy, resample, ident, out)
    return out.copy_to_host().astype(np.int64)


@cuda.jit
def _bounded_kernel(k, r, out, used):
    if cuda.grid(1) == 0:
        c = 0
        for q in range(out.shape[0]):
            out[q], c = bounded(k, c, r)
        used[0] = c


def bounded_draws(k, r, count):
    """``count`` bounded integers in ``[0, r)`` of key ``k`` and the draws they used (tests)."""
    from .device import quiet_simulator

    out = cuda.device_array(count, dtype=np.int64)
    used = cuda.device_array(1, dtype=np.int64)
    with quiet_simulator():
        _bounded_kernel[1, 1](np.uint64(k), r, out, used)
    return out.copy_to_host(), int(used.copy_to_host()[0])


def permutation(seed, stream, index, copy, d):
    """The permutation of ``range(d)`` of the specification, drawn on the device (tests)."""
    return augmented_indices(seed, stream, index, copy, d, False)


def resample_indices(seed, stream, index, copy, d):
    """The resampling indices of the specification, drawn on the device (tests)."""
    return augmented_indices(seed, stream, index, copy, d, True)
