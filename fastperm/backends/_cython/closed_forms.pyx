# cython: language_level=3, cdivision=True
# cython: initializedcheck=False
"""k = ∞ runs for the augmentations of :mod:`fastperm.augment.distributions`, in Cython: the twin of
``numba_cpu/closed_forms.py`` (derivations there). Set-up (FFTs, block moments) in NumPy,
the runs in ``nogil`` workers, ``prange`` over runs.
"""

from libc.math cimport isfinite
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

from cython.parallel cimport prange

from .vec cimport _dot, _keep, _mse, _nan_from, _rows, _run_rows


from ..closed_form_setup import (BlockState, fourier_finish, fourier_finish_kept, fourier_setup,
                                 spectra_kept)
from .parallel import chunks


cdef int64_t _diag_rank1_run(const double* X, const double* y, const double* w_star, double* w,
                             int64_t n, int64_t d, double lr, double beta, double gamma,
                             const double* D, int64_t nD, int64_t steps,
                             const int64_t* record_steps, double* loss_row,
                             int64_t nq, double* kept) noexcept nogil:
    cdef int64_t t, i, m, q = 1
    cdef double s, dot, c, wm
    cdef const double* x
    cdef const double* xn
    cdef const double* Di
    loss_row[0] = _mse(w, w_star, d)
    _keep(kept, 0, w, d)
    dot = _dot(w, X, d)
    for t in range(steps):
        i = t % n
        c = lr * (beta * dot - gamma * y[i])
        if not isfinite(c):
            _nan_from(loss_row, q, nq)
            return t
        x = X + i * d
        Di = D + (i % nD) * d
        xn = X + ((t + 1) % n) * d
        dot = 0.0
        for m in range(d):
            wm = w[m] - c * x[m] - lr * Di[m] * w[m]
            w[m] = wm
            dot += wm * xn[m]
        if record_steps[q] == t + 1:
            loss_row[q] = _mse(w, w_star, d)
            if not isfinite(loss_row[q]):
                _nan_from(loss_row, q, nq)
                return t + 1
            _keep(kept, q, w, d)
            q += 1
    return -1


def diag_rank1_runs(const double[:, ::1] X, const double[::1] y, const double[::1] w_star,
                    const double[:, ::1] W0, const double[::1] lr, double beta, double gamma,
                    const double[:, ::1] D, int64_t steps, const int64_t[::1] record_steps,
                    double[:, ::1] loss_out, double[:, :, ::1] w_rec, double[:, ::1] w_out,
                    int64_t[::1] status_out):
    cdef int64_t n = X.shape[0], d = X.shape[1], R = lr.shape[0], nq = loss_out.shape[1], r
    cdef int64_t nrows = W0.shape[0], nD = D.shape[0]
    cdef double* kept = _rows(w_rec)
    cdef int nthreads = chunks(R)
    if R == 0:
        return
    with nogil:
        for r in prange(R, schedule="static", num_threads=nthreads):
            memcpy(&w_out[r, 0], &W0[r % nrows, 0], d * sizeof(double))
            status_out[r] = _diag_rank1_run(&X[0, 0], &y[0], &w_star[0], &w_out[r, 0], n, d,
                                            lr[r], beta, gamma, &D[0, 0], nD, steps,
                                            &record_steps[0], &loss_out[r, 0], nq,
                                            _run_rows(kept, r, nq * d))


cdef int64_t _fourier_run(const double* lam, const double* s1, const double* y, double* re,
                          double* im, const double* sre, const double* sim, const double* wt,
                          int64_t n, int64_t F, int64_t d, double lr, int64_t steps,
                          const int64_t* record_steps, double* loss_row,
                          int64_t nq, double* re_rec, double* im_rec) noexcept nogil:
    cdef double scale = 1.0 / (<double>d * d), s = 0.0, a, b, g, val
    cdef int64_t t, i, f, q = 1
    cdef const double* li
    for f in range(F):
        a = re[f] - sre[f]
        b = im[f] - sim[f]
        s += wt[f] * (a * a + b * b)
    loss_row[0] = s * scale
    _keep(re_rec, 0, re, F)
    _keep(im_rec, 0, im, F)
    for t in range(steps):
        i = t % n
        li = lam + i * F
        # f = 0 carries the mean term; the loop over the rest has no branch (it vectorises)
        g = 1.0 - lr * li[0]
        a = re[0] * g + lr * y[i] * s1[i]
        b = im[0] * g
        re[0] = a
        im[0] = b
        a -= sre[0]
        b -= sim[0]
        s = wt[0] * (a * a + b * b)
        for f in range(1, F):
            g = 1.0 - lr * li[f]
            a = re[f] * g
            b = im[f] * g
            re[f] = a
            im[f] = b
            a -= sre[f]
            b -= sim[f]
            s += wt[f] * (a * a + b * b)
        val = s * scale
        if not isfinite(val):
            _nan_from(loss_row, q, nq)
            return t + 1
        if record_steps[q] == t + 1:
            loss_row[q] = val
            _keep(re_rec, q, re, F)
            _keep(im_rec, q, im, F)
            q += 1
    return -1


