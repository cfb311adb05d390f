"""What splitting a long call into parts costs (issue 15: Ctrl-C within a second).

Plain and k-fold calls run in parts of ``fastperm.knobs.INTERRUPT_WORK`` element
operations, each starting from the last one's w. This prints, at d = 400, n = 40, the
kernel time (``TrainResult.seconds``, best of ``--repeats``) of one long run as one call
and in parts, side by side in one run, and their ratio::

    python bench/parts_overhead.py            # add a load of your own to measure under it
"""

from __future__ import annotations

import argparse
import os

import fastperm
from fastperm import knobs

CASES = [(1, "fixed", 20_000_000), (16, "fixed", 1_000_000), (16, "fresh", 200_000)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="calls per case (best kept)")
    parser.add_argument("--backend", default=None, help="backend (default: automatic)")
    args = parser.parse_args()
    problem = fastperm.LinearProblem.sample(d=400, n=40, seed=0)
    default = knobs.INTERRUPT_WORK
    print(f"load average {os.getloadavg()[0]:.2f}; parts of {default:.0e} element operations")
    for k, sampling, steps in CASES:
        kw = dict(steps=steps, sampling=sampling, record_every=steps // 10, backend=args.backend)
        fastperm.train(problem, k, **dict(kw, steps=100))  # compiled outside the timings
        best = {}
        for name, work in (("one call", 1e18), ("parts", default)):
            knobs.INTERRUPT_WORK = work
            best[name] = min(fastperm.train(problem, k, **kw).seconds for _ in range(args.repeats))
        knobs.INTERRUPT_WORK = default
        print(
            f"k = {k:>2} {sampling:5} {steps:>10,} steps: one call {best['one call']:.3f} s, "
            f"parts {best['parts']:.3f} s, ratio {best['parts'] / best['one call']:.3f}"
        )


if __name__ == "__main__":
    main()
