"""The distributed twin of the training front ends: runs spread over a Dask cluster.

The user builds the cluster (``dask.distributed.LocalCluster``, ``dask scheduler`` and
``dask worker`` on several machines, dask-jobqueue on a batch system) and passes its client::

    from dask.distributed import Client
    client = Client("tcp://scheduler:8786")
    res = fastperm.train_many(problem, 16, seeds=range(10_000), client=client)

fastperm never imports dask itself (``import fastperm`` stays light): it only calls the
client's ``scatter``, ``submit``, ``gather`` and ``cancel``. How a call is spread:

1. the shared inputs (the problems, one start for all runs) are scattered to every worker
   once;
2. the runs are cut into contiguous tasks of about equal estimated cost
   (:func:`task_slices`: a k = 16 run costs about 16 k = 1 runs), about
   :data:`fastperm.knobs.DASK_TASKS_PER_THREAD` per worker thread, so that a grid of mixed
   costs stays balanced and a lost worker costs little to redo;
3. each task runs its runs with the local harness on the worker, on one thread by default
   (the serial kernels: one Dask thread per core, no thread pool oversubscribed);
4. the results are gathered in order and joined.

A run depends only on its own seed, lr, start and problem, never on the other runs of its
call (the kernel contract), so the joined result is bitwise the one of the same call without
a client (tests check it). Each worker process compiles (or loads from its Numba cache) the
kernels once, at its first task.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import knobs
from ._runs import progress_bar
from ._typing import FloatArray


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
    futures_shared = {
        name: client.scatter(value, broadcast=True, hash=False) for name, value in shared.items()
    }
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


def run_costs(work_per_run: Sequence[float] | FloatArray) -> FloatArray:
    """Estimated costs as floats (at least 1 each: a run always costs a task something)."""
    cost = np.asarray(work_per_run, dtype=np.float64)
    return np.maximum(cost, 1.0) if cost.size else cost


def describe(client: Any, tasks: int) -> dict[str, Any]:
    """How a call was spread, for a result's metadata: tasks, workers, worker threads."""
    nthreads = client.nthreads()
    return {"tasks": tasks, "workers": len(nthreads), "worker_threads": int(sum(nthreads.values()))}
