"""The compiled per-example gradient of the built-in MLPs (:class:`fastperm.models.MLP` and its
one-layer cases), and the stencil kernel the cached bracket drivers of :mod:`.lie` call.

``mlp_grad(theta, x, y, layout, work, out, alpha, beta)`` follows the kernel signature of
:mod:`fastperm.models` (``out ← alpha · g + beta · out``); ``layout`` is ``MLP.layout``.
:func:`mlp_directional` evaluates one finite-difference stencil with the exact first-layer
shortcut, given the per-example data :func:`mlp_aux` computes (``MLP.bracket_aux``).
The same maths in C: :mod:`fastperm.backends._cython.lie`; on the GPU:
:mod:`fastperm.backends.numba_cuda.lie`.
"""

from __future__ import annotations

import math

from numba import prange

from ..._jit import JIT, Twins, njit
from .parallel import chunks


@njit(inline="always", **JIT)
def _activate(v, act):
    """tanh (act = 0) or ReLU (act = 1)."""
    return math.tanh(v) if act == 0 else max(v, 0.0)


@njit(inline="always", **JIT)
def _dactivate(a, act):
    """The activation's derivative, from its output a: 1 − a² (tanh) or [a > 0] (ReLU)."""
    return (1.0 - a * a) if act == 0 else (1.0 if a > 0.0 else 0.0)


@njit(inline="always", **JIT)
def _sigmoid(z):
    """The logistic function, without overflow for either sign of z."""
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    ez = math.exp(z)
    return ez / (1.0 + ez)


@njit(inline="always", **JIT)
def _layer_matrix(v, layout, layer):
    """Layer l's (out × in) block of a parameter-shaped vector (θ or a gradient), as a view."""
    L = layout[0]
    nin = layout[4 + layer]
    nout = layout[5 + layer]
    off = layout[5 + L + layer]
    return v[off : off + nout * nin].reshape((nout, nin))


@njit(inline="always", **JIT)
def _layer_output(work, layout, layer):
    """Layer l's activations in the work buffer, as a view."""
    L = layout[0]
    off = layout[5 + 3 * L + layer]
    return work[off : off + layout[5 + layer]]


@njit(inline="always", **JIT)
def _affine(W, theta, boff, bias, src, dst, hidden, act):
    """``dst = act(W src + b)`` (the activation only on hidden layers)."""
    for o in range(W.shape[0]):
        s = theta[boff + o] if bias else 0.0
        row = W[o]
        for i in range(W.shape[1]):
            s += row[i] * src[i]
        dst[o] = _activate(s, act) if hidden else s


@njit(inline="always", **JIT)
def _outer(delta, src, G, gb, bias, beta):
    """``G ← delta ⊗ src + beta G``, ``gb ← delta + beta gb`` (reads G only when beta ≠ 0)."""
    for o in range(G.shape[0]):
        dl = delta[o]
        row = G[o]
        if beta == 0.0:
            for i in range(G.shape[1]):
                row[i] = dl * src[i]
            if bias:
                gb[o] = dl
        else:
            for i in range(G.shape[1]):
                row[i] = dl * src[i] + beta * row[i]
            if bias:
                gb[o] = dl + beta * gb[o]


@njit(**JIT)
def mlp_grad(theta, x, y, layout, work, out, alpha, beta):
    """``out ← alpha · g + beta · out``, g the per-example gradient of
    :class:`fastperm.models.MLP`.

    See :func:`_mlp_backprop` for ``layout`` and ``work``.
    """
    _mlp_backprop(theta, x, y, layout, work, out, alpha, beta, work[:0], work[:0])


