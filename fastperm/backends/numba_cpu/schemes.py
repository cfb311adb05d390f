"""The symmetry schemes on the linear permutation problem, with Numba (see
:mod:`fastperm.schemes` for the math). One run per ``prange`` iteration; every
recorded step stores the loss and the distance of w to the invariant subspace span(1).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ... import rng as spec
from ..._jit import JIT, Twins, njit
from ...codes import DA, FA, K_EXPECTED, VANILLA
from . import warmup
from .parallel import chunks
from .rng import KIND_PERMUTATION, draw_buffer
from .sgd import _fill_copies
from .vec import dot, stop


@njit(**JIT)
def _record(w, w_star, loss_row, dist_row, q):
    d = w.shape[0]
    s = 0.0
    m = 0.0
    c = 0.0
    for j in range(d):
        e = w[j] - w_star[j]
        s += e * e
        u = w[j] - w[0]  # about w[0]: exactly 0 when all entries are equal
        m += u
        c += u * u
    m /= d
    loss_row[q] = s / d
    dist_row[q] = np.sqrt(max(c / d - m * m, 0.0))
    return np.isfinite(loss_row[q])


@njit(**JIT)
def _scheme_run(
    X,
    y,
    w_star,
    w,
    lr,
    seed,
    scheme,
    k,
    fresh,
    steps,
    record_steps,
    loss_row,
    dist_row,
    block,
    buf,
    res,
):
    n, d = X.shape
    q = 0
    if record_steps[0] == 0:
        _record(w, w_star, loss_row, dist_row, 0)
        q = 1
    fp = np.zeros(2)
    gi = np.zeros(1, dtype=np.int64)
    for t in range(steps):
        i = t % n
        x = X[i]
        s1 = 0.0
        s2 = 0.0
        sw = 0.0
        expected = scheme == DA and k == K_EXPECTED
        if expected or scheme >= FA:  # the sums the averaged schemes step with
            for j in range(d):
                s1 += x[j]
                s2 += x[j] * x[j]
                sw += w[j]
        if scheme == VANILLA or (scheme == DA and k == 1):
            r = dot(w, x) - y[i]
            if not np.isfinite(r):
                dist_row[q:] = np.nan
                return stop(loss_row, q, t)
            for j in range(d):
                w[j] -= lr * r * x[j]
        elif scheme == DA and not expected:
            _fill_copies(
                x,
                seed,
                spec.STREAM_FRESH if fresh else spec.STREAM_FIXED,
                t if fresh else i,
                KIND_PERMUTATION,
                fp,
                gi,
                gi,
                buf,
                block,
            )
            ok = True
            for c in range(k):
                r = -y[i]
                for j in range(d):
                    r += block[c, j] * w[j]
                res[c] = r
                ok = ok and np.isfinite(r)
            if not ok:
                dist_row[q:] = np.nan
                return stop(loss_row, q, t)
            for c in range(k):
                rc = lr * res[c] / k
                for j in range(d):
                    w[j] -= rc * block[c, j]
        elif expected:  # E[g]_j = a w_j + c Σw − y s1/d (explicit O(d) step)
            cc = (s1 * s1 - s2) / (d * (d - 1)) if d > 1 else 0.0
            a = s2 / d - cc
            b = cc * sw - y[i] * s1 / d
            for j in range(d):
                w[j] -= lr * (a * w[j] + b)
        elif scheme == FA:  # f = mean(x) Σw; ∇_w = (f − y) mean(x) 1
            g = (s1 / d * sw - y[i]) * s1 / d
            for j in range(d):
                w[j] -= lr * g
        else:  # EA: w = α 1, f = α s1; α ← α − lr (α s1 − y) s1
            alpha = sw / d
            alpha -= lr * (alpha * s1 - y[i]) * s1
            for j in range(d):
                w[j] = alpha
        if record_steps[q] == t + 1:
            if not _record(w, w_star, loss_row, dist_row, q):
                dist_row[q:] = np.nan
                return stop(loss_row, q, t + 1)
            q += 1
    return -1


def _scheme_body(
    X,
    y,
    w_star,
    W0,
    lr,
    seeds,
    scheme,
    k,
    fresh,
    steps,
    record_steps,
    loss_out,
    dist_out,
    w_out,
    status_out,
):
    n, d = X.shape
    for r in prange(lr.shape[0]):
        w = w_out[r]
        w[:] = W0[np.int64(r) % W0.shape[0]]
        block = np.empty((max(k, 1), d))
        status_out[r] = _scheme_run(
            X,
            y,
            w_star,
            w,
            lr[r],
            seeds[r],
            scheme,
            k,
            fresh,
            steps,
            record_steps,
            loss_out[r],
            dist_out[r],
            block,
            draw_buffer(d),
            np.empty(max(k, 1)),
        )


_scheme_driver = Twins(_scheme_body)


def scheme_runs(
    X,
    y,
    w_star,
    W0,
    lr,
    seeds,
    scheme,
    k,
    fresh,
    steps,
    record_steps,
    loss_out,
    dist_out,
    w_out,
    status_out,
):
    """One run per ``prange`` iteration (serial when one thread or one run)."""
    _scheme_driver(
        chunks(lr.shape[0]),
        X,
        y,
        w_star,
        W0,
        lr,
        seeds,
        scheme,
        k,
        fresh,
        steps,
        record_steps,
        loss_out,
        dist_out,
        w_out,
        status_out,
    )


@warmup.once
def compile():
    """Compile (or load from Numba's cache) both twins for the types fastperm passes."""
    X, y, v = warmup.problem(2)
    lr, seeds, rec, loss, _, w, status = warmup.runs(2)
    for scheme, k, fresh in (
        (VANILLA, 1, False),
        (DA, 2, False),
        (DA, 2, True),
        (DA, K_EXPECTED, False),
    ):
        scheme_runs(
            X,
            y,
            v,
            np.zeros((1, 2)),
            lr,
            seeds,
            scheme,
            k,
            fresh,
            1,
            rec,
            loss,
            np.empty_like(loss),
            w,
            status,
        )
