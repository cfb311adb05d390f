"""Closed forms of the augmentation distributions against independent oracles.

Oracles written here from the definitions, not from the code under test: exhaustive
enumeration of every augmented copy (cyclic shifts, masks, block permutations,
permutations) and Monte Carlo with a statistical bound (Gaussian noise, and all).
"""

import itertools
import math

import numpy as np
import pytest

import fastperm
from fastperm import augment


def _exhaustive_gradient(copies, probs, w, x, y):
    """E[(wᵀx' − y) x'] over an enumerated distribution."""
    return sum(p * (c @ w - y) * c for c, p in zip(copies, probs, strict=False))


def _cyclic_copies(x):
    d = x.shape[0]
    return [np.array([x[(m - s) % d] for m in range(d)]) for s in range(d)], [1 / d] * d


def _mask_copies(x, p, rescale):
    copies, probs = [], []
    for bits in itertools.product([0, 1], repeat=x.shape[0]):
        b = np.array(bits)
        copies.append(x * b / (p if rescale else 1.0))
        probs.append(p ** b.sum() * (1 - p) ** (len(b) - b.sum()))
    return copies, probs


def _block_copies(x, groups):
    per_group = [list(itertools.permutations(g)) for g in groups]
    copies = []
    for choice in itertools.product(*per_group):
        c = x.copy()
        for g, perm in zip(groups, choice, strict=False):
            c[list(g)] = x[list(perm)]
        copies.append(c)
    return copies, [1 / len(copies)] * len(copies)


@pytest.fixture
def example():
    rs = np.random.default_rng(4)
    return rs.standard_normal(6), rs.standard_normal(6), 0.7


@pytest.mark.parametrize("d", [1, 2, 5, 8])
def test_cyclic_shift_exhaustive(d):
    rs = np.random.default_rng(d)
    x, w, y = rs.standard_normal(d), rs.standard_normal(d), 1.3
    copies, probs = _cyclic_copies(x)
    aug = augment.CyclicShift()
    np.testing.assert_allclose(
        aug.expected_gradient(w, x, y),
        _exhaustive_gradient(copies, probs, w, x, y),
        rtol=0,
        atol=1e-12,
    )
    np.testing.assert_allclose(
        aug.second_moment(x),
        sum(p * np.outer(c, c) for c, p in zip(copies, probs, strict=False)),
        atol=1e-12,
    )
    M = aug.second_moment(x)  # circulant and symmetric
    np.testing.assert_allclose(M, M.T, atol=1e-14)
    np.testing.assert_allclose(M[1:, 1:], M[:-1, :-1], atol=1e-14)


@pytest.mark.parametrize("p,rescale", [(0.3, False), (0.3, True), (1.0, False), (0.8, True)])
def test_mask_exhaustive(example, p, rescale):
    x, w, y = example
    copies, probs = _mask_copies(x, p, rescale)
    assert math.isclose(sum(probs), 1.0)
    got = augment.Mask(p, rescale).expected_gradient(w, x, y)
    np.testing.assert_allclose(got, _exhaustive_gradient(copies, probs, w, x, y), atol=1e-12)
    if rescale:
        np.testing.assert_allclose(augment.Mask(p, True).mean(x), x, atol=1e-15)


@pytest.mark.parametrize(
    "groups",
    [
        [[0, 2, 4], [1], [3, 5]],
        [[0, 1, 2, 3, 4, 5]],
        [[5, 0], [1, 4], [2, 3]],
        [[i] for i in range(6)],
    ],
)
def test_block_permutation_exhaustive(example, groups):
    x, w, y = example
    copies, probs = _block_copies(x, groups)
    got = augment.BlockPermutation(groups).expected_gradient(w, x, y)
    np.testing.assert_allclose(got, _exhaustive_gradient(copies, probs, w, x, y), atol=1e-12)


