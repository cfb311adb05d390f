"""The noise-equilibrium study behind ``fastperm figure-equilibrium`` (issue 19).

Three experiments on :mod:`fastperm.equilibrium`'s kernels, each measured next to its
prediction:

1. **Isotropic (the paper's two-layer experiment):** ``f(x) = U W x`` with d0 = d2 = 30
   inputs and outputs, h = 40 hidden units, ``x ~ N(0, I)``, ``y = x + ε`` (σ = 1). The
   paper gives no step size, batch or step count; here B = 10, η = 0.02 (so the predicted
   e-fold time B / (η² σ² d) is 833 steps) and 10⁴ steps (12 e-fold times), from two very
   different starts (U small and W large, and the reverse), SGD over several seeds and GD
   (the population gradient) from each. Measured: the e-fold time of ‖C‖ (a fit of log ‖C‖ while
   ‖C‖ > 10× the plateau, after the loss settled), the plateau (mean over the last
   quarter), the final ‖U‖², ‖W‖² and singular values.
2. **Anisotropic inputs:** Σ = diag(s) with s spread geometrically over two decades (mean
   1), from the Euclidean-balanced minimum (U = Qᵀ, W = Q, C = 0), where GD stays. SGD
   moves to its equilibrium: W's singular values ``(s̄/s_j)^{1/4}`` and the Hessian trace
   ``2 √(d tr Σ) tr Σ^{1/2}``, below GD's ``2 d tr Σ`` (progressive flattening).
3. **The link to augmentation** (:func:`augmentation_link`): a one-hidden-layer
   ``uᵀ W x`` (:mod:`fastperm.deep_linear`) trained with Gaussian input noise, k = 1, 16,
   ∞, and plain SGD on clean inputs. The charge ``C = W Wᵀ − u uᵀ`` changes by exactly
   ``η² (g_W g_Wᵀ − g_u g_uᵀ)`` per step here too (the noise keeps the symmetry), so its
   drift is set by the second moment ``M = E[m mᵀ]`` of the step's input-side vector
   ``m`` (``g_W = u mᵀ``, ``g_u = W m``) over examples and copies; the equilibrium is
   ``W = u bᵀ`` with ``‖u‖⁴ = vᵀ M v / tr M`` (the scalar-output case of
   :mod:`fastperm.equilibrium` with Σ replaced by M). Fewer copies → more noise in M: k
   moves the equilibrium, and example order alone drives it at k = ∞; clean SGD on
   interpolable data has residuals → 0, so its charge freezes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _checks
from . import equilibrium as eq
from ._typing import FloatArray


def spectrum(d: int, spread: float = 100.0) -> FloatArray:
    """``s_j`` geometric from 1 to ``spread``, normalised to mean 1."""
    s = np.geomspace(1.0, spread, d)
    return s / s.mean()


def slowest_time(teacher: eq.Teacher, lr: float, batch: int) -> float:
    """The slowest e-fold time of the charge for A = I and diagonal Σ = diag(s).

    With ``ρ_j = s_j / mean(s)`` and, along input direction j, ``u_j w_j = 1`` and
    ``c_j = w_j² − u_j²``, the drift ``a (u_j² − ρ_j w_j²)`` (a = 1/τ,
    :func:`~fastperm.equilibrium.decay_time`) linearised at ``w_j⁴ = 1/ρ_j`` relaxes at the
    rate ``a · 2 ρ_j / (1 + ρ_j)``: the low-variance directions are the slow ones,
    ``τ_j = τ (1 + ρ_j) / (2 ρ_j)``."""
    S = teacher.sigma_x
    if teacher.d0 != teacher.d2 or not np.array_equal(teacher.A, np.eye(teacher.d0)):
        raise ValueError("slowest_time() is derived for A = I (d0 = d2)")
    if not np.array_equal(S, np.diag(np.diag(S))):
        raise ValueError("slowest_time() is derived for a diagonal input covariance")
    rho = float(np.diag(S).min() / np.diag(S).mean())
    return eq.decay_time(teacher, lr, batch) * (1 + rho) / (2 * rho)


@dataclass
class Study:
    """What :func:`run` measured.

    ``isotropic``: start name → :class:`~fastperm.equilibrium.BalanceResult` (runs: the
    SGD seeds, then GD); ``anisotropic``: one BalanceResult, the same layout; ``link``:
    :func:`augmentation_link`'s dict, or None; ``settings``; ``teachers``: the isotropic
    and anisotropic :class:`~fastperm.equilibrium.Teacher`; ``predictions``: ``tau``,
    ``plateau``, ``isotropic`` and ``anisotropic`` (:func:`~fastperm.equilibrium.equilibrium`
    of each teacher); ``table``: rows of (quantity, measured, predicted)."""

    isotropic: dict[str, eq.BalanceResult]
    anisotropic: eq.BalanceResult
    link: dict[str, Any] | None
    settings: dict[str, Any]
    teachers: tuple[eq.Teacher, eq.Teacher]
    predictions: dict[str, Any]
    table: list[tuple[str, float, float]] = field(default_factory=list)

    def save(self, path: str) -> None:
        """Write the curves, the settings and the table to a ``.npz`` (NumPy only)."""
        arrays: dict[str, Any] = {}
        for i, res in enumerate(self.isotropic.values()):
            for name in ("steps", "loss", "charge", "u2", "w2", "theta"):
                arrays[f"isotropic{i}_{name}"] = getattr(res, name)
        for name in ("steps", "loss", "charge", "u2", "w2", "theta", "theta_path"):
            arrays[f"anisotropic_{name}"] = getattr(self.anisotropic, name)
        if self.link is not None:
            arrays["link_steps"] = self.link["steps"]
            for i, item in enumerate(self.link["runs"].values()):
                arrays[f"link{i}_charge"] = item["charge"]
                arrays[f"link{i}_u2"] = item["u2"]
        info = {
            "settings": self.settings,
            "starts": list(self.isotropic),
            "link": None if self.link is None else list(self.link["runs"]),
            "table": [list(row) for row in self.table],
        }
        np.savez(path, fastperm_metadata=np.array(json.dumps(info)), **arrays)


def efold_time(
    steps: npt.NDArray[Any], charge: FloatArray, loss: FloatArray, plateau: float
) -> float:
    """The e-fold time of the mean ‖C‖ over runs: a least-squares fit of log ‖C‖ against
    the step over the records where the loss is within 1 % of its final value and ‖C‖ is
    above 10× the plateau (NaN with fewer than 3 such records)."""
    c = charge.mean(axis=0)
    ell = loss.mean(axis=0)
    settled = np.abs(ell / ell[-1] - 1) < 0.01
    first = int(np.argmax(settled)) if settled.any() else len(ell)
    use = (np.arange(len(c)) >= first) & (c > 10 * plateau)
    if use.sum() < 3:
        return float("nan")
    slope = np.polyfit(steps[use], np.log(c[use]), 1)[0]
    return float(-1.0 / slope) if slope < 0 else float("inf")


def run(
    *,
    d: int = 30,
    hidden: int = 40,
    lr: float = 0.02,
    batch: int = 10,
    steps: int | None = None,
    seeds: int = 4,
    spread: float = 100.0,
    link: bool = True,
    backend: str | None = None,
    progress: bool = False,
) -> Study:
    """Run the three experiments (module docstring); returns a :class:`Study`."""
    d = _checks.as_int("d", d, minimum=2)
    hidden = _checks.as_int("hidden", hidden, minimum=d)
    seeds = _checks.as_int("seeds", seeds, minimum=2)
    T = eq.Teacher.isotropic(d)
    if steps is None:  # 12 e-fold times, in hundreds
        steps = int(math.ceil(12 * eq.decay_time(T, lr, batch) / 100)) * 100
    steps = _checks.as_int("steps", steps, minimum=10)
    runs: dict[str, Any] = dict(
        lr=lr,
        batch=[batch] * seeds + [0],
        steps=steps,
        record_every=max(1, steps // 200),
        backend=backend,
    )
    starts = {
        "U small, W large": eq.init(T, hidden, u_scale=0.3, w_scale=3.0, seed=1),
        "U large, W small": eq.init(T, hidden, u_scale=3.0, w_scale=0.3, seed=2),
    }
    # each start its own seeds: with the same samples, SGD from two starts synchronises
    # (the same trajectory once both reached the minimum), which would hide the seed spread
    iso = {
        name: eq.train(
            T,
            th,
            seeds=[*range(i * seeds, (i + 1) * seeds), 0],
            progress=progress and f"from {name}",
            **runs,
        )
        for i, (name, th) in enumerate(starts.items())
    }
    Ta = eq.Teacher.spectrum(spectrum(d, spread))
    Q = np.eye(hidden, d)
    balanced = np.concatenate([Q.T.ravel(), Q.ravel()])
    slow = slowest_time(Ta, lr, batch)
    aniso_steps = max(steps, int(math.ceil(5 * slow / 100)) * 100)
    aniso = eq.train(
        Ta,
        balanced,
        seeds=[*range(seeds), 0],
        keep_theta=True,
        progress=progress and "anisotropic",
        **{**runs, "steps": aniso_steps, "record_every": aniso_steps // 50},
    )
    study = Study(
        iso,
        aniso,
        augmentation_link(backend=backend) if link else None,
        {
            "d": d,
            "hidden": hidden,
            "lr": lr,
            "batch": batch,
            "steps": steps,
            "anisotropic_steps": aniso_steps,
            "seeds": seeds,
            "spread": spread,
            "sigma": 1.0,
        },
        (T, Ta),
        {
            "tau": eq.decay_time(T, lr, batch),
            "plateau": eq.plateau(T, lr, batch),
            "isotropic": eq.equilibrium(T, hidden),
            "anisotropic": eq.equilibrium(Ta, hidden),
        },
    )
    study.table = _table(study)
    return study


def _table(study: Study) -> list[tuple[str, float, float]]:
    n = study.settings["seeds"]
    Ta = study.teachers[1]
    p = study.predictions
    tau, plat, pred, pa = p["tau"], p["plateau"], p["isotropic"], p["anisotropic"]
    rows: list[tuple[str, float, float]] = []
    for name, res in study.isotropic.items():
        sgd = slice(0, n)
        quarter = res.steps >= 0.75 * res.steps[-1]
        rows += [
            (
                f"{name}: e-fold time (steps)",
                efold_time(res.steps, res.charge[sgd], res.loss[sgd], plat),
                tau,
            ),
            (f"{name}: SGD plateau ‖C‖", float(res.charge[sgd][:, quarter].mean()), plat),
            (f"{name}: SGD final ‖U‖²", float(res.u2[sgd, -1].mean()), pred["u2"]),
            (f"{name}: SGD final ‖W‖²", float(res.w2[sgd, -1].mean()), pred["w2"]),
            (
                f"{name}: GD ‖C‖ kept (final / start)",
                float(res.charge[n, -1] / res.charge[n, 0]),
                1.0,
            ),
        ]
    a = study.anisotropic
    U, W = eq.split(a.theta, Ta)
    S_sgd = np.mean(eq.hessian_trace(Ta, U[:n], W[:n]))
    _, sw = a.singular_values()
    off = np.linalg.norm(U[:n] @ W[:n] - Ta.A, axis=(-2, -1)).mean()
    rows += [
        # the predictions hold at the minimum, as η → 0; at a finite η SGD sits about its
        # equilibrium at a distance ‖UW − A‖ (halving η halves the singular values' gap)
        ("anisotropic: SGD ‖UW − A‖_F (finite-η fluctuation)", float(off), 0.0),
        ("anisotropic: SGD Hessian trace", float(S_sgd), pa["hessian_trace"]),
        (
            "anisotropic: GD Hessian trace",
            eq.hessian_trace(Ta, U[n], W[n]),
            2.0 * Ta.d0 * float(np.trace(Ta.sigma_x)),
        ),
        (
            "anisotropic: SGD W largest singular value",
            float(sw[:n, -1, 0].mean()),
            float(pa["sv_W"][0]),
        ),
        (
            "anisotropic: SGD W smallest singular value",
            float(sw[:n, -1, -1].mean()),
            float(pa["sv_W"][-1]),
        ),
    ]
    if study.link is not None:
        for label, item in study.link["runs"].items():
            rows.append(
                (f"deep_linear {label}: final ‖u‖²", item["u2_final"], item["u2_predicted"])
            )
            rows.append(
                (
                    f"deep_linear {label}: ‖C‖ final / start",
                    float(item["charge"][:, -1].mean() / item["charge"][:, 0].mean()),
                    np.nan,
                )
            )
    return rows


def hessian_path(res: eq.BalanceResult, teacher: eq.Teacher) -> FloatArray:
    """The Hessian trace at each record, (runs, records), from the kept parameters."""
    if res.theta_path is None:
        raise ValueError("the Hessian trace's path needs train(..., keep_theta=True)")
    return eq.hessian_trace(teacher, *eq.split(res.theta_path, teacher))


def augmentation_link(
    *,
    d: int = 8,
    n: int = 32,
    hidden: int = 6,
    sigma: float = 0.5,
    lr: float = 0.02,
    steps: int = 64_000,
    checkpoints: int = 40,
    seeds: int = 4,
    backend: str | None = None,
) -> dict[str, Any]:
    """The charge of a one-hidden-layer ``uᵀ W x`` under Gaussian input noise (k = 1, 16,
    ∞) and plain SGD on clean inputs, on ``LinearProblem.sample(d, n)`` (noiseless labels,
    n > d: interpolable), from one imbalanced start (W large, u small); each run is chained
    over ``checkpoints`` calls of a whole number of epochs (fixed copies are keyed by
    example, so the chain is one run).

    Returns
    -------
    dict
        ``steps`` (checkpoints + 1,), ``runs``: label → ``charge``, ``u2``, ``w2`` (seeds,
        checkpoints + 1), ``u2_final`` (mean over seeds), ``u2_predicted`` (the equilibrium
        ``‖u‖⁴ = vᵀ M v / tr M`` with M from the final v, mean over seeds; NaN for clean
        SGD, whose gradients vanish at the interpolating minimum: no equilibrium to reach).
    """
    from . import LinearProblem, deep_linear

    problem = LinearProblem.sample(d=d, n=n, seed=0)
    net = deep_linear.DeepLinear([d, hidden])
    gen = np.random.default_rng(5)
    W0 = 2.0 * gen.standard_normal((hidden, d)) / math.sqrt(d)
    u0 = 0.2 * gen.standard_normal(hidden) / math.sqrt(hidden)
    theta0 = np.concatenate([W0.ravel(), u0])
    segment = max(n, (steps // checkpoints) // n * n)
    cases = {
        "k = 1": (1, sigma),
        "k = 16": (16, sigma),
        "k = ∞": (math.inf, sigma),
        "clean SGD": (1, 0.0),
    }
    out: dict[str, Any] = {
        "steps": np.arange(checkpoints + 1) * segment,
        "runs": {},
        "settings": {"d": d, "n": n, "hidden": hidden, "sigma": sigma, "lr": lr, "seeds": seeds},
    }
    for label, (k, s) in cases.items():
        theta = np.tile(theta0, (seeds, 1))
        path = [theta]
        for _ in range(checkpoints):
            res = deep_linear.train(
                problem,
                net,
                k,
                sigma=s,
                seeds=range(seeds),
                lr=lr,
                steps=segment,
                theta0=theta,
                record_every=segment,
                backend=backend,
            )
            theta = res.meta["theta"]
            path.append(theta)
        P = np.stack(path, axis=1)  # (seeds, checkpoints + 1, P)
        W = P[..., : hidden * d].reshape(seeds, -1, hidden, d)
        u = P[..., hidden * d :]
        C = W @ np.swapaxes(W, -1, -2) - u[..., :, None] * u[..., None, :]
        v = np.einsum("sh,shd->sd", u[:, -1], W[:, -1])
        clean = s == 0.0  # residuals → 0 at the interpolating minimum: no noise, no equilibrium
        pred = [
            np.nan if clean else _link_u2(problem.X, problem.y, v[r], s, k) for r in range(seeds)
        ]
        out["runs"][label] = {
            "charge": np.sqrt(np.sum(C * C, axis=(-2, -1))),
            "u2": np.sum(u * u, axis=-1),
            "w2": np.sum(W * W, axis=(-2, -1)),
            "u2_final": float(np.mean(np.sum(u[:, -1] ** 2, axis=-1))),
            "u2_predicted": float(np.mean(pred)),
        }
    return out


def _link_u2(X: FloatArray, y: FloatArray, v: FloatArray, sigma: float, k: float) -> float:
    """``√(vᵀ M v / tr M)`` with M the second moment of the step vector m over examples and
    k noisy copies at the end-to-end v: ``M = mean_i μ_i μ_iᵀ + mean_i Cov_i / k`` with
    ``μ_i = r_i x_i + σ² v`` and ``Cov_i = σ² r_i² I + σ² |v|² x_i x_iᵀ + σ² r_i (v x_iᵀ +
    x_i vᵀ) + σ⁴ (|v|² I + v vᵀ)`` (Isserlis), ``r_i = vᵀx_i − y_i``. With fixed copies
    (the study's sampling) the steps see the same k copies every epoch, so this is M's
    expectation over the draw of the copies: an approximation, within ~5 % here."""
    d = X.shape[1]
    r = X @ v - y
    mu = r[:, None] * X + sigma**2 * v
    M = mu.T @ mu / len(y)
    if math.isfinite(k) and sigma > 0:
        vv = v @ v
        cov = (
            sigma**2 * np.mean(r * r) * np.eye(d)
            + sigma**2 * vv * X.T @ X / len(y)
            + sigma**2 * (np.outer(v, r @ X) + np.outer(r @ X, v)) / len(y)
            + sigma**4 * (vv * np.eye(d) + np.outer(v, v))
        )
        M = M + cov / k
    return float(np.sqrt(v @ M @ v / np.trace(M)))