@njit(inline="always", **JIT)
def _mlp_backprop(theta, x, y, layout, work, out, alpha, beta, acc0, z1):
    """Backpropagation. When ``acc0`` is non-empty the first layer's delta goes to
    ``acc0 += delta`` instead of out (the stencil sum of :func:`mlp_directional`);
    when ``z1`` is non-empty it is the first layer's pre-activation (θ's first layer
    is then not read).

    ``layout = [L, activation, loss, bias, sizes (L+1), W offsets (L), b offsets (L),
    activation offsets (L)]``; ``work`` holds the activations of layers 1..L
    followed by two delta buffers of ``max(sizes)`` entries. Each layer works on
    2-D views of θ and out (3× faster than flat index arithmetic, measured).
    """
    L = layout[0]
    act = layout[1]
    loss = layout[2]
    bias = layout[3] != 0
    sz = 4
    pw = sz + L + 1
    pb = pw + L
    nact = 0
    maxs = 0
    for layer in range(L + 1):
        maxs = max(maxs, layout[sz + layer])
        if layer > 0:
            nact += layout[sz + layer]
    dA = work[nact : nact + maxs]
    dB = work[nact + maxs : nact + 2 * maxs]
    # forward
    for layer in range(L):
        W = _layer_matrix(theta, layout, layer)
        dst = _layer_output(work, layout, layer)
        if layer == 0:
            if z1.shape[0] > 0:
                for o in range(dst.shape[0]):
                    dst[o] = _activate(z1[o], act) if L > 1 else z1[o]
            else:
                _affine(W, theta, layout[pb + layer], bias, x, dst, L > 1, act)
        else:
            _affine(
                W,
                theta,
                layout[pb + layer],
                bias,
                _layer_output(work, layout, layer - 1),
                dst,
                layer < L - 1,
                act,
            )
    # output delta: alpha · dL/dz
    K = layout[sz + L]
    z = _layer_output(work, layout, L - 1)
    for o in range(K):
        if loss == 0:
            dA[o] = alpha * (_sigmoid(z[o]) - y[o]) / K
        else:
            dA[o] = alpha * (z[o] - y[o]) / K
    cur = dA
    nxt = dB
    # backward
    for layer in range(L - 1, -1, -1):
        G = _layer_matrix(out, layout, layer)
        gb = out[layout[pb + layer] : layout[pb + layer] + G.shape[0]]
        if layer == 0:
            if acc0.shape[0] > 0:
                for o in range(G.shape[0]):
                    acc0[o] += cur[o]
            else:
                _outer(cur, x, G, gb, bias, beta)
        else:
            src = _layer_output(work, layout, layer - 1)
            _outer(cur, src, G, gb, bias, beta)
            W = _layer_matrix(theta, layout, layer)
            nin = W.shape[1]
            for i in range(nin):
                nxt[i] = 0.0
            for o in range(W.shape[0]):
                dl = cur[o]
                row = W[o]
                for i in range(nin):
                    nxt[i] += dl * row[i]
            for i in range(nin):
                nxt[i] *= _dactivate(src[i], act)
            cur, nxt = nxt, cur


@njit(**JIT)
def mlp_directional(layout, pts, w, c, hx, xi, yi, aux, X, Y, work, out, first_layer):
    """``out = Σ_j w_j g_y(θ + c_j h_x g_x) / h_x`` for :class:`fastperm.models.MLP`, exploiting
    the first layer.

    The first-layer block of g_x is ``δ₁ₓ ⊗ xₓ`` (and δ₁ₓ for its bias), so at the
    stencil point j example y's first pre-activation is, exactly,
    ``z₁ = (W₁ x_y + b₁) + c_j h_x (xₓ·x_y + 1) δ₁ₓ``: O(H₁) instead of O(H₁·d)
    given ``aux`` (:meth:`fastperm.models.MLP.bracket_aux`: per example W₁x + b₁, δ₁, the
    Gram row xₓ·x_y + 1, scaled, and a scale exponent; see ``_aux_body``). Where the Gram
    entry ``xₓ·x_y + 1 = 2^(eₓ+e_y) G̃`` overflows (inputs beyond ~1e154 gave NaN before),
    the update is formed as ``2^e_y (G̃ · 2^eₓ (c_j h_x δ₁ₓ))``: ``2^eₓ h_x δ₁ₓ`` is at most
    ``h_x ‖g_x‖``, so no intermediate overflows where the plain path ``θ + c_j h_x g_x`` is
    finite. (``ldexp`` calls, not products: fastmath may reorder a chain of products,
    and hoisting ``2^eₓ · 2^e_y G̃`` out of the loop overflowed.) The first layer's gradient,
    ``δ₁ ⊗ x_y``, has the
    same x_y at every stencil point, so its stencil sum is written once:
    ``(Σ_j w_j δ₁(θ_j)/h_x) ⊗ x_y`` — or not at all when ``first_layer`` is False: the
    fused reductions use the stencil sum itself, left in ``work[-2 H₁:-H₁]``
    (:func:`directional_delta`). Deeper layers are evaluated at ``pts[j]``,
    which the driver fills from ``stencil_start`` on. ``work``: ``directional_work``
    entries. No function is passed in, so this and its drivers can be cached
    (Numba's cache index breaks on signatures holding other jitted functions).
    """
    L = layout[0]
    b1 = layout[5 + 2 * L]  # offset of the first bias
    bias = layout[3] != 0
    H1 = layout[5]
    base = work.shape[0] - 2 * H1
    acc = work[base : base + H1]
    z1 = work[base + H1 : base + 2 * H1]
    inner = work[:base]
    for k in range(H1):
        acc[k] = 0.0
    scale = aux.shape[1] - 1
    ex = int(aux[xi, scale])
    ey = int(aux[yi, scale])
    gram = aux[xi, 2 * H1 + yi]
    kb = math.ldexp(gram, ex + ey)  # xₓ·x_y + bias, exactly (unless it overflows)
    finite = math.isfinite(kb)
    invh = 1.0 / hx
    for j in range(pts.shape[0]):
        s = c[j] * hx * kb
        for o in range(H1):
            if finite:
                z1[o] = aux[yi, o] + s * aux[xi, H1 + o]
            else:
                z1[o] = aux[yi, o] + math.ldexp(
                    math.ldexp(c[j] * hx * aux[xi, H1 + o], ex) * gram, ey
                )
        _mlp_backprop(
            pts[j], X[yi], Y[yi], layout, inner, out, w[j] * invh, 0.0 if j == 0 else 1.0, acc, z1
        )
    if first_layer:
        _outer(acc, X[yi], _layer_matrix(out, layout, 0), out[b1 : b1 + H1], bias, 0.0)


