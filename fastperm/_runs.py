"""The one run harness: validate → plan → allocate → compile → call → result.

Every front end that trains — :func:`fastperm.train`, :func:`fastperm.train_many`,
:func:`fastperm.deep_linear.train`, :func:`fastperm.schemes.run` — validates its own
arguments (:mod:`fastperm._checks`) and describes what to run as a :class:`Call`: a kernel
family of :mod:`fastperm.backends.contract` and the values of its arguments, by name. The
harness then, the same way for all of them:

1. chooses the backend (:func:`fastperm.backends.get` with the family, and the augmentation
   kind its sampler must draw);
2. decides whether the kernel may keep the fixed copies (the family's ``cache`` argument,
   within the memory budget);
3. compiles the backend's kernels outside the timing (:func:`compile`);
4. chooses the threads for this call: the caller's ``threads``, or — by default — one
   thread when the call's estimated work is below :data:`fastperm.knobs.PARALLEL_MIN_WORK`
   (a parallel launch costs a scheduler time slice whenever a thread waits for a busy core,
   ~8 ms measured on a loaded machine: issue 12), else one per run up to the backend's
   count; the setting holds for this call only;
5. calls the kernel once, or in chunks of runs behind a progress bar (the contract lets
   runs be split: each depends only on its own entries), or — given a Dask client — as
   chunks of runs on its cluster (:func:`fastperm.distributed.spread`);
6. times the call and warns once if runs diverged, at the caller's line.

Imports go one way: front ends → this harness → the contract and registry → backends.
"""

from __future__ import annotations

import math
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType, ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _checks, backends, knobs
from ._typing import FloatArray, IntArray, UIntArray
from .backends import contract


class DivergenceWarning(RuntimeWarning):
    """A training run overflowed: a non-finite residual, parameter or recorded loss (the step
    is in the message and the result)."""


def record_steps(steps: int, record_every: int) -> IntArray:
    """Recorded steps 0, r, 2r, ... and ``steps`` itself, followed by the sentinel ``steps + 1``."""
    m = steps // record_every + 1  # 0, r, ..., (m - 1) r
    tail = (steps + 1,) if (m - 1) * record_every == steps else (steps, steps + 1)
    rec = np.empty(m + len(tail), dtype=np.int64)
    rec[:m] = np.arange(0, m * record_every, record_every)
    rec[m:] = tail
    return rec


def run_outputs(
    runs: int, records: int, width: int, keep_w: bool = False, dtype: Any = np.float64
) -> dict[str, Any]:
    """The outputs of the linear problem's training families: ``loss_out`` (runs, records),
    ``w_rec`` (runs, records, width) when the parameters are kept at the records, else
    (runs, 0, width), ``w_out`` (runs, width) (both of the parameters' ``dtype``) and
    ``status_out`` (runs,)."""
    return {
        "loss_out": np.empty((runs, records)),
        "w_rec": np.empty((runs, records if keep_w else 0, width), dtype),
        "w_out": np.empty((runs, width), dtype),
        "status_out": np.empty(runs, dtype=np.int64),
    }


@dataclass
class Call:
    """What a front end asks the harness to run.

    Attributes
    ----------
    family : str
        A kernel family of :mod:`fastperm.backends.contract`.
    values : dict
        The value of every argument of the family, by name (validated; outputs allocated),
        except ``cache``, which the harness decides.
    runs : int
        Number of independent runs R.
    work : float
        Estimated element operations of the whole call (all runs): decides the threads.
    kind : int, optional
        The augmentation kind the family's sampler draws (``fastperm.rng.KIND_*``).
    cache_bytes_per_holder : int
        Memory of the fixed copies one concurrent run holder keeps (0: nothing to keep).
    cache_bytes : int
        The budget for all holders together.
    seeds : (runs,) array, optional
        The runs' seeds, named in a divergence warning (default: the family's ``seeds``).
    dtype : {"float64", "float32"}
        The parameters' type (float32: backends listing it in ``DTYPES``).
    """

    family: str
    values: dict[str, Any]
    runs: int
    work: float
    kind: int | None = None
    cache_bytes_per_holder: int = 0
    cache_bytes: int = field(default_factory=lambda: knobs.CACHE_BYTES)
    seeds: UIntArray | None = None
    dtype: str = "float64"


