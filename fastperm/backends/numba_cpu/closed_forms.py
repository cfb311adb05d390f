"""k = ∞ training runs for the augmentations of :mod:`fastperm.augment.distributions`, with Numba.

Each step is ``w ← w − lr (M_i w − y_i μ_i)`` with the example's second moment
``M_i = E[x'x'ᵀ]`` and mean ``μ_i = E[x']``; the kernels use the structure of M_i:

* ``diag_rank1_runs`` (Gaussian noise, masking): ``M_i = β x xᵀ + diag(D_i)``,
  ``μ_i = γ x``. One fused O(d) pass per step (update, loss, next ``x·w``), as for
  k = 1.
* ``circulant_runs`` (cyclic shifts): M_i is circulant, diagonal in the Fourier
  basis with real eigenvalues ``λ_i = |x̂_i|²/d``, and ``μ̂_i = s1_i e_0``. The run is
  kept in the Fourier domain: ``ŵ_f ← (1 − lr λ_if) ŵ_f`` (+ ``lr y_i s1_i`` at
  f = 0), O(d) per step with no FFT after the set-up; the loss is exact by
  Parseval, ``mean((w − w*)²) = Σ_f ω_f |ŵ_f − ŵ*_f|² / d²`` (ω_f = 1 or 2 for the
  half spectrum).
* ``block_runs`` (block permutations, G groups): within group G the centred part
  of w only scales and the block mean moves with the other block means:
  ``w_j = α_G u_j + δ_G + μ*_G`` (u = w0 minus its block means, μ*_G = block mean of
  w*), ``α_G ← (1 − lr a_G) α_G``,
  ``δ_G ← δ_G − lr (a_G M_G + c_G d_G M_G + m_G (Σ_H m_H d_H M_H − m_G d_G M_G) − y m_G)``
  with ``M_G = δ_G + μ*_G``: **O(G) per step, O(T·G + n·d) per run**, and the loss
  ``Σ_G (α_G² U_G − 2α_G V_G + W_G + d_G δ_G²) / d`` is exact in O(G).
  (One group is the permutation case's O(T + d).)
* ``dense_runs`` (user moments): O(d²) per step.

Contract (same in :mod:`fastperm.backends.reference`, which does each step the
explicit way): the arguments of ``expected_runs`` plus the distribution's arrays.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ..._jit import JIT, Twins, njit
from ..closed_form_setup import (
    BlockState,
    fourier_finish,
    fourier_finish_kept,
    fourier_setup,
    spectra_kept,
)
from . import warmup
from .parallel import chunks
from .vec import dot, keep, mse, stop


@njit(**JIT)
def _diag_rank1_run(X, y, w_star, w, lr, beta, gamma, D, steps, record_steps, loss_row, w_rec):
    n, d = X.shape
    loss_row[0] = mse(w, w_star)
    keep(w_rec, 0, w)
    q = 1
    xw = dot(w, X[0])
    for t in range(steps):
        i = t % n
        c = lr * (beta * xw - gamma * y[i])
        if not np.isfinite(c):
            return stop(loss_row, q, t)
        x = X[i]
        Di = D[i % D.shape[0]]
        xn = X[(t + 1) % n]
        xw = 0.0
        for m in range(d):
            wm = w[m] - c * x[m] - lr * Di[m] * w[m]
            w[m] = wm
            xw += wm * xn[m]
        if record_steps[q] == t + 1:
            loss_row[q] = mse(w, w_star)
            if not np.isfinite(loss_row[q]):
                return stop(loss_row, q, t + 1)
            keep(w_rec, q, w)
            q += 1
    return -1


def _diag_rank1_body(
    X, y, w_star, W0, lr, beta, gamma, D, steps, record_steps, loss_out, w_rec, w_out, status_out
):
    for r in prange(lr.shape[0]):
        w = w_out[r]
        w[:] = W0[np.int64(r) % W0.shape[0]]
        status_out[r] = _diag_rank1_run(
            X, y, w_star, w, lr[r], beta, gamma, D, steps, record_steps, loss_out[r], w_rec[r]
        )


_diag_rank1_driver = Twins(_diag_rank1_body)


def diag_rank1_runs(
    X, y, w_star, W0, lr, beta, gamma, D, steps, record_steps, loss_out, w_rec, w_out, status_out
):
    """``D`` is (n, d), or (1, d) when the same for every example (Gaussian noise: σ²)."""
    _diag_rank1_driver(
        chunks(lr.shape[0]),
        X,
        y,
        w_star,
        W0,
        lr,
        beta,
        gamma,
        D,
        steps,
        record_steps,
        loss_out,
        w_rec,
        w_out,
        status_out,
    )


@njit(**JIT)
def _fourier_run(
    lam, s1, y, re, im, sre, sim, wt, d, lr, steps, record_steps, loss_row, re_rec, im_rec
):
    """One run in the Fourier domain: ``(re, im)`` is ŵ (half spectrum), updated in place;
    kept in ``(re_rec, im_rec)`` at the recorded steps when they have rows."""
    n, F = lam.shape
    scale = 1.0 / (d * d)
    s = 0.0
    for f in range(F):
        a = re[f] - sre[f]
        b = im[f] - sim[f]
        s += wt[f] * (a * a + b * b)
    loss_row[0] = s * scale
    keep(re_rec, 0, re)
    keep(im_rec, 0, im)
    q = 1
    for t in range(steps):
        i = t % n
        li = lam[i]
        # f = 0 carries the mean term; the loop over the rest has no branch
        g = 1.0 - lr * li[0]
        a = re[0] * g + lr * y[i] * s1[i]
        b = im[0] * g
        re[0] = a
        im[0] = b
        a -= sre[0]
        b -= sim[0]
        s = wt[0] * (a * a + b * b)
        for f in range(1, F):
            g = 1.0 - lr * li[f]
            a = re[f] * g
            b = im[f] * g
            re[f] = a
            im[f] = b
            a -= sre[f]
            b -= sim[f]
            s += wt[f] * (a * a + b * b)
        val = s * scale
        if not np.isfinite(val):
            return stop(loss_row, q, t + 1)
        if record_steps[q] == t + 1:
            loss_row[q] = val
            keep(re_rec, q, re)
            keep(im_rec, q, im)
            q += 1
    return -1


def _fourier_body(
    lam, s1, y, RE, IM, sre, sim, wt, d, lr, steps, record_steps, loss_out, RE_rec, IM_rec,
    status_out,
):  # fmt: skip
    for r in prange(lr.shape[0]):
        status_out[r] = _fourier_run(
            lam, s1, y, RE[r], IM[r], sre, sim, wt, d, lr[r], steps, record_steps, loss_out[r],
            RE_rec[r], IM_rec[r],
        )  # fmt: skip


_fourier_driver = Twins(_fourier_body)


def circulant_runs(X, y, w_star, W0, lr, steps, record_steps, loss_out, w_rec, w_out, status_out):
    """Cyclic shifts: FFTs at set-up and at the end only (NumPy); the steps in Fourier space
    (ŵ is kept at the recorded steps and transformed back after the loop when parameters
    are kept)."""
    lam, s1, RE, IM, sre, sim, wt = fourier_setup(X, w_star, W0, lr.shape[0])
    RE_rec, IM_rec = spectra_kept(w_rec, RE.shape[1])
    _fourier_driver(
        chunks(lr.shape[0]),
        lam,
        s1,
        y,
        RE,
        IM,
        sre,
        sim,
        wt,
        X.shape[1],
        lr,
        steps,
        record_steps,
        loss_out,
        RE_rec,
        IM_rec,
        status_out,
    )
    fourier_finish(RE, IM, w_out)
    fourier_finish_kept(RE_rec, IM_rec, w_rec, W0)


@njit(inline="always", **JIT)
def _block_loss(alpha, delta, size, U, V, Wss, d):
    """``mean((w − w*)²) = Σ_G (α_G² U_G − 2α_G V_G + W_G + d_G δ_G²) / d``."""
    s = 0.0
    for g in range(alpha.shape[0]):
        s += (
            alpha[g] * alpha[g] * U[g]
            - 2.0 * alpha[g] * V[g]
            + Wss[g]
            + size[g] * delta[g] * delta[g]
        )
    return s / d


@njit(**JIT)
def _block_run(
    a, c, mg, size, ustar, U, V, Wss, d, y, alpha, delta, lr, steps, record_steps, loss_row,
    alpha_rec, delta_rec,
):  # fmt: skip
    """One block-permutation run: ``alpha``, ``delta`` (G,) updated in place; kept in
    ``(alpha_rec, delta_rec)`` at the recorded steps when they have rows."""
    n, G = a.shape
    loss_row[0] = _block_loss(alpha, delta, size, U, V, Wss, d)
    keep(alpha_rec, 0, alpha)
    keep(delta_rec, 0, delta)
    q = 1
    for t in range(steps):
        i = t % n
        T = 0.0
        for g in range(G):
            T += mg[i, g] * size[g] * (delta[g] + ustar[g])
        ok = True
        for g in range(G):
            M = delta[g] + ustar[g]
            alpha[g] -= lr * a[i, g] * alpha[g]
            delta[g] -= lr * (
                a[i, g] * M
                + c[i, g] * size[g] * M
                + mg[i, g] * (T - mg[i, g] * size[g] * M)
                - y[i] * mg[i, g]
            )
            ok = ok and np.isfinite(alpha[g]) and np.isfinite(delta[g])
        if not ok:
            return stop(loss_row, q, t + 1)
        if record_steps[q] == t + 1:
            loss_row[q] = _block_loss(alpha, delta, size, U, V, Wss, d)
            if not np.isfinite(loss_row[q]):
                return stop(loss_row, q, t + 1)
            keep(alpha_rec, q, alpha)
            keep(delta_rec, q, delta)
            q += 1
    return -1


def _block_body(
    a,
    c,
    mg,
    size,
    ustar,
    U,
    V,
    Wss,
    d,
    y,
    ALPHA,
    DELTA,
    lr,
    steps,
    record_steps,
    loss_out,
    ALPHA_rec,
    DELTA_rec,
    status_out,
):
    for r in prange(lr.shape[0]):
        status_out[r] = _block_run(
            a,
            c,
            mg,
            size,
            ustar,
            U[r],
            V[r],
            Wss,
            d,
            y,
            ALPHA[r],
            DELTA[r],
            lr[r],
            steps,
            record_steps,
            loss_out[r],
            ALPHA_rec[r],
            DELTA_rec[r],
        )


_block_driver = Twins(_block_body)


def block_runs(
    X, y, w_star, W0, lr, gidx, gptr, steps, record_steps, loss_out, w_rec, w_out, status_out
):
    """Block permutations in O(T·G + n·d): set-up of the block moments in NumPy."""
    b = BlockState(X, w_star, W0, lr.shape[0], gidx, gptr, w_rec.shape[1])
    _block_driver(
        chunks(lr.shape[0]),
        b.a,
        b.c,
        b.mg,
        b.size,
        b.ustar,
        b.U,
        b.V,
        b.Wss,
        X.shape[1],
        y,
        b.ALPHA,
        b.DELTA,
        lr,
        steps,
        record_steps,
        loss_out,
        b.ALPHA_rec,
        b.DELTA_rec,
        status_out,
    )
    b.finish(w_out, w_rec)


@njit(**JIT)
def _dense_run(M, mu, y, w_star, w, lr, steps, record_steps, loss_row, w_rec, g):
    n, d = mu.shape
    loss_row[0] = mse(w, w_star)
    keep(w_rec, 0, w)
    q = 1
    for t in range(steps):
        i = t % n
        for m in range(d):
            acc = -y[i] * mu[i, m]
            Mi = M[i, m]
            for col in range(d):
                acc += Mi[col] * w[col]
            g[m] = acc
        s = 0.0
        for m in range(d):
            w[m] -= lr * g[m]
            e = w[m] - w_star[m]
            s += e * e
        if not np.isfinite(s):
            return stop(loss_row, q, t + 1)
        if record_steps[q] == t + 1:
            loss_row[q] = s / d
            keep(w_rec, q, w)
            q += 1
    return -1


def _dense_body(M, mu, y, w_star, W0, lr, steps, record_steps, loss_out, w_rec, w_out, status_out):
    for r in prange(lr.shape[0]):
        w = w_out[r]
        w[:] = W0[np.int64(r) % W0.shape[0]]
        status_out[r] = _dense_run(
            M, mu, y, w_star, w, lr[r], steps, record_steps, loss_out[r], w_rec[r],
            np.empty(mu.shape[1]),
        )  # fmt: skip


_dense_driver = Twins(_dense_body)


def dense_runs(M, mu, y, w_star, W0, lr, steps, record_steps, loss_out, w_rec, w_out, status_out):
    """User moments: O(d²) per step, one run per ``prange`` iteration."""
    _dense_driver(
        chunks(lr.shape[0]),
        M,
        mu,
        y,
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


@warmup.once
def compile():
    """Compile (or load from Numba's cache) the closed-form kernels, both twins, for the types
    the plans of :meth:`fastperm.augment.Augmentation.closed_form` pass. Once a process."""
    X, y, w_star = warmup.problem(2)
    lr, _, rec, loss, w_rec, w, status = warmup.runs(2)
    W0 = np.ones((1, 2))
    out = (loss, w_rec, w, status)
    diag_rank1_runs(X, y, w_star, W0, lr, 1.0, 1.0, np.ones((1, 2)), 1, rec, *out)
    circulant_runs(X, y, w_star, W0, lr, 1, rec, *out)
    block_runs(
        X,
        y,
        w_star,
        W0,
        lr,
        np.arange(2, dtype=np.int64),
        np.array([0, 2], dtype=np.int64),
        1,
        rec,
        *out,
    )
    dense_runs(np.ones((1, 2, 2)), np.ones((1, 2)), y, w_star, W0, lr, 1, rec, *out)
