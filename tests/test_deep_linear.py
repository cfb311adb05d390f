"""Deep linear networks with input noise: the exact expected gradient vs Monte Carlo and vs
finite differences of the expected loss; compiled training vs the NumPy reference."""

import math

import numpy as np
import pytest

import fastperm
from fastperm import backends
from fastperm import deep_linear as dl

# 1, 2, 3 (and 4) weight layers: u alone, then one to three matrices before it
SIZES = [[5], [5, 4], [5, 4, 3], [5, 3, 4, 2]]


@pytest.fixture
def point():
    rs = np.random.default_rng(2)
    return rs.standard_normal(5), 0.8


@pytest.mark.parametrize("sizes", SIZES, ids=str)
def test_expected_gradient_vs_monte_carlo(sizes, point):
    """The mean of 200,000 noisy gradients lies within 5 standard errors of the closed form in
    every coordinate, and the plain gradient does not (so the check can fail)."""
    x, y = point
    net = dl.DeepLinear(sizes)
    theta = net.init(1)
    sigma = 0.6
    eps = np.random.default_rng(3).standard_normal((200_000, 5))
    # all noisy gradients at once: r' a_l (B_l x')ᵀ, vectorised over draws
    Ws, u = net.unpack(theta)
    Xn = x + sigma * eps
    h = [Xn]
    for W in Ws:
        h.append(h[-1] @ W.T)
    v = net.end_to_end(theta)
    r = Xn @ v - y
    a = [None] * (net.L + 1)
    a[net.L] = u
    for layer in range(net.L, 0, -1):
        a[layer - 1] = Ws[layer - 1].T @ a[layer]
    parts = [
        (r[:, None, None] * a[layer][None, :, None] * h[layer - 1][:, None, :]).reshape(len(r), -1)
        for layer in range(1, net.L + 1)
    ]
    G = np.concatenate(parts + [r[:, None] * h[net.L]], axis=1)
    exact = net.expected_grad(theta, x, y, sigma)
    se = G.std(axis=0, ddof=1) / math.sqrt(G.shape[0])
    assert np.all(np.abs(G.mean(axis=0) - exact) < 5 * se + 1e-12)
    plain = net.grad(theta, x, y)
    assert np.any(np.abs(G.mean(axis=0) - plain) > 10 * se)


@pytest.mark.parametrize("sizes", SIZES, ids=str)
def test_expected_gradient_is_gradient_of_ridge_on_v(sizes, point):
    """E[ℓ] = ½(vᵀx − y)² + (σ²/2)|v|²: central differences of that function of θ."""
    x, y = point
    net = dl.DeepLinear(sizes)
    theta = net.init(4)
    sigma = 0.9

    def expected_loss(th):
        v = net.end_to_end(th)
        return 0.5 * (v @ x - y) ** 2 + 0.5 * sigma**2 * v @ v

    h = 1e-6
    fd = np.array(
        [
            (expected_loss(theta + h * e) - expected_loss(theta - h * e)) / (2 * h)
            for e in np.eye(net.P)
        ]
    )
    np.testing.assert_allclose(net.expected_grad(theta, x, y, sigma), fd, rtol=1e-7, atol=1e-8)


@pytest.mark.skipif("numba" not in backends.available(), reason="needs numba")
@pytest.mark.parametrize("sizes", SIZES, ids=str)
@pytest.mark.parametrize("k,sampling", [(math.inf, "fixed"), (3, "fixed"), (3, "fresh")])
def test_compiled_training_matches_reference(sizes, k, sampling):
    problem = fastperm.LinearProblem.sample(d=5, n=4, seed=1)
    net = dl.DeepLinear(sizes)
    kw = dict(sigma=0.4, seeds=[1, 2**64 - 1], lr=0.02, steps=40, sampling=sampling, record_every=3)
    a = dl.train(problem, net, k, backend="numba", **kw)
    b = dl.train(problem, net, k, backend="numpy", **kw)
    assert np.abs(a.loss - b.loss).max() < 1e-12 * np.abs(b.loss).max()
    assert np.abs(a.meta["theta"] - b.meta["theta"]).max() < 1e-12
    assert a.w.shape == (2, 5) and a.loss.shape == (2, 15)


@pytest.mark.skipif("numba" not in backends.available(), reason="needs numba")
def test_kfold_approaches_expected_and_noise_shrinks_v():
    """Fresh noise with many copies follows the k = ∞ run; and noise acts as ridge: a
    larger σ ends with a smaller end-to-end vector."""
    problem = fastperm.LinearProblem.sample(d=8, n=6, seed=0)
    net = dl.DeepLinear([8, 6])
    kw = dict(lr=0.01, steps=600, record_every=100)
    exact = dl.train(problem, net, math.inf, sigma=0.5, **kw)
    many = dl.train(problem, net, 400, sigma=0.5, sampling="fresh", **kw)
    few = dl.train(problem, net, 1, sigma=0.5, sampling="fresh", **kw)
    assert np.abs(many.w - exact.w).max() < np.abs(few.w - exact.w).max()
    assert np.abs(many.w - exact.w).max() < 0.05
    big = dl.train(problem, net, math.inf, sigma=2.0, **kw)
    assert np.linalg.norm(big.w) < np.linalg.norm(exact.w)


def test_bad_input_named():
    problem = fastperm.LinearProblem.sample(d=5, n=2, seed=0)
    with pytest.raises(ValueError, match="sigma must be a finite real >= 0"):
        dl.train(problem, dl.DeepLinear([5, 3]), math.inf, sigma=-1)
    with pytest.raises(ValueError, match="net takes d = 4 inputs but the problem has d = 5"):
        dl.train(problem, dl.DeepLinear([4, 3]), math.inf, sigma=0.1)
    with pytest.raises(ValueError, match="theta0 must be"):
        dl.train(problem, dl.DeepLinear([5, 3]), 1, sigma=0.1, theta0=np.zeros(3))
    with pytest.raises(ValueError, match="theta has 2 entries"):
        dl.DeepLinear([5]).expected_grad(np.zeros(2), np.zeros(5), 0.0, 0.1)
    with pytest.raises(TypeError, match="net must be"):
        dl.train(problem, "net", 1, sigma=0.1)


def test_divergence_reported():
    problem = fastperm.LinearProblem.sample(d=5, n=2, seed=0)
    with pytest.warns(fastperm.DivergenceWarning, match="diverged at step"):
        r = dl.train(problem, dl.DeepLinear([5, 4]), math.inf, sigma=0.5, lr=5.0, steps=300)
    assert r.diverged_step[0] > 0 and np.isnan(r.loss[0, -1])


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("steps", [1, 2])
def test_one_example_copies_not_kept(backend, k, steps):
    """n = 1 with the fixed copies not kept (steps <= n): the Numba driver passed a (1, 1, 1)
    stand-in for the copies, which its worker took for the kept (n, k, d) block and wrote k
    copies into (found by the bounds-checked fuzz run: IndexError under NUMBA_BOUNDSCHECK=1,
    a write past the buffer without)."""
    if not backends.capabilities()[backend]["deep_linear_runs"]:
        pytest.skip(f"{backend} has no deep linear kernel")
    p = fastperm.LinearProblem([[0.5, -1.0]], [0.3], [1.0, 1.0])
    net = dl.DeepLinear([2, 2, 1])
    got = dl.train(p, net, k, sigma=0.3, steps=steps, backend=backend)
    want = dl.train(p, net, k, sigma=0.3, steps=steps, backend="numpy")
    np.testing.assert_allclose(got.loss, want.loss, rtol=1e-12)
