# cython: language_level=3, cdivision=True
# cython: initializedcheck=False
"""Online SGD of the shallow network ``f(x) = (1/N) Σ_i tanh(θ_i x)`` under the coordinate
swap, in Cython: the twin of ``numba_cpu/meanfield.py`` (contract:
:mod:`fastperm.backends.contract`, ``meanfield_runs``; the maths: :mod:`fastperm.meanfield`;
the readable version: :mod:`fastperm.backends.reference.meanfield`).

The ``def`` driver deals runs to chunks round-robin (OpenMP when built with it), each chunk
with its own scratch (G, S0, S1: 8N doubles); the ``nogil`` worker ``_meanfield_run`` runs
one whole run. A step is fused per sample, in the Numba twin's order: draw the sample, run
the forward pass over the particles for each view with a non-zero weight (keeping the N × 2
activations of each), form the residuals, and accumulate every particle's gradient in a
second pass; the particles move once per step.
"""

from libc.math cimport NAN, isfinite, sqrt, tanh
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

from cython.parallel cimport prange

from .parallel import chunks
from .rng cimport draw, make_key, normal
from .vec cimport _rows, _run_rows

#: the streams of :mod:`fastperm.rng`: samples, DA's group draws, Langevin noise
cdef uint64_t STREAM_DATA = 2
cdef uint64_t STREAM_GROUP = 3
cdef uint64_t STREAM_NOISE = 4
#: the schemes of :mod:`fastperm.codes`
cdef int64_t VANILLA = 0
cdef int64_t FA = 2
cdef int64_t EA = 3
cdef uint64_t HALF32 = <uint64_t>1 << 31


cdef inline void _forward(const double* theta, int64_t N, double x0, double x1, double* S,
                          double* f0_out, double* f1_out) noexcept nogil:
    """``S[i] = tanh(θ_i x)``; ``f(x) = (1/N) Σ_i S[i]`` into ``f0_out``, ``f1_out``."""
    cdef int64_t i
    cdef double a, b, f0 = 0.0, f1 = 0.0
    for i in range(N):
        a = tanh(theta[4 * i] * x0 + theta[4 * i + 1] * x1)
        b = tanh(theta[4 * i + 2] * x0 + theta[4 * i + 3] * x1)
        S[2 * i] = a
        S[2 * i + 1] = b
        f0 += a
        f1 += b
    f0_out[0] = f0 / N
    f1_out[0] = f1 / N


cdef inline void _backward(double* G, const double* S, int64_t N, double w, double e0,
                           double e1, double x0, double x1) noexcept nogil:
    """``G_i[o, c] += w e[o] (1 − S[i, o]²) x[c]``."""
    cdef int64_t i
    cdef double a, b
    for i in range(N):
        a = w * e0 * (1.0 - S[2 * i] * S[2 * i])
        b = w * e1 * (1.0 - S[2 * i + 1] * S[2 * i + 1])
        G[4 * i] += a * x0
        G[4 * i + 1] += a * x1
        G[4 * i + 2] += b * x0
        G[4 * i + 3] += b * x1


cdef void _teacher(const double* teacher, int64_t M, double x0, double x1, double* f0_out,
                   double* f1_out) noexcept nogil:
    """``f*(x)`` into ``f0_out``, ``f1_out``."""
    cdef int64_t m
    cdef double f0 = 0.0, f1 = 0.0
    for m in range(M):
        f0 += tanh(teacher[4 * m] * x0 + teacher[4 * m + 1] * x1)
        f1 += tanh(teacher[4 * m + 2] * x0 + teacher[4 * m + 3] * x1)
    f0_out[0] = f0 / M
    f1_out[0] = f1 / M


cdef void _weights(int64_t scheme, int64_t k, uint64_t seed, int64_t T, int64_t j,
                   double* w0, double* w1) noexcept nogil:
    """The views' weights ``(w_0, w_1)`` of sample j of step T."""
    cdef uint64_t key
    cdef int64_t n = 0, c
    if scheme == VANILLA or scheme == EA:
        w0[0] = 1.0
        w1[0] = 0.0
        return
    if scheme == FA or k == 0:
        w0[0] = 0.5
        w1[0] = 0.5
        return
    key = make_key(seed, STREAM_GROUP, <uint64_t>T, <uint64_t>j)
    for c in range(k):
        if draw(key, c) >= HALF32:
            n += 1
    w0[0] = <double>(k - n) / <double>k
    w1[0] = <double>n / <double>k


