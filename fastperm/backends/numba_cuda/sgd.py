"""Batched SGD runs on the linear problem as CUDA kernels.

Layers: :func:`fastperm.train` / :func:`fastperm.train_many` validate; the
drivers here (``sgd_runs``, ``expected_runs``, ``augmented_gradient``) move the
arrays, allocate device scratch and launch; the kernels run whole training runs
on the device. Contract: :mod:`fastperm.backends.reference`.

Mapping (why):

* k = 1 and k-fold: **one block per run, threads over d.** A run is a chain of
  T dependent steps, so its parallelism is across d within a step; each thread
  owns the coordinates ``m ≡ thread (mod block)`` of w (kept in the run's row of
  ``w_out``; no other thread touches them, so w needs no synchronisation), and
  a step costs one shared-memory tree reduction per dot product (k of them for
  k-fold, plus one for the loss when it is recorded). Independent runs fill the
  GPU: R blocks. As on the CPU, the k = 1 step is one fused pass that updates
  w, accumulates the loss and computes the next example's residual.
* k-fold copies: copy j of the step's example is drawn by thread ``(j − 1) mod
  block`` with the counter-based generator (Fisher–Yates is sequential within a
  copy; copies are independent), into the run's device scratch (n·k·d floats
  with the fixed-copy cache, k·d without).
* k = ∞: **one thread per run.** The O(T + d) recurrence of the CPU backends
  (:func:`fastperm.backends.numba_cpu.sgd._expected_run`) is scalar work per
  step; only the set-up and the final w touch d entries.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, float64

from ... import rng as spec
from . import device
from .rng import augment_into, make_key

MAX_BLOCK = device.MAX_BLOCK


@cuda.jit(device=True)
def _block_sum(red, v, tid, nt):
    """Sum of ``v`` over the block's ``nt`` threads (a power of two), returned to every thread."""
    red[tid] = v
    cuda.syncthreads()
    s = nt // 2
    while s > 0:
        if tid < s:
            red[tid] += red[tid + s]
        cuda.syncthreads()
        s //= 2
    total = red[0]
    cuda.syncthreads()  # every thread has read red[0] before the next call writes it
    return total


@cuda.jit(device=True)
def _sq_err(w, w_star, tid, nt):
    s = 0.0
    for m in range(tid, w.shape[0], nt):
        e = w[m] - w_star[m]
        s += e * e
    return s


@cuda.jit(device=True)
def _nan_from(row, q, tid):
    if tid == 0:
        for p in range(q, row.shape[0]):
            row[p] = math.nan


@cuda.jit(device=True)
def _keep(kept, keep_w, q, w, tid, nt):
    """``kept[q] = w`` when parameters are kept; each thread copies the coordinates it owns."""
    if keep_w:
        for m in range(tid, w.shape[0], nt):
            kept[q, m] = w[m]


@cuda.jit(device=True)
def _start_run(W0, r, w, w_star, row, red, tid, nt):
    """Run r's start: ``w = W0[r]`` (or the one row), its loss in ``row[0]``."""
    w0 = W0[r % W0.shape[0]]
    for m in range(tid, w.shape[0], nt):
        w[m] = w0[m]
    sq = _block_sum(red, _sq_err(w, w_star, tid, nt), tid, nt)
    if tid == 0:
        row[0] = sq / w.shape[0]


@cuda.jit
def _plain_kernel(X, y, w_star, W0, lr, t0, steps, rec, keep_w, loss, w_rec, w_out, status):
    """Plain SGD (k = 1): block r runs run r; the call's step t is the run's step t0 + t."""
    red = cuda.shared.array(MAX_BLOCK, float64)
    r = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    n, d = X.shape
    w = w_out[r]
    row = loss[r]
    kept = w_rec[r]
    _start_run(W0, r, w, w_star, row, red, tid, nt)
    _keep(kept, keep_w, 0, w, tid, nt)
    p = 0.0
    for m in range(tid, d, nt):
        p += w[m] * X[t0 % n, m]
    dot = _block_sum(red, p, tid, nt)
    rate = lr[r]
    q = 1
    st = -1
    for t in range(steps):
        i = (t0 + t) % n
        res = dot - y[i]
        if not math.isfinite(res):
            _nan_from(row, q, tid)
            st = t
            break
        c = rate * res
        nxt = (i + 1) % n
        p = 0.0
        e2 = 0.0
        record = rec[q] == t + 1
        for m in range(tid, d, nt):
            wm = w[m] - c * X[i, m]
            w[m] = wm
            p += wm * X[nxt, m]
            if record:
                e = wm - w_star[m]
                e2 += e * e
        dot = _block_sum(red, p, tid, nt)
        if record:
            val = _block_sum(red, e2, tid, nt) / d
            if tid == 0:
                row[q] = val
            if not math.isfinite(val):
                _nan_from(row, q, tid)
                st = t + 1
                break
            _keep(kept, keep_w, q, w, tid, nt)
            q += 1
    if tid == 0:
        status[r] = st


