"""Measuring what each training method costs: ns per step and the cost ratios.

Used by ``fastperm bench``, the asv suite (``bench/benchmarks.py``) and the
peer comparison script, so that all of them measure the same thing:

* the wall time of the compiled call (``TrainResult.seconds``: compilation and
  validation excluded), divided by the number of steps;
* the best of ``repeat`` runs, the methods interleaved round-robin so that the
  machine's drift affects them alike (these machines are small and noisy).

The reference workload is the post's: d = 400, n = 40, loss recorded every
step, T = 20000 steps, one run (one thread).

Plain and fixed k-fold runs are timed in the primal form by default
(``algorithm="primal"``): the literal loop, in which k copies cost k times as much (the
post's model of computation). ``algorithm="dual"`` (or ``"auto"``) times the Gram form of
:mod:`fastperm.dual` instead; k = ∞ and fresh copies have one form.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from . import dual
from ._typing import FloatArray, Sampling
from .problems import LinearProblem
from .train import train, train_many

if TYPE_CHECKING:
    from .augment import Augmentation
    from .models import MLP

#: label → (k, sampling) of the methods whose cost is tracked
METHODS: dict[str, tuple[float, Sampling]] = {
    "k=1": (1, "fixed"),
    "k=16 fixed": (16, "fixed"),
    "k=16 fresh": (16, "fresh"),
    "k=inf": (math.inf, "fixed"),
}

#: label → (numerator, denominator): the tracked cost ratios
RATIOS = {
    "k=16 fixed / k=inf": ("k=16 fixed", "k=inf"),
    "k=16 fresh / k=inf": ("k=16 fresh", "k=inf"),
    "k=inf / k=1": ("k=inf", "k=1"),
}


def stable_lr(d: int) -> float:
    """Step size 0.4/d: ``lr·E‖x‖² = 0.4`` for x ~ N(0, I_d), stable at any d (1e-3 at d = 400)."""
    return 0.4 / d


def ns_per_step(
    problem: LinearProblem,
    method: str,
    *,
    steps: int,
    backend: str | None = None,
    repeat: int = 3,
    lr: float | None = None,
    algorithm: str = "primal",
) -> float:
    """Best-of-``repeat`` wall time per step of one run of ``method`` (a key of :data:`METHODS`)."""
    return measure(
        problem, [method], steps=steps, backend=backend, repeat=repeat, lr=lr, algorithm=algorithm
    )[method]


def measure(
    problem: LinearProblem,
    methods: Iterable[str],
    *,
    steps: int,
    backend: str | None = None,
    repeat: int = 3,
    lr: float | None = None,
    algorithm: str = "primal",
) -> dict[str, float]:
    """ns/step of each method, best of ``repeat``, the methods interleaved round-robin
    (plain and fixed k-fold runs in ``algorithm``'s form: module docstring)."""
    lr = stable_lr(problem.d) if lr is None else lr
    kw: dict[str, Any] = {"lr": lr, "backend": backend}
    for m in methods:  # compile (or load the cache) and touch the data
        k, sampling = METHODS[m]
        how = dual.form(algorithm, k, sampling)
        train(problem, k, steps=min(steps, 2), sampling=sampling, algorithm=how, **kw)
    best = {m: math.inf for m in methods}
    for _ in range(repeat):
        for m in methods:
            k, sampling = METHODS[m]
            how = dual.form(algorithm, k, sampling)
            r = train(problem, k, steps=steps, sampling=sampling, algorithm=how, **kw)
            best[m] = min(best[m], r.seconds * 1e9 / max(steps, 1))
    return best


def ratios(ns: dict[str, float]) -> dict[str, float]:
    """The tracked cost ratios from a dict of ns/step by method."""
    return {name: ns[a] / ns[b] for name, (a, b) in RATIOS.items() if a in ns and b in ns}


def calibrated_steps(
    problem: LinearProblem,
    method: str,
    *,
    backend: str | None = None,
    seconds: float = 0.1,
    most: int = 20000,
    least: int = 5,
    algorithm: str = "primal",
) -> int:
    """Steps that make one run of ``method`` last about ``seconds`` (at most ``most``)."""
    k, sampling = METHODS[method]
    kw: dict[str, Any] = {
        "lr": stable_lr(problem.d),
        "backend": backend,
        "algorithm": dual.form(algorithm, k, sampling),
    }
    train(problem, k, steps=2, sampling=sampling, **kw)
    steps = least
    while True:
        t0 = time.perf_counter()
        train(problem, k, steps=steps, sampling=sampling, **kw)
        took = time.perf_counter() - t0
        if took >= seconds / 4 or steps >= most:
            break
        steps *= 4
    return int(min(most, max(least, steps * seconds / max(took, 1e-9))))


def quick_table(
    backends: Iterable[str] | None = None,
    *,
    d: int = 400,
    n: int = 40,
    steps: int = 20000,
    seconds_per_run: float = 0.5,
    repeat: int = 3,
    progress: bool = True,
) -> list[tuple[str, str, int, float]]:
    """Rows ``(backend, method, steps, ns/step)`` for every method and available backend.

    Compiled backends run the reference workload (T = ``steps``); slower ones
    (the NumPy reference) run as many steps as fit in ``seconds_per_run``.
    """
    from . import backends as registry

    names = registry.available() if backends is None else list(backends)
    problem = LinearProblem.sample(d=d, n=n, seed=0)
    jobs = [(b, m) for b in names for m in METHODS]
    rows = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), unit="method", desc="fastperm bench", leave=False)
    for b, m in jobs:
        t = calibrated_steps(problem, m, backend=b, seconds=seconds_per_run, most=steps)
        rows.append((b, m, t, ns_per_step(problem, m, steps=t, backend=b, repeat=repeat)))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return rows


