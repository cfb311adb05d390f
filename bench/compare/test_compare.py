"""pytest-benchmark comparison groups: one workload per group, every contender on it.

Not part of the ordinary test run (``pytest`` collects ``tests/`` only). Run:

    pytest bench/compare --benchmark-only --benchmark-json=bench/compare/results.json
    python bench/compare/ratio_table.py bench/compare/results.json

Each group is one workload — a method (k = 1, k = 16 fixed/fresh, k = ∞) at
d = 400, n = 40, T = 2000 steps, loss recorded every step — run by fastperm's
backends, a plain NumPy loop, and JAX / PyTorch when installed. Every
contender is called once before timing (JIT compilation, caches) and once more
as a warm-up round.
"""

import math

import numpy as np
import peers
import pytest

import fastperm

D, N, T = 400, 40, 2000
LR = 0.4 / D
PROBLEM = fastperm.LinearProblem.sample(d=D, n=N, seed=0)
METHODS = {
    "k=1": (1, "fixed"),
    "k=16 fixed": (16, "fixed"),
    "k=16 fresh": (16, "fresh"),
    "k=inf": (math.inf, "fixed"),
}
CONTENDERS = [f"fastperm-{b}" for b in fastperm.backends.KNOWN] + [
    "fastperm-dual",  # the Gram form (issue 18); the others run the literal loop
    "numpy",
    "jax",
    "torch",
]


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("contender", CONTENDERS)
def test_train(benchmark, contender, method):
    k, sampling = METHODS[method]
    if contender == "fastperm-numpy" and k == 16:
        pytest.skip("the reference backend draws permutations in pure Python (~3 ms/step)")
    try:
        run = peers.runner(contender, PROBLEM, k, LR, T, sampling)
    except ImportError as exc:
        pytest.skip(str(exc))
    run()  # compile / warm caches outside the timing
    benchmark.group = f"{method}, d={D}, n={N}, T={T}"
    benchmark.extra_info.update(contender=contender, method=method, count=T, unit="step", d=D, n=N)
    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)


# -- Lie brackets -----------------------------------------------------------------------------

BRACKET_CONTENDERS = [f"fastperm-{b}" for b in fastperm.backends.KNOWN] + [
    "jax",
    "torch.func",
    "fastperm TorchModel",
]


def _digits():
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        pytest.skip("the bracket comparison uses scikit-learn's digits")
    data = load_digits()
    return data.data[:32] / 16.0, np.eye(10)[data.target[:32]]


@pytest.mark.parametrize("sizes", ["64-32-10", "64-256-10"])
@pytest.mark.parametrize("contender", BRACKET_CONTENDERS)
def test_brackets(benchmark, contender, sizes):
    """All 496 brackets among 32 digits (float64); fastperm's are checked to 1e-8 per pair."""
    import bracket_peers

    from fastperm import lie, models

    X, Y = _digits()
    model = models.MLP([int(s) for s in sizes.split("-")])
    theta = model.init(0)
    if contender.startswith("fastperm-"):
        backend = contender.split("-", 1)[1]
        try:
            peers._require_timed(backend)
        except ImportError as exc:
            pytest.skip(str(exc))
        out = np.empty((32, 32, model.P))

        def run():
            return lie.brackets(model, theta, X, Y, backend=backend, out=out)
    else:
        make = {
            "torch.func": bracket_peers.torch_func_runner,
            "jax": bracket_peers.jax_runner,
            "fastperm TorchModel": bracket_peers.torch_model_runner,
        }
        try:
            run = make[contender](model, theta, X, Y)
        except ImportError as exc:
            pytest.skip(str(exc))
    benchmark.group = f"brackets, MLP {sizes}, B=32 (496 pairs)"
    benchmark.extra_info.update(contender=contender, count=496, unit="bracket")
    got = np.array(benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1))
    # checked after timing: the NumPy oracle's BLAS calls leave OpenBLAS threads spinning,
    # which slows a parallel kernel timed right after (bench/compare/blas_spin.py)
    exact = lie.exact_brackets(model, theta, X, Y)
    iu = np.triu_indices(32, 1)
    rel = np.linalg.norm(got[iu] - exact[iu], axis=1) / np.linalg.norm(exact[iu], axis=1)
    benchmark.extra_info.update(max_rel_error=float(rel.max()))
    assert rel.max() < 1e-8


RMS_CONTENDERS = [
    "fastperm-numba exact",
    "fastperm-cython exact",
    "fastperm-numba fd",
    "fastperm-cython fd",
    "fastperm-numba full array",
    "fastperm-cython full array",
    "torch.func",
]


