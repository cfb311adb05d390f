"""k = ∞ runs for the augmentations of :mod:`fastperm.augment.distributions`, each step done the
explicit way (the oracle of :mod:`fastperm.backends.numba_cpu.closed_forms`)."""

from __future__ import annotations

import numpy as np

from .sgd import _finish, _keep, _mse

# -- k = ∞ for the augmentations of fastperm.augment.distributions (contract:
# fastperm.backends.numba_cpu.closed_forms). Each step is done the explicit way:
# w ← w − lr (M_i w − y_i μ_i), with M_i w computed in the original coordinates.


def _explicit_runs(
    grad,
    n,
    w_star,
    W0,
    lr,
    steps,
    record_steps,
    loss_out,
    w_rec,
    w_out,
    status_out,
    every_step=True,
):
    """``grad(i, w, lr)`` is ``lr`` times the expected gradient of example i, or None when
    the scalar residual it starts from is already non-finite (a divergence at this step).
    ``every_step``: the kernel checks its state after every update (the FFT, block and
    dense closed forms), else only on recorded steps (diag + rank one, which checks its
    residual at each step instead): a divergence is then found at the same step."""
    for r in range(lr.shape[0]):
        w = W0[r % W0.shape[0]].copy()
        status_out[r] = -1
        loss_out[r, 0] = _mse(w, w_star)
        _keep(w_rec, r, 0, w)
        q = 1
        for t in range(steps):
            with np.errstate(all="ignore"):
                g = grad(t % n, w, lr[r])
                if g is None:
                    status_out[r] = _finish(loss_out[r], q, t)
                    break
                w = w - g
            recorded = t + 1 == record_steps[q]
            if (every_step or recorded) and not (
                np.all(np.isfinite(w)) and np.isfinite(_mse(w, w_star))
            ):
                status_out[r] = _finish(loss_out[r], q, t + 1)
                break
            if t + 1 == record_steps[q]:
                loss_out[r, q] = _mse(w, w_star)
                _keep(w_rec, r, q, w)
                q += 1
        w_out[r] = w


def diag_rank1_runs(
    X, y, w_star, W0, lr, beta, gamma, D, steps, record_steps, loss_out, w_rec, w_out, status_out
):
    def grad(i, w, lr):  # the kernel's order: c = lr (β x·w − γ y), then c x + lr D w
        c = lr * (beta * (X[i] @ w) - gamma * y[i])
        return None if not np.isfinite(c) else c * X[i] + lr * D[i % D.shape[0]] * w

    _explicit_runs(
        grad,
        X.shape[0],
        w_star,
        W0,
        lr,
        steps,
        record_steps,
        loss_out,
        w_rec,
        w_out,
        status_out,
        every_step=False,
    )


def circulant_runs(X, y, w_star, W0, lr, steps, record_steps, loss_out, w_rec, w_out, status_out):
    d = X.shape[1]
    lam = np.abs(np.fft.rfft(X, axis=1)) ** 2 / d
    mean = X.mean(axis=1)

    def grad(i, w, lr):  # E[x'x'ᵀ] w by FFT, minus y E[x']
        return lr * (np.fft.irfft(lam[i] * np.fft.rfft(w), n=d) - y[i] * mean[i])

    _explicit_runs(
        grad, X.shape[0], w_star, W0, lr, steps, record_steps, loss_out, w_rec, w_out, status_out
    )


def block_runs(
    X, y, w_star, W0, lr, gidx, gptr, steps, record_steps, loss_out, w_rec, w_out, status_out
):
    groups = [gidx[gptr[g] : gptr[g + 1]] for g in range(gptr.shape[0] - 1)]

    def moments(x):
        out = []
        for g in groups:
            s1, s2, dg = x[g].sum(), (x[g] ** 2).sum(), len(g)
            c = (s1 * s1 - s2) / (dg * (dg - 1)) if dg > 1 else 0.0
            out.append((s2 / dg, c, s1 / dg))
        return out

    mom = [moments(x) for x in X]

    def grad(i, w, lr):  # E[x'_j x'_l] = s2/d_G (j = l), c_G (same group), m_G m_H (otherwise)
        g_out = np.empty_like(w)
        sums = [w[g].sum() for g in groups]
        for G, g in enumerate(groups):
            diag, c, m = mom[i][G]
            other = sum(mom[i][H][2] * sums[H] for H in range(len(groups)) if H != G)
            g_out[g] = (diag - c) * w[g] + c * sums[G] + m * other - y[i] * m
        return lr * g_out

    _explicit_runs(
        grad, X.shape[0], w_star, W0, lr, steps, record_steps, loss_out, w_rec, w_out, status_out
    )


def dense_runs(M, mu, y, w_star, W0, lr, steps, record_steps, loss_out, w_rec, w_out, status_out):
    _explicit_runs(
        lambda i, w, lr: lr * (M[i] @ w - y[i] * mu[i]),
        mu.shape[0],
        w_star,
        W0,
        lr,
        steps,
        record_steps,
        loss_out,
        w_rec,
        w_out,
        status_out,
    )
