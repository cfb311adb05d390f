"""Batched finite-difference Lie brackets of training examples, compiled with Numba.

``[v_x, v_y] = H_y g_x − H_x g_y``, each Hessian-vector product by a central
stencil along the other example's gradient:
``H_y g_x ≈ Σ_j w_j g_y(θ + c_j h_x g_x) / h_x`` (order 2: c = ±1, w = ±½;
order 4: the five-point stencil, i.e. Richardson extrapolation of order 2).

Layers: :func:`fastperm.lie.brackets` validates, chooses h and allocates;
the drivers here run a parallel loop over independent tasks; the serial worker
evaluates one stencil: :func:`.mlp.mlp_directional` for the built-in
MLPs (exact first-layer shortcut, cached drivers), or ``_directional`` with a
CustomModel's compiled gradient ``grad(theta, x, y, layout, work, out, alpha, beta)``
(out ← α·g + β·out, so each stencil point accumulates straight into the output
tile; drivers compiled per process).

All pairs (``brackets_all``): tasks are pairs of example blocks (I ≤ J). A
task computes ``D[x→y] = H_y g_x`` for x ∈ I, y ∈ J and ``D[y→x]`` into its own
tiles ``out[I, J]`` and ``out[J, I]``, then combines them in place, so every
output element is owned by one task (no races, deterministic), nothing of size
(B, B, P) is allocated besides the output, and the tiles are still in cache
when combined. Gradient evaluations: S·B(B − 1) for S stencil points, the fewest
the method allows. Tasks are dealt round-robin to one chunk per thread, each
with its scratch (S·P + work floats) allocated once.

Fused reductions (``bracket_norms``, ``bracket_logits``; built-in MLPs): a pair's
bracket is never written out. Its first-layer block is the rank-two
``b_W₁ = δ_ab ⊗ x_b − δ_ba ⊗ x_a`` (δ_ab: the stencil sum of example b's first-layer
deltas along g_a, :func:`.mlp.directional_delta`, or its exact counterpart from
:func:`.mlp.mlp_hvp` when the stencil is empty), so only the two H₁-vectors and the
deeper layers' blocks (P − H₁(d + 1) floats, in cache) are formed. The squared norm of
b_W₁ takes O(H₁ + d) (:func:`.mlp.first_layer_norm`, x_a split along x_b), and its action
on an input z is ``δ_ab (x_b·z + 1) − δ_ba (x_a·z + 1)`` (:func:`.mlp.bracket_jvp`). The
drivers here deal the pairs to one chunk per thread, each with its scratch.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ..._jit import JIT, NOCACHE, Twins, njit, specialise
from ..tiling import block_pairs
from .mlp import (
    bracket_jvp,
    directional_delta,
    first_layer_norm,
    mlp_directional,
    mlp_forward,
    mlp_grad,
    mlp_hvp,
    mlp_primal,
)
from .parallel import chunks


@njit(**JIT)
def _stencil_points(theta, u, h, c, pts, start):
    """``pts[j, start:] = θ + c_j h u`` (the model's stencil kernel reads no entry before start)."""
    for j in range(c.shape[0]):
        s = c[j] * h
        for p in range(start, theta.shape[0]):
            pts[j, p] = theta[p] + s * u[p]


@njit(**NOCACHE)
def _directional(grad, layout, pts, w, hx, X, Y, yi, work, dst):
    """``dst = Σ_j w_j g_y(pts[j]) / h``, the generic stencil for any model's compiled ``grad``."""
    for j in range(pts.shape[0]):
        grad(pts[j], X[yi], Y[yi], layout, work, dst, w[j] / hx, 0.0 if j == 0 else 1.0)


@njit(**JIT)
def _block_pair(task, nb):
    """The ``task``-th block pair (bx, by), bx <= by, in row-major order of the upper
    triangle (the blocks of examples x and y)."""
    bx = 0
    rem = task
    while rem >= nb - bx:
        rem -= nb - bx
        bx += 1
    return bx, bx + rem


@njit(**JIT)
def _combine(out, x0, x1, y0, y1, diagonal):
    """``[v_x, v_y] = D[x→y] − D[y→x]`` in place over a tile pair; zero diagonal."""
    P = out.shape[2]
    for x in range(x0, x1):
        for y in range(max(y0, x + 1), y1):
            bxy = out[x, y]
            byx = out[y, x]
            for p in range(P):
                b = bxy[p] - byx[p]
                bxy[p] = b
                byx[p] = -b
        if diagonal:
            out[x, x, :] = 0.0


# One body per driver, specialised twice (_jit.specialise): for the built-in MLPs, calling
# mlp_grad / mlp_directional (cached: no function in any signature; ``model`` is a dummy 0),
# and for a CustomModel, calling its ``grad`` passed as ``model`` (compiled once per process:
# Numba's cache index cannot hold signatures that contain other jitted functions — a stale
# entry made a later save fail with "underlying object has vanished"). Each specialisation
# is a pair of twins (_jit.Twins): serial when the call has one chunk of work.


@njit(inline="always", **JIT)
def _mlp_gradient(model, theta, x, y, layout, work, dst):
    mlp_grad(theta, x, y, layout, work, dst, 1.0, 0.0)


@njit(inline="always", **NOCACHE)
def _model_gradient(model, theta, x, y, layout, work, dst):
    model(theta, x, y, layout, work, dst, 1.0, 0.0)


@njit(inline="always", **JIT)
def _mlp_stencil(model, layout, pts, w, c, hx, xi, yi, aux, X, Y, work, dst):
    mlp_directional(layout, pts, w, c, hx, xi, yi, aux, X, Y, work, dst, True)


@njit(inline="always", **NOCACHE)
def _model_stencil(model, layout, pts, w, c, hx, xi, yi, aux, X, Y, work, dst):
    _directional(model, layout, pts, w, hx, X, Y, yi, work, dst)


def _example_grads_body(model, layout, work_size, theta, X, Y, out):
    for b in prange(X.shape[0]):
        work = np.empty(max(work_size, 1))
        gradient(model, theta, X[b], Y[b], layout, work, out[b])  # type: ignore[name-defined]  # noqa: F821 (specialised)


def _all_pairs_body(
    model, layout, work_size, start, aux, theta, X, Y, G, h, c, w, out, block, nchunks
):
    """Tasks (block pairs) ``t = k, k + nchunks, ...`` go to chunk k, which allocates its
    scratch once."""
    B, P = G.shape
    nb = (B + block - 1) // block
    ntasks = nb * (nb + 1) // 2
    for k in prange(nchunks):
        pts = np.empty((c.shape[0], P))
        work = np.empty(max(work_size, 1))
        for task in range(k, ntasks, nchunks):
            bx, by = _block_pair(task, nb)
            x0, x1 = bx * block, min(B, (bx + 1) * block)
            y0, y1 = by * block, min(B, (by + 1) * block)
            for x in range(x0, x1):  # D[x→y] into out[x, y]
                _stencil_points(theta, G[x], h[x], c, pts, start)
                for y in range(y0, y1):
                    if y != x:
                        stencil(  # type: ignore[name-defined]  # noqa: F821 (bound per copy by specialise)
                            model,
                            layout,
                            pts,
                            w,
                            c,
                            h[x],
                            x,
                            y,
                            aux,
                            X,
                            Y,
                            work,
                            out[x, y],
                        )
            if bx != by:  # D[y→x] into out[y, x]
                for y in range(y0, y1):
                    _stencil_points(theta, G[y], h[y], c, pts, start)
                    for x in range(x0, x1):
                        stencil(  # type: ignore[name-defined]  # noqa: F821 (bound per copy by specialise)
                            model,
                            layout,
                            pts,
                            w,
                            c,
                            h[y],
                            y,
                            x,
                            aux,
                            X,
                            Y,
                            work,
                            out[y, x],
                        )
            _combine(out, x0, x1, y0, y1, bx == by)


def _pairs_body(model, layout, work_size, start, aux, theta, X, Y, G, h, c, w, pairs, out, nchunks):
    P = G.shape[1]
    npairs = pairs.shape[0]
    for k in prange(nchunks):
        pts = np.empty((c.shape[0], P))
        work = np.empty(max(work_size, 1))
        tmp = np.empty(P)
        for q in range(k, npairs, nchunks):
            a = pairs[q, 0]
            b = pairs[q, 1]
            if a == b:  # [v_a, v_a] = 0 exactly
                out[q, :] = 0.0
                continue
            _stencil_points(theta, G[a], h[a], c, pts, start)
            stencil(model, layout, pts, w, c, h[a], a, b, aux, X, Y, work, out[q])  # type: ignore[name-defined]  # noqa: F821
            _stencil_points(theta, G[b], h[b], c, pts, start)
            stencil(model, layout, pts, w, c, h[b], b, a, aux, X, Y, work, tmp)  # type: ignore[name-defined]  # noqa: F821
            for p in range(P):
                out[q, p] -= tmp[p]


def _drivers(suffix, gradient, stencil, cache):
    """The three drivers for one kind of model (twins each)."""
    return {
        name: Twins(specialise(body, suffix, gradient=gradient, stencil=stencil), cache=cache)
        for name, body in (
            ("grads", _example_grads_body),
            ("all", _all_pairs_body),
            ("pairs", _pairs_body),
        )
    }


_MLP = _drivers("_mlp", _mlp_gradient, _mlp_stencil, cache=True)
_GENERIC = _drivers("_generic", _model_gradient, _model_stencil, cache=False)
_NO_AUX = np.zeros((1, 1))


def _model_args(model, theta, X, Y, G):
    """``(drivers, model, work_size, start, aux)`` for a built-in MLP or a CustomModel."""
    if model.builtin:
        return (
            _MLP,
            0,
            max(model.work_size, model.directional_work),
            model.stencil_start,
            model.bracket_aux(theta, X, Y, G),
        )
    return _GENERIC, model.kernel, model.work_size, 0, _NO_AUX


def example_grads(model, theta, X, Y, out):
    """``out[b] = g_b(θ)`` (``prange`` over examples; serial for one example or thread)."""
    drivers = _MLP if model.builtin else _GENERIC
    drivers["grads"](
        chunks(X.shape[0], 4 * X.shape[0] * model.P),
        0 if model.builtin else model.kernel,
        model.layout,
        model.work_size,
        theta,
        X,
        Y,
        out,
    )


def brackets_all(model, theta, X, Y, G, h, c, w, out):
    """All pairs: block-pair tasks dealt to one chunk per thread (serial for one chunk)."""
    block, _, ntasks = block_pairs(G.shape[1], G.shape[0])
    nchunks = chunks(ntasks)
    drivers, fn, work_size, start, aux = _model_args(model, theta, X, Y, G)
    drivers["all"](
        nchunks,
        fn,
        model.layout,
        work_size,
        start,
        aux,
        theta,
        X,
        Y,
        G,
        h,
        c,
        w,
        out,
        block,
        nchunks,
    )


def brackets_pairs(model, theta, X, Y, G, h, c, w, pairs, out):
    """The listed pairs, dealt to one chunk per thread (serial for one chunk)."""
    nchunks = chunks(pairs.shape[0])
    drivers, fn, work_size, start, aux = _model_args(model, theta, X, Y, G)
    drivers["pairs"](
        nchunks,
        fn,
        model.layout,
        work_size,
        start,
        aux,
        theta,
        X,
        Y,
        G,
        h,
        c,
        w,
        pairs,
        out,
        nchunks,
    )


# -- fused reductions (built-in MLPs) -----------------------------------------------------------


@njit(**JIT)
def _pair_blocks(
    layout, start, aux, prim, theta, X, Y, G, h, c, w, a, b, pts, work, da, db, fa, fb
):
    """One pair's bracket in factored form: ``da − db`` from ``start`` on (the deeper
    layers), ``fa ⊗ x_b − fb ⊗ x_a`` for the first layer's weights, ``fa − fb`` its bias.
    By the stencil (c, w), or exactly (:func:`.mlp.mlp_hvp`) when the stencil is empty."""
    if c.shape[0] == 0:
        mlp_hvp(layout, theta, G[a], a, b, aux, prim, work, da, fa)
        mlp_hvp(layout, theta, G[b], b, a, aux, prim, work, db, fb)
        return
    _stencil_points(theta, G[a], h[a], c, pts, start)
    mlp_directional(layout, pts, w, c, h[a], a, b, aux, X, Y, work, da, False)
    fa[:] = directional_delta(layout, work)
    _stencil_points(theta, G[b], h[b], c, pts, start)
    mlp_directional(layout, pts, w, c, h[b], b, a, aux, X, Y, work, db, False)
    fb[:] = directional_delta(layout, work)


def _norms_body(
    layout, work_size, start, aux, prim, theta, X, Y, G, h, c, w, pairs, bounds, out, nchunks
):
    """``out[q, t]``: the squared norm of pair q's bracket over tensor t (W₁, b₁ first)."""
    P = G.shape[1]
    H1 = layout[5]
    first = 2 if layout[3] != 0 else 1  # tensors of the first layer: W₁ (and b₁)
    npairs = pairs.shape[0]
    for k in prange(nchunks):
        pts = np.empty((c.shape[0], P))
        work = np.empty(work_size)
        da = np.empty(P)
        db = np.empty(P)
        fa = np.empty(H1)
        fb = np.empty(H1)
        for q in range(k, npairs, nchunks):
            a = pairs[q, 0]
            b = pairs[q, 1]
            if a == b:  # [v_a, v_a] = 0 exactly
                out[q, :] = 0.0
                continue
            _pair_blocks(
                layout, start, aux, prim, theta, X, Y, G, h, c, w, a, b, pts, work, da, db, fa, fb
            )
            out[q, 0] = first_layer_norm(X[a], X[b], aux[a, -1], aux[b, -1], fa, fb)
            if first == 2:
                s = 0.0
                for o in range(H1):
                    v = fa[o] - fb[o]
                    s += v * v
                out[q, 1] = s
            for t in range(first, bounds.shape[0] - 1):
                ta = da[bounds[t] : bounds[t + 1]]  # views: indices from range() are >= 0,
                tb = db[bounds[t] : bounds[t + 1]]  # so no wraparound test blocks the SIMD
                s = 0.0
                for i in range(ta.shape[0]):
                    v = ta[i] - tb[i]
                    s += v * v
                out[q, t] = s


def _logits_body(
    layout, work_size, start, aux, prim, theta, X, Y, G, h, c, w, pairs, Z, acts, xz, out, nchunks
):
    """``out[q, z] = J_f(θ; Z[z]) · b_q``, b_q pair q's bracket: a forward-mode pass per
    input along b_q, from the primal activations ``acts[z]`` and ``xz[e, z] = x_e·Z[z] + bias``."""
    P = G.shape[1]
    H1 = layout[5]
    npairs = pairs.shape[0]
    width = 0
    for layer in range(layout[0] + 1):
        width = max(width, layout[4 + layer])
    for k in prange(nchunks):
        pts = np.empty((c.shape[0], P))
        work = np.empty(work_size)
        da = np.empty(P)
        db = np.empty(P)
        fa = np.empty(H1)
        fb = np.empty(H1)
        u = np.empty(width)
        t = np.empty(width)
        for q in range(k, npairs, nchunks):
            a = pairs[q, 0]
            b = pairs[q, 1]
            if a == b:
                out[q] = 0.0
                continue
            _pair_blocks(
                layout, start, aux, prim, theta, X, Y, G, h, c, w, a, b, pts, work, da, db, fa, fb
            )
            for p in range(start, P):
                da[p] -= db[p]
            for z in range(Z.shape[0]):
                bracket_jvp(layout, theta, da, fa, fb, xz[b, z], xz[a, z], acts[z], u, t, out[q, z])


def _inputs_body(theta, X, Z, layout, acts, xz):
    """Per input z: its activations at θ, and ``x_e·z + bias`` for every example e."""
    bias = 1.0 if layout[3] != 0 else 0.0
    for z in prange(Z.shape[0]):
        mlp_forward(theta, Z[z], layout, acts[z])
        for e in range(X.shape[0]):
            s = bias
            for i in range(X.shape[1]):
                s += X[e, i] * Z[z, i]
            xz[e, z] = s


_FUSED = {
    "norms": Twins(_norms_body),
    "logits": Twins(_logits_body),
    "inputs": Twins(_inputs_body),
}


def _fused_args(model, theta, X, Y, G, c):
    """``(layout, work_size, start, aux, prim)``: the stencil's scratch and data, or for the
    exact products (an empty stencil) their scratch and the examples' primal passes."""
    if not model.builtin:
        raise TypeError(
            f"the fused bracket reductions are compiled for the built-in models only, not "
            f"{model.name}: fastperm.lie reduces a CustomModel's brackets in blocks of pairs"
        )
    aux = model.bracket_aux(theta, X, Y, G)
    nact = sum(model.sizes[1:])
    if c.shape[0]:
        return model.layout, model.directional_work, model.stencil_start, aux, _NO_AUX
    prim = np.empty((X.shape[0], 3 * nact))
    mlp_primal(theta, X, Y, model.layout, prim)
    return model.layout, model.hvp_work, model.stencil_start, aux, prim


def bracket_norms(model, theta, X, Y, G, h, c, w, pairs, bounds, out):
    """Squared norms per tensor of the listed pairs' brackets, fused (pairs dealt to one
    chunk per thread)."""
    layout, work_size, start, aux, prim = _fused_args(model, theta, X, Y, G, c)
    nchunks = chunks(pairs.shape[0])
    _FUSED["norms"](
        nchunks,
        layout,
        work_size,
        start,
        aux,
        prim,
        theta,
        X,
        Y,
        G,
        h,
        c,
        w,
        pairs,
        bounds,
        out,
        nchunks,
    )


def bracket_logits(model, theta, X, Y, G, h, c, w, pairs, Z, out):
    """The logits' change along each listed pair's bracket, for every input of Z, fused."""
    layout, work_size, start, aux, prim = _fused_args(model, theta, X, Y, G, c)
    acts = np.empty((Z.shape[0], model.work_size))
    xz = np.empty((X.shape[0], Z.shape[0]))
    work = Z.shape[0] * (model.P + X.shape[0] * X.shape[1])
    _FUSED["inputs"](chunks(Z.shape[0], work), theta, X, Z, layout, acts, xz)
    nchunks = chunks(pairs.shape[0])
    _FUSED["logits"](
        nchunks,
        layout,
        work_size,
        start,
        aux,
        prim,
        theta,
        X,
        Y,
        G,
        h,
        c,
        w,
        pairs,
        Z,
        acts,
        xz,
        out,
        nchunks,
    )
