"""The cuda backend against Numba CPU: same curves, same permutations, same brackets.

Runs on Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, set in conftest before
numba is imported) at tiny sizes with 4-thread blocks, so that every block-level
reduction and barrier is exercised; on a GPU machine run it for real with
``NUMBA_ENABLE_CUDASIM=0 pytest tests/test_cuda.py``.
"""

import math
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from tolerance import rel_max as _rel

import fastperm
from fastperm import backends, lie, models
from fastperm import rng as spec
from fastperm.train import record_steps

pytestmark = pytest.mark.skipif(
    not {"cuda", "numba"} <= set(backends.available()),
    reason="needs the cuda backend (pip install numba-cuda; a GPU or NUMBA_ENABLE_CUDASIM=1) "
    "and numba: " + backends.unavailable().get("cuda", ""),
)


@pytest.fixture(autouse=True)
def small_blocks():
    """Blocks of 4 threads: several elements per thread and a 2-level reduction at d = 7."""
    cu = backends.get("cuda")
    cu.set_block(4)
    yield
    cu.set_block(0)


@pytest.fixture(scope="module")
def problem():
    return fastperm.LinearProblem.sample(d=7, n=3, seed=7)


KW = dict(steps=14, lr=[0.05, 0.08], seeds=[3, 2**64 - 1], record_every=4)


@pytest.mark.parametrize("augmentation", ["permutation", "resample"])
@pytest.mark.parametrize("k", [1, math.inf])
def test_deterministic_runs_match_numba(problem, k, augmentation):
    w0 = np.linspace(-1, 2, problem.d)  # non-constant: the k = ∞ centred part matters
    a = fastperm.train_many(problem, k, augmentation=augmentation, w0=w0, backend="numba", **KW)
    b = fastperm.train_many(problem, k, augmentation=augmentation, w0=w0, backend="cuda", **KW)
    assert b.backend == "cuda" and b.loss.shape == a.loss.shape
    assert _rel(b.loss, a.loss) < 1e-10
    assert _rel(b.w, a.w) < 1e-10


@pytest.mark.parametrize(
    "sampling,augmentation,cache_bytes",
    [
        ("fixed", "permutation", 2**20),
        ("fixed", "permutation", 0),
        ("fixed", "resample", 2**20),
        ("fresh", "permutation", 2**20),
        ("fresh", "resample", 0),
    ],
)
def test_kfold_same_permutations_same_curve(problem, sampling, augmentation, cache_bytes):
    kw = dict(KW, sampling=sampling, augmentation=augmentation, cache_bytes=cache_bytes)
    a = fastperm.train_many(problem, 3, backend="numba", **kw)
    b = fastperm.train_many(problem, 3, backend="cuda", **kw)
    assert a.meta["cache"] == b.meta["cache"] == (cache_bytes > 0 and sampling == "fixed")
    assert _rel(b.loss, a.loss) < 1e-10
    assert _rel(b.w, a.w) < 1e-10
    other = fastperm.train_many(problem, 3, backend="cuda", **dict(kw, seeds=[4, 5]))
    assert _rel(other.loss, a.loss) > 1e-6  # the seed matters: the check above can fail


@pytest.mark.parametrize("k, sampling", [(1, "fixed"), (3, "fixed"), (3, "fresh")])
def test_resumed_and_split_runs_equal_one_call(problem, k, sampling, monkeypatch):
    """start_step on the device: a resumed run, and a call split into parts (the Ctrl-C
    points), equal one call bitwise."""
    kw = dict(KW, sampling=sampling, backend="cuda")
    whole = fastperm.train_many(problem, k, **kw)
    first = fastperm.train_many(problem, k, **dict(kw, steps=5))
    rest = fastperm.resume(first, problem, 9, backend="cuda")
    np.testing.assert_array_equal(rest.w, whole.w)
    np.testing.assert_array_equal(rest.loss[:, 1:], whole.loss[:, -3:])
    monkeypatch.setattr(fastperm.knobs, "INTERRUPT_WORK", 50.0)
    monkeypatch.setattr(fastperm.knobs, "PART_MIN_EPOCHS", 8)
    parts = fastperm.train_many(problem, k, **kw)
    np.testing.assert_array_equal(parts.loss, whole.loss)
    np.testing.assert_array_equal(parts.w, whole.w)


