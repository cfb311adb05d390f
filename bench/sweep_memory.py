"""Peak memory of a sweep whose results exceed 1 GB, streamed to a Zarr store (issue 16).

The grid: k = 1 × 10 step sizes × 2000 seeds (20 000 runs), d = 8, n = 4, 8000 steps
recorded at every step: 20 000 × 8001 float64 losses = 1.28 GB of results. The sweep runs
in a child process (locally, or with ``--workers N`` on a local Dask cluster) and writes to
a store in a temporary folder; the child's peak resident memory (``ru_maxrss``) is the
client's. For comparison the same child also reports the memory one chunk of results takes.

::

    python bench/sweep_memory.py
    python bench/sweep_memory.py --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap

CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    import fastperm
    spec = json.loads(sys.argv[1])
    workers = int(sys.argv[3])
    client = None
    if __name__ == "__main__":
        if workers:
            from dask.distributed import Client, LocalCluster
            client = Client(LocalCluster(n_workers=workers, threads_per_worker=1,
                                         dashboard_address=None))
        t0 = time.perf_counter()
        ds = fastperm.sweep(spec, store=sys.argv[2], client=client)
        seconds = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        result = ds.loss_error.size * 8
        print(json.dumps({"seconds": seconds, "peak": peak, "result": result,
                          "chunks": ds.attrs["chunks"]}))
        if client is not None:
            client.close()
    """
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=0, help="local Dask workers (0: none)")
    parser.add_argument("--seeds", type=int, default=2000, help="seeds (2000: 1.28 GB)")
    args = parser.parse_args()
    spec = dict(k=[1], lr={"start": 1e-3, "stop": 1e-2, "num": 10}, seeds=args.seeds, d=8,
                n=4, steps=8000, record_every=1, chunk_seeds=50)  # fmt: skip
    print(f"load average {os.getloadavg()[0]:.2f} at the start")
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, json.dumps(spec), os.path.join(tmp, "s.zarr"),
             str(args.workers)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
    got = json.loads(out.stdout.strip().splitlines()[-1])
    chunk = got["result"] / got["chunks"]
    print(
        f"results {got['result'] / 2**30:.2f} GiB in {got['chunks']} chunks of "
        f"{chunk / 2**20:.0f} MiB; client peak RSS {got['peak'] / 2**20:.0f} MiB "
        f"({f'{args.workers} workers' if args.workers else 'local'}); "
        f"{got['seconds']:.1f} s; load average {os.getloadavg()[0]:.2f} at the end"
    )


if __name__ == "__main__":
    main()
