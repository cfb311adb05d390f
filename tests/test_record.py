"""What training records (issue 15, item 2): ``record=`` the parameter error, the training and
held-out losses, and w itself, on every backend and kernel family; real data without w*.

Oracles: w kept at step s equals the w of a run stopped at s (a separate call); the losses
equal NumPy's residuals of those parameters (BLAS, not the library's batches); the kernels'
own in-loop parameter error equals the one computed from the kept w."""

import math
import warnings

import numpy as np
import pytest
from test_resume import _supported, ctrl_c_at_third_part

import fastperm
from fastperm import augment, knobs

AUGS = {
    "permutation": "permutation",
    "resample": "resample",
    "gaussian": augment.Gaussian(0.3),
    "mask": augment.Mask(0.2),
    "cyclic": augment.CyclicShift(),
    "block": augment.BlockPermutation([list(range(4)), list(range(4, 12))]),
}

CASES = [
    (1, "fixed", "permutation"),
    (3, "fixed", "permutation"),
    (3, "fresh", "resample"),
    (2, "fixed", "gaussian"),
    *((math.inf, "fixed", name) for name in AUGS),
]


@pytest.fixture(scope="module")
def problem():
    return fastperm.LinearProblem.sample(d=12, n=5, seed=7, n_test=9)


def _residual_loss(X, y, W):
    """The oracle: ``mean((X w − y)²)`` per row of W by a plain matrix product."""
    res = W @ X.T - y
    return np.mean(res * res, axis=-1)


@pytest.mark.parametrize("k, sampling, aug", CASES)
def test_records_match_their_oracles(backend, problem, k, sampling, aug):
    if not _supported(backend, k, aug):
        pytest.skip(f"{backend} has no kernel for this case")
    kw = dict(sampling=sampling, augmentation=AUGS[aug], backend=backend)
    res = fastperm.train_many(
        problem, k, seeds=[0, 5], lr=[0.01, 0.03], steps=37, record_every=10,
        record=["error", "train", "test", "w"], **kw,
    )  # fmt: skip
    W = res.records["w"]
    assert W.shape == (2, res.steps.size, problem.d)
    np.testing.assert_array_equal(W[:, -1], res.w)
    # the kernels' in-loop error against the one of the kept w
    np.testing.assert_allclose(res.loss, np.mean((W - problem.w_star) ** 2, axis=-1), rtol=1e-12)
    np.testing.assert_allclose(
        res.records["train"], _residual_loss(problem.X, problem.y, W), rtol=1e-12
    )
    np.testing.assert_allclose(
        res.records["test"], _residual_loss(problem.X_test, problem.y_test, W), rtol=1e-12
    )
    # w kept at step s is the w of the same runs stopped at s (each a separate call)
    for q in (1, 3):
        s = int(res.steps[q])
        short = fastperm.train_many(problem, k, seeds=[0, 5], lr=[0.01, 0.03], steps=s, **kw)
        np.testing.assert_allclose(W[:, q], short.w, rtol=1e-12, atol=1e-15)


def test_the_stopped_run_oracle_rejects_a_shifted_record(problem):
    """The oracle above can fail: w kept one step late is not the w of the run stopped there."""
    res = fastperm.train(problem, 3, lr=0.05, steps=30, record_every=10, record="w")
    late = fastperm.train(problem, 3, lr=0.05, steps=21).w
    assert not np.allclose(res.records["w"][2], late, rtol=1e-6)
    exact = fastperm.train(problem, 3, lr=0.05, steps=20).w
    np.testing.assert_array_equal(res.records["w"][2], exact)


def test_records_agree_with_the_reference(compiled, problem):
    kw = dict(steps=40, record_every=8, record=["train", "test"], lr=0.02)
    for k in (1, 4, math.inf):
        got = fastperm.train(problem, k, backend=compiled, **kw)
        ref = fastperm.train(problem, k, backend="numpy", **kw)
        for name in ("train", "test"):
            np.testing.assert_allclose(got.records[name], ref.records[name], rtol=1e-11)


def test_user_moments_keep_w(backend, problem):
    """k = ∞ with user moments (the dense closed form) keeps w too."""
    aug = augment.Moments(
        mean=lambda x: x, second_moment=lambda x: np.outer(x, x) + 0.1 * np.eye(x.size)
    )
    res = fastperm.train(
        problem, math.inf, augmentation=aug, lr=0.01, steps=15, record_every=5,
        record=["error", "w"], backend=backend,
    )  # fmt: skip
    np.testing.assert_array_equal(res.records["w"][-1], res.w)
    np.testing.assert_allclose(res.loss, problem.metric("error", res.records["w"]), rtol=1e-12)


