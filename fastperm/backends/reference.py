"""NumPy reference backend: the readable oracle every compiled backend is tested against.

Written for clarity, not speed: one Python iteration per step, permutations
drawn by the pure-Python specification in :mod:`fastperm.rng`, and the
k = ∞ runs done the explicit O(T·d) way (the compiled backends use the
O(T + d) recurrence; comparing the two is one of the tests).

Kernel contract (shared by every backend; arguments are validated by the
caller: float64, C-contiguous, finite, shapes consistent):

``sgd_runs(X, y, w_star, W0, lr, seeds, k, steps, fresh, resample, record_steps, cache,
loss_out, w_out, status_out)``
    R independent runs of k-fold augmented SGD (k = 1: plain SGD). Run r
    starts from ``W0[r]`` (or ``W0[0]`` when W0 has one row), uses step size
    ``lr[r]`` and seed ``seeds[r]``. At step t it visits example ``i = t mod n``
    and steps with the mean gradient of its k copies. ``loss_out[r, q]`` is
    ``mean((w − w_star)²)`` after ``record_steps[q]`` steps (``record_steps``
    ends with the sentinel ``steps + 1``). ``w_out[r]`` is the final w.
    ``status_out[r]`` is -1, or the first step at which w, a residual
    computed from it, or the recorded loss was non-finite; the run stops there
    and the remaining losses are NaN. ``cache`` allows the kernel to keep the n·k fixed copies
    (the caller has checked the memory budget); it never changes results.
``expected_runs(X, y, w_star, W0, lr, steps, resample, record_steps, loss_out, w_out,
status_out)``
    The same with the exact expected gradient (k = ∞); no seeds.
``augmented_gradient(w, X, y, k, seed, resample, out)``
    ``out[i]`` is the mean gradient over the k fixed copies of row i.
"""

from __future__ import annotations

import numpy as np

from .. import rng
from ..augment import coefficients
from ..distributions import core_kind
from ..rng import KIND_CYCLIC, KIND_GAUSSIAN, KIND_MASK, KIND_PERMUTATION, KIND_RESAMPLE

name = "numpy"


def threads():
    """The reference runs in one thread."""
    return 1


def set_threads(n):
    """No effect: the reference runs in one thread."""


def compile():
    """Nothing to compile."""


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
    groups = [gidx[gptr[g]:gptr[g + 1]] for g in range(gptr.shape[0] - 1)]
    return x[rng.block_permutation(seed, stream, count, groups)]


def _augmented_block(x, k, seed, stream, index, kind, fparams=None, gidx=None, gptr=None):
    """(k, d) array: x and its k − 1 augmented copies keyed by (seed, stream, index, j)."""
    rows = [x]
    for j in range(1, k):
        rows.append(_spec_copy(x, kind, fparams, gidx, gptr, int(seed), stream,
                               rng.counter(index, j)))
    return np.stack(rows)


def _mse(w, w_star):
    with np.errstate(over="ignore", invalid="ignore"):
        return float(np.mean((w - w_star) ** 2))


def _finish(loss_row, q, status_row_value):
    loss_row[q:] = np.nan
    return status_row_value


def sgd_runs(X, y, w_star, W0, lr, seeds, k, steps, fresh, resample, record_steps, cache,
             loss_out, w_out, status_out):
    dist_sgd_runs(X, y, w_star, W0, lr, seeds, k, steps, fresh, *core_kind(resample),
                  record_steps, cache, loss_out, w_out, status_out)


def dist_sgd_runs(X, y, w_star, W0, lr, seeds, k, steps, fresh, kind, fparams, gidx, gptr,
                  record_steps, cache, loss_out, w_out, status_out):
    n = X.shape[0]
    aug = (kind, fparams, gidx, gptr)
    for r in range(lr.shape[0]):
        w = W0[r % W0.shape[0]].copy()
        status_out[r] = -1
        q = 0
        loss_out[r, 0] = _mse(w, w_star)  # record_steps[0] == 0
        q = 1
        for t in range(steps):
            i = t % n
            if k == 1:
                A = X[i:i + 1]
            elif fresh:
                A = _augmented_block(X[i], k, seeds[r], rng.STREAM_FRESH, t, *aug)
            else:
                A = _augmented_block(X[i], k, seeds[r], rng.STREAM_FIXED, i, *aug)
            with np.errstate(all="ignore"):
                res = A @ w - y[i]
                if not np.all(np.isfinite(res)):
                    status_out[r] = _finish(loss_out[r], q, t)
                    break
                w = w - lr[r] * (A.T @ res) / k
            if t + 1 == record_steps[q]:
                loss_out[r, q] = _mse(w, w_star)
                if not np.isfinite(loss_out[r, q]):
                    status_out[r] = _finish(loss_out[r], q, t + 1)
                    break
                q += 1
        w_out[r] = w


