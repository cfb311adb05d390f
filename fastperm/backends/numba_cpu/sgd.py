"""Fused SGD runs on the linear problem, compiled with Numba.

Three layers, as everywhere in fastperm: the public wrapper
(:func:`fastperm.train` / :func:`fastperm.train_many`) validates and
allocates; the drivers here (``sgd_runs``, ``expected_runs``) run a parallel
loop over independent runs with per-thread scratch; the serial workers
(``_plain_run``, ``_kfold_run``, ``_expected_run``) run one whole training
run without returning to Python. Contract: :mod:`fastperm.backends.reference`.

Work per step, d features, k copies:

* k = 1: one pass over d that updates w, accumulates the loss when the step
  is recorded, and computes the next example's residual ``wᵀx_next`` — w is
  read and written once per step.
* k ≥ 2: k dot products and k axpys over the (k, d) block of copies. With
  ``sampling="fixed"`` and the cache allowed, the copies of example i are
  drawn in the first epoch and kept (n·k·d float64 per thread); otherwise
  they are drawn again each step (k − 1 shuffles of d items).
* k = ∞: O(1) per step (see ``_expected_run``), O(n·d + d) set-up.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ... import rng as spec
from ..._jit import JIT, Twins, njit
from . import warmup
from .parallel import chunks
from .rng import KIND_RESAMPLE, augment_kind_into, draw_buffer, make_key
from .vec import dot, keep, mse, stop


@njit(inline="always", **JIT)
def _plain_step(w, x, xn, c, w_star):
    """``w ← w − c x``, the next example's ``wᵀxn`` and ``Σ (w − w*)²``, in one pass. It is
    the only loop that forms ``wᵀxn``, so that a call starting mid-run (a zero step,
    ``c = 0``) gets the bits of one uninterrupted call; the loss rides along on every step
    (one stream more) rather than in a second loop whose sums could round differently."""
    xw = 0.0
    s = 0.0
    for m in range(w.shape[0]):
        w[m] = w[m] - c * x[m]
        wm = w[m]  # as stored (rounded when w is float32; free for float64)
        xw += wm * xn[m]
        e = wm - w_star[m]
        s += e * e
    return xw, s


@njit(**JIT)
def _plain_run(X, y, w_star, w, lr, t0, steps, record_steps, loss_row, w_rec):
    """Plain SGD (k = 1), one fused pass over w per step; the call's step t is the run's
    step t0 + t. Returns the status."""
    n, d = X.shape
    i = t0 % n
    # wᵀx_i by the step's own loop (a zero step; ``lr * 0.0`` is not folded: w stays bitwise)
    xw, s = _plain_step(w, X[i - 1 if i > 0 else n - 1], X[i], lr * 0.0, w_star)
    loss_row[0] = s / d
    keep(w_rec, 0, w)
    q = 1
    for t in range(steps):
        i = (t0 + t) % n
        res = xw - y[i]
        if not np.isfinite(res):
            return stop(loss_row, q, t)
        xw, s = _plain_step(w, X[i], X[(i + 1) % n], lr * res, w_star)
        if record_steps[q] == t + 1:
            loss_row[q] = s / d
            if not np.isfinite(loss_row[q]):
                return stop(loss_row, q, t + 1)
            keep(w_rec, q, w)
            q += 1
    return -1


@njit(**JIT)
def _fill_copies(x, seed, stream, index, kind, fparams, gidx, gptr, buf, block):
    """``block[0] = x``, ``block[j]`` = copy j keyed by ``(seed, stream, index, j)``."""
    block[0, :] = x
    for j in range(1, block.shape[0]):
        augment_kind_into(
            x, make_key(seed, stream, index, j), buf, kind, fparams, gidx, gptr, block[j]
        )


@njit(**JIT)
def _kfold_run(
    X,
    y,
    w_star,
    w,
    c,
    seed,
    t0,
    steps,
    fresh,
    kind,
    fparams,
    gidx,
    gptr,
    record_steps,
    loss_row,
    w_rec,
    cache,
    buf,
    res,
):
    """k-fold augmented SGD. ``cache`` is (n, k, d) when fixed copies are kept, else (1, k, d).

    The call's step t is the run's step s = t0 + t: example i = s mod n, copies A_j
    (A_0 = x_i; fresh copies keyed by s):
    ``w ← w − c Σ_j (A_j·w − y_i) A_j`` with ``c = lr/k``, which the caller divides: formed
    here, fastmath's reassociation rewrote ``(lr/k)·r_j`` as ``(lr·r_j)/k``, a division per
    copy and step (k = 16 fixed at d = 400: 1360 instead of 860 ns per step).
    """
    n, d = X.shape
    k = cache.shape[1]
    hold = cache.shape[0] == n and not fresh
    stream = spec.STREAM_FRESH if fresh else spec.STREAM_FIXED
    loss_row[0] = mse(w, w_star)
    keep(w_rec, 0, w)
    q = 1
    for t in range(steps):
        i = (t0 + t) % n
        if hold:
            A = cache[i]
            if t < n:  # the call's first n steps visit every example once
                _fill_copies(X[i], seed, stream, i, kind, fparams, gidx, gptr, buf, A)
        else:
            A = cache[0]
            key = t0 + t if fresh else i
            _fill_copies(X[i], seed, stream, key, kind, fparams, gidx, gptr, buf, A)
        ok = True
        for j in range(k):
            res[j] = dot(A[j], w) - y[i]
            ok = ok and np.isfinite(res[j])
        if not ok:
            return stop(loss_row, q, t)
        for j in range(k):
            cj = c * res[j]
            Aj = A[j]
            for m in range(d):
                w[m] -= cj * Aj[m]
        if record_steps[q] == t + 1:
            loss_row[q] = mse(w, w_star)
            if not np.isfinite(loss_row[q]):
                return stop(loss_row, q, t + 1)
            keep(w_rec, q, w)
            q += 1
    return -1


def _sgd_driver_body(
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
    nchunks,
):
    """Runs ``r = c, c + nchunks, ...`` go to chunk c; each chunk owns its scratch."""
    n, d = X.shape
    R = lr.shape[0]
    hold = cache and not fresh and k > 1
    for c in prange(nchunks):
        block = np.empty((n if hold else 1, k if k > 1 else 1, d if k > 1 else 1), X.dtype)
        buf = draw_buffer(d)
        res = np.empty(k)
        for r in range(c, R, nchunks):
            w = w_out[r]
            w[:] = W0[np.int64(r) % W0.shape[0]]
            if k == 1:
                status_out[r] = _plain_run(
                    X, y, w_star, w, lr[r], start_step, steps, record_steps, loss_out[r], w_rec[r]
                )
            else:
                status_out[r] = _kfold_run(
                    X,
                    y,
                    w_star,
                    w,
                    lr[r] / k,
                    seeds[r],
                    start_step,
                    steps,
                    fresh,
                    kind,
                    fparams,
                    gidx,
                    gptr,
                    record_steps,
                    loss_out[r],
                    w_rec[r],
                    block,
                    buf,
                    res,
                )


_sgd_driver = Twins(_sgd_driver_body)


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
    """One chunk of runs per thread, any augmentation kind (contract:
    :mod:`fastperm.backends.contract`)."""
    nchunks = chunks(lr.shape[0])
    _sgd_driver(
        nchunks,
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
        nchunks,
    )


@njit(inline="always", **JIT)
def _keep_affine(w_rec, q, w0, alpha, m0, mean):
    """``w_rec[q] = α (w0 − m0) + mean``: w of a k = ∞ run, when parameters are kept."""
    if w_rec.shape[0] > 0:
        for m in range(w0.shape[0]):
            w_rec[q, m] = alpha * (w0[m] - m0) + mean


@njit(**JIT)
def _coefficients(X, y, kind):
    """Per-example ``a_i``, ``A_i = a_i + c_i d`` and ``e_i`` of
    :func:`fastperm.augment.coefficients`."""
    n, d = X.shape
    a = np.empty(n)
    A = np.empty(n)
    e = np.empty(n)
    for i in range(n):
        s1 = 0.0
        s2 = 0.0
        for m in range(d):
            s1 += X[i, m]
            s2 += X[i, m] * X[i, m]
        if kind == KIND_RESAMPLE:
            c = s1 * s1 / (d * d)
        elif d > 1:
            c = (s1 * s1 - s2) / (d * (d - 1))
        else:
            c = 0.0
        a[i] = s2 / d - c
        A[i] = a[i] + c * d
        e[i] = y[i] * s1 / d
    return a, A, e


@njit(**JIT)
def _expected_run(a, A, e, w_star, w, lr, steps, record_steps, loss_row, w_rec):
    """k = ∞ in O(T + d): every coordinate follows the same affine map.

    With ``E[g]_m = a w_m + c Σw − e`` (:mod:`fastperm.augment`), write
    ``w = α w0c + (δ + m*) 1`` where ``w0c = w0 − mean(w0)``, ``m* = mean(w*)``.
    The centred part only scales and the mean moves on its own:
    ``α ← (1 − lr a_i) α``, ``δ ← δ − lr (A_i δ + A_i m* − e_i)`` with
    ``A_i = a_i + c_i d``. The loss is exact in O(1):
    ``mean((w − w*)²) = δ² + α² C00 − 2α C0* + C**`` with the centred moments
    ``C00 = mean(w0c²)``, ``C0* = mean(w0c w*c)``, ``C** = mean(w*c²)``.
    Tracking δ (not the mean itself) keeps the leading term free of cancellation.
    """
    n = a.shape[0]
    d = w.shape[0]
    m0 = 0.0
    ms = 0.0
    for m in range(d):
        m0 += w[m]
        ms += w_star[m]
    m0 /= d
    ms /= d
    c00 = 0.0
    c0s = 0.0
    css = 0.0
    for m in range(d):
        u = w[m] - m0
        v = w_star[m] - ms
        c00 += u * u
        c0s += u * v
        css += v * v
    c00 /= d
    c0s /= d
    css /= d
    # with a constant w0 the centred part is zero for ever: α plays no role (and must not
    # overflow into a false divergence)
    alpha = 1.0 if c00 > 0.0 else 0.0
    delta = m0 - ms
    loss_row[0] = delta * delta + c00 - 2.0 * c0s + css
    keep(w_rec, 0, w)  # the start itself
    q = 1
    status = -1
    for t in range(steps):
        i = t % n
        alpha -= lr * a[i] * alpha
        delta -= lr * (A[i] * (delta + ms) - e[i])
        if not (np.isfinite(alpha) and np.isfinite(delta)):
            status = stop(loss_row, q, t + 1)
            break
        if record_steps[q] == t + 1:
            loss_row[q] = delta * delta + alpha * alpha * c00 - 2.0 * alpha * c0s + css
            if not np.isfinite(loss_row[q]):
                status = stop(loss_row, q, t + 1)
                break
            _keep_affine(w_rec, q, w, alpha, m0, delta + ms)
            q += 1
    mean = delta + ms  # w: the start until here
    for m in range(d):
        w[m] = alpha * (w[m] - m0) + mean
    return status


def _expected_driver_body(
    X, y, w_star, W0, lr, steps, kind, record_steps, loss_out, w_rec, w_out, status_out
):
    a, A, e = _coefficients(X, y, kind)
    for r in prange(lr.shape[0]):
        w = w_out[r]
        w[:] = W0[np.int64(r) % W0.shape[0]]
        status_out[r] = _expected_run(
            a, A, e, w_star, w, lr[r], steps, record_steps, loss_out[r], w_rec[r]
        )


_expected_driver = Twins(_expected_driver_body)


def expected_runs(
    X, y, w_star, W0, lr, steps, kind, record_steps, loss_out, w_rec, w_out, status_out
):
    """k = ∞ runs, one per ``prange`` iteration (serial when one thread or one run)."""
    _expected_driver(
        chunks(lr.shape[0]),
        X,
        y,
        w_star,
        W0,
        lr,
        steps,
        kind,
        record_steps,
        loss_out,
        w_rec,
        w_out,
        status_out,
    )


@njit(**JIT)
def _augmented_row(w, x, y, i, k, seed, kind, fparams, gidx, gptr, out):
    """``out`` = the mean gradient over the k fixed copies of example i (x, y): the serial
    worker both twins call (as every driver's: one compiled loop, whichever twin runs)."""
    d = x.shape[0]
    buf = draw_buffer(d)
    A = np.empty((k, d))
    _fill_copies(x, seed, spec.STREAM_FIXED, i, kind, fparams, gidx, gptr, buf, A)
    out[:] = 0.0
    for j in range(k):
        cj = (dot(A[j], w) - y) / k
        for m in range(d):
            out[m] += cj * A[j, m]


def _augmented_gradient_body(w, X, y, k, seed, kind, fparams, gidx, gptr, out):
    for i in prange(X.shape[0]):
        _augmented_row(w, X[i], y[i], i, k, seed, kind, fparams, gidx, gptr, out[i])


_augmented_gradient_driver = Twins(_augmented_gradient_body)


def augmented_gradient(w, X, y, k, seed, kind, fparams, gidx, gptr, out):
    """``out[i]`` = the mean gradient over row i's k fixed copies (``prange`` over rows)."""
    _augmented_gradient_driver(chunks(X.shape[0]), w, X, y, k, seed, kind, fparams, gidx, gptr, out)


def _fixed_copies_body(X, seed, kind, fparams, gidx, gptr, out):
    for i in prange(X.shape[0]):
        _fill_copies(
            X[i], seed, spec.STREAM_FIXED, i, kind, fparams, gidx, gptr, draw_buffer(X.shape[1]),
            out[i],
        )  # fmt: skip


_fixed_copies_driver = Twins(_fixed_copies_body)


def fixed_copies(X, seed, kind, fparams, gidx, gptr, out):
    """``out[i]`` = example i and its k − 1 fixed copies (``prange`` over examples, when the
    draws are worth a parallel launch)."""
    _fixed_copies_driver(chunks(X.shape[0], 8 * out.size), X, seed, kind, fparams, gidx, gptr, out)


@warmup.once
def compile():
    """Compile (or load from Numba's cache) every kernel here, both twins, for the types
    fastperm passes. Called by the run harness before it starts its clock, so that
    ``TrainResult.seconds`` never includes JIT compilation; the work is done once a process.
    """
    _compile_sgd_runs(np.float64)
    X, y, w_star = warmup.problem(1)
    lr, seeds, rec, loss, w_rec, w, status = warmup.runs(1)
    fparams, gidx, gptr = np.zeros(2), np.zeros(1, dtype=np.int64), np.zeros(2, dtype=np.int64)
    W0 = np.ones((1, 1))
    expected_runs(X, y, w_star, W0, lr, 1, spec.KIND_PERMUTATION, rec, loss, w_rec, w, status)
    augmented_gradient(
        np.ones(1),
        np.ones((2, 1)),
        lr,
        2,
        np.uint64(0),
        spec.KIND_PERMUTATION,
        fparams,
        gidx,
        gptr,
        np.empty((2, 1)),
    )
    for nchunks in (1, 2):  # both twins: a call's draws decide which runs (not the runs)
        _fixed_copies_driver(
            nchunks, X, np.uint64(0), spec.KIND_PERMUTATION, fparams, gidx, gptr,
            np.empty((1, 2, 1)),
        )  # fmt: skip


@warmup.once
def compile_float32():
    """The float32 specialisations of ``sgd_runs`` (``dtype="float32"``): compiled only when
    a float32 run asks for them, once a process."""
    _compile_sgd_runs(np.float32)


def _compile_sgd_runs(dtype):
    """``sgd_runs`` for parameters and examples of ``dtype`` (every k and sampling path; w*
    stays float64)."""
    X, y, _ = warmup.problem(1, dtype)
    w_star = warmup.problem(1)[2]
    lr, seeds, rec, loss, w_rec, w, status = warmup.runs(1, dtype=dtype)
    fparams, gidx, gptr = np.zeros(2), np.zeros(1, dtype=np.int64), np.zeros(2, dtype=np.int64)
    W0 = np.ones((1, 1), dtype)
    for k in (1, 2):
        for flag in (False, True):
            sgd_runs(
                X,
                y,
                w_star,
                W0,
                lr,
                seeds,
                k,
                1,
                0,
                flag,
                spec.KIND_PERMUTATION,
                fparams,
                gidx,
                gptr,
                rec,
                flag,
                loss,
                w_rec,
                w,
                status,
            )
