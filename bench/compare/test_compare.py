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

import pytest

import fastperm
import peers

D, N, T = 400, 40, 2000
LR = 0.4 / D
PROBLEM = fastperm.LinearProblem.sample(d=D, n=N, seed=0)
METHODS = {"k=1": (1, "fixed"), "k=16 fixed": (16, "fixed"), "k=16 fresh": (16, "fresh"),
           "k=inf": (math.inf, "fixed")}
CONTENDERS = [f"fastperm-{b}" for b in fastperm.backends.KNOWN] + ["numpy", "jax", "torch"]


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
    benchmark.extra_info.update(contender=contender, method=method, steps=T, d=D, n=N)
    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
