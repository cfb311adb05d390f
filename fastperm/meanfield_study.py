"""The mean-field study behind ``fastperm figure-meanfield`` (issue 20).

The teacher–student experiment of Maass Martínez & Fontbona ("Symmetries in
Overparametrized Neural Networks: A Mean-Field View", NeurIPS 2024, arXiv 2405.19995) on
:mod:`fastperm.meanfield`'s kernels: students of N ∈ {5, 10, 50, 100, 500, 1000, 5000}
particles, all started from the same strongly invariant (SI) law, trained by each scheme
on the same samples, for three teachers (arbitrary, weakly invariant, strongly invariant).
For every final law it measures the RMD to its projection onto E^G (all N), to its
symmetrisation and to the law DA (exact) reached from the same start on the same samples
(exact assignment, up to ``ot_max`` particles), over several seeds.

Choices made here where the paper is not available to this project (stated in the
figure's table): teachers of m = 4 particles with N(0, 2²) entries, inputs
``x ~ N(0, I)``, no label noise, an SI start of N(0, 1) entries projected onto E^G,
online SGD with one sample per step, lr = 0.2, 1500 steps, no L2 term or Langevin noise.

Two more experiments test what the first one shows: the particle positions of one
student (N = 500) in E^G coordinates, and vanilla's distance to E^G against the step size
at a fixed training time lr·T — the finite-N departure from E^G is SGD's sampling noise,
of size O(√lr), the scale the mean-field limit (lr → 0) removes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _checks
from . import meanfield as mf
from ._typing import FloatArray

#: the paper's widths
WIDTHS = (5, 10, 50, 100, 500, 1000, 5000)
#: the schemes compared: (name, k); DA with k = 0 is the exact group average
SCHEMES = (("vanilla", 0), ("da", 0), ("da", 1), ("fa", 0), ("ea", 0))


def label(scheme: str, k: int) -> str:
    """A scheme's name in tables and legends."""
    if scheme == "da":
        return "DA (exact)" if k == 0 else f"DA (k={k})"
    return scheme.upper() if scheme != "vanilla" else "vanilla"


@dataclass
class Study:
    """What :func:`run` measured.

    ``rmd_projection``, ``rmd_symmetrisation``, ``rmd_to_da``, ``loss``: arrays
    (teachers, widths, schemes, seeds) — NaN where not computed (the assignments above
    ``ot_max`` particles). ``views``: teacher → scheme label → the final particles of
    seed 0 at ``view_n``; ``teachers``: kind → :class:`~fastperm.meanfield.Teacher`;
    ``lr_sweep``: teacher → (lrs, RMDs (lrs, seeds)); ``settings``; ``seconds``:
    training and transport wall times; ``verdicts``: (claim, measurement, agreement)."""

    widths: tuple[int, ...]
    schemes: tuple[tuple[str, int], ...]
    rmd_projection: FloatArray
    rmd_symmetrisation: FloatArray
    rmd_to_da: FloatArray
    loss: FloatArray
    views: dict[str, dict[str, FloatArray]]
    teachers: dict[str, mf.Teacher]
    lr_sweep: dict[str, tuple[FloatArray, FloatArray]]
    settings: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)
    verdicts: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        return [label(s, k) for s, k in self.schemes]

    def table(self) -> list[tuple[str, str, int, float, float, float, float, float]]:
        """Rows (teacher, scheme, N, RMD to π#μ mean, its seed sd, RMD to μ^G, RMD to DA's
        law, risk), means over seeds."""
        rows = []
        with np.errstate(invalid="ignore"):
            for a, kind in enumerate(self.teachers):
                for c, name in enumerate(self.labels):
                    for b, n in enumerate(self.widths):
                        p = self.rmd_projection[a, b, c]
                        rows.append(
                            (
                                kind,
                                name,
                                n,
                                float(np.mean(p)),
                                float(np.std(p)),
                                float(np.mean(self.rmd_symmetrisation[a, b, c])),
                                float(np.mean(self.rmd_to_da[a, b, c])),
                                float(np.mean(self.loss[a, b, c])),
                            )
                        )
        return rows

    def save(self, path: str) -> None:
        """Write the RMDs, the particle views, the sweep, the settings and the verdicts to
        a ``.npz`` (NumPy only)."""
        arrays: dict[str, Any] = {
            "widths": np.array(self.widths),
            "rmd_projection": self.rmd_projection,
            "rmd_symmetrisation": self.rmd_symmetrisation,
            "rmd_to_da": self.rmd_to_da,
            "loss": self.loss,
        }
        for kind, views in self.views.items():
            for i, theta in enumerate(views.values()):
                arrays[f"view_{kind}_{i}"] = theta
        for kind, (lrs, rmds) in self.lr_sweep.items():
            arrays[f"sweep_{kind}_lr"] = lrs
            arrays[f"sweep_{kind}_rmd"] = rmds
        info = {
            "settings": self.settings,
            "schemes": [list(s) for s in self.schemes],
            "teachers": {k: t.describe() for k, t in self.teachers.items()},
            "seconds": self.seconds,
            "verdicts": [list(v) for v in self.verdicts],
        }
        np.savez(path, fastperm_metadata=np.array(json.dumps(info)), **arrays)