cdef bint _record(const double* theta, int64_t N, int64_t scheme, const double* Xeval,
                  const double* Yeval, int64_t E, double* S, int64_t q, double* loss_row,
                  double* offset_row, double* moment_row) noexcept nogil:
    """The records of record q; returns whether they are finite."""
    cdef int64_t e, i, c
    cdef double loss = 0.0, offset = 0.0, moment = 0.0
    cdef double x0, x1, f0, f1, g0, g1, d0, d1, u, v
    for e in range(E):
        x0 = Xeval[2 * e]
        x1 = Xeval[2 * e + 1]
        _forward(theta, N, x0, x1, S, &f0, &f1)
        if scheme == FA:
            _forward(theta, N, x1, x0, S, &g0, &g1)
            f0 = 0.5 * (f0 + g1)
            f1 = 0.5 * (f1 + g0)
        d0 = f0 - Yeval[2 * e]
        d1 = f1 - Yeval[2 * e + 1]
        loss += 0.5 * (d0 * d0 + d1 * d1)
    for i in range(N):
        u = theta[4 * i] - theta[4 * i + 3]
        v = theta[4 * i + 1] - theta[4 * i + 2]
        offset += 0.5 * (u * u + v * v)
        for c in range(4):
            moment += theta[4 * i + c] * theta[4 * i + c]
    loss_row[q] = loss / E
    offset_row[q] = offset / N
    moment_row[q] = moment / N
    return isfinite(loss_row[q] + moment_row[q])


cdef void _step_grads(const double* theta, int64_t N, const double* teacher, int64_t M,
                      double s, double sigma, int64_t scheme, int64_t k, uint64_t seed,
                      int64_t T, int64_t batch, double* G, double* S0,
                      double* S1) noexcept nogil:
    """``G = Σ_j Σ_v w_v J_i(x_v)ᵀ e_v`` over the batch of step T."""
    cdef int64_t j
    cdef uint64_t key
    cdef double x0, x1, y0, y1, w0, w1, f0, f1, g0, g1, e0, e1
    memset(G, 0, 4 * N * sizeof(double))
    for j in range(batch):
        key = make_key(seed, STREAM_DATA, <uint64_t>T, <uint64_t>j)
        x0 = s * normal(key, 0)
        x1 = s * normal(key, 1)
        _teacher(teacher, M, x0, x1, &y0, &y1)
        y0 += sigma * normal(key, 2)
        y1 += sigma * normal(key, 3)
        _weights(scheme, k, seed, T, j, &w0, &w1)
        f0 = f1 = g0 = g1 = 0.0
        if w0 > 0.0:
            _forward(theta, N, x0, x1, S0, &f0, &f1)
        if w1 > 0.0:
            _forward(theta, N, x1, x0, S1, &g0, &g1)  # the view (Px, Py)
        if scheme == FA:
            e0 = 0.5 * (f0 + g1) - y0
            e1 = 0.5 * (f1 + g0) - y1
            _backward(G, S0, N, w0, e0, e1, x0, x1)
            _backward(G, S1, N, w1, e1, e0, x1, x0)
        else:
            if w0 > 0.0:
                _backward(G, S0, N, w0, f0 - y0, f1 - y1, x0, x1)
            if w1 > 0.0:
                _backward(G, S1, N, w1, g0 - y1, g1 - y0, x1, x0)


