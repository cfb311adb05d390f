"""Online mean-field SGD of ``f(x) = (1/N) Σ_i tanh(θ_i x)`` under the coordinate swap as a
CUDA kernel (contract: :mod:`fastperm.backends.contract`, ``meanfield_runs``; the maths:
:mod:`fastperm.meanfield`; the readable version: :mod:`fastperm.backends.reference.meanfield`;
the CPU kernel it mirrors: :mod:`fastperm.backends.numba_cpu.meanfield`).

Mapping: **one block per run; the block's threads split the N particles** (thread ``tid``
owns particles ``tid, tid + nt, …``: their entries of θ, of the gradient G and of the
activations S). A step is fused per sample, as on the CPU: every thread draws the sample
``(x, y)`` and the views' weights itself (the same few scalars in every thread, so no
barrier), computes ``tanh(θ_i x_v)`` for its particles and the views with a non-zero weight,
the block reduces the partial sums into ``f_v`` (one tree reduction of up to four sums:
deterministic for a given block size), and each thread accumulates its particles' gradients.
After the batch each thread forms its particles' steps (EA: projected onto E^G); the block
counts the non-finite entries, and, when there are none, each thread moves its particles
(and adds their Langevin noise when τ > 0). The records (the risk on Xeval, the offset to
E^G, the second moment) are block sums too. A thread never reads another thread's particles:
the reductions are the only exchange. Every branch on divergence tests a block-reduced value
(the same in every thread), so the threads leave together.

``scratch[r]`` holds run r's G (4N), then the activations of the two views (2N each); θ lives
in ``theta_out[r]`` throughout.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, float64

from ... import codes
from ... import rng as spec
from . import device
from .equilibrium import _quiet_divergence
from .rng import draw, make_key, normal
from .sgd import MAX_BLOCK, _kept, _nan_from

HALF32 = np.uint64(1 << 31)

#: threads' partial sums a block reduces at once (rows of the shared scratch)
WIDE = 4


@cuda.jit(device=True)
def _block_sum4(red, a, b, c, d, tid, nt):
    """The sums of ``a, b, c, d`` over the block's ``nt`` threads (a power of two), returned to
    every thread; a fixed tree, so the same sums for the same block size every time."""
    red[0, tid] = a
    red[1, tid] = b
    red[2, tid] = c
    red[3, tid] = d
    cuda.syncthreads()
    s = nt // 2
    while s > 0:
        if tid < s:
            for m in range(WIDE):
                red[m, tid] += red[m, tid + s]
        cuda.syncthreads()
        s //= 2
    sa = red[0, 0]
    sb = red[1, 0]
    sc = red[2, 0]
    sd = red[3, 0]
    cuda.syncthreads()  # every thread has read the sums before the next call writes them
    return sa, sb, sc, sd


@cuda.jit(device=True)
def _partial(th, x0, x1, S, keep, tid, nt):
    """This thread's share of ``Σ_i tanh(θ_i x)`` over its particles (``S[i] = tanh(θ_i x)``
    when ``keep``), as two floats."""
    N = th.shape[0] // 4
    p0 = 0.0
    p1 = 0.0
    for i in range(tid, N, nt):
        a = math.tanh(th[4 * i] * x0 + th[4 * i + 1] * x1)
        b = math.tanh(th[4 * i + 2] * x0 + th[4 * i + 3] * x1)
        if keep:
            S[2 * i] = a
            S[2 * i + 1] = b
        p0 += a
        p1 += b
    return p0, p1


@cuda.jit(device=True)
def _backward(G, S, w, e0, e1, x0, x1, tid, nt):
    """``G_i[o, c] += w e[o] (1 − S[i, o]²) x[c]`` over this thread's particles."""
    N = G.shape[0] // 4
    for i in range(tid, N, nt):
        a = w * e0 * (1.0 - S[2 * i] * S[2 * i])
        b = w * e1 * (1.0 - S[2 * i + 1] * S[2 * i + 1])
        G[4 * i] += a * x0
        G[4 * i + 1] += a * x1
        G[4 * i + 2] += b * x0
        G[4 * i + 3] += b * x1


@cuda.jit(device=True)
def _teacher(teacher, x0, x1):
    """``f*(x)`` as two floats (every thread computes it)."""
    M = teacher.shape[0]
    f0 = 0.0
    f1 = 0.0
    for m in range(M):
        f0 += math.tanh(teacher[m, 0] * x0 + teacher[m, 1] * x1)
        f1 += math.tanh(teacher[m, 2] * x0 + teacher[m, 3] * x1)
    return f0 / M, f1 / M


