"""Symmetry-leveraging schemes on the linear permutation problem: vanilla, DA, FA, EA.

The problem's target ``w* = c·1`` is invariant under the group S_d of coordinate
permutations; the invariant linear models are ``span(1)``. Four ways to train,
after "Symmetries in Overparametrized Neural Networks: A Mean-Field View"
(NeurIPS 2024), which compares data augmentation, feature averaging and
equivariant architectures; the linear permutation problem is their simplest
instance:

* ``"vanilla"``: SGD on ``½(wᵀx − y)²``.
* ``"da"``: data augmentation — the mean gradient over x and k − 1 random
  permutations of it (k-fold, ``sampling`` fixed or fresh), or the exact expected
  gradient for ``k = math.inf`` (:mod:`fastperm.augment`).
* ``"fa"``: feature averaging — the model averaged over the group,
  ``f(x) = (1/d!) Σ_σ wᵀx_σ = mean(x) Σw``, trained directly: its gradient
  ``(f − y) mean(x) 1`` lies in span(1), so the part of w outside span(1) never
  moves (it does not matter for f either).
* ``"ea"``: equivariant (here invariant) architecture — w restricted to span(1),
  ``w = α 1``, ``f = α Σx``, SGD on α: ``α ← α − lr (α Σx − y) Σx``. A start outside
  span(1) is projected onto it.

Recorded along the run: the loss ``mean((w − w*)²)`` and the distance of w to the
invariant subspace, ``sqrt(mean((w − mean(w))²))`` (RMS of the non-invariant part;
computed about w_0 so that a w with equal entries has distance exactly 0).
Facts the tests check: EA stays in span(1) exactly; DA with k = ∞ from an invariant
start stays in it (its step maps span(1) to itself) and there takes exactly FA's
steps (on w = α1 the expected gradient is ``(a + c d) α − e = (s1²/d) α − y s1/d``,
FA's gradient); FA keeps the distance of its start; vanilla and k-fold DA leave
span(1) (their steps follow single examples or a few copies).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from . import _checks, _runs, codes
from ._typing import FloatArray, IntArray, Sampling, Scheme
from .problems import LinearProblem, as_problem

SCHEMES = cast("tuple[Scheme, ...]", tuple(codes.SCHEMES))


@dataclass
class SchemeResult:
    """Loss and distance to span(1) per recorded step; ``(runs, records)`` arrays."""

    scheme: str
    k: float
    steps: IntArray
    loss: FloatArray
    distance: FloatArray
    w: FloatArray
    diverged_step: IntArray
    backend: str

    @property
    def label(self) -> str:
        if self.scheme != "da":
            return self.scheme.upper() if self.scheme != "vanilla" else "vanilla"
        return "DA k=∞" if math.isinf(self.k) else f"DA k={int(self.k)}"


def run(
    problem: LinearProblem,
    scheme: Scheme,
    *,
    k: float = 16,
    sampling: Sampling = "fixed",
    lr: float = 1e-3,
    steps: int = 1000,
    w0: npt.ArrayLike | None = None,
    seeds: npt.ArrayLike = (0,),
    record_every: int = 1,
    backend: str | None = None,
    threads: int | None = None,
    client: Any = None,
) -> SchemeResult:
    """Train with one scheme; R runs (one per seed) in one call.

    Parameters
    ----------
    problem : LinearProblem
    scheme : {"vanilla", "da", "fa", "ea"}
    k : int >= 1 or math.inf
        Copies for ``"da"`` (ignored otherwise).
    sampling : {"fixed", "fresh"}
        DA copies drawn once per example or at every step.
    w0 : (d,) array, optional
        Start (zeros: inside span(1)); EA projects it onto span(1).
    backend : {"numba", "numpy"} or None
    threads : int, optional
        Threads for this call (as in :func:`fastperm.train`). Never changes results.
    client : dask.distributed.Client, optional
        Spread the runs over a Dask cluster (:mod:`fastperm.distributed`); the same result.

    Returns
    -------
    SchemeResult

    Examples
    --------
    The equivariant model stays in span(1) and reaches w* = 1; vanilla SGD leaves it:

    >>> import numpy as np
    >>> from fastperm import LinearProblem, schemes
    >>> problem = LinearProblem.sample(d=20, n=5, seed=0)
    >>> ea = schemes.run(problem, "ea", lr=0.01, steps=100, seeds=[0, 1], record_every=50,
    ...                  backend="numpy")  # the NumPy reference: numba gives the same
    >>> ea.label, ea.loss.shape, float(ea.distance.max())
    ('EA', (2, 3), 0.0)
    >>> np.round(ea.loss[0], 6)
    array([1., 0., 0.])
    >>> van = schemes.run(problem, "vanilla", lr=0.01, steps=100, record_every=50,
    ...                   backend="numpy")
    >>> van.label, np.round(van.loss[0], 6), bool(van.distance[0, -1] > 0.4)
    ('vanilla', array([1.      , 0.729363, 0.701106]), True)
    """
    problem = as_problem(problem)
    scheme = _checks.as_choice("scheme", scheme, SCHEMES)
    k = _checks.as_k(k)
    sampling = _checks.as_choice("sampling", sampling, _checks.SAMPLINGS)
    steps = _checks.as_int("steps", steps, minimum=0, maximum=2**32 - 2)
    record_every = _checks.as_int("record_every", record_every, minimum=1)
    lr = _checks.as_positive_real("lr", lr)
    seeds = _checks.as_array_param("seeds", seeds, _checks.as_seed, np.uint64)
    threads = _runs.as_threads(threads)
    d = problem.d
    W0 = problem.start(w0)
    if scheme == "ea":
        W0[:] = W0.mean()
    kk = _runs.k_code(k) if scheme == "da" else 1
    rec = _runs.record_steps(steps, record_every)
    R = seeds.shape[0]
    lr_runs = np.full(R, lr)
    out = _runs.run_outputs(R, rec.shape[0] - 1, d)
    values: dict[str, Any] = {  # the kernel's arguments by name (contract.FAMILIES)
        "X": problem.X,
        "y": problem.y,
        "w_star": problem.known_w_star(
            "a scheme's loss mean((w − w*)²)", "run it on a problem with w*"
        ),
        "W0": W0,
        "lr": lr_runs,
        "seeds": seeds,
        "scheme": codes.SCHEMES[scheme],
        "k": kk,
        "fresh": sampling == "fresh",
        "steps": steps,
        "record_steps": rec,
        "dist_out": np.empty_like(out["loss_out"]),
        **out,
    }
    call = _runs.Call("scheme_runs", values, R, R * steps * 3.0 * d * max(kk, 1))
    done = _runs.run(call, backend=backend, threads=threads, client=client)
    return SchemeResult(
        scheme,
        k,
        rec[:-1],
        values["loss_out"],
        values["dist_out"],
        values["w_out"],
        values["status_out"],
        done.backend,
    )


def compare(
    problem: LinearProblem | None = None,
    *,
    k: float = 16,
    lr: float = 1e-3,
    steps: int = 1000,
    seeds: Iterable[int] = range(5),
    outside_scale: float = 0.5,
    record_every: int = 5,
    backend: str | None = None,
) -> dict[tuple[str, str], SchemeResult]:
    """Every scheme (vanilla, DA k-fold, DA k = ∞, FA, EA) from two starts: inside span(1)
    (w0 = 0) and outside (w0 ~ N(0, outside_scale²) per coordinate, drawn from its own
    stream so that it is independent of the problem's data: a start drawn with the data's
    seed would be the first example and lie in the data span).

    Returns ``{("inside" | "outside", label): SchemeResult}``.
    """
    problem = problem or LinearProblem.sample(d=400, n=40, seed=0)
    starts = {
        "inside": np.zeros(problem.d),
        "outside": outside_scale * np.random.default_rng(987_654_321).standard_normal(problem.d),
    }
    out: dict[tuple[str, str], SchemeResult] = {}
    plan: tuple[tuple[Scheme, float], ...] = (
        ("vanilla", 1),
        ("da", k),
        ("da", math.inf),
        ("fa", 1),
        ("ea", 1),
    )
    for where, w0 in starts.items():
        for scheme, kk in plan:
            res = run(
                problem,
                scheme,
                k=kk,
                lr=lr,
                steps=steps,
                w0=w0,
                seeds=list(seeds),
                record_every=record_every,
                backend=backend,
            )
            out[(where, res.label)] = res
    return out
