"""SGD steps of the two-layer linear network U W x (issue 19), side by side.

    python bench/equilibrium.py            # the table (~1 min on 2 cores)
    python bench/equilibrium.py --load     # the same with a busy process on one core
    python bench/equilibrium.py --quick    # fewer steps (a smoke run)

The paper's two-layer setting (d0 = d2 = 30, h = 40, y = x + ε), and a small network
(d = 4, h = 6), with batches of B = 10, one run on one thread, timed as:

* ``fastperm`` — ``equilibrium.train`` on the numba and cython backends (samples drawn by
  the specification's counter-based generator, the same on every backend);
* ``NumPy loop`` — the same steps in NumPy (``R = (1/B) (X Wᵀ Uᵀ − Y)ᵀ X``, two products,
  two updates), samples from NumPy's own generator (``default_rng().standard_normal``);
* ``PyTorch loop`` — the same in torch (float64, one intra-op thread, no autograd), samples
  from ``torch.randn``.

All are best of 3, interleaved. Next to them: the step's arithmetic (flops) against this
machine's double-precision matrix-product rate on one core (NumPy's BLAS, 1000 × 1000,
one thread: the practical peak), and fastperm's cost split into drawing the 600 normals of
a step (timed alone in a compiled loop) and the rest. Then many runs in one call
(R = 8) on 2 threads against 1.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import time

import numpy as np

B = 10
#: (label, d0 = d2, h): the paper's two-layer setting, and a small one where per-call
#: overheads dominate
SIZES = (("paper: d = 30, h = 40", 30, 40), ("small: d = 4, h = 6", 4, 6))


def _spin(stop):
    while not stop.is_set():
        sum(range(10_000))


def step_flops(d0, d2, h, batch=B):
    """Flops of one fused step: per sample x = L z (2 d0²), y = A x (2 d2 d0), a = W x
    (2 h d0), r = U a (2 d2 h), g_U += r aᵀ and s = Uᵀ r (4 d2 h), g_W += s xᵀ (2 h d0);
    then the update (2 P)."""
    per_sample = 2 * (d0 * d0 + d2 * d0 + 2 * h * d0 + 3 * d2 * h)
    return batch * per_sample + 2 * h * (d0 + d2)


def blas_peak(n=1000):
    """GFlop/s of one-thread DGEMM (threadpoolctl limits the BLAS to one thread)."""
    from threadpoolctl import threadpool_limits

    a = np.random.default_rng(0).standard_normal((n, n))
    with threadpool_limits(1):
        a @ a
        best = min(_timed(lambda: a @ a) for _ in range(3))
    return 2 * n**3 / best / 1e9


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def numpy_loop(steps, D, H):
    gen = np.random.default_rng(0)
    g = np.random.default_rng(1)
    U = g.standard_normal((D, H)) / np.sqrt(H)
    W = g.standard_normal((H, D)) / np.sqrt(D)
    lr = 0.02

    def run():
        nonlocal U, W
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):  # one thread, as every contender
            loop()

    def loop():
        nonlocal U, W
        for _ in range(steps):
            X = gen.standard_normal((B, D))
            Y = X + gen.standard_normal((B, D))
            R = (X @ W.T @ U.T - Y).T @ X / B
            gU, gW = R @ W.T, U.T @ R
            U = U - lr * gU
            W = W - lr * gW

    return _timed(run)


def torch_loop(steps, D, H):
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    U = torch.randn(D, H, dtype=torch.float64) / H**0.5
    W = torch.randn(H, D, dtype=torch.float64) / D**0.5
    lr = 0.02

    def run():
        nonlocal U, W
        with torch.no_grad():
            for _ in range(steps):
                X = torch.randn(B, D, dtype=torch.float64)
                Y = X + torch.randn(B, D, dtype=torch.float64)
                R = (X @ W.T @ U.T - Y).T @ X / B
                gU, gW = R @ W.T, U.T @ R
                U = U - lr * gU
                W = W - lr * gW

    return _timed(run)


def fastperm_run(backend, steps, D, H, runs=1, threads=1):
    from fastperm import equilibrium as eq

    T = eq.Teacher.isotropic(D)
    th = eq.init(T, H, seed=1)
    kw = dict(lr=0.02, batch=B, seeds=np.arange(runs), record_every=steps, threads=threads)
    eq.train(T, th, steps=2, backend=backend, **kw)  # compile / load, outside the timing
    return eq.train(T, th, steps=steps, backend=backend, **kw).seconds


def normals_alone(steps, D):
    """Seconds to draw a step's B × 2D normals, ``steps`` times, in a compiled loop."""
    from numba import njit

    from fastperm.backends.numba_cpu.rng import make_key, normal

    @njit
    def draws(steps, batch, m):
        s = 0.0
        for t in range(steps):
            for j in range(batch):
                key = make_key(np.uint64(0), 2, t, j)
                for q in range(m):
                    s += normal(key, q)
        return s

    draws(2, B, 2 * D)
    return _timed(lambda: draws(steps, B, 2 * D))