#: MLP sizes whose bracket throughput is tracked (the Lie-bracket issue's models)
BRACKET_MLPS = ("64-32-10", "64-256-10")


def runs_per_second(
    method: str,
    runs: int,
    *,
    backend: str | None = None,
    d: int = 400,
    n: int = 40,
    steps: int = 1000,
    record_every: int = 100,
    repeat: int = 1,
    seed: int = 0,
    algorithm: str = "primal",
) -> float:
    """Independent training runs per second: ``runs`` runs of ``steps`` steps in one
    :func:`fastperm.train_many` call (seeds 0 … runs − 1), best of ``repeat`` calls.

    The time is ``TrainResult.seconds``: the compiled call(s) including, on the GPU,
    the copies to and from the device (which synchronise), compilation excluded.
    """
    k, sampling = METHODS[method]
    problem = LinearProblem.sample(d=d, n=n, seed=seed)
    kw: dict[str, Any] = dict(
        seeds=np.arange(runs, dtype=np.uint64),
        lr=stable_lr(d),
        steps=steps,
        sampling=sampling,
        record_every=record_every,
        backend=backend,
        algorithm=dual.form(algorithm, k, sampling),
    )
    train_many(problem, k, **dict(kw, seeds=np.arange(min(runs, 2), dtype=np.uint64), steps=2))
    best = math.inf
    for _ in range(repeat):
        best = min(best, train_many(problem, k, **kw).seconds)
    return runs / best


def bracket_workload(
    sizes: str, *, B: int = 32, seed: int = 0
) -> tuple[MLP, FloatArray, FloatArray, FloatArray]:
    """``(model, θ, X, Y)``: an MLP ``"d-H-K"`` at its initialisation and B inputs in [0, 1] with
    one-hot targets (the digits setting, without needing scikit-learn)."""
    from . import models

    model = models.MLP([int(v) for v in sizes.split("-")])
    rs = np.random.default_rng(seed)
    X = rs.random((B, model.d))
    Y = np.eye(model.K)[rs.integers(0, model.K, B)]
    return model, model.init(seed), X, Y


def brackets_per_second(
    sizes: str, *, backend: str | None = None, B: int = 32, repeat: int = 3, seed: int = 0
) -> float:
    """All B(B − 1)/2 brackets of :func:`bracket_workload`, best of ``repeat`` calls with the
    output buffer reused; brackets per second."""
    from . import lie

    model, theta, X, Y = bracket_workload(sizes, B=B, seed=seed)
    out = np.empty((B, B, model.P))
    lie.brackets(model, theta, X, Y, backend=backend, out=out)
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        lie.brackets(model, theta, X, Y, backend=backend, out=out)
        best = min(best, time.perf_counter() - t0)
    return B * (B - 1) / 2 / best


def closed_form_costs(
    augmentation: str | Augmentation | tuple[str, Sequence[int], float],
    *,
    d: int = 400,
    n: int = 40,
    steps: int = 2000,
    k: int = 16,
    repeat: int = 3,
    backend: str | None = None,
) -> dict[str, float]:
    """ns/step of a k = ∞ run (the closed form) and of a k-fold run (fixed copies) with the
    same augmentation on the reference problem, interleaved, best of ``repeat``.

    ``augmentation`` is a name, an :mod:`fastperm.augment` object, or ``("deep", sizes,
    sigma)`` for a deep linear network with input noise (:mod:`fastperm.deep_linear`).
    """
    problem = LinearProblem.sample(d=d, n=n, seed=0)
    lr = stable_lr(d)
    if isinstance(augmentation, tuple) and augmentation[0] == "deep":
        from . import deep_linear

        net = deep_linear.DeepLinear(augmentation[1])
        sigma = augmentation[2]

        def run(kk: float) -> float:
            r = deep_linear.train(
                problem,
                net,
                kk,
                sigma=sigma,
                lr=lr / 4,
                steps=steps,
                record_every=steps,
                backend=backend,
            )
            return r.seconds
    else:

        def run(kk: float) -> float:
            return train(
                problem,
                kk,
                lr=lr,
                steps=steps,
                augmentation=augmentation,  # type: ignore[arg-type]  # other tuples: refused
                record_every=steps,
                backend=backend,
            ).seconds

    best = {"k=inf": math.inf, f"k={k}": math.inf}
    run(math.inf), run(k)  # compile
    for _ in range(repeat):
        best["k=inf"] = min(best["k=inf"], run(math.inf))
        best[f"k={k}"] = min(best[f"k={k}"], run(k))
    return {m: sec * 1e9 / steps for m, sec in best.items()}