@dataclass
class Launched:
    """How a call ran: backend name, wall seconds of the kernel calls (compilation
    excluded), seconds spent compiling (or loading the cache), threads used, whether the
    fixed copies were kept."""

    backend: str
    seconds: float
    compile_seconds: float
    threads: int
    cache: bool
    spread: dict[str, Any] = field(default_factory=dict)  # over a Dask cluster: tasks, workers

    def metadata(self, family: str) -> dict[str, Any]:
        """How the call ran, for a result's metadata (``family``: the kernel family)."""
        return {
            "family": family,
            "threads": self.threads,
            "cache": self.cache,
            "compile_seconds": self.compile_seconds,
            **self.spread,
        }


def as_threads(threads: object) -> int | None:
    """``None`` (choose per call) or an int >= 1."""
    return None if threads is None else _checks.as_int("threads", threads, minimum=1)


def as_cache_bytes(cache_bytes: object) -> int:
    """``None`` (:data:`fastperm.knobs.CACHE_BYTES`, read at the call) or an int >= 0."""
    return _checks.as_int(
        "cache_bytes", knobs.CACHE_BYTES if cache_bytes is None else cache_bytes, minimum=0
    )


def threads_for(kern: ModuleType, runs: int, work: float, threads: int | None = None) -> int:
    """Threads for one call: the caller's (at most one per run), or by default one per run up
    to the backend's count when the work pays for a parallel launch, else one."""
    if threads is not None:
        return max(1, min(threads, runs))
    if work < knobs.PARALLEL_MIN_WORK:
        return 1
    return max(1, min(runs, kern.threads()))


def run(
    call: Call,
    *,
    backend: str | None = None,
    threads: int | None = None,
    progress: bool | str = False,
    warn: bool = True,
    client: Any = None,
) -> Launched:
    """Run ``call`` on ``backend`` (steps 1–6 of the module docstring); outputs are written
    into ``call.values``. With a Dask ``client``, the runs are spread over its cluster
    (:func:`fastperm.distributed.spread`) and the same outputs written."""
    if client is not None:
        from . import distributed  # (imports this module: late, one way)

        done = distributed.spread(client, call, backend, threads, progress)
        _finish(call, warn)
        return done
    spec = contract.FAMILIES[call.family]
    kern = backends.get(backend, needs=call.family, kind=call.kind)
    if call.dtype not in getattr(kern, contract.DTYPES_ATTR, ("float64",)):
        raise ValueError(
            f"dtype={call.dtype!r} (given, or the dtype of the result resumed): backend "
            f"{kern.name!r} computes in float64 only; float32 runs on the numba backend"
        )
    nthreads = threads_for(kern, call.runs, call.work, threads)
    values = dict(call.values)
    cache = False
    if "cache" in spec.arg_names:
        holders = call.runs if getattr(kern, "CACHE_PER_RUN", False) else nthreads
        cache = (
            call.cache_bytes_per_holder > 0
            and holders * call.cache_bytes_per_holder <= call.cache_bytes
        )
        values["cache"] = cache
    compile_seconds = compile_kernels(kern, call.family, call.dtype)
    fn = getattr(kern, call.family)
    spans = step_spans(call, nthreads, progress)
    chunks = _chunks(call.runs, progress, nthreads) if len(spans) == 1 else [(0, call.runs)]
    bar = None
    if len(spans) > 1 and progress:
        bar = progress_bar(progress, call.runs * call.values["steps"], unit="step")
    elif len(chunks) > 1:
        bar = progress_bar(progress, call.runs)
    before = kern.threads()
    # the drivers use min(runs, threads()) chunks: set the count only if that would differ
    changed = nthreads != min(call.runs, before)
    if changed:
        _set_threads(kern, nthreads)
        nthreads = min(nthreads, kern.threads())  # a backend may run fewer (a forked child)
    try:
        t0 = time.perf_counter()
        if len(spans) > 1:
            try:
                _over_steps(fn, spec, values, spans, bar)
            except Interrupted:  # the steps done: a run diverged in them is NaN there too
                _finish(call, warn=False)
                raise
            chunks = []
        for lo, hi in chunks:
            if len(chunks) == 1:
                args = [values[name] for name in spec.arg_names]
            else:  # a chunk of runs: its slice of every per-run argument (a shared start stays)
                args = [
                    values[name][lo:hi]
                    if name in spec.per_run and values[name].shape[0] == call.runs
                    else values[name]
                    for name in spec.arg_names
                ]
            fn(*args)
            if bar is not None:
                bar.update(hi - lo)
        seconds = time.perf_counter() - t0
    finally:
        if changed:
            kern.set_threads(before)
        if bar is not None:
            bar.close()
    _finish(call, warn)  # (the outputs were written in place: values holds call's arrays)
    return Launched(kern.name, seconds, compile_seconds, nthreads, cache)