def _slope(x: Sequence[float], y: FloatArray) -> float:
    """The least-squares slope of log y against log x (NaN with fewer than 2 points)."""
    ok = np.isfinite(y) & (y > 0)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(np.asarray(x, dtype=float)[ok]), np.log(y[ok]), 1)[0])


def _transport(theta: FloatArray, da: int, threads: int | None) -> tuple[FloatArray, FloatArray]:
    """The RMDs of each final law (schemes, seeds, N, 4) to its symmetrisation and to DA's
    law of the same seed, the assignments spread over threads (SciPy's solver releases the
    GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    S, seeds, n = theta.shape[:3]
    # at most ~2 GB of cost matrices at once: the symmetrisation's holds 8 (2N)² bytes
    workers = max(1, min(threads or os.cpu_count() or 1, int(2e9 // (8 * (2 * n) ** 2))))
    jobs = [(c, s) for c in range(S) for s in range(seeds)]

    def one(job: tuple[int, int]) -> tuple[float, float]:
        c, s = job
        if not (np.all(np.isfinite(theta[c, s])) and np.all(np.isfinite(theta[da, s]))):
            return np.nan, np.nan  # a diverged run (train warned): left out of the means
        return mf.rmd_symmetrisation(theta[c, s]), mf.rmd(theta[c, s], theta[da, s])

    with ThreadPoolExecutor(workers) as pool:
        values = np.array(list(pool.map(one, jobs)))
    return values[:, 0].reshape(S, seeds), values[:, 1].reshape(S, seeds)


def run(
    *,
    widths: Sequence[int] = WIDTHS,
    seeds: int = 10,
    lr: float = 0.2,
    steps: int = 1500,
    batch: int = 1,
    teacher_size: int = 4,
    teacher_scale: float = 2.0,
    ot_max: int = 1000,
    view_n: int | None = None,
    sweep_lrs: Sequence[float] = (0.4, 0.2, 0.1, 0.05),
    sweep_n: int = 500,
    sweep_seeds: int = 4,
    backend: str | None = None,
    threads: int | None = None,
    progress: bool = False,
) -> Study:
    """Run the study (module docstring); returns a :class:`Study`.

    Parameters
    ----------
    widths : sequence of int
        The particle counts N.
    seeds : int >= 2
        Seeds per (teacher, N, scheme); seed s starts from ``init(N, seed=s)`` and draws
        the same samples in every scheme.
    lr, steps, batch
        The online SGD (mean-field scaling).
    teacher_size, teacher_scale
        The teachers' particles m and the scale of their entries.
    ot_max : int
        The largest N whose symmetrisation and between-scheme RMDs are computed (exact
        assignments of 2N and N atoms: O(N³) time, 8 (2N)² bytes).
    view_n : int, optional
        The N whose particles (seed 0) the figure shows, one of ``widths``; default the
        width nearest 500.
    sweep_lrs, sweep_n, sweep_seeds
        Vanilla's RMD to E^G against the step size at the fixed time ``lr · steps``.
    backend, threads, progress
        As in :func:`fastperm.meanfield.train`.
    """
    import time

    # every argument checked before the first run (the study takes minutes)
    widths = tuple(_checks.as_int("widths", n, minimum=1, maximum=10**6) for n in widths)
    if not widths:
        raise ValueError("widths is empty")
    seeds = _checks.as_int("seeds", seeds, minimum=2, maximum=10**4)
    steps = _checks.as_int("steps", steps, minimum=1, maximum=2**32 - 2)
    _checks.as_positive_real("lr", lr)
    _checks.as_int("batch", batch, minimum=1, maximum=2**31)
    _checks.as_int("teacher_size", teacher_size, minimum=2, maximum=10**6)
    _checks.as_positive_real("teacher_scale", teacher_scale)
    ot_max = _checks.as_int("ot_max", ot_max, minimum=0, maximum=mf.MAX_ATOMS // 2)
    if view_n is None:
        view_n = min(widths, key=lambda n: abs(n - 500))
    if view_n not in widths:
        raise ValueError(f"view_n must be one of widths {list(widths)}, got {view_n!r}")
    sweep_lrs = [_checks.as_positive_real("sweep_lrs", v) for v in sweep_lrs]
    if len(sweep_lrs) < 2:
        raise ValueError("sweep_lrs needs at least two step sizes (a slope)")
    sweep_n = _checks.as_int("sweep_n", sweep_n, minimum=1, maximum=10**6)
    sweep_seeds = _checks.as_int("sweep_seeds", sweep_seeds, minimum=1, maximum=10**4)
    time_total = lr * steps
    sweep_steps = [max(1, round(time_total / eta)) for eta in sweep_lrs]
    if max(sweep_steps) > 10**7:
        raise ValueError(
            f"sweep_lrs: the sweep keeps the time lr·steps = {time_total:g}, which takes "
            f"{max(sweep_steps):.3g} steps at lr = {min(sweep_lrs):g} (> 10⁷): raise the smallest"
        )
    kinds = mf.TEACHER_KINDS
    teachers = {
        kind: mf.Teacher.make(kind, teacher_size, scale=teacher_scale, seed=1) for kind in kinds
    }
    names = [s for s, _ in SCHEMES]
    ks = [k for _, k in SCHEMES]
    S = len(SCHEMES)
    shape = (len(kinds), len(widths), S, seeds)
    rmd_p, rmd_s, rmd_d, loss = (np.full(shape, np.nan) for _ in range(4))
    views: dict[str, dict[str, FloatArray]] = {kind: {} for kind in kinds}
    labels = [label(s, k) for s, k in SCHEMES]
    da = ks.index(0, names.index("da"))
    seconds = {"training": 0.0, "transport": 0.0}
    for b, n in enumerate(widths):
        starts = np.stack([mf.init(n, seed=s) for s in range(seeds)])
        for a, kind in enumerate(kinds):
            t0 = time.perf_counter()
            res = mf.train(
                teachers[kind],
                np.tile(starts, (S, 1, 1)),
                scheme=np.repeat(names, seeds).tolist(),
                k=np.repeat(ks, seeds),
                lr=lr,
                steps=steps,
                batch=batch,
                seeds=np.tile(np.arange(seeds), S),
                record_every=steps,
                backend=backend,
                threads=threads,
                progress=progress and f"{kind} teacher, N = {n}",
            )
            seconds["training"] += time.perf_counter() - t0
            theta = res.theta.reshape(S, seeds, n, 4)
            rmd_p[a, b] = res.rmd_projection()[:, -1].reshape(S, seeds)
            loss[a, b] = res.loss[:, -1].reshape(S, seeds)
            if n == view_n:
                views[kind] = {labels[c]: theta[c, 0] for c in range(S)}
            if n <= ot_max:
                t0 = time.perf_counter()
                rmd_s[a, b], rmd_d[a, b] = _transport(theta, da, threads)
                seconds["transport"] += time.perf_counter() - t0
    sweep = {}
    sweep_starts = np.stack([mf.init(sweep_n, seed=s) for s in range(sweep_seeds)])
    t0 = time.perf_counter()
    for kind in ("weak", "strong"):
        rows = []
        for eta, eta_steps in zip(sweep_lrs, sweep_steps, strict=True):
            res = mf.train(
                teachers[kind],
                sweep_starts,
                lr=eta,
                steps=eta_steps,
                batch=batch,
                seeds=np.arange(sweep_seeds),
                record_every=eta_steps,
                backend=backend,
                threads=threads,
            )
            rows.append(res.rmd_projection()[:, -1])
        sweep[kind] = (np.array(sweep_lrs, dtype=float), np.array(rows))
    seconds["lr sweep"] = time.perf_counter() - t0
    study = Study(
        widths,
        SCHEMES,
        rmd_p,
        rmd_s,
        rmd_d,
        loss,
        views,
        teachers,
        sweep,
        {
            "lr": lr,
            "steps": steps,
            "batch": batch,
            "seeds": seeds,
            "teacher_size": teacher_size,
            "teacher_scale": teacher_scale,
            "init": "SI: N(0, 1) entries projected onto E^G",
            "inputs": "x ~ N(0, I), no label noise",
            "ot_max": ot_max,
            "view_n": view_n,
            "sweep_n": sweep_n,
            "sweep_time": time_total,
        },
        seconds,
    )
    study.verdicts = verdicts(study)
    return study


def verdicts(study: Study) -> list[tuple[str, str, str]]:
    """The paper's qualitative claims against the measurements: (claim, measured, verdict)."""
    labels = study.labels
    kinds = list(study.teachers)
    P = study.rmd_projection
    ea, da, fa, van = (labels.index(x) for x in ("EA", "DA (exact)", "FA", "vanilla"))
    inv = [kinds.index("weak"), kinds.index("strong")]
    arb = kinds.index("arbitrary")
    out = []
    worst = float(np.nanmax(P[:, :, ea]))
    out.append(("EA's law is SI (in E^G)", f"max RMD to π#μ = {worst:.1e}", _yes(worst == 0)))
    near = float(np.nanmax(P[:, :, [da, fa]]))
    out.append(
        (
            "DA and FA stay near E^G (SI start)",
            f"max RMD to π#μ = {near:.1e} (rounding)",
            _yes(near < 1e-8),
        )
    )
    widths = study.widths
    for a in inv:
        means = np.nanmean(P[a, :, van], axis=-1)
        slope = _slope(widths, means)
        if len(widths) < 3:
            verdict = "too few widths to tell"
        elif slope < -0.1:
            verdict = "agrees"
        else:
            verdict = "differs at fixed lr: the distance is SGD noise"
        out.append(
            (
                f"vanilla approaches E^G as N grows ({kinds[a]} teacher)",
                f"RMD {means[0]:.3f} (N={widths[0]}) → {means[-1]:.3f} (N={widths[-1]}); "
                f"slope in N {slope:+.2f}",
                verdict,
            )
        )
        lrs, rmds = study.lr_sweep.get(kinds[a], (np.array([]), np.empty((0, 0))))
        if lrs.size:
            s = _slope(lrs, rmds.mean(axis=1))
            out.append(
                (
                    f"… and it vanishes as lr → 0 at fixed time ({kinds[a]}, "
                    f"N = {study.settings['sweep_n']})",
                    f"RMD ∝ lr^{s:.2f}",
                    _yes(s > 0.3),
                )
            )
    ratio = np.nanmean(P[arb, :, van]) / np.nanmean(P[inv][:, :, van])
    out.append(
        (
            "vanilla leaves E^G for the arbitrary teacher",
            f"RMD {np.nanmean(P[arb, :, van]):.3f}, {ratio:.0f}× the invariant teachers'",
            _yes(ratio > 3),
        )
    )
    D = study.rmd_to_da
    done = np.isfinite(D[inv][:, :, van]).all(axis=(0, -1))  # the N with assignments
    if done.any():
        by_n = np.mean(D[inv][:, done, van], axis=(0, -1))
        out.append(
            (
                "vanilla and DA share one mean-field dynamics (symmetric data)",
                f"RMD(vanilla, DA) {by_n[0]:.3f} → {by_n[-1]:.3f} over N ≤ "
                f"{max(np.array(widths)[done])}, vs arbitrary teacher "
                f"{np.mean(D[arb, done, van]):.3f}",
                _yes(by_n[-1] < 0.5 * np.mean(D[arb, done, van])),
            )
        )
    return out


def _yes(ok: bool) -> str:
    return "agrees" if ok else "differs"


def print_table(study: Study) -> None:
    """The table and the verdicts, as the CLI prints them."""
    print(f"{'teacher':<10} {'scheme':<11} {'N':>5} {'RMD π#μ':>9} {'± sd':>8} "
          f"{'RMD μ^G':>9} {'RMD DA':>8} {'risk':>9}")  # fmt: skip
    for kind, name, n, p, sd, s, d, risk in study.table():
        print(f"{kind:<10} {name:<11} {n:>5} {p:9.2e} {sd:8.1e} {s:9.2e} {d:8.2e} {risk:9.2e}")
    print()
    for claim, measured, verdict in study.verdicts:
        print(f"{claim}: {measured} — {verdict}")
    sec = ", ".join(f"{k} {v:.0f} s" for k, v in study.seconds.items())
    print(f"wall time: {sec}")