def expected_runs(X, y, w_star, W0, lr, steps, resample, record_steps, loss_out, w_out,
                  status_out):
    n = X.shape[0]
    a, c, e = coefficients(X, y, "resample" if resample else "permutation")
    for r in range(lr.shape[0]):
        w = W0[r % W0.shape[0]].copy()
        status_out[r] = -1
        loss_out[r, 0] = _mse(w, w_star)
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
                q += 1
        w_out[r] = w


def augmented_gradient(w, X, y, k, seed, resample, out):
    dist_augmented_gradient(w, X, y, k, seed, *core_kind(resample), out)


def dist_augmented_gradient(w, X, y, k, seed, kind, fparams, gidx, gptr, out):
    for i in range(X.shape[0]):
        A = _augmented_block(X[i], k, seed, rng.STREAM_FIXED, i, kind, fparams, gidx, gptr)
        out[i] = A.T @ (A @ w - y[i]) / k


# -- Lie brackets (contract: fastperm.backends.numba_cpu.lie) ---------------------------------
# ``example_grads(model, theta, X, Y, out)``: out[b] = g_b(θ).
# ``brackets_all(model, theta, X, Y, G, h, c, w, out)``: out[x, y] = [v_x, v_y] (B, B, P) with
#   H_y g_x ≈ Σ_j w_j g_y(θ + c_j h_x G[x]) / h_x.
# ``brackets_pairs(model, theta, X, Y, G, h, c, w, pairs, out)``: out[q] = [v_a, v_b].
# The reference evaluates every stencil point for every example at once with the model's
# NumPy gradient, materialising (S, B, B, P): readable, memory-hungry, for tests.

def example_grads(model, theta, X, Y, out):
    out[:] = model.grad(theta, X, Y)


def _hessian_products(model, theta, X, Y, G, h, c, w):
    """D[x, y] = H_y g_x by the stencil, all (x, y): (B, B, P)."""
    points = theta + (c[:, None, None] * h[None, :, None]) * G[None, :, :]  # (S, B, P)
    grads = model.grad(points, X, Y)  # (S, B, B, P): stencil point j of x, example y
    return np.einsum("j,jxyp->xyp", w, grads) / h[:, None, None]


def brackets_all(model, theta, X, Y, G, h, c, w, out):
    D = _hessian_products(model, theta, X, Y, G, h, c, w)
    out[:] = D - D.transpose(1, 0, 2)


def brackets_pairs(model, theta, X, Y, G, h, c, w, pairs, out):
    D = _hessian_products(model, theta, X, Y, G, h, c, w)
    out[:] = D[pairs[:, 0], pairs[:, 1]] - D[pairs[:, 1], pairs[:, 0]]
    out[pairs[:, 0] == pairs[:, 1]] = 0.0


# -- k = ∞ for the augmentations of fastperm.distributions (contract:
# fastperm.backends.numba_cpu.closed_forms). Each step is done the explicit way:
# w ← w − lr (M_i w − y_i μ_i), with M_i w computed in the original coordinates.

def _explicit_runs(grad, n, w_star, W0, lr, steps, record_steps, loss_out, w_out, status_out):
    """``grad(i, w)`` is the expected gradient of example i; returns None when its scalar
    residual is already non-finite (the step counts as the divergence step)."""
    for r in range(lr.shape[0]):
        w = W0[r % W0.shape[0]].copy()
        status_out[r] = -1
        loss_out[r, 0] = _mse(w, w_star)
        q = 1
        for t in range(steps):
            with np.errstate(all="ignore"):
                g = grad(t % n, w)
                if g is None:
                    status_out[r] = _finish(loss_out[r], q, t)
                    break
                w = w - lr[r] * g
            if not np.all(np.isfinite(w)) or not np.isfinite(_mse(w, w_star)):
                status_out[r] = _finish(loss_out[r], q, t + 1)
                break
            if t + 1 == record_steps[q]:
                loss_out[r, q] = _mse(w, w_star)
                q += 1
        w_out[r] = w