def _finish(call: Call, warn: bool) -> None:
    """After the kernels: a diverged run's last parameters are whatever overflowed first,
    which depends on each backend's order of operations: one answer everywhere, NaN (as its
    loss from then on); one divergence warning unless the caller warns itself (a caller that
    runs one call in parts, or several calls)."""
    values = call.values
    diverged = values["status_out"] >= 0
    for name in ("w_out", "theta_out"):
        if name in values and diverged.any():
            values[name][diverged] = np.nan
    if diverged.any():
        for name in contract.FAMILIES[call.family].recorded:
            nan_past_divergence(values[name], values["loss_out"])
    seeds = call.seeds if call.seeds is not None else values.get("seeds")
    if warn:
        warn_divergence(
            values["status_out"],
            values["lr"],
            seeds,
            values["record_steps"][:-1],
            values["loss_out"],
        )


def nan_past_divergence(rec: FloatArray, loss: FloatArray) -> None:
    """A recorded output's records past a divergence (NaN losses) are NaN: the kernels stop
    writing there (contract)."""
    if rec.shape[1]:
        rec[np.isnan(loss)] = np.nan


def compile_kernels(kern: ModuleType, family: str, dtype: str = "float64") -> float:
    """Compile (or load from the cache) ``family``'s kernels, outside any timing; say so on
    stderr if it takes longer than :data:`fastperm.knobs.COMPILE_NOTICE_SECONDS` (the first
    call after an install compiles for ~20 s and would otherwise look hung). Returns the
    seconds it took."""
    said = threading.Event()

    def notice() -> None:
        said.set()
        sys.stderr.write(
            f"fastperm: compiling the {kern.name} kernels for {family} (first run after an "
            "install or upgrade; cached for later runs) ...\n"
        )
        sys.stderr.flush()

    timer = threading.Timer(knobs.COMPILE_NOTICE_SECONDS, notice)
    timer.daemon = True
    t0 = time.perf_counter()
    timer.start()
    try:
        kern.compile((family,)) if dtype == "float64" else kern.compile((family,), dtype=dtype)
    finally:
        timer.cancel()
    seconds = time.perf_counter() - t0
    if said.is_set():
        sys.stderr.write(f"fastperm: compiled in {seconds:.0f} s\n")
    return seconds


