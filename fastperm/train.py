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
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from . import _checks, augment, backends
from .problems import LinearProblem

#: default bound on the memory the fixed-copy cache may use (bytes)
DEFAULT_CACHE_BYTES = 256 * 2**20


class DivergenceWarning(RuntimeWarning):
    """A training run produced non-finite parameters (the step is in the message and result)."""


@dataclass
class TrainResult:
    """Losses and final parameters of one run (``train``) or many (``train_many``).

    Attributes
    ----------
    steps : (records,) int array
        Steps at which the loss was recorded (0, record_every, ..., and the last step).
    loss : (records,) or (runs, records) float array
        ``mean((w − w*)²)`` after those steps; NaN after a divergence.
    w : (d,) or (runs, d) float array
        Final parameters.
    diverged_step : int or None, or (runs,) int array
        First step with non-finite parameters or residual (-1 in the array
        form where a run stayed finite; None for a single finite run).
    seconds : float
        Wall time of the compiled call(s), validation and allocation excluded.
    k, lr, seed, sampling, augmentation, backend : the settings of the run(s).
    """

    steps: np.ndarray
    loss: np.ndarray
    w: np.ndarray
    diverged_step: object
    seconds: float
    k: float
    lr: object
    seed: object
    sampling: str
    augmentation: str
    backend: str
    meta: dict = field(default_factory=dict, repr=False)

    @property
    def runs(self) -> int:
        return 1 if self.loss.ndim == 1 else self.loss.shape[0]

    @property
    def ns_per_step(self) -> float:
        """Wall time per training step (all runs counted), in nanoseconds."""
        total = max(int(self.steps[-1]), 1) * self.runs
        return self.seconds * 1e9 / total

    def __repr__(self) -> str:
        k = "inf" if math.isinf(self.k) else self.k
        last = self.loss[..., -1]
        last = f"{float(last):.6g}" if np.ndim(last) == 0 else f"mean {np.nanmean(last):.6g}"
        return (f"TrainResult(k={k}, runs={self.runs}, steps={int(self.steps[-1])}, "
                f"final loss {last}, {self.ns_per_step:.1f} ns/step, backend={self.backend!r})")


def record_steps(steps: int, record_every: int) -> np.ndarray:
    """Recorded steps 0, r, 2r, ... and ``steps`` itself, followed by the sentinel ``steps + 1``."""
    rec = np.arange(0, steps + 1, record_every, dtype=np.int64)
    if rec[-1] != steps:
        rec = np.append(rec, steps)
    return np.append(rec, steps + 1)


def _as_problem(problem):
    if not isinstance(problem, LinearProblem):
        raise TypeError("problem must be a fastperm.LinearProblem "
                        f"(LinearProblem.sample(...) or LinearProblem(X, y, w_star)), "
                        f"got {type(problem).__name__}")
    return problem


def _as_w0(w0, d: int, runs: int | None):
    if w0 is None:
        return np.zeros((1, d))
    W0 = _checks.as_float_array("w0", w0, (1, 2) if runs is not None else 1).copy()
    if W0.ndim == 1:
        W0 = W0[None, :]
    if W0.shape[1] != d:
        raise ValueError(f"w0 has {W0.shape[1]} entries per run but the problem has d = {d}")
    if W0.shape[0] not in (1, runs or 1):
        raise ValueError(f"w0 has {W0.shape[0]} rows; expected 1 or one per run ({runs})")
    return W0


def _as_array_param(name, v, check, dtype):
    """A scalar or 1-D sequence of parameters, each checked by ``check``, as ``dtype``."""
    arr = np.asarray(v, dtype=object)
    if arr.ndim == 0:
        return np.array([check(name, arr.item())], dtype=dtype)
    if arr.ndim != 1 or arr.shape[0] == 0:
        raise ValueError(f"{name} must be a scalar or a non-empty 1-D sequence, "
                         f"got shape {arr.shape}")
    # the dtype is explicit: NumPy would store [0, 2**64 - 1] as float64, changing the seed
    return np.array([check(f"{name}[{i}]", x) for i, x in enumerate(arr)], dtype=dtype)


