# cython: language_level=3, cdivision=True
# cython: initializedcheck=False
"""Fused SGD runs on the linear problem, in Cython: the twin of ``numba_cpu/sgd.py``.

Same layers and loops as the Numba kernels (contract:
:mod:`fastperm.backends.reference`): the ``def`` drivers take typed
memoryviews (validated by :mod:`fastperm.train`), release the GIL and run a
``prange`` over chunks of runs (OpenMP when the extension was built with it,
else serially), each chunk with its own scratch; the ``nogil`` workers
``_plain_run``, ``_kfold_run`` and ``_expected_run`` run one whole training run.
Runs are dealt to chunks round-robin and every run is computed serially, so the
results do not depend on the thread count.

A non-finite residual, parameter or loss stops the run and is returned as its
status (the first such step); the Python side warns after the loop.
"""

from libc.math cimport isfinite
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

from cython.parallel cimport prange

import numpy as np

from .rng cimport KIND_RESAMPLE, augment_kind_into, buffer_size, make_key
from .vec cimport _dot, _keep, _mse, _nan_from, _rows, _run_rows

# the streams of fastperm.rng (the spec module is the single source)
from ... import rng as _spec
from .parallel import chunks

cdef uint64_t STREAM_FIXED = _spec.STREAM_FIXED
cdef uint64_t STREAM_FRESH = _spec.STREAM_FRESH


cdef inline double _plain_step(double* w, const double* x, const double* xn, double c,
                               const double* w_star, int64_t d, double* loss) noexcept nogil:
    """``w ← w − c x``; returns the next example's ``wᵀxn`` and sets ``loss`` to
    ``Σ (w − w*)²``, in one pass. The only loop that forms ``wᵀxn``, so that a call starting
    mid-run (a zero step, ``c = 0``) gets the bits of one uninterrupted call."""
    cdef int64_t m
    cdef double wm, e, dot = 0.0, s = 0.0
    for m in range(d):
        wm = w[m] - c * x[m]
        w[m] = wm
        dot += wm * xn[m]
        e = wm - w_star[m]
        s += e * e
    loss[0] = s
    return dot


cdef int64_t _plain_run(const double* X, const double* y, const double* w_star, double* w,
                        int64_t n, int64_t d, double lr, int64_t t0, int64_t steps,
                        const int64_t* record_steps, double* loss_row,
                        int64_t nq, double* kept) noexcept nogil:
    """Plain SGD (k = 1), one fused pass over w per step; the call's step t is the run's
    step t0 + t. Returns the status."""
    cdef int64_t t, i, q = 1
    cdef double res, dot, s
    i = t0 % n
    # wᵀx_i by the step's own loop (a zero step: w stays bitwise)
    dot = _plain_step(w, X + (i - 1 if i > 0 else n - 1) * d, X + i * d, lr * 0.0, w_star,
                      d, &s)
    loss_row[0] = s / d
    _keep(kept, 0, w, d)
    i = i - 1 if i > 0 else n - 1
    for t in range(steps):
        i += 1  # i = (t0 + t) mod n, without a 64-bit division per step
        if i == n:
            i = 0
        res = dot - y[i]
        if not isfinite(res):
            _nan_from(loss_row, q, nq)
            return t
        dot = _plain_step(w, X + i * d, X + (i + 1 if i + 1 < n else 0) * d, lr * res,
                          w_star, d, &s)
        if record_steps[q] == t + 1:
            loss_row[q] = s / d
            if not isfinite(loss_row[q]):
                _nan_from(loss_row, q, nq)
                return t + 1
            _keep(kept, q, w, d)
            q += 1
    return -1


cdef struct Aug:
    # how copies are drawn: a kind of fastperm.augment.distributions and its parameters
    int kind
    const double* fparams
    const int64_t* gidx
    const int64_t* gptr
    int64_t ngroups


cdef void _fill_copies(const double* x, int64_t d, int64_t k, uint64_t seed, uint64_t stream,
                       int64_t index, Aug aug, uint64_t* buf, double* block) noexcept nogil:
    """``block[0] = x``, ``block[j]`` = copy j keyed by ``(seed, stream, index, j)``."""
    cdef int64_t j
    memcpy(block, x, d * sizeof(double))
    for j in range(1, k):
        augment_kind_into(x, d, make_key(seed, stream, <uint64_t>index, <uint64_t>j), buf, aug.kind,
                          aug.fparams, aug.gidx, aug.gptr, aug.ngroups, block + j * d)