@njit(inline="always", **JIT)
def directional_delta(layout, work):
    """The stencil sum of the first layer's deltas that :func:`mlp_directional` leaves in
    ``work`` (its first-layer gradient block is this ⊗ x_y, its first bias block this)."""
    H1 = layout[5]
    base = work.shape[0] - 2 * H1
    return work[base : base + H1]


@njit(**JIT)
def mlp_forward(theta, x, layout, acts):
    """The activations of every layer for input x (``acts``: the layout's activation part of
    the work buffer, layers 1..L; the last layer's are the logits)."""
    L = layout[0]
    act = layout[1]
    bias = layout[3] != 0
    pb = 5 + 2 * L
    for layer in range(L):
        W = _layer_matrix(theta, layout, layer)
        src = x if layer == 0 else _layer_output(acts, layout, layer - 1)
        _affine(
            W,
            theta,
            layout[pb + layer],
            bias,
            src,
            _layer_output(acts, layout, layer),
            layer < L - 1,
            act,
        )


@njit(inline="always", **JIT)
def _scale_exponent(x):
    """e with ``max |x| = m·2^e``, ½ ≤ m < 1, clipped to [0, 1023] (inputs below 1 are not
    scaled; 2^1023 is the largest power of two): ``x / 2^e`` is exact and at most 2."""
    top = 0.0
    for i in range(x.shape[0]):
        top = max(top, abs(x[i]))
    return min(max(math.frexp(top)[1], 0), 1023)


def _aux_body(theta, X, G, layout, aux):
    """Per example b: ``aux[b] = [W₁x_b + b₁ | δ₁ᵦ | G̃_bc for every c | e_b]``.

    ``ρ_b = 2^e_b`` with ``max |x_b| = m·2^e_b`` (½ ≤ m < 1; e_b = 0 below 1), and the Gram
    entries scaled, ``G̃_bc = (x_b/ρ_b)·(x_c/ρ_c) + bias/(ρ_b ρ_c)``, so
    ``x_b·x_c + bias = ρ_b ρ_c G̃_bc`` (powers of two: exact, and the same bits as the
    unscaled sum) without forming a product that overflows for |x| > 1e154.
    δ₁ is read off the gradient: the first bias block when there is one, else
    ``G_W₁ x̂ / (x̂·x̂) / ρ`` with x̂ = x/ρ (G_W₁ = δ₁ ⊗ x; zero when x = 0, where it does
    not matter).
    """
    L = layout[0]
    pb0 = layout[5 + 2 * L]  # offset of the first bias
    bias = layout[3] != 0
    d = layout[4]
    H1 = layout[5]
    B = X.shape[0]
    scale = aux.shape[1] - 1
    W1 = _layer_matrix(theta, layout, 0)
    for b in range(B):  # every row's exponent first: the Gram rows need them all
        aux[b, scale] = _scale_exponent(X[b])
    for b in prange(B):
        x = X[b]
        eb = int(aux[b, scale])
        inv = math.ldexp(1.0, -eb)
        for o in range(H1):
            s = theta[pb0 + o] if bias else 0.0
            row = W1[o]
            for i in range(d):
                s += row[i] * x[i]
            aux[b, o] = s
        xx = 0.0
        for i in range(d):
            xx += (x[i] * inv) * (x[i] * inv)
        for o in range(H1):
            if bias:
                aux[b, H1 + o] = G[b, pb0 + o]
            else:
                Gb = _layer_matrix(G[b], layout, 0)[o]
                s = 0.0
                for i in range(d):
                    s += Gb[i] * (x[i] * inv)
                aux[b, H1 + o] = s / xx * inv if xx > 0.0 else 0.0
        for c in range(B):
            ec = int(aux[c, scale])
            invc = math.ldexp(1.0, -ec)
            s = math.ldexp(1.0, -eb - ec) if bias else 0.0
            for i in range(d):
                s += (x[i] * inv) * (X[c, i] * invc)
            aux[b, 2 * H1 + c] = s


