# cython: language_level=3, cdivision=True
# cython: initializedcheck=False
"""Batched finite-difference Lie brackets for the built-in MLPs, in Cython.

The twin of ``numba_cpu/lie.py`` and of the compiled MLP kernels in
:mod:`fastperm.backends.numba_cpu.mlp` (``mlp_grad``, ``mlp_directional``,
``mlp_aux``): the same backpropagation, the same exact first-layer shortcut for the stencil
points, the same block-pair tasks (each task owns its output tiles, so there
are no races and the result does not depend on the thread count), written
with raw pointers over C-contiguous buffers. See those for the formulas.

Only the built-in models (:class:`~fastperm.models.MLP` and its one-layer
cases) have Cython kernels; a :class:`~fastperm.models.CustomModel` brings a
Numba gradient, which C code cannot call: use ``backend="numba"`` (or
``"numpy"`` with the model's NumPy gradient) for those.
"""

from libc.math cimport exp, fabs, frexp, isfinite, ldexp, tanh
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc

from cython.parallel cimport prange

import numpy as np

from ..tiling import block_pairs
from .parallel import chunks


# -- the MLP's per-example gradient (layout: fastperm.models.MLP) -------------------------

cdef inline double _activate(double v, int64_t act) noexcept nogil:
    """tanh (act = 0) or ReLU (act = 1)."""
    if act == 0:
        return tanh(v)
    return 0.0 if v < 0.0 else v


cdef inline double _dactivate(double a, int64_t act) noexcept nogil:
    """The activation's derivative from its output: 1 − a² (tanh) or [a > 0] (ReLU)."""
    if act == 0:
        return 1.0 - a * a
    return 1.0 if a > 0.0 else 0.0


cdef inline void _affine(const double* W, int64_t nout, int64_t nin, const double* b, bint bias,
                         const double* src, double* dst, bint hidden,
                         int64_t act) noexcept nogil:
    """``dst = act(W src + b)`` (the activation only on hidden layers)."""
    cdef int64_t o, i
    cdef double s
    cdef const double* row
    for o in range(nout):
        s = b[o] if bias else 0.0
        row = W + o * nin
        for i in range(nin):
            s += row[i] * src[i]
        dst[o] = _activate(s, act) if hidden else s


cdef inline void _outer(const double* delta, const double* src, int64_t nout, int64_t nin,
                        double* G, double* gb, bint bias, double beta) noexcept nogil:
    """``G ← delta ⊗ src + beta G``, ``gb ← delta + beta gb`` (G read only when beta ≠ 0)."""
    cdef int64_t o, i
    cdef double dl
    cdef double* row
    for o in range(nout):
        dl = delta[o]
        row = G + o * nin
        if beta == 0.0:
            for i in range(nin):
                row[i] = dl * src[i]
            if bias:
                gb[o] = dl
        else:
            for i in range(nin):
                row[i] = dl * src[i] + beta * row[i]
            if bias:
                gb[o] = dl + beta * gb[o]


cdef void _backprop(const double* theta, const double* x, const double* y, const int64_t* layout,
                    double* work, double* out, double alpha, double beta, double* acc0,
                    const double* z1) noexcept nogil:
    """``out ← alpha · g + beta · out`` for one example.

    ``acc0`` not NULL: the first layer's delta goes to ``acc0 += delta`` instead of out;
    ``z1`` not NULL: it is the first layer's pre-activation (θ's first layer is not read).
    ``work``: the activations of layers 1..L, then two delta buffers of max(sizes).
    """
    cdef int64_t L = layout[0], act = layout[1], loss = layout[2]
    cdef bint bias = layout[3] != 0
    cdef const int64_t* sizes = layout + 4
    cdef const int64_t* pw = layout + 5 + L
    cdef const int64_t* pb = layout + 5 + 2 * L
    cdef const int64_t* pa = layout + 5 + 3 * L
    cdef int64_t nact = 0, maxs = 0, l, o, i, nin, nout, K
    cdef double* cur
    cdef double* nxt
    cdef double* tmp
    cdef double* dst
    cdef const double* src
    cdef const double* z
    cdef const double* W
    cdef const double* row
    cdef double sig, ez, dl
    for l in range(L + 1):
        if sizes[l] > maxs:
            maxs = sizes[l]
        if l > 0:
            nact += sizes[l]
    cur = work + nact
    nxt = work + nact + maxs
    # forward
    for l in range(L):
        nin = sizes[l]
        nout = sizes[l + 1]
        dst = work + pa[l]
        if l == 0 and z1 != NULL:
            for o in range(nout):
                dst[o] = _activate(z1[o], act) if L > 1 else z1[o]
        else:
            src = x if l == 0 else work + pa[l - 1]
            _affine(theta + pw[l], nout, nin, theta + pb[l], bias, src, dst, l < L - 1, act)
    # output delta: alpha · dL/dz
    K = sizes[L]
    z = work + pa[L - 1]
    for o in range(K):
        if loss == 0:
            if z[o] >= 0:
                sig = 1.0 / (1.0 + exp(-z[o]))
            else:
                ez = exp(z[o])
                sig = ez / (1.0 + ez)
            cur[o] = alpha * (sig - y[o]) / K
        else:
            cur[o] = alpha * (z[o] - y[o]) / K
    # backward
    for l in range(L - 1, -1, -1):
        nin = sizes[l]
        nout = sizes[l + 1]
        if l == 0:
            if acc0 != NULL:
                for o in range(nout):
                    acc0[o] += cur[o]
            else:
                _outer(cur, x, nout, nin, out + pw[0], out + pb[0], bias, beta)
        else:
            src = work + pa[l - 1]
            _outer(cur, src, nout, nin, out + pw[l], out + pb[l], bias, beta)
            W = theta + pw[l]
            for i in range(nin):
                nxt[i] = 0.0
            for o in range(nout):
                dl = cur[o]
                row = W + o * nin
                for i in range(nin):
                    nxt[i] += dl * row[i]
            for i in range(nin):
                nxt[i] *= _dactivate(src[i], act)
            tmp = cur
            cur = nxt
            nxt = tmp


