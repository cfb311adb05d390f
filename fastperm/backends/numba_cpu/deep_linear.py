"""Noise-augmented training of deep linear networks, compiled with Numba (k-fold and k = ∞).

Derivation and the step: :mod:`fastperm.deep_linear`. Per step, with θ = [W_1 … W_L, u]:
the backward vectors ``a_l`` (a_0 = v, the end-to-end vector), then the vectors
``m_l`` — ``r h_l + σ² B_{l+1} v`` for k = ∞ (a forward pass of x and one of v), or
the mean of ``r_j h_l(j)`` over k noisy copies (k forward passes) — then the rank-one
updates ``W_l ← W_l − lr a_l m_{l−1}ᵀ``, ``u ← u − lr m_L``. Runs are independent:
``prange`` over runs, scratch per run. In fixed mode the n·k noisy copies are drawn in
the first epoch and kept when ``cache`` allows (they never change results).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ... import rng as spec
from ..._jit import JIT, Twins, njit
from . import warmup
from .parallel import chunks
from .rng import make_key, normal
from .vec import stop


@njit(inline="always", **JIT)
def _noisy_copy(x, sigma, kk, out):
    """``out = x + σ ε`` with the ``Gaussian`` specification of :mod:`fastperm.rng`."""
    for m in range(x.shape[0]):
        out[m] = x[m] + sigma * normal(kk, m)


@njit(inline="always", **JIT)
def _layer(theta, sizes, offs, layer):
    """W_l as a 2-D view of θ (row-major, h_l × h_{l−1}); loops over views vectorise."""
    return theta[offs[layer - 1] : offs[layer]].reshape((sizes[layer], sizes[layer - 1]))


@njit(inline="always", **JIT)
def _forward(theta, sizes, offs, x, H):
    """``H[0] = x``, ``H[l] = W_l H[l−1]``."""
    L = sizes.shape[0] - 1
    for m in range(sizes[0]):
        H[0, m] = x[m]
    for layer in range(1, L + 1):
        W = _layer(theta, sizes, offs, layer)
        src = H[layer - 1]
        for o in range(W.shape[0]):
            row = W[o]
            s = 0.0
            for i in range(W.shape[1]):
                s += row[i] * src[i]
            H[layer, o] = s


@njit(**JIT)
def _deep_linear_run(
    X,
    y,
    w_star,
    theta,
    sizes,
    offs,
    lr,
    seed,
    k,
    sigma,
    steps,
    fresh,
    record_steps,
    loss_row,
    H,
    HV,
    A,
    M,
    xbuf,
    cache,
):
    n, d = X.shape
    L = sizes.shape[0] - 1
    hL = sizes[L]
    ub = offs[L]
    keep = cache.shape[0] == n and not fresh and k > 0
    stream = spec.STREAM_FRESH if fresh else spec.STREAM_FIXED
    q = 0
    for t in range(steps + 1):
        # backward vectors at θ_t: A[L] = u, A[l−1] = W_lᵀ A[l]; A[0] = v
        for o in range(hL):
            A[L, o] = theta[ub + o]
        for layer in range(L, 0, -1):
            W = _layer(theta, sizes, offs, layer)
            dst = A[layer - 1]
            for i in range(W.shape[1]):
                dst[i] = 0.0
            for o in range(W.shape[0]):
                ao = A[layer, o]
                row = W[o]
                for i in range(W.shape[1]):
                    dst[i] += ao * row[i]
        if record_steps[q] == t:
            s = 0.0
            for m in range(d):
                e = A[0, m] - w_star[m]
                s += e * e
            loss_row[q] = s / d
            if not np.isfinite(loss_row[q]):
                return stop(loss_row, q, t)
            q += 1
        if t == steps:
            break
        i = t % n
        for layer in range(L + 1):
            for o in range(sizes[layer]):
                M[layer, o] = 0.0
        if k == 0:  # exact: m_l = r h_l + σ² B_{l+1} v
            _forward(theta, sizes, offs, X[i], H)
            _forward(theta, sizes, offs, A[0], HV)
            r = -y[i]
            for o in range(hL):
                r += theta[ub + o] * H[L, o]
            s2 = sigma * sigma
            for layer in range(L + 1):
                for o in range(sizes[layer]):
                    M[layer, o] = r * H[layer, o] + s2 * HV[layer, o]
        else:
            for j in range(k):
                if keep:
                    xc = cache[i, j]
                    if t < n:
                        _noisy_copy(X[i], sigma, make_key(seed, stream, i, j), xc)
                else:
                    xc = xbuf
                    _noisy_copy(X[i], sigma, make_key(seed, stream, t if fresh else i, j), xc)
                _forward(theta, sizes, offs, xc, H)
                r = -y[i]
                for o in range(hL):
                    r += theta[ub + o] * H[L, o]
                rk = r / k
                for layer in range(L + 1):
                    for o in range(sizes[layer]):
                        M[layer, o] += rk * H[layer, o]
        ok = True
        for o in range(hL):
            ok = ok and np.isfinite(M[L, o])
        for m in range(d):
            ok = ok and np.isfinite(M[0, m])
        if not ok:
            return stop(loss_row, q, t)
        for layer in range(1, L + 1):
            W = _layer(theta, sizes, offs, layer)
            src = M[layer - 1]
            for o in range(W.shape[0]):
                c = lr * A[layer, o]
                row = W[o]
                for ii in range(W.shape[1]):
                    row[ii] -= c * src[ii]
        for o in range(hL):
            theta[ub + o] -= lr * M[L, o]
    return -1


def _deep_linear_body(
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
    n, d = X.shape
    L = sizes.shape[0] - 1
    width = 0
    for layer in range(L + 1):
        width = max(width, sizes[layer])
    # keep the fixed noisy copies when allowed (the caller checked the memory budget)
    keep = k > 0 and not fresh and cache
    for r in prange(lr.shape[0]):
        theta = theta_out[r]
        theta[:] = Theta0[np.int64(r) % Theta0.shape[0]]
        H = np.empty((L + 1, width))
        HV = np.empty((L + 1, width))
        A = np.empty((L + 1, width))
        M = np.empty((L + 1, width))
        # empty when the copies are not kept: the worker keeps them iff it has n rows (a
        # (1, 1, 1) stand-in had n rows for n = 1, and k > 1 copies were written past it)
        copies = np.empty((n, k, d) if keep else (0, 0, 0))
        status_out[r] = _deep_linear_run(
            X,
            y,
            w_star,
            theta,
            sizes,
            offs,
            lr[r],
            seeds[r],
            k,
            sigma,
            steps,
            fresh,
            record_steps,
            loss_out[r],
            H,
            HV,
            A,
            M,
            np.empty(d),
            copies,
        )


_deep_linear_driver = Twins(_deep_linear_body)


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
    """R runs (contract: :mod:`fastperm.backends.contract`); k = 0 is k = ∞.
    One run per ``prange`` iteration (serial when one thread or one run)."""
    _deep_linear_driver(
        chunks(lr.shape[0]),
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
    )


@warmup.once
def compile():
    """Compile (or load from Numba's cache) both twins for the types fastperm passes."""
    X, y, v = warmup.problem(2)
    lr, seeds, rec, loss, _, _, status = warmup.runs(3)
    sizes, offs = np.array([2, 1], dtype=np.int64), np.array([0, 2], dtype=np.int64)
    for k, fresh in ((0, False), (2, False), (2, True)):
        deep_linear_runs(
            X,
            y,
            v,
            np.ones((1, 3)),
            sizes,
            offs,
            lr,
            seeds,
            k,
            0.5,
            1,
            fresh,
            rec,
            True,
            loss,
            np.empty((2, 3)),
            status,
        )
