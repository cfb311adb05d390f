"""
Sampled augmentation converges to the closed form like 1/sqrt(k)
================================================================

:func:`fastperm.augmented_gradient` averages the squared-loss gradient over an
example and ``k − 1`` augmented copies of it; :func:`fastperm.expected_gradient`
is the exact mean over the whole augmentation distribution, from its first two
moments, ``E[x'x'ᵀ] w − y E[x']``. The k-copy estimate is a Monte Carlo mean, so
its error falls like ``1/sqrt(k)`` (dotted reference line), for every
distribution with a closed form: permutations, Gaussian noise, random masks and
cyclic shifts.

Each point is the relative error ``‖ĝ_k − E[g]‖ / ‖E[g]‖`` averaged over
``n = 20`` examples of dimension ``d = 50`` (the rows of ``X``: one call per
``k`` and distribution).
"""

import matplotlib.pyplot as plt
import numpy as np

import fastperm
from fastperm import augment

problem = fastperm.LinearProblem.sample(d=50, n=20, seed=0)
X, y = problem.X, problem.y
w = np.random.default_rng(1).standard_normal(problem.d)  # any point will do

ks = 2 ** np.arange(1, 15)
distributions = {
    "permutation": "permutation",
    "Gaussian(σ = 0.5)": augment.Gaussian(0.5),
    "Mask(p = 0.5)": augment.Mask(0.5),
    "CyclicShift()": augment.CyclicShift(),
}

fig, ax = plt.subplots(figsize=(6.5, 4.2), constrained_layout=True)
for label, aug in distributions.items():
    exact = fastperm.expected_gradient(w, X, y, aug)  # (n, d)
    scale = np.linalg.norm(exact, axis=1)
    err = [
        np.mean(
            np.linalg.norm(
                fastperm.augmented_gradient(w, X, y, int(k), seed=0, augmentation=aug) - exact,
                axis=1,
            )
            / scale
        )
        for k in ks
    ]
    ax.loglog(ks, err, "o-", ms=3, label=label)
    print(f"{label:>18}: relative error {err[0]:.3f} at k = {ks[0]}, {err[-1]:.4f} at k = {ks[-1]}")

ax.loglog(ks, 2.0 / np.sqrt(ks), "k:", label="∝ 1/sqrt(k)")
ax.set_xlabel("k (copies per example)")
ax.set_ylabel("relative error of the k-copy gradient")
ax.set_title("augmented_gradient → expected_gradient, d = 50, mean over 20 examples", fontsize=10)
ax.legend(frameon=False, fontsize=9)
plt.show()
