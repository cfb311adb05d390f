"""SGD's noise equilibrium under a rescaling symmetry: two-layer linear networks.

Source: Liu Ziyin, Mingze Wang, Hongchao Li, Lei Wu, "Parameter Symmetry and Noise
Equilibrium of Stochastic Gradient Descent", NeurIPS 2024 (arXiv 2402.07193): when the loss
has a rescaling symmetry, SGD's noise drives the parameters along the symmetry to a unique
*noise equilibrium* that does not depend on the start, while gradient descent keeps
whatever imbalance it started with. The setting here is the two-layer linear network

    f(x) = U W x,   W: h × d0,   U: d2 × h,   loss ½ ‖U W x − y‖²,

on a Gaussian teacher (:class:`Teacher`): ``x = L z`` (Σ = L Lᵀ), ``y = A x + σ ε``. The
scalar-output case ``uᵀ W x`` (d2 = 1) is the one-hidden-layer
:class:`fastperm.deep_linear.DeepLinear`. The maths below is derived here, for this setting;
the paper states the general theorem.

The charge and its exact change per step
----------------------------------------
For a batch of B examples, with residuals ``r_i = U W x_i − y_i``,

    R = (1/B) Σ_i r_i x_iᵀ,   g_U = R Wᵀ,   g_W = Uᵀ R.

The *charge* ``C = W Wᵀ − UᵀU`` (h × h) is conserved by gradient flow (the symmetry
``U → U G⁻¹, W → G W``). A discrete step — SGD or GD — changes it by exactly

    C_{t+1} − C_t = η² (g_W g_Wᵀ − g_Uᵀ g_U),

since the first-order terms cancel (``g_W Wᵀ = Uᵀ R Wᵀ = Uᵀ g_U``). Gradient descent on the
population loss (``R = (UW − A) Σ``, the batch's expectation) therefore moves C by O(η²)
per step, O(η) over a fixed time η·T: it keeps its imbalance.

The drift near a minimum
------------------------
Near UW = A the residual is the label noise, ``r_i ≈ −σ ε_i``, so
``E[R Rᵀ] = (σ²/B) tr(Σ) I`` and ``E[Rᵀ R] = (σ²/B) d2 Σ``, and

    E[ΔC] ≈ (η² σ² / B) (tr(Σ) UᵀU − d2 W Σ Wᵀ).

For isotropic inputs (Σ = I) and d0 = d2 = d this is ``−(η² σ² d / B) C``: ‖C‖ decays
with the e-fold time ``τ = B / (η² σ² d)`` steps (:func:`decay_time`) to a plateau where
the drift balances the noise of ΔC (:func:`plateau`). In general the noise equilibrium is

    tr(Σ) UᵀU = d2 W Σ Wᵀ,   U W = A,

the stationary point of the Hessian trace ``S = tr(Σ) ‖U‖²_F + d2 tr(W Σ Wᵀ)`` over the
symmetry's orbit (``S(G) = tr(Σ) ‖U G⁻¹‖² + d2 ‖G W Σ^{1/2}‖²``, whose gradient vanishes
exactly there): SGD's noise moves the network to the flattest point, in this measure,
among the networks computing the same function; GD stays at the start's point. Solving it
(:func:`equilibrium`): with ``κ = d2 / tr(Σ)`` and the SVD ``A Σ^{1/2} / √κ = P S Qᵀ``,

    U = √κ P S^{1/2} Oᵀ,   W = O S^{1/2} Qᵀ Σ^{−1/2}   (O: any h × rank orthonormal),

so ``‖U‖²_F = √κ ‖A Σ^{1/2}‖_*``, ``‖W‖²_F = tr(S Qᵀ Σ⁻¹ Q)`` and
``S = 2 √(d2 tr Σ) ‖A Σ^{1/2}‖_*`` (‖·‖_*: the nuclear norm). For A = I, Σ = I, d0 = d2:
UᵀU = W Wᵀ and every singular value of U and W is 1.

*Scalar output* (d2 = 1, ``f = uᵀ W x``, target ``y = vᵀ x + σ ε``): the condition reads
``W Σ Wᵀ = tr(Σ) u uᵀ``, of rank one, so ``W Σ^{1/2}`` has rank one with its column along
u: ``W = u bᵀ``. Fitting gives ``‖u‖² b = v`` and ``bᵀ Σ b = tr Σ``, hence

    W = u vᵀ / ‖u‖²,   ‖u‖⁴ = vᵀ Σ v / tr Σ,   ‖W‖²_F = ‖v‖² / ‖u‖²:

every hidden unit's weights point along v, scaled by its output weight.

*Anisotropic inputs* (the paper's data-spectrum experiment): with A = I and
Σ = diag(s), W's singular values are ``(s̄ / s_j)^{1/4}`` (s̄ = tr Σ / d) and U's their
inverses — not 1 — and the Hessian trace at SGD's equilibrium, ``2 √(d tr Σ) tr(Σ^{1/2})``,
is below that of the Euclidean-balanced network GD reaches from a balanced start,
``2 d tr Σ``, by the ratio ``mean(√s) / √mean(s)`` ≤ 1: SGD flattens, more the more
spread the spectrum (:func:`hessian_trace`).

Data are drawn by fastperm's counter-based generator (:mod:`fastperm.rng`): sample j of
step t is ``z = gaussian_noise(seed, STREAM_DATA, counter(t, j), d0 + d2)``, ``x = L z[:d0]``,
``ε = z[d0:]``, so every backend trains on the same samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _checks, _runs
from ._typing import FloatArray, IntArray, UIntArray
from .backends.reference import equilibrium as _reference  # the samples (also the oracle)
from .results import SavedResult


@dataclass(frozen=True, eq=False)  # (compared and hashed by identity: it holds arrays)
class Teacher:
    """A Gaussian teacher: ``x = L z`` (Σ = L Lᵀ), ``y = A x + σ ε`` (z, ε standard normal).

    Parameters
    ----------
    A : (d2, d0) array
        The target map.
    L : (d0, d0) array
        The inputs' factor (Σ = L Lᵀ must be positive definite).
    sigma : float >= 0
        The labels' noise standard deviation.
    """

    A: FloatArray
    L: FloatArray
    sigma: float

    def __post_init__(self) -> None:
        A = _checks.as_float_array("A", self.A, 2)
        L = _checks.as_float_array("L", self.L, 2)
        if L.shape != (A.shape[1], A.shape[1]):
            raise ValueError(f"L must be (d0, d0) = {(A.shape[1],) * 2} for A of shape {A.shape}")
        if np.linalg.matrix_rank(L) < L.shape[0]:
            raise ValueError("L must be invertible (the inputs' covariance L Lᵀ positive definite)")
        for name, value in (("A", A), ("L", L)):  # read-only, like a LinearProblem's arrays
            value = np.array(value, dtype=np.float64, order="C")
            value.setflags(write=False)
            object.__setattr__(self, name, value)
        object.__setattr__(self, "sigma", _checks.as_nonnegative_real("sigma", self.sigma))

    @classmethod
    def isotropic(cls, d: int = 30, sigma: float = 1.0) -> Teacher:
        """``y = x + σ ε`` with ``x ~ N(0, I_d)``: the paper's two-layer experiment."""
        d = _checks.as_int("d", d, minimum=1)
        return cls(np.eye(d), np.eye(d), sigma)

    @classmethod
    def spectrum(cls, s: npt.ArrayLike, sigma: float = 1.0) -> Teacher:
        """``y = x + σ ε`` with ``x ~ N(0, diag(s))`` (anisotropic inputs, s > 0)."""
        s = _checks.as_float_array("s", s, 1)
        if s.size == 0 or np.any(s <= 0):
            raise ValueError("s must be a non-empty array of positive variances")
        return cls(np.eye(s.size), np.diag(np.sqrt(s)), sigma)

    @property
    def d0(self) -> int:
        return int(self.A.shape[1])

    @property
    def d2(self) -> int:
        return int(self.A.shape[0])

    @property
    def sigma_x(self) -> FloatArray:
        """The inputs' covariance Σ = L Lᵀ (read-only)."""
        S = self.L @ self.L.T
        S.setflags(write=False)
        return S

    def sample(self, seed: int, t: int, batch: int) -> tuple[FloatArray, FloatArray]:
        """The batch of step t as every backend draws it: ``(X (B, d0), Y (B, d2))``."""
        return _reference.samples(self.A, self.L, self.sigma, seed, t, batch)

    def loss(self, U: FloatArray, W: FloatArray) -> float:
        """The population loss ``½ ‖(UW − A) L‖²_F + ½ σ² d2``."""
        E = (U @ W - self.A) @ self.L
        return 0.5 * float(np.sum(E * E)) + 0.5 * self.sigma**2 * self.d2

    def describe(self) -> dict[str, Any]:
        return {
            "d0": self.d0,
            "d2": self.d2,
            "sigma": self.sigma,
            "A_is_identity": bool(
                self.A.shape[0] == self.A.shape[1] and np.array_equal(self.A, np.eye(self.d0))
            ),
            "sigma_x_diagonal": np.diag(self.sigma_x).tolist(),
        }


