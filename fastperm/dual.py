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

The two forms compute the same run, the dual one up to rounding. Its recurrences
accumulate rounding relative to the values at their last resynchronisation, where w is
formed and the residuals and loss recomputed from it: every ``knobs.DUAL_RESYNC · d / k``
steps, whenever the loss has fallen below ``knobs.DUAL_DROP`` times its value there (so
that a loss going to zero stays accurate), and at every step while the loss exceeds
:data:`BIG_LOSS` (a diverging run then stops at the primal loop's step: near overflow the
recurrences' rounding would otherwise decide which step overflows first). The tests check
1e-10 relative over 10⁵ steps, and the divergence step over a sweep of step sizes. Fresh
copies change every step and stay primal, as do k = ∞ (its own closed forms) and float32
runs.

:func:`choose` picks the form from a cost model of one run (``algorithm="auto"``: every
run of a batch takes the form it would take alone); :func:`calls` plans the harness's
calls, in groups of seeds when their copy sets exceed the memory budget together;
:func:`setup` draws the copies and forms their Gram matrices. The kernels are the
``dual_runs`` family of :mod:`fastperm.backends.contract`.
"""

from __future__ import annotations

import contextlib
import dataclasses
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

#: what :func:`fastperm.resume` asks for a result that ran in the dual form: the dual form
#: again where it can run (so that it continues bitwise), else the primal loop
RESUMED = "dual where it can run"

#: a loss (``Σ (w − w*)²``) beyond which a dual run is diverging: its residuals and loss are
#: then computed from w at every step, as the primal loop computes them, so that it stops at
#: the primal loop's step (the recurrences' rounding would otherwise decide, near overflow,
#: which step overflows first)
BIG_LOSS = 1e100

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


def form(algorithm: str, k: float, sampling: str) -> str:
    """``algorithm`` for runs of this k and sampling, where a front end runs several
    methods with one setting (``fastperm figure1 --algorithm``, :mod:`fastperm.timing`):
    itself where the runs have a dual form (plain SGD, fixed copies), else ``"auto"`` (k =
    ∞'s closed forms, fresh copies' primal loop)."""
    has_dual = not math.isinf(k) and (k == 1 or sampling == "fixed")
    return algorithm if has_dual else "auto"


def resync_steps(d: int, k: int) -> int:
    """Steps between two resynchronisations of a dual run
    (:data:`fastperm.knobs.DUAL_RESYNC`)."""
    return max(1, math.ceil(knobs.DUAL_RESYNC * d / k))


def primal_work(s: Shape) -> float:
    """Element operations of the primal kernels for the whole call (fixed copies kept): a
    step's k dot products and k axpys over d."""
    return s.runs * (2.0 * s.k * s.d * s.steps + (6.0 * s.N * s.d if s.k > 1 else 0.0))


def dual_work(s: Shape) -> float:
    """Element operations of the dual form for the whole call, set-up included: the copies
    (k ≥ 2) and Gram matrices of the U sets, then per run ``v`` and the syncs (3·N·d each),
    the steps (N·k multiply-adds for the residuals, k² for the loss) and the records that
    form w (N·d each)."""
    setup = s.sets * ((6.0 * s.N * s.d if s.k > 1 else 0.0) + s.N * s.N * s.d / GRAM_SPEEDUP)
    syncs = 2 + s.steps // resync_steps(s.d, s.k)
    per_run = s.steps * (s.N * s.k + s.k * s.k + 8.0) + syncs * 3.0 * s.N * s.d + s.kept * s.N * s.d
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
    """``"primal"`` or ``"dual"`` for runs of shape ``s``.

    ``"auto"``: the dual form where it can run (fixed copies or k = 1, float64, a backend
    with ``dual_runs``, one copy set and its Gram matrix within ``budget`` bytes) and the
    cost model says one run is cheaper in it (:func:`primal_work`, :func:`dual_work` of
    ``s`` as one run: so that every run of a batch takes the form it would take alone, and
    ``train_many``'s run r stays bitwise ``train``'s) on a run large enough to matter
    (:data:`fastperm.knobs.DUAL_MIN_WORK`). ``"dual"``: the dual form, or a ValueError
    saying why it cannot run. :data:`RESUMED`: the dual form where it can run, else the
    primal loop (a resumed result that ran in the dual form)."""
    if algorithm == "primal":
        return "primal"
    one = dataclasses.replace(s, runs=1, sets=1)
    why = None
    if infinite:
        why = "k = ∞ runs on its own closed forms (O(T + d) per run)"
    elif fresh and s.k > 1:
        why = 'sampling="fresh" draws new copies every step (the dual form needs fixed ones)'
    elif dtype != "float64":
        why = f"it computes in float64 (dtype={dtype!r} was asked for)"
    elif not hasattr(kern, "dual_runs"):
        why = f"backend {kern.name!r} has no dual_runs kernel"
    elif setup_bytes(one) > budget:
        why = (
            f"the copies of one run and their Gram matrix need "
            f"{setup_bytes(one) / 2**20:.0f} MiB, over cache_bytes ({budget / 2**20:.0f} MiB)"
        )
    if algorithm == "dual":
        if why is not None:
            raise ValueError(f"algorithm='dual' cannot run here: {why}")
        return "dual"
    if why is not None:
        return "primal"
    if algorithm == RESUMED:
        return "dual"
    primal = primal_work(one)
    return "dual" if primal >= knobs.DUAL_MIN_WORK and dual_work(one) < primal else "primal"


@dataclass
class Part:
    """One harness call of ``dual_runs``: the runs it covers (rows of the caller's runs),
    the call, and what its set-up needs (:func:`prepare`)."""

    rows: IntArray
    call: _runs.Call
    setup: tuple[Any, ...]


def calls(
    kern: ModuleType,
    values: dict[str, Any],
    s: Shape,
    X: FloatArray,
    seeds: UIntArray,
    sampler: tuple[int, FloatArray, IntArray, IntArray],
    start_step: int,
    threads: int | None,
    budget: int,
) -> list[Part]:
    """The harness's calls of ``dual_runs`` on ``kern`` for runs of shape ``s``, each with
    the runs it covers: one call, or — when the runs' copy sets (k ≥ 2: one per distinct
    seed) and Gram matrices exceed ``budget`` bytes together — one per group of seeds that
    fits (runs are independent: the grouping never changes a bit). ``values``: the
    arguments the linear problem's families share, outputs allocated for all runs; each
    call gets its runs' slices, outputs of its own. Its copies and Gram matrices are made
    by :func:`prepare`, one part at a time."""
    unique = np.unique(seeds) if s.k > 1 else seeds[:1]
    per_group = max(1, budget // max(1, setup_bytes(dataclasses.replace(s, runs=1, sets=1))))
    out = []
    for g in range(0, unique.shape[0], per_group):
        rows = (
            np.arange(s.runs)
            if unique.shape[0] <= per_group
            else np.flatnonzero(np.isin(seeds, unique[g : g + per_group]))
        )
        part = dict(values)
        R = rows.shape[0]
        part.update(
            lr=values["lr"][rows],
            W0=values["W0"] if values["W0"].shape[0] == 1 else values["W0"][rows],
            k=s.k,
            start_step=start_step,
            resync=resync_steps(s.d, s.k),
            drop=knobs.DUAL_DROP,
            big=BIG_LOSS,
            **_runs.run_outputs(R, values["loss_out"].shape[1], s.d, values["w_rec"].shape[1] > 0),
        )
        sets = 1 if s.k == 1 else np.unique(seeds[rows]).shape[0]
        shape = dataclasses.replace(s, runs=R, sets=sets)
        work = dual_work(shape)
        setup_args = (X, seeds[rows], sampler, _runs.threads_for(kern, R, work, threads))
        call = _runs.Call("dual_runs", part, R, work, seeds=seeds[rows])
        out.append(Part(rows, call, setup_args))
    return out


def prepare(kern: ModuleType, part: Part) -> tuple[float, float]:
    """Draw the copies and form the Gram matrices of a part from :func:`calls` into its
    call; returns the seconds it took and the seconds compiling the copies' kernel took
    beforehand (kept out of the first)."""
    X, seeds, sampler, threads = part.setup
    values = part.call.values
    # (k = 1 trains on the examples themselves: no copies to draw, nothing to compile)
    compile_seconds = _runs.compile_kernels(kern, "fixed_copies") if values["k"] > 1 else 0.0
    copies, gram, which, seconds = setup(kern, X, values["k"], seeds, sampler, threads)
    values.update(copies=copies, gram=gram, which=which)
    return seconds, compile_seconds


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
