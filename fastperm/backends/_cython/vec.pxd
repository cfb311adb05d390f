# cython: language_level=3
# Small loops shared by the Cython kernels (sgd.pyx, closed_forms.pyx).

from libc.math cimport NAN
from libc.stdint cimport int64_t
from libc.string cimport memcpy


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


cdef inline double* _rows(double[:, :, ::1] rec) noexcept:
    """The first row of ``rec`` (R, m, width), or NULL when it keeps nothing (m = 0)."""
    if rec.shape[0] == 0 or rec.shape[1] == 0:
        return NULL
    return &rec[0, 0, 0]


cdef inline double* _run_rows(double* rows, int64_t r, int64_t size) noexcept nogil:
    """Run r's block of ``size`` values in ``rows``, or NULL when nothing is kept."""
    return NULL if rows == NULL else rows + r * size


cdef inline void _keep(double* rows, int64_t q, const double* v, int64_t d) noexcept nogil:
    """``rows[q] = v`` (d values) when the caller keeps them (rows not NULL)."""
    if rows != NULL:
        memcpy(rows + q * d, v, d * sizeof(double))
