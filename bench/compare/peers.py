"""The peers fastperm is measured against, and a side-by-side table.

Each peer does the work ``fastperm.train`` does (same data, same step rule,
loss recorded every step, float64), the way a user would write it:

* ``numpy``: a plain NumPy loop, one Python iteration per step;
* ``jax``: ``jax.jit`` of a ``lax.scan`` over steps (float64 enabled), when installed;
* ``torch``: a PyTorch loop over steps on the CPU, when installed.

Their permutations come from each library's own generator, so the curves
match fastperm's only for k = 1 and k = ∞; the cost is what is compared.

    python bench/compare/peers.py                # ns/step table, d = 400, n = 40, T = 20000
    python bench/compare/peers.py --threads 2    # + train_many scaling on all threads
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np

from fastperm.augment import coefficients


def numpy_sgd(X, y, w_star, k, lr, steps, sampling="fixed", seed=0):
    """k = 1 or k-fold permutation augmentation, NumPy per step."""
    n, d = X.shape
    gen = np.random.default_rng(seed)
    w = np.zeros(d)
    loss = np.empty(steps + 1)
    loss[0] = np.mean((w - w_star) ** 2)
    if k > 1 and sampling == "fixed":
        blocks = [
            np.stack([X[i]] + [X[i][gen.permutation(d)] for _ in range(k - 1)]) for i in range(n)
        ]
    for t in range(steps):
        i = t % n
        if k == 1:
            x = X[i]
            w -= lr * (x @ w - y[i]) * x
        else:
            A = (
                blocks[i]
                if sampling == "fixed"
                else np.stack([X[i]] + [X[i][gen.permutation(d)] for _ in range(k - 1)])
            )
            w -= (lr / k) * (A.T @ (A @ w - y[i]))
        loss[t + 1] = np.mean((w - w_star) ** 2)
    return loss, w


def numpy_expected(X, y, w_star, lr, steps):
    """k = ∞ with the closed-form expected gradient, NumPy per step (O(T·d))."""
    n, d = X.shape
    a, c, e = coefficients(X, y, "permutation")  # the per-step loop is what is timed
    w = np.zeros(d)
    loss = np.empty(steps + 1)
    loss[0] = np.mean((w - w_star) ** 2)
    for t in range(steps):
        i = t % n
        w -= lr * (a[i] * w + (c[i] * w.sum() - e[i]))
        loss[t + 1] = np.mean((w - w_star) ** 2)
    return loss, w


def jax_runner(X, y, w_star, k, lr, steps, sampling="fixed", seed=0):
    """A zero-argument callable running one jitted ``lax.scan`` training run (compiled on first
    call)."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    n, d = X.shape
    Xj, yj, ws = jnp.asarray(X), jnp.asarray(y), jnp.asarray(w_star)
    key = jax.random.PRNGKey(seed)

    def permuted(x, keys):
        perms = jax.vmap(lambda kk: jax.random.permutation(kk, d))(keys)
        return jnp.concatenate([x[None, :], x[perms]], axis=0)

    if math.isinf(k):
        a, c, e = (jnp.asarray(v) for v in coefficients(X, y, "permutation"))

        def update(w, t):
            i = t % n
            return w - lr * (a[i] * w + (c[i] * w.sum() - e[i]))
    elif k == 1:

        def update(w, t):
            i = t % n
            return w - lr * (Xj[i] @ w - yj[i]) * Xj[i]
    elif sampling == "fixed":
        keys = jax.random.split(key, n * (k - 1)).reshape(n, k - 1, -1)
        blocks = jax.vmap(permuted)(Xj, keys)

        def update(w, t):
            A = blocks[t % n]
            return w - (lr / k) * (A.T @ (A @ w - yj[t % n]))
    else:

        def update(w, t):
            i = t % n
            A = permuted(Xj[i], jax.random.split(jax.random.fold_in(key, t), k - 1))
            return w - (lr / k) * (A.T @ (A @ w - yj[i]))

    def step(w, t):
        w = update(w, t)
        return w, jnp.mean((w - ws) ** 2)

    run = jax.jit(lambda w0: jax.lax.scan(step, w0, jnp.arange(steps)))
    w0 = jnp.zeros(d)
    return lambda: jax.block_until_ready(run(w0))


def torch_runner(X, y, w_star, k, lr, steps, sampling="fixed", seed=0):
    """A zero-argument callable running one PyTorch training loop (one thread, float64)."""
    import torch

    torch.set_num_threads(1)
    n, d = X.shape
    Xt, yt, ws = (torch.as_tensor(np.ascontiguousarray(a)) for a in (X, y, w_star))
    gen = torch.Generator().manual_seed(seed)

    def block(i):
        perms = torch.stack([torch.randperm(d, generator=gen) for _ in range(k - 1)])
        return torch.cat([Xt[i][None, :], Xt[i][perms]])

    if math.isinf(k):
        a, c, e = (torch.as_tensor(v) for v in coefficients(X, y, "permutation"))
    elif k > 1 and sampling == "fixed":
        blocks = [block(i) for i in range(n)]

    def run():
        w = torch.zeros(d, dtype=torch.float64)
        loss = torch.empty(steps + 1, dtype=torch.float64)
        loss[0] = ((w - ws) ** 2).mean()
        for t in range(steps):
            i = t % n
            if math.isinf(k):
                w = w - lr * (a[i] * w + (c[i] * w.sum() - e[i]))
            elif k == 1:
                w = w - lr * (Xt[i] @ w - yt[i]) * Xt[i]
            else:
                A = blocks[i] if sampling == "fixed" else block(i)
                w = w - (lr / k) * (A.T @ (A @ w - yt[i]))
            loss[t + 1] = ((w - ws) ** 2).mean()
        return loss, w

    return run


