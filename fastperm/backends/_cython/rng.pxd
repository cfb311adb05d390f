# cython: language_level=3
# The counter-based generator of fastperm.rng in C (inline functions for the kernels).
#
# Same specification as the Numba twin (fastperm/backends/numba_cpu/rng.py): unsigned
# 64-bit arithmetic wraps mod 2**64 in C. The draws of one key are generated in bulk into
# a buffer, then consumed by Lemire's bounded-integer method; a rare rejected draw past
# the buffer is computed from its counter directly.

from libc.stdint cimport uint64_t, int64_t

cdef extern from *:
    """
    #define FASTPERM_GOLDEN 0x9E3779B97F4A7C15ULL
    #define FASTPERM_MIX1 0xBF58476D1CE4E5B9ULL
    #define FASTPERM_MIX2 0x94D049BB133111EBULL
    #define FASTPERM_MASK32 0xFFFFFFFFULL
    """
    uint64_t GOLDEN "FASTPERM_GOLDEN"
    uint64_t MIX1 "FASTPERM_MIX1"
    uint64_t MIX2 "FASTPERM_MIX2"
    uint64_t MASK32 "FASTPERM_MASK32"


cdef inline uint64_t mix64(uint64_t z) noexcept nogil:
    z = (z ^ (z >> 30)) * MIX1
    z = (z ^ (z >> 27)) * MIX2
    return z ^ (z >> 31)


cdef inline uint64_t make_key(uint64_t seed, uint64_t stream, uint64_t index,
                         uint64_t copy) noexcept nogil:
    """Key of ``(seed, stream, counter(index, copy))``."""
    cdef uint64_t h = mix64(seed + GOLDEN)
    h = mix64(h + stream + GOLDEN)
    return mix64(h + ((index << 32) | copy) + GOLDEN)


