"""Issue 19 (WORK IN PROGRESS, not landed): the two-layer linear network's charge identity
and the teacher's samples, on the NumPy reference of fastperm/equilibrium.py."""

import numpy as np

from fastperm import equilibrium as eq
from fastperm import rng


def teacher(d0=6, d2=5, sigma=1.0, seed=0):
    gen = np.random.default_rng(seed)
    return eq.Teacher(gen.standard_normal((d2, d0)) / np.sqrt(d0), np.eye(d0), sigma)


def start(h=7, d0=6, d2=5, scale=0.5, seed=1):
    gen = np.random.default_rng(seed)
    return scale * gen.standard_normal((d2, h)), scale * gen.standard_normal((h, d0))


def test_charge_changes_by_exactly_eta_squared_terms():
    """C_{t+1} − C_t = η² (g_W g_Wᵀ − g_Uᵀ g_U) for SGD and GD steps, to rounding; a step
    with a 1e-6 error in one factor breaks it by far more."""
    T = teacher()
    U, W = start()
    X, Y = T.sample(3, 0, 10)
    for R in (eq.batch_R(U, W, X, Y), (U @ W - T.A) @ T.sigma_x):
        g_U, g_W = eq.gradients(U, W, R)
        lr = 0.05
        predicted = lr**2 * (g_W @ g_W.T - g_U.T @ g_U)
        change = eq.charge(U - lr * g_U, W - lr * g_W) - eq.charge(U, W)
        scale = np.abs(eq.charge(U, W)).max()
        assert np.abs(change - predicted).max() < 1e-13 * scale
        wrong = eq.charge(U - lr * (1 + 1e-6) * g_U, W - lr * g_W) - eq.charge(U, W)
        assert np.abs(wrong - predicted).max() > 1e-9 * scale


def test_samples_come_from_the_specification_generator():
    T = teacher(sigma=0.5)
    X, Y = T.sample(7, 4, 3)
    z = rng.gaussian_noise(7, eq.STREAM_DATA, rng.counter(4, 2), 11)
    np.testing.assert_allclose(X[2], T.L @ z[:6], rtol=0, atol=1e-15)
    np.testing.assert_allclose(Y[2], T.A @ X[2] + 0.5 * z[6:], rtol=0, atol=1e-14)


def test_gd_keeps_the_charge_within_order_eta_squared():
    """Over the same time η·T, halving η divides GD's charge drift by about 2 (O(η²) per step,
    T ∝ 1/η steps)."""
    T = teacher()
    U, W = start()
    drift = []
    for lr, steps in ((0.02, 200), (0.01, 400)):
        out = eq.run(T, U, W, lr, steps, method="gd", record_every=steps)
        drift.append(abs(out["charge"][-1] - out["charge"][0]))
    assert 1.6 < drift[0] / drift[1] < 2.5
