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
above. The k-fold sampled version is :func:`augmented_gradient` (a front end, in
:mod:`fastperm.gradients`: this package never calls a backend).

The distributions of :mod:`fastperm.augment.distributions` (``Gaussian``, ``Mask``,
``CyclicShift``, ``BlockPermutation``, ``Moments``; ``Permutation`` and ``Resample`` for the
two above) each declare their moments, their closed-form plan for k = ∞ and their sampler
spec for k-fold training; their derivations are in that module's docstring.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from .. import _checks
from .._typing import FloatArray
from ..moments import coefficients
from .distributions import (
    Augmentation,
    BlockPermutation,
    CyclicShift,
    Gaussian,
    Mask,
    Moments,
    Permutation,
    Resample,
)

if TYPE_CHECKING:  # a front end (it calls a backend): imported on first access, below
    from ..gradients import augmented_gradient

__all__ = [
    "Augmentation",
    "BlockPermutation",
    "CyclicShift",
    "Gaussian",
    "Mask",
    "Moments",
    "Permutation",
    "Resample",
    "as_augmentation",
    "augmented_gradient",
    "coefficients",
    "expected_gradient",
]

_BY_NAME = {"permutation": Permutation, "resample": Resample}


def as_augmentation(augmentation: object) -> Augmentation:
    """The distribution for a name of the core engine or an :class:`Augmentation` object."""
    if isinstance(augmentation, Augmentation):
        return augmentation
    name = _checks.as_choice("augmentation", augmentation, _checks.AUGMENTATIONS)
    return _BY_NAME[name]()


def expected_gradient(
    w: npt.ArrayLike,
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    augmentation: str | Augmentation = "permutation",
) -> FloatArray:
    """Exact expected gradient of the squared loss over the augmentation distribution.

    ``E_σ[(wᵀx_σ − y) x_σ]_m = a w_m + c Σ_l w_l − y s1/d`` with the
    coefficients of :func:`~fastperm.augment.coefficients` (module docstring for the derivation).
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
        whose closed form is used: ``E[x'x'ᵀ] w − y E[x']`` (:mod:`fastperm.augment.distributions`).

    Returns
    -------
    (d,) array for 1-D ``x``, else (n, d): one expected gradient per row.

    Examples
    --------
    >>> import numpy as np
    >>> from fastperm import augment, expected_gradient
    >>> x = np.array([1.0, 2.0, 3.0])
    >>> expected_gradient(np.zeros(3), x, 1.0)  # at w = 0: −y·mean(x) in every entry
    array([-2., -2., -2.])
    >>> expected_gradient(np.ones(3), x, 1.0, augment.Gaussian(0.5))  # (wᵀx − y) x + σ² w
    array([ 5.25, 10.25, 15.25])

    One row per example:

    >>> expected_gradient(np.ones(3), np.stack([x, -x]), [1.0, 0.0])  # wᵀx' is s1 for all σ
    array([[10., 10., 10.],
           [12., 12., 12.]])
    """
    aug = as_augmentation(augmentation)
    w, X, y, single = _checks.example_args(w, x, y)
    with np.errstate(all="ignore"):  # an overflow is one error, as for augmented_gradient
        if aug.engine_name is None:
            g = aug.expected_gradient(w, X, y)
        else:
            a, c, e = coefficients(X, y, aug.engine_name)
            g = a[:, None] * w[None, :] + (c * w.sum() - e)[:, None]
    _checks.finite_result(g, "expected gradient", "w, x or y are")
    return g[0] if single else g


def __getattr__(name: str) -> Callable[..., FloatArray]:
    """``augment.augmented_gradient`` is the front end's (it calls a backend), on first use."""
    if name == "augmented_gradient":
        from ..gradients import augmented_gradient

        return augmented_gradient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