def circulant_runs(X, y, w_star, W0, lr, steps, record_steps, loss_out, w_rec, w_out,
                   status_out):
    """Cyclic shifts: FFTs at set-up and at the end (NumPy), the steps in Fourier space (ŵ
    kept at the records and transformed back after the loop when parameters are kept)."""
    if lr.shape[0] == 0:
        return
    lam, s1, RE, IM, sre, sim, wt = fourier_setup(X, w_star, W0, lr.shape[0])
    RE_rec, IM_rec = spectra_kept(w_rec, RE.shape[1])
    _fourier_runs(lam, s1, y, RE, IM, sre, sim, wt, X.shape[1], lr, steps, record_steps,
                  loss_out, RE_rec, IM_rec, status_out)
    fourier_finish(RE, IM, w_out)
    fourier_finish_kept(RE_rec, IM_rec, w_rec, W0)


def _fourier_runs(const double[:, ::1] lam, const double[::1] s1, const double[::1] y,
                  double[:, ::1] RE, double[:, ::1] IM, const double[::1] sre,
                  const double[::1] sim, const double[::1] wt, int64_t d, const double[::1] lr,
                  int64_t steps, const int64_t[::1] record_steps, double[:, ::1] loss_out,
                  double[:, :, ::1] RE_rec, double[:, :, ::1] IM_rec, int64_t[::1] status_out):
    cdef int64_t n = lam.shape[0], F = lam.shape[1], R = lr.shape[0], nq = loss_out.shape[1], r
    cdef double* re_rec = _rows(RE_rec)
    cdef double* im_rec = _rows(IM_rec)
    cdef int nthreads = chunks(R)
    with nogil:
        for r in prange(R, schedule="static", num_threads=nthreads):
            status_out[r] = _fourier_run(&lam[0, 0], &s1[0], &y[0], &RE[r, 0], &IM[r, 0],
                                         &sre[0], &sim[0], &wt[0], n, F, d, lr[r], steps,
                                         &record_steps[0], &loss_out[r, 0], nq,
                                         _run_rows(re_rec, r, nq * F),
                                         _run_rows(im_rec, r, nq * F))


cdef inline double _block_loss(const double* alpha, const double* delta, const double* size,
                              const double* U, const double* V, const double* Wss, int64_t G,
                              int64_t d) noexcept nogil:
    """``mean((w − w*)²) = Σ_G (α_G² U_G − 2α_G V_G + W_G + d_G δ_G²) / d``."""
    cdef double s = 0.0
    cdef int64_t g
    for g in range(G):
        s += (alpha[g] * alpha[g] * U[g] - 2.0 * alpha[g] * V[g] + Wss[g]
              + size[g] * delta[g] * delta[g])
    return s / d


cdef int64_t _block_run(const double* a, const double* c, const double* mg, const double* size,
                        const double* ustar, const double* U, const double* V,
                        const double* Wss, int64_t n, int64_t G, int64_t d, const double* y,
                        double* alpha, double* delta, double lr, int64_t steps,
                        const int64_t* record_steps, double* loss_row,
                        int64_t nq, double* alpha_rec, double* delta_rec) noexcept nogil:
    cdef int64_t t, i, g, q = 1
    cdef double T, M
    cdef bint ok
    loss_row[0] = _block_loss(alpha, delta, size, U, V, Wss, G, d)
    _keep(alpha_rec, 0, alpha, G)
    _keep(delta_rec, 0, delta, G)
    for t in range(steps):
        i = t % n
        T = 0.0
        for g in range(G):
            T += mg[i * G + g] * size[g] * (delta[g] + ustar[g])
        ok = True
        for g in range(G):
            M = delta[g] + ustar[g]
            alpha[g] -= lr * a[i * G + g] * alpha[g]
            delta[g] -= lr * (a[i * G + g] * M + c[i * G + g] * size[g] * M
                              + mg[i * G + g] * (T - mg[i * G + g] * size[g] * M)
                              - y[i] * mg[i * G + g])
            ok = ok and isfinite(alpha[g]) and isfinite(delta[g])
        if not ok:
            _nan_from(loss_row, q, nq)
            return t + 1
        if record_steps[q] == t + 1:
            loss_row[q] = _block_loss(alpha, delta, size, U, V, Wss, G, d)
            if not isfinite(loss_row[q]):
                _nan_from(loss_row, q, nq)
                return t + 1
            _keep(alpha_rec, q, alpha, G)
            _keep(delta_rec, q, delta, G)
            q += 1
    return -1