def batch_R(U: FloatArray, W: FloatArray, X: FloatArray, Y: FloatArray) -> FloatArray:
    """``R = (1/B) Σ_i r_i x_iᵀ`` with ``r_i = U W x_i − y_i``."""
    return (X @ W.T @ U.T - Y).T @ X / X.shape[0]


def gradients(U: FloatArray, W: FloatArray, R: FloatArray) -> tuple[FloatArray, FloatArray]:
    """``(g_U, g_W) = (R Wᵀ, Uᵀ R)``."""
    return R @ W.T, U.T @ R


def charge(U: FloatArray, W: FloatArray) -> FloatArray:
    """``C = W Wᵀ − UᵀU``."""
    return W @ W.T - U.T @ U


def split(theta: npt.ArrayLike, teacher: Teacher) -> tuple[FloatArray, FloatArray]:
    """``(U, W)`` from θ = [U (d2 × h), W (h × d0)] (row-major); works on (…, P) stacks."""
    return _split(np.asarray(theta), teacher.d0, teacher.d2)


def _split(theta: FloatArray, d0: int, d2: int) -> tuple[FloatArray, FloatArray]:
    h = theta.shape[-1] // (d0 + d2)
    lead = theta.shape[:-1]
    return (theta[..., : d2 * h].reshape(*lead, d2, h), theta[..., d2 * h :].reshape(*lead, h, d0))


