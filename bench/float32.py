"""float32 against float64 training (issue 15, item 6): what halving the memory traffic buys.

``dtype="float32"`` stores w, the examples and their copies in float32 (dot products and
losses accumulate in float64). This prints the kernel time per step (``TrainResult.seconds``,
best of ``--repeats``, the two dtypes interleaved so that a change of load hits both alike)
for one run at sizes that fit in cache and sizes that do not, and the ratio::

    python bench/float32.py            # add a load of your own to measure under it
"""

from __future__ import annotations

import argparse
import math
import os

import fastperm

# (k, sampling, d, n, steps): memory per run is n·d (examples) or n·k·d (the fixed copies)
CASES = [
    (1, "fixed", 400, 40, 2_000_000),
    (1, "fixed", 100_000, 40, 4_000),
    (16, "fixed", 400, 40, 200_000),
    (16, "fixed", 20_000, 40, 2_000),
    (16, "fresh", 20_000, 40, 1_000),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="calls per dtype (best kept)")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} at the start; numba backend, one run")
    for k, sampling, d, n, steps in CASES:
        problem = fastperm.LinearProblem.sample(d=d, n=n, seed=0)
        lr = 0.2 / d  # ||x||² ≈ d: a stable step for every size
        kw = dict(steps=steps, sampling=sampling, lr=lr, record_every=steps, backend="numba")
        best = {"float64": math.inf, "float32": math.inf}
        for dtype in best:  # compiled outside the timings
            fastperm.train(problem, k, **dict(kw, steps=2 * n + 1, record_every=1), dtype=dtype)
        for _ in range(args.repeats):
            for dtype in best:
                res = fastperm.train(problem, k, dtype=dtype, **kw)
                best[dtype] = min(best[dtype], res.seconds)
        ns = {dtype: best[dtype] * 1e9 / steps for dtype in best}
        cache = f"cache {n * k * d * 8 / 2**20:.0f} MiB in float64" if k > 1 else ""
        print(
            f"k = {k:>2} {sampling:5} d = {d:>7,} n = {n}: float64 {ns['float64']:10.1f} ns/step, "
            f"float32 {ns['float32']:10.1f} ns/step, ratio {ns['float64'] / ns['float32']:.2f}x "
            f"{cache}"
        )
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
