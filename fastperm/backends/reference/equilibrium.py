"""SGD and GD of the two-layer linear network ``U W x`` on a Gaussian teacher, in plain
NumPy: the oracle of the compiled ``balance_runs`` (contract:
:mod:`fastperm.backends.contract`; the maths: :mod:`fastperm.equilibrium`).

One Python iteration per step; the batch's samples are drawn by the pure-Python
specification (:func:`fastperm.rng.gaussian_noise`), and the gradients are formed the
textbook way: ``R = (1/B) Σ_j r_j x_jᵀ``, ``g_U = R Wᵀ``, ``g_W = Uᵀ R``.
"""

from __future__ import annotations

import numpy as np

from ... import rng


def split(theta, d2, d0):
    """``(U, W)`` as views of θ = [U (d2 × h), W (h × d0)]."""
    h = theta.shape[0] // (d2 + d0)
    return theta[: d2 * h].reshape(d2, h), theta[d2 * h :].reshape(h, d0)


def samples(A, L, sigma, seed, t, batch):
    """The batch of step t: ``(X (B, d0), Y (B, d2))``."""
    d2, d0 = A.shape
    Z = np.array(
        [
            rng.gaussian_noise(int(seed), rng.STREAM_DATA, rng.counter(t, j), d0 + d2)
            for j in range(batch)
        ]
    ).reshape(batch, d0 + d2)
    X = Z[:, :d0] @ L.T
    return X, X @ A.T + sigma * Z[:, d0:]


def _record(U, W, A, L, sigma, track):
    """``(loss, ‖C‖_F, C[track], (‖U‖², ‖W‖²))`` at (U, W)."""
    C = W @ W.T - U.T @ U
    loss = 0.5 * np.sum(((U @ W - A) @ L) ** 2) + 0.5 * sigma**2 * A.shape[0]
    return loss, np.sqrt(np.sum(C * C)), C[track[:, 0], track[:, 1]], (np.sum(U * U), np.sum(W * W))


def balance_runs(
    A,
    L,
    Sigma,
    sigma,
    Theta0,
    lr,
    batch,
    seeds,
    steps,
    start_step,
    record_steps,
    track,
    loss_out,
    charge_out,
    entries_out,
    norms_out,
    theta_rec,
    theta_out,
    status_out,
):
    """R runs, one after another (contract: ``balance_runs``)."""
    d2, d0 = A.shape
    keep = theta_rec.shape[1] > 0
    for r in range(lr.shape[0]):
        theta = Theta0[r % Theta0.shape[0]].copy()
        U, W = split(theta, d2, d0)
        status_out[r] = -1
        q = 0
        with np.errstate(all="ignore"):
            for t in range(steps + 1):
                if record_steps[q] == t:
                    loss, c, entries, norms = _record(U, W, A, L, sigma, track)
                    if not np.isfinite(loss):
                        status_out[r] = t
                        break
                    loss_out[r, q], charge_out[r, q] = loss, c
                    entries_out[r, q], norms_out[r, q] = entries, norms
                    if keep:
                        theta_rec[r, q] = theta
                    q += 1
                if t == steps:
                    break
                if batch[r] == 0:
                    R = (U @ W - A) @ Sigma
                else:
                    X, Y = samples(A, L, sigma, seeds[r], start_step + t, batch[r])
                    R = (X @ W.T @ U.T - Y).T @ X / batch[r]
                g_U, g_W = R @ W.T, U.T @ R
                if not (np.all(np.isfinite(g_U)) and np.all(np.isfinite(g_W))):
                    status_out[r] = t
                    break
                U -= lr[r] * g_U  # (views of θ: θ follows)
                W -= lr[r] * g_W
        if status_out[r] >= 0:
            for out in (loss_out, charge_out, entries_out, norms_out):
                out[r, q:] = np.nan
        theta_out[r] = theta