def test_no_w_star_records_the_training_loss(backend):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 6))
    y = X @ rng.standard_normal(6) + 0.1 * rng.standard_normal(30)
    real = fastperm.LinearProblem(X[:20], y[:20], X_test=X[20:], y_test=y[20:])
    res = fastperm.train(real, 1, lr=0.02, steps=200, record_every=50, backend=backend)
    assert res.metric == "train" and list(res.records) == ["train"]
    assert res.meta["problem"]["w_star_known"] is False and res.meta["problem"]["n_test"] == 10
    assert res.loss[-1] < 0.2 * res.loss[0]  # least squares: the training loss goes down
    both = fastperm.train(real, 1, lr=0.02, steps=200, record_every=50, backend=backend,
                          record=["test", "w"])  # fmt: skip
    assert both.metric == "test" and list(both.records) == ["test", "w"]
    np.testing.assert_array_equal(both.w, res.w)
    with pytest.raises(ValueError, match="w_star"):
        fastperm.train(real, 2, record="error")
    with pytest.raises(ValueError, match="w_star"):
        real.loss(np.zeros(6))


def test_refusals(problem):
    no_split = fastperm.LinearProblem.sample(d=6, n=4, seed=0)
    with pytest.raises(ValueError, match="held-out"):
        fastperm.train(no_split, 1, record="test")
    with pytest.raises(ValueError, match="record"):
        fastperm.train(problem, 1, record="loss")
    with pytest.raises(ValueError, match="twice"):
        fastperm.train(problem, 1, record=["w", "w"])
    with pytest.raises(TypeError, match="record"):
        fastperm.train(problem, 1, record=[])
    with pytest.raises(ValueError, match="X_test and y_test"):
        fastperm.LinearProblem(problem.X, problem.y, X_test=problem.X)
    with pytest.raises(ValueError, match="X_test has"):
        fastperm.LinearProblem(problem.X, problem.y, X_test=np.ones((2, 3)), y_test=np.ones(2))
    real = fastperm.LinearProblem(problem.X, problem.y)
    with pytest.raises(ValueError, match="w_star"):
        fastperm.deep_linear.train(real, fastperm.deep_linear.DeepLinear([12, 3]), 1, sigma=0.1)
    with pytest.raises(ValueError, match="w_star"):
        fastperm.schemes.run(real, "vanilla", steps=2)  # (its loss is the parameter error)


def test_memory_budget_is_checked_first(problem, monkeypatch):
    monkeypatch.setattr(knobs, "RECORD_BYTES", 1000)
    with pytest.raises(ValueError, match="record_every"):
        fastperm.train_many(problem, 1, seeds=range(4), steps=100, record="w")
    fastperm.train_many(problem, 1, seeds=range(4), steps=100)  # the error alone keeps no w


def test_a_value_does_not_depend_on_its_batch(problem, rng):
    """Losses of kept w are computed row by row (no BLAS blocking): the same bits in any batch,
    so that a resumed run's records equal one call's."""
    W = rng.standard_normal((7, 13, problem.d))
    for name in ("train", "test", "error"):
        whole = problem.metric(name, W)
        for r, q in ((0, 0), (3, 5), (6, 12)):
            assert problem.metric(name, W[r, q]) == whole[r, q]
        np.testing.assert_array_equal(problem.metric(name, W[2:5]), whole[2:5])


@pytest.mark.parametrize("k, sampling", [(1, "fixed"), (3, "fresh"), (math.inf, "fixed")])
def test_resumed_records_equal_one_call(backend, problem, k, sampling):
    kw = dict(sampling=sampling, record_every=6, record=["test", "w", "error"], backend=backend)
    whole = fastperm.train_many(problem, k, seeds=[1, 2], lr=[0.01, 0.04], steps=40, **kw)
    first = fastperm.train_many(problem, k, seeds=[1, 2], lr=[0.01, 0.04], steps=15, **kw)
    rest = fastperm.resume(first, problem, 25, backend=backend)
    assert list(rest.records) == ["test", "w", "error"]
    cols = whole.steps > 15
    np.testing.assert_array_equal(rest.steps[1:], whole.steps[cols])
    for name, values in whole.records.items():
        np.testing.assert_array_equal(rest.records[name][:, 1:], values[:, cols])
    np.testing.assert_array_equal(rest.w, whole.w)


