"""SGD's noise equilibrium under a rescaling symmetry (issue 19). WORK IN PROGRESS: not
landed, not exported; the NumPy reference of the two-layer linear network only.

Source: Liu Ziyin, Mingze Wang, Hongchao Li, Lei Wu, "Parameter Symmetry and Noise
Equilibrium of Stochastic Gradient Descent", NeurIPS 2024 (arXiv 2402.07193), Figure 2:
f(x) = U W x with W (h × d0) and U (d2 × h), loss ½‖UWx − y‖², x ~ N(0, Σ), y = A x + σε.

For a batch of B examples, with residuals ``r_i = U W x_i − y_i``:

    R = (1/B) Σ_i r_i x_iᵀ,   g_U = R Wᵀ,   g_W = Uᵀ R,

and the charge ``C = W Wᵀ − UᵀU`` (h × h), conserved by gradient flow, changes by exactly

    C_{t+1} − C_t = η² (g_W g_Wᵀ − g_Uᵀ g_U)

at every discrete step: the first-order terms cancel, since ``g_W Wᵀ = Uᵀ R Wᵀ = Uᵀ g_U``.
Gradient descent on the population loss uses ``R = (UW − A) Σ``, the expectation of the
batch's R (``E[ε xᵀ] = 0``).

Data are drawn by fastperm's counter-based generator (:mod:`fastperm.rng`): sample j of
step t is ``z = gaussian_noise(seed, STREAM_DATA, counter(t, j), d0 + d2)``, ``x = L z[:d0]``
(Σ = L Lᵀ), ``ε = z[d0:]``; so every backend will draw the same samples.

Plan for the rest of the issue (next sessions): a kernel family ``balance_runs`` in a
``equilibrium`` module of every backend (Numba, Cython, CUDA one block per run), fused steps
recording the loss, ‖C‖_F, tracked entries of C, ‖U‖², ‖W‖² and singular values; the
scalar-output case ``uᵀ W x``; predictions (decay time ≈ B / (η² σ² d0), the balanced
equilibrium, the anisotropic direction); ``fastperm figure-equilibrium``; the deep_linear
link at k = 1, 16, ∞.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import rng
from ._typing import FloatArray

#: the stream of fastperm.rng that keys the teacher's samples (0 and 1: augmentation copies)
STREAM_DATA = 2


@dataclass(frozen=True)
class Teacher:
    """A Gaussian teacher: ``x = L z`` (Σ = L Lᵀ), ``y = A x + σ ε``."""

    A: FloatArray  # (d2, d0)
    L: FloatArray  # (d0, d0)
    sigma: float

    @property
    def sigma_x(self) -> FloatArray:
        return self.L @ self.L.T

    def sample(self, seed: int, t: int, batch: int) -> tuple[FloatArray, FloatArray]:
        """The batch of step t: ``(X (B, d0), Y (B, d2))``."""
        d2, d0 = self.A.shape
        X = np.empty((batch, d0))
        Y = np.empty((batch, d2))
        for j in range(batch):
            z = rng.gaussian_noise(seed, STREAM_DATA, rng.counter(t, j), d0 + d2)
            X[j] = self.L @ z[:d0]
            Y[j] = self.A @ X[j] + self.sigma * z[d0:]
        return X, Y

    def loss(self, U: FloatArray, W: FloatArray) -> float:
        """The population loss ``½ tr((UW − A) Σ (UW − A)ᵀ) + ½ σ² d2``."""
        E = U @ W - self.A
        return 0.5 * float(np.trace(E @ self.sigma_x @ E.T)) + 0.5 * self.sigma**2 * E.shape[0]


def batch_R(U: FloatArray, W: FloatArray, X: FloatArray, Y: FloatArray) -> FloatArray:
    """``R = (1/B) Σ_i r_i x_iᵀ`` with ``r_i = U W x_i − y_i``."""
    return (X @ W.T @ U.T - Y).T @ X / X.shape[0]


def gradients(U: FloatArray, W: FloatArray, R: FloatArray) -> tuple[FloatArray, FloatArray]:
    """``(g_U, g_W) = (R Wᵀ, Uᵀ R)``."""
    return R @ W.T, U.T @ R


def charge(U: FloatArray, W: FloatArray) -> FloatArray:
    """``C = W Wᵀ − UᵀU``."""
    return W @ W.T - U.T @ U


def run(
    teacher: Teacher,
    U0: FloatArray,
    W0: FloatArray,
    lr: float,
    steps: int,
    *,
    batch: int = 10,
    seed: int = 0,
    method: str = "sgd",
    record_every: int = 1,
) -> dict[str, FloatArray]:
    """One run (``method``: ``"sgd"`` on batches of the teacher's samples, ``"gd"`` on the
    population gradient), recording at steps 0, r, 2r, …: the population loss, ‖C‖_F,
    ‖U‖²_F, ‖W‖²_F. The readable reference; O(steps · batch · (d0 + d2)) Python draws."""
    U, W = U0.astype(float).copy(), W0.astype(float).copy()
    rec: dict[str, list[float]] = {"step": [], "loss": [], "charge": [], "u2": [], "w2": []}

    def keep(t: int) -> None:
        rec["step"].append(t)
        rec["loss"].append(teacher.loss(U, W))
        rec["charge"].append(float(np.linalg.norm(charge(U, W))))
        rec["u2"].append(float(np.sum(U * U)))
        rec["w2"].append(float(np.sum(W * W)))

    keep(0)
    for t in range(steps):
        if method == "gd":
            R = (U @ W - teacher.A) @ teacher.sigma_x
        else:
            R = batch_R(U, W, *teacher.sample(seed, t, batch))
        g_U, g_W = gradients(U, W, R)
        U, W = U - lr * g_U, W - lr * g_W
        if (t + 1) % record_every == 0 or t + 1 == steps:
            keep(t + 1)
    return {name: np.asarray(values) for name, values in rec.items()} | {"U": U, "W": W}
