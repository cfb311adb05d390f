"""Reduced brackets per second: the fused kernels against the full-array path and torch.func
(issue 17, item 2).

Workload: :func:`fastperm.timing.bracket_workload` ``"64-32-10"`` (the MLP of the digits
study, float64, inputs in [0, 1], one-hot targets), B = 32 examples, all 496 pairs a < b.
Two reductions:

``rms``
    the RMS of each pair's bracket over each named tensor (W1, b1, W2, b2) at
    ``CHECKPOINTS`` = 8 parameter vectors (θ scaled by 1, 1.01, …), i.e. one
    ``lie.tensor_rms`` call (its log-log fit included), 8 × 496 reduced brackets;
``kernel``
    the fused kernel alone (``bracket_norms`` of the backend, all 496 pairs at one θ, the
    gradients computed beforehand): the reduction's own throughput;
``logits``
    the change of the 32 examples' logits along each pair's bracket (496 × 32 × 10) at
    one θ, i.e. ``lie.bracket_logits(model, θ, X, Y, X)``.

Contenders (one Python process, the same data):

* ``fused exact`` — ``method="exact"``: forward-over-reverse products in the kernel, each
  bracket reduced in cache (numba, cython);
* ``fused fd`` — the default finite differences (order 2), reduced in the kernel;
* ``full array fd`` — ``fused=False``: the (496, P) brackets written out, reduced in NumPy
  (the path before the fused kernels);
* ``torch.func`` — what a researcher writes by hand: ``vmap(grad)`` for the gradients,
  ``vmap`` over the pairs of ``jvp`` of the gradient (forward over reverse, float64, one
  batch), then the same reduction in torch (for logits: ``vmap`` of ``jvp`` of the network);
* ``TorchModel`` — the same module through :class:`fastperm.models.TorchModel` (rms only).

Calls go round-robin (one call of every contender per round) so that drifting load hits all
alike; the table gives the median of ``--repeats`` rounds after a warm-up, as pairs ("reduced
brackets") per second and as the ratio to ``fused exact, numba``. ``--load`` adds a second
condition: one pure-Python busy loop per core besides this one (``os.cpu_count() − 1``, at
least one), started here and stopped when the condition ends.

::

    python bench/fused_reductions.py              # idle and loaded
    python bench/fused_reductions.py --no-load --repeats 30
    python bench/fused_reductions.py --no-torch      # fastperm's rows alone
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from fastperm import backends, lie, timing

CHECKPOINTS = 8
BUSY = "import time\nend = time.time() + {s}\nwhile time.time() < end:\n    pass\n"


def fastperm_contenders(model, theta, X, Y):
    cps = [theta * (1 + 0.01 * c) for c in range(CHECKPOINTS)]

    def rms(backend, **kw):
        return lambda: lie.tensor_rms(model, cps, X, Y, backend=backend, **kw)

    def logits(backend, **kw):
        return lambda: lie.bracket_logits(model, theta, X, Y, X, backend=backend, **kw)

    def kernel(backend, stencil):
        """The kernel alone at one θ, the gradients given (``kernel`` rows; per-call work of
        tensor_rms besides: the gradients, their RMS, the fit)."""
        kern = backends.get(backend)
        G, h = lie._gradients(kern, model, theta, X, Y, None, 2)
        c, w = stencil
        pairs, bounds = lie._upper_pairs(X.shape[0]), lie._bounds(model)
        out = np.empty((pairs.shape[0], len(model.tensors)))
        return lambda: kern.bracket_norms(model, theta, X, Y, G, h, c, w, pairs, bounds, out)

    out = {}
    for b in ("numba", "cython"):
        out[("kernel", f"bracket_norms exact, {b}")] = kernel(b, (np.empty(0), np.empty(0)))
        out[("kernel", f"bracket_norms fd, {b}")] = kernel(b, lie.STENCILS[2])
        out[("rms", f"fused exact, {b}")] = rms(b, method="exact")
        out[("rms", f"fused fd, {b}")] = rms(b)
        out[("rms", f"full array fd, {b}")] = rms(b, fused=False)
        out[("logits", f"fused exact, {b}")] = logits(b, method="exact")
        out[("logits", f"fused fd, {b}")] = logits(b)
    out[("logits", "full array fd, numba")] = logits("numba", fused=False)
    return out


def torch_contenders(model, theta, X, Y):
    try:
        import torch
        from torch.func import functional_call, grad, jvp, vmap
    except ImportError:
        print("(torch not installed: no torch.func rows)")
        return {}
    F = torch.nn.functional
    net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Tanh(), torch.nn.Linear(32, 10))
    net = net.double()
    with torch.no_grad():
        for p, (sl, shape) in zip(net.parameters(), model.tensors.values(), strict=True):
            p.copy_(torch.as_tensor(theta[sl]).view(shape))
    params = {k: v.detach() for k, v in net.named_parameters()}
    checkpoints = [
        {k: torch.as_tensor(theta[sl] * (1 + 0.01 * c)).view(shape) for k, (sl, shape) in
         zip(params, model.tensors.values(), strict=True)}
        for c in range(CHECKPOINTS)
    ]  # fmt: skip
    Xt, Yt = torch.as_tensor(X), torch.as_tensor(Y)
    a, b = torch.triu_indices(X.shape[0], X.shape[0], 1)

    def loss(p, x, y):
        return F.binary_cross_entropy_with_logits(functional_call(net, p, (x[None],)), y[None])

    def brackets(params=params):
        G = vmap(grad(loss), in_dims=(None, 0, 0))(params, Xt, Yt)

        def hvp(v, x, y):
            return jvp(lambda p: grad(loss)(p, x, y), (params,), (v,))[1]

        H = vmap(hvp)
        D_ab = H({k: g[a] for k, g in G.items()}, Xt[b], Yt[b])
        D_ba = H({k: g[b] for k, g in G.items()}, Xt[a], Yt[a])
        return {k: D_ab[k] - D_ba[k] for k in params}

    def rms():
        out = []
        for p in checkpoints:
            br = brackets(p)
            out.append(
                {k: v.reshape(v.shape[0], -1).pow(2).mean(dim=1).sqrt() for k, v in br.items()}
            )
        return out

    def logits():
        br = brackets()

        def along(v):
            return jvp(lambda p: functional_call(net, p, (Xt,)), (params,), (v,))[1]

        return vmap(along)(br).numpy()

    tm = __import__("fastperm").models.TorchModel(net, F.binary_cross_entropy_with_logits)
    return {
        ("rms", "torch.func by hand"): rms,
        ("rms", "TorchModel"): lambda: lie.tensor_rms(
            tm, [theta * (1 + 0.01 * c) for c in range(CHECKPOINTS)], X, Y
        ),
        ("logits", "torch.func by hand"): logits,
    }


def measure(contenders, repeats):
    for fn in contenders.values():  # warm-up: compilation, caches, torch's first calls
        fn()
    times = {key: [] for key in contenders}
    for _ in range(repeats):
        for key, fn in contenders.items():
            t0 = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t0)
    return {key: statistics.median(v) for key, v in times.items()}


def table(med, pairs, title):
    lines = [f"\n{title}", "", "| reduction | contender | ms per call | reduced brackets/s | "
             "time vs exact, numba |", "|---|---|---:|---:|---:|"]  # fmt: skip
    for what in ("kernel", "rms", "logits"):
        base = med.get(
            (what, "fused exact, numba" if what != "kernel" else "bracket_norms exact, numba")
        )
        count = pairs * (CHECKPOINTS if what == "rms" else 1)
        for (w, name), t in med.items():
            if w == what:
                ratio = f"{t / base:.2f}×" if base else "—"
                lines.append(f"| {w} | {name} | {t * 1e3:.3f} | {count / t:,.0f} | {ratio} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--no-load", action="store_true", help="skip the loaded condition")
    parser.add_argument(
        "--no-torch",
        action="store_true",
        help="fastperm's rows only (torch's own threads, working between fastperm's calls, "
        "slow the Numba kernels timed after them)",
    )
    args = parser.parse_args(argv)
    model, theta, X, Y = timing.bracket_workload("64-32-10")
    pairs = X.shape[0] * (X.shape[0] - 1) // 2
    contenders = fastperm_contenders(model, theta, X, Y)
    if not args.no_torch:
        contenders.update(torch_contenders(model, theta, X, Y))
    contenders = dict(sorted(contenders.items(), key=lambda kv: kv[0][0]))
    print(f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f}, MLP 64-32-10 float64, B = 32 ({pairs} pairs)")  # fmt: skip
    print(table(measure(contenders, args.repeats), pairs, "idle (nothing started here)"))
    if args.no_load:
        return
    n = max(1, (os.cpu_count() or 2) - 1)
    busy = [subprocess.Popen([sys.executable, "-c", BUSY.format(s=600)]) for _ in range(n)]
    try:
        time.sleep(0.5)
        med = measure(contenders, args.repeats)
    finally:
        for p in busy:
            p.terminate()
    print(table(med, pairs, f"loaded ({n} busy-loop process{'es' if n > 1 else ''})"))


if __name__ == "__main__":
    main()