def init(
    teacher: Teacher, hidden: int, *, u_scale: float = 1.0, w_scale: float = 1.0, seed: int = 0
) -> FloatArray:
    """A start θ = [U, W] with independent Gaussian entries of standard deviations
    ``u_scale / √h`` (U) and ``w_scale / √d0`` (W): unequal scales give an imbalanced
    start (a large charge)."""
    hidden = _checks.as_int("hidden", hidden, minimum=1)
    u_scale = _checks.as_nonnegative_real("u_scale", u_scale)
    w_scale = _checks.as_nonnegative_real("w_scale", w_scale)
    gen = np.random.default_rng(_checks.as_seed("seed", seed))
    U = gen.standard_normal((teacher.d2, hidden)) * u_scale / np.sqrt(hidden)
    W = gen.standard_normal((hidden, teacher.d0)) * w_scale / np.sqrt(teacher.d0)
    return np.concatenate([U.ravel(), W.ravel()])


@dataclass
class BalanceResult(SavedResult):
    """What :func:`train` recorded, for R runs.

    Attributes
    ----------
    steps : (records,) int array
        The runs' steps at the records (counted from the runs' start: ``start_step`` on).
    loss, charge : (runs, records)
        The population loss and ‖C‖_F after those steps (NaN past a divergence).
    entries : (runs, records, Q)
        The tracked entries ``C[a, b]`` (``track``).
    u2, w2 : (runs, records)
        ‖U‖²_F and ‖W‖²_F.
    theta : (runs, P)
        Final parameters (:func:`split` gives U and W).
    theta_path : (runs, records, P) or None
        The parameters at the records (``keep_theta=True``).
    diverged_step : (runs,) int
        -1, or the first step with a non-finite gradient or loss.
    lr, batch, seed : (runs,) the runs' settings (batch 0: the population gradient).
    track : (Q, 2) int
    seconds : float
        Wall time of the kernel calls (compilation excluded).
    backend : str
    meta : dict
        The teacher, hidden size, steps, record_every, start_step, ``steps_done`` (the
        run's steps after this call: where an interrupted one stopped), threads.
    """

    steps: IntArray
    loss: FloatArray
    charge: FloatArray
    entries: FloatArray
    u2: FloatArray
    w2: FloatArray
    theta: FloatArray
    theta_path: FloatArray | None
    diverged_step: IntArray
    lr: FloatArray
    batch: IntArray
    seed: UIntArray
    track: IntArray
    seconds: float
    backend: str
    meta: dict[str, Any] = field(default_factory=dict, repr=False)

    def singular_values(self) -> tuple[FloatArray, FloatArray]:
        """The singular values of U and of W at the records (runs, records, min(d2, h)) and
        (runs, records, min(h, d0)), descending; needs ``keep_theta=True``."""
        if self.theta_path is None:
            raise ValueError(
                "singular values need the parameters at the records: train(..., keep_theta=True)"
            )
        d0, d2 = self.meta["d0"], self.meta["d2"]
        h = self.theta.shape[-1] // (d0 + d2)
        P = self.theta_path
        U, W = _split(P, d0, d2)
        ok = np.isfinite(P).all(axis=-1)
        su = np.full((*P.shape[:-1], min(d2, h)), np.nan)
        sw = np.full((*P.shape[:-1], min(h, d0)), np.nan)
        su[ok] = np.linalg.svd(U[ok], compute_uv=False)
        sw[ok] = np.linalg.svd(W[ok], compute_uv=False)
        return su, sw

    def to_xarray(self) -> Any:
        """An ``xarray.Dataset``: ``loss``, ``charge``, ``u2``, ``w2`` (run, step),
        ``entries`` (run, step, entry), ``theta`` (run, parameter), ``theta_path``
        (run, step, parameter) when kept, ``diverged_step`` (run); coordinates ``step``,
        ``run`` and, along ``run``, ``lr``, ``batch``, ``seed``; the metadata as JSON in
        ``attrs["fastperm_metadata"]``. Needs xarray."""

        run_step = ("run", "step")
        data: dict[str, Any] = {
            "loss": (run_step, self.loss, {"long_name": "population loss"}),
            "charge": (run_step, self.charge, {"long_name": "‖C‖_F, C = W Wᵀ − UᵀU"}),
            "u2": (run_step, self.u2, {"long_name": "‖U‖²_F"}),
            "w2": (run_step, self.w2, {"long_name": "‖W‖²_F"}),
            "entries": (("run", "step", "entry"), self.entries, {"long_name": "C[a, b]"}),
            "theta": (("run", "parameter"), self.theta),
            "diverged_step": (("run",), self.diverged_step),
            "track": (("entry", "pair"), self.track),
        }
        if self.theta_path is not None:
            data["theta_path"] = (("run", "step", "parameter"), self.theta_path)
        return self._dataset(data, {"lr": self.lr, "batch": self.batch, "seed": self.seed})