cdef void _directional(const int64_t* layout, int64_t P, const double* pts, int64_t S,
                       const double* w, const double* c, double hx, int64_t xi, int64_t yi,
                       const double* aux, int64_t naux, const double* X, const double* Y,
                       int64_t d, int64_t K, double* work, int64_t work_size,
                       double* out, bint first_layer) noexcept nogil:
    """``out = Σ_j w_j g_y(θ + c_j h_x g_x) / h_x`` with the exact first-layer shortcut.

    ``work`` holds ``work_size`` entries for the backpropagation, then 2·H₁ more; the
    first H₁ of those end up holding the stencil sum of the first layer's deltas, which
    is written out as the first layer's blocks only when ``first_layer``.
    """
    cdef int64_t L = layout[0], H1 = layout[5], j, o
    cdef bint bias = layout[3] != 0
    cdef double* acc = work + work_size
    cdef double* z1 = work + work_size + H1
    cdef const double* ax = aux + xi * naux
    cdef const double* ay = aux + yi * naux
    # the scaled Gram entry; where it overflows, the update without an overflowing
    # intermediate (numba_cpu's mlp_directional)
    cdef int ex = <int>ax[naux - 1], ey = <int>ay[naux - 1]
    cdef double gram = ax[2 * H1 + yi], kb = ldexp(gram, ex + ey), invh = 1.0 / hx, s
    cdef bint finite = isfinite(kb)
    for o in range(H1):
        acc[o] = 0.0
    for j in range(S):
        s = c[j] * hx * kb
        for o in range(H1):
            if finite:
                z1[o] = ay[o] + s * ax[H1 + o]
            else:
                z1[o] = ay[o] + ldexp(ldexp(c[j] * hx * ax[H1 + o], ex) * gram, ey)
        _backprop(pts + j * P, X + yi * d, Y + yi * K, layout, work, out, w[j] * invh,
                  0.0 if j == 0 else 1.0, acc, z1)
    if first_layer:
        _outer(acc, X + yi * d, H1, d, out + layout[5 + L], out + layout[5 + 2 * L], bias, 0.0)


cdef void _aux_row(const double* theta, const double* X, const double* G, int64_t B,
                   int64_t d, int64_t P, const int64_t* layout, int64_t b,
                   double* aux) noexcept nogil:
    """``aux[b] = [W₁x_b + b₁ | δ₁ᵦ | G̃_bc for every c | e_b]`` (as numba_cpu's ``mlp_aux``:
    a scaled Gram row; every row's last entry holds its exponent e_b, set beforehand by
    :func:`_scale_exponent`)."""
    cdef int64_t L = layout[0], H1 = layout[5], o, i, cc
    cdef int64_t pb0 = layout[5 + 2 * L], pw0 = layout[5 + L]
    cdef bint bias = layout[3] != 0
    cdef int64_t naux = 2 * H1 + B + 1
    cdef const double* x = X + b * d
    cdef const double* row
    cdef double* a = aux + b * naux
    cdef int eb = <int>a[naux - 1], ec
    cdef double s, xx = 0.0, inv = ldexp(1.0, -eb), invc
    for o in range(H1):
        s = theta[pb0 + o] if bias else 0.0
        row = theta + pw0 + o * d
        for i in range(d):
            s += row[i] * x[i]
        a[o] = s
    for i in range(d):
        xx += (x[i] * inv) * (x[i] * inv)
    for o in range(H1):
        if bias:
            a[H1 + o] = G[b * P + pb0 + o]
        else:
            row = G + b * P + pw0 + o * d
            s = 0.0
            for i in range(d):
                s += row[i] * (x[i] * inv)
            a[H1 + o] = s / xx * inv if xx > 0.0 else 0.0
    for cc in range(B):
        ec = <int>aux[cc * naux + naux - 1]
        invc = ldexp(1.0, -ec)
        s = ldexp(1.0, -eb - ec) if bias else 0.0
        for i in range(d):
            s += (x[i] * inv) * (X[cc * d + i] * invc)
        a[2 * H1 + cc] = s


