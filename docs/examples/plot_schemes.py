"""
Symmetry schemes: vanilla SGD, data augmentation, feature averaging, equivariance
==================================================================================

:func:`fastperm.schemes.compare` trains the linear permutation problem with
every scheme — vanilla SGD, data augmentation (DA) with ``k`` fixed copies and
with the exact expected gradient (``k = ∞``), feature averaging (FA) and an
equivariant architecture (EA, ``w ∈ span(1)``) — from a start inside the
invariant subspace ``span(1)`` (``w0 = 0``) and from one outside it, and records
the loss and the RMS distance of ``w`` to ``span(1)``.

What the figure shows (and the test suite checks exactly):

* EA never leaves ``span(1)``; neither does DA with ``k = ∞`` from an invariant
  start, where it takes exactly FA's steps (the dashed and solid lines coincide);
* from outside, DA ``k = ∞`` pulls ``w`` back to ``span(1)`` while FA keeps the
  non-invariant part of its start unchanged;
* vanilla SGD and k-fold DA follow single examples or a few copies and leave
  ``span(1)``.
"""

import matplotlib.pyplot as plt

import fastperm
from fastperm import schemes

d, n, lr = 50, 10, 4e-3
problem = fastperm.LinearProblem.sample(d=d, n=n, seed=0)
results = schemes.compare(problem, k=4, lr=lr, steps=1000, seeds=range(3), record_every=10)

styles = {
    "vanilla": ("0.45", "-"),
    "DA k=4": ("C1", "-"),
    "DA k=∞": ("C3", "--"),
    "FA": ("C2", "-"),
    "EA": ("C0", "-."),
}
fig, axes = plt.subplots(2, 2, figsize=(10, 6), sharex=True, constrained_layout=True)
for col, start in enumerate(("inside", "outside")):
    for (where, label), res in results.items():
        if where != start:
            continue
        colour, ls = styles[label]
        z = 3 if ls != "-" else 2  # dashed on top: DA k=∞ and FA coincide inside
        axes[0, col].plot(
            res.steps,
            res.loss.mean(axis=0),
            color=colour,
            ls=ls,
            zorder=z,
            label=label if col == 0 else None,
        )
        axes[1, col].plot(res.steps, res.distance.mean(axis=0), color=colour, ls=ls, zorder=z)
        print(
            f"{start:>7} {label:>8}: final loss {res.loss.mean(axis=0)[-1]:.4f}, "
            f"distance to span(1) {res.distance.mean(axis=0)[-1]:.4f}"
        )
    axes[0, col].set_title(f"start {start} span(1)", fontsize=10)
    axes[0, col].set_ylim(bottom=0)
    axes[1, col].set_ylim(bottom=0)
    axes[1, col].set_xlabel("step")
axes[0, 0].set_ylabel("mean((w − w*)²)")
axes[1, 0].set_ylabel("distance to span(1), RMS")
fig.legend(frameon=False, fontsize=9, loc="outside right center")
fig.suptitle(f"d = {d}, n = {n}, lr = {lr:g}, mean over 3 runs", fontsize=10)
plt.show()