_aux_driver = Twins(_aux_body)


def mlp_aux(theta, X, G, layout, aux):
    """The first-layer shortcut's per-example data (``prange`` over examples; serial for one
    example or one thread); see ``_aux_body``."""
    B, d = X.shape
    _aux_driver(chunks(B, B * d * (layout[5] + B)), theta, X, G, layout, aux)


# -- exact Hessian-vector products (forward over reverse) for the fused bracket reductions ------


@njit(inline="always", **JIT)
def _d2activate(a, act):
    """The activation's second derivative from its output: −2a(1 − a²) (tanh), 0 (ReLU)."""
    return -2.0 * a * (1.0 - a * a) if act == 0 else 0.0


def _primal_body(theta, X, Y, layout, prim):
    """Per example b: ``prim[b] = [a (activations) | e (∂loss/∂z) | m (Wᵀe of the layer
    above)]``, each at the layout's activation offsets: what :func:`mlp_hvp` differentiates."""
    L = layout[0]
    act = layout[1]
    loss = layout[2]
    nact = 0
    for layer in range(1, L + 1):
        nact += layout[4 + layer]
    K = layout[4 + L]
    for b in prange(X.shape[0]):
        a = prim[b, :nact]
        e = prim[b, nact : 2 * nact]
        m = prim[b, 2 * nact : 3 * nact]
        mlp_forward(theta, X[b], layout, a)
        zL = _layer_output(a, layout, L - 1)
        eL = _layer_output(e, layout, L - 1)
        for o in range(K):
            eL[o] = ((_sigmoid(zL[o]) if loss == 0 else zL[o]) - Y[b, o]) / K
        for layer in range(L - 1, 0, -1):
            W = _layer_matrix(theta, layout, layer)
            up = _layer_output(e, layout, layer)
            below = _layer_output(m, layout, layer - 1)
            src = _layer_output(a, layout, layer - 1)
            dst = _layer_output(e, layout, layer - 1)
            for i in range(W.shape[1]):
                s = 0.0
                for o in range(W.shape[0]):
                    s += W[o, i] * up[o]
                below[i] = s
                dst[i] = s * _dactivate(src[i], act)


_primal_driver = Twins(_primal_body)


def mlp_primal(theta, X, Y, layout, prim):
    """:func:`_primal_body` for every example (``prange``; serial for one chunk)."""
    _primal_driver(chunks(X.shape[0], 3 * X.shape[0] * theta.shape[0]), theta, X, Y, layout, prim)


