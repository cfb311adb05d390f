"""The counter-based generator of :mod:`fastperm.rng`, compiled with Numba.

Same specification, wrapping uint64 arithmetic. Draws for one key are first
generated in bulk into a buffer (one SplitMix64 word gives two 32-bit draws;
the loop has no dependence between iterations), then consumed by Lemire's
bounded-integer method; the rare rejected draw falls back to computing the
next draw directly from its counter.
"""

from __future__ import annotations

import numpy as np

from ..._jit import JIT, njit
from .. import rng_scalars as scalars

TWO32, MASK32, S32 = scalars.TWO32, scalars.MASK32, scalars.S32


def _njit(fn, inline):
    return njit(inline="always" if inline else "never", **JIT)(fn)


# the generator's scalar functions, from the one source shared with the CUDA backend
mix64, make_key, word, draw, normal = scalars.compiled(_njit, "_cpu")


@njit(**JIT)
def fill_draws(key, buf):
    """``buf[c] = draw(key, c)`` for the whole (even-length) buffer."""
    for q in range(buf.shape[0] // 2):
        w = word(key, q)
        buf[2 * q] = w & MASK32
        buf[2 * q + 1] = w >> S32


@njit(inline="always", **JIT)
def _draw_at(key, buf, c):
    if c < buf.shape[0]:
        return buf[c]
    return draw(key, c)


@njit(inline="always", **JIT)
def bounded(key, buf, c, r):
    """Unbiased integer in ``[0, r)`` from draws ``c, c+1, ...``; returns (value, next c)."""
    ru = np.uint64(r)
    m = _draw_at(key, buf, c) * ru
    c += 1
    low = m & MASK32
    if low < ru:
        t = (TWO32 - ru) % ru
        while low < t:
            m = _draw_at(key, buf, c) * ru
            c += 1
            low = m & MASK32
    return np.int64(m >> S32), c


@njit(**JIT)
def permute_into(x, key, buf, out):
    """``out = x[p]`` for the Fisher–Yates permutation ``p`` of ``key``."""
    d = x.shape[0]
    out[:] = x
    fill_draws(key, buf)
    c = 0
    for i in range(d - 1, 0, -1):
        j, c = bounded(key, buf, c, i + 1)
        tmp = out[i]
        out[i] = out[j]
        out[j] = tmp


@njit(**JIT)
def resample_into(x, key, buf, out):
    """``out = x[idx]`` for the ``d`` indices drawn with replacement by ``key``."""
    d = x.shape[0]
    fill_draws(key, buf)
    c = 0
    for m in range(d):
        j, c = bounded(key, buf, c, d)
        out[m] = x[j]


@njit(**JIT)
def augment_into(x, key, buf, resample, out):
    if resample:
        resample_into(x, key, buf, out)
    else:
        permute_into(x, key, buf, out)


@njit(**JIT)
def draw_buffer(d):
    """A buffer long enough for the draws of one copy of ``d`` items (even length)."""
    return np.empty(d + (d & 1) + 2, dtype=np.uint64)


@njit(**JIT)
def _spec_indices(seed, stream, index, copy, d, resample):
    out = np.empty(d, dtype=np.float64)
    augment_into(
        np.arange(d).astype(np.float64),
        make_key(seed, stream, index, copy),
        draw_buffer(d),
        resample,
        out,
    )
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
def bounded_draws(key, r, count):
    """``count`` bounded integers in ``[0, r)`` from ``key`` and the draws they used (tests).

    Uses a buffer of only 4 draws, so most draws take the path that computes a draw
    from its counter (as a rejected draw past the buffer does in the kernels).
    """
    buf = np.empty(4, dtype=np.uint64)
    fill_draws(key, buf)
    out = np.empty(count, dtype=np.int64)
    c = 0
    for q in range(count):
        out[q], c = bounded(key, buf, c, r)
    return out, c


# -- the other augmentations of the specification (kinds of fastperm.augment.distributions) ---

from ...rng import (  # noqa: E402, F401
    KIND_BLOCK,
    KIND_CYCLIC,
    KIND_GAUSSIAN,
    KIND_MASK,
    KIND_PERMUTATION,
    KIND_RESAMPLE,
)


@njit(**JIT)
def augment_kind_into(x, key, buf, kind, fparams, gidx, gptr, out):
    """Copy of x for ``key`` and augmentation ``kind`` (spec: :mod:`fastperm.rng`).

    ``fparams``: σ (Gaussian) or (p, scale) (mask); ``gidx[gptr[g]:gptr[g + 1]]``: the
    indices of group g (block permutation).
    """
    d = x.shape[0]
    if kind == KIND_PERMUTATION:
        permute_into(x, key, buf, out)
    elif kind == KIND_RESAMPLE:
        resample_into(x, key, buf, out)
    elif kind == KIND_GAUSSIAN:
        for m in range(d):
            out[m] = x[m] + fparams[0] * normal(key, m)
    elif kind == KIND_MASK:
        thr = fparams[0] * 4294967296.0
        scale = fparams[1]
        fill_draws(key, buf)
        for m in range(d):
            out[m] = scale * x[m] if np.float64(_draw_at(key, buf, m)) < thr else 0.0
    elif kind == KIND_CYCLIC:
        fill_draws(key, buf)
        s, _ = bounded(key, buf, 0, d)
        for m in range(d):
            out[m] = x[(m - s) % d]
    else:  # KIND_BLOCK
        out[:] = x
        fill_draws(key, buf)
        c = 0
        for g in range(gptr.shape[0] - 1):
            lo = gptr[g]
            for i in range(gptr[g + 1] - lo - 1, 0, -1):
                j, c = bounded(key, buf, c, i + 1)
                a = gidx[lo + i]
                b = gidx[lo + j]
                tmp = out[a]
                out[a] = out[b]
                out[b] = tmp