def _track(track: object, hidden: int) -> IntArray:
    if track is None:
        pairs = [(0, 0), (0, 1), (1, 1), (hidden - 1, hidden - 1)] if hidden > 1 else [(0, 0)]
        return np.array(pairs, dtype=np.int64)
    t = np.asarray(track)
    if t.ndim != 2 or t.shape[1] != 2 or t.dtype.kind not in "iu":
        raise ValueError(f"track must be a (Q, 2) integer array of entries (a, b) of C, got {t!r}")
    if t.size and (t.min() < 0 or t.max() >= hidden):
        raise ValueError(f"track's entries must lie in [0, h) = [0, {hidden})")
    return np.ascontiguousarray(t, dtype=np.int64)


def train(
    teacher: Teacher,
    theta0: npt.ArrayLike,
    *,
    lr: npt.ArrayLike,
    steps: int,
    batch: npt.ArrayLike = 10,
    seeds: npt.ArrayLike = 0,
    record_every: int = 1,
    start_step: int = 0,
    track: npt.ArrayLike | None = None,
    keep_theta: bool = False,
    backend: str | None = None,
    threads: int | None = None,
    progress: bool | str = False,
    client: Any = None,
) -> BalanceResult:
    """Minibatch SGD (or GD) of ``f(x) = U W x`` on a Gaussian teacher, R runs in one call.

    Step t of a run draws B fresh samples keyed by ``(seed, t)`` (module docstring) and
    steps ``U ← U − lr R Wᵀ``, ``W ← W − lr Uᵀ R``; ``batch = 0`` takes the population
    gradient ``R = (UW − A) Σ`` (gradient descent; draws nothing).

    Parameters
    ----------
    teacher : Teacher
    theta0 : (P,) or (runs, P) array
        Start(s) θ = [U (d2 × h), W (h × d0)], P = h (d0 + d2) (:func:`init`).
    lr : float > 0 or (runs,) array
    steps : int >= 0
    batch : int >= 0 or (runs,) array
        Samples per step; 0: the population gradient.
    seeds : int or (runs,) array
        Keys of the runs' samples. ``lr``, ``batch``, ``seeds`` and the rows of ``theta0``
        broadcast against each other (length 1 or one common length): one run each.
    record_every : int >= 1
        Record at steps 0, r, 2r, … and the last (of this call).
    start_step : int >= 0
        Steps the runs took before (step t of this call draws the samples of the run's step
        ``start_step + t``): ``train(..., theta0=res.theta, start_step=res.meta["steps_done"])``
        continues ``res`` bitwise (an interrupted one too).
    track : (Q, 2) int array, optional
        Entries (a, b) of C to record; default (0, 0), (0, 1), (1, 1), (h−1, h−1).
    keep_theta : bool
        Keep θ at every record (for :meth:`BalanceResult.singular_values`); P floats per
        record and run.
    backend : {"numba", "cython", "cuda", "numpy"} or None
    threads : int, optional
        Threads for this call; never changes results.
    progress : bool or str
        A progress bar over the steps. The call runs in parts either way, so Ctrl-C stops
        it within about a second: :class:`fastperm.Interrupted`, whose ``result`` holds the
        steps done (records past them NaN, ``theta`` where the runs stopped).
    client : dask.distributed.Client, optional
        Spread the runs over a Dask cluster; the same result.

    Returns
    -------
    BalanceResult

    Examples
    --------
    >>> from fastperm import equilibrium as eq
    >>> T = eq.Teacher.isotropic(d=4, sigma=1.0)
    >>> theta0 = eq.init(T, 6, u_scale=0.3, w_scale=2.0, seed=0)
    >>> res = eq.train(T, theta0, lr=0.1, batch=[10, 0], steps=2000, record_every=1000,
    ...                backend="numpy")
    >>> res.charge.round(2)  # SGD's charge falls to its plateau; GD's (batch 0) stays
    array([[14.73,  0.17,  0.25],
           [14.73, 14.43, 14.43]])
    >>> round(eq.decay_time(T, 0.1, 10)), round(eq.plateau(T, 0.1, 10), 2)
    (250, 0.17)
    """
    if not isinstance(teacher, Teacher):
        raise TypeError(
            f"teacher must be a fastperm.equilibrium.Teacher, got {type(teacher).__name__}"
        )
    d0, d2 = teacher.d0, teacher.d2
    T0 = _checks.as_float_array("theta0", theta0, (1, 2))
    T0 = np.ascontiguousarray(T0[None, :] if T0.ndim == 1 else T0)
    P = T0.shape[1]
    if T0.shape[0] == 0:
        raise ValueError("theta0 has no rows: give one start, or one per run")
    if P == 0 or P % (d0 + d2):
        raise ValueError(f"theta0 must have h·(d0 + d2) = h·{d0 + d2} entries per row, got {P}")
    hidden = P // (d0 + d2)
    steps = _checks.as_int("steps", steps, minimum=0, maximum=2**32 - 2)
    record_every = _checks.as_int("record_every", record_every, minimum=1)
    threads = _runs.as_threads(threads)
    lr_a = _checks.as_array_param("lr", lr, _checks.as_positive_real, np.float64)
    batch_a = _checks.as_array_param(
        "batch", batch, lambda n, v: _checks.as_int(n, v, minimum=0, maximum=2**31), np.int64
    )
    seed_a = _checks.as_array_param("seeds", seeds, _checks.as_seed, np.uint64)
    rows = np.arange(T0.shape[0])
    lr_a, batch_a, seed_a, rows = _checks.broadcast_runs(
        lr=lr_a, batch=batch_a, seeds=seed_a, theta0=rows
    )
    if T0.shape[0] > 1:
        T0 = np.ascontiguousarray(T0[rows])
    R = lr_a.shape[0]
    track_a = _track(track, hidden)
    start_step = _checks.as_int("start_step", start_step, minimum=0, maximum=2**32 - 2 - steps)
    rec = _runs.record_steps(steps, record_every)
    m = rec.shape[0] - 1
    values: dict[str, Any] = {  # the kernel's arguments by name (contract.FAMILIES)
        "A": teacher.A,
        "L": teacher.L,
        "Sigma": teacher.sigma_x,
        "sigma": teacher.sigma,
        "Theta0": T0,
        "lr": lr_a,
        "batch": batch_a,
        "seeds": seed_a,
        "steps": steps,
        "start_step": start_step,
        "record_steps": rec,
        "track": track_a,
        "loss_out": np.empty((R, m)),
        "charge_out": np.empty((R, m)),
        "entries_out": np.empty((R, m, track_a.shape[0])),
        "norms_out": np.empty((R, m, 2)),
        "theta_rec": np.empty((R, m if keep_theta else 0, P)),
        "theta_out": np.empty((R, P)),
        "status_out": np.empty(R, dtype=np.int64),
    }
    step_work = np.where(
        batch_a == 0,
        3.0 * d2 * d0 * (hidden + d0),
        batch_a * (3.0 * hidden * (d0 + d2) + d0 * (d0 + d2) + 60.0 * (d0 + d2)),
    )
    call = _runs.Call("balance_runs", values, R, float(np.sum(step_work)) * steps)
    meta = {
        "teacher": teacher.describe(),
        "d0": d0,
        "d2": d2,
        "hidden": hidden,
        "steps": steps,
        "record_every": record_every,
        "start_step": start_step,
    }

    def result(done: _runs.Launched | None, steps_done: int) -> BalanceResult:
        norms = values["norms_out"]
        how = {} if done is None else done.metadata(call.family)
        return BalanceResult(
            start_step + rec[:-1],
            values["loss_out"],
            values["charge_out"],
            values["entries_out"],
            norms[..., 0],
            norms[..., 1],
            values["theta_out"],
            values["theta_rec"] if keep_theta else None,
            values["status_out"],
            lr_a,
            batch_a,
            seed_a,
            track_a,
            np.nan if done is None else done.seconds,
            "" if done is None else done.backend,
            meta={**meta, "steps_done": start_step + steps_done, **how},
        )

    return _runs.run_to_result(
        call, result, steps, backend=backend, threads=threads, progress=progress, client=client
    )


