"""The training schemes of :mod:`fastperm.schemes`, each step written out (the oracle of
:mod:`fastperm.backends.numba_cpu.schemes`)."""

from __future__ import annotations

import numpy as np

from ... import rng
from ...codes import DA, FA, K_EXPECTED, VANILLA
from ...moments import coefficients
from ...rng import KIND_PERMUTATION
from .sgd import _augmented_block, _finish, _mse


def scheme_runs(
    X,
    y,
    w_star,
    W0,
    lr,
    seeds,
    scheme,
    k,
    fresh,
    steps,
    record_steps,
    loss_out,
    dist_out,
    w_out,
    status_out,
):
    """The schemes of :mod:`fastperm.schemes` (codes: :mod:`fastperm.codes`; DA with k = 0 is
    k = ∞), each step written out; loss and distance to span(1) at the recorded steps."""
    n, d = X.shape
    for r in range(lr.shape[0]):
        w = W0[r % W0.shape[0]].copy()
        status_out[r] = -1
        q = 0
        for t in range(steps + 1):
            with np.errstate(all="ignore"):
                if record_steps[q] == t:
                    loss_out[r, q] = _mse(w, w_star)
                    u = w - w[0]  # about w[0]: exactly 0 when all entries are equal
                    dist_out[r, q] = np.sqrt(max(np.mean(u * u) - np.mean(u) ** 2, 0.0))
                    if not np.isfinite(loss_out[r, q]):
                        status_out[r] = _finish(loss_out[r], q, t)
                        dist_out[r, q:] = np.nan
                        break
                    q += 1
                if t == steps:
                    break
                i = t % n
                x = X[i]
                # a non-finite residual stops the run at step t; an update that overflows
                # is found at the next record (step t + 1 or later), as in the kernels
                if scheme == VANILLA or (scheme == DA and k == 1):
                    res = np.array([w @ x - y[i]])
                    g = res[0] * x
                elif scheme == DA and k != K_EXPECTED:
                    A = _augmented_block(
                        x,
                        k,
                        seeds[r],
                        rng.STREAM_FRESH if fresh else rng.STREAM_FIXED,
                        t if fresh else i,
                        KIND_PERMUTATION,
                    )
                    res = A @ w - y[i]
                    g = A.T @ res / k
                elif scheme == DA:  # k = ∞
                    a, c, e = coefficients(x[None, :], y[i : i + 1], "permutation")
                    g = a[0] * w + c[0] * w.sum() - e[0]
                elif scheme == FA:
                    g = (x.mean() * w.sum() - y[i]) * x.mean() * np.ones(d)
                else:
                    alpha = w.mean()
                    alpha = alpha - lr[r] * (alpha * x.sum() - y[i]) * x.sum()
                    w = np.full(d, alpha)
                    continue
                if scheme in (VANILLA, DA) and k != K_EXPECTED and not np.all(np.isfinite(res)):
                    status_out[r] = _finish(loss_out[r], q, t)
                    dist_out[r, q:] = np.nan
                    break
                w = w - lr[r] * g
        w_out[r] = w