cdef int64_t _kfold_run(const double* X, const double* y, const double* w_star, double* w,
                        int64_t n, int64_t d, int64_t k, double lr, uint64_t seed,
                        int64_t t0, int64_t steps, bint fresh, Aug aug,
                        const int64_t* record_steps,
                        double* loss_row, int64_t nq, double* kept, bint keep, double* cache,
                        uint64_t* buf, double* res) noexcept nogil:
    """k-fold augmented SGD. ``cache`` holds n·k·d when fixed copies are kept, else k·d.

    The call's step t is the run's step s = t0 + t: example i = s mod n, copies A_j
    (A_0 = x_i; fresh copies keyed by s): ``w ← w − (lr/k) Σ_j (A_j·w − y_i) A_j``.
    """
    cdef uint64_t stream = STREAM_FRESH if fresh else STREAM_FIXED
    cdef double c = lr / k, cj
    cdef int64_t t, i, j, m, q = 1
    cdef double* A
    cdef double* Aj
    cdef bint ok
    loss_row[0] = _mse(w, w_star, d)
    _keep(kept, 0, w, d)
    for t in range(steps):
        i = (t0 + t) % n
        if keep:
            A = cache + i * k * d
            if t < n:  # the call's first n steps visit every example once
                _fill_copies(X + i * d, d, k, seed, stream, i, aug, buf, A)
        else:
            A = cache
            _fill_copies(X + i * d, d, k, seed, stream, t0 + t if fresh else i, aug, buf, A)
        ok = True
        for j in range(k):
            res[j] = _dot(A + j * d, w, d) - y[i]
            ok = ok and isfinite(res[j])
        if not ok:
            _nan_from(loss_row, q, nq)
            return t
        for j in range(k):
            cj = c * res[j]
            Aj = A + j * d
            for m in range(d):
                w[m] -= cj * Aj[m]
        if record_steps[q] == t + 1:
            loss_row[q] = _mse(w, w_star, d)
            if not isfinite(loss_row[q]):
                _nan_from(loss_row, q, nq)
                return t + 1
            _keep(kept, q, w, d)
            q += 1
    return -1


def sgd_runs(const double[:, ::1] X, const double[::1] y, const double[::1] w_star,
             const double[:, ::1] W0, const double[::1] lr, const uint64_t[::1] seeds,
             int64_t k, int64_t steps, int64_t start_step, bint fresh, int kind,
             const double[::1] fparams,
             const int64_t[::1] gidx, const int64_t[::1] gptr,
             const int64_t[::1] record_steps, bint cache, double[:, ::1] loss_out,
             double[:, :, ::1] w_rec, double[:, ::1] w_out, int64_t[::1] status_out):
    """Driver: runs ``r = c, c + nchunks, ...`` go to chunk c, which owns its scratch."""
    cdef Aug aug = Aug(kind, &fparams[0], &gidx[0], &gptr[0], gptr.shape[0] - 1)
    cdef int64_t n = X.shape[0], d = X.shape[1], R = lr.shape[0], nq = loss_out.shape[1]
    cdef int64_t nrows = W0.shape[0]
    cdef bint keep = cache and not fresh and k > 1
    cdef int nchunks = chunks(R)
    cdef int64_t block_size = (n if keep else 1) * k * d if k > 1 else 1
    cdef int64_t ch, r, alloc_failed = 0
    cdef double* kept = _rows(w_rec)
    cdef double* block
    cdef uint64_t* buf
    cdef double* res
    if R == 0:
        return
    with nogil:
        for ch in prange(nchunks, schedule="static", chunksize=1, num_threads=nchunks):
            block = <double*>malloc(block_size * sizeof(double))
            buf = <uint64_t*>malloc(buffer_size(d) * sizeof(uint64_t))
            res = <double*>malloc(k * sizeof(double))
            if block == NULL or buf == NULL or res == NULL:
                alloc_failed += 1
            else:
                r = ch
                while r < R:
                    memcpy(&w_out[r, 0], &W0[r % nrows, 0], d * sizeof(double))
                    if k == 1:
                        status_out[r] = _plain_run(&X[0, 0], &y[0], &w_star[0], &w_out[r, 0],
                                                   n, d, lr[r], start_step, steps,
                                                   &record_steps[0],
                                                   &loss_out[r, 0], nq,
                                                   _run_rows(kept, r, nq * d))
                    else:
                        status_out[r] = _kfold_run(&X[0, 0], &y[0], &w_star[0], &w_out[r, 0],
                                                   n, d, k, lr[r], seeds[r], start_step,
                                                   steps, fresh,
                                                   aug, &record_steps[0], &loss_out[r, 0],
                                                   nq, _run_rows(kept, r, nq * d), keep,
                                                   block, buf, res)
                    r = r + nchunks
            free(block)
            free(buf)
            free(res)
    if alloc_failed:
        raise MemoryError(f"could not allocate the scratch of {alloc_failed} chunk(s) of runs "
                          f"({block_size * 8} bytes each)")