cdef int _scale_exponent(const double* x, int64_t d) noexcept nogil:
    """e with ``max |x| = m·2^e``, ½ ≤ m < 1, clipped to [0, 1023] (numba_cpu's)."""
    cdef double top = 0.0
    cdef int64_t i
    cdef int e
    for i in range(d):
        top = max(top, fabs(x[i]))
    frexp(top, &e)
    return min(max(e, 0), 1023)


# -- drivers -----------------------------------------------------------------------------------

cdef inline void _stencil_points(const double* theta, const double* u, double h, const double* c,
                                 int64_t S, int64_t P, double* pts,
                                 int64_t start) noexcept nogil:
    """``pts[j, start:] = θ + c_j h u`` (the stencil kernel reads no entry before start)."""
    cdef int64_t j, p
    cdef double s
    for j in range(S):
        s = c[j] * h
        for p in range(start, P):
            pts[j * P + p] = theta[p] + s * u[p]


cdef inline void _block_pair(int64_t task, int64_t nb, int64_t* I, int64_t* J) noexcept nogil:
    """The ``task``-th block pair (I, J), I <= J, in row-major order of the upper triangle."""
    cdef int64_t i = 0, rem = task
    while rem >= nb - i:
        rem -= nb - i
        i += 1
    I[0] = i
    J[0] = i + rem


cdef void _combine(double* out, int64_t B, int64_t P, int64_t x0, int64_t x1, int64_t y0,
                   int64_t y1, bint diagonal) noexcept nogil:
    """``[v_x, v_y] = D[x→y] − D[y→x]`` in place over a tile pair; zero diagonal."""
    cdef int64_t x, y, p
    cdef double* bxy
    cdef double* byx
    cdef double b
    for x in range(x0, x1):
        for y in range(max(y0, x + 1), y1):
            bxy = out + (x * B + y) * P
            byx = out + (y * B + x) * P
            for p in range(P):
                b = bxy[p] - byx[p]
                bxy[p] = b
                byx[p] = -b
        if diagonal:
            bxy = out + (x * B + x) * P
            for p in range(P):
                bxy[p] = 0.0


def _builtin(model, what):
    if not getattr(model, "builtin", False):
        raise TypeError(
            f"the cython backend computes {what} for the built-in models only (MLP, "
            f"LinearRegression, MultiLabelLogistic), not {model.name}: a CustomModel's gradient "
            f"is a Numba function; use backend='numba', or backend='numpy' with its numpy_grad")
    return np.ascontiguousarray(model.layout, dtype=np.int64)


def example_grads(model, const double[::1] theta, const double[:, ::1] X,
                  const double[:, ::1] Y, double[:, ::1] out):
    """``out[b] = g_b(θ)`` for every example (parallel over examples)."""
    cdef const int64_t[::1] layout = _builtin(model, "gradients")
    cdef int64_t B = X.shape[0], b, failed = 0, wsize = max(int(model.work_size), 1)
    cdef double* work
    cdef int nthreads = chunks(B, 4 * B * int(model.P))
    with nogil:
        for b in prange(B, schedule="static", num_threads=nthreads):
            work = <double*>malloc(wsize * sizeof(double))
            if work == NULL:
                failed += 1
            else:
                _backprop(&theta[0], &X[b, 0], &Y[b, 0], &layout[0], work, &out[b, 0], 1.0, 0.0,
                          NULL, NULL)
            free(work)
    if failed:
        raise MemoryError("could not allocate the gradient scratch")


def _aux(const int64_t[::1] layout, const double[::1] theta, const double[:, ::1] X,
         const double[:, ::1] G):
    """The per-example data of the first-layer shortcut, (B, 2·H₁ + B + 1) (parallel over b)."""
    cdef int64_t B = X.shape[0], d = X.shape[1], P = G.shape[1], b
    cdef int64_t last = 2 * layout[5] + B
    aux = np.empty((B, last + 1))
    cdef double[:, ::1] av = aux
    cdef int nthreads = chunks(B, B * X.shape[1] * (layout[5] + B))
    with nogil:
        for b in range(B):  # every row's exponent first: the Gram rows need them all
            av[b, last] = _scale_exponent(&X[b, 0], d)
        for b in prange(B, schedule="static", num_threads=nthreads):
            _aux_row(&theta[0], &X[0, 0], &G[0, 0], B, d, P, &layout[0], b, &av[0, 0])
    return aux


