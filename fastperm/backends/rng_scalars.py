"""The scalar functions of the counter-based generator (:mod:`fastperm.rng`), written once.

Plain Python bodies over wrapping uint64 arithmetic: :func:`compiled` turns them into the
functions of one target — Numba CPU functions in ``numba_cpu/rng.py``, CUDA device functions
in ``numba_cuda/rng.py`` — binding each body's calls to the same target's compiled
functions (:func:`fastperm._jit.specialise`), so that both targets run the same source.

``key`` is always a 64-bit key from :func:`make_key`; ``c`` numbers its 32-bit draws.
"""

from __future__ import annotations

import math

import numpy as np

from .. import rng as spec
from .._jit import specialise

GOLDEN = np.uint64(spec.GOLDEN)
MIX1 = np.uint64(spec.MIX1)
MIX2 = np.uint64(spec.MIX2)
MASK32 = np.uint64(spec.MASK32)
TWO32 = np.uint64(1 << 32)
S11, S27, S30, S31, S32 = (np.uint64(s) for s in (11, 27, 30, 31, 32))
TWO_M53 = 2.0**-53


def mix64(z):
    """SplitMix64's output function."""
    z = (z ^ (z >> S30)) * MIX1
    z = (z ^ (z >> S27)) * MIX2
    return z ^ (z >> S31)


def make_key(seed, stream, index, copy):
    """Key of ``(seed, stream, counter(index, copy))``."""
    count = (np.uint64(index) << S32) | np.uint64(copy)
    h = mix64(np.uint64(seed) + GOLDEN)
    h = mix64(h + np.uint64(stream) + GOLDEN)
    return mix64(h + count + GOLDEN)


def word(key, q):
    """The 64-bit word q of ``key`` (SplitMix64 started from state ``key``)."""
    return mix64(key + np.uint64(q + 1) * GOLDEN)


def draw(key, c):
    """Draw number ``c`` (32 bits, held in a uint64) of ``key``: a half of word c // 2."""
    w = word(key, c // 2)
    if c & 1:
        return w >> S32
    return w & MASK32


def normal(key, m):
    """Entry m of the Gaussian noise of ``key`` (Box–Muller on 53-bit uniforms; the spec)."""
    u1 = np.float64((word(key, 2 * m) >> S11) + np.uint64(1)) * TWO_M53
    u2 = np.float64(word(key, 2 * m + 1) >> S11) * TWO_M53
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def compiled(decorate, suffix):
    """``(mix64, make_key, word, draw, normal)`` compiled by ``decorate(fn, inline)`` for one
    target; ``suffix`` names the copies (each target's cache files are its own)."""
    m = decorate(specialise(mix64, suffix), True)
    k = decorate(specialise(make_key, suffix, mix64=m), False)
    w = decorate(specialise(word, suffix, mix64=m), True)
    d = decorate(specialise(draw, suffix, word=w), True)
    g = decorate(specialise(normal, suffix, word=w), True)
    return m, k, w, d, g
