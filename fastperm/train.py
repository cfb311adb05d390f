"""Training runs: validation, backend dispatch and the result object.

Each step t visits example ``i = t mod n`` (in order, epoching) and updates

    w ← w − lr · ĝ,

where ĝ is

* ``k = 1``: the plain gradient ``(wᵀx_i − y_i) x_i`` (standard SGD);
* integer ``k ≥ 2``: the mean gradient over x_i and k − 1 augmented copies
  (:func:`fastperm.augmented_gradient`), drawn once per example and reused
  every epoch (``sampling="fixed"``), or drawn anew each step (``"fresh"``);
* ``k = math.inf``: the exact expected gradient over the augmentation
  (:func:`fastperm.expected_gradient`). Its runs cost O(T + d), not O(T·d),
  on the compiled backends.

The recorded loss is ``mean((w − w*)²)``. With ``w* = c·1`` and fixed copies,
SGD can only move w inside the span of the n·k augmented examples, so the
loss from ``w0 = 0`` plateaus near ``1 − min(nk, d)/d`` (the post's Figure 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from . import _checks, _runs, augment, knobs, results
from ._runs import DivergenceWarning, record_steps  # noqa: F401  (public names)
from ._typing import FloatArray, IntArray, Sampling, UIntArray
from .problems import LinearProblem, as_problem, as_problems
from .results import TrainResult

#: default bound on the memory the fixed-copy cache may use (bytes): :data:`knobs.CACHE_BYTES`
DEFAULT_CACHE_BYTES = knobs.CACHE_BYTES


def _work(k: float, d: int, n: int, steps: int, fresh: bool, family: str) -> float:
    """Element operations of one run (the harness's estimate for choosing threads)."""
    if family == "expected_runs":
        return 10.0 * steps + n * d
    if family == "sgd_runs":
        return steps * d * (2.0 if k == 1 else k * (2.0 + (6.0 if fresh else 0.0)))
    if family == "dense_runs":
        return 2.0 * steps * d * d
    return 3.0 * steps * d


def _run(
    problem: LinearProblem,
    k: float,
    lr: FloatArray,
    seeds: UIntArray,
    steps: int,
    sampling: str,
    augmentation: str | augment.Augmentation,
    W0: FloatArray,
    record_every: int,
    backend: str | None,
    cache_bytes: int,
    progress: bool | str,
    threads: int | None,
    warn: bool = True,
) -> tuple[IntArray, FloatArray, FloatArray, IntArray, float, str, dict[str, Any]]:
    aug = augment.as_augmentation(augmentation)
    aug.check_d(problem.d)  # for every k: the kernels trust the indices it carries
    if k == 1:
        aug = augment.Permutation()  # plain SGD draws no copies, whatever the augmentation
    rec = _runs.record_steps(steps, record_every)
    R = lr.shape[0]
    n, d = problem.X.shape
    fresh = sampling == "fresh"
    values: dict[str, Any] = {  # the kernel's arguments by name (contract.FAMILIES)
        "X": problem.X,
        "y": problem.y,
        "w_star": problem.w_star,
        "W0": W0,
        "lr": lr,
        "steps": steps,
        "record_steps": rec,
        **_runs.run_outputs(R, rec.shape[0] - 1, d),
    }
    if math.isinf(k):
        _checks.moments_fit(X=problem.X, w0=W0, w_star=problem.w_star)
        family, plan = aug.closed_form(problem.X)
        values.update(plan)
        call = _runs.Call(family, values, R, R * _work(k, d, n, steps, fresh, family))
    else:
        kind, fparams, gidx, gptr = aug.sampler()  # says so before any work if there is none
        values.update(
            seeds=seeds, k=int(k), fresh=fresh, kind=kind, fparams=fparams, gidx=gidx, gptr=gptr
        )
        _checks.copies_fit(k, d)
        # keep the fixed copies only if some example is visited twice (within the budget)
        keep = not fresh and k > 1 and steps > n
        call = _runs.Call(
            "sgd_runs",
            values,
            R,
            R * _work(k, d, n, steps, fresh, "sgd_runs"),
            kind=kind,
            cache_bytes_per_holder=n * int(k) * d * 8 if keep else 0,
            cache_bytes=cache_bytes,
        )
    call.seeds = seeds
    done = _runs.run(call, backend=backend, threads=threads, progress=progress, warn=warn)
    loss, w, status = values["loss_out"], values["w_out"], values["status_out"]
    meta = {
        "problem": problem.describe(),
        "steps": steps,
        "record_every": record_every,
        "w0": W0,
        **done.metadata(call.family),
        **results.environment(),
    }
    return rec[:-1], loss, w, status, done.seconds, done.backend, meta


def _as_augmentation_arg(augmentation: object) -> str | augment.Augmentation:
    """A name of the core engine stays a name; a distribution object stays itself."""
    if isinstance(augmentation, augment.Augmentation):
        return augmentation.engine_name or augmentation
    return _checks.as_choice("augmentation", augmentation, _checks.AUGMENTATIONS)


def _common(
    k: object,
    steps: object,
    sampling: object,
    augmentation: object,
    record_every: object,
    cache_bytes: object,
    threads: object,
) -> tuple[float, int, Sampling, str | augment.Augmentation, int, int, int | None]:
    k = _checks.as_k(k)
    steps = _checks.as_int("steps", steps, minimum=0, maximum=2**32 - 2)
    sampling = _checks.as_choice("sampling", sampling, _checks.SAMPLINGS)
    augmentation = _as_augmentation_arg(augmentation)
    record_every = _checks.as_int("record_every", record_every, minimum=1)
    cache_bytes = _runs.as_cache_bytes(cache_bytes)
    threads = _runs.as_threads(threads)
    return k, steps, sampling, augmentation, record_every, cache_bytes, threads


def train(
    problem: LinearProblem,
    k: float,
    *,
    lr: float = 1e-3,
    steps: int = 1000,
    sampling: Sampling = "fixed",
    augmentation: str | augment.Augmentation = "permutation",
    w0: npt.ArrayLike | None = None,
    seed: int = 0,
    record_every: int = 1,
    backend: str | None = None,
    cache_bytes: int | None = None,
    threads: int | None = None,
) -> TrainResult:
    """One training run on a linear problem, as one compiled call.

    Parameters
    ----------
    problem : LinearProblem
    k : int >= 1 or math.inf
        1: plain SGD; k >= 2: k-fold augmentation (the example and k − 1
        augmented copies, mean of their gradients); ``math.inf``: the exact
        expected gradient (module docstring).
    lr : float > 0
        Step size.
    steps : int >= 0
        Number of updates T; step t uses example ``t mod n``.
    sampling : {"fixed", "fresh"}
        ``"fixed"``: each example's copies are drawn once (keyed by the
        example) and reused every epoch; ``"fresh"``: drawn anew at every step.
    augmentation : {"permutation", "resample"} or fastperm.augment.Augmentation
        Random permutation of x's entries, or entries resampled with replacement; or a
        distribution object (``augment.Gaussian(sigma)``, ``Mask(p)``, ``CyclicShift()``,
        ``BlockPermutation(groups)``, ``Moments(...)``): k = ∞ uses its closed form
        (:mod:`fastperm.augment.distributions`), k-fold draws its copies by :mod:`fastperm.rng`
        (numba, cython and numpy backends).
    w0 : (d,) array, optional
        Start; zeros by default.
    seed : int >= 0
        Key of the augmentation draws (:mod:`fastperm.rng`); the same seed
        gives the same copies on every backend.
    record_every : int >= 1
        Record the loss every this many steps (and at the last step).
    backend : str, optional
        ``"numba"`` (default), ``"cython"``, ``"numpy"`` (reference), ``"cuda"`` (GPU); see
        :func:`fastperm.backends.get`.
    cache_bytes : int, optional
        Memory the fixed copies may be kept in (n·k·d·8 bytes per concurrent run);
        above it, or when no example is visited twice (steps <= n), they are
        drawn again each step. Never changes results. Default
        :data:`fastperm.knobs.CACHE_BYTES` (256 MiB).
    threads : int, optional
        Threads for this call (at most one per run). By default one per run up to the
        backend's count when the work pays for a parallel launch
        (:data:`fastperm.knobs.PARALLEL_MIN_WORK`), else one: a single run never wakes
        idle threads. Never changes results.

    Returns
    -------
    TrainResult
        ``.steps``, ``.loss``, ``.w``, ``.seconds``, ``.diverged_step``.

    Warns
    -----
    DivergenceWarning
        When w becomes non-finite; ``.diverged_step`` holds the step.

    Examples
    --------
    >>> import math
    >>> import fastperm
    >>> problem = fastperm.LinearProblem.sample(d=50, n=10, seed=0)
    >>> res = fastperm.train(problem, 4, lr=0.01, steps=200, record_every=50)
    >>> res.steps
    array([  0,  50, 100, 150, 200])
    >>> [round(float(v), 6) for v in res.loss]  # mean((w − w*)²), from w0 = 0
    [1.0, 0.648462, 0.546686, 0.492105, 0.45611]
    >>> res.w.shape, res.diverged_step
    ((50,), None)

    With the exact expected gradient (k = ∞), w is not confined to the span of the copies:

    >>> res = fastperm.train(problem, math.inf, lr=0.01, steps=200, record_every=50)
    >>> [round(float(v), 6) for v in res.loss]
    [1.0, 0.469107, 0.220062, 0.103233, 0.048427]
    """
    problem = as_problem(problem)
    k, steps, sampling, augmentation, record_every, cache_bytes, threads = _common(
        k, steps, sampling, augmentation, record_every, cache_bytes, threads
    )
    lrs = np.array([_checks.as_positive_real("lr", lr)])
    seed = _checks.as_seed("seed", seed)
    W0 = problem.start(w0)
    steps_rec, loss, w, status, seconds, name, meta = _run(
        problem,
        k,
        lrs,
        np.array([seed], dtype=np.uint64),
        steps,
        sampling,
        augmentation,
        W0,
        record_every,
        backend,
        cache_bytes,
        False,
        threads,
    )
    return TrainResult(
        steps_rec,
        loss[0],
        w[0],
        None if status[0] < 0 else int(status[0]),
        seconds,
        k,
        float(lrs[0]),
        seed,
        sampling,
        augmentation,
        name,
        meta=meta,
    )


def train_many(
    problem: LinearProblem | Sequence[LinearProblem],
    k: float,
    *,
    seeds: npt.ArrayLike = (0,),
    lr: npt.ArrayLike = 1e-3,
    steps: int = 1000,
    sampling: Sampling = "fixed",
    augmentation: str | augment.Augmentation = "permutation",
    w0: npt.ArrayLike | None = None,
    record_every: int = 1,
    backend: str | None = None,
    cache_bytes: int | None = None,
    progress: bool | str = False,
    threads: int | None = None,
) -> TrainResult:
    """Many independent training runs in one compiled call, parallel over runs.

    ``seeds`` and ``lr`` (and ``problem``, when it is a sequence) are scalars or 1-D
    sequences, broadcast against each other NumPy-style (a grid: ``np.meshgrid`` them
    first). Each run is exactly ``train(problem[r], k, lr=lr[r], seed=seeds[r], ...)``:
    runs do not share random numbers or state, and the result does not depend on the
    number of threads.

    One meaning of "seed" throughout fastperm's training functions: ``seeds`` key the
    random draws of training (the augmented copies, :mod:`fastperm.rng`); the data is the
    problem's. For bands over data seeds, pass one problem per data seed
    (``[LinearProblem.sample(seed=s) for s in range(5)]``): run r trains on its own problem.

    The other parameters are those of :func:`train`.

    Parameters
    ----------
    problem : LinearProblem or sequence of LinearProblem
        One problem for every run, or one per run (all with the same d), broadcast with
        ``seeds`` and ``lr``. Runs on several problems take one compiled call per problem.
    seeds : int or sequence of int
        Keys of the runs' augmentation draws.
    lr : float or sequence of float
        Step sizes of the runs.
    w0 : (d,) or (runs, d) array, optional
        One start for all runs or one per run; zeros by default.
    progress : bool or str
        Show a progress bar (runs are then launched in chunks); a string is its label.

    Returns
    -------
    TrainResult
        ``.loss`` has shape (runs, records), ``.w`` (runs, d),
        ``.diverged_step`` (runs,) with -1 for finite runs; ``.seed`` and ``.lr``
        are the per-run arrays.

    Examples
    --------
    >>> import numpy as np
    >>> import fastperm
    >>> problem = fastperm.LinearProblem.sample(d=50, n=10, seed=0)
    >>> res = fastperm.train_many(problem, 4, seeds=[0, 1, 2], lr=0.01, steps=200,
    ...                           record_every=100)
    >>> res.loss.shape, res.w.shape, res.diverged_step
    ((3, 3), (3, 50), array([-1, -1, -1]))
    >>> np.round(res.loss, 6)  # one row per run
    array([[1.      , 0.546686, 0.45611 ],
           [1.      , 0.552212, 0.482829],
           [1.      , 0.565622, 0.50357 ]])

    Run r is exactly ``train`` with ``seed=seeds[r]``:

    >>> one = fastperm.train(problem, 4, seed=1, lr=0.01, steps=200, record_every=100)
    >>> bool(np.array_equal(one.loss, res.loss[1]))
    True
    """
    problems = as_problems(problem)
    k, steps, sampling, augmentation, record_every, cache_bytes, threads = _common(
        k, steps, sampling, augmentation, record_every, cache_bytes, threads
    )
    seeds, lr = _checks.seeds_and_lr(seeds, lr)
    if len(problems) == 1:
        problem = problems[0]
        W0 = problem.start(w0, lr.shape[0])
        steps_rec, loss, w, status, seconds, name, meta = _run(
            problem,
            k,
            lr,
            seeds,
            steps,
            sampling,
            augmentation,
            W0,
            record_every,
            backend,
            cache_bytes,
            progress,
            threads,
        )
        return TrainResult(
            steps_rec, loss, w, status, seconds, k, lr, seeds, sampling, augmentation, name, meta
        )
    # several problems: run r trains on problems[index[r]]; one call per problem, one warning
    index, seeds, lr = _checks.broadcast_runs(problem=np.arange(len(problems)), seeds=seeds, lr=lr)
    R, d = index.shape[0], problems[0].d
    given = None if w0 is None else _checks.as_float_array("w0", w0, (1, 2))
    per_run_start = given is not None and given.ndim == 2 and given.shape[0] == R and R > 1
    bar = _runs.progress_bar(progress, R) if progress else None
    loss_all = w_all = starts = np.empty((0, d))
    status_all = np.empty(R, dtype=np.int64)
    seconds, metas = 0.0, cast("list[dict[str, Any]]", [])
    try:
        for g, p in enumerate(problems):
            rows = np.flatnonzero(index == g)
            if rows.size == 0:
                continue
            W0g = p.start(given[rows] if per_run_start and given is not None else w0, rows.size)
            steps_rec, loss_g, w_g, status_g, sec, name, meta = _run(
                p,
                k,
                lr[rows],
                seeds[rows],
                steps,
                sampling,
                augmentation,
                W0g,
                record_every,
                backend,
                cache_bytes,
                False,
                threads,
                warn=False,
            )
            if not metas:
                loss_all, w_all = np.empty((R, loss_g.shape[1])), np.empty((R, d))
                starts = np.empty((R, d)) if per_run_start else W0g
            if per_run_start:
                starts[rows] = W0g
            loss_all[rows], w_all[rows], status_all[rows] = loss_g, w_g, status_g
            seconds += sec
            metas.append(meta)
            if bar is not None:
                bar.update(rows.size)
    finally:
        if bar is not None:
            bar.close()
    _runs.warn_divergence(status_all, lr, seeds, steps_rec, loss_all)
    meta = {
        **metas[0],
        "problem": [p.describe() for p in problems],
        "problem_index": index,
        "w0": starts,
        "compile_seconds": sum(m["compile_seconds"] for m in metas),
        "cache": all(m["cache"] for m in metas),
    }
    return TrainResult(
        steps_rec,
        loss_all,
        w_all,
        status_all,
        seconds,
        k,
        lr,
        seeds,
        sampling,
        augmentation,
        name,
        meta=meta,
    )
