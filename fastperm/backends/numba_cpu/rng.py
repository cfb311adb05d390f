"""The counter-based generator of :mod:`fastperm.rng`, compiled with Numba.

Same specification, wrapping uint64 arithmetic. Draws for one key are first
generated in bulk into a buffer (one SplitMix64 word gives two 32-bit draws;
the loop has no dependence between iterations), then consumed by Lemire's
bounded-integer method; the rare rejected draw falls back to computing the
next draw directly from its counter.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ... import rng as spec
from ..._jit import JIT

GOLDEN = np.uint64(spec.GOLDEN)
MIX1 = np.uint64(spec.MIX1)
MIX2 = np.uint64(spec.MIX2)
MASK32 = np.uint64(spec.MASK32)
TWO32 = np.uint64(1 << 32)
S27, S30, S31, S32 = np.uint64(27), np.uint64(30), np.uint64(31), np.uint64(32)
ONE = np.uint64(1)


@njit(inline="always", **JIT)
def mix64(z):
    z = (z ^ (z >> S30)) * MIX1
    z = (z ^ (z >> S27)) * MIX2
    return z ^ (z >> S31)


@njit(**JIT)
def key(seed, stream, index, copy):
    """Key of ``(seed, stream, counter(index, copy))``."""
    count = (np.uint64(index) << S32) | np.uint64(copy)
    h = mix64(np.uint64(seed) + GOLDEN)
    h = mix64(h + np.uint64(stream) + GOLDEN)
    return mix64(h + count + GOLDEN)


@njit(inline="always", **JIT)
def draw(k, c):
    """Draw number ``c`` (32 bits, held in a uint64) of key ``k``."""
    word = mix64(k + np.uint64(c // 2 + 1) * GOLDEN)
    if c & 1:
        return word >> S32
    return word & MASK32


@njit(**JIT)
def fill_draws(k, buf):
    """``buf[c] = draw(k, c)`` for the whole (even-length) buffer."""
    for q in range(buf.shape[0] // 2):
        word = mix64(k + np.uint64(q + 1) * GOLDEN)
        buf[2 * q] = word & MASK32
        buf[2 * q + 1] = word >> S32


@njit(inline="always", **JIT)
def _draw_at(k, buf, c):
    if c < buf.shape[0]:
        return buf[c]
    return draw(k, c)


@njit(inline="always", **JIT)
def bounded(k, buf, c, r):
    """Unbiased integer in ``[0, r)`` from draws ``c, c+1, ...``; returns (value, next c)."""
    ru = np.uint64(r)
    m = _draw_at(k, buf, c) * ru
    c += 1
    low = m & MASK32
    if low < ru:
        t = (TWO32 - ru) % ru
        while low < t:
            m = _draw_at(k, buf, c) * ru
            c += 1
            low = m & MASK32
    return np.int64(m >> S32), c


@njit(**JIT)
def permute_into(x, k, buf, out):
    """``out = x[p]`` for the Fisher–Yates permutation ``p`` of key ``k``."""
    d = x.shape[0]
    out[:] = x
    fill_draws(k, buf)
    c = 0
    for i in range(d - 1, 0, -1):
        j, c = bounded(k, buf, c, i + 1)
        tmp = out[i]
        out[i] = out[j]
        out[j] = tmp


@njit(**JIT)
def resample_into(x, k, buf, out):
    """``out = x[idx]`` for the ``d`` indices drawn with replacement by key ``k``."""
    d = x.shape[0]
    fill_draws(k, buf)
    c = 0
    for m in range(d):
        j, c = bounded(k, buf, c, d)
        out[m] = x[j]


@njit(**JIT)
def augment_into(x, k, buf, resample, out):
    if resample:
        resample_into(x, k, buf, out)
    else:
        permute_into(x, k, buf, out)


@njit(**JIT)
def draw_buffer(d):
    """A buffer long enough for the draws of one copy of ``d`` items (even length)."""
    return np.empty(d + (d & 1) + 2, dtype=np.uint64)


@njit(**JIT)
def _spec_indices(seed, stream, index, copy, d, resample):
    out = np.empty(d, dtype=np.float64)
    augment_into(np.arange(d).astype(np.float64), key(seed, stream, index, copy), draw_buffer(d),
                 resample, out)
    return out.astype(np.int64)


@njit(**JIT)
def permutation(seed, stream, index, copy, d):
    """The permutation of ``range(d)`` of the specification (for tests)."""
    return _spec_indices(seed, stream, index, copy, d, False)


@njit(**JIT)
def resample_indices(seed, stream, index, copy, d):
    """The resampling indices of the specification (for tests)."""
    return _spec_indices(seed, stream, index, copy, d, True)


@njit(**JIT)
def bounded_draws(k, r, count):
    """``count`` bounded integers in ``[0, r)`` from key ``k`` and the draws they used (tests).

    Uses a buffer of only 4 draws, so most draws take the path that computes a draw
    from its counter (as a rejected draw past the buffer does in the kernels).
    """
    buf = np.empty(4, dtype=np.uint64)
    fill_draws(k, buf)
    out = np.empty(count, dtype=np.int64)
    c = 0
    for q in range(count):
        out[q], c = bounded(k, buf, c, r)
    return out, c


# -- the other augmentations of the specification (kinds of fastperm.augment.distributions) ----------

from ...rng import (KIND_BLOCK, KIND_CYCLIC, KIND_GAUSSIAN, KIND_MASK,  # noqa: E402, F401
                     KIND_PERMUTATION, KIND_RESAMPLE)
S11 = np.uint64(11)
TWO_M53 = 2.0 ** -53


@njit(inline="always", **JIT)
def word(k, q):
    return mix64(k + np.uint64(q + 1) * GOLDEN)


@njit(inline="always", **JIT)
def normal(k, m):
    """Entry m of the Gaussian noise of key k (Box–Muller on 53-bit uniforms; the spec)."""
    u1 = np.float64((word(k, 2 * m) >> S11) + np.uint64(1)) * TWO_M53
    u2 = np.float64(word(k, 2 * m + 1) >> S11) * TWO_M53
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


@njit(**JIT)
def augment_kind_into(x, k, buf, kind, fparams, gidx, gptr, out):
    """Copy of x for key k and augmentation ``kind`` (spec: :mod:`fastperm.rng`).

    ``fparams``: σ (Gaussian) or (p, scale) (mask); ``gidx[gptr[g]:gptr[g + 1]]``: the
    indices of group g (block permutation).
    """
    d = x.shape[0]
    if kind == KIND_PERMUTATION:
        permute_into(x, k, buf, out)
    elif kind == KIND_RESAMPLE:
        resample_into(x, k, buf, out)
    elif kind == KIND_GAUSSIAN:
        for m in range(d):
            out[m] = x[m] + fparams[0] * normal(k, m)
    elif kind == KIND_MASK:
        thr = fparams[0] * 4294967296.0
        scale = fparams[1]
        fill_draws(k, buf)
        for m in range(d):
            out[m] = scale * x[m] if np.float64(_draw_at(k, buf, m)) < thr else 0.0
    elif kind == KIND_CYCLIC:
        fill_draws(k, buf)
        s, _ = bounded(k, buf, 0, d)
        for m in range(d):
            out[m] = x[(m - s) % d]
    else:  # KIND_BLOCK
        out[:] = x
        fill_draws(k, buf)
        c = 0
        for g in range(gptr.shape[0] - 1):
            lo = gptr[g]
            for i in range(gptr[g + 1] - lo - 1, 0, -1):
                j, c = bounded(k, buf, c, i + 1)
                a = gidx[lo + i]
                b = gidx[lo + j]
                tmp = out[a]
                out[a] = out[b]
                out[b] = tmp