def brackets_all(model, const double[::1] theta, const double[:, ::1] X, const double[:, ::1] Y,
                 const double[:, ::1] G, const double[::1] h, const double[::1] c,
                 const double[::1] w, double[:, :, ::1] out):
    """All pairs, (B, B, P): block-pair tasks dealt round-robin to one chunk per thread."""
    cdef const int64_t[::1] layout = _builtin(model, "brackets")
    cdef int64_t B = G.shape[0], P = G.shape[1], S = c.shape[0], d = X.shape[1], K = Y.shape[1]
    cdef int64_t wsize = int(model.work_size), start = int(model.stencil_start)
    cdef int64_t H1 = int(model.sizes[1])
    cdef int64_t block, nb, ntasks
    block, nb, ntasks = block_pairs(P, B)
    cdef int nchunks = chunks(ntasks)
    cdef const double[:, ::1] aux = _aux(layout, theta, X, G)
    cdef int64_t naux = aux.shape[1]
    cdef int64_t ch, task, I, J, x0, x1, y0, y1, x, y, failed = 0
    cdef double* pts
    cdef double* work
    with nogil:
        for ch in prange(nchunks, schedule="static", chunksize=1, num_threads=nchunks):
            pts = <double*>malloc(max(S * P, 1) * sizeof(double))  # S = 0: exact
            work = <double*>malloc((wsize + 2 * H1) * sizeof(double))
            if pts == NULL or work == NULL:
                failed += 1
            else:
                task = ch
                while task < ntasks:
                    _block_pair(task, nb, &I, &J)
                    x0 = I * block
                    x1 = min(B, (I + 1) * block)
                    y0 = J * block
                    y1 = min(B, (J + 1) * block)
                    for x in range(x0, x1):  # D[x→y] into out[x, y]
                        _stencil_points(&theta[0], &G[x, 0], h[x], &c[0], S, P, pts, start)
                        for y in range(y0, y1):
                            if y != x:
                                _directional(&layout[0], P, pts, S, &w[0], &c[0], h[x], x, y,
                                             &aux[0, 0], naux, &X[0, 0], &Y[0, 0], d, K, work,
                                             wsize, &out[x, y, 0], True)
                    if I != J:  # D[y→x] into out[y, x]
                        for y in range(y0, y1):
                            _stencil_points(&theta[0], &G[y, 0], h[y], &c[0], S, P, pts, start)
                            for x in range(x0, x1):
                                _directional(&layout[0], P, pts, S, &w[0], &c[0], h[y], y, x,
                                             &aux[0, 0], naux, &X[0, 0], &Y[0, 0], d, K, work,
                                             wsize, &out[y, x, 0], True)
                    _combine(&out[0, 0, 0], B, P, x0, x1, y0, y1, I == J)
                    task = task + nchunks
            free(pts)
            free(work)
    if failed:
        raise MemoryError("could not allocate the bracket scratch")


def brackets_pairs(model, const double[::1] theta, const double[:, ::1] X,
                   const double[:, ::1] Y, const double[:, ::1] G, const double[::1] h,
                   const double[::1] c, const double[::1] w, const int64_t[:, ::1] pairs,
                   double[:, ::1] out):
    """Listed pairs, (npairs, P): pairs dealt round-robin to one chunk per thread."""
    cdef const int64_t[::1] layout = _builtin(model, "brackets")
    cdef int64_t B = G.shape[0], P = G.shape[1], S = c.shape[0], d = X.shape[1], K = Y.shape[1]
    cdef int64_t wsize = int(model.work_size), start = int(model.stencil_start)
    cdef int64_t H1 = int(model.sizes[1]), npairs = pairs.shape[0]
    cdef int nchunks = chunks(npairs)
    cdef const double[:, ::1] aux = _aux(layout, theta, X, G)
    cdef int64_t naux = aux.shape[1]
    cdef int64_t ch, q, a, b, p, failed = 0
    cdef double* pts
    cdef double* work
    cdef double* tmp
    if npairs == 0:
        return
    with nogil:
        for ch in prange(nchunks, schedule="static", chunksize=1, num_threads=nchunks):
            pts = <double*>malloc(max(S * P, 1) * sizeof(double))  # S = 0: exact
            work = <double*>malloc((wsize + 2 * H1) * sizeof(double))
            tmp = <double*>malloc(P * sizeof(double))
            if pts == NULL or work == NULL or tmp == NULL:
                failed += 1
            else:
                q = ch
                while q < npairs:
                    a = pairs[q, 0]
                    b = pairs[q, 1]
                    if a == b:  # [v_a, v_a] = 0 exactly
                        for p in range(P):
                            out[q, p] = 0.0
                    else:
                        _stencil_points(&theta[0], &G[a, 0], h[a], &c[0], S, P, pts, start)
                        _directional(&layout[0], P, pts, S, &w[0], &c[0], h[a], a, b, &aux[0, 0],
                                     naux, &X[0, 0], &Y[0, 0], d, K, work, wsize, &out[q, 0],
                                     True)
                        _stencil_points(&theta[0], &G[b, 0], h[b], &c[0], S, P, pts, start)
                        _directional(&layout[0], P, pts, S, &w[0], &c[0], h[b], b, a, &aux[0, 0],
                                     naux, &X[0, 0], &Y[0, 0], d, K, work, wsize, tmp, True)
                        for p in range(P):
                            out[q, p] -= tmp[p]
                    q = q + nchunks
            free(pts)
            free(work)
            free(tmp)
    if failed:
        raise MemoryError("could not allocate the bracket scratch")