# -- predictions ---------------------------------------------------------------------------------


def decay_time(teacher: Teacher, lr: float, batch: int) -> float:
    """The charge's predicted e-fold time in steps near the minimum, ``B / (η² σ² tr Σ)``:
    exact for the linear drift ``E[ΔC] = −(η² σ² d / B) C`` when Σ = I and d0 = d2 = d
    (module docstring; for Σ = s I, tr Σ = s d). ``inf`` for GD (B = 0) or σ = 0.

    >>> decay_time(Teacher.isotropic(30), lr=0.02, batch=10)  # 10 / (4e-4 · 30)
    833.33...
    """
    lr = _checks.as_positive_real("lr", lr)
    batch = _checks.as_int("batch", batch, minimum=0)
    rate = lr**2 * teacher.sigma**2 * float(np.trace(teacher.sigma_x))
    return np.inf if batch == 0 or rate == 0 else batch / rate


def equilibrium(teacher: Teacher, hidden: int) -> dict[str, Any]:
    """SGD's predicted noise equilibrium (module docstring): ``tr(Σ) UᵀU = d2 W Σ Wᵀ`` with
    ``U W = A``.

    Returns
    -------
    dict
        ``U`` (d2, h), ``W`` (h, d0): one equilibrium (the others differ by a rotation of
        the hidden units); ``u2``, ``w2``: ‖U‖²_F, ‖W‖²_F; ``sv_U``, ``sv_W``: their
        singular values (descending); ``hessian_trace``: ``2 √(d2 tr Σ) ‖A Σ^{1/2}‖_*``.
        Scalar output (d2 = 1): ``W = u vᵀ / ‖u‖²`` with ``‖u‖⁴ = vᵀΣv / tr Σ``.
    """
    hidden = _checks.as_int("hidden", hidden, minimum=1)
    Sx = teacher.sigma_x
    evals, evecs = np.linalg.eigh(Sx)
    root = (evecs * np.sqrt(evals)) @ evecs.T
    inv_root = (evecs / np.sqrt(evals)) @ evecs.T
    kappa = teacher.d2 / float(np.trace(Sx))
    P, S, Qt = np.linalg.svd(teacher.A @ root / np.sqrt(kappa), full_matrices=False)
    rank = min(hidden, S.size)
    if rank < np.count_nonzero(S > 1e-12 * S.max(initial=0.0)):
        rank_A = int(np.linalg.matrix_rank(teacher.A))
        raise ValueError(f"hidden = {hidden} units cannot express A (rank {rank_A})")
    O = np.eye(hidden, rank)  # noqa: E741  (any orthonormal columns)
    U = np.sqrt(kappa) * (P[:, :rank] * np.sqrt(S[:rank])) @ O.T
    W = O @ (np.sqrt(S[:rank])[:, None] * Qt[:rank]) @ inv_root
    nuclear = float(np.linalg.svd(teacher.A @ root, compute_uv=False).sum())
    return {
        "U": U,
        "W": W,
        "u2": float(np.sum(U * U)),
        "w2": float(np.sum(W * W)),
        "sv_U": np.linalg.svd(U, compute_uv=False),
        "sv_W": np.linalg.svd(W, compute_uv=False),
        "hessian_trace": 2.0 * np.sqrt(teacher.d2 * float(np.trace(Sx))) * nuclear,
    }


