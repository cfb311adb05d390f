"""Online SGD of the shallow network ``f(x) = (1/N) Σ_i tanh(θ_i x)`` under the coordinate
swap, compiled with Numba (contract: ``meanfield_runs``; the maths: :mod:`fastperm.meanfield`;
the readable version: :mod:`fastperm.backends.reference.meanfield`).

One run per ``prange`` iteration, scratch per run. A step is fused per sample: draw the
sample, run the forward pass over the particles for each view with a non-zero weight
(keeping the N × 2 activations of each), form the residuals, and accumulate every
particle's gradient in a second pass; the particles move once per step.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from ... import codes
from ... import rng as spec
from ..._jit import JIT, Twins, njit
from . import warmup
from .parallel import chunks
from .rng import draw, make_key, normal

HALF32 = np.uint64(1 << 31)


@njit(inline="always", **JIT)
def _forward(theta, x0, x1, S):
    """``S[i] = tanh(θ_i x)``; returns ``f(x) = (1/N) Σ_i S[i]`` as two floats."""
    N = S.shape[0]
    f0 = 0.0
    f1 = 0.0
    for i in range(N):
        a = math.tanh(theta[4 * i] * x0 + theta[4 * i + 1] * x1)
        b = math.tanh(theta[4 * i + 2] * x0 + theta[4 * i + 3] * x1)
        S[i, 0] = a
        S[i, 1] = b
        f0 += a
        f1 += b
    return f0 / N, f1 / N


@njit(inline="always", **JIT)
def _backward(G, S, w, e0, e1, x0, x1):
    """``G_i[o, c] += w e[o] (1 − S[i, o]²) x[c]``."""
    for i in range(S.shape[0]):
        a = w * e0 * (1.0 - S[i, 0] * S[i, 0])
        b = w * e1 * (1.0 - S[i, 1] * S[i, 1])
        G[4 * i] += a * x0
        G[4 * i + 1] += a * x1
        G[4 * i + 2] += b * x0
        G[4 * i + 3] += b * x1


@njit(**JIT)
def _teacher(teacher, x0, x1):
    """``f*(x)`` as two floats."""
    M = teacher.shape[0]
    f0 = 0.0
    f1 = 0.0
    for m in range(M):
        f0 += math.tanh(teacher[m, 0] * x0 + teacher[m, 1] * x1)
        f1 += math.tanh(teacher[m, 2] * x0 + teacher[m, 3] * x1)
    return f0 / M, f1 / M


@njit(**JIT)
def _weights(scheme, k, seed, T, j):
    """The views' weights ``(w_0, w_1)`` of sample j of step T."""
    if scheme == codes.VANILLA or scheme == codes.EA:
        return 1.0, 0.0
    if scheme == codes.FA or k == 0:
        return 0.5, 0.5
    key = make_key(seed, spec.STREAM_GROUP, T, j)
    n = 0
    for c in range(k):
        if draw(key, c) >= HALF32:
            n += 1
    return (k - n) / k, n / k


@njit(**JIT)
def _record(theta, scheme, Xeval, Yeval, S, q, loss_row, offset_row, moment_row):
    """The records of record q; returns whether they are finite."""
    N = S.shape[0]
    loss = 0.0
    for e in range(Xeval.shape[0]):
        x0 = Xeval[e, 0]
        x1 = Xeval[e, 1]
        f0, f1 = _forward(theta, x0, x1, S)
        if scheme == codes.FA:
            g0, g1 = _forward(theta, x1, x0, S)
            f0 = 0.5 * (f0 + g1)
            f1 = 0.5 * (f1 + g0)
        d0 = f0 - Yeval[e, 0]
        d1 = f1 - Yeval[e, 1]
        loss += 0.5 * (d0 * d0 + d1 * d1)
    offset = 0.0
    moment = 0.0
    for i in range(N):
        u = theta[4 * i] - theta[4 * i + 3]
        v = theta[4 * i + 1] - theta[4 * i + 2]
        offset += 0.5 * (u * u + v * v)
        for c in range(4):
            moment += theta[4 * i + c] * theta[4 * i + c]
    loss_row[q] = loss / Xeval.shape[0]
    offset_row[q] = offset / N
    moment_row[q] = moment / N
    return np.isfinite(loss_row[q] + moment_row[q])


@njit(**JIT)
def _step_grads(theta, teacher, s, sigma, scheme, k, seed, T, batch, G, S0, S1):
    """``G = Σ_j Σ_v w_v J_i(x_v)ᵀ e_v`` over the batch of step T."""
    G[:] = 0.0
    for j in range(batch):
        key = make_key(seed, spec.STREAM_DATA, T, j)
        x0 = s * normal(key, 0)
        x1 = s * normal(key, 1)
        y0, y1 = _teacher(teacher, x0, x1)
        y0 += sigma * normal(key, 2)
        y1 += sigma * normal(key, 3)
        w0, w1 = _weights(scheme, k, seed, T, j)
        f0 = f1 = g0 = g1 = 0.0
        if w0 > 0.0:
            f0, f1 = _forward(theta, x0, x1, S0)
        if w1 > 0.0:
            g0, g1 = _forward(theta, x1, x0, S1)  # the view (Px, Py)
        if scheme == codes.FA:
            e0 = 0.5 * (f0 + g1) - y0
            e1 = 0.5 * (f1 + g0) - y1
            _backward(G, S0, w0, e0, e1, x0, x1)
            _backward(G, S1, w1, e1, e0, x1, x0)
        else:
            if w0 > 0.0:
                _backward(G, S0, w0, f0 - y0, f1 - y1, x0, x1)
            if w1 > 0.0:
                _backward(G, S1, w1, g0 - y1, g1 - y0, x1, x0)


