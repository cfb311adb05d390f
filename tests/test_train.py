"""Training runs: every backend vs the reference, the O(T + d) path, plateaus, divergence."""

import math
import warnings

import numpy as np
import pytest
from tolerance import rel_each as _rel

import fastperm
from fastperm import backends
from fastperm import rng as spec
from fastperm.backends import reference

METHODS = [
    (1, "fixed", "permutation"),
    (3, "fixed", "permutation"),
    (3, "fresh", "permutation"),
    (4, "fixed", "resample"),
    (4, "fresh", "resample"),
    (math.inf, "fixed", "permutation"),
    (math.inf, "fixed", "resample"),
]


@pytest.mark.parametrize("k, sampling, augmentation", METHODS)
def test_compiled_matches_reference(compiled, small, k, sampling, augmentation):
    kw = dict(
        lr=0.02, steps=37, sampling=sampling, augmentation=augmentation, seed=5, record_every=4
    )
    ref = fastperm.train(small, k, backend="numpy", **kw)
    got = fastperm.train(small, k, backend=compiled, **kw)
    np.testing.assert_array_equal(got.steps, ref.steps)
    assert got.steps[-1] == 37 and got.steps[0] == 0
    assert _rel(got.loss, ref.loss) < 1e-12
    assert _rel(got.w, ref.w) < 1e-12
    assert got.diverged_step is None and got.backend == compiled


def test_seed_changes_augmented_runs_only(compiled, small):
    a = fastperm.train(small, 3, lr=0.02, steps=20, seed=1, backend=compiled)
    b = fastperm.train(small, 3, lr=0.02, steps=20, seed=2, backend=compiled)
    assert _rel(a.loss[1:], b.loss[1:]) > 1e-6  # different permutations, different curve
    c = fastperm.train(small, 1, lr=0.02, steps=20, seed=1, backend=compiled)
    d = fastperm.train(small, 1, lr=0.02, steps=20, seed=2, backend=compiled)
    np.testing.assert_array_equal(c.loss, d.loss)


def test_reproducible(backend, small):
    runs = [
        fastperm.train(small, 3, lr=0.02, steps=25, sampling="fresh", seed=8, backend=backend)
        for _ in range(2)
    ]
    np.testing.assert_array_equal(runs[0].loss, runs[1].loss)
    np.testing.assert_array_equal(runs[0].w, runs[1].w)


def test_expected_path_vs_explicit_loop(compiled, rng):
    """The O(T + d) recurrence against the explicit O(T·d) loop, w0 and w* not constant."""
    X = rng.standard_normal((7, 30))
    w_star = rng.standard_normal(30)
    p = fastperm.LinearProblem(X, X @ w_star + 0.1 * rng.standard_normal(7), w_star)
    w0 = rng.standard_normal(30)
    for aug in ("permutation", "resample"):
        got = fastperm.train(
            p,
            math.inf,
            lr=0.01,
            steps=3000,
            w0=w0,
            augmentation=aug,
            record_every=7,
            backend=compiled,
        )
        rec = np.append(got.steps, 3001)
        loss = np.empty((1, got.steps.size))
        w = np.empty((1, 30))
        status = np.empty(1, dtype=np.int64)
        reference.expected_runs(
            p.X,
            p.y,
            p.w_star,
            w0[None],
            np.array([0.01]),
            3000,
            fastperm.rng.KIND_RESAMPLE if aug == "resample" else fastperm.rng.KIND_PERMUTATION,
            rec,
            loss,
            np.empty((1, 0, 30)),
            w,
            status,
        )
        assert _rel(got.loss, loss[0]) < 1e-10
        assert _rel(got.w, w[0]) < 1e-10
        # and the path really is the expected gradient: one explicit step by hand
        one = fastperm.train(
            p, math.inf, lr=0.01, steps=1, w0=w0, augmentation=aug, backend=compiled
        )
        g = fastperm.expected_gradient(w0, X[0], p.y[0], augmentation=aug)
        np.testing.assert_allclose(one.w, w0 - 0.01 * g, rtol=1e-13, atol=1e-15)


def test_expected_run_cost_independent_of_T_times_d(compiled):
    """k = ∞ at d = 10⁵, T = 10⁶ finishes fast: 10¹¹ flops would take minutes."""
    p = fastperm.LinearProblem.sample(d=100_000, n=4, seed=0)
    fastperm.train(p, math.inf, steps=1, backend=compiled)
    r = fastperm.train(p, math.inf, lr=1e-6, steps=1_000_000, record_every=1000, backend=compiled)
    assert r.seconds < 5.0, r.seconds  # generous: about 0.01 s; O(T·d) would be ~100 s
    assert np.isfinite(r.loss).all() and r.loss[-1] < r.loss[0]