cdef inline uint64_t draw(uint64_t key, int64_t c) noexcept nogil:
    """Draw number ``c`` (32 bits) of ``key``."""
    cdef uint64_t word = mix64(key + <uint64_t>(c // 2 + 1) * GOLDEN)
    if c & 1:
        return word >> 32
    return word & MASK32


cdef inline int64_t buffer_size(int64_t d) noexcept nogil:
    """Entries of a draw buffer for one copy of ``d`` items (even)."""
    return d + (d & 1) + 2


cdef inline void fill_draws(uint64_t key, uint64_t* buf, int64_t size) noexcept nogil:
    """``buf[c] = draw(key, c)`` for ``c < size`` (size even)."""
    cdef int64_t q
    cdef uint64_t word
    for q in range(size // 2):
        word = mix64(key + <uint64_t>(q + 1) * GOLDEN)
        buf[2 * q] = word & MASK32
        buf[2 * q + 1] = word >> 32


cdef inline uint64_t draw_at(uint64_t key, const uint64_t* buf, int64_t size,
                             int64_t c) noexcept nogil:
    if c < size:
        return buf[c]
    return draw(key, c)


cdef inline int64_t bounded(uint64_t key, const uint64_t* buf, int64_t size, int64_t* c,
                            uint64_t r) noexcept nogil:
    """Unbiased integer in ``[0, r)`` from draws ``c[0], c[0] + 1, ...``; advances ``c[0]``."""
    cdef uint64_t m = draw_at(key, buf, size, c[0]) * r
    cdef uint64_t low = m & MASK32
    cdef uint64_t t
    c[0] += 1
    if low < r:
        t = ((<uint64_t>1 << 32) - r) % r
        while low < t:
            m = draw_at(key, buf, size, c[0]) * r
            c[0] += 1
            low = m & MASK32
    return <int64_t>(m >> 32)


cdef inline void permute_into(const double* x, int64_t d, uint64_t key, uint64_t* buf,
                              double* out) noexcept nogil:
    """``out = x[p]`` for the Fisher–Yates permutation ``p`` of ``key``."""
    cdef int64_t size = buffer_size(d)
    cdef int64_t i, j, c = 0
    cdef double tmp
    for i in range(d):
        out[i] = x[i]
    fill_draws(key, buf, size)
    for i in range(d - 1, 0, -1):
        j = bounded(key, buf, size, &c, <uint64_t>(i + 1))
        tmp = out[i]
        out[i] = out[j]
        out[j] = tmp


cdef inline void resample_into(const double* x, int64_t d, uint64_t key, uint64_t* buf,
                               double* out) noexcept nogil:
    """``out = x[idx]`` for the ``d`` indices drawn with replacement by ``key``."""
    cdef int64_t size = buffer_size(d)
    cdef int64_t m, c = 0
    fill_draws(key, buf, size)
    for m in range(d):
        out[m] = x[bounded(key, buf, size, &c, <uint64_t>d)]


cdef inline void augment_into(const double* x, int64_t d, uint64_t key, uint64_t* buf,
                              bint resample, double* out) noexcept nogil:
    if resample:
        resample_into(x, d, key, buf, out)
    else:
        permute_into(x, d, key, buf, out)


# -- the other augmentations of the specification (kinds of fastperm.augment) ------------------

from libc.math cimport cos, log, sqrt

cdef enum:
    KIND_PERMUTATION = 0
    KIND_RESAMPLE = 1
    KIND_GAUSSIAN = 2
    KIND_MASK = 3
    KIND_CYCLIC = 4
    KIND_BLOCK = 5


cdef inline uint64_t word(uint64_t key, int64_t q) noexcept nogil:
    """The 64-bit word q of ``key``."""
    return mix64(key + <uint64_t>(q + 1) * GOLDEN)


cdef inline double normal(uint64_t key, int64_t m) noexcept nogil:
    """Entry m of the Gaussian noise of ``key`` (Box–Muller on 53-bit uniforms)."""
    cdef double u1 = <double>((word(key, 2 * m) >> 11) + 1) * 1.1102230246251565e-16
    cdef double u2 = <double>(word(key, 2 * m + 1) >> 11) * 1.1102230246251565e-16
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2)


cdef inline void augment_kind_into(const double* x, int64_t d, uint64_t key, uint64_t* buf,
                                   int kind, const double* fparams, const int64_t* gidx,
                                   const int64_t* gptr, int64_t ngroups,
                                   double* out) noexcept nogil:
    """Copy of x for ``key`` and augmentation ``kind`` (``fparams``: σ, or (p, scale); groups
    ``gidx[gptr[g]:gptr[g + 1]]``)."""
    cdef int64_t size = buffer_size(d)
    cdef int64_t m, g, i, j, lo, a, b, c = 0, s
    cdef double thr, tmp
    if kind == KIND_PERMUTATION:
        permute_into(x, d, key, buf, out)
    elif kind == KIND_RESAMPLE:
        resample_into(x, d, key, buf, out)
    elif kind == KIND_GAUSSIAN:
        for m in range(d):
            out[m] = x[m] + fparams[0] * normal(key, m)
    elif kind == KIND_MASK:
        thr = fparams[0] * 4294967296.0
        fill_draws(key, buf, size)
        for m in range(d):
            out[m] = fparams[1] * x[m] if <double>draw_at(key, buf, size, m) < thr else 0.0
    elif kind == KIND_CYCLIC:
        fill_draws(key, buf, size)
        s = bounded(key, buf, size, &c, <uint64_t>d)
        for m in range(d):
            out[m] = x[(m - s + d) % d]
    else:  # KIND_BLOCK
        for m in range(d):
            out[m] = x[m]
        fill_draws(key, buf, size)
        for g in range(ngroups):
            lo = gptr[g]
            for i in range(gptr[g + 1] - lo - 1, 0, -1):
                j = bounded(key, buf, size, &c, <uint64_t>(i + 1))
                a = gidx[lo + i]
                b = gidx[lo + j]
                tmp = out[a]
                out[a] = out[b]
                out[b] = tmp
