"""Noise-augmented SGD of deep linear networks, with the network's NumPy gradients
(the oracle of :mod:`fastperm.backends.numba_cpu.deep_linear`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ... import rng
from .sgd import _finish, _mse

if TYPE_CHECKING:  # (backends import only the leaf modules at run time)
    from ..._typing import FloatArray, IntArray


def unpack(
    theta: FloatArray, sizes: IntArray, offs: IntArray
) -> tuple[list[FloatArray], FloatArray]:
    """``([W_1, …, W_L], u)`` as views of θ (W_l of shape (sizes[l], sizes[l − 1]))."""
    L = len(sizes) - 1
    Ws = [
        theta[offs[layer - 1] : offs[layer]].reshape(sizes[layer], sizes[layer - 1])
        for layer in range(1, L + 1)
    ]
    return Ws, theta[offs[L] :]


def end_to_end(theta: FloatArray, sizes: IntArray, offs: IntArray) -> FloatArray:
    """``v = W_1ᵀ ⋯ W_Lᵀ u``, so that f(x) = vᵀx."""
    Ws, u = unpack(theta, sizes, offs)
    v = u.copy()
    for W in reversed(Ws):
        v = W.T @ v
    return v


def expected_grad(
    theta: FloatArray,
    sizes: IntArray,
    offs: IntArray,
    x: FloatArray,
    y: float,
    sigma: float,
) -> FloatArray:
    """``E_ε[∇θ ½ (f(x + σε) − y)²]``, exactly: ``E[∂W_l] = a_l (r h_{l−1} + σ² B_l v)ᵀ``
    (derivation: :mod:`fastperm.deep_linear`); σ = 0 gives the plain gradient."""
    Ws, u = unpack(theta, sizes, offs)
    L = len(Ws)
    h = [x]
    for W in Ws:
        h.append(W @ h[-1])
    a: list[Any] = [None] * (L + 1)  # every entry is set before it is read
    a[L] = u
    for layer in range(L, 0, -1):
        a[layer - 1] = Ws[layer - 1].T @ a[layer]
    v = a[0]
    r = v @ x - float(y)
    hv = [v]  # B_{l+1} v
    for W in Ws:
        hv.append(W @ hv[-1])
    g = np.empty(theta.shape[0])
    gW, gu = unpack(g, sizes, offs)
    for layer in range(1, L + 1):
        gW[layer - 1][:] = np.outer(a[layer], r * h[layer - 1] + sigma**2 * hv[layer - 1])
    gu[:] = r * h[L] + sigma**2 * hv[L]
    return g


def deep_linear_runs(
    X,
    y,
    w_star,
    Theta0,
    sizes,
    offs,
    lr,
    seeds,
    k,
    sigma,
    steps,
    fresh,
    record_steps,
    cache,
    loss_out,
    theta_out,
    status_out,
):
    """Noise-augmented SGD of :class:`fastperm.deep_linear.DeepLinear` (k = 0: exact expected
    gradient), with the NumPy gradients above; loss = mean((v − w*)²) before each step."""
    n, d = X.shape
    stream = rng.STREAM_FRESH if fresh else rng.STREAM_FIXED
    for r in range(lr.shape[0]):
        theta = Theta0[r % Theta0.shape[0]].copy()
        status_out[r] = -1
        q = 0
        for t in range(steps + 1):
            with np.errstate(all="ignore"):
                if record_steps[q] == t:
                    loss_out[r, q] = _mse(end_to_end(theta, sizes, offs), w_star)
                    if not np.isfinite(loss_out[r, q]):
                        status_out[r] = _finish(loss_out[r], q, t)
                        break
                    q += 1
                if t == steps:
                    break
                i = t % n
                if k == 0:
                    g = expected_grad(theta, sizes, offs, X[i], y[i], sigma)
                else:
                    index = t if fresh else i
                    g = np.mean(
                        [
                            expected_grad(
                                theta,
                                sizes,
                                offs,
                                X[i]
                                + sigma
                                * rng.gaussian_noise(
                                    int(seeds[r]), stream, rng.counter(index, j), d
                                ),
                                y[i],
                                0.0,
                            )
                            for j in range(k)
                        ],
                        axis=0,
                    )
                if not np.all(np.isfinite(g)):
                    status_out[r] = _finish(loss_out[r], q, t)
                    break
                theta = theta - lr[r] * g
        theta_out[r] = theta