@pytest.mark.parametrize("k", [1, 3, math.inf])
def test_kept_parameters(k):
    """record=: w kept at the recorded steps on the device (each thread its coordinates;
    one thread per run at k = ∞), and the losses computed from it, as on the CPU."""
    split = fastperm.LinearProblem.sample(d=7, n=3, seed=7, n_test=4)
    kw = dict(KW, record=["test", "w", "error"])
    a = fastperm.train_many(split, k, backend="numba", **kw)
    b = fastperm.train_many(split, k, backend="cuda", **kw)
    np.testing.assert_array_equal(b.records["w"][:, -1], b.w)
    for name in ("test", "w", "error"):
        assert _rel(b.records[name], a.records[name]) < 1e-10


def test_block_size_does_not_change_results(problem):
    cu = backends.get("cuda")
    runs = {}
    for nt in (1, 2, 8):
        cu.set_block(nt)
        runs[nt] = fastperm.train_many(problem, 2, backend="cuda", **KW)
    assert _rel(runs[1].loss, runs[8].loss) < 1e-12 and _rel(runs[2].w, runs[8].w) < 1e-12


@pytest.mark.parametrize("augmentation", ["permutation", "resample"])
def test_augmented_gradient_matches_numba(problem, augmentation):
    w = np.linspace(-1, 1, problem.d)
    a = fastperm.augmented_gradient(
        w, problem.X, problem.y, 4, seed=9, augmentation=augmentation, backend="numba"
    )
    b = fastperm.augmented_gradient(
        w, problem.X, problem.y, 4, seed=9, augmentation=augmentation, backend="cuda"
    )
    assert _rel(b, a) < 1e-12


def test_divergence_same_step_as_numba():
    small = fastperm.LinearProblem.sample(d=6, n=3, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastperm.DivergenceWarning)
        for k in (1, 2, math.inf):
            kw = dict(lr=[0.01, 50.0], steps=210 if math.isinf(k) else 110, record_every=50)
            a = fastperm.train_many(small, k, backend="numba", **kw)
            b = fastperm.train_many(small, k, backend="cuda", **kw)
            assert a.diverged_step[1] > 0 and b.diverged_step.tolist() == a.diverged_step.tolist()
            np.testing.assert_array_equal(np.isnan(b.loss), np.isnan(a.loss))


@pytest.mark.parametrize("d", [1, 2, 7, 64])
def test_device_generator_matches_spec(d):
    from fastperm.backends.numba_cuda import rng as dev

    for seed, stream, index, copy in [
        (0, 0, 0, 1),
        (2**64 - 1, 1, 2**32 - 1, 2**32 - 1),
        (7, 0, 123, 9),
    ]:
        want = spec.permutation(seed, stream, spec.counter(index, copy), d)
        np.testing.assert_array_equal(dev.permutation(seed, stream, index, copy, d), want)
        want = spec.resample_indices(seed, stream, spec.counter(index, copy), d)
        np.testing.assert_array_equal(dev.resample_indices(seed, stream, index, copy, d), want)


def test_device_bounded_rejection_path_matches_spec():
    from fastperm.backends.numba_cuda import rng as dev

    for r in (3 * 2**30, 5):  # 3·2^30 rejects 25% of draws
        want = spec.Draws(spec.key(11, 0, 42))
        expect = [want.bounded(r) for _ in range(100)]
        got, used = dev.bounded_draws(spec.key(11, 0, 42), r, 100)
        np.testing.assert_array_equal(got, expect)
        assert used == want.c
    assert used == 100


def test_device_arrays_in_and_out(problem):
    """The kernels take device arrays and leave device outputs on the device."""
    from numba import cuda

    cu = backends.get("cuda")
    rec = record_steps(10, 5)
    R = 2
    loss, w, status = (
        np.empty((R, rec.shape[0] - 1)),
        np.empty((R, problem.d)),
        np.empty(R, np.int64),
    )
    args = (
        problem.X,
        problem.y,
        problem.w_star,
        np.zeros((1, problem.d)),
        np.array([0.05, 0.1]),
        np.array([1, 2], dtype=np.uint64),
    )
    sampler = fastperm.augment.Permutation().sampler()
    w_rec = np.empty((R, rec.size - 1, problem.d))
    cu.sgd_runs(*args, 3, 10, 0, False, *sampler, rec, True, loss, w_rec, w, status)
    dargs = [cuda.to_device(a) for a in args]
    douts = [cuda.device_array_like(a) for a in (loss, w_rec, w, status)]
    cu.sgd_runs(*dargs, 3, 10, 0, False, *sampler, cuda.to_device(rec), True, *douts)
    np.testing.assert_array_equal(douts[0].copy_to_host(), loss)
    np.testing.assert_array_equal(douts[1].copy_to_host(), w_rec)
    np.testing.assert_array_equal(douts[2].copy_to_host(), w)
    np.testing.assert_array_equal(w_rec[:, -1], w)  # the last record is the final w
    assert (douts[3].copy_to_host() == -1).all()