def _block_runs(const double[:, ::1] a, const double[:, ::1] c, const double[:, ::1] mg,
                const double[::1] size, const double[::1] ustar, const double[:, ::1] U,
                const double[:, ::1] V, const double[::1] Wss, int64_t d, const double[::1] y,
                double[:, ::1] ALPHA, double[:, ::1] DELTA, const double[::1] lr,
                int64_t steps, const int64_t[::1] record_steps, double[:, ::1] loss_out,
                double[:, :, ::1] ALPHA_rec, double[:, :, ::1] DELTA_rec,
                int64_t[::1] status_out):
    cdef int64_t n = a.shape[0], G = a.shape[1], R = lr.shape[0], nq = loss_out.shape[1], r
    cdef double* alpha_rec = _rows(ALPHA_rec)
    cdef double* delta_rec = _rows(DELTA_rec)
    cdef int nthreads = chunks(R)
    with nogil:
        for r in prange(R, schedule="static", num_threads=nthreads):
            status_out[r] = _block_run(&a[0, 0], &c[0, 0], &mg[0, 0], &size[0], &ustar[0],
                                       &U[r, 0], &V[r, 0], &Wss[0], n, G, d, &y[0],
                                       &ALPHA[r, 0], &DELTA[r, 0], lr[r], steps,
                                       &record_steps[0], &loss_out[r, 0], nq,
                                       _run_rows(alpha_rec, r, nq * G),
                                       _run_rows(delta_rec, r, nq * G))


def block_runs(X, y, w_star, W0, lr, gidx, gptr, steps, record_steps, loss_out, w_rec, w_out,
               status_out):
    """Block permutations in O(T·G + n·d) (set-up in NumPy, shared with the Numba twin)."""
    if lr.shape[0] == 0:
        return
    b = BlockState(X, w_star, W0, lr.shape[0], gidx, gptr, w_rec.shape[1])
    _block_runs(b.a, b.c, b.mg, b.size, b.ustar, b.U, b.V, b.Wss, X.shape[1], y, b.ALPHA,
                b.DELTA, lr, steps, record_steps, loss_out, b.ALPHA_rec, b.DELTA_rec,
                status_out)
    b.finish(w_out, w_rec)


cdef int64_t _dense_run(const double* M, const double* mu, const double* y,
                        const double* w_star, double* w, double* g, int64_t n, int64_t d,
                        double lr, int64_t steps, const int64_t* record_steps,
                        double* loss_row, int64_t nq, double* kept) noexcept nogil:
    cdef int64_t t, i, m, l, q = 1
    cdef double s, acc, e
    cdef const double* Mi
    loss_row[0] = _mse(w, w_star, d)
    _keep(kept, 0, w, d)
    for t in range(steps):
        i = t % n
        for m in range(d):
            acc = -y[i] * mu[i * d + m]
            Mi = M + (i * d + m) * d
            for l in range(d):
                acc += Mi[l] * w[l]
            g[m] = acc
        s = 0.0
        for m in range(d):
            w[m] -= lr * g[m]
            e = w[m] - w_star[m]
            s += e * e
        if not isfinite(s):
            _nan_from(loss_row, q, nq)
            return t + 1
        if record_steps[q] == t + 1:
            loss_row[q] = s / d
            _keep(kept, q, w, d)
            q += 1
    return -1


def dense_runs(const double[:, :, ::1] M, const double[:, ::1] mu, const double[::1] y,
               const double[::1] w_star, const double[:, ::1] W0, const double[::1] lr,
               int64_t steps, const int64_t[::1] record_steps, double[:, ::1] loss_out,
               double[:, :, ::1] w_rec, double[:, ::1] w_out, int64_t[::1] status_out):
    cdef int64_t n = mu.shape[0], d = mu.shape[1], R = lr.shape[0], nq = loss_out.shape[1], r
    cdef int64_t nrows = W0.shape[0], failed = 0
    cdef double* kept = _rows(w_rec)
    cdef double* g
    cdef int nthreads = chunks(R)
    if R == 0:
        return
    with nogil:
        for r in prange(R, schedule="static", num_threads=nthreads):
            g = <double*>malloc(d * sizeof(double))
            if g == NULL:
                failed += 1
            else:
                memcpy(&w_out[r, 0], &W0[r % nrows, 0], d * sizeof(double))
                status_out[r] = _dense_run(&M[0, 0, 0], &mu[0, 0], &y[0], &w_star[0],
                                           &w_out[r, 0], g, n, d, lr[r], steps,
                                           &record_steps[0], &loss_out[r, 0], nq,
                                           _run_rows(kept, r, nq * d))
            free(g)
    if failed:
        raise MemoryError("could not allocate the gradient scratch of dense_runs")
