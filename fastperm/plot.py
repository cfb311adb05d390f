"""Matplotlib figures.

Matplotlib is imported inside the functions (the ``plot`` extra), so that
``import fastperm`` never needs it.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator

import numpy as np


def k_label(k) -> str:
    if math.isinf(k):
        return "k = ∞ (expected gradient)"
    return "k = 1 (plain SGD)" if k == 1 else f"k = {k}"


def has_plateaus(sampling: str, augmentation: str) -> bool:
    """Whether finite k has the plateau ``1 − min(nk, d)/d`` (:func:`figure1`): fixed
    permutations only."""
    return sampling == "fixed" and augmentation == "permutation"


def figure1(
    curves: dict,
    *,
    d: int,
    n: int,
    lr: float,
    sampling: str,
    augmentation: str = "permutation",
    ax=None,
):
    """Loss curves per k, mean over seeds with a ±1 standard deviation band.

    Reproduces Figure 1 of the post "Perturbation Invariant Gradients:
    Permutation Case Study" (d = 400, n = 40, lr = 1e-3, fixed permutations).
    With fixed permutations, each finite k has a dotted line at the plateau
    ``1 − min(nk, d)/d`` it heads to: SGD from w0 = 0 stays in the span of the n·k copies,
    whose labels agree with w* = c·1 (a permutation does not change ``xᵀ1``). Other
    augmentations get no line: resampled copies' labels disagree with w*, so the runs do
    not settle at a projection (and fresh copies span everything).

    Parameters
    ----------
    curves : dict
        ``k → (steps, loss)`` with ``loss`` of shape (seeds, records).
    d, n, lr, sampling, augmentation : the settings, for the title and plateaus.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(7.5, 4.8), constrained_layout=True)
    else:
        fig = ax.figure
    plateaus = has_plateaus(sampling, augmentation)
    colours = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, len(curves)))
    for (k, (steps, loss)), colour in zip(curves.items(), colours, strict=False):
        mean = loss.mean(axis=0)
        sd = loss.std(axis=0)
        ax.plot(
            steps,
            mean,
            color=colour,
            lw=2 if math.isinf(k) else 1.5,
            label=k_label(k),
            ls="--" if math.isinf(k) else "-",
        )
        ax.fill_between(steps, mean - sd, mean + sd, color=colour, alpha=0.2, lw=0)
        if plateaus and not math.isinf(k):
            ax.axhline(1 - min(n * k, d) / d, color=colour, ls=":", lw=1)
    seeds = next(iter(curves.values()))[1].shape[0]
    ax.set_xlabel("step")
    ax.set_ylabel("mean((w − w*)²)")
    ax.set_ylim(bottom=0)
    ax.set_xlim(0, max(s[-1] for s, _ in curves.values()))
    ax.set_title(  # two short lines: one long line was clipped for longer settings
        f"k-fold {augmentation} augmentation ({sampling} copies) and k = ∞\n"
        f"d = {d}, n = {n}, lr = {lr:g}, mean ± sd over {seeds} seeds",
        fontsize=10,
    )
    ax.legend(frameon=False, fontsize=9)
    if plateaus:
        ax.text(
            0.99,
            0.01,
            "dotted: plateau 1 − min(nk, d)/d",
            transform=ax.transAxes,
            ha="right",
            va="bottom",
            fontsize=8,
            color="0.4",
        )
    return fig


SCHEME_STYLES = {
    "vanilla": ("0.45", "-"),
    "DA k=∞": ("C3", "--"),
    "FA": ("C2", "-"),
    "EA": ("C0", "-."),
}