def measure(steps, D, H):
    import fastperm

    backends = [b for b in ("numba", "cython") if b in fastperm.backends.available()]
    contenders = {f"fastperm {b}": (lambda b=b: fastperm_run(b, steps, D, H)) for b in backends}
    contenders["NumPy loop"] = lambda: numpy_loop(steps, D, H)
    try:
        import torch  # noqa: F401

        contenders["PyTorch loop"] = lambda: torch_loop(steps, D, H)
    except ImportError:
        pass
    contenders["normals alone"] = lambda: normals_alone(steps, D)
    best = {name: np.inf for name in contenders}
    for _ in range(3):  # interleaved
        for name, fn in contenders.items():
            best[name] = min(best[name], fn())
    return best


def report(label, best, steps, D, H, peak):
    flops = step_flops(D, D, H)
    print(f"\n## {label}, B = {B}: {flops} flops a step")
    print(f"{'contender':<18} {'ns/step':>9} {'GFlop/s':>8} {'of DGEMM':>9}")
    for name, seconds in best.items():
        ns = seconds / steps * 1e9
        if name == "normals alone":
            print(f"{name:<18} {ns:9.0f} {'':>8} {'':>9}  ({B * 2 * D} normals a step)")
            continue
        rate = flops / ns
        print(f"{name:<18} {ns:9.0f} {rate:8.2f} {rate / peak:9.0%}")
    if "fastperm numba" in best:
        rest = (best["fastperm numba"] - best["normals alone"]) / steps * 1e9
        print(f"fastperm numba without the normals: {rest:.0f} ns/step, "
              f"{flops / rest:.2f} GFlop/s ({flops / rest / peak:.0%} of DGEMM)")  # fmt: skip


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--load", action="store_true", help="keep one core busy meanwhile")
    parser.add_argument("--quick", action="store_true", help="fewer steps (a smoke run)")
    args = parser.parse_args(argv)
    steps = 2_000 if args.quick else 20_000
    stop = multiprocessing.Event()
    spinner = None
    if args.load:
        spinner = multiprocessing.Process(target=_spin, args=(stop,), daemon=True)
        spinner.start()
    try:
        results = {label: measure(steps, D, H) for label, D, H in SIZES}
        peak = blas_peak()
        R, D, H = 8, SIZES[0][1], SIZES[0][2]
        par = {
            t: min(fastperm_run("numba", steps // 4, D, H, R, t) for _ in range(3)) for t in (1, 2)
        }
    finally:
        stop.set()
        if spinner is not None:
            spinner.join()
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load "
        f"{os.getloadavg()[0]:.2f}{', one core kept busy' if args.load else ''}; "
        f"{time.strftime('%Y-%m-%d')}; one-thread DGEMM {peak:.1f} GFlop/s"
    )
    for label, D, H in SIZES:
        report(label, results[label], steps, D, H, peak)
    print(f"\n{R} runs in one call (numba, {SIZES[0][0]}): 1 thread "
          f"{par[1] / R / (steps // 4) * 1e9:.0f} ns/run-step, 2 threads "
          f"{par[2] / R / (steps // 4) * 1e9:.0f}: {par[1] / par[2]:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
