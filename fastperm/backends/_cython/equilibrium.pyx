# cython: language_level=3, cdivision=True
# cython: initializedcheck=False
"""SGD and GD of the two-layer linear network ``U W x`` on a Gaussian teacher, in Cython:
the twin of ``numba_cpu/equilibrium.py`` (contract: :mod:`fastperm.backends.contract`,
``balance_runs``; the maths: :mod:`fastperm.equilibrium`).

The ``def`` driver deals runs to chunks round-robin (OpenMP when built with it), each chunk
with its own scratch; the ``nogil`` worker ``_balance_run`` runs one whole run. A minibatch
step is fused per sample, in the Numba twin's order: draw ``z``, ``x = L z``,
``y = A x + σ z'``, ``a = W x``, ``r = U a − y``, ``s = Uᵀ r``, then ``g_U += r aᵀ / B`` and
``g_W += s xᵀ / B``. The population gradient (B = 0) forms ``R = (UW − A) Σ``.
"""

from libc.math cimport NAN, isfinite, sqrt
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

from cython.parallel cimport prange

from .parallel import chunks
from .rng cimport make_key, normal
from .vec cimport _rows, _run_rows

#: the samples' stream: :data:`fastperm.rng.STREAM_DATA`
cdef uint64_t STREAM_DATA = 2


cdef inline void _error(const double* U, const double* W, const double* A, double* E,
                        int64_t d2, int64_t h, int64_t d0) noexcept nogil:
    """``E = U W − A``, row by row."""
    cdef int64_t a, b, i
    cdef double u
    cdef double* Ea
    cdef const double* Wi
    for a in range(d2):
        Ea = E + a * d0
        for b in range(d0):
            Ea[b] = -A[a * d0 + b]
        for i in range(h):
            u = U[a * h + i]
            Wi = W + i * d0
            for b in range(d0):
                Ea[b] += u * Wi[b]


cdef bint _record(const double* U, const double* W, const double* A, const double* L,
                  double sigma, const int64_t* track, int64_t Q, double* E, double* C,
                  int64_t d2, int64_t h, int64_t d0, int64_t q, double* loss_row,
                  double* charge_row, double* entries_row, double* norms_row) noexcept nogil:
    """The records of step q at (U, W); returns whether the loss is finite."""
    cdef int64_t a, b, c, i, j, e
    cdef double u, s, loss = 0.0, c2 = 0.0, u2 = 0.0, w2 = 0.0
    cdef double* Ea
    cdef double* Ci
    cdef const double* Wi
    cdef const double* Wj
    cdef const double* Ua
    _error(U, W, A, E, d2, h, d0)  # the loss ½ ‖E L‖² + ½ σ² d2
    for a in range(d2):
        Ea = E + a * d0
        for c in range(d0):
            s = 0.0
            for b in range(d0):
                s += Ea[b] * L[b * d0 + c]
            loss += s * s
    loss_row[q] = 0.5 * loss + 0.5 * sigma * sigma * d2
    for i in range(h):  # C = W Wᵀ − UᵀU
        Wi = W + i * d0
        for j in range(h):
            Wj = W + j * d0
            s = 0.0
            for b in range(d0):
                s += Wi[b] * Wj[b]
            C[i * h + j] = s
    for a in range(d2):
        Ua = U + a * h
        for i in range(h):
            u = Ua[i]
            Ci = C + i * h
            for j in range(h):
                Ci[j] -= u * Ua[j]
    for i in range(h):
        for j in range(h):
            c2 += C[i * h + j] * C[i * h + j]
        for b in range(d0):
            w2 += W[i * d0 + b] * W[i * d0 + b]
    for a in range(d2):
        for i in range(h):
            u2 += U[a * h + i] * U[a * h + i]
    charge_row[q] = sqrt(c2)
    for e in range(Q):
        entries_row[q * Q + e] = C[track[2 * e] * h + track[2 * e + 1]]
    norms_row[2 * q] = u2
    norms_row[2 * q + 1] = w2
    return isfinite(loss_row[q])