def test_fixed_copies_are_augmented_gradient_copies(backend, small):
    """One fixed-mode step equals a step with augmented_gradient of example 0."""
    w0 = np.linspace(-1, 1, small.d)
    r = fastperm.train(small, 4, lr=0.05, steps=1, w0=w0, seed=21, backend=backend)
    g = fastperm.augmented_gradient(w0, small.X[0], small.y[0], 4, seed=21)
    np.testing.assert_allclose(r.w, w0 - 0.05 * g, rtol=1e-13, atol=1e-15)


def test_fixed_copies_repeat_each_epoch_fresh_do_not(backend):
    """With n = 1 every step sees example 0: fixed copies give the same map each step."""
    p = fastperm.LinearProblem.sample(d=6, n=1, seed=2)
    w0 = np.arange(6.0)
    fixed = fastperm.train(p, 3, lr=0.01, steps=2, w0=w0, seed=4, backend=backend)
    g0 = fastperm.augmented_gradient(w0, p.X[0], p.y[0], 3, seed=4)
    w1 = w0 - 0.01 * g0
    g1 = fastperm.augmented_gradient(w1, p.X[0], p.y[0], 3, seed=4)
    np.testing.assert_allclose(fixed.w, w1 - 0.01 * g1, rtol=1e-13)
    fresh = fastperm.train(p, 3, lr=0.01, steps=2, w0=w0, seed=4, sampling="fresh", backend=backend)
    assert _rel(fresh.w, fixed.w) > 1e-8


def test_cache_never_changes_results(compiled, small):
    kw = dict(lr=0.02, steps=40, seed=3, backend=compiled)
    a = fastperm.train(small, 5, cache_bytes=0, **kw)
    b = fastperm.train(small, 5, **kw)
    assert a.meta["cache"] is False and b.meta["cache"] is True
    np.testing.assert_array_equal(a.loss, b.loss)


def _plateau(p, k, seed):
    """Loss of the projection of w* onto the span of the n·k fixed copies (spec permutations)."""
    A = np.array(
        [
            p.X[i][spec.permutation(seed, spec.STREAM_FIXED, spec.counter(i, j), p.d)]
            if j
            else p.X[i]
            for i in range(p.n)
            for j in range(k)
        ]
    )
    coef, *_ = np.linalg.lstsq(A.T, p.w_star, rcond=None)
    return np.mean((A.T @ coef - p.w_star) ** 2)


def test_plateau_is_projection_onto_augmented_span(compiled):
    """Fixed copies: SGD from 0 converges to the projection of w* onto the span of the n·k
    copies (an exact oracle)."""
    p = fastperm.LinearProblem.sample(d=40, n=3, seed=1)
    r = fastperm.train(p, 4, lr=0.02, steps=60_000, record_every=1000, seed=6, backend=compiled)
    assert r.loss[-1] == pytest.approx(_plateau(p, 4, 6), rel=1e-6)


def test_plateau_rule_of_thumb_at_reference_size():
    """At d = 400, n = 40 the plateau is within 0.05 of 1 − min(nk, d)/d (the post's rule)."""
    p = fastperm.LinearProblem.sample(d=400, n=40, seed=0)
    for k in (1, 2, 4, 8, 16):
        assert abs(_plateau(p, k, 0) - (1 - min(40 * k, 400) / 400)) < 0.05


def test_reference_figure_ordering():
    """d = 400, n = 40, 1000 steps: k = 1 above 2, 4, 8, 16 above ∞ (the post's Figure 1)."""
    p = fastperm.LinearProblem.sample(d=400, n=40, seed=0)
    final = [fastperm.train(p, k, seed=0).loss[-1] for k in (1, 2, 4, 8, 16, math.inf)]
    assert all(a > b for a, b in zip(final, final[1:], strict=False)), final
    assert final[0] > 0.85 and final[0] < 0.9  # heading to 1 − 40/400


def test_train_many_equals_train(compiled, small):
    seeds = [0, 1, 2, 3, 4]
    lrs = [0.01, 0.02, 0.03, 0.01, 0.02]
    for k in (1, 3, math.inf):
        many = fastperm.train_many(
            small,
            k,
            seeds=seeds,
            lr=lrs,
            steps=30,
            sampling="fresh",
            backend=compiled,
            record_every=3,
        )
        assert many.loss.shape == (5, many.steps.size) and many.w.shape == (5, small.d)
        for r in range(5):
            one = fastperm.train(
                small,
                k,
                seed=seeds[r],
                lr=lrs[r],
                steps=30,
                sampling="fresh",
                backend=compiled,
                record_every=3,
            )
            np.testing.assert_array_equal(many.loss[r], one.loss)
            np.testing.assert_array_equal(many.w[r], one.w)


