"""Runs spread over a Dask cluster against one local call (issue 16): runs per second.

The issue's grid: k ∈ {1, 4, 16, ∞} × 10 step sizes × 50 seeds (2000 runs), d = 400, n = 40,
1000 steps. Each layout runs the whole grid (one ``train_many`` per k), best of
``--repeats`` rounds in which the layouts take turns (all clusters stay up), after one untimed
pass that starts the workers and loads their kernels:

* ``local``: no client, the default threads (one per core for calls that pay for it);
* ``local, 1 thread``: no client, ``threads=1`` (the like-for-like base of one worker);
* ``1 worker x 1``: one worker process with one thread (the scheduling overhead);
* ``2 workers x 1``: one single-threaded worker process per core (fastperm's default layout);
* ``1 worker x 2``: one process, two threads (the kernels release the GIL).

``--via sweep`` runs the same grid through :func:`fastperm.sweep` instead (32 chunks of 70
runs: the seeds in 8 blocks per k), locally with ``threads=1`` for the like-for-like row.

::

    python bench/dask_runs.py                # add a load of your own to measure under it
    python bench/dask_runs.py --via sweep
"""

from __future__ import annotations

import argparse
import math
import os
import time
import warnings

import numpy as np

import fastperm

KS = (1, 4, 16, math.inf)


def grid(problem, client, steps, threads=None):
    lr = np.repeat(np.geomspace(1e-4, 2e-3, 10), 50)
    seeds = np.tile(np.arange(50), 10)
    t0 = time.perf_counter()
    for k in KS:
        fastperm.train_many(problem, k, seeds=seeds, lr=lr, steps=steps, record_every=100,
                            client=client, threads=threads)  # fmt: skip
    return time.perf_counter() - t0


def grid_sweep(problem, client, steps, threads=None):
    spec = dict(k=[1, 4, 16, "inf"], lr={"start": 1e-4, "stop": 2e-3, "num": 10}, seeds=50,
                d=problem.d, n=problem.n, steps=steps, record_every=100)  # fmt: skip
    t0 = time.perf_counter()
    fastperm.sweep(spec, client=client, threads=threads)
    return time.perf_counter() - t0


def main() -> None:
    from dask.distributed import Client, LocalCluster

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed passes (best kept)")
    parser.add_argument("--steps", type=int, default=1000, help="steps per run")
    parser.add_argument("--via", choices=["train_many", "sweep"], default="train_many",
                        help="one train_many per k, or one fastperm.sweep")  # fmt: skip
    args = parser.parse_args()
    run = grid if args.via == "train_many" else grid_sweep
    problem = fastperm.LinearProblem.sample(d=400, n=40, seed=0)
    runs = len(KS) * 10 * 50
    print(f"load average {os.getloadavg()[0]:.2f} at the start; {runs} runs, {args.steps} "
          f"steps, via {args.via}")  # fmt: skip
    layouts = [("local", None), ("local, 1 thread", None), ("1 worker x 1", (1, 1)),
               ("2 workers x 1", (2, 1)), ("1 worker x 2", (1, 2))]  # fmt: skip
    # every cluster up at once (idle workers cost nothing measurable) and the layouts timed
    # in turn, round after round: a change of the machine's load hits them all alike
    clusters, clients = [], {}
    for name, shape in layouts:
        client = None
        if shape is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cluster = LocalCluster(n_workers=shape[0], threads_per_worker=shape[1],
                                       dashboard_address=None)  # fmt: skip
                client = Client(cluster)
            clusters.append((client, cluster))
        clients[name] = client
        threads = 1 if name == "local, 1 thread" else None
        run(problem, client, 50, threads)  # untimed: workers start and load their kernels
    best = {name: math.inf for name, _ in layouts}
    for _ in range(args.repeats):
        for name, _ in layouts:
            threads = 1 if name == "local, 1 thread" else None
            best[name] = min(best[name], run(problem, clients[name], args.steps, threads))
    for client, cluster in clusters:
        client.close()
        cluster.close()
    rate = {name: runs / seconds for name, seconds in best.items()}
    for name, _ in layouts:
        print(f"{name:15} {rate[name]:8.0f} runs/s ({best[name]:.2f} s)")
    print(
        f"2 workers / 1 worker: {rate['2 workers x 1'] / rate['1 worker x 1']:.2f}x; "
        f"1 worker / local on 1 thread: {rate['1 worker x 1'] / rate['local, 1 thread']:.2f}x; "
        f"2 workers / local: {rate['2 workers x 1'] / rate['local']:.2f}x; "
        f"load average {os.getloadavg()[0]:.2f} at the end"
    )


if __name__ == "__main__":
    main()
