"""What ``record=`` costs (issue 15, item 2): steps that are not recorded should cost nothing.

Training records the parameter error in its loop; with ``record=`` naming ``"w"``,
``"train"`` or ``"test"`` the kernels also keep w at the recorded steps (a copy of d
floats) and the losses are computed from it after the call. This prints, at d = 400,
n = 40 (and 400 held-out examples), the wall time of whole ``train`` calls (kernel, the
losses after it, allocation) for each ``record=``, side by side in one run, best of
``--repeats``, interleaved so that a change of load hits every variant alike, and the
ratio to recording the error alone::

    python bench/record_cost.py            # add a load of your own to measure under it
"""

from __future__ import annotations

import argparse
import math
import os
import time

import fastperm

RECORDS = [("error",), ("error", "w"), ("train",), ("train", "test")]
CASES = [(1, 2_000_000), (16, 200_000), (math.inf, 2_000_000)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="calls per variant (best kept)")
    parser.add_argument("--backend", default=None, help="backend (default: automatic)")
    args = parser.parse_args()
    problem = fastperm.LinearProblem.sample(d=400, n=40, seed=0, n_test=400)
    print(f"load average {os.getloadavg()[0]:.2f} at the start (d = 400, n = 40, n_test = 400)")
    for k, steps in CASES:
        for every in (steps // 10, 1000, 10):
            kw = dict(steps=steps, record_every=every, backend=args.backend)
            for names in RECORDS:  # compiled outside the timings
                fastperm.train(problem, k, **dict(kw, steps=100, record_every=10, record=names))
            best = dict.fromkeys(RECORDS, math.inf)
            for _ in range(args.repeats):
                for names in RECORDS:
                    t0 = time.perf_counter()
                    fastperm.train(problem, k, record=names, **kw)
                    best[names] = min(best[names], time.perf_counter() - t0)
            base = best[RECORDS[0]]
            cells = ", ".join(
                f"{'+'.join(names)} {best[names] * 1e9 / steps:.1f} ({best[names] / base:.2f}x)"
                for names in RECORDS
            )
            print(f"k = {k:>3}, {steps:>9,} steps, every {every:>7,}: ns/step {cells}")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
