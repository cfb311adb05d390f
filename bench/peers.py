"""Plain NumPy training loops (the peers fastperm is measured against) and a side-by-side table.

Each peer does the work ``fastperm.train`` does, the way a user would write it
in NumPy: one Python iteration per step, the loss recorded every step.

    python bench/peers.py                 # d = 400, n = 40, T = 20000, one thread
    python bench/peers.py --threads 2     # + train_many scaling on all threads

Importing this module has no side effects (asv imports every module here).
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np


def numpy_sgd(X, y, w_star, k, lr, steps, sampling="fixed", seed=0):
    """k = 1 or k-fold permutation augmentation, NumPy per step."""
    n, d = X.shape
    gen = np.random.default_rng(seed)
    w = np.zeros(d)
    loss = np.empty(steps + 1)
    loss[0] = np.mean((w - w_star) ** 2)
    if k > 1 and sampling == "fixed":
        blocks = [np.stack([X[i]] + [X[i][gen.permutation(d)] for _ in range(k - 1)])
                  for i in range(n)]
    for t in range(steps):
        i = t % n
        if k == 1:
            x = X[i]
            w -= lr * (x @ w - y[i]) * x
        else:
            A = blocks[i] if sampling == "fixed" else np.stack(
                [X[i]] + [X[i][gen.permutation(d)] for _ in range(k - 1)])
            w -= (lr / k) * (A.T @ (A @ w - y[i]))
        loss[t + 1] = np.mean((w - w_star) ** 2)
    return loss, w


def numpy_expected(X, y, w_star, lr, steps):
    """k = ∞ with the closed-form expected gradient, NumPy per step (O(T·d))."""
    n, d = X.shape
    s1, s2 = X.sum(1), (X * X).sum(1)
    c = (s1 * s1 - s2) / (d * (d - 1))
    a, e = s2 / d - c, y * s1 / d
    w = np.zeros(d)
    loss = np.empty(steps + 1)
    loss[0] = np.mean((w - w_star) ** 2)
    for t in range(steps):
        i = t % n
        w -= lr * (a[i] * w + (c[i] * w.sum() - e[i]))
        loss[t + 1] = np.mean((w - w_star) ** 2)
    return loss, w


def _best(fn, repeat):
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def table(d=400, n=40, steps=20000, lr=1e-3, repeat=5):
    """ns/step of fastperm (numba) and the NumPy loop for each method, measured side by side."""
    import fastperm

    p = fastperm.LinearProblem.sample(d=d, n=n, seed=0)
    methods = [("k=1", 1, "fixed"), ("k=16 fixed", 16, "fixed"), ("k=16 fresh", 16, "fresh"),
               ("k=inf", math.inf, "fixed")]
    rows = []
    for label, k, sampling in methods:
        fastperm.train(p, k, steps=10, sampling=sampling)  # compile / load the cache
        runs = [fastperm.train(p, k, lr=lr, steps=steps, sampling=sampling)
                for _ in range(repeat)]
        fp = min(r.seconds for r in runs) * 1e9 / steps
        if math.isinf(k):
            sec, _ = _best(lambda: numpy_expected(p.X, p.y, p.w_star, lr, steps), 2)
        else:
            sec, _ = _best(lambda: numpy_sgd(p.X, p.y, p.w_star, k, lr, steps, sampling), 2)
        rows.append((label, fp, sec * 1e9 / steps))
    return rows


def scaling(d=400, n=40, steps=1000, runs=64, k=16, sampling="fresh"):
    """Throughput of train_many on 1 thread and on all threads (runs·steps per second)."""
    import numba

    import fastperm

    p = fastperm.LinearProblem.sample(d=d, n=n, seed=0)
    total = numba.get_num_threads()
    out = {}
    for threads in sorted({1, total}):
        numba.set_num_threads(threads)
        fastperm.train_many(p, k, seeds=range(2), steps=5, sampling=sampling)
        best = min(fastperm.train_many(p, k, seeds=range(runs), steps=steps,
                                       sampling=sampling).seconds for _ in range(3))
        out[threads] = runs * steps / best
    numba.set_num_threads(total)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for train_many scaling (the table always uses 1)")
    args = parser.parse_args()
    import numba

    numba.set_num_threads(1)
    print(f"d=400 n=40 T={args.steps}, one thread, best of 5 (fastperm) / 2 (NumPy); "
          f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs")
    print(f"{'method':<12}{'fastperm ns/step':>18}{'NumPy loop ns/step':>20}{'speed-up':>10}")
    rows = table(steps=args.steps)
    for label, fp, nploop in rows:
        print(f"{label:<12}{fp:>18.1f}{nploop:>20.0f}{nploop / fp:>9.0f}x")
    by = {r[0]: r[1] for r in rows}
    print(f"ratios: k=16 fixed / k=inf = {by['k=16 fixed'] / by['k=inf']:.0f}, "
          f"k=16 fresh / k=inf = {by['k=16 fresh'] / by['k=inf']:.0f}, "
          f"k=inf / k=1 = {by['k=inf'] / by['k=1']:.3f}")
    if args.threads > 1:
        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
        for k, sampling in [(1, "fixed"), (16, "fixed"), (16, "fresh"), (math.inf, "fixed")]:
            tp = scaling(k=k, sampling=sampling)
            one, many = tp[1], tp[max(tp)]
            print(f"train_many 64 runs, k={k} {sampling}: {one:,.0f} steps/s on 1 thread, "
                  f"{many:,.0f} on {max(tp)}: {many / one:.2f}x")


if __name__ == "__main__":
    main()
