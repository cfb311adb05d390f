"""k-fold augmented SGD (k = 1: plain SGD) and k = ∞ for permutations and resampling,
the readable way, with the augmented copies drawn by the specification in :mod:`fastperm.rng`.
The small helpers here (copies, loss, stopping a diverged run) serve the other kernels too.
Contract: :mod:`fastperm.backends.reference`.
"""

from __future__ import annotations

import numpy as np

from ... import rng
from ...moments import coefficients
from ...rng import KIND_CYCLIC, KIND_GAUSSIAN, KIND_MASK, KIND_PERMUTATION, KIND_RESAMPLE


def _spec_copy(x, kind, fparams, gidx, gptr, seed, stream, count):
    """The augmented copy of x keyed by (seed, stream, count), by the specification."""
    d = x.shape[0]
    if kind == KIND_PERMUTATION:
        return x[rng.permutation(seed, stream, count, d)]
    if kind == KIND_RESAMPLE:
        return x[rng.resample_indices(seed, stream, count, d)]
    if kind == KIND_GAUSSIAN:
        return x + fparams[0] * rng.gaussian_noise(seed, stream, count, d)
    if kind == KIND_MASK:
        return fparams[1] * x * rng.mask_keep(seed, stream, count, d, fparams[0])
    if kind == KIND_CYCLIC:
        s = rng.cyclic_shift(seed, stream, count, d)
        return x[(np.arange(d) - s) % d]
    groups = [gidx[gptr[g] : gptr[g + 1]] for g in range(gptr.shape[0] - 1)]
    return x[rng.block_permutation(seed, stream, count, groups)]


def _augmented_block(x, k, seed, stream, index, kind, fparams=None, gidx=None, gptr=None):
    """(k, d) array: x and its k − 1 augmented copies keyed by (seed, stream, index, j)."""
    block = np.empty((k, x.shape[0]))  # allocated once (the front end checked that it fits)
    block[0] = x
    for j in range(1, k):
        block[j] = _spec_copy(
            x, kind, fparams, gidx, gptr, int(seed), stream, rng.counter(index, j)
        )
    return block


def _mse(w, w_star):
    with np.errstate(over="ignore", invalid="ignore"):
        return float(np.mean((w - w_star) ** 2))


def _keep(w_rec, r, q, w):
    """Keep run r's w at record q when the caller keeps parameters (``w_rec`` has rows)."""
    if w_rec.shape[1]:
        w_rec[r, q] = w


def _finish(loss_row, q, status_row_value):
    loss_row[q:] = np.nan
    return status_row_value


def sgd_runs(
    X,
    y,
    w_star,
    W0,
    lr,
    seeds,
    k,
    steps,
    start_step,
    fresh,
    kind,
    fparams,
    gidx,
    gptr,
    record_steps,
    cache,
    loss_out,
    w_rec,
    w_out,
    status_out,
):
    n = X.shape[0]
    aug = (kind, fparams, gidx, gptr)
    for r in range(lr.shape[0]):
        w = W0[r % W0.shape[0]].copy()
        status_out[r] = -1
        q = 0
        loss_out[r, 0] = _mse(w, w_star)  # record_steps[0] == 0
        _keep(w_rec, r, 0, w)
        q = 1
        for t in range(steps):
            i = (start_step + t) % n  # the run's step start_step + t
            if k == 1:
                A = X[i : i + 1]
            elif fresh:
                A = _augmented_block(X[i], k, seeds[r], rng.STREAM_FRESH, start_step + t, *aug)
            else:
                A = _augmented_block(X[i], k, seeds[r], rng.STREAM_FIXED, i, *aug)
            with np.errstate(all="ignore"):
                res = A @ w - y[i]
                if not np.all(np.isfinite(res)):
                    status_out[r] = _finish(loss_out[r], q, t)
                    break
                # the kernels' order of operations, so that an overflow happens at the same
                # step: w ← w − ((lr/k) res_j) A_j, copy after copy
                c = lr[r] / k
                for j in range(k):
                    w = w - (c * res[j]) * A[j]
            if t + 1 == record_steps[q]:
                loss_out[r, q] = _mse(w, w_star)
                if not np.isfinite(loss_out[r, q]):
                    status_out[r] = _finish(loss_out[r], q, t + 1)
                    break
                _keep(w_rec, r, q, w)
                q += 1
        w_out[r] = w


def expected_runs(
    X, y, w_star, W0, lr, steps, kind, record_steps, loss_out, w_rec, w_out, status_out
):
    n = X.shape[0]
    a, c, e = coefficients(X, y, "resample" if kind == KIND_RESAMPLE else "permutation")
    for r in range(lr.shape[0]):
        w = W0[r % W0.shape[0]].copy()
        status_out[r] = -1
        loss_out[r, 0] = _mse(w, w_star)
        _keep(w_rec, r, 0, w)
        q = 1
        for t in range(steps):
            i = t % n
            with np.errstate(all="ignore"):
                g = a[i] * w + (c[i] * w.sum() - e[i])
                w = w - lr[r] * g
            if not np.all(np.isfinite(w)):
                status_out[r] = _finish(loss_out[r], q, t + 1)
                break
            if t + 1 == record_steps[q]:
                loss_out[r, q] = _mse(w, w_star)
                if not np.isfinite(loss_out[r, q]):
                    status_out[r] = _finish(loss_out[r], q, t + 1)
                    break
                _keep(w_rec, r, q, w)
                q += 1
        w_out[r] = w


def fixed_copies(X, seed, kind, fparams, gidx, gptr, out):
    k = out.shape[1]
    for i in range(X.shape[0]):
        out[i] = _augmented_block(X[i], k, seed, rng.STREAM_FIXED, i, kind, fparams, gidx, gptr)


def augmented_gradient(w, X, y, k, seed, kind, fparams, gidx, gptr, out):
    for i in range(X.shape[0]):
        A = _augmented_block(X[i], k, seed, rng.STREAM_FIXED, i, kind, fparams, gidx, gptr)
        out[i] = A.T @ (A @ w - y[i]) / k
