"""Training with the augmentation distributions: compiled vs reference vs a dense oracle,
the compiled samplers vs the closed forms, and the structured k = ∞ paths."""

import math
import warnings

import numpy as np
import pytest
from tolerance import rel_max as _rel

import fastperm
from fastperm import augment, backends
from fastperm import rng as spec

needs_numba = pytest.mark.skipif("numba" not in backends.available(), reason="needs numba")

D = 12
AUGS = [
    augment.Gaussian(0.3),
    augment.Mask(0.5),
    augment.Mask(0.7, rescale=True),
    augment.CyclicShift(),
    augment.BlockPermutation([[0, 3, 5], [1, 2], [4, 6, 7, 8, 9, 10, 11]]),
    augment.BlockPermutation([[i] for i in range(D)]),
]


@pytest.fixture(scope="module")
def problem():
    return fastperm.LinearProblem.sample(d=D, n=5, seed=3)


def _dense_oracle(aug, problem, w0, lr, steps):
    """w ← w − lr (M_i w − y_i μ_i) with the dense second moment of each example."""
    M = [aug.second_moment(x) for x in problem.X]
    mu = [aug.mean(x) for x in problem.X]
    w = w0.copy()
    losses = [np.mean((w - problem.w_star) ** 2)]
    for t in range(steps):
        i = t % problem.n
        w = w - lr * (M[i] @ w - problem.y[i] * mu[i])
        losses.append(np.mean((w - problem.w_star) ** 2))
    return np.array(losses), w


@pytest.mark.parametrize("aug", AUGS, ids=repr)
def test_expected_runs_match_reference_and_dense_oracle(problem, aug, compiled):
    w0 = np.linspace(-1, 2, D)  # not constant within any block: every centred part matters
    kw = dict(lr=0.03, steps=80, w0=w0, augmentation=aug)
    a = fastperm.train(problem, math.inf, backend=compiled, **kw)
    b = fastperm.train(problem, math.inf, backend="numpy", **kw)
    assert _rel(a.loss, b.loss) < 1e-12 and _rel(a.w, b.w) < 1e-12
    loss, w = _dense_oracle(aug, problem, w0, 0.03, 80)
    assert _rel(a.loss, loss) < 1e-10 and _rel(a.w, w) < 1e-10


@pytest.mark.parametrize("sampling", ["fixed", "fresh"])
@pytest.mark.parametrize("aug", AUGS[:5], ids=repr)
def test_kfold_runs_match_reference(problem, aug, sampling, compiled):
    kw = dict(
        lr=0.03, steps=40, seeds=[1, 2**64 - 1], sampling=sampling, augmentation=aug, record_every=3
    )
    a = fastperm.train_many(problem, 3, backend=compiled, **kw)
    b = fastperm.train_many(problem, 3, backend="numpy", **kw)
    assert _rel(a.loss, b.loss) < 1e-12 and _rel(a.w, b.w) < 1e-12
    other = fastperm.train_many(problem, 3, backend=compiled, **dict(kw, seeds=[7, 8]))
    assert _rel(other.loss, a.loss) > 1e-8  # the draws matter: the check above can fail


@pytest.mark.parametrize("backend", ["numba", "cython", "numpy"])
@pytest.mark.parametrize("aug", AUGS[:5], ids=repr)
def test_compiled_sampler_converges_to_closed_form(problem, aug, backend):
    """augmented_gradient with k = 3000 draws (counter-based, fastperm.rng) lies within 5
    standard errors of the closed form: the samplers have the right distribution."""
    if backend not in backends.available():
        pytest.skip(f"{backend} not available")
    k = 300 if backend == "numpy" else 3000
    w = np.linspace(-1, 1, D)
    x, y = problem.X[:1], problem.y[:1]
    got = fastperm.augmented_gradient(w, x, y, k, seed=4, augmentation=aug, backend=backend)[0]
    exact = aug.expected_gradient(w, x[0], y[0])
    S = aug.sample(x[0], rng=0, size=20_000)
    sd = ((S @ w - y[0])[:, None] * S).std(axis=0)
    assert np.all(np.abs(got - exact) < 5 * sd / math.sqrt(k) + 1e-12)


def test_spec_copies_are_what_they_claim():
    groups = [[0, 2], [1, 3, 4]]
    p = spec.block_permutation(5, 0, spec.counter(3, 1), groups)
    assert sorted(p[[0, 2]]) == [0, 2] and sorted(p[[1, 3, 4]]) == [1, 3, 4]
    assert 0 <= spec.cyclic_shift(5, 0, 7, 9) < 9
    z = np.concatenate([spec.gaussian_noise(1, 0, c, 50) for c in range(200)])
    assert abs(z.mean()) < 5 / math.sqrt(z.size) and abs(z.var() - 1) < 5 * math.sqrt(2 / z.size)
    keep = np.concatenate([spec.mask_keep(1, 0, c, 50, 0.3) for c in range(200)])
    assert abs(keep.mean() - 0.3) < 5 * math.sqrt(0.21 / keep.size)
    assert spec.mask_keep(1, 0, 0, 50, 1.0).all()


@needs_numba
def test_block_runs_at_large_d():
    """The O(T·G + n·d) path at d = 10⁵, T = 10⁵ (the explicit path: 10¹⁰ operations);
    one group equals the permutation path. (Its cost: asv ``ClosedForms``.)"""
    big = fastperm.LinearProblem.sample(d=100_000, n=10, seed=0)
    aug = augment.BlockPermutation([range(50_000), range(50_000, 100_000)])
    r = fastperm.train(big, math.inf, lr=1e-6, steps=100_000, record_every=10_000, augmentation=aug)
    assert np.isfinite(r.loss).all() and r.loss[-1] < r.loss[0]
    one = augment.BlockPermutation([range(100_000)])
    a = fastperm.train(big, math.inf, lr=1e-6, steps=1000, augmentation=one)
    b = fastperm.train(big, math.inf, lr=1e-6, steps=1000, augmentation="permutation")
    assert _rel(a.loss, b.loss) < 1e-10


def test_divergence_reported_with_the_step(problem, compiled):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastperm.DivergenceWarning)
        for aug in AUGS[:5]:
            a = fastperm.train(
                problem, math.inf, lr=60.0, steps=400, augmentation=aug, backend=compiled
            )
            b = fastperm.train(
                problem, math.inf, lr=60.0, steps=400, augmentation=aug, backend="numpy"
            )
            assert a.diverged_step is not None and abs(a.diverged_step - b.diverged_step) <= 3
    with pytest.warns(fastperm.DivergenceWarning, match="diverged at step"):
        fastperm.train(problem, math.inf, lr=60.0, steps=400, augmentation=augment.Mask(0.5))


def test_unsupported_combinations_say_so(problem):
    user = augment.Moments(mean=lambda v: v, second_moment=lambda v: np.outer(v, v))
    with pytest.raises(ValueError, match="has no sampler in the compiled kernels"):
        fastperm.train(problem, 3, augmentation=user, backend="numpy")
    r = fastperm.train(problem, math.inf, augmentation=user, steps=5, backend="numpy")
    assert r.loss.shape == (6,)
    for name in ("cuda",):
        if name in backends.available():
            with pytest.raises(ValueError, match="does not implement .*backends that do: .*numpy"):
                fastperm.train(problem, math.inf, augmentation=augment.Gaussian(0.1), backend=name)
            with pytest.raises(ValueError, match="does not implement .*backends that do: .*numpy"):
                fastperm.train(problem, 2, augmentation=augment.Gaussian(0.1), backend=name)