cdef int64_t _meanfield_run(const double* teacher, int64_t M, double s, double sigma,
                            const double* Xeval, const double* Yeval, int64_t E,
                            double* theta, int64_t N, int64_t scheme, int64_t k, double lr,
                            uint64_t seed, int64_t batch, double lam, double temp,
                            int64_t steps, int64_t t0, const int64_t* record_steps,
                            double* loss_row, double* offset_row, double* moment_row,
                            double* kept, double* scratch, int64_t* q_out) noexcept nogil:
    """One run from θ (overwritten with its final particles); returns the status and, in
    ``q_out``, the number of records written."""
    cdef double* G = scratch
    cdef double* S0 = G + 4 * N
    cdef double* S1 = S0 + 2 * N
    cdef double inv = 1.0 / batch
    cdef double kick = sqrt(2.0 * lr * temp)
    cdef double a, b, n0, n1, n2, n3
    cdef int64_t q = 0, t, i, T
    cdef uint64_t key
    for t in range(steps + 1):
        if record_steps[q] == t:
            if not _record(theta, N, scheme, Xeval, Yeval, E, S0, q, loss_row, offset_row,
                           moment_row):
                q_out[0] = q
                return t
            if kept != NULL:
                memcpy(kept + q * 4 * N, theta, 4 * N * sizeof(double))
            q += 1
        if t == steps:
            break
        T = t0 + t
        _step_grads(theta, N, teacher, M, s, sigma, scheme, k, seed, T, batch, G, S0, S1)
        for i in range(4 * N):
            G[i] = G[i] * inv + lam * theta[i]
        if scheme == EA:  # the step projected onto E^G: (Δ + PΔPᵀ)/2
            for i in range(N):
                a = 0.5 * (G[4 * i] + G[4 * i + 3])
                b = 0.5 * (G[4 * i + 1] + G[4 * i + 2])
                G[4 * i] = a
                G[4 * i + 3] = a
                G[4 * i + 1] = b
                G[4 * i + 2] = b
        for i in range(4 * N):  # every entry of the step (as the reference checks)
            if not isfinite(G[i]):
                q_out[0] = q
                return t
        for i in range(4 * N):
            theta[i] -= lr * G[i]
        if temp > 0.0:
            for i in range(N):
                key = make_key(seed, STREAM_NOISE, <uint64_t>T, <uint64_t>i)
                n0 = normal(key, 0)
                n1 = normal(key, 1)
                n2 = normal(key, 2)
                n3 = normal(key, 3)
                if scheme == EA:
                    n0 = 0.5 * (n0 + n3)
                    n3 = n0
                    n1 = 0.5 * (n1 + n2)
                    n2 = n1
                theta[4 * i] += kick * n0
                theta[4 * i + 1] += kick * n1
                theta[4 * i + 2] += kick * n2
                theta[4 * i + 3] += kick * n3
    q_out[0] = q
    return -1


cdef void _nan_rows(double* loss_row, double* offset_row, double* moment_row, int64_t q,
                    int64_t nq) noexcept nogil:
    """The records from q on are NaN (the run stopped)."""
    cdef int64_t j
    for j in range(q, nq):
        loss_row[j] = NAN
        offset_row[j] = NAN
        moment_row[j] = NAN


def meanfield_runs(const double[:, ::1] teacher, double s, double sigma,
                   const double[:, ::1] Xeval, const double[:, ::1] Yeval,
                   const double[:, ::1] Theta0, const int64_t[::1] scheme,
                   const int64_t[::1] k, const double[::1] lr, const uint64_t[::1] seeds,
                   int64_t batch, double lam, double temp, int64_t steps, int64_t start_step,
                   const int64_t[::1] record_steps, double[:, ::1] loss_out,
                   double[:, ::1] offset_out, double[:, ::1] moment_out,
                   double[:, :, ::1] theta_rec, double[:, ::1] theta_out,
                   int64_t[::1] status_out):
    """Driver: runs ``r = c, c + nchunks, ...`` go to chunk c, which owns its scratch."""
    cdef int64_t P = Theta0.shape[1], N = P // 4, R = lr.shape[0], nq = loss_out.shape[1]
    cdef int64_t M = teacher.shape[0], E = Xeval.shape[0], nrows = Theta0.shape[0]
    cdef int64_t size = 8 * N
    cdef int nchunks = chunks(R)
    cdef int64_t ch, r, st, alloc_failed = 0
    cdef int64_t qs
    cdef double* kept = _rows(theta_rec)
    cdef const double* th = &teacher[0, 0] if M > 0 else NULL
    cdef const double* xe = &Xeval[0, 0] if E > 0 else NULL
    cdef const double* ye = &Yeval[0, 0] if E > 0 else NULL
    cdef double* scratch
    if R == 0:
        return
    with nogil:
        for ch in prange(nchunks, schedule="static", chunksize=1, num_threads=nchunks):
            scratch = <double*>malloc((size + 1) * sizeof(double))
            if scratch == NULL:
                alloc_failed += 1
            else:
                r = ch
                while r < R:
                    memcpy(&theta_out[r, 0], &Theta0[r % nrows, 0], P * sizeof(double))
                    qs = 0
                    st = _meanfield_run(
                        th, M, s, sigma, xe, ye, E,
                        &theta_out[r, 0], N, scheme[r], k[r], lr[r], seeds[r], batch, lam,
                        temp, steps, start_step, &record_steps[0], &loss_out[r, 0],
                        &offset_out[r, 0], &moment_out[r, 0], _run_rows(kept, r, nq * P),
                        scratch, &qs)
                    status_out[r] = st
                    if st >= 0:
                        _nan_rows(&loss_out[r, 0], &offset_out[r, 0], &moment_out[r, 0], qs,
                                  nq)
                    r = r + nchunks
            free(scratch)
    if alloc_failed:
        raise MemoryError(f"could not allocate the scratch of {alloc_failed} chunk(s) of runs "
                          f"({size * 8} bytes each)")