# -- fused reductions (numba_cpu/lie.py's bracket_norms and bracket_logits) ---------------------

cdef inline double _d2activate(double a, int64_t act) noexcept nogil:
    """The activation's second derivative from its output: −2a(1 − a²) (tanh), 0 (ReLU)."""
    if act == 0:
        return -2.0 * a * (1.0 - a * a)
    return 0.0


cdef inline double _sigmoid(double z) noexcept nogil:
    cdef double ez
    if z >= 0:
        return 1.0 / (1.0 + exp(-z))
    ez = exp(z)
    return ez / (1.0 + ez)


cdef void _primal(const double* theta, const double* x, const double* y, const int64_t* layout,
                  int64_t nact, double* prim) noexcept nogil:
    """``prim = [a | e | m]`` for one example (numba_cpu's ``mlp._primal_body``)."""
    cdef int64_t L = layout[0], act = layout[1], loss = layout[2], l, o, i, nin, nout
    cdef int64_t K = layout[4 + L]
    cdef const int64_t* pa = layout + 5 + 3 * L
    cdef double* a = prim
    cdef double* e = prim + nact
    cdef double* m = prim + 2 * nact
    cdef const double* W
    cdef double s, z
    _forward(theta, x, layout, a)
    for o in range(K):
        z = a[pa[L - 1] + o]
        e[pa[L - 1] + o] = ((_sigmoid(z) if loss == 0 else z) - y[o]) / K
    for l in range(L - 1, 0, -1):
        nin = layout[4 + l]
        nout = layout[5 + l]
        W = theta + layout[5 + L + l]
        for i in range(nin):
            s = 0.0
            for o in range(nout):
                s = s + W[o * nin + i] * e[pa[l] + o]
            m[pa[l - 1] + i] = s
            e[pa[l - 1] + i] = s * _dactivate(a[pa[l - 1] + i], act)


cdef void _hvp(const int64_t* layout, const double* theta, const double* u, int64_t xi,
               int64_t yi, const double* aux, int64_t naux, const double* prim, int64_t nact,
               double* scratch, int64_t width, double* out, double* f) noexcept nogil:
    """``H_y u`` exactly for u = g_x, forward over reverse (numba_cpu's ``mlp.mlp_hvp``: the
    formulas are there): layers 2.. into out, the first layer's factor ė₁ into f."""
    cdef int64_t L = layout[0], act = layout[1], loss = layout[2], H1 = layout[5]
    cdef bint bias = layout[3] != 0
    cdef int64_t K = layout[4 + L], l, o, i, nin, nout, woff, boff
    cdef const int64_t* pa = layout + 5 + 3 * L
    cdef const double* a = prim + yi * 3 * nact
    cdef const double* e = a + nact
    cdef const double* m = a + 2 * nact
    cdef double* dz = scratch
    cdef double* da = scratch + nact
    cdef double* cur = scratch + 2 * nact
    cdef double* nxt = cur + width
    cdef const double* ax = aux + xi * naux
    cdef const double* ay = aux + yi * naux
    cdef int ex = <int>ax[naux - 1], ey = <int>ay[naux - 1]
    cdef double gram = ax[2 * H1 + yi], kb = ldexp(gram, ex + ey), s, co, eo, sg
    cdef bint finite = isfinite(kb)
    for o in range(H1):
        if finite:
            dz[o] = kb * ax[H1 + o]
        else:
            dz[o] = ldexp(ldexp(ax[H1 + o], ex) * gram, ey)
    for l in range(L):
        nout = layout[5 + l]
        if l > 0:
            nin = layout[4 + l]
            woff = layout[5 + L + l]
            boff = layout[5 + 2 * L + l]
            for o in range(nout):
                s = u[boff + o] if bias else 0.0
                for i in range(nin):
                    s = s + (theta[woff + o * nin + i] * da[pa[l - 1] + i]
                             + u[woff + o * nin + i] * a[pa[l - 1] + i])
                dz[pa[l] + o] = s
        if l < L - 1:
            for o in range(nout):
                da[pa[l] + o] = _dactivate(a[pa[l] + o], act) * dz[pa[l] + o]
    for o in range(K):
        if loss == 0:
            sg = _sigmoid(a[pa[L - 1] + o])
            cur[o] = sg * (1.0 - sg) * dz[pa[L - 1] + o] / K
        else:
            cur[o] = dz[pa[L - 1] + o] / K
    for l in range(L - 1, 0, -1):
        nin = layout[4 + l]
        nout = layout[5 + l]
        woff = layout[5 + L + l]
        boff = layout[5 + 2 * L + l]
        for o in range(nout):
            co = cur[o]
            eo = e[pa[l] + o]
            for i in range(nin):
                out[woff + o * nin + i] = co * a[pa[l - 1] + i] + eo * da[pa[l - 1] + i]
            if bias:
                out[boff + o] = co
        for i in range(nin):
            nxt[i] = 0.0
        for o in range(nout):
            co = cur[o]
            eo = e[pa[l] + o]
            for i in range(nin):
                nxt[i] = nxt[i] + theta[woff + o * nin + i] * co + u[woff + o * nin + i] * eo
        for i in range(nin):
            cur[i] = (nxt[i] * _dactivate(a[pa[l - 1] + i], act)
                      + m[pa[l - 1] + i] * _d2activate(a[pa[l - 1] + i], act) * dz[pa[l - 1] + i])
    for o in range(H1):
        f[o] = cur[o]


