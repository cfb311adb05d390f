"""Online SGD of the shallow network ``f(x) = (1/N) Σ_i tanh(θ_i x)`` under the coordinate
swap, in plain NumPy: the oracle of the compiled ``meanfield_runs`` (contract:
:mod:`fastperm.backends.contract`; the maths: :mod:`fastperm.meanfield`).

One Python iteration per step and sample, NumPy over the particles; the samples, group draws
and noise come from the pure-Python specification (:mod:`fastperm.rng`).
"""

from __future__ import annotations

import numpy as np

from ... import codes, rng

#: the swap P acting on a particle θ (4 entries, row-major): ``P θ Pᵀ``
SWAP = np.array([3, 2, 1, 0])


def units(theta, x):
    """``tanh(θ_i x)`` for the particles θ (N, 4) at one input x (2,): (N, 2)."""
    T = theta.reshape(-1, 2, 2)
    return np.tanh(T @ x)


def sample(teacher, s, sigma, seed, t, j):
    """Sample j of step t: ``(x, y)``."""
    z = rng.gaussian_noise(int(seed), rng.STREAM_DATA, rng.counter(t, j), 4)
    x = s * z[:2]
    return x, units(teacher, x).mean(axis=0) + sigma * z[2:]


def weights(scheme, k, seed, t, j):
    """The views' weights ``(w_0, w_1)`` of sample j of step t."""
    if scheme in (codes.VANILLA, codes.EA):
        return 1.0, 0.0
    if scheme == codes.FA or k == 0:
        return 0.5, 0.5
    draws = rng.Draws(rng.key(int(seed), rng.STREAM_GROUP, rng.counter(t, j)))
    n = sum(draws.next32() >= 1 << 31 for _ in range(k))
    return (k - n) / k, n / k


def project(theta):
    """The orthogonal projection onto E^G of particles (…, 4): ``(θ + PθPᵀ)/2``."""
    return 0.5 * (theta + theta[..., SWAP])


def model(theta, scheme, x):
    """The trained model at x: f, or for FA ``½ (f(x) + P f(Px))``."""
    f = units(theta, x).mean(axis=0)
    if scheme == codes.FA:
        f = 0.5 * (f + units(theta, x[::-1]).mean(axis=0)[::-1])
    return f


def _record(theta, scheme, Xeval, Yeval):
    fx = np.array([model(theta, scheme, x) for x in Xeval])
    loss = 0.5 * np.mean(np.sum((fx - Yeval) ** 2, axis=1))
    offset = np.sum((theta - project(theta)) ** 2) / theta.shape[0]
    return loss, offset, np.sum(theta * theta) / theta.shape[0]


def meanfield_runs(
    teacher,
    s,
    sigma,
    Xeval,
    Yeval,
    Theta0,
    scheme,
    k,
    lr,
    seeds,
    batch,
    lam,
    temp,
    steps,
    start_step,
    record_steps,
    loss_out,
    offset_out,
    moment_out,
    theta_rec,
    theta_out,
    status_out,
):
    """R runs, one after another (contract: ``meanfield_runs``)."""
    keep = theta_rec.shape[1] > 0
    for r in range(lr.shape[0]):
        theta = Theta0[r % Theta0.shape[0]].reshape(-1, 4).copy()
        N = theta.shape[0]
        status_out[r] = -1
        q = 0
        with np.errstate(all="ignore"):
            for t in range(steps + 1):
                if record_steps[q] == t:
                    loss, offset, moment = _record(theta, scheme[r], Xeval, Yeval)
                    if not np.isfinite(loss + moment):
                        status_out[r] = t
                        break
                    loss_out[r, q], offset_out[r, q], moment_out[r, q] = loss, offset, moment
                    if keep:
                        theta_rec[r, q] = theta.ravel()
                    q += 1
                if t == steps:
                    break
                T = start_step + t
                G = np.zeros((N, 4))
                for j in range(batch):
                    x, y = sample(teacher, s, sigma, seeds[r], T, j)
                    w = weights(scheme[r], k[r], seeds[r], T, j)
                    views = [(x, y), (x[::-1], y[::-1])]
                    S = [units(theta, xv) for xv, _ in views]
                    e = [S[v].mean(axis=0) - views[v][1] for v in range(2)]
                    if scheme[r] == codes.FA:
                        e0 = 0.5 * (S[0].mean(axis=0) + S[1].mean(axis=0)[::-1]) - y
                        e = [e0, e0[::-1]]
                    for v in range(2):
                        if w[v] > 0:
                            back = w[v] * e[v] * (1.0 - S[v] ** 2)  # (N, 2): rows o
                            G += (back[:, :, None] * views[v][0][None, None, :]).reshape(N, 4)
                step = G / batch + lam * theta
                if scheme[r] == codes.EA:
                    step = project(step)
                if not np.all(np.isfinite(step)):
                    status_out[r] = t
                    break
                theta -= lr[r] * step
                if temp > 0:
                    key = int(seeds[r]), rng.STREAM_NOISE
                    xi = np.array(
                        [rng.gaussian_noise(*key, rng.counter(T, i), 4) for i in range(N)]
                    )
                    if scheme[r] == codes.EA:
                        xi = project(xi)
                    theta += np.sqrt(2.0 * lr[r] * temp) * xi
        if status_out[r] >= 0:
            for out in (loss_out, offset_out, moment_out):
                out[r, q:] = np.nan
        theta_out[r] = theta.ravel()