@cuda.jit(device=True)
def _weights(scheme, k, seed, T, j):
    """The views' weights ``(w_0, w_1)`` of sample j of step T (every thread draws them)."""
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


@cuda.jit(device=True)
def _record(th, scheme, Xeval, Yeval, S, red, q, loss_row, offset_row, moment_row, tid, nt):
    """The records of index q at θ; returns whether they are finite (to every thread)."""
    N = th.shape[0] // 4
    E = Xeval.shape[0]
    fa = scheme == codes.FA
    loss = 0.0
    for e in range(E):
        x0 = Xeval[e, 0]
        x1 = Xeval[e, 1]
        p0, p1 = _partial(th, x0, x1, S, False, tid, nt)
        r0 = 0.0
        r1 = 0.0
        if fa:
            r0, r1 = _partial(th, x1, x0, S, False, tid, nt)
        f0, f1, g0, g1 = _block_sum4(red, p0, p1, r0, r1, tid, nt)
        f0 /= N
        f1 /= N
        if fa:
            f0 = 0.5 * (f0 + g1 / N)
            f1 = 0.5 * (f1 + g0 / N)
        d0 = f0 - Yeval[e, 0]
        d1 = f1 - Yeval[e, 1]
        loss += 0.5 * (d0 * d0 + d1 * d1)
    po = 0.0
    pm = 0.0
    for i in range(tid, N, nt):
        u = th[4 * i] - th[4 * i + 3]
        v = th[4 * i + 1] - th[4 * i + 2]
        po += 0.5 * (u * u + v * v)
        for c in range(4):
            pm += th[4 * i + c] * th[4 * i + c]
    offset, moment, _, _ = _block_sum4(red, po, pm, 0.0, 0.0, tid, nt)
    loss /= E
    offset /= N
    moment /= N
    if tid == 0:
        loss_row[q] = loss
        offset_row[q] = offset
        moment_row[q] = moment
    return math.isfinite(loss + moment)


@cuda.jit(device=True)
def _step_grads(th, teacher, s, sigma, scheme, k, seed, T, batch, G, S0, S1, red, tid, nt):
    """``G = Σ_j Σ_v w_v J_i(x_v)ᵀ e_v`` over the batch of step T, each thread over the
    entries of its particles."""
    N = th.shape[0] // 4
    for i in range(tid, N, nt):
        for c in range(4):
            G[4 * i + c] = 0.0
    for j in range(batch):
        key = make_key(seed, spec.STREAM_DATA, T, j)
        x0 = s * normal(key, 0)
        x1 = s * normal(key, 1)
        y0, y1 = _teacher(teacher, x0, x1)
        y0 += sigma * normal(key, 2)
        y1 += sigma * normal(key, 3)
        w0, w1 = _weights(scheme, k, seed, T, j)
        p0 = p1 = r0 = r1 = 0.0
        if w0 > 0.0:
            p0, p1 = _partial(th, x0, x1, S0, True, tid, nt)
        if w1 > 0.0:
            r0, r1 = _partial(th, x1, x0, S1, True, tid, nt)  # the view (Px, Py)
        f0, f1, g0, g1 = _block_sum4(red, p0, p1, r0, r1, tid, nt)
        f0 /= N
        f1 /= N
        g0 /= N
        g1 /= N
        if scheme == codes.FA:
            e0 = 0.5 * (f0 + g1) - y0
            e1 = 0.5 * (f1 + g0) - y1
            _backward(G, S0, w0, e0, e1, x0, x1, tid, nt)
            _backward(G, S1, w1, e1, e0, x1, x0, tid, nt)
        else:
            if w0 > 0.0:
                _backward(G, S0, w0, f0 - y0, f1 - y1, x0, x1, tid, nt)
            if w1 > 0.0:
                _backward(G, S1, w1, g0 - y1, g1 - y0, x1, x0, tid, nt)


