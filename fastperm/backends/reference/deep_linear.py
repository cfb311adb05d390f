"""Noise-augmented SGD of deep linear networks, with the network's NumPy gradients
(the oracle of :mod:`fastperm.backends.numba_cpu.deep_linear`)."""

from __future__ import annotations

import numpy as np

from ... import rng
from .sgd import _finish, _mse


def deep_linear_runs(X, y, w_star, Theta0, sizes, offs, lr, seeds, k, sigma, steps, fresh,
                     record_steps, loss_out, theta_out, status_out):
    """Noise-augmented SGD of :class:`fastperm.deep_linear.DeepLinear` (k = 0: exact expected
    gradient), with the network's NumPy gradients; loss = mean((v − w*)²) before each step."""
    from ...deep_linear import DeepLinear

    net = DeepLinear(sizes)
    n, d = X.shape
    stream = rng.STREAM_FRESH if fresh else rng.STREAM_FIXED
    for r in range(lr.shape[0]):
        theta = Theta0[r % Theta0.shape[0]].copy()
        status_out[r] = -1
        q = 0
        for t in range(steps + 1):
            with np.errstate(all="ignore"):
                if record_steps[q] == t:
                    loss_out[r, q] = _mse(net.end_to_end(theta), w_star)
                    if not np.isfinite(loss_out[r, q]):
                        status_out[r] = _finish(loss_out[r], q, t)
                        break
                    q += 1
                if t == steps:
                    break
                i = t % n
                if k == 0:
                    g = net.expected_grad(theta, X[i], y[i], sigma)
                else:
                    index = t if fresh else i
                    g = np.mean([net.grad(theta, X[i] + sigma * rng.gaussian_noise(
                        int(seeds[r]), stream, rng.counter(index, j), d), y[i])
                        for j in range(k)], axis=0)
                if not np.all(np.isfinite(g)):
                    status_out[r] = _finish(loss_out[r], q, t)
                    break
                theta = theta - lr[r] * g
        theta_out[r] = theta