def run_to_result(
    call: Call,
    result: Callable[[Launched | None, int], Any],
    steps: int,
    **options: Any,
) -> Any:
    """:func:`run` ``call`` and return ``result(done, steps)``; on Ctrl-C the
    :class:`Interrupted` raised carries ``result(None, steps done)`` (the front ends'
    result builders: what a run split into parts keeps)."""
    try:
        done = run(call, **options)
    except Interrupted as exc:
        exc.result = result(None, exc.step)
        raise
    return result(done, steps)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped a training call between two of its parts.

    A KeyboardInterrupt (``except KeyboardInterrupt`` catches it), raised within about a
    second of the signal, with what was computed up to the last completed part: ``step``
    (steps every run completed, counted from the call's start) and, from
    :func:`fastperm.train`, :func:`fastperm.train_many` and :func:`fastperm.resume`,
    ``result`` (a :class:`fastperm.TrainResult` of those steps, which :func:`fastperm.resume`
    continues; ``None`` for ``train_many`` over several problems, whose later problems had
    not started). The process stays usable.
    """

    def __init__(self, step: int, result: Any = None) -> None:
        super().__init__(f"interrupted after step {step}")
        self.step = step
        self.result = result


@dataclass(frozen=True)
class _Progress:
    """State of a call run in step spans after ``step`` steps: the runs' parameters ``W``,
    which runs still run, and their statuses."""

    step: int
    W: FloatArray
    alive: IntArray
    status: IntArray


def step_spans(call: Call, threads: int, progress: bool | str) -> list[tuple[int, int]]:
    """The step ranges ``[a, b)`` a call of a family with ``start_step`` runs in: parts of
    about :data:`fastperm.knobs.INTERRUPT_WORK` element operations per thread, so that
    Ctrl-C is honoured (and a progress bar moves) between parts; at least
    :data:`fastperm.knobs.PROGRESS_CHUNKS` parts with a progress bar. One span otherwise.
    Splitting never changes the result (a test checks it bitwise)."""
    steps = call.values.get("steps", 0)
    if "start_step" not in contract.FAMILIES[call.family].arg_names or steps < 2:
        return [(0, steps)]
    per_thread = call.work / max(1, min(call.runs, threads))
    parts = max(1, math.ceil(per_thread / knobs.INTERRUPT_WORK))
    if progress:
        parts = max(parts, knobs.PROGRESS_CHUNKS)
    size = max(1, math.ceil(steps / parts))
    if call.cache_bytes_per_holder:  # each part draws the fixed copies again
        size = max(size, knobs.PART_MIN_EPOCHS * call.values["X"].shape[0])
    first = size
    if "resync" in call.values:  # parts end where the dual form resynchronises anyway: at
        period = call.values["resync"]  # the run's steps that are multiples of resync
        size = -(-size // period) * period
        first = (-call.values["start_step"]) % period or size
    if first >= steps:
        return [(0, steps)]
    edges = [0, *range(first, steps, size), steps]
    return list(zip(edges[:-1], edges[1:], strict=True))


def _over_steps(
    fn: Any, spec: contract.Family, values: dict[str, Any], spans: list[tuple[int, int]], bar: Any
) -> None:
    """Run a family with ``start_step`` as consecutive calls over ``spans``, each starting
    from the last one's parameters (the family's ``state``), and write the outputs as one
    call would. A part is committed in a single assignment once its kernel returned; on
    Ctrl-C the outputs hold the committed parts and :class:`Interrupted` is raised."""
    rec = values["record_steps"]
    start, final = spec.state
    R, P = values[final].shape
    t0 = int(values["start_step"])
    # a part's recorded values go straight into their columns (past the committed step they
    # are ignored on Ctrl-C); only the small state is committed, in one assignment
    for name in spec.recorded:
        values[name][:] = np.nan
    W0 = np.ascontiguousarray(np.broadcast_to(values[start], (R, P)))
    state = _Progress(0, W0, np.arange(R), np.full(R, -1, dtype=np.int64))
    try:
        for a, b in spans:
            alive = state.alive
            inside = np.flatnonzero((rec[:-1] > a) & (rec[:-1] <= b))  # global columns
            # no record at b unless wanted: a loss computed there could overflow before
            # the parameters do and stop the run where one call would not
            local = np.array([0, *(rec[inside] - a), b - a + 1], dtype=np.int64)
            args = dict(values)
            for name in spec.role("run"):
                args[name] = values[name][alive]
            for name in spec.recorded:
                full = values[name]
                cols = local.size - 1 if full.shape[1] else 0
                args[name] = np.empty((alive.size, cols, *full.shape[2:]), full.dtype)
            args.update(
                {start: state.W[alive], final: np.empty((alive.size, P), W0.dtype)},
                steps=b - a,
                start_step=t0 + a,
                record_steps=local,
                status_out=np.empty(alive.size, dtype=np.int64),
            )
            fn(*[args[name] for name in spec.arg_names])
            for name in spec.recorded:
                part, full = args[name], values[name]
                if not full.shape[1]:
                    continue
                nan_past_divergence(part, args["loss_out"])
                full[np.ix_(alive, inside)] = part[:, 1 : 1 + inside.size]
                if a == 0:
                    full[:, 0] = part[:, 0]
            W, status = state.W.copy(), state.status.copy()
            W[alive] = args[final]
            stopped = args["status_out"] >= 0
            status[alive[stopped]] = a + args["status_out"][stopped]
            state = _Progress(b, W, alive[~stopped], status)
            if bar is not None:
                bar.update(alive.size * (b - a))
            if state.alive.size == 0:
                break
    except KeyboardInterrupt:  # the outputs get the committed parts, then the caller knows
        interrupted = True
    else:
        interrupted = False
    values[final][:] = state.W
    values["status_out"][:] = state.status
    if interrupted:
        raise Interrupted(state.step)


def _set_threads(kern: ModuleType, n: int) -> None:
    try:
        kern.set_threads(n)
    except ValueError as exc:
        raise ValueError(
            f"threads = {n} is more than backend {kern.name!r} allows: {exc}"
        ) from None


def _chunks(runs: int, progress: bool | str, threads: int) -> list[tuple[int, int]]:
    if not progress or runs <= 1:
        return [(0, runs)]
    size = max(1, -(-runs // knobs.PROGRESS_CHUNKS), threads)
    return [(lo, min(lo + size, runs)) for lo in range(0, runs, size)]


def progress_bar(progress: bool | str, total: int, unit: str = "run") -> Any:  # a tqdm bar
    """A tqdm bar over ``total`` runs (or steps); ``progress`` is True or its label."""
    from tqdm.auto import tqdm

    label = progress if isinstance(progress, str) else f"{unit}s"
    return tqdm(total=total, unit=unit, desc=label, unit_scale=unit == "step")


def warn_divergence(
    status: IntArray,
    lr: FloatArray,
    seeds: npt.NDArray[Any] | None,
    steps_rec: IntArray,
    loss: FloatArray,
) -> None:
    """One :class:`DivergenceWarning` for a call whose runs diverged (the first such run's
    step, last finite loss, and how many), pointing at the caller's line outside fastperm."""
    if max(status.tolist(), default=-1) < 0:
        return
    bad = np.flatnonzero(status >= 0)
    r = int(bad[0])
    ok = np.isfinite(loss[r])
    last = (
        f"last recorded loss {loss[r][ok][-1]:.6g} at step {int(steps_rec[ok][-1])}"
        if ok.any()
        else "no finite loss recorded"
    )
    seed = f"seed={int(seeds[r])}, " if seeds is not None else ""
    which = f"run {r} ({seed}lr={lr[r]:g})" if len(status) > 1 else "the run"
    more = f"; {bad.size} of {len(status)} runs diverged" if len(status) > 1 else ""
    warnings.warn(
        f"{which} diverged at step {int(status[r])} (a residual, parameter or loss "
        f"overflowed), "
        f"{last}{more}. Try a smaller lr.",
        DivergenceWarning,
        stacklevel=outside_stacklevel(),
    )


def outside_stacklevel() -> int:
    """``stacklevel`` for :func:`warnings.warn` called by our caller that names the first
    frame outside the fastperm package (the user's line)."""
    frame: FrameType | None = sys._getframe(2)
    level = 2
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] == "fastperm":
        frame, level = frame.f_back, level + 1
    return level


def k_code(k: float) -> int:
    """A validated k as the kernels take it: ``math.inf`` → :data:`contract.K_EXPECTED`."""
    return contract.K_EXPECTED if math.isinf(k) else int(k)