@njit(**JIT)
def mlp_hvp(layout, theta, u, xi, yi, aux, prim, scratch, out, f):
    """``H_y u`` exactly, by forward-mode differentiation of the backpropagation, for
    ``u = g_x`` (whose first-layer blocks are ``δ₁ₓ ⊗ xₓ`` and δ₁ₓ).

    With z_l = W_l a_{l−1} + b_l, a_l = σ(z_l), e_l = ∂loss/∂z_l and m_l = W_{l+1}ᵀ e_{l+1}
    (so e_l = m_l ⊙ σ'(z_l)) of example y at θ (``prim[y]``, :func:`mlp_primal`), and U_l,
    c_l the blocks of u: ż₁ = δ₁ₓ (xₓ·x_y + bias) (the Gram entry of ``aux``, as in
    :func:`mlp_directional`), ż_l = W_l ȧ_{l−1} + U_l a_{l−1} + c_l, ȧ_l = σ'(z_l) ż_l;
    ė_L = ℓ''(z_L) ż_L; ė_l = (W_{l+1}ᵀ ė_{l+1} + U_{l+1}ᵀ e_{l+1}) ⊙ σ'(z_l)
    + m_l ⊙ σ''(z_l) ż_l. The product's blocks are ė_l ⊗ a_{l−1} + e_l ⊗ ȧ_{l−1} and ė_l,
    written into ``out`` for layers 2.. (from ``stencil_start`` on); the first layer's is
    ``ė₁ ⊗ x_y`` (ȧ₀ = 0), of which only ``f = ė₁`` is written. No stencil, no step: exact
    to rounding. ``scratch``: 2·(activations) + 2·max(sizes) entries.
    """
    L = layout[0]
    act = layout[1]
    loss = layout[2]
    bias = layout[3] != 0
    H1 = layout[5]
    nact = 0
    width = 0
    for layer in range(L + 1):
        width = max(width, layout[4 + layer])
        if layer > 0:
            nact += layout[4 + layer]
    K = layout[4 + L]
    a = prim[yi, :nact]
    e = prim[yi, nact : 2 * nact]
    m = prim[yi, 2 * nact : 3 * nact]
    dz = scratch[:nact]
    da = scratch[nact : 2 * nact]
    cur = scratch[2 * nact : 2 * nact + width]
    nxt = scratch[2 * nact + width : 2 * nact + 2 * width]
    # the first layer's tangent: U₁ x_y + c₁ = δ₁ₓ (xₓ·x_y + bias), overflow-safe as in
    # mlp_directional
    scale = aux.shape[1] - 1
    ex = int(aux[xi, scale])
    ey = int(aux[yi, scale])
    gram = aux[xi, 2 * H1 + yi]
    kb = math.ldexp(gram, ex + ey)
    finite = math.isfinite(kb)
    for o in range(H1):
        if finite:
            dz[o] = kb * aux[xi, H1 + o]
        else:
            dz[o] = math.ldexp(math.ldexp(aux[xi, H1 + o], ex) * gram, ey)
    # forward tangents
    for layer in range(L):
        zdot = _layer_output(dz, layout, layer)
        if layer > 0:
            W = _layer_matrix(theta, layout, layer)
            U = _layer_matrix(u, layout, layer)
            boff = layout[5 + 2 * L + layer]
            src = _layer_output(a, layout, layer - 1)
            dsrc = _layer_output(da, layout, layer - 1)
            for o in range(W.shape[0]):
                s = u[boff + o] if bias else 0.0
                for i in range(W.shape[1]):
                    s += W[o, i] * dsrc[i] + U[o, i] * src[i]
                zdot[o] = s
        if layer < L - 1:
            adot = _layer_output(da, layout, layer)
            out_a = _layer_output(a, layout, layer)
            for o in range(zdot.shape[0]):
                adot[o] = _dactivate(out_a[o], act) * zdot[o]
    # the output delta's tangent: ℓ''(z_L) ż_L
    zL = _layer_output(a, layout, L - 1)
    dzL = _layer_output(dz, layout, L - 1)
    for o in range(K):
        if loss == 0:
            sg = _sigmoid(zL[o])
            cur[o] = sg * (1.0 - sg) * dzL[o] / K
        else:
            cur[o] = dzL[o] / K
    # backward tangents
    for layer in range(L - 1, -1, -1):
        nout = layout[5 + layer]
        el = _layer_output(e, layout, layer)
        if layer == 0:
            for o in range(H1):
                f[o] = cur[o]
            break
        W = _layer_matrix(theta, layout, layer)
        U = _layer_matrix(u, layout, layer)
        G = _layer_matrix(out, layout, layer)
        boff = layout[5 + 2 * L + layer]
        src = _layer_output(a, layout, layer - 1)
        dsrc = _layer_output(da, layout, layer - 1)
        for o in range(nout):
            row = G[o]
            for i in range(W.shape[1]):
                row[i] = cur[o] * src[i] + el[o] * dsrc[i]
            if bias:
                out[boff + o] = cur[o]
        below = _layer_output(m, layout, layer - 1)
        zdot = _layer_output(dz, layout, layer - 1)
        nin = W.shape[1]
        for i in range(nin):
            nxt[i] = 0.0
        for o in range(nout):  # row by row: contiguous, vectorised over i
            co = cur[o]
            eo = el[o]
            for i in range(nin):
                nxt[i] += W[o, i] * co + U[o, i] * eo
        for i in range(nin):
            cur[i] = (
                nxt[i] * _dactivate(src[i], act) + below[i] * _d2activate(src[i], act) * zdot[i]
            )


