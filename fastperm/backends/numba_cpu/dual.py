"""Plain and fixed k-fold SGD in the dual (Gram) form, compiled with Numba.

The driver (``dual_runs``) deals runs to threads, each with its own scratch; the serial
worker (``_dual_run``) runs one whole run. Contract: :mod:`fastperm.backends.contract`;
the readable version: :mod:`fastperm.backends.reference.dual`.

Work per step with N = n·k copies: k residuals read, k rows of the Gram matrix applied to
the N residuals (N·k multiply-adds), the loss updated in O(k²): no pass over d. A pass over
d (N·d) happens only where w is formed: at the call's start and end, at records that keep
w, and where the recurrences are resynchronised (every ``resync`` steps, when the loss has
fallen by ``drop``, at every step while it exceeds ``big``).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ..._jit import JIT, Twins, njit
from . import warmup
from .parallel import chunks
from .vec import dot, stop


@njit(**JIT)
def _form(C, beta, w, out):
    """``out = w + Σ_c β_c C[c]`` (out may be w)."""
    if out is not w:
        out[:] = w
    for c in range(C.shape[0]):
        b = beta[c]
        if b != 0.0:
            Cc = C[c]
            for m in range(out.shape[0]):
                out[m] += b * Cc[m]


@njit(**JIT)
def _sync(C, y, k, w, beta, w_star, res):
    """Fold β into w (β ← 0), the residuals of every copy from w; returns ``Σ (w − w*)²``."""
    _form(C, beta, w, w)
    beta[:] = 0.0
    for c in range(C.shape[0]):
        res[c] = dot(C[c], w) - y[c // k]
    s = 0.0
    for m in range(w.shape[0]):
        e = w[m] - w_star[m]
        s += e * e
    return s


@njit(**JIT)
def _dual_run(
    y, w_star, C, G, w, lr, k, t0, steps, resync, drop, big, record_steps, loss_row, w_rec, res,
    v, beta, gam,
):  # fmt: skip
    """One run from w (overwritten with its final parameters); returns the status."""
    n = y.shape[0]
    N, d = C.shape
    for c in range(N):
        v[c] = y[c // k] - dot(C[c], w_star)
    beta[:] = 0.0
    E = _sync(C, y, k, w, beta, w_star, res)
    floor = E * drop
    loss_row[0] = E / d
    if w_rec.shape[0] > 0:
        w_rec[0, :] = w
    q = 1
    cstep = lr / k
    status = -1
    # counters, not a 64-bit division per step (two of them were most of a step at N = 40)
    i = t0 % n
    sync_at = resync - t0 % resync  # the call's next step that is a multiple of resync
    for t in range(steps):
        if t == sync_at or E < floor or E > big:
            E = _sync(C, y, k, w, beta, w_star, res)
            floor = E * drop
            if t == sync_at:
                sync_at += resync
        c0 = i * k
        i = i + 1 if i + 1 < n else 0
        ok = True
        for j in range(k):
            ok = ok and np.isfinite(res[c0 + j])
        if not ok:
            status = stop(loss_row, q, t)
            break
        if k == 1:
            g = cstep * res[c0]
            E += g * (g * G[c0, c0] - 2.0 * (res[c0] + v[c0]))
            Gc = G[c0]
            for c in range(N):
                res[c] -= g * Gc[c]
            beta[c0] -= g
        else:
            for j in range(k):
                gam[j] = cstep * res[c0 + j]
            for j in range(k):
                Gj = G[c0 + j]
                a = 0.0
                for jj in range(k):
                    a += gam[jj] * Gj[c0 + jj]
                E += gam[j] * (a - 2.0 * (res[c0 + j] + v[c0 + j]))
            for j in range(k):
                g = gam[j]
                Gj = G[c0 + j]
                for c in range(N):
                    res[c] -= g * Gj[c]
                beta[c0 + j] -= g
        if record_steps[q] == t + 1:
            loss_row[q] = E / d
            if not np.isfinite(loss_row[q]):
                status = stop(loss_row, q, t + 1)
                break
            if w_rec.shape[0] > 0:
                _form(C, beta, w, w_rec[q])
            q += 1
    _form(C, beta, w, w)
    return status


def _dual_driver_body(
    y, w_star, W0, lr, copies, gram, which, k, steps, start_step, resync, drop, big,
    record_steps, loss_out, w_rec, w_out, status_out, nchunks,
):  # fmt: skip
    """Runs ``r = c, c + nchunks, ...`` go to chunk c; each chunk owns its scratch."""
    R = lr.shape[0]
    N = copies.shape[1]
    for ch in prange(nchunks):
        res = np.empty(N)
        v = np.empty(N)
        beta = np.empty(N)
        gam = np.empty(k)
        for r in range(ch, R, nchunks):
            w = w_out[r]
            w[:] = W0[np.int64(r) % W0.shape[0]]
            u = which[r]
            status_out[r] = _dual_run(
                y, w_star, copies[u], gram[u], w, lr[r], k, start_step, steps, resync, drop,
                big, record_steps, loss_out[r], w_rec[r], res, v, beta, gam,
            )  # fmt: skip


_dual_driver = Twins(_dual_driver_body)


def dual_runs(
    y, w_star, W0, lr, copies, gram, which, k, steps, start_step, resync, drop, big,
    record_steps, loss_out, w_rec, w_out, status_out,
):  # fmt: skip
    """One chunk of runs per thread (contract: :mod:`fastperm.backends.contract`)."""
    nchunks = chunks(lr.shape[0])
    _dual_driver(
        nchunks, y, w_star, W0, lr, copies, gram, which, k, steps, start_step, resync, drop,
        big, record_steps, loss_out, w_rec, w_out, status_out, nchunks,
    )  # fmt: skip


@warmup.once
def compile():
    """Compile (or load from Numba's cache) both twins for the types fastperm passes: the
    copies and Gram matrices arrive read-only (the front end shares them between calls)."""
    X, y, w_star = warmup.problem(1)
    lr, seeds, rec, loss, w_rec, w, status = warmup.runs(1)
    copies = X.reshape(1, *X.shape).copy()
    gram = np.einsum("und,umd->unm", copies, copies)
    for a in (copies, gram, y):
        a.setflags(write=False)
    which = np.zeros(lr.shape[0], dtype=np.int64)
    W0 = np.ones((1, X.shape[1]))
    dual_runs(
        y, w_star, W0, lr, copies, gram, which, 1, 1, 0, 1, 1e-3, 1e100, rec, loss, w_rec, w,
        status,
    )  # fmt: skip