@cuda.jit
def _kfold_kernel(
    X, y, w_star, W0, lr, seeds, t0, steps, fresh, resample, rec, keep_w, copies, res, loss,
    w_rec, w_out, status,
):  # fmt: skip
    """k-fold augmented SGD: block r runs run r. ``copies[r]`` is (n, k, d) when the fixed
    copies are kept, else (1, k, d); ``res[r]`` holds the k residuals of the step."""
    red = cuda.shared.array(MAX_BLOCK, float64)
    r = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    n, d = X.shape
    keep = copies.shape[1] == n and not fresh
    k = copies.shape[2]
    w = w_out[r]
    row = loss[r]
    kept = w_rec[r]
    _start_run(W0, r, w, w_star, row, red, tid, nt)
    _keep(kept, keep_w, 0, w, tid, nt)
    resr = res[r]
    seed = seeds[r]
    stream = spec.STREAM_FRESH if fresh else spec.STREAM_FIXED
    c = lr[r] / k
    q = 1
    st = -1
    for t in range(steps):
        i = (t0 + t) % n
        if keep:
            A = copies[r, i]
            fill = t < n  # the call's first n steps visit every example once
        else:
            A = copies[r, 0]
            fill = True
        if fill:
            cuda.syncthreads()  # the previous step's reads of A are done
            for m in range(tid, d, nt):
                A[0, m] = X[i, m]
            for j in range(1 + tid, k, nt):
                key = t0 + t if fresh else i
                augment_into(X[i], make_key(seed, stream, key, j), resample, A[j])
            cuda.syncthreads()
        ok = True
        for j in range(k):
            p = 0.0
            for m in range(tid, d, nt):
                p += A[j, m] * w[m]
            rj = _block_sum(red, p, tid, nt) - y[i]
            ok = ok and math.isfinite(rj)
            if tid == 0:
                resr[j] = rj
        if not ok:
            _nan_from(row, q, tid)
            st = t
            break
        cuda.syncthreads()  # resr is written
        for j in range(k):
            cj = c * resr[j]
            for m in range(tid, d, nt):
                w[m] -= cj * A[j, m]
        if rec[q] == t + 1:
            val = _block_sum(red, _sq_err(w, w_star, tid, nt), tid, nt) / d
            if tid == 0:
                row[q] = val
            if not math.isfinite(val):
                _nan_from(row, q, tid)
                st = t + 1
                break
            _keep(kept, keep_w, q, w, tid, nt)
            q += 1
        cuda.syncthreads()  # resr is read before the next step writes it
    if tid == 0:
        status[r] = st


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
    """Driver: R blocks (contract: :mod:`fastperm.backends.contract`; arrays may be device
    arrays). Draws the kinds of :data:`SAMPLER_KINDS` only: permutations and resampling
    (``fparams``, ``gidx``, ``gptr`` are unused)."""
    resample = _resample(kind)
    R = lr.shape[0]
    n, d = X.shape
    if R == 0:
        return
    nt = device.block(d)
    keep_w, w_rec = _kept(w_rec)
    out = device.Outputs(loss_out, w_rec, w_out, status_out)
    args = [device.to_device(a) for a in (X, y, w_star, W0, lr, record_steps)]
    with device.quiet_simulator():
        if k == 1:
            _plain_kernel[R, nt](
                args[0], args[1], args[2], args[3], args[4], start_step, steps, args[5], keep_w,
                *out.dev,
            )  # fmt: skip
        else:
            keep = cache and not fresh
            copies = cuda.device_array((R, n if keep else 1, k, d))
            res = cuda.device_array((R, k))
            _kfold_kernel[R, nt](
                args[0],
                args[1],
                args[2],
                args[3],
                args[4],
                device.to_device(seeds),
                start_step,
                steps,
                fresh,
                resample,
                args[5],
                keep_w,
                copies,
                res,
                *out.dev,
            )
    out.finish()


#: the augmentation kinds this backend's samplers draw (the front end checks before a call)
SAMPLER_KINDS = (spec.KIND_PERMUTATION, spec.KIND_RESAMPLE)


def _resample(kind):
    """The device kernels' flag for a kind of :data:`SAMPLER_KINDS`."""
    if kind not in SAMPLER_KINDS:  # the registry refuses other kinds before any call
        raise ValueError(
            f"the cuda backend draws permutations and resampling only, got augmentation kind {kind}"
        )
    return kind == spec.KIND_RESAMPLE