def schemes_figure(results: dict, *, d: int, n: int, lr: float):
    """Loss (top) and distance to span(1) (bottom) per scheme, for a start inside span(1)
    (left) and outside it (right); mean over runs. From inside, DA k = ∞ and FA take the
    same steps (dashed over solid).

    Parameters
    ----------
    results : dict
        ``(start, label) → SchemeResult`` from :func:`fastperm.schemes.compare`.
    d, n, lr : the settings, for the title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    starts = list(dict.fromkeys(s for s, _ in results))
    fig, axes = plt.subplots(
        2, len(starts), figsize=(11, 6.5), sharex=True, constrained_layout=True, squeeze=False
    )
    for col, start in enumerate(starts):
        for (s, label), res in results.items():
            if s != start:
                continue
            colour, ls = SCHEME_STYLES.get(label, ("C1", "-"))
            z = 3 if ls != "-" else 2  # dashed lines on top: they may coincide with FA
            axes[0, col].plot(
                res.steps, res.loss.mean(axis=0), color=colour, ls=ls, label=label, zorder=z
            )
            axes[1, col].plot(
                res.steps, res.distance.mean(axis=0), color=colour, ls=ls, label=label, zorder=z
            )
        axes[0, col].set_title(
            f"start {start} span(1)"
            + (" (w0 = 0)" if start == "inside" else " (w0 ~ N(0, 0.25 I))"),
            fontsize=10,
        )
        axes[0, col].set_ylabel("mean((w − w*)²)")
        axes[0, col].set_ylim(bottom=0)
        axes[1, col].set_ylim(bottom=0)
        axes[1, col].set_ylabel("distance to span(1), RMS")
        axes[1, col].set_xlabel("step")
    axes[0, 0].legend(frameon=False, fontsize=9, loc="upper right")
    runs = next(iter(results.values())).loss.shape[0]
    fig.suptitle(
        f"Symmetry schemes on the linear permutation problem: d = {d}, n = {n}, "
        f"lr = {lr:g}, mean over {runs} runs",
        fontsize=11,
    )
    return fig


#: the sweep's dimensions that each get a row of panels when swept (k is the lines' colour)
SWEEP_FACETS = ("augmentation", "sampling", "d", "n", "data_seed")


def sweep_figure(ds, metric: str | None = None, max_rows: int = 6):
    """The plots a sweep is made for: final loss against lr per k with seed bands (left),
    and the loss curves per k at each k's best lr, with seed bands (right).

    Lines are the median over seeds; bands span the 10th to 90th percentile (runs that
    diverged are left out; an lr where every seed diverged has no point). One row per
    setting of the other swept dimensions (augmentation, sampling, d, n, data_seed), at most
    ``max_rows``.

    Parameters
    ----------
    ds : xarray.Dataset
        From :func:`fastperm.sweep` (or ``xarray.open_zarr`` of its store).
    metric : str, optional
        ``"error"``, ``"train"`` or ``"test"`` (default: the sweep's first).
    max_rows : int
        Rows of panels shown (the first settings); the title says when some are left out.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    metric = metric or ds.attrs.get("metric", "error")
    name = f"loss_{metric}"
    if name not in ds:
        have = [v[5:] for v in ds.data_vars if str(v).startswith("loss_")]
        raise ValueError(f"metric {metric!r} is not in this sweep; it has {have}")
    loss = ds[name]
    swept = [dim for dim in SWEEP_FACETS if ds.sizes[dim] > 1]
    settings = list(np.ndindex(*(ds.sizes[dim] for dim in swept))) or [()]
    shown = settings[:max_rows]
    fig, axes = plt.subplots(
        len(shown), 2, figsize=(11, 3.6 * len(shown)), squeeze=False, constrained_layout=True
    )
    lr = ds["lr"].values
    steps = ds["step"].values
    for row, where in enumerate(shown):
        select = {dim: 0 for dim in SWEEP_FACETS} | dict(zip(swept, where, strict=True))
        cell = loss.isel(select)  # (k, lr, seed, step)
        values = np.asarray(cell.transpose("k", "lr", "seed", "step").values)
        left, right = axes[row]
        for i, k in enumerate(ds["k"].values):
            colour = f"C{i % 10}"
            final = values[i, :, :, -1]
            with _quiet_nan():
                mid = np.nanmedian(final, axis=1)
                lo, hi = np.nanpercentile(final, [10, 90], axis=1)
            k = int(k) if math.isfinite(k) else k
            left.plot(lr, mid, "o-", color=colour, label=k_label(k), ms=3)
            left.fill_between(lr, lo, hi, color=colour, alpha=0.2, lw=0)
            if np.all(np.isnan(mid)):
                continue
            best = int(np.nanargmin(mid))
            with _quiet_nan():
                curve = np.nanmedian(values[i, best], axis=0)
                clo, chi = np.nanpercentile(values[i, best], [10, 90], axis=0)
            right.plot(steps, curve, color=colour, label=f"{k_label(k)}, lr = {lr[best]:.3g}")
            right.fill_between(steps, clo, chi, color=colour, alpha=0.2, lw=0)
        title = ", ".join(
            f"{dim} = {ds[dim].values[i]}" for dim, i in zip(swept, where, strict=True)
        )
        for ax in (left, right):
            ax.set_yscale("log")
            ax.set_ylabel(_METRIC_LABELS.get(metric, metric))
            if title:
                ax.set_title(title, fontsize=9)
        left.set_xscale("log")
        left.set_xlabel(f"lr (loss at step {int(steps[-1])})")
        right.set_xlabel("step (each k at its best lr)")
        left.legend(frameon=False, fontsize=8)
        right.legend(frameon=False, fontsize=8)
    seeds = ds.sizes["seed"]
    left_out = len(settings) - len(shown)
    more = f"; {left_out} more settings not shown" if left_out else ""
    fig.suptitle(f"Sweep: median over {seeds} seeds, bands 10th–90th percentile{more}", fontsize=11)
    return fig


_METRIC_LABELS = {
    "error": "mean((w − w*)²)",
    "train": "training loss mean((Xw − y)²)",
    "test": "held-out loss mean((Xw − y)²)",
}


@contextlib.contextmanager
def _quiet_nan() -> Iterator[None]:
    """NumPy's 'All-NaN slice' warnings off: a fully diverged lr is shown as a gap."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def equilibrium_figure(study):
    """The noise-equilibrium figure (:mod:`fastperm.equilibrium_study`): top row, the
    isotropic two-layer network from two starts — ‖C‖_F against the step (SGD: seed mean and
    min–max band; GD dashed), ‖U‖² and ‖W‖², and the final singular values; bottom row, the
    anisotropic inputs — the Hessian trace against the step and W's final singular values
    per input direction — and the deep linear network's charge for k = 1, 16, ∞ and clean
    SGD. Predictions are dotted black lines.

    Parameters
    ----------
    study : fastperm.equilibrium_study.Study

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    with _quiet_nan():  # a diverged seed is left out of the means
        return _equilibrium_panels(study, plt)


def _equilibrium_panels(study, plt):
    from . import equilibrium as eq
    from . import equilibrium_study as es

    s = study.settings
    n = s["seeds"]
    T, Ta = study.teachers
    p = study.predictions
    tau, plat, pred, pa = p["tau"], p["plateau"], p["isotropic"], p["anisotropic"]
    fig, ax = plt.subplots(2, 3, figsize=(15, 8.5), constrained_layout=True)
    for i, (name, res) in enumerate(study.isotropic.items()):
        colour = f"C{i}"
        c = res.charge[:n]
        ax[0, 0].plot(res.steps, np.nanmean(c, axis=0), color=colour, label=f"SGD, {name}")
        ax[0, 0].fill_between(
            res.steps, np.nanmin(c, axis=0), np.nanmax(c, axis=0), color=colour, alpha=0.25
        )
        ax[0, 0].plot(res.steps, res.charge[n], color=colour, ls="--", label=f"GD, {name}")
        for values, ls, label in ((res.u2, "-", "‖U‖²"), (res.w2, ":", "‖W‖²")):
            ax[0, 1].plot(
                res.steps,
                np.nanmean(values[:n], axis=0),
                color=colour,
                ls=ls,
                label=f"SGD {label}, {name}",
            )
            ax[0, 1].plot(
                res.steps,
                values[n],
                color=colour,
                ls=ls,
                alpha=0.45,
                lw=2.5,
                label=f"GD {label}, {name}",
            )
        U, W = eq.split(res.theta, T)
        finite = np.isfinite(res.theta).all(axis=1)  # (a diverged run's θ is NaN)
        sgd_runs = np.flatnonzero(finite[:n])
        shown = ([(sgd_runs[0], ("o", "SGD"))] if sgd_runs.size else []) + (
            [(n, ("x", "GD"))] if finite[n] else []
        )
        for r, (marker, label) in shown:
            ax[0, 2].plot(
                np.linalg.svd(U[r], compute_uv=False),
                marker,
                color=colour,
                ms=4,
                mfc="none",
                label=f"{label} U, {name}",
            )
            ax[0, 2].plot(
                np.linalg.svd(W[r], compute_uv=False),
                marker,
                color=colour,
                ms=2.5,
                label=f"{label} W, {name}",
            )
    first = next(iter(study.isotropic.values()))
    t = first.steps
    ax[0, 0].axhline(plat, color="k", ls=":", label=f"predicted plateau {plat:.3g}")
    mean = np.nanmean(first.charge[:n], axis=0)
    anchor = np.argmax(mean < 0.5 * mean[0])
    c0 = mean[anchor]
    guide = c0 * np.exp(-(t - t[anchor]) / tau)
    keep = (t >= t[anchor]) & (guide > plat)
    ax[0, 0].plot(
        t[keep], guide[keep], color="k", ls="-.", label=f"slope of τ = B/(η²σ²d) = {tau:.0f}"
    )
    ax[0, 0].set(
        yscale="log",
        xlabel="step",
        ylabel="‖C‖_F,  C = W Wᵀ − UᵀU",
        title=f"charge: d = {s['d']}, h = {s['hidden']}, B = {s['batch']}, η = {s['lr']:g}",
    )
    ax[0, 1].axhline(pred["u2"], color="k", ls=":", label="predicted (balanced)")
    ax[0, 1].set(yscale="log", xlabel="step", ylabel="squared norm", title="norms")
    ax[0, 2].axhline(1.0, color="k", ls=":", label="predicted: 1")
    ax[0, 2].set(
        yscale="log",
        xlabel="index",
        ylabel="singular value",
        title="final singular values (one seed)",
    )
    a = study.anisotropic
    S = es.hessian_path(a, Ta)
    ax[1, 0].plot(a.steps, np.nanmean(S[:n], axis=0), color="C2", label="SGD (mean over seeds)")
    ax[1, 0].fill_between(
        a.steps, np.nanmin(S[:n], axis=0), np.nanmax(S[:n], axis=0), color="C2", alpha=0.25
    )
    ax[1, 0].plot(a.steps, S[n], color="C3", ls="--", label="GD")
    ax[1, 0].axhline(pa["hessian_trace"], color="k", ls=":", label="predicted: 2√(d tr Σ) tr Σ^½")
    ax[1, 0].set(
        xlabel="step",
        ylabel="tr Hessian = tr Σ ‖U‖² + d tr(WΣWᵀ)",
        title=f"anisotropic inputs (s spread {s['spread']:g}×): flattening",
    )
    spec = es.spectrum(s["d"], s["spread"])
    _, sw = a.singular_values()
    order = np.argsort(spec)  # ascending variance: descending predicted singular value
    ax[1, 1].plot(spec[order], np.nanmean(sw[:n, -1], axis=0), "o", color="C2", ms=4, label="SGD")
    ax[1, 1].plot(spec[order], sw[n, -1], "x", color="C3", label="GD")
    ax[1, 1].plot(spec[order], pa["sv_W"], "k:", label="predicted (s̄ / s_j)^¼")
    ax[1, 1].set(
        xscale="log",
        yscale="log",
        xlabel="input variance s_j",
        ylabel="W's singular value (sorted)",
        title="anisotropic: final W",
    )
    if study.link is not None:
        link = study.link
        for i, (label, item) in enumerate(link["runs"].items()):
            ax[1, 2].plot(
                link["steps"],
                np.nanmean(item["charge"], axis=0),
                color=f"C{i + 4}",
                label=f"{label}: ‖u‖² {item['u2_final']:.3f} (pred. {item['u2_predicted']:.3f})",
            )
        ls = link["settings"]
        ax[1, 2].set(
            xlabel="step",
            ylabel="‖W Wᵀ − u uᵀ‖_F",
            title=f"deep_linear [{ls['d']}, {ls['hidden']}], input noise σ = "
            f"{ls['sigma']:g}: charge vs k",
        )
    else:
        ax[1, 2].axis("off")
    for axis in ax.flat:
        if axis.has_data():
            axis.legend(frameon=False, fontsize=7)
    fig.suptitle(
        "SGD's noise equilibrium under the rescaling symmetry of U W x "
        "(Ziyin et al., NeurIPS 2024)",
        fontsize=12,
    )
    return fig


def meanfield_figure(study):
    """The mean-field figure (:mod:`fastperm.meanfield_study`): one row per teacher
    (arbitrary, weakly and strongly invariant) with the RMD of each scheme's final particle
    law to its projection onto E^G, to its symmetrisation and to DA's law, against N (seed
    mean, min–max band); bottom row, the particles of one student for the arbitrary teacher
    in E^G coordinates and their distance to E^G (teacher particles as squares), and
    vanilla's RMD to E^G against the step size at a fixed training time.

    Parameters
    ----------
    study : fastperm.meanfield_study.Study

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    with _quiet_nan():
        return _meanfield_panels(study, plt)


def _meanfield_panels(study, plt):
    from . import meanfield as mf

    s = study.settings
    kinds = list(study.teachers)
    labels = study.labels
    widths = np.array(study.widths)
    markers = ["o", "s", "^", "D", "x", "v", "P"]
    styles = ["-", "--", ":", "-.", "-"]
    fig, axes = plt.subplots(len(kinds) + 1, 3, figsize=(14, 4.1 * (len(kinds) + 1)))
    quantities = [
        ("RMD to the projection onto E^G", study.rmd_projection),
        ("RMD to the symmetrisation ½(μ + g#μ)", study.rmd_symmetrisation),
        ("RMD to DA's (exact) law", study.rmd_to_da),
    ]
    names = {"arbitrary": "arbitrary", "weak": "weakly invariant", "strong": "strongly invariant"}
    for a, kind in enumerate(kinds):
        for col, (title, values) in enumerate(quantities):
            ax = axes[a, col]
            for c, name in enumerate(labels):
                v = values[a, :, c]
                ok = np.isfinite(v).all(axis=-1)
                if not ok.any():
                    continue
                mean = v[ok].mean(axis=-1)
                ax.plot(widths[ok], mean, styles[c % 5], marker=markers[c % 7], label=name, ms=4)
                ax.fill_between(widths[ok], v[ok].min(axis=-1), v[ok].max(axis=-1), alpha=0.15)
            ax.set_xscale("log")
            ax.set_xticks(widths, [str(n) for n in widths])
            ax.minorticks_off()
            ax.set_xlabel("particles N")
            ax.set_title(f"{names.get(kind, kind)} teacher: {title}", fontsize=9)
            if col > 0 and s["ot_max"] < widths.max():
                ax.axvline(s["ot_max"], color="0.7", lw=0.8)
                ax.text(0.99, 0.98, f"exact assignments up to N = {s['ot_max']}", fontsize=7,
                        ha="right", va="top", color="0.4", transform=ax.transAxes)  # fmt: skip
            if a == 0 and col == 0:
                ax.legend(fontsize=8)
    kind = "arbitrary" if "arbitrary" in study.views and study.views["arbitrary"] else kinds[0]
    views = study.views.get(kind, {})
    teacher = mf.coordinates(study.teachers[kind].particles)
    ax_top, ax_side, ax_lr = axes[-1]
    for c, (name, theta) in enumerate(views.items()):
        if name not in ("vanilla", "DA (exact)", "DA (k=1)", "EA"):
            continue
        q = mf.coordinates(theta)
        ax_top.scatter(q[:, 0], q[:, 1], s=4, alpha=0.5, label=name, marker=markers[c % 7])
        ax_side.scatter(q[:, 0], np.linalg.norm(q[:, 2:], axis=1), s=4, alpha=0.5, label=name)
    ax_top.scatter(teacher[:, 0], teacher[:, 1], marker="s", s=30, c="k", label="teacher")
    ax_side.scatter(teacher[:, 0], np.linalg.norm(teacher[:, 2:], axis=1), marker="s", s=30, c="k")
    ax_top.set_xlabel("E^G coordinate 1  (θ₀₀ + θ₁₁)/√2")
    ax_top.set_ylabel("E^G coordinate 2  (θ₀₁ + θ₁₀)/√2")
    ax_top.set_title(
        f"{names.get(kind, kind)} teacher, N = {s['view_n']}: particles on E^G", fontsize=9
    )
    ax_top.legend(fontsize=8)
    ax_side.set_xlabel("E^G coordinate 1")
    ax_side.set_ylabel("distance to E^G  ‖θ − πθ‖")
    ax_side.set_title("the same particles, seen from the side of E^G", fontsize=9)
    for kind_s, (lrs, rmds) in study.lr_sweep.items():
        mean = rmds.mean(axis=1)
        ax_lr.plot(lrs, mean, "o-", label=f"vanilla, {names.get(kind_s, kind_s)} teacher")
        ax_lr.fill_between(lrs, rmds.min(axis=1), rmds.max(axis=1), alpha=0.15)
    if study.lr_sweep:
        lrs = next(iter(study.lr_sweep.values()))[0]
        ref = next(iter(study.lr_sweep.values()))[1].mean(axis=1)
        ax_lr.plot(lrs, ref[0] * np.sqrt(lrs / lrs[0]), "k:", label="∝ √lr")
    ax_lr.set_xscale("log")
    ax_lr.set_yscale("log")
    if study.lr_sweep:
        ax_lr.set_xticks(lrs, [f"{v:g}" for v in lrs])
        ax_lr.minorticks_off()
    ax_lr.set_xlabel("step size lr (steps = time / lr)")
    ax_lr.set_ylabel("RMD to the projection onto E^G")
    ax_lr.set_title(f"N = {s['sweep_n']}, time lr·T = {s['sweep_time']:g}: SGD noise", fontsize=9)
    ax_lr.legend(fontsize=8)
    fig.suptitle(
        "Schemes at mean-field scale (Maass Martínez & Fontbona, NeurIPS 2024): tanh(θx) "
        f"particles, C₂ swap, SI start; lr = {s['lr']:g}, {s['steps']} steps, batch "
        f"{s['batch']}, {s['seeds']} seeds",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def discovery_figure(found, tol=None):
    """The subspace-discovery heuristic (:func:`fastperm.meanfield.discover_subspace`), one
    panel per teacher: the particles' RMD to each round's subspace after training (one dot
    per seed) against the round, labelled by the subspace's dimension, with the threshold;
    the title says where it stopped.

    Parameters
    ----------
    found : dict
        Teacher name → :class:`fastperm.meanfield.Discovery`.
    tol : float, optional
        The escape threshold the heuristic used, drawn as a line.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    items = list(found.items())
    fig, axes = plt.subplots(1, len(items), figsize=(4.2 * len(items), 3.6), squeeze=False)
    for ax, (name, d) in zip(axes[0], items, strict=True):
        for i, r in enumerate(d.rounds):
            ax.scatter(np.full(len(r["rmd"]), i), np.maximum(r["rmd"], 1e-6), c="C0")
        ax.set_xticks(range(len(d.rounds)), [f"dim {r['dim']}" for r in d.rounds])
        ax.set_yscale("log")
        ax.set_ylim(1e-3, 2.0)
        if tol is not None:
            ax.axhline(tol, color="k", ls=":", lw=0.8, label=f"threshold {tol:g}")
            ax.legend(fontsize=8, loc="lower left")
        end = discovery_outcome(d)
        ax.set_title(f"{name} teacher: {end}", fontsize=9)
        ax.set_ylabel("RMD to the round's subspace after training")
        rows = "\n".join(" ".join(f"{v:+.2f}" for v in row) for row in d.basis)
        ax.set_xlim(-0.5, len(d.rounds) - 0.5)
        ax.text(0.5, 0.5, f"basis (rows):\n{rows}", transform=ax.transAxes, fontsize=7,
                ha="center", va="center", family="monospace")  # fmt: skip
    fig.suptitle("The largest subspace training keeps (Maass Martínez & Fontbona's heuristic)")
    fig.tight_layout()
    return fig


def discovery_outcome(d) -> str:
    """Where :func:`fastperm.meanfield.discover_subspace` stopped, in words."""
    if d.stayed:
        return f"stayed in dim {d.basis.shape[0]}"
    if d.basis.shape[0] == 4:
        return "escaped to the whole space"
    return f"still escaping dim {d.basis.shape[0]} when the rounds ran out"