BRACKET_MODELS = [
    models.MLP([5, 4, 3, 2], activation="tanh", loss="bce"),
    models.MLP([5, 4, 2], activation="relu", loss="mse"),
    models.MLP([5, 3, 2], activation="tanh", loss="mse", bias=False),
    models.LinearRegression(5),
    models.MultiLabelLogistic(5, 3),
]


@pytest.mark.parametrize("model", BRACKET_MODELS, ids=repr)
def test_brackets_match_numba(model):
    rs = np.random.default_rng(5)
    theta = model.init(2) + 0.3 * rs.standard_normal(model.P)
    X = rs.random((5, model.d))
    Y = (rs.random((5, model.K)) > 0.5).astype(float)
    G = model.grad(theta, X, Y)
    cu = backends.get("cuda")
    got = np.empty_like(G)
    cu.example_grads(model, theta, X, Y, got)
    assert _rel(got, G) < 1e-12
    h = lie.default_step(theta, G)  # one h for both: compare kernels
    a = lie.brackets(model, theta, X, Y, h=h, backend="numba")
    b = lie.brackets(model, theta, X, Y, h=h, backend="cuda")
    # finite-difference estimates with their own rounding agree to eps·|g|/h (test_cython)
    tol = 64 * np.finfo(float).eps * np.abs(G).max() / h.min()
    assert np.abs(b - a).max() < tol * max(1.0, np.abs(a).max())
    a = lie.brackets(model, theta, X, Y, h=100 * h, backend="numba")
    b = lie.brackets(model, theta, X, Y, h=100 * h, backend="cuda")
    assert np.abs(b - a).max() < 1e-12 * max(1.0, np.abs(a).max())
    assert not np.diagonal(b, axis1=0, axis2=1).any()
    pairs = [(0, 1), (3, 3), (4, 2)]
    pa = lie.brackets(model, theta, X, Y, pairs=pairs, h=h, backend="numba")
    pb = lie.brackets(model, theta, X, Y, pairs=pairs, h=h, backend="cuda")
    assert np.abs(pb - pa).max() < tol * max(1.0, np.abs(pa).max())
    assert not pb[1].any()


@pytest.mark.parametrize("model", BRACKET_MODELS[:3], ids=repr)
def test_fused_reductions_match_numba(model):
    """bracket_norms / bracket_logits on the device (chunks of pairs, 2 pairs per chunk here)
    against Numba's fused kernels, at a wide step where the two FD routes agree to 1e-12."""
    from fastperm import knobs

    rs = np.random.default_rng(6)
    theta = model.init(1) + 0.3 * rs.standard_normal(model.P)
    X = rs.random((4, model.d))
    Y = (rs.random((4, model.K)) > 0.5).astype(float)
    Z = rs.random((3, model.d))
    h = 100 * lie.default_step(theta, model.grad(theta, X, Y))
    old = knobs.CUDA_PAIR_CHUNK_BYTES
    knobs.CUDA_PAIR_CHUNK_BYTES = 2 * 16 * model.P
    try:
        a = lie.tensor_rms(model, theta, X, Y, h=h, backend="numba")
        b = lie.tensor_rms(model, theta, X, Y, h=h, backend="cuda")
        ja = lie.bracket_logits(model, theta, X, Y, Z, h=h, backend="numba")
        jb = lie.bracket_logits(model, theta, X, Y, Z, h=h, backend="cuda")
    finally:
        knobs.CUDA_PAIR_CHUNK_BYTES = old
    for k in model.tensors:
        np.testing.assert_allclose(b.rms_bracket[k], a.rms_bracket[k], rtol=1e-10)
    assert np.abs(jb - ja).max() < 1e-10 * np.abs(ja).max()


