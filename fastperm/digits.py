"""The digits study: Lie brackets of examples for mutually exclusive labels and independent
sigmoids.

An article trained a ResNet on CelebA's 40 binary attributes and computed the
brackets ``[v_x, v_y]`` of test examples at checkpoints. It found that (1) the
RMS of the bracket in each parameter tensor tracks the RMS of the gradient on
log-log axes, and (2) swapping two examples perturbed most the logits of
mutually exclusive attributes (Black_Hair, Brown_Hair) that the model predicts
with independent sigmoids — a loss that assumes independence.

This module repeats the study on data that ships with scikit-learn: the 8×8
digits, whose 10 classes are mutually exclusive attributes, predicted by 10
independent sigmoids (``MLP([64, 32, 10], loss="bce")``), trained with Adam.
``fastperm lie-digits --out DIR`` runs it; :func:`run` is the function.
"""

from __future__ import annotations

import os

import numpy as np

from . import _checks, lie
from .models import MLP


def load(seed: int = 0, test_fraction: float = 0.25):
    """Digits as ``(X_train, Y_train, X_test, Y_test, labels_train, labels_test)``.

    Pixels scaled to [0, 1] (inputs of order one, as the default FD step
    assumes); targets one-hot over the 10 digits; a seeded shuffle split.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError(
            "the digits study needs scikit-learn: pip install 'fastperm[study]'"
        ) from exc
    data = load_digits()
    X = data.data / 16.0
    labels = data.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(X))
    X, labels = X[order], labels[order]
    n_test = int(round(test_fraction * len(X)))
    Y = np.eye(10)[labels]
    return X[n_test:], Y[n_test:], X[:n_test], Y[:n_test], labels[n_test:], labels[:n_test]


def train_adam(
    model,
    theta,
    X,
    Y,
    *,
    steps,
    lr=3e-3,
    batch=32,
    seed=0,
    checkpoints=(),
    beta1=0.9,
    beta2=0.999,
    eps=1e-8,
    progress=False,
):
    """Adam (Kingma & Ba, 2015) on the mean per-example loss of ``model``.

    Step t draws a batch of ``batch`` examples (with replacement, NumPy's PCG64 seeded with
    ``seed``) and updates ``m ← β1 m + (1 − β1) g``, ``v ← β2 v + (1 − β2) g²``,
    ``θ ← θ − lr m̂ / (√v̂ + eps)`` with the bias corrections ``m̂ = m / (1 − β1ᵗ)``,
    ``v̂ = v / (1 − β2ᵗ)``.

    Parameters
    ----------
    model : fastperm.models.Model
    theta : (P,) array
        Start (not modified).
    X, Y : (n, d) and (n, K) arrays
        Training inputs and targets.
    steps : int >= 0
    lr, batch, seed, beta1, beta2, eps : Adam's settings.
    checkpoints : sequence of int
        Steps at which θ is kept (0: the start).
    progress : bool, str or tqdm bar
        Show a progress bar over the steps (a string is its label), or update the caller's
        bar (anything with ``update(n)``).

    Returns
    -------
    dict[int, numpy.ndarray]
        ``step → θ`` (a copy) for every checkpoint in ``0..steps``.

    Raises
    ------
    FloatingPointError
        When θ becomes non-finite (the step is in the message).
    """
    steps = _checks.as_int("steps", steps, minimum=0)
    bar, own = progress, False
    if progress is True or isinstance(progress, str):
        from tqdm.auto import tqdm

        label = progress if isinstance(progress, str) else "training (Adam)"
        bar, own = tqdm(total=steps, unit="step", desc=label), True
    elif progress is False or progress is None:
        bar = None
    rs = np.random.default_rng(seed)
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    saved = {}
    want = set(int(c) for c in checkpoints)
    theta = np.array(theta, dtype=np.float64, copy=True)
    if 0 in want:
        saved[0] = theta.copy()
    try:
        for t in range(1, steps + 1):
            idx = rs.integers(0, len(X), batch)
            g = model.grad(theta, X[idx], Y[idx]).mean(axis=0)
            m = beta1 * m + (1 - beta1) * g
            v = beta2 * v + (1 - beta2) * g * g
            theta -= lr * (m / (1 - beta1**t)) / (np.sqrt(v / (1 - beta2**t)) + eps)
            if not np.all(np.isfinite(theta)):
                raise FloatingPointError(f"Adam diverged at step {t}: non-finite parameters")
            if t in want:
                saved[t] = theta.copy()
            if bar is not None:
                bar.update(1)
    finally:
        if own:
            bar.close()
    return saved


def confusions(model, theta, X, labels):
    """Confusion matrix (true × predicted, argmax of the logits) and the accuracy."""
    pred = model.logits(theta, X).argmax(axis=1)
    C = np.zeros((10, 10), dtype=np.int64)
    np.add.at(C, (labels, pred), 1)
    return C, float(np.mean(pred == labels))


def run(
    out_dir,
    *,
    steps: int = 1500,
    hidden: int = 32,
    seed: int = 0,
    n_examples: int = 6,
    batch_size: int = 32,
    progress: bool = True,
):
    """Train, bracket, plot and summarise. Returns a dict of the results; writes into ``out_dir``.

    Files: ``rms_loglog.png`` (RMS bracket vs RMS gradient per tensor, fitted
    slopes), ``logit_perturbation.png`` (per-logit RMS of ``J_f·[v_a, v_b]`` over a
    batch of 32 test examples, each pair), ``summary.txt`` (what is printed).
    """
    os.makedirs(out_dir, exist_ok=True)
    Xtr, Ytr, Xte, Yte, ltr, lte = load(seed)
    model = MLP([64, hidden, 10], activation="tanh", loss="bce")
    cps = sorted(set([0] + [int(round(steps * f)) for f in (0.01, 0.03, 0.1, 0.3, 1.0)]))
    saved = train_adam(
        model,
        model.init(seed),
        Xtr,
        Ytr,
        steps=steps,
        seed=seed,
        checkpoints=cps,
        progress="training (Adam)" if progress else False,
    )
    thetas = [saved[c] for c in cps]
    final = thetas[-1]
    Xp, Yp, lp = Xte[:n_examples], Yte[:n_examples], lte[:n_examples]
    rms = lie.tensor_rms(model, thetas, Xp, Yp)
    pairs = rms.pairs
    b = lie.brackets(model, final, Xp, Yp, pairs=pairs)
    Xbatch = Xte[:batch_size]
    J = lie.logit_perturbation(model, final, b, Xbatch)  # (pairs, batch, 10)
    per_logit = np.sqrt(np.mean(J**2, axis=1))  # (pairs, 10)
    C, acc = confusions(model, final, Xte, lte)

    _plot_rms(rms, cps, os.path.join(out_dir, "rms_loglog.png"))
    _plot_heatmap(per_logit, pairs, lp, os.path.join(out_dir, "logit_perturbation.png"))
    text = _summary(model, rms, cps, per_logit, pairs, lp, C, acc, steps)
    with open(os.path.join(out_dir, "summary.txt"), "w") as f:
        f.write(text + "\n")
    return dict(
        model=model,
        checkpoints=cps,
        thetas=thetas,
        tensor_rms=rms,
        pairs=pairs,
        labels=lp,
        per_logit=per_logit,
        confusion=C,
        accuracy=acc,
        summary=text,
    )


def _top_confusions(C, k=5):
    off = C + C.T
    np.fill_diagonal(off, 0)
    iu = np.triu_indices(10, 1)
    order = np.argsort(off[iu])[::-1][:k]
    return [(int(iu[0][o]), int(iu[1][o]), int(off[iu][o])) for o in order]


def _summary(model, rms, cps, per_logit, pairs, lp, C, acc, steps):
    lines = [
        f"MLP 64-{model.sizes[1]}-10, tanh, 10 independent sigmoids (mean BCE), Adam "
        f"{steps} steps; test accuracy {acc:.3f}",
        f"checkpoints (steps): {cps}",
        "",
        "(a) log10 RMS bracket vs log10 RMS gradient, per tensor, over "
        f"{len(pairs)} pairs × {len(cps)} checkpoints:",
        rms.summary(),
        "",
        "(b) logits most perturbed by swapping each pair (RMS of J_f·[v_a, v_b] over a "
        "batch of 32 test examples, final checkpoint):",
    ]
    hits = 0
    for q, (a, c) in enumerate(pairs):
        top = np.argsort(per_logit[q])[::-1][:3]
        own = {int(lp[a]), int(lp[c])}
        hit = set(int(t) for t in top[:2]) == own
        hits += hit
        lines.append(
            f"  pair ({a}: digit {lp[a]}, {c}: digit {lp[c]}): top logits "
            + ", ".join(f"{t} ({per_logit[q, t]:.2e})" for t in top)
            + ("   <- the pair's own digits" if hit else "")
        )
    lines.append(
        f"  pairs whose two most perturbed logits are their own two digits: {hits} of {len(pairs)}"
    )
    firsts = np.bincount(per_logit.argmax(axis=1), minlength=10)
    lines.append(
        "  most perturbed logit, counted over pairs: "
        + ", ".join(f"{d} ({firsts[d]})" for d in np.argsort(firsts)[::-1] if firsts[d])
    )
    conf = _top_confusions(C)
    lines += [
        "",
        "(c) digits the model confuses most on the test set (both directions): "
        + ", ".join(f"{i}↔{j} ({n})" for i, j, n in conf),
    ]
    confused = {frozenset((i, j)) for i, j, _ in conf}
    rel = []
    for q, (a, c) in enumerate(pairs):
        top = np.argsort(per_logit[q])[::-1][:3]
        among = [
            (int(t), int(u))
            for i, t in enumerate(top)
            for u in top[i + 1 :]
            if frozenset((int(t), int(u))) in confused
        ]
        if among:
            rel.append(f"pair ({a}, {c}): {', '.join(f'{t}↔{u}' for t, u in among)}")
    lines.append(
        "  top-3 perturbed logits that form a most-confused digit pair: "
        + ("; ".join(rel) if rel else "none")
    )
    return "\n".join(lines)


def _plot_rms(rms, cps, path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 5), constrained_layout=True)
    colours = plt.get_cmap("tab10")(np.arange(len(rms.slope)))
    for name, colour in zip(rms.slope, colours, strict=False):
        x, y = rms.rms_grad[name].ravel(), rms.rms_bracket[name].ravel()
        ok = (x > 0) & (y > 0)
        ax.scatter(
            x[ok],
            y[ok],
            s=12,
            color=colour,
            alpha=0.7,
            label=f"{name}: slope {rms.slope[name]:.2f}, r = {rms.corr[name]:.2f}",
        )
        if np.isfinite(rms.slope[name]):
            xs = np.logspace(np.log10(x[ok].min()), np.log10(x[ok].max()), 20)
            ax.plot(
                xs, 10 ** (rms.slope[name] * np.log10(xs) + rms.intercept[name]), color=colour, lw=1
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("RMS of the gradient in the tensor (pair mean)")
    ax.set_ylabel("RMS of the bracket [v_a, v_b] in the tensor")
    ax.set_title(f"digits MLP: {rms.pairs.shape[0]} pairs × {len(cps)} checkpoints", fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    fig.savefig(path, dpi=140)
    plt.close(fig)


def _plot_heatmap(per_logit, pairs, lp, path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.35 * len(pairs) + 1.5), constrained_layout=True)
    norm = per_logit / per_logit.max(axis=1, keepdims=True)
    im = ax.imshow(norm, aspect="auto", cmap="magma")
    ax.set_xticks(range(10))
    ax.set_xlabel("logit (digit)")
    ax.set_yticks(range(len(pairs)))
    ax.set_yticklabels([f"{a},{c}  ({lp[a]} vs {lp[c]})" for a, c in pairs], fontsize=8)
    ax.set_ylabel("pair (test example indices, digits)")
    for q, (a, c) in enumerate(pairs):
        for digit in {int(lp[a]), int(lp[c])}:
            ax.add_patch(plt.Rectangle((digit - 0.5, q - 0.5), 1, 1, fill=False, ec="cyan", lw=1))
    fig.colorbar(im, ax=ax, label="RMS over 32 test examples of J_f·[v_a, v_b] (row-normalised)")
    ax.set_title(
        "logits perturbed by swapping two examples (cyan: the pair's own digits)", fontsize=9
    )
    fig.savefig(path, dpi=140)
    plt.close(fig)