@cuda.jit
def _meanfield_kernel(
    teacher, s, sigma, Xeval, Yeval, Theta0, scheme, k, lr, seeds, batch, lam, temp, steps,
    t0, rec, keep, scratch, loss, offset, moment, theta_rec, theta_out, status,
):  # fmt: skip
    """Run r in block r."""
    red = cuda.shared.array((WIDE, MAX_BLOCK), float64)
    r = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    P = theta_out.shape[1]
    N = P // 4
    sr = scratch[r]
    G = sr[:P]
    S0 = sr[P : P + 2 * N]
    S1 = sr[P + 2 * N : P + 4 * N]
    th = theta_out[r]
    th0 = Theta0[r % Theta0.shape[0]]
    for i in range(tid, N, nt):
        for c in range(4):
            th[4 * i + c] = th0[4 * i + c]
    sch = scheme[r]
    kr = k[r]
    step = lr[r]
    seed = seeds[r]
    inv = 1.0 / batch
    kick = math.sqrt(2.0 * step * temp)
    lrow = loss[r]
    orow = offset[r]
    mrow = moment[r]
    kept = theta_rec[r]
    q = 0
    st = -1
    for t in range(steps + 1):
        if rec[q] == t:
            ok = _record(th, sch, Xeval, Yeval, S0, red, q, lrow, orow, mrow, tid, nt)
            if not ok:  # (the same in every thread)
                st = t
                break
            if keep:
                for i in range(tid, N, nt):
                    for c in range(4):
                        kept[q, 4 * i + c] = th[4 * i + c]
            q += 1
        if t == steps:
            break
        T = t0 + t
        _step_grads(th, teacher, s, sigma, sch, kr, seed, T, batch, G, S0, S1, red, tid, nt)
        bad = 0.0
        for i in range(tid, N, nt):
            for c in range(4):
                G[4 * i + c] = G[4 * i + c] * inv + lam * th[4 * i + c]
            if sch == codes.EA:  # the step projected onto E^G: (Δ + PΔPᵀ)/2
                a = 0.5 * (G[4 * i] + G[4 * i + 3])
                b = 0.5 * (G[4 * i + 1] + G[4 * i + 2])
                G[4 * i] = a
                G[4 * i + 3] = a
                G[4 * i + 1] = b
                G[4 * i + 2] = b
            for c in range(4):
                if not math.isfinite(G[4 * i + c]):
                    bad += 1.0
        bad, _, _, _ = _block_sum4(red, bad, 0.0, 0.0, 0.0, tid, nt)
        if bad > 0.0:
            st = t
            break
        for i in range(tid, N, nt):
            for c in range(4):
                th[4 * i + c] -= step * G[4 * i + c]
        if temp > 0.0:
            for i in range(tid, N, nt):
                key = make_key(seed, spec.STREAM_NOISE, T, i)
                n0 = normal(key, 0)
                n1 = normal(key, 1)
                n2 = normal(key, 2)
                n3 = normal(key, 3)
                if sch == codes.EA:
                    n0 = 0.5 * (n0 + n3)
                    n3 = n0
                    n1 = 0.5 * (n1 + n2)
                    n2 = n1
                th[4 * i] += kick * n0
                th[4 * i + 1] += kick * n1
                th[4 * i + 2] += kick * n2
                th[4 * i + 3] += kick * n3
    if st >= 0:  # (st is the same in every thread; thread 0 wrote every record)
        _nan_from(lrow, q, tid)
        _nan_from(orow, q, tid)
        _nan_from(mrow, q, tid)
    if tid == 0:
        status[r] = st


def meanfield_runs(
    teacher, s, sigma, Xeval, Yeval, Theta0, scheme, k, lr, seeds, batch, lam, temp, steps,
    start_step, record_steps, loss_out, offset_out, moment_out, theta_rec, theta_out, status_out,
):  # fmt: skip
    """Driver: R blocks of threads over the particles (arrays may be device arrays)."""
    R = lr.shape[0]
    if R == 0:
        return
    P = theta_out.shape[1]
    nt = device.block(P // 4)
    keep, theta_rec = _kept(theta_rec)
    out = device.Outputs(loss_out, offset_out, moment_out, theta_rec, theta_out, status_out)
    scratch = cuda.device_array((R, 2 * P))
    args = [
        device.to_device(a)
        for a in (teacher, Xeval, Yeval, Theta0, scheme, k, lr, seeds, record_steps)
    ]
    with _quiet_divergence():
        _meanfield_kernel[R, nt](
            args[0],
            float(s),
            float(sigma),
            *args[1:8],
            int(batch),
            float(lam),
            float(temp),
            int(steps),
            int(start_step),
            args[8],
            keep,
            scratch,
            *out.dev,
        )
    out.finish()