cdef void _pair_blocks(const int64_t* layout, int64_t P, int64_t start, const double* theta,
                       const double* X, const double* Y, const double* G, const double* h,
                       const double* c, const double* w, int64_t S, const double* aux,
                       int64_t naux, int64_t d, int64_t K, int64_t a, int64_t b, double* pts,
                       double* work, int64_t wsize, double* da, double* db, double* fa,
                       double* fb, const double* prim, int64_t nact,
                       int64_t width) noexcept nogil:
    """One pair's bracket in factored form: ``da − db`` from ``start`` on, ``fa ⊗ x_b −
    fb ⊗ x_a`` for the first layer's weights, ``fa − fb`` its bias. By the stencil, or
    exactly (:func:`_hvp`) when it is empty (S = 0)."""
    cdef int64_t H1 = layout[5], o
    if S == 0:
        _hvp(layout, theta, G + a * P, a, b, aux, naux, prim, nact, work, width, da, fa)
        _hvp(layout, theta, G + b * P, b, a, aux, naux, prim, nact, work, width, db, fb)
        return
    _stencil_points(theta, G + a * P, h[a], c, S, P, pts, start)
    _directional(layout, P, pts, S, w, c, h[a], a, b, aux, naux, X, Y, d, K, work, wsize, da,
                 False)
    for o in range(H1):
        fa[o] = work[wsize + o]
    _stencil_points(theta, G + b * P, h[b], c, S, P, pts, start)
    _directional(layout, P, pts, S, w, c, h[b], b, a, aux, naux, X, Y, d, K, work, wsize, db,
                 False)
    for o in range(H1):
        fb[o] = work[wsize + o]


cdef double _first_layer_norm(const double* xa, const double* xb, int64_t d, int ea, int eb,
                              const double* fa, const double* fb, int64_t H1) noexcept nogil:
    """``‖fa ⊗ x_b − fb ⊗ x_a‖²`` in O(H₁ + d), x_a split along x_b (numba_cpu's
    ``mlp.first_layer_norm``)."""
    cdef double ia = ldexp(1.0, -ea), ib = ldexp(1.0, -eb)
    cdef double nb2 = 0.0, ab = 0.0, r, perp2 = 0.0, along = 0.0, across = 0.0, v, xbi, Fa, Fb
    cdef int64_t i, o
    for i in range(d):
        xbi = xb[i] * ib
        nb2 += xbi * xbi
        ab += (xa[i] * ia) * xbi
    r = ab / nb2 if nb2 > 0.0 else 0.0
    for i in range(d):
        v = xa[i] * ia - r * (xb[i] * ib)
        perp2 += v * v
    for o in range(H1):
        Fa = ldexp(fa[o], eb)
        Fb = ldexp(fb[o], ea)
        v = Fa - r * Fb
        along += v * v
        across += Fb * Fb
    return nb2 * along + perp2 * across


cdef void _forward(const double* theta, const double* x, const int64_t* layout,
                   double* acts) noexcept nogil:
    """The activations of every layer for input x, at the layout's activation offsets."""
    cdef int64_t L = layout[0], act = layout[1], l
    cdef bint bias = layout[3] != 0
    cdef const int64_t* sizes = layout + 4
    cdef const int64_t* pa = layout + 5 + 3 * L
    for l in range(L):
        _affine(theta + layout[5 + L + l], sizes[l + 1], sizes[l], theta + layout[5 + 2 * L + l],
                bias, x if l == 0 else acts + pa[l - 1], acts + pa[l], l < L - 1, act)