def test_exact_method_is_refused_on_the_device():
    model = BRACKET_MODELS[0]
    X, Y = np.ones((3, model.d)), np.ones((3, model.K))
    with pytest.raises(ValueError, match="runs on the CPU backends"):
        lie.tensor_rms(model, model.init(0), X, Y, backend="cuda", method="exact")


def test_brackets_fourth_order_and_exact_oracle():
    """Against the analytic brackets of least squares (H = x xᵀ), order 4."""
    model = models.LinearRegression(4)
    rs = np.random.default_rng(1)
    theta = rs.standard_normal(model.P)
    X, Y = rs.standard_normal((4, 4)), rs.standard_normal(4)
    exact = lie.exact_brackets(model, theta, X, Y)
    got = lie.brackets(model, theta, X, Y, order=4, backend="cuda")
    assert np.abs(got - exact).max() < 1e-8 * np.abs(exact).max()


def test_custom_model_and_wide_layers_refused():
    m = models.CustomModel(models.mlp_grad, P=3, d=2, K=1)
    with pytest.raises(TypeError, match="cuda backend computes .* for the built-in models only"):
        lie.brackets(m, np.zeros(3), np.ones((2, 2)), np.ones(2), backend="cuda")
    wide = models.MLP([2, 4000, 1])
    with pytest.raises(ValueError, match="too wide for the cuda backend"):
        lie.brackets(wide, np.zeros(wide.P), np.ones((2, 2)), np.ones(2), backend="cuda")


def test_block_setting_validated():
    cu = backends.get("cuda")
    for bad in (3, -1, 512):
        with pytest.raises(ValueError, match="block must be 0 .automatic. or a power of two"):
            cu.set_block(bad)
    with pytest.raises(TypeError, match="block must be an int"):
        cu.set_block(2.0)


def test_auto_never_picks_cuda():
    assert backends.get().name != "cuda"
    assert "cuda" in backends.available()


def test_info_reports_device():
    out = subprocess.run(
        [sys.executable, "-m", "fastperm.cli", "info"],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
    )
    assert out.returncode == 0, out.stderr
    assert "cuda:" in out.stdout
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        assert "simulator" in out.stdout


def test_without_gpu_the_error_says_what_is_missing():
    """No simulator and no driver: asking for the backend names the missing piece."""
    code = (
        "import fastperm\n"
        "try:\n"
        "    fastperm.train(fastperm.LinearProblem.sample(d=3, n=2), 1, backend='cuda')\n"
        "except fastperm.backends.BackendUnavailableError as e:\n"
        "    print('ERROR', e)\n"
        "else:\n"
        "    print('RAN')\n"
    )
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env
    )
    assert out.returncode == 0, out.stderr
    if out.stdout.startswith("RAN"):
        pytest.skip("a GPU is present here")
    assert "backend 'cuda' is not available here" in out.stdout
    assert "no usable GPU" in out.stdout and "NUMBA_ENABLE_CUDASIM=1" in out.stdout


@pytest.mark.parametrize("k", [1, 3])
def test_dual_form_matches_numba(problem, k):
    """The dual (Gram) form, one block per run: against the numba primal loop (and its own
    fixed copies against numba's), parameters kept at the records."""
    w0 = np.linspace(-1, 2, problem.d)
    kw = dict(KW, w0=w0, record=["error", "w"])
    a = fastperm.train_many(problem, k, backend="numba", algorithm="primal", **kw)
    b = fastperm.train_many(problem, k, backend="cuda", algorithm="dual", **kw)
    assert b.meta["algorithm"] == "dual" and b.backend == "cuda"
    assert _rel(b.loss, a.loss) < 1e-10
    assert _rel(b.records["w"], a.records["w"]) < 1e-10
    assert _rel(b.w, a.w) < 1e-10