def seeds_and_lr(seeds, lr):
    """Validated per-run seeds (uint64) and step sizes (float64), broadcast against each other."""
    seeds = _as_array_param("seeds", seeds, _checks.as_seed, np.uint64)
    lr = _as_array_param("lr", lr, _checks.as_positive_real, np.float64)
    try:
        seeds, lr = np.broadcast_arrays(seeds, lr)
    except ValueError:
        raise ValueError(f"seeds ({seeds.shape[0]}) and lr ({lr.shape[0]}) must have equal "
                         "lengths or one of them length 1; use np.meshgrid for a grid") from None
    return np.ascontiguousarray(seeds, dtype=np.uint64), np.ascontiguousarray(lr, dtype=np.float64)


def _warn_divergence(status, lr, seeds, steps_rec, loss):
    bad = np.flatnonzero(status >= 0)
    if bad.size == 0:
        return
    r = int(bad[0])
    ok = np.isfinite(loss[r])
    last = (f"last recorded loss {loss[r][ok][-1]:.6g} at step {int(steps_rec[ok][-1])}"
            if ok.any() else "no finite loss recorded")
    which = f"run {r} (seed={int(seeds[r])}, lr={lr[r]:g})" if len(status) > 1 else "the run"
    more = f"; {bad.size} of {len(status)} runs diverged" if len(status) > 1 else ""
    warnings.warn(f"{which} diverged: non-finite parameters at step {int(status[r])}, "
                  f"{last}{more}. Try a smaller lr.", DivergenceWarning, stacklevel=3)


def _run(problem, k, lr, seeds, steps, sampling, augmentation, W0, record_every, backend,
         cache_bytes, progress):
    aug = augment.as_augmentation(augmentation)
    aug.check_d(problem.d)  # for every k: the kernels trust the indices it carries
    if k == 1:
        aug = augment.Permutation()  # plain SGD draws no copies, whatever the augmentation
    elif not math.isinf(k):
        aug.kernel_kind()  # a distribution without a compiled sampler says so before any work
    kern = backends.get(backend, needs=aug.expected_kernel if math.isinf(k) else aug.sgd_kernel)
    rec = record_steps(steps, record_every)
    R = lr.shape[0]
    n, d = problem.X.shape
    loss = np.empty((R, rec.shape[0] - 1))
    w = np.empty((R, d))
    status = np.empty(R, dtype=np.int64)
    fresh = sampling == "fresh"
    # keep the fixed copies only if some example is visited twice and they fit the budget:
    # a CPU driver keeps one (n, k, d) block per chunk of runs, min(R, threads) chunks; the
    # GPU one per run (all runs are resident at once)
    holders = R if getattr(kern, "CACHE_PER_RUN", False) else min(R, kern.threads())
    cache = (not fresh and k > 1 and not math.isinf(k) and steps > n
             and holders * n * k * d * 8 <= cache_bytes)
    chunks = _chunks(R, progress, kern.threads())
    t0 = time.perf_counter()
    kern.compile()  # JIT compilation (or a cache load) stays out of the timing
    compile_seconds = time.perf_counter() - t0
    bar = _progress_bar(progress, R)
    t0 = time.perf_counter()
    for lo, hi in chunks:
        sl = slice(lo, hi)
        W0c = W0 if W0.shape[0] == 1 else W0[sl]
        if math.isinf(k):
            aug.expected_runs(kern, problem.X, problem.y, problem.w_star, W0c, lr[sl], steps,
                              rec, loss[sl], w[sl], status[sl])
        else:
            aug.sgd_runs(kern, problem.X, problem.y, problem.w_star, W0c, lr[sl], seeds[sl],
                         int(k), steps, fresh, rec, cache, loss[sl], w[sl], status[sl])
        if bar is not None:
            bar.update(hi - lo)
    seconds = time.perf_counter() - t0
    if bar is not None:
        bar.close()
    _warn_divergence(status, lr, seeds, rec[:-1], loss)
    meta = {"cache": cache, "compile_seconds": compile_seconds}
    return rec[:-1], loss, w, status, seconds, kern.name, meta