@cuda.jit
def _coefficients_kernel(X, y, resample, a, A, e):
    """Per example i (one thread): ``a_i``, ``A_i = a_i + c_i d``, ``e_i`` — the numba_cpu
    ``_coefficients`` loop, in the same order."""
    i = cuda.grid(1)
    n, d = X.shape
    if i >= n:
        return
    s1 = 0.0
    s2 = 0.0
    for m in range(d):
        s1 += X[i, m]
        s2 += X[i, m] * X[i, m]
    if resample:
        c = s1 * s1 / (d * d)
    elif d > 1:
        c = (s1 * s1 - s2) / (d * (d - 1))
    else:
        c = 0.0
    a[i] = s2 / d - c
    A[i] = a[i] + c * d
    e[i] = y[i] * s1 / d


@cuda.jit(device=True)
def _keep_affine(kept, keep_w, q, w0, alpha, m0, mean):
    """``kept[q] = α (w0 − m0) + mean``: w of a k = ∞ run, when parameters are kept."""
    if keep_w:
        for m in range(w0.shape[0]):
            kept[q, m] = alpha * (w0[m] - m0) + mean


@cuda.jit
def _expected_kernel(a, A, e, w_star, W0, lr, steps, rec, keep_w, loss, w_rec, w_out, status):
    """k = ∞ in O(T + d), one thread per run: ``w = α w0c + (δ + m*) 1`` (the recurrence and
    exact loss of ``numba_cpu.sgd._expected_run``)."""
    r = cuda.grid(1)
    if r >= lr.shape[0]:
        return
    n = a.shape[0]
    w = w_out[r]
    w0 = W0[r % W0.shape[0]]
    d = w.shape[0]
    m0 = 0.0
    ms = 0.0
    for m in range(d):
        m0 += w0[m]
        ms += w_star[m]
    m0 /= d
    ms /= d
    c00 = 0.0
    c0s = 0.0
    css = 0.0
    for m in range(d):
        u = w0[m] - m0
        v = w_star[m] - ms
        c00 += u * u
        c0s += u * v
        css += v * v
    c00 /= d
    c0s /= d
    css /= d
    alpha = 1.0 if c00 > 0.0 else 0.0
    delta = m0 - ms
    row = loss[r]
    row[0] = delta * delta + c00 - 2.0 * c0s + css
    kept = w_rec[r]
    if keep_w:  # the start itself
        for m in range(d):
            kept[0, m] = w0[m]
    q = 1
    st = -1
    rate = lr[r]
    for t in range(steps):
        i = t % n
        alpha -= rate * a[i] * alpha
        delta -= rate * (A[i] * (delta + ms) - e[i])
        if not (math.isfinite(alpha) and math.isfinite(delta)):
            _nan_from(row, q, 0)
            st = t + 1
            break
        if rec[q] == t + 1:
            val = delta * delta + alpha * alpha * c00 - 2.0 * alpha * c0s + css
            row[q] = val
            if not math.isfinite(val):
                _nan_from(row, q, 0)
                st = t + 1
                break
            _keep_affine(kept, keep_w, q, w0, alpha, m0, delta + ms)
            q += 1
    mean = delta + ms
    for m in range(d):
        w[m] = alpha * (w0[m] - m0) + mean
    status[r] = st


def _kept(w_rec):
    """``(keep_w, array)``: whether parameters are kept at the records, and where (a
    one-entry stand-in when they are not: no zero-size device arrays)."""
    if w_rec.shape[1] > 0:
        return True, w_rec
    return False, np.zeros((w_rec.shape[0], 1, 1))


def _per_thread(count, nt):
    return (count + nt - 1) // nt, nt


def expected_runs(
    X, y, w_star, W0, lr, steps, kind, record_steps, loss_out, w_rec, w_out, status_out
):
    """Driver: the coefficients (one thread per example), then one thread per run."""
    resample = _resample(kind)
    R = lr.shape[0]
    if R == 0:
        return
    n = X.shape[0]
    nt = device.block(1024)
    Xd, yd = device.to_device(X), device.to_device(y)
    a, A, e = (cuda.device_array(n) for _ in range(3))
    keep_w, w_rec = _kept(w_rec)
    out = device.Outputs(loss_out, w_rec, w_out, status_out)
    with device.quiet_simulator():
        _coefficients_kernel[_per_thread(n, nt)](Xd, yd, resample, a, A, e)
        _expected_kernel[_per_thread(R, nt)](
            a,
            A,
            e,
            device.to_device(w_star),
            device.to_device(W0),
            device.to_device(lr),
            steps,
            device.to_device(record_steps),
            keep_w,
            *out.dev,
        )
    out.finish()