cdef inline const double* _first(const double[::1] v):
    """The address of v's first element, or NULL when v is empty (the exact products'
    stencil, S = 0): taking &v[0] of an empty view is out of bounds."""
    return &v[0] if v.shape[0] > 0 else NULL


def bracket_norms(model, const double[::1] theta, const double[:, ::1] X,
                  const double[:, ::1] Y, const double[:, ::1] G, const double[::1] h,
                  const double[::1] c, const double[::1] w, const int64_t[:, ::1] pairs,
                  const int64_t[::1] bounds, double[:, ::1] out):
    """Squared norms per tensor of the listed pairs' brackets, none written out."""
    cdef const int64_t[::1] layout = _builtin(model, "fused bracket reductions")
    cdef int64_t P = G.shape[1], S = c.shape[0], d = X.shape[1], K = Y.shape[1]
    cdef int64_t wsize = int(model.work_size), start = int(model.stencil_start)
    cdef int64_t H1 = int(model.sizes[1]), npairs = pairs.shape[0], T = bounds.shape[0] - 1
    cdef int64_t first = 2 if layout[3] != 0 else 1
    cdef int nchunks = chunks(npairs)
    if npairs == 0:
        return
    cdef const double[:, ::1] aux = _aux(layout, theta, X, G)
    cdef int64_t naux = aux.shape[1], width = max(model.sizes)
    cdef int64_t nact = sum(model.sizes[1:])
    cdef const double[:, ::1] prim = _primals(layout, theta, X, Y, nact, S)
    if S == 0:
        wsize = int(model.hvp_work) - 2 * H1  # the exact products' scratch (with the + 2·H₁)
    cdef int64_t ch, q, a, b, p, t, o, failed = 0
    cdef double s, v
    cdef double* pts
    cdef double* work
    cdef double* da
    cdef double* db
    cdef double* fa
    cdef double* fb
    cdef const double* hp = _first(h)
    cdef const double* cp = _first(c)
    cdef const double* wp = _first(w)
    with nogil:
        for ch in prange(nchunks, schedule="static", chunksize=1, num_threads=nchunks):
            pts = <double*>malloc(max(S * P, 1) * sizeof(double))  # S = 0: exact
            work = <double*>malloc((wsize + 2 * H1) * sizeof(double))
            da = <double*>malloc((2 * P + 2 * H1) * sizeof(double))
            if pts == NULL or work == NULL or da == NULL:
                failed += 1
            else:
                db = da + P
                fa = da + 2 * P
                fb = fa + H1
                q = ch
                while q < npairs:
                    a = pairs[q, 0]
                    b = pairs[q, 1]
                    if a == b:  # [v_a, v_a] = 0 exactly
                        for t in range(T):
                            out[q, t] = 0.0
                    else:
                        _pair_blocks(&layout[0], P, start, &theta[0], &X[0, 0], &Y[0, 0],
                                     &G[0, 0], hp, cp, wp, S, &aux[0, 0], naux, d, K, a,
                                     b, pts, work, wsize, da, db, fa, fb, &prim[0, 0], nact,
                                     width)
                        out[q, 0] = _first_layer_norm(&X[a, 0], &X[b, 0], d,
                                                      <int>aux[a, naux - 1],
                                                      <int>aux[b, naux - 1], fa, fb, H1)
                        if first == 2:
                            s = 0.0
                            for o in range(H1):
                                v = fa[o] - fb[o]
                                s = s + v * v
                            out[q, 1] = s
                        for t in range(first, T):
                            s = 0.0
                            for p in range(bounds[t], bounds[t + 1]):
                                v = da[p] - db[p]
                                s = s + v * v
                            out[q, t] = s
                    q = q + nchunks
            free(pts)
            free(work)
            free(da)
    if failed:
        raise MemoryError("could not allocate the bracket scratch")