cdef void _sample_grads(const double* U, const double* W, const double* A, const double* L,
                        double sigma, uint64_t seed, int64_t t, int64_t batch,
                        int64_t d2, int64_t h, int64_t d0, double* gU, double* gW,
                        double* z, double* x, double* av, double* r,
                        double* s) noexcept nogil:
    """``g_U = R Wᵀ``, ``g_W = Uᵀ R`` over the batch of step t, fused per sample."""
    cdef int64_t j, m, b, c, i, o
    cdef uint64_t key
    cdef double inv = 1.0 / batch, v, yv, zc, ro, si
    cdef const double* Wi
    cdef const double* Uo
    cdef const double* Ao
    cdef double* gUo
    cdef double* gWi
    memset(gU, 0, d2 * h * sizeof(double))
    memset(gW, 0, h * d0 * sizeof(double))
    for j in range(batch):
        key = make_key(seed, STREAM_DATA, <uint64_t>t, <uint64_t>j)
        for m in range(d0 + d2):
            z[m] = normal(key, m)
        for b in range(d0):
            x[b] = 0.0
        for c in range(d0):  # x = L z[:d0], by columns of L
            zc = z[c]
            for b in range(d0):
                x[b] += L[b * d0 + c] * zc
        for i in range(h):  # a = W x
            Wi = W + i * d0
            v = 0.0
            for b in range(d0):
                v += Wi[b] * x[b]
            av[i] = v
        for o in range(d2):  # r = U a − (A x + σ z')
            Uo = U + o * h
            Ao = A + o * d0
            v = 0.0
            for i in range(h):
                v += Uo[i] * av[i]
            yv = sigma * z[d0 + o]
            for b in range(d0):
                yv += Ao[b] * x[b]
            r[o] = (v - yv) * inv
        for i in range(h):
            s[i] = 0.0
        for o in range(d2):  # g_U += r aᵀ, s = Uᵀ r
            ro = r[o]
            Uo = U + o * h
            gUo = gU + o * h
            for i in range(h):
                gUo[i] += ro * av[i]
                s[i] += ro * Uo[i]
        for i in range(h):  # g_W += s xᵀ
            si = s[i]
            gWi = gW + i * d0
            for b in range(d0):
                gWi[b] += si * x[b]


cdef void _population_grads(const double* U, const double* W, const double* A,
                            const double* Sigma, int64_t d2, int64_t h, int64_t d0,
                            double* gU, double* gW, double* E, double* Rm) noexcept nogil:
    """``R = (UW − A) Σ``, ``g_U = R Wᵀ``, ``g_W = Uᵀ R``."""
    cdef int64_t o, b, i, c
    cdef double u, e, v
    cdef double* Eo
    cdef double* Ro
    cdef double* gWi
    cdef const double* Wi
    cdef const double* Sc
    _error(U, W, A, E, d2, h, d0)
    for o in range(d2):
        Eo = E + o * d0
        Ro = Rm + o * d0
        for b in range(d0):
            Ro[b] = 0.0
        for c in range(d0):
            e = Eo[c]
            Sc = Sigma + c * d0
            for b in range(d0):
                Ro[b] += e * Sc[b]
        for i in range(h):
            Wi = W + i * d0
            v = 0.0
            for b in range(d0):
                v += Ro[b] * Wi[b]
            gU[o * h + i] = v
    memset(gW, 0, h * d0 * sizeof(double))
    for o in range(d2):
        Ro = Rm + o * d0
        for i in range(h):
            u = U[o * h + i]
            gWi = gW + i * d0
            for b in range(d0):
                gWi[b] += u * Ro[b]


cdef int64_t _balance_run(const double* A, const double* L, const double* Sigma,
                          double sigma, double* theta, double lr, int64_t batch,
                          uint64_t seed, int64_t steps, int64_t t0,
                          const int64_t* record_steps, const int64_t* track, int64_t Q,
                          int64_t d2, int64_t h, int64_t d0, double* loss_row,
                          double* charge_row, double* entries_row, double* norms_row,
                          double* kept, double* scratch, int64_t* q_out) noexcept nogil:
    """One run from θ (overwritten with its final parameters); returns the status and, in
    ``q_out``, the number of records written."""
    cdef int64_t P = h * (d2 + d0), q = 0, t, o, i, b
    cdef double* U = theta
    cdef double* W = theta + d2 * h
    cdef double* gU = scratch
    cdef double* gW = gU + d2 * h
    cdef double* E = gW + h * d0
    cdef double* Rm = E + d2 * d0
    cdef double* C = Rm + d2 * d0
    cdef double* z = C + h * h
    cdef double* x = z + d0 + d2
    cdef double* av = x + d0
    cdef double* r = av + h
    cdef double* s = r + d2
    cdef double g
    for t in range(steps + 1):
        if record_steps[q] == t:
            if not _record(U, W, A, L, sigma, track, Q, E, C, d2, h, d0, q, loss_row,
                           charge_row, entries_row, norms_row):
                q_out[0] = q
                return t
            if kept != NULL:
                memcpy(kept + q * P, theta, P * sizeof(double))
            q += 1
        if t == steps:
            break
        if batch == 0:
            _population_grads(U, W, A, Sigma, d2, h, d0, gU, gW, E, Rm)
        else:
            _sample_grads(U, W, A, L, sigma, seed, t0 + t, batch, d2, h, d0, gU, gW, z, x,
                          av, r, s)
        g = 0.0
        for o in range(d2 * h):
            g += gU[o]
        for i in range(h * d0):
            g += gW[i]
        if not isfinite(g):
            q_out[0] = q
            return t
        for o in range(d2 * h):
            U[o] -= lr * gU[o]
        for b in range(h * d0):
            W[b] -= lr * gW[b]
    q_out[0] = q
    return -1


