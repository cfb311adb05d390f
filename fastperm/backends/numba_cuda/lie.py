"""Batched finite-difference Lie brackets of the built-in MLPs as CUDA kernels.

``[v_x, v_y] = H_y g_x − H_x g_y`` with ``H_y g_x ≈ Σ_j w_j g_y(θ + c_j h_x g_x) / h_x``
(the stencils of :mod:`fastperm.lie`). Mapping: **one block per ordered pair
(x, y)**; its threads evaluate example y's gradient at the stencil points
along g_x layer by layer — a layer's outputs (forward), its gradient entries
and its input deltas (backward) are spread over the threads, with a barrier
between layers — and accumulate the stencil sum straight into ``out[x, y]``
(each output entry always belongs to the same thread, so the sum needs no
atomics). The stencil point ``θ + c_j h_x g_x`` is never stored: parameters are
read as ``θ_p + s·G[x, p]``. The layer activations and the two delta buffers
live in the block's dynamic shared memory (``model.work_size`` floats, the
CPU work layout). A second kernel combines ``out[x, y] − out[y, x]`` in place,
one thread per entry of the upper triangle. Gradient evaluations: S·B(B − 1),
as on the CPU.

Fused reductions (``bracket_norms``, ``bracket_logits``): the pairs go in chunks of
:data:`fastperm.knobs.CUDA_PAIR_CHUNK_BYTES`; a chunk's directional derivatives stay on the
device, where one block per pair sums each tensor's squares (a shared-memory tree), or one
block per (pair, input) runs the forward-mode pass of the logits along the bracket (a
layer's outputs spread over the threads, the primal and tangent activations in shared
memory). Only the (pairs, tensors) or (pairs, inputs, K) results come back: the host never
holds a bracket.

Built-in models only (MLP, LinearRegression, MultiLabelLogistic): a
CustomModel's gradient is a CPU function.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, float64

from ... import knobs
from . import device

#: dynamic shared memory a block may ask for without opting in (bytes)
SHARED_BYTES = 48 * 1024
#: blocks along a grid's second axis, at most
MAX_GRID_Y = 65535


@cuda.jit(device=True)
def _act(v, act):
    return math.tanh(v) if act == 0 else max(v, 0.0)


@cuda.jit(device=True)
def _dact(a, act):
    return (1.0 - a * a) if act == 0 else (1.0 if a > 0.0 else 0.0)


@cuda.jit(device=True)
def _stencil_grad(layout, theta, Gx, c, wts, hx, x, yv, sh, out, tid, nt):
    """``out = Σ_j wts_j g(θ + c_j hx Gx; x, yv) / hx``, computed by the block's threads.

    ``layout`` and the shared buffer ``sh`` follow
    :func:`fastperm.backends.numba_cpu.mlp._mlp_backprop`.
    """
    L = layout[0]
    act = layout[1]
    loss = layout[2]
    bias = layout[3] != 0
    nact = 0
    maxs = 0
    for layer in range(L + 1):
        maxs = max(maxs, layout[4 + layer])
        if layer > 0:
            nact += layout[4 + layer]
    K = layout[4 + L]
    invh = 1.0 / hx
    for jpt in range(c.shape[0]):
        s = c[jpt] * hx
        alpha = wts[jpt] * invh
        first = jpt == 0
        # forward
        for layer in range(L):
            nin = layout[4 + layer]
            nout = layout[5 + layer]
            woff = layout[5 + L + layer]
            boff = layout[5 + 2 * L + layer]
            dst = layout[5 + 3 * L + layer]
            src = layout[5 + 3 * L + layer - 1] if layer > 0 else 0
            for o in range(tid, nout, nt):
                z = (theta[boff + o] + s * Gx[boff + o]) if bias else 0.0
                base = woff + o * nin
                for i in range(nin):
                    xi = x[i] if layer == 0 else sh[src + i]
                    z += (theta[base + i] + s * Gx[base + i]) * xi
                sh[dst + o] = _act(z, act) if layer < L - 1 else z
            cuda.syncthreads()
        # output delta: alpha · dL/dz
        zoff = layout[5 + 3 * L + L - 1]
        cur = nact
        nxt = nact + maxs
        for o in range(tid, K, nt):
            z = sh[zoff + o]
            if loss == 0:
                if z >= 0:
                    sig = 1.0 / (1.0 + math.exp(-z))
                else:
                    ez = math.exp(z)
                    sig = ez / (1.0 + ez)
                sh[cur + o] = alpha * (sig - yv[o]) / K
            else:
                sh[cur + o] = alpha * (z - yv[o]) / K
        cuda.syncthreads()
        # backward
        for layer in range(L - 1, -1, -1):
            nin = layout[4 + layer]
            nout = layout[5 + layer]
            woff = layout[5 + L + layer]
            boff = layout[5 + 2 * L + layer]
            src = layout[5 + 3 * L + layer - 1] if layer > 0 else 0
            for f in range(tid, nout * nin, nt):
                o = f // nin
                i = f - o * nin
                xi = x[i] if layer == 0 else sh[src + i]
                g = sh[cur + o] * xi
                out[woff + f] = g if first else out[woff + f] + g
            if bias:
                for o in range(tid, nout, nt):
                    g = sh[cur + o]
                    out[boff + o] = g if first else out[boff + o] + g
            if layer > 0:
                for i in range(tid, nin, nt):
                    v = 0.0
                    for o in range(nout):
                        p = woff + o * nin + i
                        v += sh[cur + o] * (theta[p] + s * Gx[p])
                    sh[nxt + i] = v * _dact(sh[src + i], act)
                cuda.syncthreads()
                cur, nxt = nxt, cur
        cuda.syncthreads()  # the next stencil point overwrites the activations


@cuda.jit
def _example_grads_kernel(layout, theta, X, Y, c, wts, out):
    """Block b: ``out[b] = g_b(θ)`` (the one-point stencil c = 0, w = 1)."""
    sh = cuda.shared.array(0, float64)
    b = cuda.blockIdx.x
    _stencil_grad(
        layout, theta, theta, c, wts, 1.0, X[b], Y[b], sh, out[b], cuda.threadIdx.x, cuda.blockDim.x
    )


@cuda.jit
def _directional_kernel(layout, theta, X, Y, G, h, c, wts, pairs, out):
    """Block q: ``out[q] = H_b g_a`` for the ordered pair ``(a, b) = pairs[q]`` (zero if a = b)."""
    sh = cuda.shared.array(0, float64)
    q = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    a = pairs[q, 0]
    b = pairs[q, 1]
    dst = out[q]
    if a == b:
        for p in range(tid, dst.shape[0], nt):
            dst[p] = 0.0
        return
    _stencil_grad(layout, theta, G[a], c, wts, h[a], X[b], Y[b], sh, dst, tid, nt)


@cuda.jit
def _combine_all(D, out):
    """``out[x, y] = D[x, y] − D[y, x]`` (D is (B·B, P) with row x·B + y = H_y g_x)."""
    idx = cuda.grid(1)
    B = out.shape[0]
    P = out.shape[2]
    if idx >= B * B * P:
        return
    x = idx // (B * P)
    y = (idx // P) % B
    p = idx % P
    out[x, y, p] = D[x * B + y, p] - D[y * B + x, p]


@cuda.jit
def _combine_pairs(D, out):
    """``out[q] = D[2q] − D[2q + 1]``."""
    idx = cuda.grid(1)
    Q, P = out.shape
    if idx >= Q * P:
        return
    q = idx // P
    p = idx % P
    out[q, p] = D[2 * q, p] - D[2 * q + 1, p]


def _check(model, what):
    if not getattr(model, "builtin", False):
        raise TypeError(
            f"the cuda backend computes {what} for the built-in models only (MLP, "
            f"LinearRegression, MultiLabelLogistic), not {model.name}: a CustomModel's gradient "
            f"is a CPU (Numba) function; use backend='numba'"
        )
    need = model.work_size * 8
    if need > SHARED_BYTES:
        raise ValueError(
            f"the model's layers are too wide for the cuda backend: a block keeps the "
            f"activations in {need} bytes of shared memory, more than {SHARED_BYTES}; use "
            f"backend='numba'"
        )
    return need


def _launch(kernel, blocks, nt, shared, *args):
    with device.quiet_simulator():
        kernel[blocks, nt, 0, shared](*args)


def _flat_launch(count):
    nt = device.block(1024)
    return (count + nt - 1) // nt, nt


def example_grads(model, theta, X, Y, out):
    shared = _check(model, "gradients")
    res = device.Outputs(out)
    nt = device.block(max(model.sizes))
    zero, one = np.zeros(1), np.ones(1)
    _launch(
        _example_grads_kernel,
        X.shape[0],
        nt,
        shared,
        device.to_device(model.layout),
        device.to_device(theta),
        device.to_device(X),
        device.to_device(Y),
        device.to_device(zero),
        device.to_device(one),
        *res.dev,
    )
    res.finish()


def _directional(model, theta, X, Y, G, h, c, w, pairs):
    """Device (Q, P) array of ``H_b g_a`` for the ordered pairs."""
    shared = _check(model, "brackets")
    Q = pairs.shape[0]
    D = cuda.device_array((Q, model.P))
    nt = device.block(max(model.sizes))
    _launch(
        _directional_kernel,
        Q,
        nt,
        shared,
        device.to_device(model.layout),
        device.to_device(theta),
        device.to_device(X),
        device.to_device(Y),
        device.to_device(G),
        device.to_device(h),
        device.to_device(c),
        device.to_device(w),
        device.to_device(pairs),
        D,
    )
    return D


def brackets_all(model, theta, X, Y, G, h, c, w, out):
    B = G.shape[0]
    xs, ys = np.divmod(np.arange(B * B, dtype=np.int64), B)
    D = _directional(model, theta, X, Y, G, h, c, w, np.stack([xs, ys], axis=1))
    res = device.Outputs(out)
    with device.quiet_simulator():
        _combine_all[_flat_launch(B * B * model.P)](D, *res.dev)
    res.finish()


def brackets_pairs(model, theta, X, Y, G, h, c, w, pairs, out):
    D = _directional(model, theta, X, Y, G, h, c, w, _both_ways(pairs))
    res = device.Outputs(out)
    with device.quiet_simulator():
        _combine_pairs[_flat_launch(out.shape[0] * model.P)](D, *res.dev)
    res.finish()


# -- fused reductions ----------------------------------------------------------------------------


@cuda.jit
def _norms_kernel(D, bounds, out):
    """Block q: ``out[q, t] = Σ_{p ∈ tensor t} (D[2q, p] − D[2q + 1, p])²``."""
    sh = cuda.shared.array(0, float64)
    q = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    for t in range(bounds.shape[0] - 1):
        s = 0.0
        for p in range(bounds[t] + tid, bounds[t + 1], nt):
            v = D[2 * q, p] - D[2 * q + 1, p]
            s += v * v
        sh[tid] = s
        cuda.syncthreads()
        half = nt // 2
        while half > 0:
            if tid < half:
                sh[tid] += sh[tid + half]
            cuda.syncthreads()
            half //= 2
        if tid == 0:
            out[q, t] = sh[0]
        cuda.syncthreads()


@cuda.jit
def _logits_kernel(layout, theta, D, Z, out):
    """Block (q, z): ``out[q, z] = J_f(θ; Z[z]) · b_q`` with ``b_q = D[2q] − D[2q + 1]``, by
    one forward pass carrying the primal activations and their tangents along b_q."""
    sh = cuda.shared.array(0, float64)
    q = cuda.blockIdx.x
    z = cuda.blockIdx.y
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    L = layout[0]
    act = layout[1]
    bias = layout[3] != 0
    width = 0
    for layer in range(L + 1):
        width = max(width, layout[4 + layer])
    a_cur, t_cur, a_nxt, t_nxt = 0, width, 2 * width, 3 * width
    for i in range(tid, layout[4], nt):
        sh[a_cur + i] = Z[z, i]
        sh[t_cur + i] = 0.0
    cuda.syncthreads()
    for layer in range(L):
        nin = layout[4 + layer]
        nout = layout[5 + layer]
        woff = layout[5 + L + layer]
        boff = layout[5 + 2 * L + layer]
        for o in range(tid, nout, nt):
            s = theta[boff + o] if bias else 0.0
            ds = (D[2 * q, boff + o] - D[2 * q + 1, boff + o]) if bias else 0.0
            for i in range(nin):
                p = woff + o * nin + i
                ai = sh[a_cur + i]
                s += theta[p] * ai
                ds += theta[p] * sh[t_cur + i] + (D[2 * q, p] - D[2 * q + 1, p]) * ai
            if layer < L - 1:
                av = _act(s, act)
                sh[a_nxt + o] = av
                sh[t_nxt + o] = _dact(av, act) * ds
            else:
                out[q, z, o] = ds
        cuda.syncthreads()
        a_cur, a_nxt = a_nxt, a_cur
        t_cur, t_nxt = t_nxt, t_cur


def _pair_chunks(model, pairs):
    """Slices of at most :data:`fastperm.knobs.CUDA_PAIR_CHUNK_BYTES` of directional
    derivatives (two per pair) each."""
    step = max(1, knobs.CUDA_PAIR_CHUNK_BYTES // (16 * model.P))
    return [slice(s, min(s + step, pairs.shape[0])) for s in range(0, pairs.shape[0], step)]


def _both_ways(pairs):
    both = np.empty((2 * pairs.shape[0], 2), dtype=np.int64)
    both[0::2] = pairs
    both[1::2] = pairs[:, ::-1]
    return both


def _stencil_only(c):
    if c.shape[0] == 0:
        raise ValueError(
            "method='exact' (exact Hessian-vector products) runs on the CPU backends (numba, "
            "cython, numpy); the cuda backend computes the brackets by the stencil: leave "
            "method out, or use backend='numba'"
        )


def bracket_norms(model, theta, X, Y, G, h, c, w, pairs, bounds, out):
    _stencil_only(c)
    nt = device.block(1024)
    dev_bounds = device.to_device(bounds)
    for sl in _pair_chunks(model, pairs):
        D = _directional(model, theta, X, Y, G, h, c, w, _both_ways(pairs[sl]))
        res = device.Outputs(out[sl])
        _launch(_norms_kernel, sl.stop - sl.start, nt, nt * 8, D, dev_bounds, *res.dev)
        res.finish()


def bracket_logits(model, theta, X, Y, G, h, c, w, pairs, Z, out):
    _stencil_only(c)
    nt = device.block(max(model.sizes))
    shared = 4 * max(model.sizes) * 8  # primal and tangent activations, two layers' worth
    if shared > SHARED_BYTES:
        raise ValueError(
            f"the model's layers are too wide for the cuda backend's logit pass: a block keeps "
            f"{shared} bytes of activations in shared memory, more than {SHARED_BYTES}; use "
            "backend='numba'"
        )
    layout, dev_theta = device.to_device(model.layout), device.to_device(theta)
    for sl in _pair_chunks(model, pairs):
        D = _directional(model, theta, X, Y, G, h, c, w, _both_ways(pairs[sl]))
        for z0 in range(0, Z.shape[0], MAX_GRID_Y):  # a grid's second axis holds 65535 blocks
            zs = slice(z0, min(Z.shape[0], z0 + MAX_GRID_Y))
            res = device.Outputs(np.ascontiguousarray(out[sl, zs]))
            _launch(
                _logits_kernel, (sl.stop - sl.start, zs.stop - zs.start), nt, shared, layout,
                dev_theta, D, device.to_device(Z[zs]), *res.dev,
            )  # fmt: skip
            res.finish()
            out[sl, zs] = res.host[0]
