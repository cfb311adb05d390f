"""SGD and GD of the two-layer linear network ``U W x`` on a Gaussian teacher as a CUDA kernel
(contract: :mod:`fastperm.backends.contract`, ``balance_runs``; the maths:
:mod:`fastperm.equilibrium`; the readable version:
:mod:`fastperm.backends.reference.equilibrium`).

Mapping: **one block per run; the block's threads share each step's work.** A minibatch
step is fused per sample, as on the CPU: the threads draw ``z`` (entries strided by
thread), then ``x = L z`` (threads over the rows of x), ``a = W x`` (over h),
``r = (U a − A x − σ z') / B`` (over d2), ``s = Uᵀ r`` (over h), with a barrier after
each, then ``g_U += r aᵀ`` and ``g_W += s xᵀ`` (each thread over the gradient entries it
owns: the same entries it zeroes, tests and updates, so these need no barrier). The
population gradient (B = 0) forms ``E = UW − A`` and ``R = E Σ`` (threads over entries),
then ``g_U = R Wᵀ`` and ``g_W = Uᵀ R``. The records (loss, ‖C‖_F, the tracked entries
of C, ‖U‖², ‖W‖²) are block sums over entries. Every branch on divergence tests a
block-reduced value (the same in every thread), so the threads leave together.

``scratch[r]`` holds run r's gradients, E, R, C and the sample's z, x, a, r, s; θ lives
in ``theta_out[r]`` (U then W, row-major) throughout.
"""

from __future__ import annotations

import contextlib
import math
import warnings

import numpy as np
from numba import cuda, float64

from ... import rng as spec
from . import device
from .rng import make_key, normal
from .sgd import MAX_BLOCK, _block_sum, _kept, _nan_from


@cuda.jit(device=True)
def _residual(th, A, d2, d0, h, E, tid, nt):
    """``E = U W − A`` over the entries this thread owns (the caller publishes it)."""
    off = d2 * h
    for e in range(tid, d2 * d0, nt):
        o = e // d0
        b = e - o * d0
        v = -A[o, b]
        for i in range(h):
            v += th[o * h + i] * th[off + i * d0 + b]
        E[e] = v


@cuda.jit(device=True)
def _record(
    th, A, L, sigma, track, nq, d2, d0, h, E, C, red, tid, nt, q,
    loss_row, charge_row, entries_row, norms_row,
):  # fmt: skip
    """The records of index q at θ; returns the loss (to every thread)."""
    off = d2 * h
    _residual(th, A, d2, d0, h, E, tid, nt)
    for e in range(tid, h * h, nt):  # C = W Wᵀ − UᵀU
        i = e // h
        j = e - i * h
        v = 0.0
        for b in range(d0):
            v += th[off + i * d0 + b] * th[off + j * d0 + b]
        for o in range(d2):
            v -= th[o * h + i] * th[o * h + j]
        C[e] = v
    cuda.syncthreads()  # E and C are whole
    p = 0.0
    for e in range(tid, d2 * d0, nt):  # ‖E L‖²
        o = e // d0
        c = e - o * d0
        v = 0.0
        for b in range(d0):
            v += E[o * d0 + b] * L[b, c]
        p += v * v
    loss = 0.5 * _block_sum(red, p, tid, nt) + 0.5 * sigma * sigma * d2
    p = 0.0
    for e in range(tid, h * h, nt):
        p += C[e] * C[e]
    c2 = _block_sum(red, p, tid, nt)
    p = 0.0
    for e in range(tid, d2 * h, nt):
        p += th[e] * th[e]
    u2 = _block_sum(red, p, tid, nt)
    p = 0.0
    for e in range(tid, h * d0, nt):
        p += th[off + e] * th[off + e]
    w2 = _block_sum(red, p, tid, nt)
    if tid == 0:
        loss_row[q] = loss
        charge_row[q] = math.sqrt(c2)
        norms_row[q, 0] = u2
        norms_row[q, 1] = w2
    for e in range(tid, nq, nt):
        entries_row[q, e] = C[track[e, 0] * h + track[e, 1]]
    return loss