def test_block_permutation_one_group_is_permutation_singletons_identity(example):
    x, w, y = example
    one = augment.BlockPermutation([range(6)]).expected_gradient(w, x, y)
    np.testing.assert_allclose(one, fastperm.expected_gradient(w, x, y, "permutation"), atol=1e-13)
    ident = augment.BlockPermutation([[i] for i in range(6)]).expected_gradient(w, x, y)
    np.testing.assert_allclose(ident, (w @ x - y) * x, atol=1e-13)


def test_gaussian_is_ridge(example):
    x, w, y = example
    for sigma in (0.0, 0.4, 3.0):
        got = augment.Gaussian(sigma).expected_gradient(w, x, y)
        np.testing.assert_allclose(got, (w @ x - y) * x + sigma**2 * w, atol=1e-13)


AUGS = [
    augment.Gaussian(0.5),
    augment.Mask(0.4),
    augment.Mask(0.6, rescale=True),
    augment.CyclicShift(),
    augment.BlockPermutation([[0, 3], [1, 2, 4, 5]]),
    augment.Permutation(),
    augment.Resample(),
]


@pytest.mark.parametrize("aug", AUGS, ids=repr)
def test_closed_form_vs_monte_carlo(example, aug):
    """The mean sampled gradient lies within 5 standard errors of the closed form in every
    coordinate, and (so the check can fail) the plain gradient does not."""
    x, w, y = example
    S = aug.sample(x, rng=11, size=40_000)
    G = (S @ w - y)[:, None] * S
    se = G.std(axis=0, ddof=1) / math.sqrt(G.shape[0])
    exact = aug.expected_gradient(w, x, y)
    assert np.all(np.abs(G.mean(axis=0) - exact) < 5 * se + 1e-12)
    plain = (w @ x - y) * x
    assert np.any(np.abs(G.mean(axis=0) - plain) > 10 * se)


def test_moments_user_defined_equals_builtin(example):
    x, w, y = example
    sigma = 0.7
    user = augment.Moments(
        mean=lambda v: v,
        second_moment=lambda v: np.outer(v, v) + sigma**2 * np.eye(v.shape[0]),
        sample=lambda v, rng: v + sigma * rng.standard_normal(v.shape[0]),
        name="my noise",
    )
    np.testing.assert_allclose(
        user.expected_gradient(w, x, y),
        augment.Gaussian(sigma).expected_gradient(w, x, y),
        atol=1e-13,
    )
    assert user.sample(x, rng=0, size=3).shape == (3, 6)
    bad = augment.Moments(mean=lambda v: v[:2], second_moment=lambda v: np.eye(v.shape[0]))
    with pytest.raises(ValueError, match="mean returned shape"):
        bad.expected_gradient(w, x, y)


def test_batch_rows_and_fastperm_expected_gradient(example):
    x, w, y = example
    X = np.stack([x, 2 * x, -x])
    Y = np.array([y, 0.0, 1.0])
    for aug in AUGS:
        batch = fastperm.expected_gradient(w, X, Y, aug)
        for i in range(3):
            np.testing.assert_allclose(batch[i], aug.expected_gradient(w, X[i], Y[i]), atol=1e-13)


def test_bad_parameters_named():
    with pytest.raises(ValueError, match="sigma must be a finite real >= 0"):
        augment.Gaussian(-1)
    with pytest.raises(ValueError, match="p must be a keep probability in \\(0, 1\\]"):
        augment.Mask(0)
    with pytest.raises(ValueError, match="groups must partition range\\(4\\)"):
        augment.BlockPermutation([[0, 1], [1, 3]])
    with pytest.raises(ValueError, match="groups\\[1\\] must be a non-empty sequence of ints"):
        augment.BlockPermutation([[0], []])
    with pytest.raises(ValueError, match="partition range\\(3\\) but the inputs have d = 4"):
        augment.BlockPermutation([[0, 1, 2]]).expected_gradient(np.ones(4), np.ones(4), 0.0)
    with pytest.raises(ValueError, match="augmentation must be one of"):
        augment.as_augmentation("rotate")
    with pytest.raises(TypeError, match="mean and second_moment must be callables"):
        augment.Moments(1, 2)