@cuda.jit
def _augmented_gradient_kernel(w, X, y, seed, resample, copies, out):
    """Row i (one thread): the mean gradient over its k fixed copies (``copies[i]`` is (k, d))."""
    i = cuda.grid(1)
    n, d = X.shape
    if i >= n:
        return
    A = copies[i]
    k = A.shape[0]
    for m in range(d):
        A[0, m] = X[i, m]
    for j in range(1, k):
        augment_into(X[i], make_key(seed, spec.STREAM_FIXED, i, j), resample, A[j])
    for m in range(d):
        out[i, m] = 0.0
    for j in range(k):
        s = 0.0
        for m in range(d):
            s += A[j, m] * w[m]
        cj = (s - y[i]) / k
        for m in range(d):
            out[i, m] += cj * A[j, m]


def augmented_gradient(w, X, y, k, seed, kind, fparams, gidx, gptr, out):
    """``out[i]`` = the mean gradient over row i's k fixed copies (one thread per row)."""
    resample = _resample(kind)
    n, d = X.shape
    nt = device.block(1024)
    res = device.Outputs(out)
    copies = cuda.device_array((n, k, d))
    with device.quiet_simulator():
        _augmented_gradient_kernel[_per_thread(n, nt)](
            device.to_device(w),
            device.to_device(X),
            device.to_device(y),
            np.uint64(seed),
            resample,
            copies,
            *res.dev,
        )
    res.finish()


@cuda.jit
def _fixed_copies_kernel(X, seed, resample, out):
    """Row i (one thread): example i and its k − 1 fixed copies into ``out[i]``."""
    i = cuda.grid(1)
    n, d = X.shape
    if i >= n:
        return
    A = out[i]
    for m in range(d):
        A[0, m] = X[i, m]
    for j in range(1, A.shape[0]):
        augment_into(X[i], make_key(seed, spec.STREAM_FIXED, i, j), resample, A[j])


def fixed_copies(X, seed, kind, fparams, gidx, gptr, out):
    """``out[i]`` = example i and its k − 1 fixed copies, as ``sgd_runs`` draws them (one
    thread per example)."""
    resample = _resample(kind)
    nt = device.block(1024)
    res = device.Outputs(out)
    with device.quiet_simulator():
        _fixed_copies_kernel[_per_thread(X.shape[0], nt)](
            device.to_device(X), np.uint64(seed), resample, *res.dev
        )
    res.finish()


def compile(families=None):
    """Compile every kernel for the types fastperm passes (a tiny launch of each), so that
    ``TrainResult.seconds`` excludes JIT compilation. Once per process."""
    if _compiled:
        return
    X = np.ones((1, 1))
    v = np.ones(1)
    u = np.zeros(1, dtype=np.uint64)
    rec = np.array([0, 1, 2], dtype=np.int64)
    loss = np.empty((1, 2))
    w_rec = np.empty((1, 2, 1))
    w = np.empty((1, 1))
    status = np.empty(1, dtype=np.int64)
    fparams, gidx, gptr = np.zeros(2), np.zeros(1, dtype=np.int64), np.zeros(2, dtype=np.int64)
    for k in (1, 2):
        for fresh in (False, True):
            for kind in SAMPLER_KINDS:
                sgd_runs(
                    X,
                    v,
                    v,
                    X,
                    v,
                    u,
                    k,
                    1,
                    0,
                    fresh,
                    kind,
                    fparams,
                    gidx,
                    gptr,
                    rec,
                    True,
                    loss,
                    w_rec,
                    w,
                    status,
                )
    expected_runs(X, v, v, X, v, 1, spec.KIND_PERMUTATION, rec, loss, w_rec, w, status)
    augmented_gradient(v, X, v, 2, 0, spec.KIND_PERMUTATION, fparams, gidx, gptr, np.empty((1, 1)))
    fixed_copies(X, 0, spec.KIND_PERMUTATION, fparams, gidx, gptr, np.empty((1, 2, 1)))
    from .dual import dual_runs  # (imports this module's helpers)

    gram = np.ones((1, 1, 1))
    which = np.zeros(1, dtype=np.int64)
    dual_runs(v, v, X, v, X[None], gram, which, 1, 1, 0, 1, 1e-3, 1e100, rec, loss, w_rec, w,
              status)  # fmt: skip
    from .equilibrium import balance_runs

    for batch in (0, 1):
        balance_runs(X, X, X, 0.5, np.ones((1, 2)), v, np.array([batch], dtype=np.int64), u, 1,
                     0, rec, np.zeros((1, 2), dtype=np.int64), loss, np.empty((1, 2)),
                     np.empty((1, 2, 1)), np.empty((1, 2, 2)), np.empty((1, 2, 2)),
                     np.empty((1, 2)), status)  # fmt: skip
    _compiled.append(True)


_compiled: list[bool] = []
