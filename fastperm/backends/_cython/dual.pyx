# cython: language_level=3, cdivision=True
# cython: initializedcheck=False
"""Plain and fixed k-fold SGD in the dual (Gram) form, in Cython: the twin of
``numba_cpu/dual.py`` (contract: :mod:`fastperm.backends.contract`, ``dual_runs``).

The ``def`` driver deals runs to chunks round-robin (OpenMP when built with it), each chunk
with its own scratch; the ``nogil`` worker ``_dual_run`` runs one whole run: per step the k
residuals of example i's copies, k rows of the Gram matrix applied to the N residuals and
the loss in O(k²); w is formed only at the call's ends, at records that keep it and where
the recurrences are resynchronised (every ``resync`` steps, when the loss has fallen by
``drop``, at every step while it exceeds ``big``).
"""

from libc.math cimport isfinite
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

from cython.parallel cimport prange

from .parallel import chunks
from .vec cimport _dot, _nan_from, _rows, _run_rows


cdef void _form(const double* C, const double* beta, const double* w, double* out,
                int64_t N, int64_t d) noexcept nogil:
    """``out = w + Σ_c β_c C[c]`` (out may be w)."""
    cdef int64_t c, m
    cdef double b
    if out != w:
        memcpy(out, w, d * sizeof(double))
    for c in range(N):
        b = beta[c]
        if b != 0.0:
            for m in range(d):
                out[m] += b * C[c * d + m]


cdef double _sync(const double* C, const double* y, int64_t k, double* w, double* beta,
                  const double* w_star, double* res, int64_t N, int64_t d) noexcept nogil:
    """Fold β into w (β ← 0), the residuals of every copy from w; returns ``Σ (w − w*)²``."""
    cdef int64_t c, m
    cdef double s = 0.0, e
    _form(C, beta, w, w, N, d)
    memset(beta, 0, N * sizeof(double))
    for c in range(N):
        res[c] = _dot(C + c * d, w, d) - y[c // k]
    for m in range(d):
        e = w[m] - w_star[m]
        s += e * e
    return s


cdef int64_t _dual_run(const double* y, const double* w_star, const double* C,
                       const double* G, double* w, double lr, int64_t n, int64_t d, int64_t k,
                       int64_t t0, int64_t steps, int64_t resync, double drop, double big,
                       const int64_t* record_steps, double* loss_row, int64_t nq,
                       double* kept, double* res, double* v, double* beta,
                       double* gam) noexcept nogil:
    """One run from w (overwritten with its final parameters); returns the status."""
    cdef int64_t N = n * k, c, j, l, t, c0, q = 1, status = -1
    cdef int64_t i = t0 % n, sync_at = resync - t0 % resync
    cdef double E, floor, g, a, cstep = lr / k
    cdef const double* Gj
    cdef bint ok
    for c in range(N):
        v[c] = y[c // k] - _dot(C + c * d, w_star, d)
    memset(beta, 0, N * sizeof(double))
    E = _sync(C, y, k, w, beta, w_star, res, N, d)
    floor = E * drop
    loss_row[0] = E / d
    if kept != NULL:
        memcpy(kept, w, d * sizeof(double))
    for t in range(steps):
        if t == sync_at or E < floor or E > big:
            E = _sync(C, y, k, w, beta, w_star, res, N, d)
            floor = E * drop
            if t == sync_at:
                sync_at += resync
        c0 = i * k
        i = i + 1 if i + 1 < n else 0
        ok = True
        for j in range(k):
            ok = ok and isfinite(res[c0 + j])
        if not ok:
            _nan_from(loss_row, q, nq)
            status = t
            break
        for j in range(k):
            gam[j] = cstep * res[c0 + j]
        for j in range(k):
            Gj = G + (c0 + j) * N
            a = 0.0
            for l in range(k):
                a += gam[l] * Gj[c0 + l]
            E += gam[j] * (a - 2.0 * (res[c0 + j] + v[c0 + j]))
        for j in range(k):
            g = gam[j]
            Gj = G + (c0 + j) * N
            for c in range(N):
                res[c] -= g * Gj[c]
            beta[c0 + j] -= g
        if record_steps[q] == t + 1:
            loss_row[q] = E / d
            if not isfinite(loss_row[q]):
                _nan_from(loss_row, q, nq)
                status = t + 1
                break
            if kept != NULL:
                _form(C, beta, w, kept + q * d, N, d)
            q += 1
    _form(C, beta, w, w, N, d)
    return status


def dual_runs(const double[::1] y, const double[::1] w_star, const double[:, ::1] W0,
              const double[::1] lr, const double[:, :, ::1] copies,
              const double[:, :, ::1] gram, const int64_t[::1] which, int64_t k,
              int64_t steps, int64_t start_step, int64_t resync, double drop, double big,
              const int64_t[::1] record_steps, double[:, ::1] loss_out,
              double[:, :, ::1] w_rec, double[:, ::1] w_out, int64_t[::1] status_out):
    """Driver: runs ``r = c, c + nchunks, ...`` go to chunk c, which owns its scratch."""
    cdef int64_t n = y.shape[0], d = w_star.shape[0], N = copies.shape[1]
    cdef int64_t R = lr.shape[0], nq = loss_out.shape[1], nrows = W0.shape[0]
    cdef int nchunks = chunks(R)
    cdef int64_t ch, r, u, alloc_failed = 0
    cdef double* kept = _rows(w_rec)
    cdef double* scratch
    if R == 0:
        return
    with nogil:
        for ch in prange(nchunks, schedule="static", chunksize=1, num_threads=nchunks):
            scratch = <double*>malloc((3 * N + k) * sizeof(double))  # res, v, β, γ
            if scratch == NULL:
                alloc_failed += 1
            else:
                r = ch
                while r < R:
                    memcpy(&w_out[r, 0], &W0[r % nrows, 0], d * sizeof(double))
                    u = which[r]
                    status_out[r] = _dual_run(
                        &y[0], &w_star[0], &copies[u, 0, 0], &gram[u, 0, 0], &w_out[r, 0],
                        lr[r], n, d, k, start_step, steps, resync, drop, big, &record_steps[0],
                        &loss_out[r, 0], nq, _run_rows(kept, r, nq * d),
                        scratch, scratch + N, scratch + 2 * N, scratch + 3 * N)
                    r = r + nchunks
            free(scratch)
    if alloc_failed:
        raise MemoryError(f"could not allocate the scratch of {alloc_failed} chunk(s) of runs "
                          f"({(3 * N + k) * 8} bytes each)")
