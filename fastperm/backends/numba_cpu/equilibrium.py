"""SGD and GD of the two-layer linear network ``U W x`` on a Gaussian teacher, compiled with
Numba (contract: ``balance_runs``; the maths: :mod:`fastperm.equilibrium`; the readable
version: :mod:`fastperm.backends.reference.equilibrium`).

One run per ``prange`` iteration, scratch per run. A minibatch step is fused per sample:
draw ``z`` (the specification's Gaussian noise), ``x = L z``, ``y = A x + σ z'``,
``a = W x``, ``r = U a − y``, ``s = Uᵀ r``, then ``g_U += r aᵀ / B`` and
``g_W += s xᵀ / B`` (``R Wᵀ`` and ``Uᵀ R`` without forming R: O(h (d0 + d2)) per sample
instead of O(d0 d2 h) per step). The population gradient (B = 0) forms ``R = (UW − A) Σ``.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ... import rng as spec
from ..._jit import JIT, Twins, njit
from . import warmup
from .parallel import chunks
from .rng import make_key, normal


@njit(inline="always", **JIT)
def _split(theta, d2, d0):
    """``(U, W)`` as views of θ = [U (d2 × h), W (h × d0)]."""
    h = theta.shape[0] // (d2 + d0)
    return theta[: d2 * h].reshape((d2, h)), theta[d2 * h :].reshape((h, d0))


@njit(inline="always", **JIT)
def _error(U, W, A, E):
    """``E = U W − A``, row by row."""
    for a in range(U.shape[0]):
        Ea = E[a]
        for b in range(W.shape[1]):
            Ea[b] = -A[a, b]
        for i in range(U.shape[1]):
            u = U[a, i]
            Wi = W[i]
            for b in range(W.shape[1]):
                Ea[b] += u * Wi[b]


@njit(**JIT)
def _record(U, W, A, L, sigma, track, E, C, q, loss_row, charge_row, entries_row, norms_row):
    """The records of step q at (U, W); returns whether the loss is finite."""
    d2, h = U.shape
    d0 = W.shape[1]
    _error(U, W, A, E)  # the loss ½ ‖E L‖² + ½ σ² d2
    loss = 0.0
    for a in range(d2):
        for c in range(d0):
            s = 0.0
            for b in range(d0):
                s += E[a, b] * L[b, c]
            loss += s * s
    loss_row[q] = 0.5 * loss + 0.5 * sigma * sigma * d2
    for i in range(h):  # C = W Wᵀ − UᵀU
        Wi = W[i]
        for j in range(h):
            Wj = W[j]
            s = 0.0
            for b in range(d0):
                s += Wi[b] * Wj[b]
            C[i, j] = s
    for a in range(d2):
        Ua = U[a]
        for i in range(h):
            u = Ua[i]
            Ci = C[i]
            for j in range(h):
                Ci[j] -= u * Ua[j]
    c2 = 0.0
    u2 = 0.0
    w2 = 0.0
    for i in range(h):
        for j in range(h):
            c2 += C[i, j] * C[i, j]
        for b in range(d0):
            w2 += W[i, b] * W[i, b]
    for a in range(d2):
        for i in range(h):
            u2 += U[a, i] * U[a, i]
    charge_row[q] = np.sqrt(c2)
    for e in range(track.shape[0]):
        entries_row[q, e] = C[track[e, 0], track[e, 1]]
    norms_row[q, 0] = u2
    norms_row[q, 1] = w2
    return np.isfinite(loss_row[q])


@njit(**JIT)
def _sample_grads(U, W, A, L, sigma, seed, t, batch, gU, gW, z, x, a, r, s):
    """``g_U = R Wᵀ``, ``g_W = Uᵀ R`` over the batch of step t, fused per sample."""
    d2, h = U.shape
    d0 = W.shape[1]
    gU[:] = 0.0
    gW[:] = 0.0
    inv = 1.0 / batch
    for j in range(batch):
        key = make_key(seed, spec.STREAM_DATA, t, j)
        for m in range(d0 + d2):
            z[m] = normal(key, m)
        for b in range(d0):
            x[b] = 0.0
        for c in range(d0):  # x = L z[:d0], by columns of L
            zc = z[c]
            for b in range(d0):
                x[b] += L[b, c] * zc
        for i in range(h):  # a = W x
            Wi = W[i]
            v = 0.0
            for b in range(d0):
                v += Wi[b] * x[b]
            a[i] = v
        for o in range(d2):  # r = U a − (A x + σ z')
            Uo = U[o]
            Ao = A[o]
            v = 0.0
            for i in range(h):
                v += Uo[i] * a[i]
            yv = sigma * z[d0 + o]
            for b in range(d0):
                yv += Ao[b] * x[b]
            r[o] = (v - yv) * inv
        for i in range(h):
            s[i] = 0.0
        for o in range(d2):  # g_U += r aᵀ, s = Uᵀ r
            ro = r[o]
            Uo = U[o]
            gUo = gU[o]
            for i in range(h):
                gUo[i] += ro * a[i]
                s[i] += ro * Uo[i]
        for i in range(h):  # g_W += s xᵀ
            si = s[i]
            gWi = gW[i]
            for b in range(d0):
                gWi[b] += si * x[b]


@njit(**JIT)
def _population_grads(U, W, A, Sigma, gU, gW, E, Rm):
    """``R = (UW − A) Σ``, ``g_U = R Wᵀ``, ``g_W = Uᵀ R``."""
    d2, h = U.shape
    d0 = W.shape[1]
    _error(U, W, A, E)
    for o in range(d2):
        Eo = E[o]
        Ro = Rm[o]
        for b in range(d0):
            Ro[b] = 0.0
        for c in range(d0):
            e = Eo[c]
            Sc = Sigma[c]
            for b in range(d0):
                Ro[b] += e * Sc[b]
        for i in range(h):
            Wi = W[i]
            v = 0.0
            for b in range(d0):
                v += Ro[b] * Wi[b]
            gU[o, i] = v
    gW[:] = 0.0
    for o in range(d2):
        Ro = Rm[o]
        for i in range(h):
            u = U[o, i]
            gWi = gW[i]
            for b in range(d0):
                gWi[b] += u * Ro[b]


@njit(**JIT)
def _balance_run(
    A, L, Sigma, sigma, theta, lr, batch, seed, steps, t0, record_steps, track,
    loss_row, charge_row, entries_row, norms_row, kept,
):  # fmt: skip
    """One run from θ (overwritten with its final parameters); returns the status."""
    d2, d0 = A.shape
    U, W = _split(theta, d2, d0)
    h = U.shape[1]
    gU = np.empty((d2, h))
    gW = np.empty((h, d0))
    E = np.empty((d2, d0))
    Rm = np.empty((d2, d0))
    C = np.empty((h, h))
    z = np.empty(d0 + d2)
    x = np.empty(d0)
    a = np.empty(h)
    r = np.empty(d2)
    s = np.empty(h)
    q = 0
    for t in range(steps + 1):
        if record_steps[q] == t:
            ok = _record(
                U, W, A, L, sigma, track, E, C, q, loss_row, charge_row, entries_row, norms_row
            )
            if not ok:
                return t, q
            if kept.shape[0] > 0:
                kept[q, :] = theta
            q += 1
        if t == steps:
            break
        if batch == 0:
            _population_grads(U, W, A, Sigma, gU, gW, E, Rm)
        else:
            _sample_grads(U, W, A, L, sigma, seed, t0 + t, batch, gU, gW, z, x, a, r, s)
        g = 0.0
        for o in range(d2):
            for i in range(h):
                g += gU[o, i]
        for i in range(h):
            for b in range(d0):
                g += gW[i, b]
        if not np.isfinite(g):
            return t, q
        for o in range(d2):
            Uo = U[o]
            gUo = gU[o]
            for i in range(h):
                Uo[i] -= lr * gUo[i]
        for i in range(h):
            Wi = W[i]
            gWi = gW[i]
            for b in range(d0):
                Wi[b] -= lr * gWi[b]
    return -1, q


def _balance_body(
    A, L, Sigma, sigma, Theta0, lr, batch, seeds, steps, start_step, record_steps, track,
    loss_out, charge_out, entries_out, norms_out, theta_rec, theta_out, status_out,
):  # fmt: skip
    keep = theta_rec.shape[1] > 0
    for r in prange(lr.shape[0]):
        theta = theta_out[r]
        theta[:] = Theta0[np.int64(r) % Theta0.shape[0]]
        st, q = _balance_run(
            A, L, Sigma, sigma, theta, lr[r], batch[r], seeds[r], steps, start_step,
            record_steps, track, loss_out[r], charge_out[r], entries_out[r], norms_out[r],
            theta_rec[r] if keep else theta_rec[r, :0],
        )  # fmt: skip
        status_out[r] = st
        if st >= 0:
            loss_out[r, q:] = np.nan
            charge_out[r, q:] = np.nan
            entries_out[r, q:] = np.nan
            norms_out[r, q:] = np.nan


_balance_driver = Twins(_balance_body)


def balance_runs(
    A, L, Sigma, sigma, Theta0, lr, batch, seeds, steps, start_step, record_steps, track,
    loss_out, charge_out, entries_out, norms_out, theta_rec, theta_out, status_out,
):  # fmt: skip
    """R runs (contract: :mod:`fastperm.backends.contract`). One run per ``prange``
    iteration (serial when one thread or one run)."""
    _balance_driver(
        chunks(lr.shape[0]),
        A, L, Sigma, sigma, Theta0, lr, batch, seeds, steps, start_step, record_steps, track,
        loss_out, charge_out, entries_out, norms_out, theta_rec, theta_out, status_out,
    )  # fmt: skip


@warmup.once
def compile():
    """Compile (or load from Numba's cache) both twins for the types fastperm passes."""
    A = np.ones((1, 1))
    A.setflags(write=False)  # (the teacher's arrays are read-only)
    lr, seeds, rec, loss, _, _, status = warmup.runs(2)
    track = np.zeros((1, 2), dtype=np.int64)
    for keep in (0, 2):
        balance_runs(
            A, A, A, 0.5, np.ones((1, 2)), lr, np.array([0, 2], dtype=np.int64), seeds, 1, 0,
            rec, track, loss, np.empty((2, 2)), np.empty((2, 2, 1)), np.empty((2, 2, 2)),
            np.empty((2, keep, 2)), np.empty((2, 2)), status,
        )  # fmt: skip
