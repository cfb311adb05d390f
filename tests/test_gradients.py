"""Expected gradient (closed form) vs exhaustive enumeration; k-copy estimate vs closed form."""

import itertools
import math

import numpy as np
import pytest

import fastperm
from fastperm import rng as spec


def _enumerated(w, x, y, augmentation):
    """Mean gradient over every permutation (d!) or every index tuple (d^d) of x."""
    d = x.shape[0]
    if augmentation == "permutation":
        idx = itertools.permutations(range(d))
    else:
        idx = itertools.product(range(d), repeat=d)
    total = np.zeros(d)
    count = 0
    for p in idx:
        xp = x[list(p)]
        total += (w @ xp - y) * xp
        count += 1
    return total / count


@pytest.mark.parametrize("d", range(1, 8))
def test_permutation_closed_form_vs_all_permutations(d, rng):
    w, x = rng.standard_normal(d), rng.standard_normal(d)
    y = float(rng.standard_normal())
    got = fastperm.expected_gradient(w, x, y)
    want = _enumerated(w, x, y, "permutation")
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())


@pytest.mark.parametrize("d", range(1, 6))
def test_resample_closed_form_vs_all_index_tuples(d, rng):
    w, x = rng.standard_normal(d), rng.standard_normal(d)
    y = 0.7
    got = fastperm.expected_gradient(w, x, y, augmentation="resample")
    want = _enumerated(w, x, y, "resample")
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())


def test_d1_is_the_plain_gradient():
    for aug in ("permutation", "resample"):
        g = fastperm.expected_gradient([2.0], [3.0], 1.0, augmentation=aug)
        assert g.shape == (1,) and g[0] == pytest.approx((2.0 * 3.0 - 1.0) * 3.0, rel=1e-15)


def test_rows_of_a_matrix(rng):
    X = rng.standard_normal((4, 6))
    y = rng.standard_normal(4)
    w = rng.standard_normal(6)
    G = fastperm.expected_gradient(w, X, y)
    assert G.shape == (4, 6)
    for i in range(4):
        np.testing.assert_allclose(G[i], fastperm.expected_gradient(w, X[i], y[i]), rtol=1e-14)


def test_gradient_sum_identity(rng):
    """Σ_m E[g]_m = s1² Σw / d − y s1 (ARCHITECTURE §1a)."""
    d = 9
    w, x = rng.standard_normal(d), rng.standard_normal(d)
    y = 1.3
    s1 = x.sum()
    assert fastperm.expected_gradient(w, x, y).sum() == pytest.approx(
        s1 * s1 * w.sum() / d - y * s1
    )


@pytest.mark.parametrize("augmentation", ["permutation", "resample"])
def test_augmented_gradient_k1_is_plain_gradient(backend, augmentation, rng):
    w, x = rng.standard_normal(10), rng.standard_normal(10)
    g = fastperm.augmented_gradient(w, x, 0.5, 1, augmentation=augmentation, backend=backend)
    np.testing.assert_allclose(g, (w @ x - 0.5) * x, rtol=1e-14)


@pytest.mark.parametrize("augmentation", ["permutation", "resample"])
def test_augmented_gradient_uses_the_spec_copies(backend, augmentation, rng):
    X = rng.standard_normal((3, 8))
    y = rng.standard_normal(3)
    w = rng.standard_normal(8)
    k, seed = 5, 77
    got = fastperm.augmented_gradient(
        w, X, y, k, seed=seed, augmentation=augmentation, backend=backend
    )
    for i in range(3):
        rows = [X[i]] + [
            X[i][
                spec.augmented_indices(augmentation, seed, spec.STREAM_FIXED, spec.counter(i, j), 8)
            ]
            for j in range(1, k)
        ]
        A = np.array(rows)
        np.testing.assert_allclose(got[i], A.T @ (A @ w - y[i]) / k, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("augmentation", ["permutation", "resample"])
def test_augmented_gradient_converges_to_closed_form(augmentation, rng):
    """Monte Carlo: with k = 20000 copies every coordinate is within 5 standard errors."""
    d, k = 6, 20000
    w, x = rng.standard_normal(d), rng.standard_normal(d)
    y = 0.4
    est = fastperm.augmented_gradient(w, x, y, k, seed=9, augmentation=augmentation)
    exact = fastperm.expected_gradient(w, x, y, augmentation=augmentation)
    # standard error from the copies themselves (same draws as the estimate)
    rows = [x] + [
        x[spec.augmented_indices(augmentation, 9, spec.STREAM_FIXED, spec.counter(0, j), d)]
        for j in range(1, 400)
    ]
    A = np.array(rows)
    sd = ((A @ w - y)[:, None] * A).std(axis=0)
    assert np.all(np.abs(est - exact) <= 5 * sd / math.sqrt(k) + 1e-12), (est, exact)
    # and it is not the plain gradient (the test can fail)
    assert np.abs(est - (w @ x - y) * x).max() > 10 * (5 * sd / math.sqrt(k)).max()


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(x=[1.0, np.nan]), "x has 1 non-finite"),
        (dict(w=[1.0]), "w has 1 entries but x has d = 2"),
        (dict(y=[1.0, 2.0]), "y has 2 entries but x has 1"),
        (dict(x=np.zeros((0, 2))), "at least one example"),
        (dict(x=np.zeros(0), w=np.zeros(0)), "at least one feature"),
        (dict(augmentation="flip"), "augmentation must be one of"),
    ],
)
def test_bad_input(bad, match):
    args = dict(w=[1.0, 2.0], x=[0.5, 1.0], y=1.0, augmentation="permutation")
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        fastperm.expected_gradient(**args)


def test_bad_k_for_augmented_gradient():
    for k, exc in [(0, ValueError), (-1, ValueError), (2.5, TypeError), (math.inf, TypeError)]:
        with pytest.raises(exc, match="k"):
            fastperm.augmented_gradient([1.0], [1.0], 1.0, k)


def test_complex_and_object_refused():
    with pytest.raises(TypeError, match="x must hold real numbers"):
        fastperm.expected_gradient([1.0], np.array([1j]), 1.0)