def test_dual_kernel_with_resyncs_against_the_reference(problem):
    """The dual kernel called directly, resynchronised every 3 steps from a start step that is
    not a multiple of 3, N = 9 copies and d = 7 over blocks of 4 threads, w kept: against the
    NumPy reference's dual kernel."""
    from fastperm import augment, dual
    from fastperm._runs import record_steps, run_outputs

    cu, ref = backends.get("cuda"), backends.get("numpy")
    k, T, R = 3, 40, 2
    rec = record_steps(T, 5)
    seeds = np.array([3, 4], dtype=np.uint64)
    sampler = augment.as_augmentation("permutation").sampler()
    copies, gram, which, _ = dual.setup(ref, problem.X, k, seeds, sampler, 1)
    W0 = np.stack([np.linspace(-1, 2, problem.d), np.linspace(1, 0, problem.d)])
    lr = np.array([0.05, 0.08])
    outs = []
    for kern in (ref, cu):
        out = run_outputs(R, rec.size - 1, problem.d, keep_w=True)
        kern.dual_runs(problem.y, problem.target, W0, lr, copies, gram, which, k, T, 5, 3,
                       1e-3, 1e100, rec, *out.values())  # fmt: skip
        outs.append(out)
    for name in ("loss_out", "w_rec", "w_out"):
        assert _rel(outs[1][name], outs[0][name]) < 1e-12, name
    np.testing.assert_array_equal(outs[1]["status_out"], [-1, -1])


@pytest.mark.parametrize("nt", [1, 4, 32])
def test_balance_runs_match_the_reference(nt):
    """The equilibrium kernel (one block per run): SGD with B = 3 and 1 and GD, a
    non-diagonal Σ, d0 ≠ d2, blocks of 1, 4 and 32 threads: within 1e-12 of the reference;
    a diverging run stops at the same step."""
    from fastperm import equilibrium as eq

    backends.get("cuda").set_block(nt)
    gen = np.random.default_rng(0)
    L = np.tril(gen.standard_normal((5, 5))) * 0.3 + np.eye(5)
    T = eq.Teacher(gen.standard_normal((3, 5)) / 2, L, 0.7)
    th = np.stack([eq.init(T, 4, u_scale=0.5, w_scale=1.5, seed=s) for s in range(4)])
    kw = dict(lr=[0.01, 0.02, 0.03, 40.0], batch=[3, 0, 1, 2], seeds=[5, 6, 7, 8], steps=12,
              record_every=5, keep_theta=True, track=[[0, 1], [3, 2]])  # fmt: skip
    with pytest.warns(RuntimeWarning, match="diverged"):
        ref = eq.train(T, th, backend="numpy", **kw)
    with pytest.warns(RuntimeWarning, match="diverged"):
        got = eq.train(T, th, backend="cuda", **kw)
    assert np.array_equal(got.diverged_step, ref.diverged_step) and ref.diverged_step[3] >= 0
    for name in ("loss", "charge", "entries", "u2", "w2", "theta", "theta_path"):
        a, b = getattr(got, name), getattr(ref, name)
        assert np.array_equal(np.isnan(a), np.isnan(b)), name
        ok = ~np.isnan(b)
        assert np.max(np.abs(a[ok] - b[ok]) / (1 + np.abs(b[ok]))) < 1e-12, name


def _meanfield(kern, Theta0, scheme, k, lr, seeds, keep=True, every=4, **kw):
    """``meanfield_runs`` of one backend on a small C₂ problem; returns its outputs."""
    from fastperm._runs import record_steps

    gen = np.random.default_rng(1)
    teacher = gen.standard_normal((3, 4))
    Xeval = gen.standard_normal((3, 2))
    Yeval = np.tanh(Xeval @ teacher.reshape(-1, 2, 2).transpose(0, 2, 1)).mean(axis=0)
    cfg = dict(s=1.3, sigma=0.2, batch=2, lam=0.01, temp=0.0, steps=9, start_step=4)
    cfg.update(kw)
    rec = record_steps(cfg["steps"], every)
    R, m, P = len(lr), rec.size - 1, Theta0.shape[1]
    out = dict(
        loss_out=np.empty((R, m)),
        offset_out=np.empty((R, m)),
        moment_out=np.empty((R, m)),
        theta_rec=np.empty((R, m if keep else 0, P)),
        theta_out=np.empty((R, P)),
        status_out=np.empty(R, dtype=np.int64),
    )
    kern.meanfield_runs(
        teacher, cfg["s"], cfg["sigma"], Xeval, Yeval, Theta0,
        np.asarray(scheme, dtype=np.int64), np.asarray(k, dtype=np.int64),
        np.asarray(lr, dtype=float), np.asarray(seeds, dtype=np.uint64), cfg["batch"],
        cfg["lam"], cfg["temp"], cfg["steps"], cfg["start_step"], rec, *out.values(),
    )  # fmt: skip
    return out