# -- the fused reductions' per-pair maths (drivers: numba_cpu/lie.py) ---------------------------


@njit(**JIT)
def first_layer_norm(xa, xb, ea, eb, fa, fb):
    """``‖fa ⊗ x_b − fb ⊗ x_a‖²`` in O(H₁ + d), with x_a split along x_b.

    With ``x̃ = x / 2^e`` (e: the aux scale exponents, so nothing overflows for |x| up
    to float64's limit), ``Fa = 2^{e_b} fa``, ``Fb = 2^{e_a} fb`` and
    ``x̃_a = r x̃_b + x̃_⊥`` (r = x̃_a·x̃_b / |x̃_b|²), the matrix is
    ``(Fa − r Fb) ⊗ x̃_b − Fb ⊗ x̃_⊥``, two orthogonal rank-one terms:
    ``‖·‖² = |x̃_b|² |Fa − r Fb|² + |x̃_⊥|² |Fb|²``. The difference that can cancel,
    ``Fa − r Fb``, is formed entry by entry (as the full array's entries ``fa_o x_b,i −
    fb_o x_a,i`` are) and x̃_⊥ explicitly; the rounding of r leaves a relative error of
    about ε·|x_a|/|x_⊥|, the order of the full array's own.
    """
    ia = math.ldexp(1.0, -int(ea))
    ib = math.ldexp(1.0, -int(eb))
    nb2 = 0.0
    ab = 0.0
    for i in range(xb.shape[0]):
        xbi = xb[i] * ib
        nb2 += xbi * xbi
        ab += (xa[i] * ia) * xbi
    r = ab / nb2 if nb2 > 0.0 else 0.0
    perp2 = 0.0
    for i in range(xa.shape[0]):
        v = xa[i] * ia - r * (xb[i] * ib)
        perp2 += v * v
    along = 0.0
    across = 0.0
    for o in range(fa.shape[0]):
        Fa = math.ldexp(fa[o], int(eb))
        Fb = math.ldexp(fb[o], int(ea))
        v = Fa - r * Fb
        along += v * v
        across += Fb * Fb
    return nb2 * along + perp2 * across


@njit(**JIT)
def bracket_jvp(layout, theta, V, fa, fb, gram_b, gram_a, acts, u, t, out):
    """``out = J_f(θ; z) · b``, the logits' change at input z along a bracket b held in
    factored form: ``V`` its blocks from layer 2 on, ``fa ⊗ x_b − fb ⊗ x_a`` its first
    layer's weights (``fa − fb`` the bias), ``gram_b = x_b·z + bias`` and
    ``gram_a = x_a·z + bias``, ``acts`` z's activations at θ (:func:`mlp_forward`).

    Forward mode: ż₁ = fa gram_b − fb gram_a (O(H₁), not O(H₁ d)), then layer by layer
    ż_l = W_l (σ'(z_{l−1}) ⊙ ż_{l−1}) + V_l a_{l−1} + V_b,l; out = ż_L (the logits are linear).
    ``u``, ``t``: scratch of max(sizes) entries."""
    L = layout[0]
    act = layout[1]
    bias = layout[3] != 0
    for o in range(layout[5]):
        t[o] = fa[o] * gram_b - fb[o] * gram_a
    for layer in range(1, L):  # 2-D views, as in _mlp_backprop (SIMD)
        W = _layer_matrix(theta, layout, layer)
        Vl = _layer_matrix(V, layout, layer)
        boff = layout[5 + 2 * L + layer]
        src = _layer_output(acts, layout, layer - 1)
        for i in range(W.shape[1]):  # through the activation of the layer below
            u[i] = t[i] * _dactivate(src[i], act)
        for o in range(W.shape[0]):
            s = V[boff + o] if bias else 0.0
            row = W[o]
            vrow = Vl[o]
            for i in range(W.shape[1]):
                s += row[i] * u[i] + vrow[i] * src[i]
            t[o] = s
    for o in range(out.shape[0]):
        out[o] = t[o]