def bracket_logits(model, const double[::1] theta, const double[:, ::1] X,
                   const double[:, ::1] Y, const double[:, ::1] G, const double[::1] h,
                   const double[::1] c, const double[::1] w, const int64_t[:, ::1] pairs,
                   const double[:, ::1] Z, double[:, :, ::1] out):
    """The logits' change along each listed pair's bracket for every input of Z, none
    written out (numba_cpu's ``mlp.bracket_jvp``)."""
    cdef const int64_t[::1] layout = _builtin(model, "fused bracket reductions")
    cdef int64_t B = G.shape[0], P = G.shape[1], S = c.shape[0], d = X.shape[1], K = Y.shape[1]
    cdef int64_t wsize = int(model.work_size), start = int(model.stencil_start)
    cdef int64_t H1 = int(model.sizes[1]), npairs = pairs.shape[0], N = Z.shape[0]
    cdef int64_t L = layout[0], act = layout[1]
    cdef bint bias = layout[3] != 0
    cdef int64_t width = max(model.sizes)
    cdef int nchunks = chunks(npairs), zchunks = chunks(N, N * (P + B * d))
    if npairs == 0 or N == 0:
        return
    if S == 0:
        wsize = int(model.hvp_work) - 2 * H1  # the exact products' scratch (with the + 2·H₁)
    cdef const double[:, ::1] aux = _aux(layout, theta, X, G)
    cdef int64_t naux = aux.shape[1]
    cdef int64_t nact = sum(model.sizes[1:])
    cdef const double[:, ::1] prim = _primals(layout, theta, X, Y, nact, S)
    cdef double[:, ::1] acts = np.empty((N, max(int(model.work_size), 1)))
    cdef double[:, ::1] xz = np.empty((B, N))
    cdef int64_t ch, q, a, b, p, o, i, z, e, layer, nin, nout, woff, boff, src, failed = 0
    cdef double s
    cdef double* pts
    cdef double* work
    cdef double* da
    cdef double* db
    cdef double* fa
    cdef double* fb
    cdef double* u
    cdef double* t
    cdef const double* hp = _first(h)
    cdef const double* cp = _first(c)
    cdef const double* wp = _first(w)
    with nogil:
        for z in prange(N, schedule="static", num_threads=zchunks):
            _forward(&theta[0], &Z[z, 0], &layout[0], &acts[z, 0])
            for e in range(B):
                s = 1.0 if bias else 0.0
                for i in range(d):
                    s = s + X[e, i] * Z[z, i]
                xz[e, z] = s
        for ch in prange(nchunks, schedule="static", chunksize=1, num_threads=nchunks):
            pts = <double*>malloc(max(S * P, 1) * sizeof(double))  # S = 0: exact
            work = <double*>malloc((wsize + 2 * H1) * sizeof(double))
            da = <double*>malloc((2 * P + 2 * H1 + 2 * width) * sizeof(double))
            if pts == NULL or work == NULL or da == NULL:
                failed += 1
            else:
                db = da + P
                fa = da + 2 * P
                fb = fa + H1
                u = fb + H1
                t = u + width
                q = ch
                while q < npairs:
                    a = pairs[q, 0]
                    b = pairs[q, 1]
                    if a == b:
                        for z in range(N):
                            for o in range(K):
                                out[q, z, o] = 0.0
                    else:
                        _pair_blocks(&layout[0], P, start, &theta[0], &X[0, 0], &Y[0, 0],
                                     &G[0, 0], hp, cp, wp, S, &aux[0, 0], naux, d, K, a,
                                     b, pts, work, wsize, da, db, fa, fb, &prim[0, 0], nact,
                                     width)
                        for p in range(start, P):
                            da[p] = da[p] - db[p]
                        for z in range(N):
                            for o in range(H1):  # the first layer's pre-activation tangent
                                t[o] = fa[o] * xz[b, z] - fb[o] * xz[a, z]
                            for layer in range(1, L):
                                nin = layout[4 + layer]
                                nout = layout[5 + layer]
                                woff = layout[5 + L + layer]
                                boff = layout[5 + 2 * L + layer]
                                src = layout[5 + 3 * L + layer - 1]
                                for i in range(nin):
                                    u[i] = t[i] * _dactivate(acts[z, src + i], act)
                                for o in range(nout):
                                    s = da[boff + o] if bias else 0.0
                                    for i in range(nin):
                                        s = s + (theta[woff + o * nin + i] * u[i]
                                                 + da[woff + o * nin + i] * acts[z, src + i])
                                    t[o] = s
                            for o in range(K):
                                out[q, z, o] = t[o]
                    q = q + nchunks
            free(pts)
            free(work)
            free(da)
    if failed:
        raise MemoryError("could not allocate the bracket scratch")


def _primals(const int64_t[::1] layout, const double[::1] theta, const double[:, ::1] X,
             const double[:, ::1] Y, int64_t nact, int64_t S):
    """Every example's primal pass for the exact products (S = 0); a dummy otherwise."""
    cdef int64_t B = X.shape[0], b
    if S:
        return np.zeros((1, 1))
    prim = np.empty((B, 3 * nact))
    cdef double[:, ::1] pv = prim
    cdef int nthreads = chunks(B, 3 * B * theta.shape[0])
    with nogil:
        for b in prange(B, schedule="static", num_threads=nthreads):
            _primal(&theta[0], &X[b, 0], &Y[b, 0], &layout[0], nact, &pv[b, 0])
    return prim
