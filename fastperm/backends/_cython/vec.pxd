# cython: language_level=3
# Small loops shared by the Cython kernels (sgd.pyx, closed_forms.pyx).

from libc.math cimport NAN
from libc.stdint cimport int64_t


cdef inline double _mse(const double* w, const double* w_star, int64_t d) noexcept nogil:
    """``mean((w − w*)²)``."""
    cdef double s = 0.0, e
    cdef int64_t m
    for m in range(d):
        e = w[m] - w_star[m]
        s += e * e
    return s / d


cdef inline double _dot(const double* a, const double* b, int64_t d) noexcept nogil:
    cdef double s = 0.0
    cdef int64_t m
    for m in range(d):
        s += a[m] * b[m]
    return s


cdef inline void _nan_from(double* loss_row, int64_t q, int64_t nq) noexcept nogil:
    """The losses from record q on are NaN (the run stopped)."""
    cdef int64_t j
    for j in range(q, nq):
        loss_row[j] = NAN
