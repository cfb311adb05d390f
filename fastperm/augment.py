"""Augmentation distributions of a linear model's input and their closed-form moments.

For a linear model with squared loss, the per-example gradient is
``g(w; x, y) = (wᵀx − y) x``. Averaged over an augmentation ``x' ~ A(x)`` with
the label kept, the expected gradient is

    E[g] = E[x' x'ᵀ] w − y E[x'].

For both augmentations here the second moment has the form
``E[x' x'ᵀ] = (s2/d − c) I + c 11ᵀ`` and ``E[x'] = (s1/d) 1``, with
``s1 = Σ_m x_m``, ``s2 = Σ_m x_m²``. So each coordinate of the expected
gradient is the same affine function of its own weight:

    E[g]_m = a w_m + c Σw − e,        a = s2/d − c,  e = y s1/d,

* ``"permutation"`` (x' = x_σ, σ uniform over all d! permutations):
  ``E[x_σ(m) x_σ(l)] = (s1² − s2) / (d(d − 1))`` for m ≠ l, so
  ``c = (s1² − s2) / (d(d − 1))``; for d = 1 only the identity exists and c = 0.
* ``"resample"`` (entries drawn uniformly with replacement): independent
  draws give ``E[x'_m x'_l] = (s1/d)²`` for m ≠ l, so ``c = s1² / d²``.

Source: the post "Perturbation Invariant Gradients: Permutation Case Study"
(which proposes resampling as a simplification); the moments are derived
above. The k-fold sampled version is :func:`augmented_gradient`.
"""

from __future__ import annotations

import numpy as np

from . import _checks
from .distributions import (Augmentation, BlockPermutation, CyclicShift, Gaussian, Mask,
                            Moments, Permutation, Resample)

__all__ = ["Augmentation", "BlockPermutation", "CyclicShift", "Gaussian", "Mask", "Moments",
           "Permutation", "Resample", "as_augmentation", "augmented_gradient", "coefficients",
           "expected_gradient"]

_BY_NAME = {"permutation": Permutation, "resample": Resample}


def as_augmentation(augmentation):
    """The distribution for a name of the core engine or an :class:`Augmentation` object."""
    if isinstance(augmentation, Augmentation):
        return augmentation
    name = _checks.as_choice("augmentation", augmentation, _checks.AUGMENTATIONS)
    return _BY_NAME[name]()


def coefficients(X: np.ndarray, y: np.ndarray, augmentation: str = "permutation"):
    """Per-example coefficients ``(a, c, e)`` of the expected gradient.

    ``E[g_i]_m = a_i w_m + c_i Σw − e_i`` (see the module docstring).

    Parameters
    ----------
    X : (n, d) float64 array, validated.
    y : (n,) float64 array, validated.
    augmentation : ``"permutation"`` or ``"resample"``.

    Returns
    -------
    a, c, e : three (n,) float64 arrays.
    """
    d = X.shape[1]
    s1 = X.sum(axis=1)
    s2 = np.einsum("ij,ij->i", X, X)
    if augmentation == "permutation":
        c = (s1 * s1 - s2) / (d * (d - 1)) if d > 1 else np.zeros_like(s1)
    elif augmentation == "resample":
        c = s1 * s1 / (d * d)
    else:
        raise ValueError(f"augmentation must be 'permutation' or 'resample', got {augmentation!r}")
    a = s2 / d - c
    e = y * s1 / d
    return a, c, e


def _example_args(w, x, y):
    """Validate ``(w, x, y)`` for one example (1-D x) or a batch (2-D X)."""
    x = _checks.as_float_array("x", x, (1, 2))
    single = x.ndim == 1
    X = x[None, :] if single else x
    n, d = X.shape
    if d == 0:
        raise ValueError("x must have at least one feature (d >= 1), got d = 0")
    if n == 0:
        raise ValueError("x must hold at least one example, got 0 rows")
    w = _checks.as_float_array("w", w, 1)
    if w.shape[0] != d:
        raise ValueError(f"w has {w.shape[0]} entries but x has d = {d} features")
    y = _checks.as_float_array("y", np.atleast_1d(np.asarray(y)), 1)
    if y.shape[0] != n:
        raise ValueError(f"y has {y.shape[0]} entries but x has {n} example(s)")
    return w, X, y, single


