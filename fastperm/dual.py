"""The dual (Gram) form of plain and fixed k-fold SGD: when it pays, and what it needs.

On the linear problem a step of plain SGD, or of k-fold SGD on fixed copies, moves w along
the copies it visits: ``w ← w − (lr/k) Σ_j r_{c_j} c_j`` with the residual ``r_c = c·w − y_c``.
So w stays ``w0 + Σ_c β_c c`` over the N = n·k copies c (for k = 1, the n examples), and
the residuals of all copies follow their Gram matrix ``G = C Cᵀ``:

    r ← r − Σ_j γ_j G[:, c_j],     γ_j = (lr/k) r_{c_j},     β_{c_j} ← β_{c_j} − γ_j,

O(N·k) per step instead of O(k·d). The parameter error follows too, in O(k²) per step:

    ‖w' − w*‖² = ‖w − w*‖² − 2 Σ_j γ_j (r_{c_j} + v_{c_j}) + Σ_jl γ_j γ_l G[c_j, c_l],

with ``v_c = y_c − c·w*`` (so that ``c·(w − w*) = r_c + v_c``). After a set-up of
O(N²·d) (the Gram matrix, by BLAS) and O(N·d) per run, a run costs O(T·N·k): nothing per
step grows with d. This is the kernel (dual) view of least-squares SGD, which keeps w in
the span of what it has seen; issue 18 of this project asked for it, so that the plain and
fixed-copy baselines are as cheap as the closed form they are compared with (k = ∞).

The two forms compute the same run: the dual one up to rounding (its recurrences
accumulate it; w is formed and the residuals and loss recomputed from it every
``knobs.DUAL_RESYNC · d / k`` steps, which bounds it; the tests check 1e-10 relative over
10⁵ steps), and it stops a diverging run at the same step. Fresh copies change every step
and stay primal, as do k = ∞ (its own closed forms) and float32 runs.

:func:`choose` picks the form per call from a cost model (``algorithm="auto"``);
:func:`setup` draws the copies and forms their Gram matrices. The kernels are the
``dual_runs`` family of :mod:`fastperm.backends.contract`.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from . import _runs, knobs
from ._typing import FloatArray, IntArray, UIntArray

#: the values of ``train(algorithm=...)``
ALGORITHMS = ("auto", "primal", "dual")

#: element operations of a Gram matrix entry's multiply-add, relative to the kernels' loops:
#: BLAS's blocked ``C @ C.T`` does about eight of the kernels' element operations per
#: unit of this cost model's time (measured: 40 × 10⁵ copies in 0.02 s on one core)
GRAM_SPEEDUP = 8.0


@dataclass(frozen=True)
class Shape:
    """What the choice depends on: n examples of d features, k copies (1: plain SGD), T
    steps per run, R runs, U distinct copy sets (1 for k = 1: every run shares the
    examples; one per seed otherwise), kept: records that keep w."""

    n: int
    d: int
    k: int
    steps: int
    runs: int
    sets: int
    kept: int

    @property
    def N(self) -> int:  # noqa: N802  (the number of copies, as in the formulas)
        return self.n * self.k


def resync_steps(d: int, k: int) -> int:
    """Steps between two resynchronisations of a dual run
    (:data:`fastperm.knobs.DUAL_RESYNC`)."""
    return max(1, math.ceil(knobs.DUAL_RESYNC * d / k))


def primal_work(s: Shape) -> float:
    """Element operations of the primal kernels for the whole call (fixed copies kept)."""
    per_step = 2.0 * s.d if s.k == 1 else 2.0 * s.k * s.d
    return s.runs * (s.steps * per_step + (6.0 * s.N * s.d if s.k > 1 else 0.0))


def dual_work(s: Shape) -> float:
    """Element operations of the dual form for the whole call, set-up included: the copies
    (k ≥ 2) and Gram matrices of the U sets, then per run ``v`` and the syncs (3·N·d each),
    the steps (2·N·k + 2·k² + 8) and the records that form w (N·d each)."""
    setup = s.sets * ((6.0 * s.N * s.d if s.k > 1 else 0.0) + s.N * s.N * s.d / GRAM_SPEEDUP)
    syncs = 2 + s.steps // resync_steps(s.d, s.k)
    per_run = (
        s.steps * (2.0 * s.N * s.k + 2.0 * s.k * s.k + 8.0)
        + syncs * 3.0 * s.N * s.d
        + s.kept * s.N * s.d
    )
    return setup + s.runs * per_run


def setup_bytes(s: Shape) -> int:
    """Memory of the copy sets (none for k = 1: the examples themselves) and their Gram
    matrices."""
    return 8 * s.sets * ((s.N * s.d if s.k > 1 else 0) + s.N * s.N)


def choose(
    algorithm: str,
    s: Shape,
    *,
    fresh: bool,
    dtype: str,
    infinite: bool,
    kern: ModuleType,
    budget: int,
) -> str:
    """``"primal"`` or ``"dual"`` for a call of shape ``s``.

    ``"auto"``: the dual form where it can run (fixed copies or k = 1, float64, a backend
    with ``dual_runs``, copies and Gram matrices within ``budget`` bytes) and the cost model
    says it is cheaper (:func:`primal_work`, :func:`dual_work`) on a call large enough to
    matter (:data:`fastperm.knobs.DUAL_MIN_WORK`). ``"dual"``: the dual form, or a
    ValueError saying why it cannot run."""
    if algorithm == "primal":
        return "primal"
    why = None
    if infinite:
        why = "k = ∞ runs on its own closed forms (O(T + d) per run)"
    elif fresh and s.k > 1:
        why = 'sampling="fresh" draws new copies every step (the dual form needs fixed ones)'
    elif dtype != "float64":
        why = f"it computes in float64 (dtype={dtype!r} was asked for)"
    elif not hasattr(kern, "dual_runs"):
        why = f"backend {kern.name!r} has no dual_runs kernel"
    elif setup_bytes(s) > budget:
        why = (
            f"its copies and Gram matrices need {setup_bytes(s) / 2**20:.0f} MiB, over "
            f"cache_bytes ({budget / 2**20:.0f} MiB): fewer runs per call (k ≥ 2: one copy set "
            "per seed), or raise cache_bytes"
        )
    if algorithm == "dual":
        if why is not None:
            raise ValueError(f"algorithm='dual' cannot run here: {why}")
        return "dual"
    if why is not None:
        return "primal"
    primal = primal_work(s)
    return "dual" if primal >= knobs.DUAL_MIN_WORK and dual_work(s) < primal else "primal"


def call(
    kern: ModuleType,
    values: dict[str, Any],
    s: Shape,
    X: FloatArray,
    seeds: UIntArray,
    sampler: tuple[int, FloatArray, IntArray, IntArray],
    start_step: int,
    threads: int | None,
) -> tuple[_runs.Call, float]:
    """The harness's call of ``dual_runs`` on ``kern`` for runs of shape ``s`` (``values``:
    the arguments the linear problem's families share, outputs allocated; completed here),
    and the seconds its set-up took (:func:`setup`, on the threads the call will use)."""
    work = dual_work(s)
    copies, gram, which, seconds = setup(
        kern, X, s.k, seeds, sampler, _runs.threads_for(kern, s.runs, work, threads)
    )
    values.update(copies=copies, gram=gram, which=which, k=s.k, start_step=start_step,
                  resync=resync_steps(s.d, s.k))  # fmt: skip
    return _runs.Call("dual_runs", values, s.runs, work), seconds


def setup(
    kern: ModuleType,
    X: FloatArray,
    k: int,
    seeds: UIntArray,
    sampler: tuple[int, FloatArray, IntArray, IntArray],
    threads: int,
) -> tuple[FloatArray, FloatArray, IntArray, float]:
    """The copy sets, their Gram matrices (both read-only), each run's set and the seconds
    it took.

    k = 1: one set, the examples. k ≥ 2: one set per distinct seed, drawn by the backend's
    ``fixed_copies`` (the copies ``sgd_runs`` trains on). The Gram matrices are formed by
    BLAS on at most ``threads`` threads (a loaded machine makes a second BLAS thread wait
    for a core: measured up to 0.3 s a call)."""
    t0 = time.perf_counter()
    n, d = X.shape
    if k == 1:
        copies = X[None]
        which = np.zeros(seeds.shape[0], dtype=np.int64)
    else:
        unique, which = np.unique(seeds, return_inverse=True)
        which = which.astype(np.int64).reshape(-1)
        drawn = np.empty((unique.shape[0], n, k, d))
        for u, seed in enumerate(unique):
            kern.fixed_copies(X, np.uint64(seed), *sampler, drawn[u])
        copies = drawn.reshape(unique.shape[0], n * k, d)
    gram = np.empty((copies.shape[0], copies.shape[1], copies.shape[1]))
    with _blas_threads(threads):
        for u in range(copies.shape[0]):
            np.matmul(copies[u], copies[u].T, out=gram[u])
    for a in (copies, gram):
        a.setflags(write=False)
    return copies, gram, which, time.perf_counter() - t0


def _blas_threads(n: int) -> Any:
    """A context that limits BLAS to n threads (threadpoolctl, a dependency; without it,
    installed with ``--no-deps``, BLAS keeps its own count). The controller is made once:
    finding the BLAS libraries takes ~2 ms, a limit ~20 µs."""
    if not _controller:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            return contextlib.nullcontext()
        _controller.append(ThreadpoolController())
    return _controller[0].limit(limits=max(1, n), user_api="blas")


_controller: list[Any] = []  # the ThreadpoolController, once made
