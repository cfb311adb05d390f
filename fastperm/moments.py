"""Closed-form moments of the augmentations, in plain NumPy: the maths that both
:mod:`fastperm.augment` (the distributions) and the backends' set-up code need.

A leaf module, like :mod:`fastperm.rng`: it imports nothing from fastperm, so the
front ends and the backends can both use it without importing each other. Derivations:
:mod:`fastperm.augment`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # a leaf module: nothing from fastperm at run time
    from ._typing import FloatArray, IntArray


def coefficients(
    X: FloatArray, y: FloatArray, augmentation: str = "permutation"
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per-example coefficients ``(a, c, e)`` of the expected gradient over permutations
    or resampling: ``E[g_i]_m = a_i w_m + c_i Σw − e_i``.

    With ``s1 = Σ_m x_m``, ``s2 = Σ_m x_m²``: ``c = (s1² − s2)/(d(d − 1))`` for permutations
    (0 when d = 1), ``c = s1²/d²`` for resampling; ``a = s2/d − c``, ``e = y s1/d``.

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


def block_moments(
    X: FloatArray, labels: IntArray, G: int
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Group sizes d_G (G,) and, per row of X and group, ``m_G = s1_G/d_G``, ``s2_G/d_G`` and
    ``c_G = (s1_G² − s2_G)/(d_G(d_G − 1))`` (0 for a singleton), as (n, G) arrays;
    ``labels[j]`` is the group of entry j."""
    onehot = np.zeros((X.shape[1], G))
    onehot[np.arange(X.shape[1]), labels] = 1.0
    size = onehot.sum(axis=0)
    s1 = X @ onehot
    s2 = (X * X) @ onehot
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.where(size > 1, (s1 * s1 - s2) / (size * (size - 1)), 0.0)
    return size, s1 / size, s2 / size, c


def circulant_spectrum(X: FloatArray) -> FloatArray:
    """Eigenvalues ``|x̂_f|²/d`` of each row's cyclic-shift second moment, in rfft order:
    (n, d//2 + 1)."""
    d = X.shape[1]
    F = np.fft.rfft(X, axis=1)
    return (F.real**2 + F.imag**2) / d