@pytest.mark.parametrize("sampling", ["fixed", "fresh"])
def test_train_many_independent_of_threads(compiled, small, sampling):
    kern = backends.get(compiled)
    if kern.threads() < 2:
        pytest.skip(f"{compiled} runs one thread here")
    kw = dict(seeds=range(9), lr=0.02, steps=50, backend=compiled, sampling=sampling)
    before = kern.threads()
    try:
        kern.set_threads(1)
        assert kern.threads() == 1
        one = fastperm.train_many(small, 4, **kw)
    finally:
        kern.set_threads(before)
    many = fastperm.train_many(small, 4, **kw)
    np.testing.assert_array_equal(one.loss, many.loss)


def test_train_many_broadcast_and_w0_per_run(backend, small):
    W0 = np.arange(3 * small.d, dtype=float).reshape(3, small.d) / 100
    r = fastperm.train_many(small, 2, seeds=[1, 2, 3], lr=0.01, w0=W0, steps=4, backend=backend)
    np.testing.assert_array_equal(r.lr, [0.01] * 3)
    np.testing.assert_array_equal(r.seed, [1, 2, 3])
    one = fastperm.train(small, 2, seed=3, lr=0.01, w0=W0[2], steps=4, backend=backend)
    np.testing.assert_allclose(r.w[2], one.w, rtol=1e-14)
    with pytest.raises(ValueError, match="seeds \\(3\\) and lr \\(2\\)"):
        fastperm.train_many(small, 2, seeds=[1, 2, 3], lr=[0.1, 0.2])
    with pytest.raises(ValueError, match="w0 has 2 rows"):
        fastperm.train_many(small, 2, seeds=[1, 2, 3], w0=W0[:2])


@pytest.mark.parametrize("k", [1, 3, math.inf])
def test_divergence_reported(backend, small, k):
    with pytest.warns(fastperm.DivergenceWarning, match="diverged at step"):
        r = fastperm.train(small, k, lr=50.0, steps=400, backend=backend)
    s = r.diverged_step
    assert isinstance(s, int) and 0 < s <= 400
    ok = r.steps < s
    assert np.isfinite(r.loss[ok]).all() and np.isnan(r.loss[~ok]).all()
    assert r.loss[ok][-1] > 1e10  # it was blowing up before it overflowed


def test_divergence_step_same_on_every_backend(compiled, small):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastperm.DivergenceWarning)
        for k in (1, 3):
            a = fastperm.train(small, k, lr=50.0, steps=400, backend="numpy")
            b = fastperm.train(small, k, lr=50.0, steps=400, backend=compiled)
            assert a.diverged_step == b.diverged_step
        # k = ∞: the O(T + d) path squares the mean deviation δ while the explicit loop sums
        # d squares, so at the edge of the float range (loss ~1e305) they overflow a step or
        # two apart
        a = fastperm.train(small, math.inf, lr=50.0, steps=400, backend="numpy")
        b = fastperm.train(small, math.inf, lr=50.0, steps=400, backend=compiled)
        assert abs(a.diverged_step - b.diverged_step) <= 3


def test_train_many_divergence_per_run(backend, small):
    with pytest.warns(fastperm.DivergenceWarning, match="1 of 2 runs diverged"):
        r = fastperm.train_many(small, 1, lr=[0.01, 50.0], steps=300, backend=backend)
    assert r.diverged_step[0] == -1 and r.diverged_step[1] > 0


def test_steps_zero_and_record_every(backend, small):
    r = fastperm.train(small, 2, steps=0, backend=backend)
    assert r.steps.tolist() == [0] and r.loss.shape == (1,)
    assert r.loss[0] == pytest.approx(np.mean(small.w_star**2))
    r = fastperm.train(small, 2, steps=10, record_every=4, backend=backend)
    assert r.steps.tolist() == [0, 4, 8, 10]


def test_result_repr_and_timing(small):
    r = fastperm.train(small, 2, steps=10)
    assert "TrainResult(k=2" in repr(r) and r.seconds >= 0 and r.ns_per_step >= 0


PROBLEM_ARGS = dict(
    lr=1e-3,
    steps=5,
    sampling="fixed",
    augmentation="permutation",
    w0=None,
    seed=0,
    record_every=1,
    backend=None,
)


@pytest.mark.parametrize(
    "k, exc",
    [
        (0, ValueError),
        (-1, ValueError),
        (2.5, TypeError),
        (True, TypeError),
        ("2", TypeError),
        (-math.inf, TypeError),
        (math.nan, TypeError),
    ],
)
def test_bad_k(small, k, exc):
    with pytest.raises(exc, match="k must be"):
        fastperm.train(small, k)


