"""The attribute study: does swapping two training examples perturb most the logits of
mutually exclusive attributes?

An article computed Lie brackets of training examples for a ResNet trained on CelebA's 40
binary attributes, each predicted by its own sigmoid, and saw that swapping two examples
perturbed most the logits of mutually exclusive attributes (Black_Hair, Brown_Hair): a loss
of independent sigmoids ignores that only one can hold. The digits study
(``fastperm.digits``) could not test this, since its ten one-hot classes are all
mutually exclusive. Here the attributes are of both kinds, on real images that ship with
scikit-learn (the 8×8 digits):

* four **exclusive** attributes, "is 1", "is 3", "is 7", "is 8" (no image has two);
* three **overlapping** ones, "even", "closed loop" (0, 6, 8, 9) and "≥ 5", each pair of
  which holds together on some digits and apart on others.

A small CNN (two 3×3 convolutions, tanh, a linear layer to the seven logits) is trained in
PyTorch with one sigmoid per attribute (mean binary cross-entropy), with Adam as in the
article (lr 5e-3, betas (0.8, 0.999), batches of 32), for several seeds. At each checkpoint,
the brackets of the 15 pairs among the first six test images are computed exactly
(:class:`~fastperm.torch_model.TorchModel`, forward over reverse), and for each pair the
change of every logit of a batch of 32 test images (the first 32, so the six among them)
along the bracket,
``J_f(θ; z) · [v_a, v_b]`` (:func:`fastperm.lie.bracket_logits`); ``p_i`` is its RMS over the
batch for logit i.

Statistics (seeds are the independent replicates; checkpoints and pairs within a seed are
averaged first):

* **contrast** ``D = mean_{i exclusive} log10 p_i − mean_{i overlapping} log10 p_i``: D > 0
  when a swap moves the exclusive attributes' logits more; mean ± standard error over seeds,
  overall and per checkpoint;
* **co-movement** of two logits along a bracket: the correlation over the batch of their
  changes, averaged over the attribute pairs of each kind (exclusive, nested — one implies
  the other, e.g. "is 8" ⇒ "even" — and partly overlapping).

``fastperm lie-study --out DIR`` runs it (:func:`run`); it writes ``perturbation.png``,
``co_movement.png``, ``summary.txt`` and ``results.npz`` (rewritten after every seed, so an
interrupted run keeps the seeds it finished).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from . import _checks, _runs, lie
from ._typing import FloatArray

#: attribute → the digits that have it
ATTRIBUTES: dict[str, tuple[int, ...]] = {
    "is 1": (1,),
    "is 3": (3,),
    "is 7": (7,),
    "is 8": (8,),
    "even": (0, 2, 4, 6, 8),
    "closed loop": (0, 6, 8, 9),
    "≥ 5": (5, 6, 7, 8, 9),
}
#: the attributes compared: exclusive among themselves, overlapping among themselves
EXCLUSIVE = ("is 1", "is 3", "is 7", "is 8")
OVERLAPPING = ("even", "closed loop", "≥ 5")
#: the article's optimiser settings
LR, BETAS, BATCH = 5e-3, (0.8, 0.999), 32


def attribute_targets(labels: Any) -> FloatArray:
    """(n, 7) 0/1 targets of :data:`ATTRIBUTES` for digit labels."""
    labels = np.asarray(labels)
    return np.stack(
        [np.isin(labels, digits).astype(np.float64) for digits in ATTRIBUTES.values()], axis=1
    )


def pair_kinds(Y: FloatArray) -> dict[tuple[int, int], str]:
    """Each attribute pair (i < j), from the data: ``"exclusive"`` (never together),
    ``"nested"`` (one holds whenever the other does) or ``"overlapping"`` (together on some
    examples, apart on others)."""
    kinds = {}
    K = Y.shape[1]
    for i in range(K):
        for j in range(i + 1, K):
            both = np.sum((Y[:, i] > 0) & (Y[:, j] > 0))
            only_i = np.sum((Y[:, i] > 0) & (Y[:, j] == 0))
            only_j = np.sum((Y[:, j] > 0) & (Y[:, i] == 0))
            kinds[(i, j)] = (
                "exclusive"
                if both == 0
                else "nested"
                if min(only_i, only_j) == 0
                else "overlapping"
            )
    return kinds


def small_cnn(K: int, seed: int) -> Any:
    """Conv(1→8, 3×3) · tanh · Conv(8→16, 3×3) · tanh · Linear(256 → K), float64, seeded."""
    import torch

    torch.manual_seed(seed)
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 8, 3), nn.Tanh(), nn.Conv2d(8, 16, 3), nn.Tanh(), nn.Flatten(),
        nn.Linear(16 * 4 * 4, K),
    ).double()  # fmt: skip


def train(
    net: Any, X: Any, Y: Any, steps: int, checkpoints: list[int], seed: int, bar: Any = None
) -> list[FloatArray]:
    """Adam (lr 5e-3, betas (0.8, 0.999)) on batches of 32 taken in order from a stream of
    permutations of the training set (NumPy's PCG64 with ``seed``; a batch that spans two
    permutations may hold an image twice); θ at each checkpoint step (0: the start)."""
    import torch

    from .models import TorchModel

    opt = torch.optim.Adam(net.parameters(), lr=LR, betas=BETAS)
    loss_fn = torch.nn.functional.binary_cross_entropy_with_logits
    rs = np.random.default_rng(seed)
    order = np.empty(0, dtype=np.int64)
    saved = []
    flat = TorchModel(net, loss_fn)  # for its θ vector only
    for step in range(steps + 1):
        if step in checkpoints:
            saved.append(flat.theta())
        if step == steps:
            break
        if order.size < BATCH:
            order = np.concatenate([order, rs.permutation(X.shape[0])])
        idx, order = torch.as_tensor(order[:BATCH]), order[BATCH:]
        opt.zero_grad()
        loss = loss_fn(net(X[idx]), Y[idx])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training diverged at step {step}: loss {loss.item()}")
        loss.backward()
        opt.step()
        if bar is not None:
            bar.update(1)
    return saved


def run(
    out_dir: str,
    *,
    seeds: int = 12,
    steps: int = 1200,
    n_examples: int = 6,
    batch_size: int = 32,
    progress: bool = True,
) -> dict[str, Any]:
    """Train, bracket, measure, plot and summarise (see the module's docstring).

    Parameters
    ----------
    out_dir : str
        Folder for ``perturbation.png``, ``co_movement.png``, ``summary.txt`` and
        ``results.npz`` (created if missing).
    seeds : int >= 2
        Independent trainings (initialisation and batch order); the uncertainty is over them.
    steps : int >= 1
        Adam steps per seed; checkpoints at 0, 5%, 15%, 40% and 100% of them.
    n_examples : int >= 2
        Test images whose pairs are bracketed (the first ones of the test split).
    batch_size : int >= 1
        Test images whose logits' changes are measured.
    progress : bool
        A progress bar over the training steps.

    Returns
    -------
    dict with ``perturbation`` (seeds, checkpoints, pairs, 7), ``co_movement`` (seeds,
    checkpoints, pairs, 7, 7), ``contrast`` (seeds, checkpoints), ``checkpoints``,
    ``attributes``, ``kinds``, ``accuracy`` (seeds, 7) and ``summary``.
    """
    try:
        import torch
    except ImportError as exc:
        raise ImportError(
            "the lie study trains a PyTorch CNN: pip install 'fastperm[torch,study]'"
        ) from exc

    from . import digits
    from .models import TorchModel

    seeds = _checks.as_int("seeds", seeds, minimum=2)
    steps = _checks.as_int("steps", steps, minimum=1)
    n_examples = _checks.as_int("n_examples", n_examples, minimum=2)
    batch_size = _checks.as_int("batch_size", batch_size, minimum=1)
    os.makedirs(out_dir, exist_ok=True)
    Xtr, _, Xte, _, ltr, lte = digits.load(0)
    if n_examples > len(Xte) or batch_size > len(Xte):
        raise ValueError(f"n_examples and batch_size must be at most {len(Xte)} (the test images)")
    names = list(ATTRIBUTES)
    Ytr, Yte = attribute_targets(ltr), attribute_targets(lte)
    kinds = pair_kinds(np.concatenate([Ytr, Yte]))
    images = {k: torch.as_tensor(v.reshape(-1, 1, 8, 8)) for k, v in (("tr", Xtr), ("te", Xte))}
    Ytr_t = torch.as_tensor(Ytr)
    Xp, Yp = images["te"][:n_examples], torch.as_tensor(Yte[:n_examples])
    Xbatch = images["te"][:batch_size]
    cps = sorted({0, *(int(round(steps * f)) for f in (0.05, 0.15, 0.4, 1.0))})
    K = len(names)
    npairs = n_examples * (n_examples - 1) // 2
    pert = np.full((seeds, len(cps), npairs, K), np.nan)
    comove = np.full((seeds, len(cps), npairs, K, K), np.nan)
    accuracy = np.full((seeds, K), np.nan)
    bar = _runs.progress_bar("training (Adam)", seeds * steps, unit="step") if progress else None
    done = 0
    try:
        for s in range(seeds):
            net = small_cnn(K, seed=s)
            thetas = train(net, images["tr"], Ytr_t, steps, cps, seed=s, bar=bar)
            tm = TorchModel(net, torch.nn.functional.binary_cross_entropy_with_logits)
            for c, theta in enumerate(thetas):
                J = lie.bracket_logits(tm, theta, Xp, Yp, Xbatch)  # (pairs, batch, K)
                pert[s, c] = np.sqrt(np.mean(J**2, axis=1))
                comove[s, c] = _correlations(J)
            with torch.no_grad():
                pred = net(images["te"]).numpy() > 0
            accuracy[s] = np.mean(pred == (Yte > 0), axis=0)
            done = s + 1
            _save(out_dir, pert, comove, accuracy, cps, names, kinds, done)
    finally:
        if bar is not None:
            bar.close()
    result = _analyse(pert, comove, accuracy, cps, names, kinds, steps, n_examples, batch_size)
    _plot_perturbation(result, os.path.join(out_dir, "perturbation.png"))
    _plot_co_movement(result, os.path.join(out_dir, "co_movement.png"))
    with open(os.path.join(out_dir, "summary.txt"), "w") as f:
        f.write(result["summary"] + "\n")
    return result


def _correlations(J: FloatArray) -> FloatArray:
    """(pairs, K, K): the correlation over the batch of two logits' changes, per pair (NaN
    where a logit does not move)."""
    centred = J - J.mean(axis=1, keepdims=True)
    norm = np.sqrt(np.sum(centred**2, axis=1))  # (pairs, K)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.einsum("qbi,qbj->qij", centred, centred) / (norm[:, :, None] * norm[:, None, :])


def _save(out_dir, pert, comove, accuracy, cps, names, kinds, done) -> None:
    """results.npz, atomically (a temporary file, then renamed): the finished seeds."""
    path = os.path.join(out_dir, "results.npz")
    tmp = path + ".tmp.npz"
    np.savez(
        tmp,
        perturbation=pert[:done],
        co_movement=comove[:done],
        accuracy=accuracy[:done],
        checkpoints=np.asarray(cps),
        attributes=np.asarray(names),
        pair_kinds=np.asarray([f"{i},{j}:{k}" for (i, j), k in kinds.items()]),
    )
    os.replace(tmp, path)


def _mean_se(v: FloatArray) -> tuple[float, float]:
    v = v[np.isfinite(v)]
    if v.size < 2:
        return float(np.mean(v)) if v.size else float("nan"), float("nan")
    return float(np.mean(v)), float(np.std(v, ddof=1) / np.sqrt(v.size))


def _analyse(pert, comove, accuracy, cps, names, kinds, steps, n_examples, batch_size):
    ex = [names.index(a) for a in EXCLUSIVE]
    ov = [names.index(a) for a in OVERLAPPING]
    logp = np.log10(pert)  # (seeds, checkpoints, pairs, K)
    contrast = np.mean(logp[..., ex], axis=-1) - np.mean(logp[..., ov], axis=-1)
    per_ckpt = np.mean(contrast, axis=2)  # (seeds, checkpoints)
    trained = [k for k, c in enumerate(cps) if c > 0]  # the claim is about trained models
    overall = _mean_se(np.mean(per_ckpt[:, trained], axis=1))
    by_kind: dict[str, tuple[float, float]] = {}
    within = {names.index(a) for a in EXCLUSIVE}
    groups = {
        kind: [ij for ij, k in kinds.items() if k == kind]
        for kind in ("exclusive", "nested", "overlapping")
    }
    # the exclusive pairs split: both "is k" (one digit each), or an "is k" and a wider one
    groups["exclusive, both 'is k'"] = [ij for ij in groups["exclusive"] if set(ij) <= within]
    groups["exclusive, 'is k' vs wider"] = [
        ij for ij in groups["exclusive"] if not set(ij) <= within
    ]
    for kind, idx in groups.items():
        if idx:
            vals = np.stack([comove[:, trained][..., i, j] for i, j in idx], axis=-1)
            by_kind[kind] = _mean_se(np.nanmean(vals, axis=(1, 2, 3)))
    lines = [
        f"small CNN (2 conv 3×3 + linear, tanh, float64) on scikit-learn's 8×8 digits, "
        f"{len(names)} attributes with independent sigmoids; Adam lr {LR}, betas {BETAS}, "
        f"batch {BATCH}, {steps} steps; {pert.shape[0]} seeds",
        f"checkpoints (steps): {cps}; brackets among the first {n_examples} test images "
        f"({pert.shape[2]} pairs, exact), logit changes over {batch_size} test images",
        "test accuracy per attribute (mean over seeds): "
        + ", ".join(f"{a} {accuracy[:, i].mean():.3f}" for i, a in enumerate(names)),
        "",
        "(a) RMS change of each logit along a bracket, log10, mean over pairs and the trained "
        "checkpoints (mean ± s.e. over seeds):",
    ]
    for i, a in enumerate(names):
        m, se = _mean_se(np.mean(logp[:, trained][..., i], axis=(1, 2)))  # over seeds
        group = "exclusive" if a in EXCLUSIVE else "overlapping"
        lines.append(f"  {a:<12} ({group:<11}) {m:7.3f} ± {se:.3f}")
    lines += [
        "",
        "(b) contrast D = mean log10 p (exclusive logits) − mean log10 p (overlapping logits)",
        f"  over the trained checkpoints (step > 0): D = {overall[0]:+.3f} ± {overall[1]:.3f} "
        f"(mean ± s.e. over {pert.shape[0]} seeds; t = {overall[0] / overall[1]:+.1f})",
        "  per checkpoint: "
        + ", ".join(
            "step {}: {:+.3f} ± {:.3f}".format(c, *_mean_se(per_ckpt[:, k]))
            for k, c in enumerate(cps)
        ),
        "  " + _verdict(overall, "exclusive attributes' logits move more",
                        "overlapping attributes' logits move more"),
        "",
        "(c) co-movement: correlation over the batch of two logits' changes along a bracket, "
        "mean over attribute pairs of each kind and trained checkpoints (mean ± s.e. over "
        "seeds):",
    ]  # fmt: skip
    for kind, (m, se) in by_kind.items():
        lines.append(f"  {kind:<27} ({len(groups[kind]):2d} pairs) {m:+.3f} ± {se:.3f}")
    return dict(
        perturbation=pert,
        co_movement=comove,
        contrast=per_ckpt,
        contrast_overall=overall,
        co_movement_by_kind=by_kind,
        checkpoints=cps,
        attributes=names,
        kinds=kinds,
        accuracy=accuracy,
        summary="\n".join(lines),
    )


def _verdict(stat: tuple[float, float], above: str, below: str) -> str:
    m, se = stat
    if not np.isfinite(se):
        return "(too few seeds for an uncertainty)"
    if abs(m) < 2 * se:
        return "within two standard errors of 0: no difference shown at this size"
    return f"{above}" if m > 0 else f"{below}"


def _plot_perturbation(res, path) -> None:
    import matplotlib.pyplot as plt

    logp = np.log10(res["perturbation"])  # (S, C, Q, K)
    per = np.mean(logp, axis=2)  # (S, C, K)
    cps = res["checkpoints"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for i, a in enumerate(res["attributes"]):
        m = per[..., i].mean(axis=0)
        se = per[..., i].std(axis=0, ddof=1) / np.sqrt(per.shape[0])
        style = "-" if a in EXCLUSIVE else "--"
        ax.errorbar(cps, m, yerr=se, ls=style, marker="o", ms=3, capsize=2, label=a)
    ax.set_xlabel("Adam step")
    ax.set_ylabel("log10 RMS change of the logit along a bracket")
    ax.set_title("each attribute's logit (solid: exclusive, dashed: overlapping)", fontsize=9)
    ax.legend(fontsize=8, frameon=False)
    c = res["contrast"]
    bx.errorbar(cps, c.mean(axis=0), yerr=c.std(axis=0, ddof=1) / np.sqrt(c.shape[0]),
                marker="o", capsize=3, color="k")  # fmt: skip
    bx.axhline(0, color="grey", lw=0.8)
    bx.set_xlabel("Adam step")
    bx.set_ylabel("D = mean log10 p (exclusive) − mean log10 p (overlapping)")
    m, se = res["contrast_overall"]
    bx.set_title(f"contrast per checkpoint (mean ± s.e. over seeds); overall {m:+.3f} ± {se:.3f}",
                 fontsize=9)  # fmt: skip
    fig.savefig(path, dpi=140)
    plt.close(fig)


def _plot_co_movement(res, path) -> None:
    import matplotlib.pyplot as plt

    by = res["co_movement_by_kind"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.6), constrained_layout=True)
    colours = {"exclusive": "tab:red", "nested": "tab:purple", "overlapping": "tab:blue"}
    ax.bar([k.replace(", ", ",\n") for k in by], [v[0] for v in by.values()],
           yerr=[v[1] for v in by.values()], capsize=4,
           color=[colours.get(k, "salmon") for k in by])  # fmt: skip
    ax.tick_params(axis="x", labelsize=8)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_ylabel("correlation of two logits' changes (mean ± s.e. over seeds)")
    ax.set_title("co-movement along a bracket, by kind of attribute pair", fontsize=9)
    trained = [k for k, c in enumerate(res["checkpoints"]) if c > 0]
    mean = np.nanmean(res["co_movement"][:, trained], axis=(0, 1, 2))
    names = res["attributes"]
    im = bx.imshow(mean, cmap="RdBu_r", vmin=-1, vmax=1)
    bx.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    bx.set_yticks(range(len(names)), names, fontsize=8)
    for (i, j), kind in res["kinds"].items():
        bx.text(j, i, kind[0].upper(), ha="center", va="center", fontsize=7)
    fig.colorbar(im, ax=bx, label="mean correlation (E exclusive, N nested, O overlapping)")
    fig.savefig(path, dpi=140)
    plt.close(fig)