cdef void _coefficients(const double* X, const double* y, int64_t n, int64_t d,
                        int kind, double* a, double* A, double* e) noexcept nogil:
    """Per-example ``a_i``, ``A_i = a_i + c_i d`` and ``e_i`` of :func:`fastperm.augment.coefficients`."""
    cdef int64_t i, m
    cdef double s1, s2, c, v
    for i in range(n):
        s1 = 0.0
        s2 = 0.0
        for m in range(d):
            v = X[i * d + m]
            s1 += v
            s2 += v * v
        if kind == KIND_RESAMPLE:
            c = s1 * s1 / (<double>d * d)
        elif d > 1:
            c = (s1 * s1 - s2) / (<double>d * (d - 1))
        else:
            c = 0.0
        a[i] = s2 / d - c
        A[i] = a[i] + c * d
        e[i] = y[i] * s1 / d


cdef inline void _keep_affine(double* kept, int64_t q, const double* w0, int64_t d,
                             double alpha, double m0, double mean) noexcept nogil:
    """``kept[q] = α (w0 − m0) + mean``: w of a k = ∞ run, when parameters are kept."""
    cdef int64_t m
    if kept != NULL:
        for m in range(d):
            kept[q * d + m] = alpha * (w0[m] - m0) + mean


cdef int64_t _expected_run(const double* a, const double* A, const double* e, int64_t n,
                           const double* w_star, double* w, int64_t d, double lr,
                           int64_t steps, const int64_t* record_steps, double* loss_row,
                           int64_t nq, double* kept) noexcept nogil:
    """k = ∞ in O(T + d): ``w = α w0c + (δ + m*) 1`` (derivation: ``numba_cpu/sgd.py``)."""
    cdef double m0 = 0.0, ms = 0.0, c00 = 0.0, c0s = 0.0, css = 0.0, u, v
    cdef double alpha, delta, mean
    cdef int64_t m, t, i, q = 1, status = -1
    for m in range(d):
        m0 += w[m]
        ms += w_star[m]
    m0 /= d
    ms /= d
    for m in range(d):
        u = w[m] - m0
        v = w_star[m] - ms
        c00 += u * u
        c0s += u * v
        css += v * v
    c00 /= d
    c0s /= d
    css /= d
    # with a constant w0 the centred part stays zero: α plays no role (and must not
    # overflow into a false divergence)
    alpha = 1.0 if c00 > 0.0 else 0.0
    delta = m0 - ms
    loss_row[0] = delta * delta + c00 - 2.0 * c0s + css
    _keep(kept, 0, w, d)  # the start itself
    i = n - 1
    for t in range(steps):
        i += 1  # i = t mod n, without a 64-bit division per step
        if i == n:
            i = 0
        alpha -= lr * a[i] * alpha
        delta -= lr * (A[i] * (delta + ms) - e[i])
        if not (isfinite(alpha) and isfinite(delta)):
            _nan_from(loss_row, q, nq)
            status = t + 1
            break
        if record_steps[q] == t + 1:
            loss_row[q] = delta * delta + alpha * alpha * c00 - 2.0 * alpha * c0s + css
            if not isfinite(loss_row[q]):
                _nan_from(loss_row, q, nq)
                status = t + 1
                break
            _keep_affine(kept, q, w, d, alpha, m0, delta + ms)
            q += 1
    mean = delta + ms  # w: the start until here
    for m in range(d):
        w[m] = alpha * (w[m] - m0) + mean
    return status