@pytest.mark.parametrize(
    "name, value, exc, match",
    [
        ("lr", 0.0, ValueError, "lr must be finite and > 0"),
        ("lr", -1e-3, ValueError, "lr must be finite and > 0"),
        ("lr", math.inf, ValueError, "lr must be finite and > 0"),
        ("lr", math.nan, ValueError, "lr must be finite and > 0"),
        ("lr", "fast", TypeError, "lr must be a real number"),
        ("steps", -1, ValueError, "steps must be >= 0"),
        ("steps", 10.0, TypeError, "steps must be an integer"),
        ("record_every", 0, ValueError, "record_every must be >= 1"),
        ("sampling", "random", ValueError, "sampling must be one of"),
        ("augmentation", "rotate", ValueError, "augmentation must be one of"),
        ("backend", "fortran", ValueError, "backend must be one of"),
        ("seed", -1, ValueError, "seed must be >= 0"),
        ("w0", [1.0, 2.0], ValueError, "w0 has 2 entries per run but the problem has d = 12"),
        ("w0", [np.inf] * 12, ValueError, "w0 has 12 non-finite"),
    ],
)
def test_bad_train_arguments(small, name, value, exc, match):
    args = dict(PROBLEM_ARGS, **{name: value})
    with pytest.raises(exc, match=match):
        fastperm.train(small, 2, **args)


@pytest.mark.parametrize(
    "X, y, w_star, exc, match",
    [
        (np.full((2, 3), np.nan), np.zeros(2), np.zeros(3), ValueError, "X has 6 non-finite"),
        (np.ones((2, 3)), [0.0, np.inf], np.zeros(3), ValueError, "y has 1 non-finite"),
        (np.ones((2, 3)), np.zeros(3), np.zeros(3), ValueError, "y has 3 entries but X has n = 2"),
        (np.ones((2, 3)), np.zeros(2), np.zeros(2), ValueError, "w_star has 2 entries"),
        (np.ones((0, 3)), np.zeros(0), np.zeros(3), ValueError, "n >= 1"),
        (np.ones((2, 0)), np.zeros(2), np.zeros(0), ValueError, "d >= 1"),
        (np.ones(3), np.zeros(2), np.zeros(3), ValueError, "X must be 2-D"),
        (np.array([["a", "b"]]), np.zeros(1), np.zeros(2), TypeError, "X must hold real numbers"),
    ],
)
def test_bad_problem(X, y, w_star, exc, match):
    with pytest.raises(exc, match=match):
        fastperm.LinearProblem(X, y, w_star)


def test_problem_must_be_linear_problem():
    with pytest.raises(TypeError, match="problem must be a fastperm.LinearProblem"):
        fastperm.train(np.ones((2, 2)), 1)


def test_sample_arguments():
    with pytest.raises(ValueError, match="d must be >= 1"):
        fastperm.LinearProblem.sample(d=0)
    with pytest.raises(ValueError, match="n must be >= 1"):
        fastperm.LinearProblem.sample(n=0)


def test_dtypes_and_layout_are_converted(backend):
    """float32, integer and non-contiguous inputs give the float64 result."""
    rs = np.random.default_rng(0)
    X = rs.integers(-3, 4, size=(4, 10))
    w_star = np.ones(10)
    base = fastperm.LinearProblem(X.astype(np.float64), X @ w_star, w_star)
    ints = fastperm.LinearProblem(X, X @ w_star, w_star.astype(np.int64))
    f32 = fastperm.LinearProblem(
        X.astype(np.float32), (X @ w_star).astype(np.float32), w_star.astype(np.float32)
    )
    big = np.zeros((4, 20))
    big[:, ::2] = X
    strided = fastperm.LinearProblem(big[:, ::2], X @ w_star, w_star)
    assert not big[:, ::2].flags.c_contiguous
    ref = fastperm.train(base, 3, lr=0.01, steps=9, backend=backend)
    for p in (ints, f32, strided):
        assert p.X.dtype == np.float64 and p.X.flags.c_contiguous
        np.testing.assert_array_equal(
            fastperm.train(p, 3, lr=0.01, steps=9, backend=backend).loss, ref.loss
        )
    r = fastperm.train(
        base, 1, lr=0.01, steps=3, w0=np.zeros(10, dtype=np.float32)[::1], backend=backend
    )
    assert r.w.dtype == np.float64


def test_large_seeds_kept_exactly(small):
    """A seed list mixing small and ≥ 2**63 seeds is not rounded through float64."""
    many = fastperm.train_many(small, 3, seeds=[0, 2**64 - 1], lr=0.01, steps=20)
    np.testing.assert_array_equal(many.seed, np.array([0, 2**64 - 1], dtype=np.uint64))
    one = fastperm.train(small, 3, seed=2**64 - 1, lr=0.01, steps=20)
    np.testing.assert_array_equal(many.loss[1], one.loss)