def test_divergence_leaves_nan_records(backend, problem):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastperm.DivergenceWarning)
        res = fastperm.train_many(
            problem, 1, seeds=[0, 0], lr=[50.0, 0.01], steps=300, record_every=25,
            record=["train", "w"], backend=backend,
        )  # fmt: skip
    bad = res.diverged_step[0]
    assert bad >= 0 and res.diverged_step[1] == -1
    after = res.steps >= bad
    assert np.isnan(res.records["w"][0, after]).all() and np.isnan(res.loss[0, after]).all()
    assert np.isfinite(res.records["w"][1]).all()


def test_records_round_trip(problem, tmp_path):
    res = fastperm.train_many(problem, 3, seeds=[0, 1], lr=0.02, steps=30, record_every=10,
                              record=["test", "w", "train"])  # fmt: skip
    for suffix in ("npz", "nc"):
        path = tmp_path / f"r.{suffix}"
        res.save(path)
        back = fastperm.TrainResult.load(path)
        assert back == res and list(back.records) == ["test", "w", "train"]
    changed = fastperm.TrainResult.load(tmp_path / "r.npz")
    changed.records["w"][0, 1, 2] += 1e-16 + abs(changed.records["w"][0, 1, 2]) * 1e-15
    assert changed != res
    ds = res.to_xarray()
    assert ds["loss"].attrs["metric"] == "test"
    assert ds["w_path"].dims == ("run", "step", "feature")
    assert ds["loss_train"].dims == ("run", "step")
    table = res.to_pandas()
    assert list(table.columns) == ["run", "seed", "lr", "step", "loss", "loss_train"]
    one = fastperm.train(problem, 3, steps=30, record_every=10, record=["train", "w"])
    assert one.to_xarray()["w_path"].dims == ("step", "feature")


def test_interrupted_records_resume_exactly(problem, monkeypatch):
    """Ctrl-C between parts: the partial result has every record up to the step it stopped
    at (the last one computed there from w), and resuming it gives one call's records."""
    kw = dict(seeds=[0, 1], lr=[0.01, 0.02], record_every=5, record=["test", "w"])
    whole = fastperm.train_many(problem, 3, steps=200, backend="numpy", **kw)
    monkeypatch.setattr(knobs, "INTERRUPT_WORK", 2000.0)
    monkeypatch.setattr(knobs, "PART_MIN_EPOCHS", 8)
    real, calls = ctrl_c_at_third_part(monkeypatch)
    with pytest.raises(fastperm.Interrupted) as info:
        fastperm.train_many(problem, 3, steps=200, backend="numpy", **kw)
    part = info.value.result
    s = int(part.steps[-1])
    assert 0 < s < 200 and part.meta["interrupted"]
    np.testing.assert_array_equal(part.records["w"][:, -1], part.w)
    np.testing.assert_array_equal(part.loss[:, -1], problem.metric("test", part.w))
    monkeypatch.setattr(fastperm.backends.get("numpy"), "sgd_runs", real)
    rest = fastperm.resume(part, problem, 200 - s, backend="numpy")
    np.testing.assert_array_equal(rest.w, whole.w)
    for name in ("test", "w"):
        np.testing.assert_array_equal(rest.records[name][:, -1], whole.records[name][:, -1])


def test_interrupted_after_a_divergence_keeps_nan_records(problem, monkeypatch):
    """A run that diverged in a finished part has NaN records past its divergence in the
    partial result of a Ctrl-C (not what the kernel left in memory it never wrote)."""
    monkeypatch.setattr(knobs, "INTERRUPT_WORK", 4000.0)  # parts of 75 steps
    monkeypatch.setattr(knobs, "PART_MIN_EPOCHS", 8)
    real, calls = ctrl_c_at_third_part(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastperm.DivergenceWarning)
        with pytest.raises(fastperm.Interrupted) as info:
            fastperm.train_many(
                problem, 1, seeds=[0, 0], lr=[50.0, 0.01], steps=300, record_every=5,
                record=["train", "w"], backend="numpy",
            )  # fmt: skip
    part = info.value.result
    bad = int(part.diverged_step[0])
    assert 0 <= bad < part.steps[-1] and len(calls) == 3
    after = part.steps >= bad
    assert np.isnan(part.records["w"][0, after]).all() and np.isnan(part.loss[0, after]).all()
    assert np.isfinite(part.records["w"][1]).all() and np.isfinite(part.loss[1]).all()
