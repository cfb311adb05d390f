"""The dual (Gram) form against the primal loop, side by side (issue 18).

    python bench/dual_form.py                 # table + bench/reference/dual_form.png
    python bench/dual_form.py --load          # the same with a busy process on one core
    python bench/dual_form.py --quick         # d = 400 and 10⁴ only

One run (one thread), n = 40, lr = 0.4/d, loss recorded every 100 steps. For each d and k
the two forms are timed in turn, interleaved, best of 3 (``TrainResult.seconds``: the
dual form's set-up, its copies and Gram matrix, included; compilation excluded). The
primal loop at d ≥ 10⁵ runs fewer steps (its cost per step does not depend on T); the dual
form always runs T = 20,000, its set-up spread over them as a user's run would have it.

The plot splits the dual form's ns/step into its steps, the slope
``(t(2·10⁶) − t(2·10⁴)) / (2·10⁶ − 2·10⁴)`` (long enough that the steps outweigh the set-up's
jitter at d = 10⁶), which should not grow with d, and the rest, spread
over the 20,000 steps: the set-up (the Gram matrix) and the O(N·d) passes of a run (v, the
residuals at its start, w formed at its end), which grow with d.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import time

import numpy as np

import fastperm

N_EXAMPLES = 40
T_DUAL = 20_000
T_LONG = 2_000_000
PRIMAL_STEPS = {400: 20_000, 10_000: 20_000, 100_000: 2_000, 1_000_000: 200}


def _spin(stop):
    while not stop.is_set():
        sum(range(10_000))


def best_seconds(problem, k, algorithm, steps, repeat=3):
    kw = dict(lr=0.4 / problem.d, record_every=100, algorithm=algorithm)
    fastperm.train(problem, k, steps=2, **kw)  # compile, touch the data
    return min(fastperm.train(problem, k, steps=steps, **kw).seconds for _ in range(repeat))


def measure(cases):
    rows = []
    for d, k in cases:
        problem = fastperm.LinearProblem.sample(d=d, n=N_EXAMPLES, seed=0)
        steps_p = PRIMAL_STEPS[d]
        primal = dual = dual0 = np.inf
        for _ in range(3):  # interleaved: the machine's drift hits both alike
            primal = min(primal, best_seconds(problem, k, "primal", steps_p, 1))
            dual = min(dual, best_seconds(problem, k, "dual", T_DUAL, 1))
            dual0 = min(dual0, best_seconds(problem, k, "dual", T_LONG, 1))
        slope = (dual0 - dual) / (T_LONG - T_DUAL)
        rows.append(
            {
                "d": d,
                "k": k,
                "primal": primal / steps_p * 1e9,
                "dual": dual / T_DUAL * 1e9,
                "setup": (dual - slope * T_DUAL) / T_DUAL * 1e9,
                "steps": slope * 1e9,
            }
        )
        r = rows[-1]
        print(
            f"d = {d:>9,}  k = {k:>2}  primal {r['primal']:>10,.0f}  dual {r['dual']:>8,.1f} "
            f"(set-up etc. {r['setup']:,.1f}, steps {r['steps']:,.1f}) ns/step  "
            f"{r['primal'] / r['dual']:,.1f}×",
            flush=True,
        )
    return rows


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k1 = [r for r in rows if r["k"] == 1]
    d = [r["d"] for r in k1]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.loglog(d, [r["primal"] for r in k1], "o-", label="primal loop")
    ax.loglog(d, [r["dual"] for r in k1], "s-", label="dual form, total")
    ax.loglog(d, [r["setup"] for r in k1], "^--", label="dual: set-up and O(N·d) passes")
    ax.loglog(d, [max(r["steps"], 1e-3) for r in k1], "v--", label="dual: the steps")
    ax.set_xlabel("d")
    ax.set_ylabel("ns per step (T = 20,000 for the dual form)")
    ax.set_title(f"plain SGD, n = {N_EXAMPLES}, one run, one thread")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--load", action="store_true", help="a busy process on one core meanwhile")
    ap.add_argument("--quick", action="store_true", help="d = 400 and 10⁴ only")
    ap.add_argument("--plot", default=os.path.join("bench", "reference", "dual_form.png"))
    args = ap.parse_args()
    ds = [400, 10_000] if args.quick else [400, 10_000, 100_000, 1_000_000]
    cases = [(d, 1) for d in ds] + [(10_000, 16)]
    print(
        f"{time.strftime('%Y-%m-%d %H:%M')} {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}"
        + (", one core kept busy" if args.load else ""),
        flush=True,
    )
    stop = multiprocessing.Event()
    spinner = multiprocessing.Process(target=_spin, args=(stop,)) if args.load else None
    if spinner is not None:
        spinner.start()
    try:
        rows = measure(cases)
    finally:
        if spinner is not None:
            stop.set()
            spinner.join()
    if not args.quick and not args.load:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