cdef void _nan_rows(double* loss_row, double* charge_row, double* entries_row,
                    double* norms_row, int64_t q, int64_t nq, int64_t Q) noexcept nogil:
    """The records from q on are NaN (the run stopped)."""
    cdef int64_t j
    for j in range(q, nq):
        loss_row[j] = NAN
        charge_row[j] = NAN
    for j in range(q * Q, nq * Q):
        entries_row[j] = NAN
    for j in range(2 * q, 2 * nq):
        norms_row[j] = NAN


def balance_runs(const double[:, ::1] A, const double[:, ::1] L, const double[:, ::1] Sigma,
                 double sigma, const double[:, ::1] Theta0, const double[::1] lr,
                 const int64_t[::1] batch, const uint64_t[::1] seeds, int64_t steps,
                 int64_t start_step, const int64_t[::1] record_steps,
                 const int64_t[:, ::1] track, double[:, ::1] loss_out,
                 double[:, ::1] charge_out, double[:, :, ::1] entries_out,
                 double[:, :, ::1] norms_out, double[:, :, ::1] theta_rec,
                 double[:, ::1] theta_out, int64_t[::1] status_out):
    """Driver: runs ``r = c, c + nchunks, ...`` go to chunk c, which owns its scratch."""
    cdef int64_t d2 = A.shape[0], d0 = A.shape[1], P = Theta0.shape[1]
    cdef int64_t h = P // (d2 + d0), R = lr.shape[0], nq = loss_out.shape[1]
    cdef int64_t Q = track.shape[0], nrows = Theta0.shape[0]
    cdef int64_t size = d2 * h + h * d0 + 2 * d2 * d0 + h * h + 2 * (d0 + d2) + 2 * h
    cdef int nchunks = chunks(R)
    cdef int64_t ch, r, st, alloc_failed = 0
    cdef int64_t qs
    cdef double* kept = _rows(theta_rec)
    cdef const int64_t* tr = &track[0, 0] if Q > 0 else NULL
    cdef double* ent = &entries_out[0, 0, 0] if Q > 0 and nq > 0 else NULL
    cdef double* scratch
    if R == 0:
        return
    with nogil:
        for ch in prange(nchunks, schedule="static", chunksize=1, num_threads=nchunks):
            scratch = <double*>malloc(size * sizeof(double))
            if scratch == NULL:
                alloc_failed += 1
            else:
                r = ch
                while r < R:
                    memcpy(&theta_out[r, 0], &Theta0[r % nrows, 0], P * sizeof(double))
                    qs = 0
                    st = _balance_run(
                        &A[0, 0], &L[0, 0], &Sigma[0, 0], sigma, &theta_out[r, 0], lr[r],
                        batch[r], seeds[r], steps, start_step, &record_steps[0], tr, Q,
                        d2, h, d0, &loss_out[r, 0], &charge_out[r, 0],
                        _run_rows(ent, r, nq * Q), &norms_out[r, 0, 0],
                        _run_rows(kept, r, nq * P), scratch, &qs)
                    status_out[r] = st
                    if st >= 0:
                        _nan_rows(&loss_out[r, 0], &charge_out[r, 0],
                                  _run_rows(ent, r, nq * Q), &norms_out[r, 0, 0], qs, nq, Q)
                    r = r + nchunks
            free(scratch)
    if alloc_failed:
        raise MemoryError(f"could not allocate the scratch of {alloc_failed} chunk(s) of runs "
                          f"({size * 8} bytes each)")