@cuda.jit(device=True)
def _sample_grads(
    th, A, L, sigma, seed, t, batch, d2, d0, h, gU, gW, z, x, a, rv, s, tid, nt
):  # fmt: skip
    """``g_U = R Wᵀ``, ``g_W = Uᵀ R`` over the batch of step t, fused per sample; each thread
    writes only the gradient entries it owns."""
    off = d2 * h
    for e in range(tid, d2 * h, nt):
        gU[e] = 0.0
    for e in range(tid, h * d0, nt):
        gW[e] = 0.0
    inv = 1.0 / batch
    for j in range(batch):
        key = make_key(seed, spec.STREAM_DATA, t, j)
        for m in range(tid, d0 + d2, nt):
            z[m] = normal(key, m)
        cuda.syncthreads()  # z is whole; the last sample's reads of x, a, r, s are done
        for b in range(tid, d0, nt):  # x = L z[:d0]
            v = 0.0
            for c in range(d0):
                v += L[b, c] * z[c]
            x[b] = v
        cuda.syncthreads()
        for i in range(tid, h, nt):  # a = W x
            v = 0.0
            for b in range(d0):
                v += th[off + i * d0 + b] * x[b]
            a[i] = v
        cuda.syncthreads()
        for o in range(tid, d2, nt):  # r = (U a − (A x + σ z')) / B
            v = 0.0
            for i in range(h):
                v += th[o * h + i] * a[i]
            yv = sigma * z[d0 + o]
            for b in range(d0):
                yv += A[o, b] * x[b]
            rv[o] = (v - yv) * inv
        cuda.syncthreads()
        for i in range(tid, h, nt):  # s = Uᵀ r
            v = 0.0
            for o in range(d2):
                v += th[o * h + i] * rv[o]
            s[i] = v
        cuda.syncthreads()
        for e in range(tid, d2 * h, nt):  # g_U += r aᵀ
            o = e // h
            gU[e] += rv[o] * a[e - o * h]
        for e in range(tid, h * d0, nt):  # g_W += s xᵀ
            i = e // d0
            gW[e] += s[i] * x[e - i * d0]


@cuda.jit(device=True)
def _population_grads(th, A, Sigma, d2, d0, h, gU, gW, E, Rm, tid, nt):
    """``R = (UW − A) Σ``, ``g_U = R Wᵀ``, ``g_W = Uᵀ R`` (each thread writes the gradient
    entries it owns)."""
    off = d2 * h
    _residual(th, A, d2, d0, h, E, tid, nt)
    cuda.syncthreads()
    for e in range(tid, d2 * d0, nt):
        o = e // d0
        b = e - o * d0
        v = 0.0
        for c in range(d0):
            v += E[o * d0 + c] * Sigma[c, b]
        Rm[e] = v
    cuda.syncthreads()
    for e in range(tid, d2 * h, nt):
        o = e // h
        i = e - o * h
        v = 0.0
        for b in range(d0):
            v += Rm[o * d0 + b] * th[off + i * d0 + b]
        gU[e] = v
    for e in range(tid, h * d0, nt):
        i = e // d0
        b = e - i * d0
        v = 0.0
        for o in range(d2):
            v += th[o * h + i] * Rm[o * d0 + b]
        gW[e] = v