def hessian_trace(teacher: Teacher, U: FloatArray, W: FloatArray) -> Any:
    """The trace of the population loss's Hessian in (U, W) at a minimum,
    ``S = tr(Σ) ‖U‖²_F + d2 tr(W Σ Wᵀ)`` (the sharpness the equilibrium minimises over the
    symmetry's orbit); a float, or an array for stacks of U and W (…, d2, h), (…, h, d0)."""
    Sx = teacher.sigma_x
    S = np.trace(Sx) * np.sum(U * U, axis=(-2, -1)) + teacher.d2 * np.einsum(
        "...ia,ab,...ib->...", W, Sx, W
    )
    return float(S) if np.ndim(S) == 0 else S


def plateau(teacher: Teacher, lr: float, batch: int, *, draws: int = 4000, seed: int = 0) -> float:
    """The predicted ‖C‖_F where SGD's charge levels off (Σ = I, d0 = d2, A = I).

    Linear response: ``C_{t+1} = (1 − a) C_t + η² ξ_t`` with ``a = 1 / τ``
    (:func:`decay_time`) and ξ the zero-mean noise of ``g_W g_Wᵀ − g_Uᵀ g_U`` at the
    equilibrium, where (U, W) = (Qᵀ, Q) and ``ξ = Q (R Rᵀ − Rᵀ R) Qᵀ`` with
    ``R = −(σ/B) Σ_j ε_j x_jᵀ``; the stationary ``E‖C‖² = η⁴ E‖ξ‖² / (2a − a²)``.
    ``E‖R Rᵀ − Rᵀ R‖²_F`` is estimated by Monte Carlo over ``draws`` batches (±1–2 %),
    each R drawn exactly at O(d³) whatever B: given the inputs X (B × d), the rows of
    ``Eᵀ X`` are independent N(0, XᵀX), and XᵀX is Wishart(B, I), drawn by Bartlett's
    decomposition ``XᵀX = L Lᵀ`` (for B ≥ d; smaller batches are drawn directly), so
    ``R = −(σ/B) G Lᵀ`` with G standard normal. It neglects the parameters' own
    fluctuation about the minimum (of higher order in η): the measured plateau is a few %
    above it at η = 0.02 (``fastperm figure-equilibrium``)."""
    if teacher.d0 != teacher.d2 or not np.allclose(teacher.A, np.eye(teacher.d0)):
        raise ValueError("plateau() is derived for A = I (d0 = d2); see the module docstring")
    if not np.allclose(teacher.sigma_x, np.eye(teacher.d0)):
        raise ValueError("plateau() is derived for isotropic inputs (Σ = I)")
    draws = _checks.as_int("draws", draws, minimum=1)
    tau = decay_time(teacher, lr, batch)
    if not np.isfinite(tau):
        return float("nan")
    a = 1.0 / tau
    if a >= 1:
        raise ValueError(
            f"lr = {lr:g} with batch = {batch}: the charge's decay per step "
            f"η²σ² tr Σ / B = {a:.3g} is not small (≥ 1): no linear response (SGD is far "
            "from the small-step regime, or unstable)"
        )
    seed = _checks.as_seed("seed", seed)
    noise = teacher.sigma**4 * commutator_moment(teacher.d0, batch, draws, seed)
    return float(np.sqrt(lr**4 * noise / (2 * a - a * a)))