@pytest.mark.parametrize("nt, temp", [(1, 0.05), (4, 0.0), (8, 0.05)])
def test_meanfield_runs_match_the_reference(nt, temp):
    """The mean-field kernel (one block per run, the threads over N = 7 particles): vanilla,
    DA k-fold (k = 3 and 1) and exact (k = 0), FA, EA, one run diverging (lr = 1e300), blocks of
    1, 4 and 8 threads (8 > N: idle threads in the reductions; 32 took 45 s on the simulator),
    with and without Langevin noise: within 1e-12 of the reference, the diverging run stopped
    at the same step with NaN records after."""
    from fastperm import codes

    backends.get("cuda").set_block(nt)
    gen = np.random.default_rng(2)
    Theta0 = gen.standard_normal((2, 4 * 7))
    scheme = [codes.VANILLA, codes.DA, codes.DA, codes.DA, codes.FA, codes.EA, codes.DA]
    k = [0, 3, 1, 0, 0, 0, 2]
    lr = [0.3, 0.4, 0.2, 0.5, 0.3, 0.4, 1e300]
    seeds = [3, 2**64 - 1, 5, 6, 7, 8, 9]
    ref = _meanfield(backends.get("numpy"), Theta0, scheme, k, lr, seeds, temp=temp)
    got = _meanfield(backends.get("cuda"), Theta0, scheme, k, lr, seeds, temp=temp)
    np.testing.assert_array_equal(got["status_out"], ref["status_out"])
    assert (ref["status_out"][:-1] == -1).all() and ref["status_out"][-1] >= 0
    q = np.isfinite(ref["loss_out"][-1]).sum()  # the diverged run's records
    assert 0 < q < ref["loss_out"].shape[1]
    for name in ("loss_out", "offset_out", "moment_out", "theta_rec", "theta_out"):
        a, b = got[name], ref[name]
        if name == "theta_rec":  # rows past a diverged run's last record are never written
            a, b = a[:, :q], b[:, :q]
        ok = np.isfinite(b)  # (the diverged run's θ: ±inf in both)
        assert np.array_equal(a[~ok], b[~ok], equal_nan=True), name
        assert np.max(np.abs(a[ok] - b[ok]) / (1 + np.abs(b[ok]))) < 1e-12, name
    ea = got["offset_out"][5]  # EA's steps (noise too) lie in E^G: the offset never moves
    assert np.ptp(ea) < 1e-12 * ea[0] and np.ptp(got["offset_out"][0]) > 1e-6


def test_meanfield_runs_block_size_and_batch_one():
    """Batch 1, a start step near the counter's top (2³² − 20), every step recorded,
    parameters not kept, a run diverging at a record (θ ~ 1e299 at step 1: its second moment
    overflows): 2 and 8 threads per block each match the reference to 1e-12 (their sums
    are ordered differently), and a second call with 8 is bitwise the first."""
    from fastperm import codes

    Theta0 = np.random.default_rng(3).standard_normal((1, 4 * 5))
    args = (Theta0, [codes.DA, codes.FA, codes.EA], [2, 0, 0], [0.3, 0.2, 1e300], [1, 2, 3])
    kw = dict(batch=1, temp=0.01, start_step=2**32 - 20, keep=False, every=1)
    cu = backends.get("cuda")
    runs = []
    for nt in (2, 8, 8):
        cu.set_block(nt)
        runs.append(_meanfield(cu, *args, **kw))
    ref = _meanfield(backends.get("numpy"), *args, **kw)
    assert ref["status_out"].tolist() == [-1, -1, 1]
    for name, a in runs[2].items():
        np.testing.assert_array_equal(a, runs[1][name])
    for got in runs[:2]:
        np.testing.assert_array_equal(got["status_out"], ref["status_out"])
        for name in ("loss_out", "offset_out", "moment_out", "theta_out"):
            a, b = got[name], ref[name]
            ok = np.isfinite(b)
            assert np.array_equal(a[~ok], b[~ok], equal_nan=True), name
            assert np.max(np.abs(a[ok] - b[ok]) / (1 + np.abs(b[ok]))) < 1e-12, name
    assert np.isnan(ref["loss_out"][2, 1:]).all() and np.isfinite(ref["loss_out"][2, 0])
    assert np.abs(ref["theta_out"][2]).max() > 1e290
