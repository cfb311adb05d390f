"""TorchModel against a hand-written torch.func loop doing the same thing (issue 17):
brackets of all pairs of B examples, as a (B, B, P) array, and the per-tensor RMS
reduction over those pairs.

The hand-written version is what a researcher would write with ``torch.func``: the
parameters as a dict, ``vmap(grad)`` for the per-example gradients, ``vmap`` over the
pairs of ``jvp`` of the gradient, in one batch, then the array filled antisymmetrically.
TorchModel adds its checks, a flat θ (views per tensor), chunks of pairs and the copy to
NumPy. Models: the MLP 64-32-10 of the digits study (float64, B = 32: 496 pairs) and a
small CNN (float32, 1×16×16 inputs, B = 16). Median of ``--repeats`` after a warm-up,
the two interleaved.

::

    python bench/torch_overhead.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch
from torch.func import functional_call, grad, jvp, vmap

from fastperm import lie, models

F = torch.nn.functional


def by_hand(net, loss_fn, X, Y):
    """All-pairs brackets with torch.func directly (parameters as a dict)."""
    params = {k: v.detach() for k, v in net.named_parameters()}

    def loss(p, x, y):
        return loss_fn(functional_call(net, p, (x[None],)), y[None])

    G = vmap(grad(loss), in_dims=(None, 0, 0))(params, X, Y)
    B = X.shape[0]
    a, b = torch.triu_indices(B, B, 1)

    def hvp(v, x, y):
        return jvp(lambda p: grad(loss)(p, x, y), (params,), (v,))[1]

    H = vmap(hvp)
    D_ab = H({k: g[a] for k, g in G.items()}, X[b], Y[b])
    D_ba = H({k: g[b] for k, g in G.items()}, X[a], Y[a])
    flat = torch.cat([(D_ab[k] - D_ba[k]).reshape(a.shape[0], -1) for k in params], dim=1)
    out = torch.zeros(B, B, flat.shape[1], dtype=flat.dtype)
    out[a, b], out[b, a] = flat, -flat
    return out.numpy()


def timed(fn, *args):
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Tanh(),
                              torch.nn.Linear(32, 10)).double()  # fmt: skip
    cnn = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.Tanh(), torch.nn.MaxPool2d(2),
                              torch.nn.Flatten(), torch.nn.Linear(8 * 7 * 7, 10))  # fmt: skip
    cases = [
        ("MLP 64-32-10, float64, B = 32", mlp, torch.randn(32, 64, dtype=torch.float64),
         (torch.rand(32, 10) > 0.5).double()),
        ("CNN 1x16x16, float32, B = 16", cnn, torch.randn(16, 1, 16, 16),
         (torch.rand(16, 10) > 0.5).float()),
    ]  # fmt: skip
    loss_fn = F.binary_cross_entropy_with_logits
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    for label, net, X, Y in cases:
        model = models.TorchModel(net, loss_fn)
        ours = lie.brackets(model, None, X, Y)
        np.testing.assert_allclose(ours, by_hand(net, loss_fn, X, Y), rtol=1e-4, atol=1e-7)
        t_ours, t_hand = [], []
        for _ in range(args.repeats):  # interleaved: a change of load hits both
            t_ours.append(timed(lie.brackets, model, None, X, Y))
            t_hand.append(timed(by_hand, net, loss_fn, X, Y))
        pairs = X.shape[0] * (X.shape[0] - 1) // 2
        mo, mh = statistics.median(t_ours), statistics.median(t_hand)
        print(f"{label}: P = {model.P}, {pairs} pairs; TorchModel {mo * 1e3:.1f} ms "
              f"({pairs / mo:,.0f} brackets/s), by hand {mh * 1e3:.1f} ms; "
              f"overhead {100 * (mo / mh - 1):+.1f}%")  # fmt: skip
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