def _chunks(R, progress, threads):
    if not progress or R <= 1:
        return [(0, R)]
    size = max(1, -(-R // 50), threads)
    return [(lo, min(lo + size, R)) for lo in range(0, R, size)]


def _progress_bar(progress, total):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="run", desc=progress if isinstance(progress, str) else "runs")


def _as_augmentation_arg(augmentation):
    """A name of the core engine stays a name; a distribution object stays itself."""
    if isinstance(augmentation, augment.Augmentation):
        return augmentation.engine_name or augmentation
    return _checks.as_choice("augmentation", augmentation, _checks.AUGMENTATIONS)


def _common(problem, k, steps, sampling, augmentation, record_every, cache_bytes):
    problem = _as_problem(problem)
    k = _checks.as_k(k)
    steps = _checks.as_int("steps", steps, minimum=0, maximum=2**32 - 2)
    sampling = _checks.as_choice("sampling", sampling, _checks.SAMPLINGS)
    augmentation = _as_augmentation_arg(augmentation)
    record_every = _checks.as_int("record_every", record_every, minimum=1)
    cache_bytes = _checks.as_int("cache_bytes", cache_bytes, minimum=0)
    return problem, k, steps, sampling, augmentation, record_every, cache_bytes


def train(problem, k, *, lr=1e-3, steps=1000, sampling="fixed", augmentation="permutation",
          w0=None, seed=0, record_every=1, backend=None, cache_bytes=DEFAULT_CACHE_BYTES):
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
        (:mod:`fastperm.distributions`), k-fold draws its copies by :mod:`fastperm.rng`
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
    cache_bytes : int
        Memory the fixed copies may be kept in (n·k·d·8 bytes per concurrent run);
        above it, or when no example is visited twice (steps <= n), they are
        drawn again each step. Never changes results.

    Returns
    -------
    TrainResult
        ``.steps``, ``.loss``, ``.w``, ``.seconds``, ``.diverged_step``.

    Warns
    -----
    DivergenceWarning
        When w becomes non-finite; ``.diverged_step`` holds the step.
    """
    problem, k, steps, sampling, augmentation, record_every, cache_bytes = _common(
        problem, k, steps, sampling, augmentation, record_every, cache_bytes)
    lr = np.array([_checks.as_positive_real("lr", lr)])
    seed = _checks.as_seed("seed", seed)
    W0 = _as_w0(w0, problem.d, None)
    steps_rec, loss, w, status, seconds, name, meta = _run(
        problem, k, lr, np.array([seed], dtype=np.uint64), steps, sampling, augmentation, W0,
        record_every, backend, cache_bytes, False)
    return TrainResult(steps_rec, loss[0], w[0], None if status[0] < 0 else int(status[0]),
                       seconds, k, float(lr[0]), seed, sampling, augmentation, name,
                       meta=meta)


def train_many(problem, k, *, seeds=(0,), lr=1e-3, steps=1000, sampling="fixed",
               augmentation="permutation", w0=None, record_every=1, backend=None,
               cache_bytes=DEFAULT_CACHE_BYTES, progress=False):
    """Many independent training runs in one compiled call, parallel over runs.

    ``seeds`` and ``lr`` are scalars or 1-D sequences, broadcast against each
    other NumPy-style (a grid: ``np.meshgrid`` them first). Each run is
    exactly ``train(problem, k, lr=lr[r], seed=seeds[r], ...)``: runs do not
    share random numbers or state, and the result does not depend on the
    number of threads.

    Parameters
    ----------
    seeds : int or sequence of int
        Seeds of the runs.
    lr : float or sequence of float
        Step sizes of the runs.
    w0 : (d,) or (runs, d) array, optional
        One start for all runs or one per run; zeros by default.
    progress : bool or str
        Show a progress bar (runs are then launched in chunks); a string is its label.
    Other parameters are those of :func:`train`.

    Returns
    -------
    TrainResult
        ``.loss`` has shape (runs, records), ``.w`` (runs, d),
        ``.diverged_step`` (runs,) with -1 for finite runs; ``.seed`` and ``.lr``
        are the per-run arrays.
    """
    problem, k, steps, sampling, augmentation, record_every, cache_bytes = _common(
        problem, k, steps, sampling, augmentation, record_every, cache_bytes)
    seeds, lr = seeds_and_lr(seeds, lr)
    W0 = _as_w0(w0, problem.d, lr.shape[0])
    steps_rec, loss, w, status, seconds, name, meta = _run(
        problem, k, lr, seeds, steps, sampling, augmentation, W0, record_every, backend,
        cache_bytes, progress)
    return TrainResult(steps_rec, loss, w, status, seconds, k, lr, seeds, sampling,
                       augmentation, name, meta=meta)