@njit(**JIT)
def _meanfield_run(
    teacher, s, sigma, Xeval, Yeval, theta, scheme, k, lr, seed, batch, lam, temp, steps, t0,
    record_steps, loss_row, offset_row, moment_row, kept,
):  # fmt: skip
    """One run from θ (overwritten with its final particles); returns (status, records)."""
    N = theta.shape[0] // 4
    G = np.empty(4 * N)
    S0 = np.empty((N, 2))
    S1 = np.empty((N, 2))
    inv = 1.0 / batch
    kick = math.sqrt(2.0 * lr * temp)
    q = 0
    for t in range(steps + 1):
        if record_steps[q] == t:
            if not _record(theta, scheme, Xeval, Yeval, S0, q, loss_row, offset_row, moment_row):
                return t, q
            if kept.shape[0] > 0:
                kept[q, :] = theta
            q += 1
        if t == steps:
            break
        T = t0 + t
        _step_grads(theta, teacher, s, sigma, scheme, k, seed, T, batch, G, S0, S1)
        for i in range(4 * N):
            G[i] = G[i] * inv + lam * theta[i]
        if scheme == codes.EA:  # the step projected onto E^G: (Δ + PΔPᵀ)/2
            for i in range(N):
                a = 0.5 * (G[4 * i] + G[4 * i + 3])
                b = 0.5 * (G[4 * i + 1] + G[4 * i + 2])
                G[4 * i] = a
                G[4 * i + 3] = a
                G[4 * i + 1] = b
                G[4 * i + 2] = b
        for i in range(4 * N):  # every entry of the step (as the reference checks)
            if not np.isfinite(G[i]):
                return t, q
        for i in range(4 * N):
            theta[i] -= lr * G[i]
        if temp > 0.0:
            for i in range(N):
                key = make_key(seed, spec.STREAM_NOISE, T, i)
                n0 = normal(key, 0)
                n1 = normal(key, 1)
                n2 = normal(key, 2)
                n3 = normal(key, 3)
                if scheme == codes.EA:
                    n0 = n3 = 0.5 * (n0 + n3)
                    n1 = n2 = 0.5 * (n1 + n2)
                theta[4 * i] += kick * n0
                theta[4 * i + 1] += kick * n1
                theta[4 * i + 2] += kick * n2
                theta[4 * i + 3] += kick * n3
    return -1, q


def _meanfield_body(
    teacher, s, sigma, Xeval, Yeval, Theta0, scheme, k, lr, seeds, batch, lam, temp, steps,
    start_step, record_steps, loss_out, offset_out, moment_out, theta_rec, theta_out, status_out,
):  # fmt: skip
    keep = theta_rec.shape[1] > 0
    for r in prange(lr.shape[0]):
        theta = theta_out[r]
        theta[:] = Theta0[np.int64(r) % Theta0.shape[0]]
        st, q = _meanfield_run(
            teacher, s, sigma, Xeval, Yeval, theta, scheme[r], k[r], lr[r], seeds[r], batch,
            lam, temp, steps, start_step, record_steps, loss_out[r], offset_out[r],
            moment_out[r], theta_rec[r] if keep else theta_rec[r, :0],
        )  # fmt: skip
        status_out[r] = st
        if st >= 0:
            loss_out[r, q:] = np.nan
            offset_out[r, q:] = np.nan
            moment_out[r, q:] = np.nan


_meanfield_driver = Twins(_meanfield_body)


def meanfield_runs(
    teacher, s, sigma, Xeval, Yeval, Theta0, scheme, k, lr, seeds, batch, lam, temp, steps,
    start_step, record_steps, loss_out, offset_out, moment_out, theta_rec, theta_out, status_out,
):  # fmt: skip
    """R runs (contract: :mod:`fastperm.backends.contract`). One run per ``prange``
    iteration (serial when one thread or one run)."""
    _meanfield_driver(
        chunks(lr.shape[0]),
        teacher, s, sigma, Xeval, Yeval, Theta0, scheme, k, lr, seeds, batch, lam, temp, steps,
        start_step, record_steps, loss_out, offset_out, moment_out, theta_rec, theta_out,
        status_out,
    )  # fmt: skip


@warmup.once
def compile():
    """Compile (or load from Numba's cache) both twins for the types fastperm passes."""
    teacher = np.ones((1, 4))
    X = np.ones((1, 2))
    for a in (teacher, X):
        a.setflags(write=False)  # (the teacher's arrays are read-only)
    lr, seeds, rec, loss, _, _, status = warmup.runs(2)
    ints = np.zeros(2, dtype=np.int64)
    for keep in (0, 2):
        meanfield_runs(
            teacher, 1.0, 0.0, X, X, np.ones((1, 4)), ints, ints, lr, seeds, 1, 0.0, 0.0, 1,
            0, rec, loss, np.empty((2, 2)), np.empty((2, 2)), np.empty((2, keep, 4)),
            np.empty((2, 4)), status,
        )  # fmt: skip
