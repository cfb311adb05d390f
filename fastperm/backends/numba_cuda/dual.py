"""Plain and fixed k-fold SGD in the dual (Gram) form as a CUDA kernel (contract:
:mod:`fastperm.backends.contract`, ``dual_runs``; the readable version:
:mod:`fastperm.backends.reference.dual`).

Mapping: **one block per run, threads over the N = n·k copies.** A step reads the k
residuals of example i's copies (every thread, the same values), and each thread then
updates the residuals it owns (``c ≡ thread (mod block)``) with k rows of the Gram matrix;
the loss recurrence is O(k²) scalar work that every thread repeats on the same values (so
each holds it, with no broadcast). Two barriers a step: after the k residuals are read
(and copied to the run's scratch), after the update. Where w is formed (the call's ends,
records that keep it, every ``resync`` steps) the threads own its coordinates instead. The
Gram matrices (host BLAS, :func:`fastperm.dual.setup`) are copied once per call and shared
by the runs that share their copies (for k = 1, all of them).
"""

from __future__ import annotations

import math

from numba import cuda, float64

from . import device
from .sgd import MAX_BLOCK, _block_sum, _kept, _nan_from


@cuda.jit(device=True)
def _form(C, beta, w, out, tid, nt):
    """``out = w + Σ_c β_c C[c]`` over the coordinates this thread owns (out may be w)."""
    N, d = C.shape
    for m in range(tid, d, nt):
        s = w[m]
        for c in range(N):
            b = beta[c]
            if b != 0.0:
                s += b * C[c, m]
        out[m] = s


@cuda.jit(device=True)
def _sync(C, y, k, w, beta, w_star, res, red, tid, nt):
    """Fold β into w (β ← 0), the residuals of every copy from w; returns ``Σ (w − w*)²``
    to every thread."""
    N, d = C.shape
    _form(C, beta, w, w, tid, nt)
    cuda.syncthreads()  # w is whole before any residual reads it
    for c in range(tid, N, nt):
        beta[c] = 0.0
        s = 0.0
        for m in range(d):
            s += C[c, m] * w[m]
        res[c] = s - y[c // k]
    p = 0.0
    for m in range(tid, d, nt):
        e = w[m] - w_star[m]
        p += e * e
    return _block_sum(red, p, tid, nt)  # (its barriers also publish res and β)


@cuda.jit
def _dual_kernel(
    y, w_star, W0, lr, copies, gram, which, k, t0, steps, resync, drop, big, rec, keep_w,
    scratch, loss, w_rec, w_out, status,
):  # fmt: skip
    """Run r in block r; ``scratch[r]`` holds its residuals, v, β and the step's γ, r_j."""
    red = cuda.shared.array(MAX_BLOCK, float64)
    r = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    n = y.shape[0]
    u = which[r]
    C = copies[u]
    G = gram[u]
    N, d = C.shape
    sr = scratch[r]
    res = sr[0]
    v = sr[1]
    beta = sr[2]
    gam = sr[3]  # γ_j in [0, k), r_j in [k, 2k)
    w = w_out[r]
    row = loss[r]
    kept = w_rec[r]
    w0 = W0[r % W0.shape[0]]
    for m in range(tid, d, nt):
        w[m] = w0[m]
    for c in range(tid, N, nt):
        s = 0.0
        for m in range(d):
            s += C[c, m] * w_star[m]
        v[c] = y[c // k] - s
        beta[c] = 0.0
    cuda.syncthreads()
    E = _sync(C, y, k, w, beta, w_star, res, red, tid, nt)
    floor = E * drop
    if tid == 0:
        row[0] = E / d
    if keep_w:
        for m in range(tid, d, nt):
            kept[0, m] = w[m]
    cstep = lr[r] / k
    i = t0 % n
    sync_at = resync - t0 % resync
    q = 1
    st = -1
    for t in range(steps):
        if t == sync_at or E < floor or E > big:  # (E: the same in every thread)
            cuda.syncthreads()
            E = _sync(C, y, k, w, beta, w_star, res, red, tid, nt)
            floor = E * drop
            if t == sync_at:
                sync_at += resync
        c0 = i * k
        i = i + 1 if i + 1 < n else 0
        ok = True
        for j in range(k):
            ok = ok and math.isfinite(res[c0 + j])
        if not ok:  # the same values in every thread: all leave together
            _nan_from(row, q, tid)
            st = t
            break
        for j in range(tid, k, nt):
            gam[j] = cstep * res[c0 + j]
            gam[k + j] = res[c0 + j]
        cuda.syncthreads()  # γ and r_j are written; nobody updates res before all read it
        for j in range(k):
            a = 0.0
            for jj in range(k):
                a += gam[jj] * G[c0 + j, c0 + jj]
            E += gam[j] * (a - 2.0 * (gam[k + j] + v[c0 + j]))
        for c in range(tid, N, nt):
            s = res[c]
            for j in range(k):
                s -= gam[j] * G[c0 + j, c]
            res[c] = s
        for j in range(tid, k, nt):
            beta[c0 + j] -= gam[j]
        cuda.syncthreads()  # res and β are updated before the next step reads them
        if rec[q] == t + 1:
            val = E / d
            if tid == 0:
                row[q] = val
            if not math.isfinite(val):
                _nan_from(row, q, tid)
                st = t + 1
                break
            if keep_w:
                _form(C, beta, w, kept[q], tid, nt)
            q += 1
    cuda.syncthreads()
    _form(C, beta, w, w, tid, nt)
    if tid == 0:
        status[r] = st


def dual_runs(
    y, w_star, W0, lr, copies, gram, which, k, steps, start_step, resync, drop, big,
    record_steps, loss_out, w_rec, w_out, status_out,
):  # fmt: skip
    """Driver: R blocks of threads over the copies (arrays may be device arrays)."""
    R = lr.shape[0]
    if R == 0:
        return
    N = copies.shape[1]
    nt = device.block(N)
    keep_w, w_rec = _kept(w_rec)
    out = device.Outputs(loss_out, w_rec, w_out, status_out)
    scratch = cuda.device_array((R, 4, max(N, 2 * k)))
    args = [device.to_device(a) for a in (y, w_star, W0, lr, copies, gram, which, record_steps)]
    with device.quiet_simulator():
        _dual_kernel[R, nt](
            *args[:7],
            k,
            start_step,
            steps,
            resync,
            drop,
            big,
            args[7],
            keep_w,
            scratch,
            *out.dev,
        )
    out.finish()