def _require_timed(backend):
    """ImportError (a skip) for a fastperm backend that is missing or only simulated here."""
    import fastperm

    if backend not in fastperm.backends.available():
        raise ImportError(f"fastperm backend {backend!r} is not available")
    if backend == "cuda" and fastperm.backends.get("cuda").SIMULATOR:
        raise ImportError("the cuda backend runs on the simulator here: not timed")


def runner(contender, problem, k, lr, steps, sampling="fixed", seed=0):
    """A zero-argument callable doing one training run with ``contender``.

    ``contender`` is ``"fastperm-<backend>"`` (the primal loop), ``"fastperm-dual"`` (the Gram
    form, numba), ``"numpy"``, ``"jax"`` or ``"torch"``.
    Raises ImportError when the library is not installed.
    """
    X, y, ws = problem.X, problem.y, problem.w_star
    if contender == "fastperm-dual":  # the Gram form of plain and fixed k-fold SGD (numba)
        import fastperm

        if math.isinf(k) or sampling == "fresh":
            raise ImportError("the dual form runs plain and fixed k-fold SGD only")
        return lambda: fastperm.train(
            problem, k, lr=lr, steps=steps, sampling=sampling, seed=seed, algorithm="dual"
        )
    if contender.startswith("fastperm-"):
        import fastperm

        backend = contender.split("-", 1)[1]
        _require_timed(backend)
        return lambda: fastperm.train(  # the literal loop, as the other contenders run it
            problem, k, lr=lr, steps=steps, sampling=sampling, seed=seed, backend=backend,
            algorithm="primal",
        )  # fmt: skip
    if contender == "numpy":
        if math.isinf(k):
            return lambda: numpy_expected(X, y, ws, lr, steps)
        return lambda: numpy_sgd(X, y, ws, k, lr, steps, sampling, seed)
    if contender == "jax":
        return jax_runner(X, y, ws, k, lr, steps, sampling, seed)
    if contender == "torch":
        return torch_runner(X, y, ws, k, lr, steps, sampling, seed)
    raise ValueError(f"unknown contender {contender!r}")


def _best(fn, repeat):
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def table(d=400, n=40, steps=20000, lr=1e-3, repeat=5):
    """ns/step of fastperm (numba, ``fastperm.timing.measure``) and the NumPy loop for each
    method, measured side by side."""
    import fastperm
    from fastperm import timing

    p = fastperm.LinearProblem.sample(d=d, n=n, seed=0)
    fp = timing.measure(p, list(timing.METHODS), steps=steps, repeat=repeat, lr=lr)
    rows = []
    for label, (k, sampling) in timing.METHODS.items():
        if math.isinf(k):
            sec, _ = _best(lambda: numpy_expected(p.X, p.y, p.w_star, lr, steps), 2)
        else:
            sec, _ = _best(
                lambda k=k, s=sampling: numpy_sgd(p.X, p.y, p.w_star, k, lr, steps, s), 2
            )
        rows.append((label, fp[label], sec * 1e9 / steps))
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
        best = min(
            fastperm.train_many(p, k, seeds=range(runs), steps=steps, sampling=sampling).seconds
            for _ in range(3)
        )
        out[threads] = runs * steps / best
    numba.set_num_threads(total)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads for train_many scaling (the table always uses 1)",
    )
    args = parser.parse_args()
    import numba

    numba.set_num_threads(1)
    print(
        f"d=400 n=40 T={args.steps}, one thread, best of 5 (fastperm) / 2 (NumPy); "
        f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs"
    )
    print(f"{'method':<12}{'fastperm ns/step':>18}{'NumPy loop ns/step':>20}{'speed-up':>10}")
    rows = table(steps=args.steps)
    for label, fp, nploop in rows:
        print(f"{label:<12}{fp:>18.1f}{nploop:>20.0f}{nploop / fp:>9.0f}x")
    by = {r[0]: r[1] for r in rows}
    print(
        f"ratios: k=16 fixed / k=inf = {by['k=16 fixed'] / by['k=inf']:.0f}, "
        f"k=16 fresh / k=inf = {by['k=16 fresh'] / by['k=inf']:.0f}, "
        f"k=inf / k=1 = {by['k=inf'] / by['k=1']:.3f}"
    )
    if args.threads > 1:
        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
        for k, sampling in [(1, "fixed"), (16, "fixed"), (16, "fresh"), (math.inf, "fixed")]:
            tp = scaling(k=k, sampling=sampling)
            one, many = tp[1], tp[max(tp)]
            print(
                f"train_many 64 runs, k={k} {sampling}: {one:,.0f} steps/s on 1 thread, "
                f"{many:,.0f} on {max(tp)}: {many / one:.2f}x"
            )


if __name__ == "__main__":
    main()
