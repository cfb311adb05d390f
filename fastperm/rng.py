"""The random-number specification shared by every backend.

A random permutation (or resampling) in fastperm is a *pure function* of
``(seed, stream, counter)``: no generator state is carried between draws, so
the NumPy reference, Numba, Cython and CUDA backends draw the same
permutations for the same seed, fixed permutations need no storage, and a
GPU thread can draw its own permutation without coordination.

This module is the specification, written in plain Python integers. The
compiled backends implement it again with wrapping 64-bit arithmetic and are
tested against it.

Specification
-------------
``mix64(z)`` is the SplitMix64 output function (Steele, Lea & Flood, "Fast
splittable pseudorandom number generators", OOPSLA 2014; constants of
Stafford's "Mix13")::

    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9   (mod 2**64)
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB   (mod 2**64)
    return z ^ (z >> 31)

With ``G = 0x9E3779B97F4A7C15`` (the golden-ratio increment), all sums mod 2**64:

* key:    ``key = mix64(mix64(mix64(seed + G) + stream + G) + counter + G)``;
  ``mix64`` is a bijection, so distinct counters of one stream give
  distinct keys.
* words:  ``word(key, q) = mix64(key + (q + 1) * G)`` for ``q = 0, 1, ...``
  (SplitMix64 started from state ``key``);
* draws:  32-bit draw ``c`` is the low half of ``word(key, c // 2)`` for even
  ``c`` and the high half for odd ``c``; draws are consumed in order.
* bounded integer in ``[0, r)`` (Lemire, "Fast random integer generation in
  an interval", ACM TOMACS 2019), unbiased by rejection::

      m = u * r;  l = m mod 2**32
      if l < r:
          t = (2**32 - r) mod r
          while l < t:  u = next draw;  m = u * r;  l = m mod 2**32
      return m >> 32

* permutation of ``d`` items: Fisher–Yates from the identity,
  ``for i = d-1 down to 1: j = bounded(i + 1); swap(p[i], p[j])``.
  The augmented copy of ``x`` is ``x[p]``.
* resampling with replacement of ``d`` items: ``idx[m] = bounded(d)`` for
  ``m = 0 .. d-1``; the augmented copy is ``x[idx]``.

Other augmentations (:mod:`fastperm.augment.distributions`), same keys:

* Gaussian noise: entry m of ε is ``sqrt(−2 ln u1) cos(2π u2)`` (Box–Muller) with
  ``u1 = ((word(key, 2m) >> 11) + 1) · 2**-53`` in (0, 1] and
  ``u2 = (word(key, 2m + 1) >> 11) · 2**-53``; the copy is ``x + σε``.
* mask: entry m is kept iff ``draw m < p · 2**32``; the copy is ``s · x · keep``.
* cyclic shift: ``s = bounded(d)`` (the first draw); the copy is ``x[(m − s) mod d]``.
* block permutation: starting from the identity, Fisher–Yates within each group in
  the order given (``for i = |G|-1 down to 1: j = bounded(i + 1); swap(p[G[i]], p[G[j]])``),
  draws consumed in order across groups; the copy is ``x[p]``.

Streams and counters
--------------------
``STREAM_FIXED`` keys copy ``j`` (1 <= j < k) of example ``i`` with
``counter = (i << 32) | j``: the same permutation every epoch. ``STREAM_FRESH``
keys copy ``j`` at step ``t`` with ``counter = (t << 32) | j``. Copy 0 is always
the original example. Because the counter does not involve ``k``, the
augmented set for ``k = 8`` is contained in the one for ``k = 16`` (same seed).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any, SupportsInt

import numpy as np

if TYPE_CHECKING:  # the specification imports nothing from fastperm at run time
    from ._typing import BoolArray, FloatArray, IntArray

MASK64 = (1 << 64) - 1
MASK32 = (1 << 32) - 1
GOLDEN = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB

STREAM_FIXED = 0
STREAM_FRESH = 1
#: the stream of a Gaussian teacher's samples (:mod:`fastperm.equilibrium`): sample j of
#: step t is ``gaussian_noise(seed, STREAM_DATA, counter(t, j), d0 + d2)``
STREAM_DATA = 2
#: the streams of the mean-field schemes (:mod:`fastperm.meanfield`; samples on STREAM_DATA):
#: copy c of sample j at step t of k-fold DA takes the swap iff draw c of
#: ``key(seed, STREAM_GROUP, counter(t, j))`` is ≥ 2**31; particle i's Langevin noise at step
#: t is ``gaussian_noise(seed, STREAM_NOISE, counter(t, i), 4)``; its start is
#: ``gaussian_noise(seed, STREAM_INIT, counter(i, 0), 4)``
STREAM_GROUP = 3
STREAM_NOISE = 4
STREAM_INIT = 5

#: the kinds of augmented copy the compiled kernels draw (the specification above, in order)
KIND_PERMUTATION, KIND_RESAMPLE, KIND_GAUSSIAN, KIND_MASK, KIND_CYCLIC, KIND_BLOCK = range(6)

#: largest ``d`` the 32-bit bounded draws support
MAX_D = MASK32
#: largest example index / step / copy index that fits in a counter half
MAX_COUNTER_HALF = MASK32


def mix64(z: int) -> int:
    """SplitMix64 output function on a 64-bit unsigned integer."""
    z &= MASK64
    z = ((z ^ (z >> 30)) * MIX1) & MASK64
    z = ((z ^ (z >> 27)) * MIX2) & MASK64
    return z ^ (z >> 31)


def counter(index: int, copy: int) -> int:
    """Counter of copy ``copy`` of example (or step) ``index``: ``(index << 32) | copy``."""
    if not (0 <= index <= MAX_COUNTER_HALF and 0 <= copy <= MAX_COUNTER_HALF):
        raise ValueError(f"counter halves must lie in [0, 2**32): got {index}, {copy}")
    return (index << 32) | copy


def key(seed: int, stream: int, count: int) -> int:
    """The 64-bit key of the draw sequence for ``(seed, stream, counter)``."""
    h = mix64(seed + GOLDEN)
    h = mix64(h + stream + GOLDEN)
    return mix64(h + count + GOLDEN)


class Draws:
    """The sequence of 32-bit draws of one key, consumed in order."""

    def __init__(self, k: int) -> None:
        self.key = k & MASK64
        self.c = 0

    def next32(self) -> int:
        word = mix64(self.key + (self.c // 2 + 1) * GOLDEN)
        u = (word >> 32) if (self.c & 1) else (word & MASK32)
        self.c += 1
        return u

    def bounded(self, r: int) -> int:
        """An unbiased integer in ``[0, r)``, ``1 <= r <= 2**32`` (Lemire's method)."""
        m = self.next32() * r
        low = m & MASK32
        if low < r:
            t = ((1 << 32) - r) % r
            while low < t:
                m = self.next32() * r
                low = m & MASK32
        return m >> 32


def permutation(seed: int, stream: int, count: int, d: int) -> IntArray:
    """The permutation of ``range(d)`` keyed by ``(seed, stream, counter)``."""
    draws = Draws(key(seed, stream, count))
    p = list(range(d))
    for i in range(d - 1, 0, -1):
        j = draws.bounded(i + 1)
        p[i], p[j] = p[j], p[i]
    return np.array(p, dtype=np.int64)


def resample_indices(seed: int, stream: int, count: int, d: int) -> IntArray:
    """``d`` indices drawn uniformly with replacement, keyed by ``(seed, stream, counter)``."""
    draws = Draws(key(seed, stream, count))
    return np.array([draws.bounded(d) for _ in range(d)], dtype=np.int64)


def augmented_indices(augmentation: str, seed: int, stream: int, count: int, d: int) -> IntArray:
    """Indices ``p`` such that ``x[p]`` is the copy keyed by ``(seed, stream, counter)``."""
    if augmentation == "permutation":
        return permutation(seed, stream, count, d)
    if augmentation == "resample":
        return resample_indices(seed, stream, count, d)
    raise ValueError(f"augmentation must be 'permutation' or 'resample', got {augmentation!r}")


def word(k: int, q: int) -> int:
    """The 64-bit word q of key k: ``mix64(key + (q + 1) G)``."""
    return mix64((k + (q + 1) * GOLDEN) & MASK64)


def gaussian_noise(seed: int, stream: int, count: int, d: int) -> FloatArray:
    """The d standard normal draws of ``(seed, stream, counter)`` (Box–Muller, 53-bit uniforms)."""
    k = key(seed, stream, count)
    out = np.empty(d)
    for m in range(d):
        u1 = ((word(k, 2 * m) >> 11) + 1) * 2.0**-53
        u2 = (word(k, 2 * m + 1) >> 11) * 2.0**-53
        out[m] = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
    return out


def gaussian_noise_rows(seed: int, stream: int, counts: IntArray, d: int) -> FloatArray:
    """``gaussian_noise(seed, stream, c, d)`` for every counter c of ``counts``, (n, d): the
    same numbers, computed with NumPy's wrapping uint64 arithmetic over all rows at once."""
    c = np.asarray(counts, dtype=np.uint64)
    with np.errstate(over="ignore"):
        g = np.uint64(GOLDEN)

        def mix(z: Any) -> Any:
            z = (z ^ (z >> np.uint64(30))) * np.uint64(MIX1)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(MIX2)
            return z ^ (z >> np.uint64(31))

        h = mix(np.uint64(seed) + g)
        h = mix(h + np.uint64(stream) + g)
        k = mix(h + c + g)[:, None]
        q = np.arange(2 * d, dtype=np.uint64)[None, :]
        w = mix(k + (q + np.uint64(1)) * g) >> np.uint64(11)
    u1 = (w[:, 0::2] + np.uint64(1)).astype(np.float64) * 2.0**-53
    u2 = w[:, 1::2].astype(np.float64) * 2.0**-53
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def mask_keep(seed: int, stream: int, count: int, d: int, p: float) -> BoolArray:
    """Which of the d entries a mask with keep probability p keeps (bool array)."""
    draws = Draws(key(seed, stream, count))
    return np.array([draws.next32() < p * 2.0**32 for _ in range(d)])


def cyclic_shift(seed: int, stream: int, count: int, d: int) -> int:
    """The shift s in [0, d) of ``(seed, stream, counter)``."""
    return Draws(key(seed, stream, count)).bounded(d)


def block_permutation(
    seed: int, stream: int, count: int, groups: Sequence[Collection[SupportsInt]]
) -> IntArray:
    """Indices p (``x[p]`` is the copy) permuting uniformly within each group."""
    draws = Draws(key(seed, stream, count))
    d = sum(len(g) for g in groups)
    p = list(range(d))
    for group in groups:
        g = [int(v) for v in group]
        for i in range(len(g) - 1, 0, -1):
            j = draws.bounded(i + 1)
            p[g[i]], p[g[j]] = p[g[j]], p[g[i]]
    return np.array(p, dtype=np.int64)
