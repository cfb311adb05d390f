"""The k-copy gradient estimate, :func:`augmented_gradient`: a front end (validate, choose a
backend, call its kernel). The closed form it converges to,
:func:`~fastperm.augment.expected_gradient`, is NumPy maths in :mod:`fastperm.augment`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from . import _checks, backends
from ._typing import FloatArray
from .augment import Augmentation, as_augmentation


def augmented_gradient(
    w: npt.ArrayLike,
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    k: int,
    seed: int = 0,
    augmentation: str | Augmentation = "permutation",
    backend: str | None = None,
) -> FloatArray:
    """Mean gradient over ``k`` augmented copies of each example.

    ``ĝ = (1/k) Σ_{j<k} (wᵀx^{(j)} − y) x^{(j)}`` with ``x^{(0)} = x`` and
    ``x^{(j)}``, j ≥ 1, augmented copies drawn by :mod:`fastperm.rng` with key
    ``(seed, STREAM_FIXED, counter(i, j))`` for row ``i`` — exactly the copies
    that ``train(..., sampling="fixed", seed=seed)`` uses for example ``i``.
    As ``k → ∞`` it converges to :func:`~fastperm.expected_gradient` at rate
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

    Examples
    --------
    >>> import numpy as np
    >>> from fastperm import augmented_gradient, expected_gradient
    >>> rng = np.random.default_rng(0)
    >>> w, X, y = rng.standard_normal(20), rng.standard_normal((5, 20)), rng.standard_normal(5)
    >>> augmented_gradient(w, X, y, k=1).shape
    (5, 20)

    With k = 1 it is the plain gradient; as k grows it approaches the expected gradient:

    >>> bool(np.allclose(augmented_gradient(w, X, y, k=1), (X @ w - y)[:, None] * X))
    True
    >>> exact = expected_gradient(w, X, y)
    >>> for k in (10, 1000, 10_000):
    ...     g = augmented_gradient(w, X, y, k, seed=0)
    ...     print(k, round(float(np.linalg.norm(g - exact) / np.linalg.norm(exact)), 3))
    10 1.102
    1000 0.145
    10000 0.053
    """
    aug = as_augmentation(augmentation)
    sampler = aug.sampler()
    k = _checks.as_int("k", k, minimum=1, maximum=2**32 - 1)
    seed = _checks.as_seed("seed", seed)
    w, X, y, single = _checks.example_args(w, x, y)
    aug.check_d(X.shape[1])
    _checks.copies_fit(k, X.shape[1])
    out = np.empty_like(X)
    kern = backends.get(backend, needs="augmented_gradient", kind=sampler[0])
    with np.errstate(all="ignore"):  # an overflow is one error on every backend, below
        kern.augmented_gradient(w, X, y, k, np.uint64(seed), *sampler, out)
    _checks.finite_result(out, "augmented gradient", "w, x or y are")
    return out[0] if single else out
