"""The dual (Gram) form of plain and fixed k-fold SGD (issue 18, :mod:`fastperm.dual`): the same
runs as the primal loop to rounding, the same divergence step, shared Gram matrices, the
cost model's choices and its refusals; each able to fail (a planted error is caught)."""

import math
import warnings

import numpy as np
import pytest

import fastperm
from fastperm import augment, backends, dual, knobs
from fastperm._runs import record_steps, run_outputs

DUAL_BACKENDS = [b for b in backends.available() if hasattr(backends.get(b), "dual_runs")]


def noisy_problem(d, n=40, seed=0):
    """Noisy labels (y ≠ X w*), a w* that is not constant."""
    gen = np.random.default_rng(seed)
    X = gen.standard_normal((n, d))
    w_star = gen.standard_normal(d)
    y = X @ w_star + 0.5 * gen.standard_normal(n)
    return fastperm.LinearProblem(X, y, w_star)


def start(d, seed=1):
    return 0.3 * np.random.default_rng(seed).standard_normal(d)


def stable_lr(problem, k=1):
    return 0.5 / float(np.max(np.sum(problem.X**2, axis=1)))


def rel(a, b):
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


@pytest.mark.parametrize("d", [1, 7, 400, 10_000])
def test_long_runs_agree_with_the_primal_loop(d):
    """T = 10⁵ steps: loss curves and final w within 1e-10 relative of the primal kernel."""
    p = noisy_problem(d)
    kw = dict(lr=stable_lr(p), steps=100_000, record_every=1000, w0=start(d))
    primal = fastperm.train(p, 1, algorithm="primal", **kw)
    dual_ = fastperm.train(p, 1, algorithm="dual", **kw)
    assert (primal.meta["algorithm"], dual_.meta["algorithm"]) == ("primal", "dual")
    assert primal.diverged_step is None and dual_.diverged_step is None
    assert rel(dual_.loss, primal.loss) < 1e-10
    assert np.max(np.abs(dual_.w - primal.w)) < 1e-10 * np.max(np.abs(primal.w))


@pytest.mark.parametrize(
    "augmentation",
    ["permutation", "resample", augment.Gaussian(0.3), augment.Mask(0.2), augment.CyclicShift()],
    ids=["permutation", "resample", "gaussian", "mask", "cyclic"],
)
def test_fixed_kfold_agrees_with_the_primal_loop(augmentation):
    """Fixed k-fold: the same seed draws the same copies, and the runs agree."""
    p = noisy_problem(60, n=12)
    kw = dict(lr=0.5 * stable_lr(p), steps=20_000, record_every=500, w0=start(60),
              augmentation=augmentation)  # fmt: skip
    primal = fastperm.train_many(p, 4, seeds=[3, 4], algorithm="primal", **kw)
    dual_ = fastperm.train_many(p, 4, seeds=[3, 4], algorithm="dual", **kw)
    assert rel(dual_.loss, primal.loss) < 1e-10
    assert np.max(np.abs(dual_.w - primal.w)) < 1e-10 * np.max(np.abs(primal.w))
    # another seed's copies are other copies: the comparison can tell
    other = fastperm.train_many(p, 4, seeds=[5, 4], algorithm="dual", **kw)
    assert rel(other.loss[0], primal.loss[0]) > 1e-6


