"""Plain and fixed k-fold SGD in the dual (Gram) form, the readable way. Contract:
:mod:`fastperm.backends.contract` (``dual_runs``).

On the linear problem every step adds a multiple of one of the N = n·k fixed copies to w,
so ``w = w_s + Σ_c β_c c``: the residuals ``r_c = c·w − y_c`` of all copies follow the
Gram matrix, ``r ← r − Σ_j γ_j G[:, c_j]``, and the loss ``Σ (w − w*)²`` an O(k²)
recurrence. w itself is formed only where it is wanted (records that keep it, the end) and
where the recurrences are resynchronised: every ``resync`` steps of the run, when the loss
has fallen below ``drop`` times its value at the last resynchronisation, and at every step
while it exceeds ``big``.
"""

from __future__ import annotations

import numpy as np

from .sgd import _finish, _keep


def _sync(C, y_rows, w, beta, w_star):
    """Fold ``β`` into w (β ← 0); the residuals of every copy and ``Σ (w − w*)²`` from w."""
    with np.errstate(all="ignore"):
        w = w + beta @ C
        beta[:] = 0.0
        r = C @ w - y_rows
        e = w - w_star
        return w, r, float(e @ e)


def dual_runs(
    y,
    w_star,
    W0,
    lr,
    copies,
    gram,
    which,
    k,
    steps,
    start_step,
    resync,
    drop,
    big,
    record_steps,
    loss_out,
    w_rec,
    w_out,
    status_out,
):
    n = y.shape[0]
    d = w_star.shape[0]
    y_rows = np.repeat(y, k)  # the label of copy c = i·k + j is y_i
    for r in range(lr.shape[0]):
        C, G = copies[which[r]], gram[which[r]]
        v = y_rows - C @ w_star  # c·(w − w*) = r_c + v_c
        beta = np.zeros(C.shape[0])
        w, res, E = _sync(C, y_rows, W0[r % W0.shape[0]].astype(np.float64), beta, w_star)
        floor = E * drop
        status_out[r] = -1
        loss_out[r, 0] = E / d
        _keep(w_rec, r, 0, w)
        q = 1
        c = lr[r] / k
        for t in range(steps):
            s = start_step + t
            if (t > 0 and s % resync == 0) or E < floor or E > big:
                w, res, E = _sync(C, y_rows, w, beta, w_star)
                floor = E * drop
            rows = (s % n) * k + np.arange(k)
            if not np.all(np.isfinite(res[rows])):
                status_out[r] = _finish(loss_out[r], q, t)
                break
            with np.errstate(all="ignore"):
                gamma = c * res[rows]
                E += -2.0 * (gamma @ (res[rows] + v[rows])) + gamma @ G[np.ix_(rows, rows)] @ gamma
                res = res - G[rows].T @ gamma  # G is symmetric: its rows are its columns
                beta[rows] -= gamma
            if t + 1 == record_steps[q]:
                loss_out[r, q] = E / d
                if not np.isfinite(loss_out[r, q]):
                    status_out[r] = _finish(loss_out[r], q, t + 1)
                    break
                if w_rec.shape[1]:
                    with np.errstate(all="ignore"):
                        _keep(w_rec, r, q, w + beta @ C)
                q += 1
        with np.errstate(all="ignore"):
            w_out[r] = w + beta @ C
