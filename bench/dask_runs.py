"""Runs spread over a Dask cluster against one local call (issue 16): runs per second.

The issue's grid: k ∈ {1, 4, 16, ∞} × 10 step sizes × 50 seeds (2000 runs), d = 400, n = 40,
1000 steps. Each layout runs the whole grid (one ``train_many`` per k), best of
``--repeats``, after one untimed pass that starts the workers and loads their kernels:

* ``local``: no client, the default threads (one per core for calls that pay for it);
* ``local, 1 thread``: no client, ``threads=1`` (the like-for-like base of one worker);
* ``1 worker x 1``: one worker process with one thread (the scheduling overhead);
* ``2 workers x 1``: one single-threaded worker process per core (fastperm's default layout);
* ``1 worker x 2``: one process, two threads (the kernels release the GIL).

::

    python bench/dask_runs.py            # add a load of your own to measure under it
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


def main() -> None:
    from dask.distributed import Client, LocalCluster

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed passes (best kept)")
    parser.add_argument("--steps", type=int, default=1000, help="steps per run")
    args = parser.parse_args()
    problem = fastperm.LinearProblem.sample(d=400, n=40, seed=0)
    runs = len(KS) * 10 * 50
    print(f"load average {os.getloadavg()[0]:.2f} at the start; {runs} runs, {args.steps} steps")
    layouts = [("local", None), ("local, 1 thread", None), ("1 worker x 1", (1, 1)),
               ("2 workers x 1", (2, 1)), ("1 worker x 2", (1, 2))]  # fmt: skip
    rate = {}
    for name, shape in layouts:
        cluster = client = None
        if shape is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cluster = LocalCluster(n_workers=shape[0], threads_per_worker=shape[1],
                                       dashboard_address=None)  # fmt: skip
                client = Client(cluster)
        threads = 1 if name == "local, 1 thread" else None
        grid(problem, client, 50, threads)  # untimed: workers start and load their kernels
        best = min(grid(problem, client, args.steps, threads) for _ in range(args.repeats))
        rate[name] = runs / best
        if client is not None:
            client.close()
            cluster.close()
        print(f"{name:15} {rate[name]:8.0f} runs/s ({best:.2f} s)")
    print(
        f"2 workers / 1 worker: {rate['2 workers x 1'] / rate['1 worker x 1']:.2f}x; "
        f"1 worker / local on 1 thread: {rate['1 worker x 1'] / rate['local, 1 thread']:.2f}x; "
        f"2 workers / local: {rate['2 workers x 1'] / rate['local']:.2f}x; "
        f"load average {os.getloadavg()[0]:.2f} at the end"
    )


if __name__ == "__main__":
    main()