@pytest.mark.parametrize("contender", RMS_CONTENDERS)
def test_bracket_rms(benchmark, contender):
    """The RMS of each of the 496 brackets over each tensor (MLP 64-32-10, 32 digits,
    float64): fused kernels (exact products or FD) against the full (496, P) array and
    torch.func by hand; every result checked against the exact brackets' RMS to 1e-7."""
    import bracket_peers

    from fastperm import lie, models

    X, Y = _digits()
    model = models.MLP([64, 32, 10])
    theta = model.init(0)
    if contender.startswith("fastperm-"):
        backend, how = contender.split("-", 1)[1].split(" ", 1)
        try:
            peers._require_timed(backend)
        except ImportError as exc:
            pytest.skip(str(exc))
        kw = {"exact": dict(method="exact"), "fd": {}, "full array": dict(fused=False)}[how]

        def run():
            r = lie.tensor_rms(model, theta, X, Y, backend=backend, **kw)
            return np.stack([r.rms_bracket[k][0] for k in model.tensors], axis=1)
    else:
        try:
            run = bracket_peers.torch_func_rms_runner(model, theta, X, Y)
        except ImportError as exc:
            pytest.skip(str(exc))
    benchmark.group = "per-tensor RMS of brackets, MLP 64-32-10, B=32 (496 pairs)"
    benchmark.extra_info.update(contender=contender, count=496, unit="bracket")
    got = np.array(benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1))
    exact = lie.exact_brackets(model, theta, X, Y)
    iu = np.triu_indices(32, 1)
    want = np.stack(
        [np.sqrt(np.mean(exact[iu][:, sl] ** 2, axis=1)) for sl, _ in model.tensors.values()], 1
    )
    rel = np.abs(got - want).max() / want.max()
    benchmark.extra_info.update(max_rel_error=float(rel))
    assert rel < 1e-7


# -- many independent runs in one call ----------------------------------------------------------

RUNS = 1000


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("backend", ["numba", "cython", "cuda"])
def test_batched_runs(benchmark, backend, method):
    """R = 1000 runs of 1000 steps (d = 400, loss every 100 steps) in one train_many call;
    CPU backends on all cores. The GPU's time includes the copies back (they synchronise)."""
    try:
        peers._require_timed(backend)
    except ImportError as exc:
        pytest.skip(str(exc))
    k, sampling = METHODS[method]
    kw = dict(
        seeds=np.arange(RUNS, dtype=np.uint64),
        lr=LR,
        steps=1000,
        sampling=sampling,
        record_every=100,
        backend=backend,
        algorithm="primal",  # the same loop on every backend (the GPU has no dual form)
    )
    fastperm.train_many(PROBLEM, k, **dict(kw, steps=2))  # compile outside the timing

    def run():
        return fastperm.train_many(PROBLEM, k, **kw)

    benchmark.group = f"{RUNS} runs, {method}, d={D}, n={N}, 1000 steps"
    benchmark.extra_info.update(
        contender=f"fastperm-{backend}", method=method, count=RUNS, unit="run", d=D, n=N
    )
    result = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    assert result.loss.shape == (RUNS, 11) and (result.diverged_step == -1).all()


# -- the noise equilibrium's SGD steps (issue 19) -----------------------------------------------


def _equilibrium_bench():
    """bench/equilibrium.py's loops (NumPy, PyTorch) and fastperm runner, by file path."""
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).parents[1] / "equilibrium.py"
    spec = importlib.util.spec_from_file_location("fastperm_bench_equilibrium", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EQ_CONTENDERS = ["fastperm-numba", "fastperm-cython", "numpy", "torch"]


@pytest.mark.parametrize("contender", EQ_CONTENDERS)
def test_equilibrium_sgd(benchmark, contender):
    """2000 SGD steps of U W x in the paper's setting (d0 = d2 = 30, h = 40, B = 10), one run,
    one thread; fastperm draws the specification's samples, the loops their library's."""
    bench = _equilibrium_bench()
    steps, d, h = 2000, 30, 40
    if contender.startswith("fastperm-"):
        backend = contender.split("-", 1)[1]
        if backend not in fastperm.backends.available():
            pytest.skip(f"backend {backend} is not available here")

        def run():
            bench.fastperm_run(backend, steps, d, h)

    elif contender == "numpy":

        def run():
            bench.numpy_loop(steps, d, h)

    else:
        pytest.importorskip("torch")

        def run():
            bench.torch_loop(steps, d, h)

    run()  # compile / warm caches outside the timing
    benchmark.group = f"equilibrium SGD, d={d}, h={h}, B=10, T={steps}"
    benchmark.extra_info.update(contender=contender, count=steps, unit="step")
    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)


# -- mean-field SGD of N tanh particles (issue 20) ------------------------------------------------


def _meanfield_bench():
    """bench/meanfield.py's loops (NumPy, PyTorch) and fastperm runner, by file path."""
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).parents[1] / "meanfield.py"
    spec = importlib.util.spec_from_file_location("fastperm_bench_meanfield", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("contender", EQ_CONTENDERS)
def test_meanfield_sgd(benchmark, contender):
    """200 online SGD steps of N = 2000 tanh particles, vanilla, one run, one thread;
    fastperm draws the specification's samples, the loops their library's."""
    bench = _meanfield_bench()
    steps, N = 200, 2000
    if contender.startswith("fastperm-"):
        backend = contender.split("-", 1)[1]
        if backend not in fastperm.backends.available():
            pytest.skip(f"backend {backend} is not available here")
        run = bench.fastperm_run(backend, steps, N, "vanilla")  # (compiles outside the timing)
    elif contender == "numpy":
        run = bench.numpy_loop(steps, N, "vanilla")
    else:
        pytest.importorskip("torch")
        run = bench.torch_loop(steps, N, "vanilla")
    run()  # warm caches outside the timing
    benchmark.group = f"mean-field SGD, N={N}, vanilla, T={steps}"
    benchmark.extra_info.update(contender=contender, count=steps * N, unit="particle-step")
    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