def expected_gradient(w, x, y, augmentation: str = "permutation") -> np.ndarray:
    """Exact expected gradient of the squared loss over the augmentation distribution.

    ``E_σ[(wᵀx_σ − y) x_σ]_m = a w_m + c Σ_l w_l − y s1/d`` with the
    coefficients of :func:`coefficients` (module docstring for the derivation).
    This is the "k = ∞" gradient. Exact for every d ≥ 1.

    Parameters
    ----------
    w : (d,) array
        Parameters.
    x : (d,) or (n, d) array
        One example, or one example per row.
    y : float or (n,) array
        Labels (kept unchanged by the augmentation).
    augmentation : {"permutation", "resample"} or Augmentation
        A name of the core engine, or a distribution object (``Gaussian(sigma)``,
        ``Mask(p)``, ``CyclicShift()``, ``BlockPermutation(groups)``, ``Moments(...)``),
        whose closed form is used: ``E[x'x'ᵀ] w − y E[x']`` (:mod:`fastperm.distributions`).

    Returns
    -------
    (d,) array for 1-D ``x``, else (n, d): one expected gradient per row.
    """
    if isinstance(augmentation, Augmentation) and augmentation.engine_name is None:
        w, X, y, single = _example_args(w, x, y)
        g = augmentation.expected_gradient(w, X, y)
        return g[0] if single else g
    augmentation = as_augmentation(augmentation).engine_name
    w, X, y, single = _example_args(w, x, y)
    a, c, e = coefficients(X, y, augmentation)
    g = a[:, None] * w[None, :] + (c * w.sum() - e)[:, None]
    return g[0] if single else g


def augmented_gradient(w, x, y, k, seed: int = 0, augmentation: str = "permutation", backend=None):
    """Mean gradient over ``k`` augmented copies of each example.

    ``ĝ = (1/k) Σ_{j<k} (wᵀx^{(j)} − y) x^{(j)}`` with ``x^{(0)} = x`` and
    ``x^{(j)}``, j ≥ 1, augmented copies drawn by :mod:`fastperm.rng` with key
    ``(seed, STREAM_FIXED, counter(i, j))`` for row ``i`` — exactly the copies
    that ``train(..., sampling="fixed", seed=seed)`` uses for example ``i``.
    As ``k → ∞`` it converges to :func:`expected_gradient` at rate
    ``O(1/sqrt(k))``.

    Parameters
    ----------
    w : (d,) array
    x : (d,) or (n, d) array
    y : float or (n,) array
    k : int >= 1
    seed : int >= 0
    augmentation : {"permutation", "resample"} or Augmentation
        Distribution objects other than ``Moments`` (which has no compiled sampler) run
        on the numba, cython and numpy backends.
    backend : str, optional
        See :func:`fastperm.backends.get`.

    Returns
    -------
    (d,) array for 1-D ``x``, else (n, d).
    """
    from . import backends

    aug = as_augmentation(augmentation)
    kind = aug.kernel_kind()
    k = _checks.as_int("k", k, minimum=1, maximum=2**32 - 1)
    seed = _checks.as_seed("seed", seed)
    w, X, y, single = _example_args(w, x, y)
    aug.check_d(X.shape[1])
    out = np.empty_like(X)
    if aug.engine_name is not None:
        kern = backends.get(backend)
        kern.augmented_gradient(w, X, y, k, np.uint64(seed), aug.engine_name == "resample", out)
    else:
        kern = backends.get(backend, needs="dist_augmented_gradient")
        kern.dist_augmented_gradient(w, X, y, k, np.uint64(seed), *kind, out)
    return out[0] if single else out