def commutator_moment(
    d: int, batch: int, draws: int, seed: int = 0, *, bartlett: bool | None = None
) -> float:
    """Monte Carlo estimate of ``E‖R Rᵀ − Rᵀ R‖²_F`` for ``R = (1/B) Σ_j ε_j x_jᵀ`` with
    ε_j, x_j independent N(0, I_d): directly (B < d by default), or exactly in O(d³) per
    draw whatever B by Bartlett's decomposition of XᵀX (B ≥ d; :func:`plateau`)."""
    gen = np.random.default_rng(seed)
    if bartlett is None:
        bartlett = batch >= d
    total = 0.0
    block = max(1, 2_000_000 // (d * d * (d if bartlett else batch)))
    for start in range(0, draws, block):
        m = min(block, draws - start)
        if not bartlett:
            eps = gen.standard_normal((m, batch, d))
            x = gen.standard_normal((m, batch, d))
            S = np.einsum("nja,njb->nab", eps, x)
        else:  # XᵀX = L Lᵀ, L_ii² ~ χ²(B − i), L_ij ~ N(0, 1) below the diagonal
            L = np.tril(gen.standard_normal((m, d, d)), -1)
            idx = np.arange(d)
            L[:, idx, idx] = np.sqrt(gen.chisquare(batch - idx, size=(m, d)))
            S = gen.standard_normal((m, d, d)) @ L.transpose(0, 2, 1)
        R = S / batch
        xi = R @ R.transpose(0, 2, 1) - R.transpose(0, 2, 1) @ R
        total += float(np.sum(xi * xi))
    return total / draws
