"""The distributed twin of the run harness: a training call's runs spread over a Dask cluster.

The user builds the cluster (``dask.distributed.LocalCluster``, ``dask scheduler`` and
``dask worker`` on several machines, dask-jobqueue on a batch system) and passes its client::

    from dask.distributed import Client
    client = Client("tcp://scheduler:8786")
    res = fastperm.train_many(problem, 16, seeds=range(10_000), client=client)

``train_many``, :func:`fastperm.deep_linear.train` and :func:`fastperm.schemes.run` take
``client=``; they pass it to the run harness (``fastperm._runs.run``), which hands the
call to :func:`spread`. fastperm never imports dask itself (``import fastperm`` stays
light): it only calls the client's ``scatter``, ``submit``, ``gather``, ``cancel`` and
``nthreads``. How a call is spread:

1. the inputs every run shares (the data, one start for all runs) are scattered to every
   worker once;
2. the runs are cut into contiguous tasks of about equal estimated cost
   (:func:`task_slices`), about :data:`fastperm.knobs.DASK_TASKS_PER_THREAD` per worker
   thread, so that the workers stay busy to the end and a lost worker costs little to redo;
3. each task is a chunk of runs, run by the local harness on a worker, on one thread by
   default (the serial kernels, which release the GIL: one worker thread per core, no
   thread pool oversubscribed);
4. the outputs are gathered in order into the call's arrays.

A run depends only on its own seed, lr, start and problem, never on the other runs of its
call (the kernel contract), so the joined result is bitwise the one of the same call without
a client (tests check it). Each worker process compiles (or loads from its Numba cache) the
kernels once, at its first task.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from . import knobs
from ._runs import Call, Launched, progress_bar, run
from ._typing import FloatArray
from .backends import contract


def check_client(client: object) -> Any:
    """``client`` if it is a Dask distributed client (what fastperm calls of one), else a
    TypeError naming ``client``."""
    needed = ("scatter", "submit", "gather", "cancel", "nthreads")
    missing = [name for name in needed if not callable(getattr(client, name, None))]
    if missing:
        raise TypeError(
            "client must be a dask.distributed.Client (from dask.distributed import Client; "
            f"client = Client(...)), got {type(client).__name__} without {', '.join(missing)}"
        )
    return client


def task_slices(cost: FloatArray, tasks: int) -> list[slice]:
    """Contiguous slices of runs (``cost[r]``: run r's estimated work) into at most
    ``tasks`` parts of about equal total cost, none empty."""
    runs = cost.shape[0]
    tasks = max(1, min(tasks, runs))
    total = np.cumsum(cost, dtype=np.float64)
    targets = total[-1] * np.arange(1, tasks) / tasks
    cuts = np.unique(np.searchsorted(total, targets, side="left") + 1)
    bounds = [0, *(int(c) for c in cuts if 0 < c < runs), runs]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=False) if b > a]


def tasks_for(client: Any, runs: int) -> int:
    """Tasks for ``runs`` runs: :data:`fastperm.knobs.DASK_TASKS_PER_THREAD` per worker
    thread of the cluster, at most one per run."""
    threads = sum(client.nthreads().values()) or 1
    return max(1, min(runs, threads * knobs.DASK_TASKS_PER_THREAD))


def map_tasks(
    client: Any,
    fn: Callable[..., Any],
    shared: dict[str, Any],
    per_task: Sequence[dict[str, Any]],
    progress: bool | str = False,
) -> list[Any]:
    """``[fn(**shared, **kw) for kw in per_task]`` on the cluster, in order: ``shared`` is
    scattered to every worker once; each task's own arguments travel with it. Ctrl-C (or an
    error) cancels the tasks not yet done."""
    futures_shared = {name: scatter(client, value) for name, value in shared.items()}
    futures = [client.submit(fn, **futures_shared, **kw, pure=False) for kw in per_task]
    try:
        if progress:
            from distributed import as_completed  # the user's client comes with distributed

            bar = progress_bar(progress, len(futures), unit="task")
            try:
                for _ in as_completed(futures):
                    bar.update(1)
            finally:
                bar.close()
        return list(client.gather(futures))
    except BaseException:
        client.cancel(futures)
        raise


def scatter(client: Any, value: Any) -> Any:
    """``value`` sent to every worker once, as one object under a fresh key (a dict passed to
    ``client.scatter`` directly would be scattered entry by entry under keys shared with
    other calls' entries); returns its future."""
    return client.scatter([value], broadcast=True, hash=False)[0]


def completed(client: Any, futures: Sequence[Any]) -> Iterator[tuple[int, Any]]:
    """``(index, result)`` of each future as it finishes; Ctrl-C (or an error) cancels
    those not yet done."""
    from distributed import as_completed  # the user's client comes with distributed

    index = {future.key: i for i, future in enumerate(futures)}
    try:
        for future in as_completed(futures):
            yield index[future.key], future.result()
    except BaseException:
        client.cancel(list(futures))
        raise


def run_costs(work_per_run: Sequence[float] | FloatArray) -> FloatArray:
    """Estimated costs as floats (at least 1 each: a run always costs a task something)."""
    cost = np.asarray(work_per_run, dtype=np.float64)
    return np.maximum(cost, 1.0) if cost.size else cost


def describe(client: Any, tasks: int) -> dict[str, Any]:
    """How a call was spread, for a result's metadata: tasks, workers, worker threads."""
    nthreads = client.nthreads()
    return {"tasks": tasks, "workers": len(nthreads), "worker_threads": int(sum(nthreads.values()))}


def spread(
    client: Any,
    call: Call,
    backend: str | None,
    threads: int | None,
    progress: bool | str,
) -> Launched:
    """Run ``call``'s runs as tasks on the cluster of ``client`` and write its outputs, as
    ``fastperm._runs.run`` does locally (the harness calls this for ``client=``).

    The contract lets runs be split into chunks, one kernel call each: every task is such a
    chunk, run by the local harness on a worker (one thread unless ``threads``). Inputs
    shared by every run are scattered once; a task takes its slice of the per-run ones and
    allocates its outputs on the worker.
    """
    client = check_client(client)
    family = contract.FAMILIES[call.family]
    values = call.values
    R = call.runs
    slices = task_slices(run_costs(np.full(R, call.work / max(R, 1))), tasks_for(client, R))
    outputs = family.role("output")

    def per_run(name: str) -> bool:
        return name in family.per_run and values[name].shape[0] == R and R > 1

    shared = {
        name: values[name]
        for name in family.arg_names
        if name != "cache" and name not in outputs and not per_run(name)
    }
    per_task = [
        {
            "inputs": {
                name: values[name][s]
                for name in family.arg_names
                if name not in outputs and per_run(name)
            },
            "runs": s.stop - s.start,
        }
        for s in slices
    ]
    shapes = {name: (values[name].shape[1:], values[name].dtype) for name in outputs}
    task = functools.partial(
        _run_task,
        family=call.family,
        shapes=shapes,
        work_per_run=call.work / max(R, 1),
        kind=call.kind,
        cache_bytes_per_holder=call.cache_bytes_per_holder,
        cache_bytes=call.cache_bytes,
        dtype=call.dtype,
        backend=backend,
        threads=1 if threads is None else threads,
    )
    t0 = time.perf_counter()
    parts = map_tasks(client, task, {"shared": shared}, per_task, progress)
    seconds = time.perf_counter() - t0
    for s, (outs, _) in zip(slices, parts, strict=True):
        for name in outputs:
            values[name][s] = outs[name]
    done = [launched for _, launched in parts]
    return Launched(
        done[0].backend,
        seconds,
        max(d.compile_seconds for d in done),
        done[0].threads,
        all(d.cache for d in done),
        spread={
            **describe(client, len(parts)),
            "task_seconds": sum(d.seconds for d in done),
        },
    )


def _run_task(
    shared: dict[str, Any],
    inputs: dict[str, Any],
    runs: int,
    family: str,
    shapes: dict[str, tuple[tuple[int, ...], Any]],
    work_per_run: float,
    **settings: Any,
) -> tuple[dict[str, Any], Launched]:
    """One task, on a worker: a chunk of ``runs`` runs through the local harness; returns
    its outputs and how it ran."""
    values = {**shared, **inputs}  # (Dask's serialisation keeps read-only arrays read-only)
    for name, (shape, dtype) in shapes.items():
        values[name] = np.empty((runs, *shape), dtype)
    backend, threads = settings.pop("backend"), settings.pop("threads")
    call = Call(family, values, runs, work_per_run * runs, **settings)
    done = run(call, backend=backend, threads=threads, warn=False)
    return {name: values[name] for name in shapes}, done