@pytest.mark.parametrize("backend", DUAL_BACKENDS)
def test_every_backend_against_the_reference(backend):
    """Each backend's dual kernel against the reference's primal loop (k = 1 and k = 3, w kept
    at the records, resynchronised every 7 steps)."""
    p = noisy_problem(9, n=5)
    ref = backends.get("numpy")
    kern = backends.get(backend)
    for k in (1, 3):
        T, R = 300, 2
        rec = record_steps(T, 20)
        seeds = np.array([0, 1], dtype=np.uint64)
        W0 = np.stack([start(9, 1), start(9, 2)])
        lr = np.array([0.05, 0.08])
        aug = augment.as_augmentation("permutation").sampler()
        want = run_outputs(R, rec.size - 1, 9, keep_w=True)
        ref.sgd_runs(p.X, p.y, p.target, W0, lr, seeds, k, T, 0, False, *aug, rec, False,
                     *want.values())  # fmt: skip
        copies, gram, which, _ = dual.setup(kern, p.X, k, seeds, aug, 1)
        got = run_outputs(R, rec.size - 1, 9, keep_w=True)
        kern.dual_runs(p.y, p.target, W0, lr, copies, gram, which, k, T, 0, 7, 1e-3, 1e100,
                       rec, *got.values())  # fmt: skip
        assert list(got["status_out"]) == [-1, -1]
        assert rel(got["loss_out"], want["loss_out"]) < 1e-12
        np.testing.assert_allclose(got["w_rec"], want["w_rec"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(got["w_out"], want["w_out"], rtol=0, atol=1e-12)


def plain_dual_loss(p, steps, record_every, resync, plant=None, drop=1e-3, w0=None):
    """The loss curve of one plain run (k = 1, lr = stable_lr, from ``w0``, default
    start(d)) by the first dual backend's kernel; ``plant(G)`` may change the Gram matrix
    first."""
    kern = backends.get(DUAL_BACKENDS[0])
    rec = record_steps(steps, record_every)
    W0 = (start(p.d) if w0 is None else w0)[None]
    lr, seeds = np.array([stable_lr(p)]), np.zeros(1, dtype=np.uint64)
    copies, gram, which, _ = dual.setup(kern, p.X, 1, seeds, None, 1)
    if plant is not None:
        gram = gram.copy()
        plant(gram[0])
    out = run_outputs(1, rec.size - 1, p.d)
    kern.dual_runs(p.y, p.target, W0, lr, copies, gram, which, 1, steps, 0, resync, drop, 1e100,
                   rec, *out.values())  # fmt: skip
    return out["loss_out"][0]


def test_a_planted_error_is_caught():
    """One Gram entry off by 1e-7 relative: the loss curve leaves the 1e-10 band."""
    p = noisy_problem(50, n=10)

    def plant(G):
        G[2, 3] *= 1 + 1e-7
        G[3, 2] = G[2, 3]

    primal = fastperm.train(p, 1, lr=stable_lr(p), steps=5000, record_every=100, w0=start(50),
                            algorithm="primal")  # fmt: skip
    assert rel(plain_dual_loss(p, 5000, 100, 10**9), primal.loss) < 1e-10
    assert rel(plain_dual_loss(p, 5000, 100, 10**9, plant), primal.loss) > 1e-10


@pytest.mark.parametrize("k", [1, 4])
def test_divergence_at_the_primal_step_over_a_sweep(k):
    """48 step sizes around the edge of stability (and far past it), loss recorded at every
    step: each run stops at the primal loop's step."""
    p = noisy_problem(30, n=8)
    edge = 2.0 / float(np.max(np.sum(p.X**2, axis=1)))
    kw = dict(lr=edge * np.geomspace(0.9, 40, 48), steps=20_000, record_every=1, w0=start(30),
              seeds=0)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastperm.DivergenceWarning)
        primal = fastperm.train_many(p, k, algorithm="primal", **kw)
        dual_ = fastperm.train_many(p, k, algorithm="dual", **kw)
    assert (primal.diverged_step >= 0).sum() > 15
    np.testing.assert_array_equal(dual_.diverged_step, primal.diverged_step)


@pytest.mark.parametrize("k", [1, 4])
def test_divergence_at_the_primal_step(k):
    p = noisy_problem(30, n=8)
    kw = dict(lr=[1.0, 3.0, 10.0], steps=3000, record_every=1, w0=start(30), seeds=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastperm.DivergenceWarning)
        primal = fastperm.train_many(p, k, algorithm="primal", **kw)
        dual_ = fastperm.train_many(p, k, algorithm="dual", **kw)
    assert (primal.diverged_step >= 0).all()
    np.testing.assert_array_equal(dual_.diverged_step, primal.diverged_step)
    assert np.isnan(dual_.w).all()
    with pytest.warns(fastperm.DivergenceWarning, match="diverged at step"):
        fastperm.train(p, k, lr=1.0, steps=3000, w0=start(30), algorithm="dual")


def test_train_many_shares_the_gram_matrix():
    """Runs of one call (one Gram matrix for k = 1, one per seed for k ≥ 2) equal separate
    calls bitwise."""
    p = noisy_problem(300, n=20)
    lrs = [1e-3, 2e-3, 3e-3]
    for k, seeds in ((1, [0, 0, 0]), (3, [0, 1, 0])):
        many = fastperm.train_many(p, k, seeds=seeds, lr=lrs, steps=2000, record_every=100,
                                   algorithm="dual")  # fmt: skip
        for r, (seed, lr) in enumerate(zip(seeds, lrs, strict=True)):
            one = fastperm.train(p, k, seed=seed, lr=lr, steps=2000, record_every=100,
                                 algorithm="dual")  # fmt: skip
            np.testing.assert_array_equal(one.loss, many.loss[r])
            np.testing.assert_array_equal(one.w, many.w[r])


def test_auto_is_per_run():
    """The form auto takes depends on one run, not on the batch: run r of train_many is
    bitwise train's, where the batch's shared Gram matrix would tip a batch-wide choice."""
    p = noisy_problem(400)
    kw = dict(steps=1000, record_every=100)
    many = fastperm.train_many(p, 1, lr=[1e-3, 2e-3, 3e-3], **kw)
    one = fastperm.train(p, 1, lr=1e-3, **kw)
    assert one.meta["algorithm"] == many.meta["algorithm"]
    np.testing.assert_array_equal(one.w, many.w[0])
    assert fastperm.train(p, 1, lr=1e-3, steps=20_000).meta["algorithm"] == "dual"
    many = fastperm.train_many(p, 1, lr=[1e-3, 2e-3], steps=20_000, record_every=1000)
    one = fastperm.train(p, 1, lr=2e-3, steps=20_000, record_every=1000)
    np.testing.assert_array_equal(one.loss, many.loss[1])


def test_runs_over_the_budget_run_in_groups():
    """k = 3 fixed, 6 seeds, a budget that holds two copy sets: three groups, the same bits
    as one call, the same form."""
    p = noisy_problem(100, n=10)
    kw = dict(seeds=[5, 0, 1, 2, 3, 4], lr=2e-3, steps=3000, record_every=300, algorithm="dual")
    one_set = dual.setup_bytes(dual.Shape(10, 100, 3, 3000, 1, 1, 0))
    whole = fastperm.train_many(p, 3, **kw)
    grouped = fastperm.train_many(p, 3, cache_bytes=2 * one_set, **kw)
    assert grouped.meta["algorithm"] == "dual"
    np.testing.assert_array_equal(grouped.loss, whole.loss)
    np.testing.assert_array_equal(grouped.w, whole.w)


def test_resumed_from_any_step_parts_do_not_change_bits(monkeypatch):
    """A call resumed at a step that is not a multiple of the resync period: split into
    parts (or with a progress bar) it gives the bits of one call."""
    p = noisy_problem(20, n=6)
    kw = dict(lr=0.01, record_every=50, w0=start(20), algorithm="dual")
    first = fastperm.train_many(p, 2, seeds=[0, 1], steps=1001, **kw)
    assert 1001 % dual.resync_steps(20, 2) != 0
    one = fastperm.resume(first, p, 4000)
    monkeypatch.setattr(knobs, "INTERRUPT_WORK", 5e3)  # many parts
    parts = fastperm.resume(first, p, 4000)
    np.testing.assert_array_equal(parts.w, one.w)
    np.testing.assert_array_equal(parts.loss, one.loss)


def test_an_interrupted_dual_run_resumes_bitwise(monkeypatch):
    """Ctrl-C in the third part of a dual call; the partial result says it ran in the dual
    form, and resuming it (too short a rest for auto to choose the dual form) gives one
    call's bits."""
    p = noisy_problem(400)
    kw = dict(lr=1e-3, steps=40_000, record_every=1000)
    whole = fastperm.train(p, 1, **kw)
    assert whole.meta["algorithm"] == "dual"
    kern = backends.get()
    real, calls = kern.dual_runs, []

    def stop_at_third(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(knobs, "INTERRUPT_WORK", 1e5)
    monkeypatch.setattr(kern, "dual_runs", stop_at_third)
    with pytest.raises(fastperm.Interrupted) as info:
        fastperm.train(p, 1, **kw)
    monkeypatch.undo()
    part = info.value.result
    assert part.meta["algorithm"] == "dual" and part.steps[-1] < 40_000
    rest = fastperm.resume(part, p, 40_000 - int(part.steps[-1]))
    assert rest.meta["algorithm"] == "dual"
    np.testing.assert_array_equal(rest.w, whole.w)


def test_parts_and_threads_do_not_change_bits(monkeypatch):
    """Calls split into parts (at multiples of the resync steps) and any thread count give
    one call's bits; an interrupted-and-resumed run continues bitwise."""
    p = noisy_problem(20, n=6)
    kw = dict(lr=0.01, steps=5000, record_every=50, w0=start(20), algorithm="dual")
    whole = fastperm.train_many(p, 2, seeds=[0, 1, 2], threads=1, **kw)
    monkeypatch.setattr(knobs, "INTERRUPT_WORK", 5e3)  # many parts
    parts = fastperm.train_many(p, 2, seeds=[0, 1, 2], threads=2, **kw)
    np.testing.assert_array_equal(parts.loss, whole.loss)
    np.testing.assert_array_equal(parts.w, whole.w)
    resync = dual.resync_steps(20, 2)
    first = fastperm.train_many(p, 2, seeds=[0, 1, 2], **{**kw, "steps": 4 * resync})
    rest = fastperm.resume(first, p, 5000 - 4 * resync)
    assert rest.meta["algorithm"] == "dual"
    np.testing.assert_array_equal(rest.w, whole.w)


def test_resync_bounds_the_recurrences():
    """Resynchronising every step (w formed each time) and never agree to rounding."""
    p = noisy_problem(40, n=10)
    every = plain_dual_loss(p, 20_000, 500, 1)
    never = plain_dual_loss(p, 20_000, 500, 10**9, drop=0.0)
    assert rel(never, every) < 1e-11


def test_a_loss_going_to_zero_stays_accurate():
    """Noiseless labels, w0 − w* in the span of X: the loss falls geometrically. Over its
    first nine orders of magnitude, resynchronising as it falls (drop) keeps every record
    within 1e-10 of the primal loop's, where the bare recurrence, whose rounding is
    relative to the start's loss, is off by more than 1e-8. (Further down both forms agree
    only to the rounding of w itself, ~eps·|w|/|w − w*|, as two primal loops do.)"""
    gen = np.random.default_rng(5)
    X = gen.standard_normal((40, 400))
    w_star = gen.standard_normal(400)
    p = fastperm.LinearProblem(X, X @ w_star, w_star)
    w0 = w_star + X.T @ gen.standard_normal(40)
    primal = fastperm.train(p, 1, lr=stable_lr(p), steps=1200, record_every=100, w0=w0,
                            algorithm="primal")  # fmt: skip
    assert 1e-10 * primal.loss[0] < primal.loss[-1] < 1e-8 * primal.loss[0]
    assert rel(plain_dual_loss(p, 1200, 100, 10**9, w0=w0), primal.loss) < 1e-10
    assert rel(plain_dual_loss(p, 1200, 100, 10**9, drop=0.0, w0=w0), primal.loss) > 1e-8


@pytest.mark.parametrize(
    ("d", "n", "k", "steps", "runs", "want"),
    [
        (400, 40, 1, 20_000, 1, "dual"),  # the post's problem: d ≫ n
        (100_000, 40, 1, 2_000, 1, "dual"),
        (10_000, 40, 16, 20_000, 1, "dual"),
        (50, 10, 1, 200, 1, "primal"),  # too small to matter
        (10, 1000, 1, 100_000, 1, "primal"),  # n ≫ d: a step over N copies costs more
        (400, 40, 16, 100, 1, "primal"),  # the copies' Gram matrix for 100 steps
    ],
)
def test_cost_model_choices(d, n, k, steps, runs, want):
    shape = dual.Shape(n, d, k, steps, runs, 1 if k == 1 else runs, 0)
    kern = backends.get("numpy")
    got = dual.choose("auto", shape, fresh=False, dtype="float64", infinite=False, kern=kern,
                      budget=knobs.CACHE_BYTES)  # fmt: skip
    assert got == want, (dual.primal_work(shape), dual.dual_work(shape))


def test_auto_takes_the_primal_loop_where_the_dual_cannot_run():
    p = noisy_problem(400)
    kw = dict(lr=1e-3, steps=20_000, record_every=1000)
    assert fastperm.train(p, 1, **kw).meta["algorithm"] == "dual"
    assert fastperm.train(p, 4, sampling="fresh", **kw).meta["algorithm"] == "primal"
    if "float32" in getattr(backends.get(), "DTYPES", ()):
        assert fastperm.train(p, 1, dtype="float32", **kw).meta["algorithm"] == "primal"
    assert fastperm.train(p, 4, **kw).meta["algorithm"] == "dual"
    assert fastperm.train(p, 4, cache_bytes=1000, **kw).meta["algorithm"] == "primal"
    assert fastperm.train(p, math.inf, **kw).meta["algorithm"] == "closed form"


def test_refusals_name_the_argument():
    p = noisy_problem(20, n=5)
    with pytest.raises(ValueError, match="algorithm"):
        fastperm.train(p, 1, algorithm="fast")
    with pytest.raises(ValueError, match="algorithm"):
        fastperm.train_many(p, 1, algorithm=3)
    with pytest.raises(ValueError, match="fresh"):
        fastperm.train(p, 4, sampling="fresh", algorithm="dual")
    with pytest.raises(ValueError, match="k = ∞"):
        fastperm.train(p, math.inf, algorithm="dual")
    with pytest.raises(ValueError, match="cache_bytes"):
        fastperm.train(p, 4, algorithm="dual", cache_bytes=100)


def test_spread_over_dask_equals_one_call(client):
    """Runs in the dual form spread over a Dask cluster (the copies and Gram matrices
    scattered once) equal the local call bitwise."""
    p = noisy_problem(200, n=10)
    kw = dict(seeds=[0, 1, 2, 3], lr=1e-3, steps=3000, record_every=300, algorithm="dual")
    local = fastperm.train_many(p, 2, **kw)
    spread = fastperm.train_many(p, 2, client=client, **kw)
    assert spread.meta["algorithm"] == "dual"
    np.testing.assert_array_equal(spread.loss, local.loss)
    np.testing.assert_array_equal(spread.w, local.w)