@cuda.jit
def _balance_kernel(
    A, L, Sigma, sigma, Theta0, lr, batch, seeds, steps, t0, rec, track, nq, keep,
    scratch, loss, charge, entries, norms, theta_rec, theta_out, status,
):  # fmt: skip
    """Run r in block r."""
    red = cuda.shared.array(MAX_BLOCK, float64)
    r = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    d2, d0 = A.shape
    P = theta_out.shape[1]
    h = P // (d2 + d0)
    off = d2 * h
    sr = scratch[r]
    o1 = d2 * h
    o2 = o1 + h * d0
    o3 = o2 + d2 * d0
    o4 = o3 + d2 * d0
    o5 = o4 + h * h
    o6 = o5 + d0 + d2
    o7 = o6 + d0
    o8 = o7 + h
    o9 = o8 + d2
    gU = sr[:o1]
    gW = sr[o1:o2]
    E = sr[o2:o3]
    Rm = sr[o3:o4]
    C = sr[o4:o5]
    z = sr[o5:o6]
    x = sr[o6:o7]
    a = sr[o7:o8]
    rv = sr[o8:o9]
    s = sr[o9 : o9 + h]
    th = theta_out[r]
    th0 = Theta0[r % Theta0.shape[0]]
    for e in range(tid, P, nt):
        th[e] = th0[e]
    cuda.syncthreads()
    step = lr[r]
    B = batch[r]
    seed = seeds[r]
    lrow = loss[r]
    crow = charge[r]
    erow = entries[r]
    nrow = norms[r]
    kept = theta_rec[r]
    q = 0
    st = -1
    for t in range(steps + 1):
        if rec[q] == t:
            val = _record(
                th, A, L, sigma, track, nq, d2, d0, h, E, C, red, tid, nt, q,
                lrow, crow, erow, nrow,
            )  # fmt: skip
            if not math.isfinite(val):  # (the same value in every thread)
                st = t
                break
            if keep:
                for e in range(tid, P, nt):
                    kept[q, e] = th[e]
            q += 1
        if t == steps:
            break
        if B == 0:
            _population_grads(th, A, Sigma, d2, d0, h, gU, gW, E, Rm, tid, nt)
        else:
            _sample_grads(
                th, A, L, sigma, seed, t0 + t, B, d2, d0, h, gU, gW, z, x, a, rv, s, tid, nt
            )  # fmt: skip
        p = 0.0
        for e in range(tid, d2 * h, nt):
            p += gU[e]
        for e in range(tid, h * d0, nt):
            p += gW[e]
        g = _block_sum(red, p, tid, nt)  # (its barriers: every read of θ is done)
        if not math.isfinite(g):
            st = t
            break
        for e in range(tid, d2 * h, nt):
            th[e] -= step * gU[e]
        for e in range(tid, h * d0, nt):
            th[off + e] -= step * gW[e]
        cuda.syncthreads()  # θ is updated before the next step reads it
    if st >= 0:  # (st is the same in every thread: all are here)
        cuda.syncthreads()  # every thread's writes of record q are done before the NaNs
        _nan_from(lrow, q, tid)
        _nan_from(crow, q, tid)
        if tid == 0:
            for p_ in range(q, nrow.shape[0]):
                nrow[p_, 0] = math.nan
                nrow[p_, 1] = math.nan
                for e in range(nq):
                    erow[p_, e] = math.nan
    if tid == 0:
        status[r] = st


@contextlib.contextmanager
def _quiet_divergence():
    """On the simulator, a diverging run's NaN/inf arithmetic also warns "invalid value"
    (NumPy scalars; the GPU is silent, as the CPU backends are): silence that too."""
    with device.quiet_simulator():
        if not device.SIMULATOR:
            yield
            return
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
            yield


def balance_runs(
    A, L, Sigma, sigma, Theta0, lr, batch, seeds, steps, start_step, record_steps, track,
    loss_out, charge_out, entries_out, norms_out, theta_rec, theta_out, status_out,
):  # fmt: skip
    """Driver: R blocks of threads over the step's entries (arrays may be device arrays)."""
    R = lr.shape[0]
    if R == 0:
        return
    d2, d0 = A.shape
    P = theta_out.shape[1]
    h = P // (d2 + d0)
    nt = device.block(max(d2 * h, h * d0, d2 * d0, h * h))
    keep, theta_rec = _kept(theta_rec)
    nq = track.shape[0]
    if nq == 0:  # no zero-size device arrays: one-entry stand-ins the kernel never touches
        track = np.zeros((1, 2), dtype=np.int64)
        entries_dev = np.zeros((R, 1, 1))
        out = device.Outputs(loss_out, charge_out, norms_out, theta_rec, theta_out, status_out)
        dev = list(out.dev)
        dev.insert(2, device.to_device(entries_dev))
    else:
        out = device.Outputs(
            loss_out, charge_out, entries_out, norms_out, theta_rec, theta_out, status_out
        )
        dev = list(out.dev)
    width = d2 * h + h * d0 + 2 * d2 * d0 + h * h + 2 * (d0 + d2 + h)
    scratch = cuda.device_array((R, width))
    args = [device.to_device(a) for a in (A, L, Sigma, Theta0, lr, batch, seeds, record_steps)]
    with _quiet_divergence():
        _balance_kernel[R, nt](
            args[0],
            args[1],
            args[2],
            float(sigma),
            *args[3:7],
            steps,
            start_step,
            args[7],
            device.to_device(track),
            nq,
            keep,
            scratch,
            *dev,
        )
    out.finish()
