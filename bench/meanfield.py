"""Mean-field SGD of N tanh particles (issue 20), side by side, and the RMD's cost.

    python bench/meanfield.py            # the table (~2 min on 2 cores)
    python bench/meanfield.py --load     # the same with a busy process on one core
    python bench/meanfield.py --quick    # fewer steps (a smoke run)

Online SGD with one sample per step of ``f(x) = (1/N) Σ tanh(θ_i x)`` (θ_i ∈ R^{2×2}) on an
arbitrary teacher of 4 particles, N = 500 and 5000, vanilla (one view of the sample) and
DA with the exact group average (two views), one run on one thread, timed as:

* ``fastperm`` — ``meanfield.train`` on the numba and cython backends (samples drawn by
  the counter-based generator, the same on every backend);
* ``NumPy loop`` — the same steps vectorised over the particles (``tanh(Θ x)``, the
  residual, the outer products, the update), samples from NumPy's own generator;
* ``PyTorch loop`` — the same in torch (float64, one intra-op thread, no autograd).

All best of 3, interleaved, in particle-steps per second (N × steps / seconds); fastperm
records the risk on one evaluation input only (``eval_size=1``), so its time is the
training's. Then many
runs in one call (R = 8, N = 500) on 2 threads against 1, and the RMD at N = 5000: to the
projection onto E^G (closed form), between two laws (an exact 5000 × 5000 assignment) and
to the symmetrisation (10000 × 10000).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import time

import numpy as np

#: (label, N, scheme)
WORKLOADS = (
    ("N = 500, vanilla", 500, "vanilla"),
    ("N = 500, DA exact", 500, "da"),
    ("N = 5000, vanilla", 5000, "vanilla"),
    ("N = 5000, DA exact", 5000, "da"),
)


def _spin(stop):
    while not stop.is_set():
        sum(range(10_000))


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def setting(N):
    from fastperm import meanfield as mf

    return mf.Teacher.make("arbitrary", 4, seed=1), mf.init(N, seed=0, invariant=False)


def numpy_loop(steps, N, scheme):
    T, theta0 = setting(N)
    teacher = T.particles.reshape(-1, 2, 2)
    two_views = scheme == "da"

    def run():
        rng = np.random.default_rng(0)
        theta = theta0.reshape(N, 2, 2).copy()
        for _ in range(steps):
            x = rng.standard_normal(2)
            y = np.tanh(teacher @ x).mean(axis=0)
            views = ((x, y, 0.5), (x[::-1], y[::-1], 0.5)) if two_views else ((x, y, 1.0),)
            G = np.zeros_like(theta)
            for xv, yv, w in views:
                A = np.tanh(theta @ xv)
                back = w * (A.mean(axis=0) - yv) * (1.0 - A * A)
                G += back[:, :, None] * xv[None, None, :]
            theta -= 0.1 * G
        return theta

    return run


def torch_loop(steps, N, scheme):
    import torch

    torch.set_num_threads(1)
    T, theta0 = setting(N)
    teacher = torch.tensor(T.particles.reshape(-1, 2, 2))
    two_views = scheme == "da"

    def run():
        gen = torch.Generator().manual_seed(0)
        theta = torch.tensor(theta0.reshape(N, 2, 2))
        with torch.no_grad():
            for _ in range(steps):
                x = torch.randn(2, generator=gen, dtype=torch.float64)
                y = torch.tanh(teacher @ x).mean(0)
                flip = (x.flip(0), y.flip(0), 0.5)
                views = ((x, y, 0.5), flip) if two_views else ((x, y, 1.0),)
                G = torch.zeros_like(theta)
                for xv, yv, w in views:
                    A = torch.tanh(theta @ xv)
                    back = w * (A.mean(0) - yv) * (1.0 - A * A)
                    G += back[:, :, None] * xv[None, None, :]
                theta -= 0.1 * G
        return theta

    return run


def fastperm_run(backend, steps, N, scheme, runs=1, threads=1):
    from fastperm import meanfield as mf

    T, theta0 = setting(N)

    def run():
        res = mf.train(
            T, theta0, scheme=scheme, lr=0.1, steps=steps, seeds=np.arange(runs),
            record_every=steps, eval_size=1, backend=backend, threads=threads,
        )  # fmt: skip
        return res.seconds

    run()  # compile (or load the cache) outside the timings
    return run


def measure(steps, N, scheme, backends):
    runners = {b: fastperm_run(b, steps, N, scheme) for b in backends}
    runners["NumPy loop"] = numpy_loop(steps, N, scheme)
    try:
        runners["PyTorch loop"] = torch_loop(steps, N, scheme)
    except ImportError:
        pass
    best = dict.fromkeys(runners, float("inf"))
    for _ in range(3):  # interleaved
        for name, fn in runners.items():
            seconds = fn() if name in backends else _timed(fn)
            best[name] = min(best[name], seconds)
    return best


def rmd_costs(N=5000):
    from fastperm import meanfield as mf

    g = np.random.default_rng(0)
    a, b = g.standard_normal((N, 4)), g.standard_normal((N, 4)) + 0.1
    return {
        f"to the projection (closed form), N = {N}": _timed(lambda: mf.rmd_projection(a)),
        f"between two laws ({N} × {N} assignment)": _timed(lambda: mf.rmd(a, b)),
        f"to the symmetrisation ({2 * N} × {2 * N})": _timed(lambda: mf.rmd_symmetrisation(a)),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load", action="store_true", help="keep one core busy meanwhile")
    parser.add_argument("--quick", action="store_true", help="fewer steps (a smoke run)")
    args = parser.parse_args(argv)
    from fastperm import backends

    compiled = [b for b in ("numba", "cython") if b in backends.available()]
    stop = multiprocessing.Event()
    spinner = multiprocessing.Process(target=_spin, args=(stop,), daemon=True)
    if args.load:
        spinner.start()
    try:
        busy = " + one busy core" if args.load else ""
        print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
              f"load {os.getloadavg()[0]:.2f}{busy}")  # fmt: skip
        print(f"{'workload':<20} " + " ".join(f"{n:>14}" for n in [*compiled, "NumPy loop",
              "PyTorch loop"]) + "   (million particle-steps/s, one thread)")  # fmt: skip
        for label, N, scheme in WORKLOADS:
            steps = max(20, (2_000_000 if not args.quick else 20_000) // N)  # ≥ 70 ms
            best = measure(steps, N, scheme, compiled)
            rates = {k: N * steps / v / 1e6 for k, v in best.items()}
            cells = " ".join(f"{rates.get(n, float('nan')):14.2f}" for n in
                             [*compiled, "NumPy loop", "PyTorch loop"])  # fmt: skip
            ratio = best["NumPy loop"] / best[compiled[0]] if compiled else float("nan")
            print(f"{label:<20} {cells}   {compiled[0] if compiled else ''}/NumPy {ratio:.1f}×")
        if compiled:
            steps = 400 if not args.quick else 40
            one = fastperm_run(compiled[0], steps, 500, "vanilla", runs=8, threads=1)
            two = fastperm_run(compiled[0], steps, 500, "vanilla", runs=8, threads=2)
            t1 = min(one() for _ in range(3))
            t2 = min(two() for _ in range(3))
            print(f"8 runs of N = 500 in one call: 1 thread {t1:.3f} s, 2 threads {t2:.3f} s "
                  f"({t1 / t2:.2f}×)")  # fmt: skip
        for what, seconds in rmd_costs(5000 if not args.quick else 500).items():
            print(f"RMD {what}: {seconds:.3f} s")
    finally:
        stop.set()


if __name__ == "__main__":
    main()
