"""Batched finite-difference Lie brackets of training examples, compiled with Numba.

``[v_x, v_y] = H_y g_x − H_x g_y``, each Hessian-vector product by a central
stencil along the other example's gradient:
``H_y g_x ≈ Σ_j w_j g_y(θ + c_j h_x g_x) / h_x`` (order 2: c = ±1, w = ±½;
order 4: the five-point stencil, i.e. Richardson extrapolation of order 2).

Layers: :func:`fastperm.lie.brackets` validates, chooses h and allocates;
the drivers here run a parallel loop over independent tasks; the serial worker
``_directional`` evaluates one stencil with the model's compiled per-example
gradient ``grad(theta, x, y, shape, work, out, alpha, beta)`` (out ← α·g + β·out),
which accumulates each stencil point straight into the output tile.

All pairs (``brackets_all``): tasks are pairs of example blocks (I ≤ J). A
task computes ``D[x→y] = H_y g_x`` for x ∈ I, y ∈ J and ``D[y→x]`` into its own
tiles ``out[I, J]`` and ``out[J, I]``, then combines them in place, so every
output element is owned by one task (no races, deterministic), nothing of size
(B, B, P) is allocated besides the output, and the tiles are still in cache
when combined. Gradient evaluations: S·B(B − 1) for S stencil points, the fewest
the method allows. Scratch per task: S·P + work floats.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .jit import JIT, PARALLEL

#: bytes of output tiles a task should keep in cache (about a core's L2)
TILE_BYTES = 768 * 1024


@njit(**JIT)
def _stencil_points(theta, u, h, c, pts):
    """``pts[j] = θ + c_j h u``."""
    for j in range(c.shape[0]):
        s = c[j] * h
        for p in range(theta.shape[0]):
            pts[j, p] = theta[p] + s * u[p]


@njit(**JIT)
def _directional(grad, shape, pts, w, invh, xe, ye, work, dst):
    """``dst = Σ_j w_j g_e(pts[j]) / h``: the Hessian of example e applied to the stencil direction."""
    for j in range(pts.shape[0]):
        grad(pts[j], xe, ye, shape, work, dst, w[j] * invh, 0.0 if j == 0 else 1.0)


@njit(**JIT)
def _block_pair(task, nb):
    """The ``task``-th block pair (I, J), I <= J, in row-major order of the upper triangle."""
    I = 0
    rem = task
    while rem >= nb - I:
        rem -= nb - I
        I += 1
    return I, I + rem


@njit(**PARALLEL)
def _example_grads(grad, shape, work_size, theta, X, Y, out):
    for b in prange(X.shape[0]):
        work = np.empty(max(work_size, 1))
        grad(theta, X[b], Y[b], shape, work, out[b], 1.0, 0.0)


@njit(**PARALLEL)
def _all_pairs(grad, shape, work_size, theta, X, Y, G, h, c, w, out, block):
    B, P = G.shape
    nb = (B + block - 1) // block
    ntasks = nb * (nb + 1) // 2
    for task in prange(ntasks):
        I, J = _block_pair(task, nb)
        pts = np.empty((c.shape[0], P))
        work = np.empty(max(work_size, 1))
        x0, x1 = I * block, min(B, (I + 1) * block)
        y0, y1 = J * block, min(B, (J + 1) * block)
        for x in range(x0, x1):  # D[x→y] into out[x, y]
            _stencil_points(theta, G[x], h[x], c, pts)
            for y in range(y0, y1):
                if y != x:
                    _directional(grad, shape, pts, w, 1.0 / h[x], X[y], Y[y], work, out[x, y])
        if I != J:  # D[y→x] into out[y, x]
            for y in range(y0, y1):
                _stencil_points(theta, G[y], h[y], c, pts)
                for x in range(x0, x1):
                    _directional(grad, shape, pts, w, 1.0 / h[y], X[x], Y[x], work, out[y, x])
        for x in range(x0, x1):  # [v_x, v_y] = D[x→y] − D[y→x]
            for y in range(max(y0, x + 1), y1):
                bxy = out[x, y]
                byx = out[y, x]
                for p in range(P):
                    b = bxy[p] - byx[p]
                    bxy[p] = b
                    byx[p] = -b
            if I == J:
                out[x, x, :] = 0.0


@njit(**PARALLEL)
def _pairs(grad, shape, work_size, theta, X, Y, G, h, c, w, pairs, out):
    P = G.shape[1]
    for q in prange(pairs.shape[0]):
        a = pairs[q, 0]
        b = pairs[q, 1]
        if a == b:  # [v_a, v_a] = 0 exactly
            out[q, :] = 0.0
            continue
        pts = np.empty((c.shape[0], P))
        work = np.empty(max(work_size, 1))
        _stencil_points(theta, G[a], h[a], c, pts)
        _directional(grad, shape, pts, w, 1.0 / h[a], X[b], Y[b], work, out[q])
        _stencil_points(theta, G[b], h[b], c, pts)
        # out[q] −= D[b→a]: accumulate the negated stencil
        for j in range(c.shape[0]):
            grad(pts[j], X[a], Y[a], shape, work, out[q], -w[j] / h[b], 1.0)


def tile_block(P, B):
    """Examples per block: two (block × block × P) float64 tiles fit in ``TILE_BYTES``."""
    block = int((TILE_BYTES / (16.0 * P)) ** 0.5)
    return max(1, min(B, block))


def example_grads(model, theta, X, Y, out):
    _example_grads(model.kernel, model.shape, model.work_size, theta, X, Y, out)


def brackets_all(model, theta, X, Y, G, h, c, w, out):
    _all_pairs(model.kernel, model.shape, model.work_size, theta, X, Y, G, h, c, w, out,
               tile_block(G.shape[1], G.shape[0]))


def brackets_pairs(model, theta, X, Y, G, h, c, w, pairs, out):
    _pairs(model.kernel, model.shape, model.work_size, theta, X, Y, G, h, c, w, pairs, out)
