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

What is recorded (``record=``): the parameter error ``mean((w − w*)²)`` (the default when
w* is known), the training loss ``mean((Xw − y)²)`` (the default for real data, without w*),
the held-out loss on a test split, and w itself (:data:`fastperm.problems.METRICS`). The
kernels keep w at the recorded steps only; the training and test losses are computed from
it after the call, so steps that are not recorded cost nothing more.

With ``w* = c·1`` and fixed copies,
SGD can only move w inside the span of the n·k augmented examples, so the
loss from ``w0 = 0`` plateaus near ``1 − min(nk, d)/d`` (the post's Figure 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from . import _checks, _runs, augment, backends, distributed, dual, knobs, results
from ._runs import DivergenceWarning, record_steps  # noqa: F401  (public names)
from ._typing import FloatArray, IntArray, Sampling, UIntArray
from .problems import LOSSES, METRICS, LinearProblem, as_problem, as_problems
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


#: the outputs of the linear problem's training families that a call returns
_OUTPUTS = ("loss_out", "w_rec", "w_out", "status_out")


def _run(
    problem: LinearProblem,
    k: float,
    lr: FloatArray,
    seeds: UIntArray,
    rec: IntArray,
    start_step: int,
    sampling: str,
    augmentation: str | augment.Augmentation,
    W0: FloatArray,
    keep_w: bool,
    dtype: str,
    backend: str | None,
    cache_bytes: int,
    progress: bool | str,
    threads: int | None,
    client: Any = None,
    algorithm: str = "auto",
) -> tuple[dict[str, Any], _runs.Launched, str]:
    """Runs on one problem: steps ``start_step + 1 .. start_step + steps`` (``steps``: the
    sentinel ``rec[-1]`` minus one), recording at the call's steps ``rec`` (and keeping w
    there when ``keep_w``). Returns the outputs (``loss_out``, ``w_rec``, ``w_out``,
    ``status_out``), how the call ran and the family (``dual_runs`` where ``algorithm``
    chose the dual form: :mod:`fastperm.dual`). In ``dtype="float32"`` the
    examples, the start and w are float32. On Ctrl-C, :class:`_runs.Interrupted` carries
    the outputs so far."""
    aug = augment.as_augmentation(augmentation)
    aug.check_d(problem.d)  # for every k: the kernels trust the indices it carries
    if k == 1:
        aug = augment.Permutation()  # plain SGD draws no copies, whatever the augmentation
    steps = int(rec[-1]) - 1
    R = lr.shape[0]
    n, d = problem.X.shape
    fresh = sampling == "fresh"
    X, y = problem.examples(dtype)
    values: dict[str, Any] = {  # the kernel's arguments by name (contract.FAMILIES)
        "X": X,
        "y": y,
        "w_star": problem.target,  # float64 always: the error is measured against w* itself
        "W0": W0.astype(dtype, copy=False),
        "lr": lr,
        "steps": steps,
        "record_steps": rec,
        **_runs.run_outputs(R, rec.shape[0] - 1, d, keep_w, dtype),
    }
    outputs = _OUTPUTS
    if not math.isinf(k):
        kind, fparams, gidx, gptr = aug.sampler()  # says so before any work if there is none
    run_kw = dict(backend=backend, threads=threads, progress=progress, warn=False, client=client)
    form, kern = "primal", None
    if algorithm != "primal":  # (the primal loop asked for: no shape, no backend lookup)
        shape = dual.Shape(n, d, 1 if math.isinf(k) else int(k), steps, R,
                           1 if k == 1 or math.isinf(k) else np.unique(seeds).size,
                           rec.shape[0] - 1 if keep_w else 0)  # fmt: skip
        kern = backends.get(backend, needs="sgd_runs", kind=None if math.isinf(k) else kind)
        form = dual.choose(
            algorithm, shape, fresh=fresh, dtype=dtype, infinite=math.isinf(k), kern=kern,
            budget=cache_bytes,
        )  # fmt: skip
    if form == "dual":
        assert kern is not None
        parts = dual.calls(
            kern, values, shape, X, seeds, (kind, fparams, gidx, gptr), start_step, threads,
            cache_bytes,
        )  # fmt: skip
        done = _run_parts(kern, parts, values, {**run_kw, "backend": kern.name})
        return {name: values[name] for name in outputs}, done, "dual_runs"
    if math.isinf(k):
        if start_step:
            raise AssertionError("k = ∞ runs are resumed by replaying from step 0")
        _checks.moments_fit(X=problem.X, w0=W0, w_star=problem.target)
        family, plan = aug.closed_form(problem.X)
        values.update(plan)
        call = _runs.Call(family, values, R, R * _work(k, d, n, steps, fresh, family))
    else:
        values.update(
            seeds=seeds,
            k=int(k),
            start_step=start_step,
            fresh=fresh,
            kind=kind,
            fparams=fparams,
            gidx=gidx,
            gptr=gptr,
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
            cache_bytes_per_holder=n * int(k) * d * X.itemsize if keep else 0,
            cache_bytes=cache_bytes,
            dtype=dtype,
        )
    call.seeds = seeds
    try:
        done = _runs.run(call, **run_kw)
    except _runs.Interrupted as exc:
        exc.result = {name: values[name] for name in outputs}
        raise
    return {name: values[name] for name in outputs}, done, call.family


def _run_parts(
    kern: Any, parts: list[dual.Part], values: dict[str, Any], run_kw: dict[str, Any]
) -> _runs.Launched:
    """Run the dual form's parts (:func:`fastperm.dual.calls`) one after the other, each
    set up just before it runs, their outputs written into the rows of ``values``' outputs;
    how they ran, summed (``seconds`` includes the set-ups). On Ctrl-C the outputs so far
    travel with :class:`_runs.Interrupted` when there was one part (none otherwise: the
    parts' runs stand at different steps)."""
    outputs = _OUTPUTS
    seconds = compile_seconds = 0.0
    done = None
    for part in parts:
        setup_seconds, compiling = dual.prepare(kern, part)
        try:
            done = _runs.run(part.call, **run_kw)
        except _runs.Interrupted as exc:
            exc.result = None  # the parts' runs stand at different steps
            if len(parts) == 1:
                exc.result = {name: part.call.values[name] for name in outputs}
                exc.result["algorithm"] = "dual"  # (what the partial result says it ran in)
            raise
        for name in outputs:
            values[name][part.rows] = part.call.values[name]
        seconds += setup_seconds + done.seconds
        compile_seconds += compiling + done.compile_seconds
    assert done is not None
    done.seconds, done.compile_seconds = seconds, compile_seconds
    return done


def _records(first: int, count: int, record_every: int, start_step: int) -> IntArray:
    """The record list of a call that runs steps ``first .. first + count`` of runs that
    record every ``record_every`` steps from step 0 and at their end (the grid of one
    uninterrupted call), and at ``start_step`` (where a resumed result begins): relative
    steps, then the sentinel ``count + 1``."""
    if first == 0 and start_step == 0:  # one whole call (no np.unique over many records)
        return _runs.record_steps(count, record_every)
    grid = np.arange(0, first + count, record_every, dtype=np.int64)
    inside = grid[grid > first] - first
    rel = np.unique(np.concatenate(([0, start_step - first], inside, [count])))
    return np.append(rel, count + 1).astype(np.int64)


def as_record(record: object, problems: list[LinearProblem]) -> tuple[str, ...]:
    """``record=`` validated: names of :data:`fastperm.problems.METRICS`, the primary loss
    first (``TrainResult.loss``): the first loss named, else the default (``error`` when
    every problem knows w*, else ``train``), which is also added when only ``w`` is named."""
    default = "error" if all(p.w_star is not None for p in problems) else "train"
    if record is None:
        names: list[str] = [default]
    else:
        items = [record] if isinstance(record, str) else record
        if not isinstance(items, (list, tuple)) or not items:
            raise TypeError(
                f"record must be a name or a non-empty list of names of {METRICS}, got {record!r}"
            )
        names = [_checks.as_choice("record", name, METRICS) for name in items]
        if len(set(names)) < len(names):
            raise ValueError(f"record names something twice: {record!r}")
    losses = [name for name in names if name in LOSSES] or [default]
    names = [losses[0], *(name for name in names if name != losses[0])]
    for problem in problems:
        problem.check_metrics(tuple(names))
    return tuple(names)


def _recorded(
    problems: list[LinearProblem],
    index: IntArray,
    names: tuple[str, ...],
    error: FloatArray,
    w_path: FloatArray | None,
) -> dict[str, FloatArray]:
    """The records asked for, by name: the kernels' parameter error, and the losses computed
    from the parameters kept at the records (``w_path``, runs × records × d), each run's on
    its own problem."""
    out: dict[str, FloatArray] = {}
    for name in names:
        if name == "error":
            out[name] = error
        elif name == "w":
            assert w_path is not None
            out[name] = w_path
        else:
            assert w_path is not None
            if len(problems) == 1:  # (no masked copy of the whole w_path)
                out[name] = problems[0].metric(name, w_path)
                continue
            values = np.empty(error.shape)
            for g, problem in enumerate(problems):
                rows = index == g
                values[rows] = problem.metric(name, w_path[rows])
            out[name] = values
    return out


def _check_record_memory(runs: int, records: int, d: int) -> None:
    need = runs * records * d * 8
    if need > knobs.RECORD_BYTES:
        raise ValueError(
            f"record: keeping w at {records} recorded steps of {runs} run(s) with d = {d} "
            f"needs {need / 2**30:.2f} GiB, over fastperm.knobs.RECORD_BYTES "
            f"({knobs.RECORD_BYTES / 2**30:.2f} GiB); record less often (a larger "
            "record_every), fewer runs per call, or raise the knob"
        )


def _train_runs(
    problems: list[LinearProblem],
    index: IntArray,
    k: float,
    lr: FloatArray,
    seeds: UIntArray,
    steps: int,
    sampling: Sampling,
    augmentation: str | augment.Augmentation,
    W0: FloatArray,
    record_every: int,
    record: tuple[str, ...],
    dtype: str,
    backend: str | None,
    cache_bytes: int,
    progress: bool | str,
    threads: int | None,
    start_step: int = 0,
    origin: FloatArray | None = None,
    warn: bool = True,
    client: Any = None,
    algorithm: str = "auto",
) -> TrainResult:
    """The runs r = 0..R−1 on ``problems[index[r]]`` from ``W0`` (one row, or one per run)
    at step ``start_step``, for ``steps`` steps: one call per problem, one divergence
    warning, one result recording ``record`` (:func:`as_record`). ``origin``: the runs'
    starts at step 0 (default ``W0``), kept in the metadata; a k = ∞ run resumed at
    ``start_step > 0`` is replayed from it (its kernels keep a transformed state, so
    replaying is what makes the result exact)."""
    R, d = index.shape[0], problems[0].d
    origin = W0 if origin is None else origin
    replay = math.isinf(k) and start_step > 0
    first, count, base = (0, start_step + steps, origin) if replay else (start_step, steps, W0)
    rec = _records(first, count, record_every, start_step)
    keep_cols = rec[:-1] >= start_step - first  # a replay keeps the records from start_step
    keep_w = any(name != "error" for name in record)
    if keep_w:
        _check_record_memory(R, rec.shape[0] - 1, d)
    error = np.full((R, int(keep_cols.sum())), np.nan)
    w_path = np.full((R, error.shape[1], d), np.nan, dtype) if keep_w else None
    w, status = np.empty((R, d), dtype), np.full(R, -1, dtype=np.int64)
    seconds, compile_seconds, cache, name, family, threads_used = 0.0, 0.0, True, "", "", 1
    forms: set[str] = set()  # the algorithms the calls took (one per problem)
    spread: dict[str, Any] = {}  # with a client: tasks, workers, task seconds
    groups = (
        [np.arange(R)]
        if len(problems) == 1
        else [np.flatnonzero(index == g) for g in range(len(problems))]
    )
    bar = _runs.progress_bar(progress, R) if progress and len(problems) > 1 else None
    try:
        for g, rows in enumerate(groups):
            if rows.size == 0:
                continue
            start = base if base.shape[0] == 1 else base[rows]
            try:
                out, done, family = _run(
                    problems[g], k, lr[rows], seeds[rows], rec, 0 if replay else start_step,
                    sampling, augmentation, start, keep_w, dtype, backend, cache_bytes,
                    progress if bar is None else False, threads, client, algorithm,
                )  # fmt: skip
            except _runs.Interrupted as exc:
                if len(problems) > 1 or exc.result is None:
                    exc.result = None  # (later problems or runs have not started: no common state)
                    raise
                exc.result = _partial(
                    problems[0], exc.step, first, rec, keep_cols, exc.result, record, k, lr,
                    seeds, sampling, augmentation, origin, start_step, record_every, dtype,
                )  # fmt: skip
                raise
            forms.add("dual" if family == "dual_runs" else "primal")
            error[rows] = out["loss_out"][:, keep_cols]
            if w_path is not None:
                w_path[rows] = out["w_rec"][:, keep_cols]
            w[rows] = out["w_out"]
            status_g = out["status_out"]
            status[rows] = np.where(status_g >= 0, status_g + first, -1)
            seconds += done.seconds
            compile_seconds += done.compile_seconds
            cache = cache and done.cache
            name, threads_used = done.backend, done.threads
            for key, value in done.spread.items():  # tasks and task seconds add up
                adds = key in ("tasks", "task_seconds")
                spread[key] = spread.get(key, 0) + value if adds else value
            if bar is not None:
                bar.update(rows.size)
    finally:
        if bar is not None:
            bar.close()
    steps_rec = rec[:-1][keep_cols] + first
    records = _recorded(problems, index, record, error, w_path)
    if warn:
        _runs.warn_divergence(status, lr, seeds, steps_rec, records[record[0]])
    meta = _meta(
        problems, index, start_step + steps, start_step, record_every, origin, record, dtype
    )
    meta.update(family=family, threads=threads_used, cache=cache, compile_seconds=compile_seconds)
    meta["algorithm"] = "closed form" if math.isinf(k) else "+".join(sorted(forms)) or "primal"
    meta.update(spread)
    return TrainResult(steps_rec, records[record[0]], w, status, seconds, k, lr, seeds, sampling,
                       augmentation, name, meta, records)  # fmt: skip


def _meta(
    problems: list[LinearProblem],
    index: IntArray,
    steps: int,
    start_step: int,
    record_every: int,
    origin: FloatArray,
    record: tuple[str, ...],
    dtype: str,
) -> dict[str, Any]:
    """A training result's metadata: the problem(s), the steps it covers, what it recorded,
    its start, the parameters' type."""
    many = len(problems) > 1
    meta: dict[str, Any] = {
        "problem": [p.describe() for p in problems] if many else problems[0].describe(),
        "steps": steps,
        "start_step": start_step,
        "record_every": record_every,
        "record": list(record),
        "dtype": dtype,
        "w0": origin,
        **results.environment(),
    }
    if many:
        meta["problem_index"] = index
    return meta


def _partial(
    problem: LinearProblem,
    step: int,
    first: int,
    rec: IntArray,
    keep_cols: npt.NDArray[np.bool_],
    out: dict[str, Any],
    record: tuple[str, ...],
    k: float,
    lr: FloatArray,
    seeds: UIntArray,
    sampling: str,
    augmentation: str | augment.Augmentation,
    origin: FloatArray,
    start_step: int,
    record_every: int,
    dtype: str,
) -> TrainResult:
    """The result of an interrupted single-problem call (``out``: the outputs so far): the
    records up to the call's step ``step`` and a last record there (computed here from w),
    w at that step."""
    done = rec[:-1] <= step
    cols = keep_cols & done
    steps_rec = rec[:-1][cols] + first
    error = out["loss_out"][:, cols]
    w_path = out["w_rec"][:, cols] if out["w_rec"].shape[1] else None
    status = np.where(out["status_out"] >= 0, out["status_out"] + first, -1)
    w = out["w_out"].copy()
    w[status >= 0] = np.nan
    if steps_rec.size == 0 or steps_rec[-1] != first + step:
        with np.errstate(all="ignore"):
            last = np.mean((w - problem.target) ** 2, axis=1)
        steps_rec = np.append(steps_rec, first + step)
        error = np.column_stack((error, last))
        if w_path is not None:
            w_path = np.concatenate((w_path, w[:, None, :]), axis=1)
    index = np.zeros(w.shape[0], dtype=np.int64)
    records = _recorded([problem], index, record, error, w_path)
    meta = _meta([problem], index, first + step, start_step, record_every, origin, record, dtype)
    meta["interrupted"] = True
    meta["algorithm"] = out.get("algorithm", "primal")
    return TrainResult(steps_rec, records[record[0]], w, status, 0.0, k, lr, seeds, sampling,
                       augmentation, "", meta, records)  # fmt: skip


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
    dtype: object,
) -> tuple[float, int, Sampling, str | augment.Augmentation, int, int, int | None, str]:
    k = _checks.as_k(k)
    steps = _checks.as_int("steps", steps, minimum=0, maximum=2**32 - 2)
    sampling = _checks.as_choice("sampling", sampling, _checks.SAMPLINGS)
    augmentation = _as_augmentation_arg(augmentation)
    record_every = _checks.as_int("record_every", record_every, minimum=1)
    cache_bytes = _runs.as_cache_bytes(cache_bytes)
    threads = _runs.as_threads(threads)
    dtype = _checks.as_dtype("dtype", dtype, k)
    return k, steps, sampling, augmentation, record_every, cache_bytes, threads, dtype


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
    record: str | Sequence[str] | None = None,
    dtype: str = "float64",
    backend: str | None = None,
    cache_bytes: int | None = None,
    threads: int | None = None,
    progress: bool | str = False,
    algorithm: str = "auto",
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
    record : str or list of str, optional
        What to record at those steps (:data:`fastperm.problems.METRICS`): ``"error"``,
        the parameter error ``mean((w − w*)²)`` (needs w*; the default when the problem
        has it); ``"train"``, the training loss ``mean((Xw − y)²)`` (the default for a
        problem without w*); ``"test"``, the same on the problem's held-out split;
        ``"w"``, the parameters themselves. ``.loss`` is the first loss named, ``.records``
        holds all of them. The kernels keep w at the recorded steps only (runs × records ×
        d floats, at most :data:`fastperm.knobs.RECORD_BYTES`) and the training and test
        losses are computed from it after the call: steps between records cost nothing
        more.
    dtype : {"float64", "float32"}
        The type of w, the examples and their copies. ``"float32"`` (plain and k-fold runs
        on the numba backend) halves the memory traffic and the fixed-copy cache; dot
        products and losses still accumulate in float64, and the result's ``w`` is
        float32. It agrees with float64 to float32's accuracy (a test checks it), and is
        bitwise reproducible as float64 is (same machine, backend and dtype).
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
    progress : bool or str
        Show a progress bar over the steps of a plain or k-fold run (a string is its label);
        a k = ∞ run is one O(T + d) call and shows none.
    algorithm : {"auto", "primal", "dual"}
        How plain SGD and fixed k-fold runs are computed (:mod:`fastperm.dual`):
        ``"primal"``, the literal loop, O(k·d) per step; ``"dual"``, the Gram form, O(n·k²)
        per step after an O((n·k)²·d) set-up (the copies' Gram matrix), the same run up to
        rounding (1e-10 relative over 10⁵ steps, tested); ``"auto"`` (default) takes the
        one a cost model says is cheaper (the dual form needs fixed copies and float64).
        ``result.meta["algorithm"]`` says which ran; ``seconds`` includes the set-up.

    Returns
    -------
    TrainResult
        ``.steps``, ``.loss``, ``.records``, ``.w``, ``.seconds``, ``.diverged_step``.
        :func:`fastperm.resume` continues it.

    Raises
    ------
    fastperm.Interrupted
        On Ctrl-C (a KeyboardInterrupt): plain and k-fold runs are computed in parts of
        ~0.1–0.2 s (:data:`fastperm.knobs.INTERRUPT_WORK`; the result is the same bitwise),
        so the call stops within about a second; ``.result`` holds the steps completed
        (resumable). k = ∞ runs are one call (their cost is O(T + d)).

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

    Training and held-out losses, and w, at the same steps:

    >>> split = fastperm.LinearProblem.sample(d=50, n=10, seed=0, n_test=100)
    >>> res = fastperm.train(split, 4, lr=0.01, steps=200, record_every=100,
    ...                      record=["train", "test", "w"])
    >>> [round(float(v), 4) for v in res.records["train"]]
    [37.5807, 2.1823, 0.953]
    >>> [round(float(v), 4) for v in res.records["test"]]
    [51.9115, 25.4239, 21.721]
    >>> res.records["w"].shape
    (3, 50)
    """
    problem = as_problem(problem)
    k, steps, sampling, augmentation, record_every, cache_bytes, threads, dtype = _common(
        k, steps, sampling, augmentation, record_every, cache_bytes, threads, dtype
    )
    lrs = np.array([_checks.as_positive_real("lr", lr)])
    seeds = np.array([_checks.as_seed("seed", seed)], dtype=np.uint64)
    names = as_record(record, [problem])
    algorithm = _checks.as_choice("algorithm", algorithm, dual.ALGORITHMS)
    W0 = problem.start(w0)
    try:
        res = _train_runs(
            [problem], np.zeros(1, dtype=np.int64), k, lrs, seeds, steps, sampling,
            augmentation, W0, record_every, names, dtype, backend, cache_bytes, progress,
            threads, algorithm=algorithm,
        )  # fmt: skip
    except _runs.Interrupted as exc:
        exc.result = None if exc.result is None else _single(exc.result)
        raise
    return _single(res)


def _single(res: TrainResult) -> TrainResult:
    """A one-run result in the form :func:`train` returns (1-D arrays, scalar settings)."""
    status = int(np.asarray(res.diverged_step)[0])
    res.records = {name: values[0] for name, values in res.records.items()}
    res.loss, res.w = res.records[res.metric], res.w[0]
    res.diverged_step = None if status < 0 else status
    res.lr, res.seed = float(np.asarray(res.lr)[0]), int(np.asarray(res.seed)[0])
    return res


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
    record: str | Sequence[str] | None = None,
    dtype: str = "float64",
    backend: str | None = None,
    cache_bytes: int | None = None,
    progress: bool | str = False,
    threads: int | None = None,
    client: Any = None,
    algorithm: str = "auto",
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
        Show a progress bar (over the steps for plain and k-fold runs, which then run in
        parts; over the runs otherwise; over the tasks with a ``client``); a string is its
        label.
    client : dask.distributed.Client, optional
        Spread the runs over a Dask cluster (:mod:`fastperm.distributed`): tasks of about
        equal cost, the problems scattered once, each task on one thread of a worker unless
        ``threads`` says otherwise. The result is bitwise the one without a client;
        ``seconds`` is then the wall time of the whole spread call.
    algorithm : {"auto", "primal", "dual"}
        As in :func:`train`. In the dual form the runs share the Gram matrix of the
        examples (k = 1) or of each seed's copies (fixed k-fold: one set per distinct seed,
        within ``cache_bytes``).

    Returns
    -------
    TrainResult
        ``.loss`` has shape (runs, records) (``.records["w"]``: (runs, records, d)),
        ``.w`` (runs, d),
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
    k, steps, sampling, augmentation, record_every, cache_bytes, threads, dtype = _common(
        k, steps, sampling, augmentation, record_every, cache_bytes, threads, dtype
    )
    names = as_record(record, problems)
    algorithm = _checks.as_choice("algorithm", algorithm, dual.ALGORITHMS)
    seeds, lr = _checks.seeds_and_lr(seeds, lr)
    if len(problems) == 1:
        index = np.zeros(lr.shape[0], dtype=np.int64)
        W0 = problems[0].start(w0, lr.shape[0])
    else:  # run r trains on problems[index[r]]
        index, seeds, lr = _checks.broadcast_runs(
            problem=np.arange(len(problems)), seeds=seeds, lr=lr
        )
        W0 = _starts(problems, index, w0)
    if client is not None:
        distributed.check_client(client)
    return _train_runs(
        problems, index, k, lr, seeds, steps, sampling, augmentation, W0, record_every,
        names, dtype, backend, cache_bytes, progress, threads, client=client,
        algorithm=algorithm,
    )  # fmt: skip


def _starts(problems: list[LinearProblem], index: IntArray, w0: npt.ArrayLike | None) -> FloatArray:
    """Validated starts of runs on several problems: one row for all, or one per run (each
    checked against its own problem)."""
    R = index.shape[0]
    W0 = problems[0].start(w0, R, check=False)  # shapes once; each problem checks its starts
    per_run = W0.shape[0] == R and R > 1
    for g, p in enumerate(problems):
        p.check_start(W0[index == g] if per_run else W0, "w0")
    return W0


def resume(
    result: TrainResult,
    problem: LinearProblem | Sequence[LinearProblem],
    steps: int,
    *,
    augmentation: str | augment.Augmentation | None = None,
    backend: str | None = None,
    cache_bytes: int | None = None,
    threads: int | None = None,
    progress: bool | str = False,
) -> TrainResult:
    """Continue the runs of ``result`` for ``steps`` more steps, exactly as if they had
    never stopped.

    ``result`` is a :func:`train` or :func:`train_many` result (complete, interrupted —
    ``fastperm.Interrupted.result`` — or loaded with :meth:`TrainResult.load`); its settings
    (k, lr, seeds, sampling, augmentation, record_every, record, dtype) are reused. Run r
    continues from its last step s with its parameters ``result.w[r]``: step s + t visits example
    ``(s + t) mod n`` and draws fresh copies keyed by it, fixed copies are the same, so
    the continuation equals one uninterrupted call bitwise (plain SGD and k-fold, every
    sampling mode and backend; a run in the dual form continues in it, bitwise from an
    interrupted result, to rounding from other steps: :mod:`fastperm.dual`). k = ∞ runs
    are replayed from their start at step 0 (their kernels keep a transformed state;
    O(s + T) scalar work), exact as well. Runs that diverged stay diverged.

    Parameters
    ----------
    result : TrainResult
    problem : LinearProblem or sequence of LinearProblem
        The problem(s) the result was computed on (checked against its metadata).
    steps : int >= 0
        Further steps.
    augmentation : str or fastperm.augment.Augmentation, optional
        Needed only for a result loaded from a file whose augmentation was a distribution
        object (the file holds its description, not the object).
    backend : str, optional
        Default: the backend ``result`` was computed on (other backends agree to
        reassociation, not bitwise).
    cache_bytes, threads, progress
        As in :func:`train_many`.

    Returns
    -------
    TrainResult
        Records from step s (its first record is ``result``'s last) to s + steps, on the
        grid of ``result``'s ``record_every``.

    Examples
    --------
    >>> import numpy as np
    >>> import fastperm
    >>> problem = fastperm.LinearProblem.sample(d=50, n=10, seed=0)
    >>> first = fastperm.train(problem, 4, sampling="fresh", steps=150, record_every=50)
    >>> rest = fastperm.resume(first, problem, 250)
    >>> whole = fastperm.train(problem, 4, sampling="fresh", steps=400, record_every=50)
    >>> rest.steps
    array([150, 200, 250, 300, 350, 400])
    >>> bool(np.array_equal(rest.w, whole.w)), bool(np.array_equal(rest.loss, whole.loss[3:]))
    (True, True)
    """
    if not isinstance(result, TrainResult):
        raise TypeError(f"result must be a fastperm.TrainResult, got {type(result).__name__}")
    if "w0" not in result.meta or "net" in result.meta:
        raise ValueError(
            "result must come from fastperm.train or fastperm.train_many (or a file they "
            "wrote): resume continues those runs only"
        )
    problems = as_problems(problem)
    described = problems[0].describe() if len(problems) == 1 else [p.describe() for p in problems]
    if described != result.meta.get("problem"):
        raise ValueError(
            "problem is not the problem of result: its description "
            f"{described} differs from the result's {result.meta.get('problem')}"
        )
    steps = _checks.as_int("steps", steps, minimum=0, maximum=2**32 - 2)
    cache_bytes = _runs.as_cache_bytes(cache_bytes)
    threads = _runs.as_threads(threads)
    if augmentation is None:
        augmentation = result.augmentation
        if isinstance(augmentation, str) and augmentation not in _checks.AUGMENTATIONS:
            raise ValueError(
                f"result's augmentation {augmentation!r} was a distribution object (the "
                "file holds its description): pass it again, resume(..., augmentation=...)"
            )
    augmentation = _as_augmentation_arg(augmentation)
    start = int(result.steps[-1])
    if start + steps > 2**32 - 2:
        raise ValueError(f"steps: the run would pass step 2**32 - 2 (it is at step {start})")
    single = result.loss.ndim == 1
    record = tuple(result.meta.get("record", ("error",)))
    dtype = str(result.meta.get("dtype", "float64"))
    for p in problems:
        p.check_metrics(record)
    # copies: the result passed in is never changed
    lr = np.array(result.lr, dtype=np.float64, ndmin=1)
    seeds = np.array(result.seed, dtype=np.uint64, ndmin=1)
    W = np.array(result.w, dtype=dtype, ndmin=2)
    # each record's last column (the state the continuation starts from), one row per run
    last = {
        name: np.array(values[None] if single else values)[:, -1]
        for name, values in result.records.items()
    }
    ds = result.diverged_step
    status = np.array(-1 if ds is None else ds, dtype=np.int64, ndmin=1)
    R = lr.shape[0]
    index = np.array(result.meta.get("problem_index", np.zeros(R)), dtype=np.int64)
    origin = np.array(result.meta["w0"], dtype=np.float64, ndmin=2)
    alive = np.flatnonzero(status < 0)
    backend = result.backend or None if backend is None else backend
    # the form the result ran in (a dual run resumed at a multiple of its resync steps, as an
    # interrupted one is, continues bitwise; elsewhere to rounding)
    ran = str(result.meta.get("algorithm", "auto"))  # "dual" continues as dual where it can
    algorithm = {"primal": "primal", "dual": dual.RESUMED}.get(ran, "auto")

    def expand(part: TrainResult) -> TrainResult:
        """The alive runs' continuation back among all runs (diverged ones stay so)."""
        for name, values in part.records.items():
            full = np.full((R, *values.shape[1:]), np.nan, values.dtype)
            full[alive] = values
            full[alive, 0] = last[name][alive]  # the state it continues from
            part.records[name] = full
        w = np.full((R, W.shape[1]), np.nan, W.dtype)
        w[alive] = part.w
        merged = status.copy()
        merged[alive] = cast(IntArray, part.diverged_step)
        part.loss, part.w, part.diverged_step = part.records[part.metric], w, merged
        part.lr, part.seed = lr, seeds
        part.meta["w0"] = origin
        if "problem_index" in result.meta:
            part.meta["problem_index"] = index
        return _single(part) if single else part

    try:
        part = _train_runs(
            problems, index[alive], result.k, lr[alive], seeds[alive], steps,
            cast(Sampling, result.sampling), augmentation, W[alive],
            result.meta["record_every"], record, dtype, backend, cache_bytes, progress,
            threads,
            start_step=start, origin=origin if origin.shape[0] == 1 else origin[alive],
            warn=False, algorithm=algorithm,
        )  # fmt: skip
    except _runs.Interrupted as exc:
        exc.result = None if exc.result is None else expand(exc.result)
        raise
    new = np.full(R, -1, dtype=np.int64)  # the runs that diverged in this call, for the warning
    new[alive] = cast(IntArray, part.diverged_step)
    out = expand(part)
    _runs.warn_divergence(new, lr, seeds, out.steps, np.atleast_2d(out.loss))
    return out
