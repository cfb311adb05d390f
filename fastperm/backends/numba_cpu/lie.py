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
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ..._jit import JIT, NOCACHE, Twins, njit, specialise
from ..tiling import block_pairs
from .mlp import mlp_directional, mlp_grad
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
    mlp_directional(layout, pts, w, c, hx, xi, yi, aux, X, Y, work, dst)


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
        chunks(X.shape[0]),
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