def diag_rank1_runs(X, y, w_star, W0, lr, beta, gamma, D, steps, record_steps, loss_out, w_out,
                    status_out):
    def grad(i, w):
        c = beta * (X[i] @ w) - gamma * y[i]
        return None if not np.isfinite(c) else c * X[i] + D[i % D.shape[0]] * w

    _explicit_runs(grad, X.shape[0], w_star, W0, lr, steps, record_steps, loss_out, w_out,
                   status_out)


def circulant_runs(X, y, w_star, W0, lr, steps, record_steps, loss_out, w_out, status_out):
    d = X.shape[1]
    lam = np.abs(np.fft.rfft(X, axis=1)) ** 2 / d
    mean = X.mean(axis=1)

    def grad(i, w):  # E[x'x'ᵀ] w by FFT, minus y E[x']
        return np.fft.irfft(lam[i] * np.fft.rfft(w), n=d) - y[i] * mean[i]

    _explicit_runs(grad, X.shape[0], w_star, W0, lr, steps, record_steps, loss_out, w_out,
                   status_out)


def block_runs(X, y, w_star, W0, lr, gidx, gptr, steps, record_steps, loss_out, w_out,
               status_out):
    groups = [gidx[gptr[g]:gptr[g + 1]] for g in range(gptr.shape[0] - 1)]

    def moments(x):
        out = []
        for g in groups:
            s1, s2, dg = x[g].sum(), (x[g] ** 2).sum(), len(g)
            c = (s1 * s1 - s2) / (dg * (dg - 1)) if dg > 1 else 0.0
            out.append((s2 / dg, c, s1 / dg))
        return out

    mom = [moments(x) for x in X]

    def grad(i, w):  # E[x'_j x'_l] = s2/d_G (j = l), c_G (same group), m_G m_H (otherwise)
        g_out = np.empty_like(w)
        sums = [w[g].sum() for g in groups]
        for G, g in enumerate(groups):
            diag, c, m = mom[i][G]
            other = sum(mom[i][H][2] * sums[H] for H in range(len(groups)) if H != G)
            g_out[g] = (diag - c) * w[g] + c * sums[G] + m * other - y[i] * m
        return g_out

    _explicit_runs(grad, X.shape[0], w_star, W0, lr, steps, record_steps, loss_out, w_out,
                   status_out)


def dense_runs(M, mu, y, w_star, W0, lr, steps, record_steps, loss_out, w_out, status_out):
    _explicit_runs(lambda i, w: M[i] @ w - y[i] * mu[i], mu.shape[0], w_star, W0, lr, steps,
                   record_steps, loss_out, w_out, status_out)


def deep_linear_runs(X, y, w_star, Theta0, sizes, offs, lr, seeds, k, sigma, steps, fresh,
                     record_steps, loss_out, theta_out, status_out):
    """Noise-augmented SGD of :class:`fastperm.deep_linear.DeepLinear` (k = 0: exact expected
    gradient), with the network's NumPy gradients; loss = mean((v − w*)²) before each step."""
    from ..deep_linear import DeepLinear

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


def scheme_runs(X, y, w_star, W0, lr, seeds, scheme, k, fresh, steps, record_steps, loss_out,
                dist_out, w_out, status_out):
    """The schemes of :mod:`fastperm.schemes` (0 vanilla, 1 DA k-fold, 2 DA k = ∞, 3 FA,
    4 EA), each step written out; loss and distance to span(1) at the recorded steps."""
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
                if scheme == 0 or (scheme == 1 and k == 1):
                    g = (w @ x - y[i]) * x
                elif scheme == 1:
                    A = _augmented_block(x, k, seeds[r], rng.STREAM_FRESH if fresh else
                                         rng.STREAM_FIXED, t if fresh else i, KIND_PERMUTATION)
                    g = A.T @ (A @ w - y[i]) / k
                elif scheme == 2:
                    a, c, e = coefficients(x[None, :], y[i:i + 1], "permutation")
                    g = a[0] * w + c[0] * w.sum() - e[0]
                elif scheme == 3:
                    g = (x.mean() * w.sum() - y[i]) * x.mean() * np.ones(d)
                else:
                    alpha = w.mean()
                    alpha = alpha - lr[r] * (alpha * x.sum() - y[i]) * x.sum()
                    w = np.full(d, alpha)
                    continue
                if not np.all(np.isfinite(g)):
                    status_out[r] = _finish(loss_out[r], q, t)
                    dist_out[r, q:] = np.nan
                    break
                w = w - lr[r] * g
        w_out[r] = w