def expected_runs(const double[:, ::1] X, const double[::1] y, const double[::1] w_star,
                  const double[:, ::1] W0, const double[::1] lr, int64_t steps, int kind,
                  const int64_t[::1] record_steps, double[:, ::1] loss_out,
                  double[:, :, ::1] w_rec, double[:, ::1] w_out, int64_t[::1] status_out):
    """Driver: the O(n·d) coefficients once, then one O(T + d) run per ``prange`` iteration."""
    cdef int64_t n = X.shape[0], d = X.shape[1], R = lr.shape[0], nq = loss_out.shape[1]
    cdef int64_t nrows = W0.shape[0], r
    cdef double* kept = _rows(w_rec)
    cdef double[::1] a = np.empty(n), A = np.empty(n), e = np.empty(n)
    # no more threads than runs: waking an idle OpenMP thread for a single O(T + d) run
    # cost more than the run (7.4 vs 3.1 ns/step at T = 20000, measured)
    cdef int nthreads = chunks(R)
    if R == 0:
        return
    with nogil:
        _coefficients(&X[0, 0], &y[0], n, d, kind, &a[0], &A[0], &e[0])
        for r in prange(R, schedule="static", num_threads=nthreads):
            memcpy(&w_out[r, 0], &W0[r % nrows, 0], d * sizeof(double))
            status_out[r] = _expected_run(&a[0], &A[0], &e[0], n, &w_star[0], &w_out[r, 0], d,
                                          lr[r], steps, &record_steps[0], &loss_out[r, 0], nq,
                                          _run_rows(kept, r, nq * d))


def augmented_gradient(const double[::1] w, const double[:, ::1] X, const double[::1] y,
                       int64_t k, uint64_t seed, int kind, const double[::1] fparams,
                       const int64_t[::1] gidx, const int64_t[::1] gptr, double[:, ::1] out):
    """``out[i]`` = mean gradient over the k fixed copies of row i (parallel over rows)."""
    cdef Aug aug = Aug(kind, &fparams[0], &gidx[0], &gptr[0], gptr.shape[0] - 1)
    cdef int64_t n = X.shape[0], d = X.shape[1], i, j, m, failed = 0
    cdef double* A
    cdef uint64_t* buf
    cdef double cj
    cdef int nthreads = chunks(n)
    with nogil:
        for i in prange(n, schedule="static", num_threads=nthreads):
            A = <double*>malloc(k * d * sizeof(double))
            buf = <uint64_t*>malloc(buffer_size(d) * sizeof(uint64_t))
            if A == NULL or buf == NULL:
                failed += 1
            else:
                _fill_copies(&X[i, 0], d, k, seed, STREAM_FIXED, i, aug, buf, A)
                for m in range(d):
                    out[i, m] = 0.0
                for j in range(k):
                    cj = (_dot(A + j * d, &w[0], d) - y[i]) / k
                    for m in range(d):
                        out[i, m] += cj * A[j * d + m]
            free(A)
            free(buf)
    if failed:
        raise MemoryError(f"could not allocate {k}×{d} copies for augmented_gradient")


def compile(families=None):
    """Nothing to do: the kernels were compiled ahead of time (same API as the Numba backend)."""


def fixed_copies(const double[:, ::1] X, uint64_t seed, int kind, const double[::1] fparams,
                 const int64_t[::1] gidx, const int64_t[::1] gptr, double[:, :, ::1] out):
    """``out[i]`` = example i and its k − 1 fixed copies, as ``sgd_runs`` draws them."""
    cdef Aug aug = Aug(kind, &fparams[0], &gidx[0], &gptr[0], gptr.shape[0] - 1)
    cdef int64_t n = X.shape[0], d = X.shape[1], k = out.shape[1], i
    cdef uint64_t* buf = <uint64_t*>malloc(buffer_size(d) * sizeof(uint64_t))
    if buf == NULL:
        raise MemoryError(f"could not allocate {buffer_size(d) * 8} bytes of draw buffer")
    with nogil:
        for i in range(n):
            _fill_copies(&X[i, 0], d, k, seed, STREAM_FIXED, i, aug, buf, &out[i, 0, 0])
    free(buf)
