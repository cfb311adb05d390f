"""Lie brackets of training examples with the model's NumPy gradient (the oracle of
:mod:`fastperm.backends.numba_cpu.lie`)."""

from __future__ import annotations

import numpy as np

# -- Lie brackets (contract: fastperm.backends.numba_cpu.lie) ---------------------------------
# ``example_grads(model, theta, X, Y, out)``: out[b] = g_b(θ).
# ``brackets_all(model, theta, X, Y, G, h, c, w, out)``: out[x, y] = [v_x, v_y] (B, B, P) with
#   H_y g_x ≈ Σ_j w_j g_y(θ + c_j h_x G[x]) / h_x.
# ``brackets_pairs(model, theta, X, Y, G, h, c, w, pairs, out)``: out[q] = [v_a, v_b].
# ``bracket_norms(..., pairs, bounds, out)``: out[q, t] = Σ over tensor t of [v_a, v_b]².
# ``bracket_logits(..., pairs, Z, out)``: out[q, z] = J_f(θ; Z[z]) · [v_a, v_b].
# The reference evaluates every stencil point for every example at once with the model's
# NumPy gradient, materialising (S, B, B, P): readable, memory-hungry, for tests.


def example_grads(model, theta, X, Y, out):
    out[:] = model._grad(theta, X, Y)


def _hessian_products(model, theta, X, Y, G, h, c, w):
    """D[x, y] = H_y g_x by the stencil, all (x, y): (B, B, P)."""
    points = theta + (c[:, None, None] * h[None, :, None]) * G[None, :, :]  # (S, B, P)
    grads = model._grad(points, X, Y)  # (S, B, B, P): stencil point j of x, example y
    return np.einsum("j,jxyp->xyp", w, grads) / h[:, None, None]


def brackets_all(model, theta, X, Y, G, h, c, w, out):
    D = _hessian_products(model, theta, X, Y, G, h, c, w)
    out[:] = D - D.transpose(1, 0, 2)


def brackets_pairs(model, theta, X, Y, G, h, c, w, pairs, out):
    D = _hessian_products(model, theta, X, Y, G, h, c, w)
    out[:] = D[pairs[:, 0], pairs[:, 1]] - D[pairs[:, 1], pairs[:, 0]]
    out[pairs[:, 0] == pairs[:, 1]] = 0.0


def _pair_brackets(model, theta, X, Y, G, h, c, w, pairs):
    """The pairs' brackets: by the stencil, or for an empty one (the fused families' exact
    products) by the complex step ``H_b g_a = Im g_b(θ + i t g_a) / t``, t = 1e-30."""
    if c.shape[0]:
        out = np.empty((pairs.shape[0], G.shape[1]))
        brackets_pairs(model, theta, X, Y, G, h, c, w, pairs, out)
        return out
    out = np.empty((pairs.shape[0], G.shape[1]))
    t = 1e-30
    step = max(1, 2**26 // (16 * X.shape[0] * G.shape[1]))  # (pairs, B, P) complex: ≤ 64 MiB

    def products(u, at):  # H_at g_u for each (u, at)
        return model._grad(theta + 1j * t * G[u], X, Y)[np.arange(u.shape[0]), at].imag / t

    for s in range(0, pairs.shape[0], step):
        a, b = pairs[s : s + step, 0], pairs[s : s + step, 1]
        out[s : s + step] = products(a, b) - products(b, a)
        out[s : s + step][a == b] = 0.0
    return out


def bracket_norms(model, theta, X, Y, G, h, c, w, pairs, bounds, out):
    b = _pair_brackets(model, theta, X, Y, G, h, c, w, pairs)
    for t in range(bounds.shape[0] - 1):
        out[:, t] = np.sum(b[:, bounds[t] : bounds[t + 1]] ** 2, axis=1)


def bracket_logits(model, theta, X, Y, G, h, c, w, pairs, Z, out):
    """The directional derivative of the logits by the complex step (the built-in models'
    forward pass is complex-analytic): exact, and a route independent of the kernels'."""
    b = _pair_brackets(model, theta, X, Y, G, h, c, w, pairs)
    t = 1e-30
    out[:] = model.logits(theta + 1j * t * b, Z).imag / t
