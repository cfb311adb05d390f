r"""Symmetry-leveraging schemes at mean-field scale: shallow networks of N particles under
the coordinate swap, trained by vanilla SGD, data augmentation (DA), feature averaging (FA)
or an equivariant architecture (EA), and the distances between their particle laws.

The setting follows "Symmetries in Overparametrized Neural Networks: A Mean-Field View"
(J. Maass Martínez & J. Fontbona, NeurIPS 2024, arXiv 2405.19995): a shallow network is
the average of N units, ``f_N(x) = (1/N) Σ_i σ*(x; θ_i)``, trained by SGD with the
mean-field scaling, and the object of study is the *law* of its particles
``μ_N = (1/N) Σ_i δ_{θ_i}``. Where the paper leaves a choice to the experimenter, the
choice made here is stated below.

The model
---------
* A particle is ``θ ∈ R^{2×2}`` (4 entries, row-major) and its unit is
  ``σ*(x; θ) = tanh(θ x)`` for ``x ∈ R²`` (tanh entrywise).
* The group is C₂ = {I, P}, with P the swap of the two coordinates. It acts on inputs by
  ``x ↦ Px``, on outputs by ``y ↦ Py`` and on particles by ``θ ↦ PθPᵀ`` (:func:`reflect`).
  The unit is jointly equivariant, ``σ*(Px; PθPᵀ) = P σ*(x; θ)``, because
  ``PθPᵀ Px = Pθx`` and tanh acts entrywise.
* The fixed subspace is ``E^G = {θ : PθPᵀ = θ} = {[[a, b], [b, a]]}``, of dimension 2. The
  orthogonal projection onto it is ``π θ = (θ + PθPᵀ)/2`` (:func:`project`).
* Laws: μ is *weakly invariant* (WI) when ``g#μ = μ`` (particles come with their images),
  and *strongly invariant* (SI) when μ lives on E^G. A network of SI particles is
  equivariant.

Data and teachers
-----------------
``x ~ N(0, s² I)`` and ``y = f*(x) + σ ε``, with the teacher ``f*(x) = (1/M) Σ_m
tanh(θ*_m x)`` (:class:`Teacher`): *arbitrary* (M random particles), *weakly invariant* (M/2
random particles and their images) or *strongly invariant* (M random particles projected
onto E^G). The data are symmetric, ``(Px, Py) ~ (x, y)``, exactly when ``f*`` is
equivariant: for the WI and SI teachers.

Training (all schemes on the same samples)
------------------------------------------
Online SGD with the mean-field scaling (Mei, Montanari & Nguyen, PNAS 2018): every
particle steps along N times its gradient of the loss ``½ ‖f_N(x) − y‖²``, so that each moves
by O(lr) whatever N:

``θ_i ← θ_i − lr [ (1/B) Σ_j Σ_v w_v J_i(x_v)ᵀ e_v + λ θ_i ] + sqrt(2 lr τ) ξ_i``,

with ``J_i(x) = ∂σ*(x; θ_i)/∂θ_i`` (``J_iᵀ e = (e ⊙ (1 − tanh²(θ_i x))) xᵀ``), the views
``v = 0: (x, y)`` and ``v = 1: (Px, Py)`` of each sample with weights ``w_v`` and residuals
``e_v = f_N(x_v) − y_v``, an L2 term λ and Langevin noise of temperature τ (both 0 by
default).

* **vanilla**: ``w = (1, 0)``.
* **DA** (data augmentation): the gradient averaged over the group's action on the sample.
  ``k = 0`` is the exact group average, ``w = (½, ½)`` — DA's "k = ∞", the expected
  gradient over the augmentation. ``k ≥ 1`` draws k group elements per sample,
  ``w = ((k − n)/k, n/k)`` with n swaps.
* **FA** (feature averaging): the averaged model ``f^FA(x) = ½ (f_N(x) + P f_N(Px))`` is the
  one trained, and evaluated; its gradient has ``w = (½, ½)`` and the residuals
  ``e_0 = f^FA(x) − y``, ``e_1 = P e_0``.
* **EA** (equivariant architecture): particles restricted to E^G. The start is projected,
  and every step and noise kick too, so the particles stay in E^G *exactly* (each pair of
  equal entries receives one computed update).

Distances between laws
----------------------
``RMD²(μ, ν) = W₂²(μ, ν) / (M₂(μ) + M₂(ν))``, with ``M₂(μ) = E_μ ‖θ‖²`` and the exact W₂ of
the empirical laws (equal-weight atoms: an assignment problem, :func:`w2_squared`). Three
references:

* the projection ``π#μ`` (:func:`rmd_projection`). Here W₂ has a closed form,
  ``W₂²(μ, π#μ) = E_μ ‖θ − πθ‖²``: any coupling of θ with a point η of E^G pays
  ``‖θ − η‖² = ‖θ − πθ‖² + ‖πθ − η‖²``, and coupling θ with πθ pays only the first term.
  ``RMD ∈ [0, 1]``, 0 exactly for SI laws.
* the symmetrisation ``μ^G = ½ (μ + g#μ)`` (2N atoms; :func:`rmd_symmetrisation`): 0 for WI
  laws, and in [0, 1] (coupling θ with itself or gθ with probability ½ each pays at most
  ``2 M₂(μ)``).
* another scheme's law (:func:`rmd`). In general ``RMD ≤ √2`` only (two opposite Dirac
  masses give it); it lies in [0, 1] whenever some optimal coupling has
  ``E⟨θ, η⟩ ≥ 0``.

The paper's claims in this setting: EA's law is SI; for symmetric data DA, FA and vanilla
share one mean-field dynamics, which keeps WI laws WI; SI laws stay SI under the mean-field
dynamics even when trained freely, while at finite N vanilla SGD can leave E^G.
:mod:`fastperm.meanfield_study` checks them from an SI start (its verdicts say which and
how).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _checks, _runs, codes, rng
from ._typing import FloatArray, IntArray, UIntArray
from .backends.reference import meanfield as _reference
from .results import SavedResult

#: the swap acting on a particle's 4 entries (row-major): ``(PθPᵀ).ravel() = θ.ravel()[SWAP]``
SWAP = _reference.SWAP
#: an orthonormal basis of R^{2×2} (rows): two of E^G, then two of its orthogonal complement
BASIS = np.array([[1, 0, 0, 1], [0, 1, 1, 0], [1, 0, 0, -1], [0, 1, -1, 0]]) / math.sqrt(2.0)
SCHEME_NAMES = ("vanilla", "da", "fa", "ea")
#: the most group elements k-fold DA draws per sample (2²⁰: the weights are then within
#: 0.5 % of the exact average's, and k = 0 gives it exactly)
MAX_K = 2**20
TEACHER_KINDS = ("arbitrary", "weak", "strong")


def relative(w2_squared: npt.ArrayLike, moments: npt.ArrayLike) -> FloatArray:
    """``RMD = sqrt(W₂² / (M₂(μ) + M₂(ν)))`` elementwise: 0 where both laws are the zero law,
    NaN where an input is NaN (a diverged run's records)."""
    w, m = np.asarray(w2_squared, dtype=np.float64), np.asarray(moments, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt(np.where(m == 0, 0.0 * w, w / m))


def reflect(theta: npt.ArrayLike) -> FloatArray:
    """The group's action on particles (…, 4): ``θ ↦ PθPᵀ``."""
    t = np.asarray(theta, dtype=np.float64)
    return t[..., SWAP]


def project(theta: npt.ArrayLike) -> FloatArray:
    """The orthogonal projection onto E^G of particles (…, 4): ``(θ + PθPᵀ)/2``."""
    return _reference.project(np.asarray(theta, dtype=np.float64))


def coordinates(theta: npt.ArrayLike) -> FloatArray:
    """Particles (…, 4) in the orthonormal basis :data:`BASIS`: the first two coordinates
    span E^G, the last two its complement (their norm is the distance to E^G)."""
    return np.asarray(theta, dtype=np.float64) @ BASIS.T


def network(theta: npt.ArrayLike, x: npt.ArrayLike, scheme: str = "vanilla") -> FloatArray:
    """``f_N(x) = (1/N) Σ_i tanh(θ_i x)`` at inputs x (…, 2) for particles θ (N, 4); for
    ``scheme="fa"`` the averaged model ``½ (f_N(x) + P f_N(Px))``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastperm import meanfield as mf
    >>> theta = np.array([[1.0, 2.0, -0.5, 0.3]])
    >>> x = np.array([0.4, -1.0])
    >>> bool(np.allclose(mf.network(mf.reflect(theta), x[::-1]), mf.network(theta, x)[::-1]))
    True
    """
    T = np.asarray(theta, dtype=np.float64).reshape(-1, 2, 2)
    X = np.asarray(x, dtype=np.float64)

    def f_N(inputs: FloatArray) -> FloatArray:
        return np.tanh(np.einsum("noc,...c->...no", T, inputs)).mean(axis=-2)

    f = f_N(X)
    if scheme == "fa":
        f = 0.5 * (f + f_N(X[..., ::-1])[..., ::-1])
    elif scheme not in SCHEME_NAMES:
        raise ValueError(f"scheme must be one of {SCHEME_NAMES}, got {scheme!r}")
    return f


def draw_particles(n: int, seed: int, scale: float = 1.0) -> FloatArray:
    """n particles with i.i.d. ``N(0, scale²)`` entries, particle i drawn by fastperm's
    generator as ``gaussian_noise(seed, STREAM_INIT, counter(i, 0), 4)`` (:mod:`fastperm.rng`)."""
    n = _checks.as_int("n", n, minimum=1, maximum=rng.MAX_COUNTER_HALF)
    seed = _checks.as_seed("seed", seed)
    scale = _checks.as_positive_real("scale", scale)
    counts = np.arange(n, dtype=np.uint64) << np.uint64(32)
    return scale * rng.gaussian_noise_rows(seed, rng.STREAM_INIT, counts, 4)


def init(n: int, *, scale: float = 1.0, seed: int = 0, invariant: bool = True) -> FloatArray:
    """A start of n particles (n, 4): i.i.d. ``N(0, scale²)`` entries (:func:`draw_particles`),
    projected onto E^G when ``invariant`` (an SI start, the paper's)."""
    theta = draw_particles(n, seed, scale)
    return project(theta) if invariant else theta


@dataclass(frozen=True, eq=False)
class Teacher:
    """The teacher ``f*(x) = (1/M) Σ_m tanh(θ*_m x)`` and its data: ``x ~ N(0, s² I)``,
    ``y = f*(x) + σ ε``.

    Attributes
    ----------
    particles : (M, 4) array
        θ*_m, row-major.
    s : float
        The inputs' standard deviation.
    sigma : float
        The labels' noise standard deviation.
    kind : str
        "arbitrary", "weak" (WI: the particles come with their images), "strong" (SI: in
        E^G), or "custom".
    """

    particles: FloatArray
    s: float = 1.0
    sigma: float = 0.0
    kind: str = "custom"

    def __post_init__(self) -> None:
        p = _checks.as_float_array("particles", self.particles, 2)
        if p.shape[0] == 0 or p.shape[1] != 4:
            raise ValueError(f"particles must be an (M, 4) array with M >= 1, got {p.shape}")
        if not np.all(np.isfinite(p)):
            raise ValueError("particles must be finite")
        p = np.array(p, dtype=np.float64)
        p.setflags(write=False)
        object.__setattr__(self, "particles", p)
        object.__setattr__(self, "s", _checks.as_positive_real("s", self.s))
        object.__setattr__(self, "sigma", _checks.as_nonnegative_real("sigma", self.sigma))
        _checks.as_choice("kind", self.kind, (*TEACHER_KINDS, "custom"))
        if self.kind == "strong" and not np.array_equal(project(p), p):
            raise ValueError("a strong teacher's particles must lie in E^G: θ = PθPᵀ")
        if self.kind == "weak" and not self.symmetric:
            raise ValueError("a weak teacher's law must be invariant: f* equivariant")

    @classmethod
    def make(
        cls,
        kind: str,
        m: int = 4,
        *,
        scale: float = 2.0,
        s: float = 1.0,
        sigma: float = 0.0,
        seed: int = 1,
    ) -> Teacher:
        """A teacher of m particles with ``N(0, scale²)`` entries (:func:`draw_particles`):
        ``kind="arbitrary"`` as drawn, ``"weak"`` the first m/2 and their images (m even),
        ``"strong"`` projected onto E^G.

        Examples
        --------
        >>> from fastperm import meanfield as mf
        >>> T = mf.Teacher.make("weak", 4, seed=3)
        >>> bool(np.allclose(mf.reflect(T.particles[:2]), T.particles[2:]))
        True
        """
        kind = _checks.as_choice("kind", kind, TEACHER_KINDS)
        m = _checks.as_int("m", m, minimum=1, maximum=10**6)
        if kind == "weak":
            if m % 2:
                raise ValueError(f"a weakly invariant teacher needs an even m, got m={m}")
            half = draw_particles(m // 2, seed, scale)
            particles = np.concatenate([half, reflect(half)])
        elif kind == "strong":
            particles = project(draw_particles(m, seed, scale))
        else:
            particles = draw_particles(m, seed, scale)
        return cls(particles, s, sigma, kind)

    @property
    def symmetric(self) -> bool:
        """Whether the data are symmetric, ``(Px, Py) ~ (x, y)``: whether ``f*`` is
        equivariant (checked on 64 inputs)."""
        x = np.random.default_rng(0).standard_normal((64, 2))
        f = network(self.particles, x)
        g = network(self.particles, x[:, ::-1])[:, ::-1]
        return bool(np.allclose(g, f, rtol=0.0, atol=1e-12))

    def __call__(self, x: npt.ArrayLike) -> FloatArray:
        """``f*(x)`` at inputs x (…, 2)."""
        return network(self.particles, x)

    def describe(self) -> dict[str, Any]:
        """JSON-ready description (for results' metadata)."""
        return {
            "kind": self.kind,
            "particles": self.particles.tolist(),
            "s": self.s,
            "sigma": self.sigma,
        }


@dataclass
class MeanFieldResult(SavedResult):
    """What :func:`train` recorded, for R runs of N particles.

    Attributes
    ----------
    steps : (records,) int array
        The runs' steps at the records (from ``start_step`` on).
    loss : (runs, records)
        The risk ``mean_e ½ ‖f(x_e) − f*(x_e)‖²`` on the evaluation inputs (FA: of the
        averaged model; NaN past a divergence).
    offset : (runs, records)
        ``(1/N) Σ_i ‖θ_i − πθ_i‖²``, the squared W₂ distance to the projection onto E^G.
    moment : (runs, records)
        ``M₂ = (1/N) Σ_i ‖θ_i‖²``.
    theta : (runs, N, 4)
        Final particles.
    theta_path : (runs, records, N, 4) or None
        The particles at the records (``keep_theta=True``).
    diverged_step : (runs,) int
        -1, or the step of this call (counted from 0, not from ``start_step``) whose step
        or record was not finite; that run's later records are NaN and its ``theta`` is
        not a start to continue from.
    scheme : (runs,) str
    k, lr, seed : (runs,) the runs' settings.
    seconds : float
    backend : str
    meta : dict
    """

    steps: IntArray
    loss: FloatArray
    offset: FloatArray
    moment: FloatArray
    theta: FloatArray
    theta_path: FloatArray | None
    diverged_step: IntArray
    scheme: npt.NDArray[np.str_]
    k: IntArray
    lr: FloatArray
    seed: UIntArray
    seconds: float
    backend: str
    meta: dict[str, Any] = field(default_factory=dict, repr=False)

    def rmd_projection(self) -> FloatArray:
        """RMD to the projection onto E^G at every record (runs, records), from the closed
        form ``W₂² = offset``, ``M₂(π#μ) = M₂(μ) − offset`` (module docstring)."""
        return relative(self.offset, 2.0 * self.moment - self.offset)

    def to_xarray(self) -> Any:
        """An ``xarray.Dataset``: ``loss``, ``offset``, ``moment`` (run, step), ``theta``
        (run, particle, entry), ``theta_path`` (run, step, particle, entry) when kept,
        ``diverged_step`` (run); coordinates ``step``, ``run`` and, along ``run``,
        ``scheme``, ``k``, ``lr``, ``seed``; the metadata as JSON in
        ``attrs["fastperm_metadata"]``. Needs xarray."""
        run_step = ("run", "step")
        data: dict[str, Any] = {
            "loss": (run_step, self.loss, {"long_name": "risk on the evaluation inputs"}),
            "offset": (run_step, self.offset, {"long_name": "(1/N) Σ ‖θ_i − πθ_i‖²"}),
            "moment": (run_step, self.moment, {"long_name": "(1/N) Σ ‖θ_i‖²"}),
            "theta": (("run", "particle", "entry"), self.theta),
            "diverged_step": (("run",), self.diverged_step),
        }
        if self.theta_path is not None:
            data["theta_path"] = (("run", "step", "particle", "entry"), self.theta_path)
        per_run = {"scheme": self.scheme.astype(str), "k": self.k, "lr": self.lr, "seed": self.seed}
        return self._dataset(data, per_run)


def _schemes(scheme: object) -> npt.NDArray[np.int64]:
    if isinstance(scheme, str):
        names = [scheme]
    elif isinstance(scheme, (list, tuple, np.ndarray)):
        names = list(scheme)
    else:
        raise ValueError(f"scheme must be one of {SCHEME_NAMES} or a list of them, got {scheme!r}")
    if not names:
        raise ValueError("scheme is empty: give a name or a list of names")
    for n in names:
        if n not in codes.SCHEMES:
            raise ValueError(f"scheme must be one of {SCHEME_NAMES} (or a list), got {n!r}")
    return np.array([codes.SCHEMES[n] for n in names], dtype=np.int64)


def train(
    teacher: Teacher,
    theta0: npt.ArrayLike,
    *,
    scheme: str | Sequence[str] = "vanilla",
    k: npt.ArrayLike = 0,
    lr: npt.ArrayLike = 0.1,
    steps: int,
    batch: int = 1,
    seeds: npt.ArrayLike = 0,
    lam: float = 0.0,
    temp: float = 0.0,
    record_every: int = 1,
    start_step: int = 0,
    keep_theta: bool = False,
    eval_size: int = 256,
    backend: str | None = None,
    threads: int | None = None,
    progress: bool | str = False,
    client: Any = None,
) -> MeanFieldResult:
    """Online SGD of N particles under a scheme, R runs in one call (module docstring).

    Parameters
    ----------
    teacher : Teacher
    theta0 : (N, 4) or (runs, N, 4) array
        Start(s) (:func:`init`). EA runs start from its projection onto E^G.
    scheme : str or sequence of str
        "vanilla", "da", "fa" or "ea", per run.
    k : int >= 0 or (runs,) array
        DA's group elements drawn per sample; 0: the exact group average.
    lr : float > 0 or (runs,) array
    steps : int >= 0
    batch : int >= 1
        Fresh samples per step (online SGD: never reused).
    seeds : int or (runs,) array
        Keys of the runs' samples (and DA's draws, and the noise). ``scheme``, ``k``,
        ``lr``, ``seeds`` and the starts broadcast (length 1 or one common length). Runs
        with the same seed see the same samples whatever their scheme.
    lam, temp : float >= 0
        The L2 coefficient λ and the noise temperature τ.
    record_every : int >= 1
        Record at steps 0, r, 2r, … and the last (of this call).
    start_step : int >= 0
        Steps the runs took before: ``train(..., theta0=res.theta,
        start_step=res.meta["steps_done"])`` continues ``res`` bitwise.
    keep_theta : bool
        Keep the particles at every record (4N floats per record and run).
    eval_size : int >= 1
        Inputs the recorded risk averages over: ``s`` times standard normals of NumPy's
        generator with seed 0 (the same for every run and call).
    backend : {"numba", "cython", "cuda", "numpy"} or None
    threads : int, optional
        Threads for this call; never changes results.
    progress : bool or str
        A progress bar over the steps. The call runs in parts either way, so Ctrl-C stops
        it within about a second: :class:`fastperm.Interrupted`, whose ``result`` holds the
        steps done.
    client : dask.distributed.Client, optional
        Spread the runs over a Dask cluster; the same result.

    Returns
    -------
    MeanFieldResult

    Examples
    --------
    >>> from fastperm import meanfield as mf
    >>> T = mf.Teacher.make("strong", 4, seed=1)
    >>> theta0 = mf.init(50, seed=0)  # an SI start
    >>> res = mf.train(T, theta0, scheme=["vanilla", "da", "fa", "ea"], lr=0.2, steps=500,
    ...                record_every=500, backend="numpy")
    >>> res.rmd_projection()[:, -1].round(3)  # vanilla leaves E^G; DA, FA, EA stay
    array([0.016, 0.   , 0.   , 0.   ])
    """
    if not isinstance(teacher, Teacher):
        raise TypeError(
            f"teacher must be a fastperm.meanfield.Teacher, got {type(teacher).__name__}"
        )
    T0 = _checks.as_float_array("theta0", theta0, (2, 3))
    T0 = T0[None] if T0.ndim == 2 else T0
    if T0.shape[0] == 0 or T0.shape[1] == 0 or T0.shape[2] != 4:
        raise ValueError(f"theta0 must be (N, 4) or (runs, N, 4) with N >= 1, got {T0.shape}")
    if not np.all(np.isfinite(T0)):
        raise ValueError("theta0 must be finite")
    N = T0.shape[1]
    steps = _checks.as_int("steps", steps, minimum=0, maximum=2**32 - 2)
    batch = _checks.as_int("batch", batch, minimum=1, maximum=2**31)
    record_every = _checks.as_int("record_every", record_every, minimum=1)
    eval_size = _checks.as_int("eval_size", eval_size, minimum=1, maximum=10**6)
    lam = _checks.as_nonnegative_real("lam", lam)
    temp = _checks.as_nonnegative_real("temp", temp)
    threads = _runs.as_threads(threads)
    scheme_a = _schemes(scheme)
    k_a = _checks.as_array_param(
        "k", k, lambda n, v: _checks.as_int(n, v, minimum=0, maximum=MAX_K), np.int64
    )
    lr_a = _checks.as_array_param("lr", lr, _checks.as_positive_real, np.float64)
    seed_a = _checks.as_array_param("seeds", seeds, _checks.as_seed, np.uint64)
    rows = np.arange(T0.shape[0])
    scheme_a, k_a, lr_a, seed_a, rows = _checks.broadcast_runs(
        scheme=scheme_a, k=k_a, lr=lr_a, seeds=seed_a, theta0=rows
    )
    R = lr_a.shape[0]
    starts = T0[rows].copy()
    ea = scheme_a == codes.EA
    starts[ea] = project(starts[ea])
    start_step = _checks.as_int("start_step", start_step, minimum=0, maximum=2**32 - 2 - steps)
    rec = _runs.record_steps(steps, record_every)
    m = rec.shape[0] - 1
    Xeval = teacher.s * np.random.default_rng(0).standard_normal((eval_size, 2))
    Yeval = teacher(Xeval)
    for a in (Xeval, Yeval):
        a.setflags(write=False)
    values: dict[str, Any] = {  # the kernel's arguments by name (contract.FAMILIES)
        "teacher": teacher.particles,
        "s": teacher.s,
        "sigma": teacher.sigma,
        "Xeval": Xeval,
        "Yeval": Yeval,
        "Theta0": np.ascontiguousarray(starts.reshape(R, 4 * N)),
        "scheme": scheme_a,
        "k": k_a,
        "lr": lr_a,
        "seeds": seed_a,
        "batch": batch,
        "lam": lam,
        "temp": temp,
        "steps": steps,
        "start_step": start_step,
        "record_steps": rec,
        "loss_out": np.empty((R, m)),
        "offset_out": np.empty((R, m)),
        "moment_out": np.empty((R, m)),
        "theta_rec": np.empty((R, m if keep_theta else 0, 4 * N)),
        "theta_out": np.empty((R, 4 * N)),
        "status_out": np.empty(R, dtype=np.int64),
    }
    views = np.where((scheme_a == codes.VANILLA) | (scheme_a == codes.EA), 1.0, 2.0)
    draws = np.where(scheme_a == codes.DA, k_a, 0) * 3.0  # k-fold DA's group draws
    step_work = batch * (views * N * 40.0 + teacher.particles.shape[0] * 30.0 + draws)
    call = _runs.Call("meanfield_runs", values, R, float(np.sum(step_work)) * steps)
    meta = {
        "teacher": teacher.describe(),
        "particles": N,
        "steps": steps,
        "batch": batch,
        "lam": lam,
        "temp": temp,
        "record_every": record_every,
        "start_step": start_step,
        "eval_size": eval_size,
    }

    def result(done: _runs.Launched | None, steps_done: int) -> MeanFieldResult:
        how = {} if done is None else done.metadata(call.family)
        path = values["theta_rec"]
        return MeanFieldResult(
            start_step + rec[:-1],
            values["loss_out"],
            values["offset_out"],
            values["moment_out"],
            values["theta_out"].reshape(R, N, 4),
            path.reshape(R, m, N, 4) if keep_theta else None,
            values["status_out"],
            np.array([SCHEME_NAMES[c] for c in scheme_a]),
            k_a,
            lr_a,
            seed_a,
            np.nan if done is None else done.seconds,
            "" if done is None else done.backend,
            meta={**meta, "steps_done": start_step + steps_done, **how},
        )

    return _runs.run_to_result(
        call, result, steps, backend=backend, threads=threads, progress=progress, client=client
    )


# -- optimal transport between particle laws ---------------------------------------------------


#: the largest number of atoms :func:`w2_squared` matches (its cost matrix holds atoms² floats)
MAX_ATOMS = 12_000


def _atoms(name: str, a: object) -> FloatArray:
    A = _checks.as_float_array(name, a, (1, 2))
    A = A[:, None] if A.ndim == 1 else A
    if A.shape[0] == 0:
        raise ValueError(f"{name} has no atoms")
    if not np.all(np.isfinite(A)):
        raise ValueError(f"{name} must be finite")
    return A


def w2_squared(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    """The exact squared 2-Wasserstein distance ``W₂²`` between the empirical laws of the
    atoms a (n, D) and b (m, D), each atom of weight 1/n (1/m).

    With equal weights an optimal coupling is a permutation once both laws are written with
    ``lcm(n, m)`` atoms (Birkhoff–von Neumann: the couplings of two uniform laws on the
    same number of atoms are the doubly stochastic matrices, whose extreme points are
    permutations), so ``W₂²`` is the value of an assignment problem, solved exactly by
    SciPy's ``linear_sum_assignment`` (O(n³) time, n² memory).

    Examples
    --------
    >>> from fastperm import meanfield as mf
    >>> mf.w2_squared([[0.0], [1.0]], [[1.0], [3.0]])  # the sorted atoms pair: (1 + 4) / 2
    2.5
    """
    try:
        from scipy.optimize import linear_sum_assignment
        from scipy.spatial.distance import cdist
    except ImportError as exc:
        raise ImportError(
            "exact W₂ needs scipy (pip install 'fastperm[study]' or pip install scipy)"
        ) from exc

    A, B = _atoms("a", a), _atoms("b", b)
    if A.shape[1] != B.shape[1]:
        raise ValueError(f"a and b must have atoms of one dimension, got {A.shape} and {B.shape}")
    n = math.lcm(A.shape[0], B.shape[0])
    if n > MAX_ATOMS:
        raise ValueError(
            f"a and b need lcm(n, m) = {n} atoms each, more than MAX_ATOMS = {MAX_ATOMS} "
            f"(memory and O(n³) time): subsample them"
        )
    A = np.repeat(A, n // A.shape[0], axis=0)
    B = np.repeat(B, n // B.shape[0], axis=0)
    cost = cdist(A, B, "sqeuclidean")  # pair by pair: no cancellation, 0 for equal atoms
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].sum() / n)


def w2_squared_sorted(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    """``W₂²`` between two laws on the line with n equal-weight atoms each: the sorted atoms
    pair up (the monotone coupling is optimal in 1-D), ``(1/n) Σ (a_(i) − b_(i))²``."""
    A, B = _atoms("a", a), _atoms("b", b)
    if A.shape[1] != 1 or B.shape[1] != 1:
        raise ValueError(
            f"a and b must be atoms on the line, (n,) or (n, 1); got {A.shape}, {B.shape}"
        )
    A, B = np.sort(A[:, 0]), np.sort(B[:, 0])
    if A.shape != B.shape:
        raise ValueError(f"a and b must have as many atoms, got {A.shape[0]} and {B.shape[0]}")
    return float(np.mean((A - B) ** 2))


def second_moment(a: npt.ArrayLike) -> float:
    """``M₂ = (1/n) Σ ‖a_i‖²`` of the empirical law of atoms a (n, D)."""
    A = _atoms("a", a)
    return float(np.mean(np.sum(A * A, axis=1)))


def rmd(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    """``RMD(μ, ν) = sqrt(W₂²(μ, ν) / (M₂(μ) + M₂(ν)))`` for the empirical laws of the atoms
    a and b (:func:`w2_squared`); 0 when both are the zero law."""
    return float(relative(w2_squared(a, b), second_moment(a) + second_moment(b)))


def _particles(theta: npt.ArrayLike) -> FloatArray:
    P = _checks.as_float_array("theta", theta, 2)
    if P.shape[0] == 0 or P.shape[1] != 4:
        raise ValueError(f"theta must be (N, 4) particles with N >= 1, got shape {P.shape}")
    return _atoms("theta", P)


def rmd_projection(theta: npt.ArrayLike) -> float:
    """RMD between the law of the particles θ (N, 4) and its projection onto E^G, by the
    closed form ``W₂² = (1/N) Σ ‖θ_i − πθ_i‖²`` (module docstring); in [0, 1], 0 for SI."""
    P = _particles(theta)
    offset = float(np.mean(np.sum((P - project(P)) ** 2, axis=1)))
    return float(relative(offset, 2.0 * second_moment(P) - offset))


def rmd_symmetrisation(theta: npt.ArrayLike) -> float:
    """RMD between the law of the particles θ (N, 4) and its symmetrisation
    ``½ (μ + g#μ)`` (2N atoms; exact assignment, :func:`w2_squared`); in [0, 1], 0 for WI
    laws."""
    P = _particles(theta)
    return rmd(P, np.concatenate([P, reflect(P)]))


# -- discovering the largest subspace that training keeps -----------------------------------------


@dataclass
class Discovery:
    """What :func:`discover_subspace` found.

    Attributes
    ----------
    basis : (D, 4) array
        Orthonormal rows spanning the subspace where training stayed (D = 4: everywhere).
    rounds : list of dict
        Per round: ``dim``, ``rmd`` (the particles' RMD to their projection onto the round's
        subspace after training, per seed), ``variances`` (of the escaped components along
        their principal directions, descending), ``added`` (how many directions joined).
    stayed : bool
        Whether training stayed in the final subspace (False: it became the whole space, or
        the rounds ran out).
    """

    basis: FloatArray
    rounds: list[dict[str, Any]]
    stayed: bool


def discover_subspace(
    teacher: Teacher,
    start: npt.ArrayLike | None = None,
    *,
    n: int = 200,
    lr: float = 0.05,
    steps: int = 2000,
    batch: int = 64,
    seeds: int = 2,
    tol: float = 0.02,
    share: float = 0.1,
    max_rounds: int = 4,
    backend: str | None = None,
) -> Discovery:
    """The data-driven heuristic of Maass Martínez & Fontbona (NeurIPS 2024) for the largest
    subspace that supports strongly invariant laws under training, in this setting.

    Start from particles spread over a subspace V (i.i.d. standard normal coordinates in its
    orthonormal basis) and train them freely (vanilla SGD). If the particles escape — their
    RMD to their projection onto V exceeds ``tol`` for some seed — enlarge V by the
    principal directions of the escaped components ``θ − P_V θ`` whose variance is at least
    ``share`` of the largest, and start again; stop when training stays in V (or V is the
    whole space).

    Large batches keep SGD's sampling noise, which moves particles out of any subspace by
    O(sqrt(lr / batch)) (:mod:`fastperm.meanfield_study`), below ``tol``: what is measured
    is the drift of the mean-field dynamics.

    Parameters
    ----------
    teacher : Teacher
    start : (D, 4) array, optional
        Rows spanning the first subspace (orthonormalised); default the line of
        ``[[1, 0], [0, 1]]``, inside E^G.
    n, lr, steps, batch, seeds
        The particles and the training of each round.
    tol : float
        The RMD above which the particles escaped.
    share : float
        Escape directions kept: variance at least this share of the largest.
    max_rounds : int
    backend : str, optional

    Returns
    -------
    Discovery

    Examples
    --------
    >>> from fastperm import meanfield as mf
    >>> found = mf.discover_subspace(mf.Teacher.make("strong", 4, seed=1), n=50, steps=500)
    >>> found.basis.shape[0], found.stayed  # E^G: the line grew to the plane, then stayed
    (2, True)
    """
    if not isinstance(teacher, Teacher):
        raise TypeError(
            f"teacher must be a fastperm.meanfield.Teacher, got {type(teacher).__name__}"
        )
    basis = BASIS[:1] if start is None else _checks.as_float_array("start", start, 2)
    if basis.ndim != 2 or basis.shape[1] != 4 or not 1 <= basis.shape[0] <= 4:
        raise ValueError(f"start must be (D, 4) rows with 1 <= D <= 4, got {basis.shape}")
    q, r = np.linalg.qr(np.asarray(basis, dtype=np.float64).T)
    if np.min(np.abs(np.diag(r))) < 1e-12:
        raise ValueError("start's rows must be linearly independent")
    basis = q.T
    tol = _checks.as_positive_real("tol", tol)
    share = _checks.as_positive_real("share", share)
    if share > 1:
        raise ValueError(f"share must lie in (0, 1] (a share of the largest variance), got {share}")
    max_rounds = _checks.as_int("max_rounds", max_rounds, minimum=1)
    n = _checks.as_int("n", n, minimum=1, maximum=rng.MAX_COUNTER_HALF)
    steps = _checks.as_int("steps", steps, minimum=1, maximum=2**32 - 2)
    seeds = _checks.as_int("seeds", seeds, minimum=1, maximum=2**20)
    rounds: list[dict[str, Any]] = []
    for _ in range(max_rounds):
        starts = np.stack(
            [draw_particles(n, seed=s)[:, : basis.shape[0]] @ basis for s in range(seeds)]
        )
        res = train(teacher, starts, lr=lr, steps=steps, batch=batch, seeds=np.arange(seeds),
                    record_every=steps, backend=backend)  # fmt: skip
        inside = res.theta @ basis.T @ basis
        away = res.theta - inside
        offset = np.mean(np.sum(away**2, axis=-1), axis=-1)
        moment = np.mean(np.sum(res.theta**2, axis=-1), axis=-1)
        rmd_v = relative(offset, 2 * moment - offset)
        escaped = away.reshape(-1, 4)
        w, v = np.linalg.eigh(escaped.T @ escaped / escaped.shape[0])
        order = np.argsort(w)[::-1]
        w, v = w[order], v[:, order]
        item = {"dim": basis.shape[0], "rmd": rmd_v, "variances": w, "added": 0}
        rounds.append(item)
        if rmd_v.max() <= tol:
            return Discovery(basis, rounds, True)
        new = v[:, w >= share * w[0]].T
        q, _ = np.linalg.qr(np.concatenate([basis, new]).T)
        basis = q.T[: min(4, basis.shape[0] + new.shape[0])]
        item["added"] = basis.shape[0] - item["dim"]
        if basis.shape[0] == 4:
            return Discovery(basis, rounds, False)
    return Discovery(basis, rounds, False)
