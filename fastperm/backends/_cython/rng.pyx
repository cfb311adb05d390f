# cython: language_level=3, cdivision=True
"""Python access to the Cython generator (``rng.pxd``), for the tests against the spec.

The same three functions as the Numba twin (``numba_cpu/rng.py``):
``permutation``, ``resample_indices`` and ``bounded_draws``.
"""

from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport free, malloc

import numpy as np


def _indices(uint64_t seed, uint64_t stream, int64_t index, int64_t copy, int64_t d,
             bint resample):
    x = np.arange(d, dtype=np.float64)
    out = np.empty(d, dtype=np.float64)
    cdef double[::1] xv = x
    cdef double[::1] ov = out
    cdef uint64_t* buf = <uint64_t*>malloc(buffer_size(d) * sizeof(uint64_t))
    if buf == NULL:
        raise MemoryError("draw buffer")
    if d > 0:
        augment_into(&xv[0], d, make_key(seed, stream, <uint64_t>index, <uint64_t>copy), buf,
                     resample, &ov[0])
    free(buf)
    return out.astype(np.int64)


def permutation(seed, stream, index, copy, d):
    """The permutation of ``range(d)`` keyed by ``(seed, stream, counter(index, copy))``."""
    return _indices(seed, stream, index, copy, d, False)


def resample_indices(seed, stream, index, copy, d):
    """The resampling indices keyed by ``(seed, stream, counter(index, copy))``."""
    return _indices(seed, stream, index, copy, d, True)


def bounded_draws(uint64_t key, uint64_t r, int64_t count):
    """``count`` bounded integers in ``[0, r)`` from ``key`` and the draws they used.

    Uses a buffer of only 4 draws, so most draws take the path that computes a draw
    from its counter (as a rejected draw past the buffer does in the kernels).
    """
    cdef uint64_t buf[4]
    cdef int64_t c = 0, q
    out = np.empty(count, dtype=np.int64)
    cdef int64_t[::1] ov = out
    fill_draws(key, buf, 4)
    for q in range(count):
        ov[q] = bounded(key, buf, 4, &c, r)
    return out, c
