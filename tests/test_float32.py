"""float32 training (issue 15, item 6): opt-in ``dtype="float32"`` for plain and k-fold runs on
the numba backend. Oracle: the float64 run, which it must match to float32's accuracy (and a
run with another seed must not); determinism, resume and the cache as in float64."""

import math

import numpy as np
import pytest

import fastperm
from fastperm import augment, knobs

pytestmark = pytest.mark.skipif(
    "numba" not in fastperm.backends.available(), reason="float32 runs on the numba backend"
)

AUGS = [
    "permutation",
    "resample",
    augment.Gaussian(0.2),
    augment.Mask(0.3),
    augment.CyclicShift(),
    augment.BlockPermutation([list(range(10)), list(range(10, 40))]),
]


@pytest.fixture(scope="module")
def problem():
    return fastperm.LinearProblem.sample(d=40, n=8, seed=2, n_test=20)


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("aug", AUGS, ids=lambda a: a if isinstance(a, str) else type(a).__name__)
@pytest.mark.parametrize("k, sampling", [(1, "fixed"), (4, "fixed"), (4, "fresh")])
def test_float32_matches_float64_to_its_accuracy(problem, aug, k, sampling):
    kw = dict(
        seeds=[0, 3], lr=[0.005, 0.01], steps=600, record_every=50, sampling=sampling,
        augmentation=aug, backend="numba", record=["error", "test", "w"],
    )  # fmt: skip
    f64 = fastperm.train_many(problem, k, **kw)
    f32 = fastperm.train_many(problem, k, dtype="float32", **kw)
    assert f32.w.dtype == np.float32 and f32.records["w"].dtype == np.float32
    assert f32.loss.dtype == np.float64 and f32.meta["dtype"] == "float32"
    # float32 rounding of w each step (eps 6e-8), over 600 steps: well inside 1e-4
    assert _rel(f32.loss, f64.loss) < 1e-4
    assert _rel(f32.records["test"], f64.records["test"]) < 1e-4
    assert _rel(f32.w.astype(np.float64), f64.w) < 1e-4
    if k > 1:  # the oracle can fail: other copies are not within that accuracy
        other = fastperm.train_many(problem, k, dtype="float32", **dict(kw, seeds=[1, 4]))
        assert _rel(other.loss, f64.loss) > 1e-3


def test_float32_is_deterministic_and_resumable(problem, monkeypatch):
    kw = dict(seeds=[0, 1, 2], lr=0.01, record_every=7, dtype="float32", backend="numba")
    for k, sampling in ((1, "fixed"), (3, "fixed"), (3, "fresh")):
        whole = fastperm.train_many(problem, k, steps=90, sampling=sampling, threads=2, **kw)
        one = fastperm.train_many(problem, k, steps=90, sampling=sampling, threads=1, **kw)
        assert one == whole
        first = fastperm.train_many(problem, k, steps=40, sampling=sampling, **kw)
        rest = fastperm.resume(first, problem, 50)
        np.testing.assert_array_equal(rest.w, whole.w)
        assert rest.w.dtype == np.float32
        monkeypatch.setattr(knobs, "INTERRUPT_WORK", 500.0)
        monkeypatch.setattr(knobs, "PART_MIN_EPOCHS", 8)
        parts = fastperm.train_many(problem, k, steps=90, sampling=sampling, **kw)
        monkeypatch.undo()
        np.testing.assert_array_equal(parts.w, whole.w)
        np.testing.assert_array_equal(parts.loss, whole.loss)


def test_float32_cache_takes_half(problem):
    """The fixed copies are kept in float32: a budget between n·k·d·4 and n·k·d·8 bytes
    keeps them in float32 only."""
    need64 = problem.n * 8 * problem.d * 8
    kw = dict(lr=0.01, steps=40, cache_bytes=need64 // 2 + 1, backend="numba")
    assert fastperm.train(problem, 8, dtype="float32", **kw).meta["cache"] is True
    assert fastperm.train(problem, 8, **kw).meta["cache"] is False


def test_float32_round_trip(problem, tmp_path):
    res = fastperm.train(problem, 2, steps=30, dtype="float32", record=["train", "w"])
    for suffix in ("npz", "nc"):
        res.save(tmp_path / f"r.{suffix}")
        back = fastperm.TrainResult.load(tmp_path / f"r.{suffix}")
        assert back == res and back.w.dtype == np.float32
        assert back.records["w"].dtype == np.float32


def test_float32_refusals(problem):
    with pytest.raises(ValueError, match="dtype"):
        fastperm.train(problem, 1, dtype="float16")
    with pytest.raises(ValueError, match="k = ∞"):
        fastperm.train(problem, math.inf, dtype="float32")
    for backend in ("numpy", "cython"):
        if backend in fastperm.backends.available():
            with pytest.raises(ValueError, match="float64 only"):
                fastperm.train(problem, 1, dtype="float32", backend=backend)
