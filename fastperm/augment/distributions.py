"""The augmentation distributions: moments, closed-form plan (k = ∞), sampler spec (k-fold).

Each distribution is a *declaration*: it never calls a backend. It states

* its moments, in NumPy (``mean``, ``second_moment``, ``expected_gradient``, ``sample``);
* its **closed-form plan** for k = ∞, :meth:`~fastperm.augment.Augmentation.closed_form`:
  the kernel family of :mod:`fastperm.backends.contract` that trains with it and that
  family's own arguments;
* its **sampler spec** for k-fold, :meth:`~fastperm.augment.Augmentation.sampler`: the kind
  code and parameters by which every backend draws its copies (:mod:`fastperm.rng`).

The run harness (``fastperm._runs``) turns a plan into a kernel call.

For the squared loss of a linear model the gradient at an augmented input
``x' ~ A(x)`` (label kept) is ``(wᵀx' − y) x'``, so its expectation needs only
the first two moments of x':

    E[g] = E[x' x'ᵀ] w − y E[x'].                                  (1)

Each distribution below gives ``mean(x) = E[x']``, ``second_moment(x) = E[x' x'ᵀ]``
(dense, for checks at small d), ``expected_gradient(w, X, y)`` — (1) computed
through the moment's structure, never forming the d × d matrix — and
``sample(x, rng)`` for Monte Carlo. The moments (derived here; checked in
``tests/test_distributions.py`` against exhaustive enumeration or Monte Carlo):

* ``Gaussian(sigma)``: ``x' = x + σε``, ε ~ N(0, I). ``E[x'] = x``,
  ``E[x'x'ᵀ] = xxᵀ + σ²I``: (1) is ``(wᵀx − y)x + σ²w``, the gradient of ridge
  regression with penalty ``σ²|w|²/2`` (Bishop, "Training with noise is
  equivalent to Tikhonov regularization", Neural Computation 1995).
* ``Mask(p, rescale)``: ``x'_m = s·b_m x_m``, b_m ~ Bernoulli(p) independent,
  ``s = 1/p`` if rescale else 1. ``E[x'] = s p x``,
  ``E[x'x'ᵀ] = s²(p² xxᵀ + p(1 − p) diag(x²))`` (dropout on the input).
* ``CyclicShift()``: ``x' = roll(x, s)``, s uniform on {0, …, d − 1}.
  ``E[x'] = mean(x)·1``; ``E[x'_i x'_j] = R(j − i)`` with the circular
  autocorrelation ``R(k) = (1/d) Σ_m x_m x_{m+k}``: a symmetric circulant matrix,
  diagonal in the Fourier basis with eigenvalues ``|x̂_f|²/d`` (x̂ = DFT of x).
  So ``E[x'x'ᵀ] w = IDFT(|x̂|²/d · ŵ)``: O(d log d) by FFT — and O(d) per step
  for a whole training run kept in the Fourier domain (:mod:`fastperm.train`).
* ``BlockPermutation(groups)``: x's entries permuted uniformly *within* each
  group G (size d_G, sums s1_G, s2_G), independently across groups.
  ``E[x'_i] = m_G = s1_G/d_G`` for i ∈ G; ``E[x'_i x'_j] = s2_G/d_G`` (i = j),
  ``c_G = (s1_G² − s2_G)/(d_G(d_G − 1))`` (i ≠ j, same group), ``m_G m_H``
  (different groups). One group is ``"permutation"``.
* ``Permutation()`` / ``Resample()``: the core engine's ``"permutation"`` and
  ``"resample"`` (:mod:`fastperm.augment`).
* ``Moments(mean, second_moment)``: any distribution given by its moment
  functions (dense: O(d²) per gradient).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from .. import _checks
from .._typing import FloatArray, IntArray, SamplerSpec
from ..moments import block_moments, circulant_spectrum, coefficients
from ..rng import KIND_BLOCK, KIND_CYCLIC, KIND_GAUSSIAN, KIND_MASK, KIND_PERMUTATION, KIND_RESAMPLE

# what ``sample(x, rng)`` takes as ``rng``: a Generator, or a seed of ``np.random.default_rng``
RandomLike = (
    np.random.Generator
    | np.random.BitGenerator
    | np.random.SeedSequence
    | int
    | Sequence[int]
    | npt.NDArray[np.integer]
    | None
)


def _rng(rng: RandomLike) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _rows(x: object) -> tuple[FloatArray, bool]:
    x = _checks.as_float_array("x", x, (1, 2))
    return (x[None, :], True) if x.ndim == 1 else (x, False)


_NO_F = np.zeros(2)
_NO_I = np.zeros(1, dtype=np.int64)


def _row_means(X: FloatArray) -> FloatArray:
    """Each row's mean in every entry: E[x'] for permutations, resampling, cyclic shifts."""
    return np.repeat(X.mean(axis=1, keepdims=True), X.shape[1], axis=1)


class Augmentation:
    """Base class: a distribution of augmented copies x' of an input x."""

    #: the core engine's name for it, when it has one ("permutation", "resample")
    engine_name: str | None = None

    if TYPE_CHECKING:  # each distribution's own maths (the subclasses define them)

        def _mean(self, X: FloatArray) -> FloatArray: ...

        def _second_moment_times(self, X: FloatArray, w: FloatArray) -> FloatArray: ...

        def _sample(self, x: FloatArray, rng: np.random.Generator, n: int) -> FloatArray: ...

    def sampler(self) -> SamplerSpec:
        """The sampler spec ``(kind, fparams, gidx, gptr)``: how every backend draws this
        distribution's copies for k-fold training (specification in :mod:`fastperm.rng`).

        Raises ValueError for a distribution without one."""
        raise ValueError(
            f"augmentation: {self!r} has no sampler in the compiled kernels: "
            "k-fold training and augmented_gradient need one (use k = inf, or "
            ".sample())"
        )

    def closed_form(self, X: FloatArray) -> tuple[str, dict[str, object]]:
        """The closed-form plan for k = ∞ on examples X (n, d): ``(family, args)``, the kernel
        family of :mod:`fastperm.backends.contract` and the values of its arguments that
        belong to this distribution (the run harness supplies the problem's and the runs')."""
        raise NotImplementedError

    def mean(self, x: npt.ArrayLike) -> FloatArray:
        """``E[x']`` for one input x (d,)."""
        X, _ = _rows(x)
        return self._mean(X)[0]

    def second_moment(self, x: npt.ArrayLike) -> FloatArray:
        """``E[x' x'ᵀ]`` (d, d) for one input x (dense: for checks at small d)."""
        X, _ = _rows(x)
        d = X.shape[1]
        return np.stack([self._second_moment_times(X, np.eye(d)[j])[0] for j in range(d)], axis=1)

    def expected_gradient(self, w: npt.ArrayLike, X: npt.ArrayLike, y: npt.ArrayLike) -> FloatArray:
        """``E[x'x'ᵀ] w − y E[x']`` per row of X (n, d), or for one input x (d,)."""
        X, single = _rows(X)
        w = _checks.as_float_array("w", w, 1)
        if w.shape[0] != X.shape[1]:
            raise ValueError(f"w has {w.shape[0]} entries but x has d = {X.shape[1]} features")
        y = _checks.as_float_array("y", np.atleast_1d(_checks.as_array("y", y)), 1)
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"y has {y.shape[0]} entries but x has {X.shape[0]} example(s)")
        self.check_d(X.shape[1])
        g = self._second_moment_times(X, w) - y[:, None] * self._mean(X)
        return g[0] if single else g

    def sample(
        self, x: npt.ArrayLike, rng: RandomLike = None, size: int | None = None
    ) -> FloatArray:
        """Augmented copies of one input x: (d,) when ``size`` is None, else (size, d)."""
        x = _checks.as_float_array("x", x, 1)
        self.check_d(x.shape[0])
        rng = _rng(rng)
        n = 1 if size is None else _checks.as_int("size", size, minimum=1)
        out = self._sample(x, rng, n)
        return out[0] if size is None else out

    def check_d(self, d: int) -> None:
        """Raise ValueError unless the distribution applies to inputs of ``d`` features.

        Every entry point calls this before a kernel sees the distribution: the compiled
        kernels run without bounds checks, so an index the user supplied (a group of
        :class:`BlockPermutation`) must be proven in range first.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Permutation(Augmentation):
    """Uniformly random permutation of x's entries (``augmentation="permutation"``)."""

    engine_name: str = "permutation"
    kind = KIND_PERMUTATION

    def sampler(self) -> SamplerSpec:
        return self.kind, _NO_F, _NO_I, _NO_I

    def closed_form(self, X: FloatArray) -> tuple[str, dict[str, object]]:
        return "expected_runs", {"kind": self.kind}

    def _mean(self, X: FloatArray) -> FloatArray:
        return _row_means(X)

    def _second_moment_times(self, X: FloatArray, w: FloatArray) -> FloatArray:
        a, c, _ = coefficients(X, np.zeros(X.shape[0]), self.engine_name)
        return a[:, None] * w[None, :] + (c * w.sum())[:, None]

    def _sample(self, x: FloatArray, rng: np.random.Generator, n: int) -> FloatArray:
        return np.stack([x[rng.permutation(x.shape[0])] for _ in range(n)])


class Resample(Permutation):
    """x's entries drawn uniformly with replacement (``augmentation="resample"``)."""

    engine_name = "resample"
    kind = KIND_RESAMPLE

    def _sample(self, x: FloatArray, rng: np.random.Generator, n: int) -> FloatArray:
        return x[rng.integers(0, x.shape[0], size=(n, x.shape[0]))]


class Gaussian(Augmentation):
    """Additive Gaussian noise ``x' = x + σε``; its expected gradient is ridge regression's.

    Parameters
    ----------
    sigma : float >= 0
        Noise standard deviation.

    Examples
    --------
    >>> import numpy as np
    >>> from fastperm.augment import Gaussian
    >>> aug = Gaussian(0.5)
    >>> aug
    Gaussian(sigma=0.5)
    >>> x = np.array([1.0, 2.0])
    >>> aug.mean(x)
    array([1., 2.])
    >>> aug.second_moment(x)  # x xᵀ + σ² I
    array([[1.25, 2.  ],
           [2.  , 4.25]])
    >>> aug.expected_gradient(np.ones(2), x, 1.0)  # (wᵀx − y) x + σ² w: ridge regression
    array([2.25, 4.25])
    >>> copies = aug.sample(x, rng=0, size=100_000)  # Monte Carlo draws of x'
    >>> copies.shape, bool(np.allclose(copies.mean(axis=0), x, atol=0.01))
    ((100000, 2), True)

    In training, k = ∞ uses the closed form and k-fold draws the copies:

    >>> import math
    >>> import fastperm
    >>> problem = fastperm.LinearProblem.sample(d=20, n=5, seed=0)
    >>> res = fastperm.train(problem, math.inf, augmentation=aug, lr=0.01, steps=100)
    >>> res.loss.shape
    (101,)
    """

    def __init__(self, sigma: float) -> None:
        self.sigma = _checks.as_nonnegative_real("sigma", sigma)
        if not math.isfinite(self.sigma * self.sigma):  # the closed form needs σ²
            raise ValueError(
                f"sigma must be at most ~1e154 (sigma² must be finite), got {self.sigma:g}"
            )

    def sampler(self) -> SamplerSpec:
        return KIND_GAUSSIAN, np.array([self.sigma, 0.0]), _NO_I, _NO_I

    def closed_form(self, X: FloatArray) -> tuple[str, dict[str, object]]:
        return "diag_rank1_runs", {
            "beta": 1.0,
            "gamma": 1.0,
            "D": np.full((1, X.shape[1]), self.sigma**2),
        }

    def _mean(self, X: FloatArray) -> FloatArray:
        return X.copy()

    def _second_moment_times(self, X: FloatArray, w: FloatArray) -> FloatArray:
        return (X @ w)[:, None] * X + self.sigma**2 * w[None, :]

    def _sample(self, x: FloatArray, rng: np.random.Generator, n: int) -> FloatArray:
        return x[None, :] + self.sigma * rng.standard_normal((n, x.shape[0]))

    def __repr__(self) -> str:
        return f"Gaussian(sigma={self.sigma:g})"


class Mask(Augmentation):
    """Random masking: each entry kept with probability p (and divided by p if ``rescale``).

    Parameters
    ----------
    p : float in (0, 1]
        Keep probability.
    rescale : bool
        Divide kept entries by p (inverted dropout: then ``E[x'] = x``).
    """

    # declared: mypy deems ``__init__`` past its numbers.Real check unreachable (typeshed's
    # float is no numbers.Real), and would not infer them there
    p: float
    rescale: bool
    scale: float

    def __init__(self, p: float, rescale: bool = False) -> None:
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not (0 < p <= 1):
            raise ValueError(f"p must be a keep probability in (0, 1], got {p!r}")
        self.p = float(p)
        self.rescale = bool(rescale)
        self.scale = 1.0 / self.p if self.rescale else 1.0
        if not math.isfinite(self.scale * self.scale):  # the closed form needs (1/p)²
            raise ValueError(
                f"p must be at least ~1e-154 with rescale=True (1/p² must be "
                f"finite), got {self.p:g}"
            )

    def sampler(self) -> SamplerSpec:
        return KIND_MASK, np.array([self.p, self.scale]), _NO_I, _NO_I

    def closed_form(self, X: FloatArray) -> tuple[str, dict[str, object]]:
        s2, p = self.scale**2, self.p
        return "diag_rank1_runs", {
            "beta": s2 * p * p,
            "gamma": self.scale * p,
            "D": np.ascontiguousarray(s2 * p * (1 - p) * X * X),
        }

    def _mean(self, X: FloatArray) -> FloatArray:
        return self.scale * self.p * X

    def _second_moment_times(self, X: FloatArray, w: FloatArray) -> FloatArray:
        s2, p = self.scale**2, self.p
        return s2 * (p * p * (X @ w)[:, None] * X + p * (1 - p) * X * X * w[None, :])

    def _sample(self, x: FloatArray, rng: np.random.Generator, n: int) -> FloatArray:
        return self.scale * x[None, :] * (rng.random((n, x.shape[0])) < self.p)

    def __repr__(self) -> str:
        return f"Mask(p={self.p:g}, rescale={self.rescale})"


class CyclicShift(Augmentation):
    """A uniformly random cyclic shift of x's entries, ``x' = roll(x, s)``.

    The second moment is circulant; products with it cost O(d log d) (FFT).
    """

    def sampler(self) -> SamplerSpec:
        return KIND_CYCLIC, _NO_F, _NO_I, _NO_I

    def closed_form(self, X: FloatArray) -> tuple[str, dict[str, object]]:
        return "circulant_runs", {}

    def _mean(self, X: FloatArray) -> FloatArray:
        return _row_means(X)

    @staticmethod
    def spectrum(X: FloatArray) -> FloatArray:
        """Eigenvalues ``|x̂_f|²/d`` of each row's second moment, rfft order: (n, d//2 + 1)."""
        return circulant_spectrum(X)

    def _second_moment_times(self, X: FloatArray, w: FloatArray) -> FloatArray:
        d = X.shape[1]
        return np.fft.irfft(self.spectrum(X) * np.fft.rfft(w)[None, :], n=d, axis=1)

    def _sample(self, x: FloatArray, rng: np.random.Generator, n: int) -> FloatArray:
        return np.stack([np.roll(x, int(s)) for s in rng.integers(0, x.shape[0], size=n)])


class BlockPermutation(Augmentation):
    """x's entries permuted uniformly within each group, independently across groups.

    Parameters
    ----------
    groups : sequence of sequences of int
        A partition of ``range(d)`` (checked against x's d when used).
    """

    def __init__(self, groups: Collection[npt.ArrayLike]) -> None:
        if isinstance(groups, (str, bytes)) or not hasattr(groups, "__len__") or len(groups) == 0:
            raise ValueError(
                f"groups must be a non-empty sequence of index sequences, got {groups!r}"
            )
        gs: list[IntArray] = []
        for q, g in enumerate(groups):
            arr = _checks.as_array(f"groups[{q}]", g)
            if arr.ndim != 1 or arr.shape[0] == 0 or arr.dtype.kind not in "iu":
                raise ValueError(f"groups[{q}] must be a non-empty sequence of ints, got {g!r}")
            gs.append(arr.astype(np.int64))
        self.groups = gs
        self.d = int(sum(g.shape[0] for g in gs))
        allidx = np.sort(np.concatenate(gs))
        if not np.array_equal(allidx, np.arange(self.d)):
            raise ValueError(f"groups must partition range({self.d}): every index exactly once")
        self.labels = np.empty(self.d, dtype=np.int64)
        for q, g in enumerate(gs):
            self.labels[g] = q
        # the groups as the kernels take them: indices gidx[gptr[g]:gptr[g + 1]]
        self.gidx = np.concatenate(gs)
        self.gptr = np.concatenate([[0], np.cumsum([g.shape[0] for g in gs])]).astype(np.int64)

    def check_d(self, d: int) -> None:
        if d != self.d:
            raise ValueError(
                f"augmentation: BlockPermutation groups partition range({self.d}) "
                f"but the inputs have d = {d} features; the groups must cover "
                f"every index 0..{d - 1} exactly once"
            )

    def sampler(self) -> SamplerSpec:
        return KIND_BLOCK, _NO_F, self.gidx, self.gptr

    def closed_form(self, X: FloatArray) -> tuple[str, dict[str, object]]:
        self.check_d(X.shape[1])
        return "block_runs", {"gidx": self.gidx, "gptr": self.gptr}

    def block_moments(self, X: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """Per row and group: sizes d_G (G,), m_G, s2_G/d_G, c_G as (n, G) arrays."""
        self.check_d(X.shape[1])
        return block_moments(X, self.labels, len(self.groups))

    def _mean(self, X: FloatArray) -> FloatArray:
        _, m, _, _ = self.block_moments(X)
        return m[:, self.labels]

    def _second_moment_times(self, X: FloatArray, w: FloatArray) -> FloatArray:
        size, m, diag, c = self.block_moments(X)
        S = np.array([w[g].sum() for g in self.groups])  # block sums of w
        lab = self.labels
        cross = (m * S[None, :]).sum(axis=1, keepdims=True) - m * S[None, :]  # Σ_{H≠G} m_H S_H
        return (diag - c)[:, lab] * w[None, :] + (c * S[None, :])[:, lab] + (m * cross)[:, lab]

    def _sample(self, x: FloatArray, rng: np.random.Generator, n: int) -> FloatArray:
        out = np.repeat(x[None, :], n, axis=0)
        for r in range(n):
            for g in self.groups:
                out[r, g] = x[g[rng.permutation(g.shape[0])]]
        return out

    def __repr__(self) -> str:
        return f"BlockPermutation(groups of sizes {[g.shape[0] for g in self.groups]})"


class Moments(Augmentation):
    """A distribution given by its moment functions (dense, O(d²) per gradient).

    Parameters
    ----------
    mean : callable x -> (d,) array
        ``E[x']``.
    second_moment : callable x -> (d, d) array
        ``E[x' x'ᵀ]`` (symmetric positive semi-definite).
    sample : callable (x, rng) -> (d,) array, optional
        One draw, for Monte Carlo.
    name : str
    """

    def __init__(
        self,
        mean: Callable[[FloatArray], npt.ArrayLike],
        second_moment: Callable[[FloatArray], npt.ArrayLike],
        sample: Callable[[FloatArray, np.random.Generator], npt.ArrayLike] | None = None,
        name: str = "Moments",
    ) -> None:
        if not callable(mean) or not callable(second_moment):
            raise TypeError("mean and second_moment must be callables of x")
        if sample is not None and not callable(sample):
            raise TypeError("sample must be a callable (x, rng) -> array, or None")
        self._mean_fn, self._m2_fn, self._sample_fn, self.name = mean, second_moment, sample, name

    def _call(
        self,
        fn: Callable[[FloatArray], npt.ArrayLike],
        x: FloatArray,
        shape: tuple[int, ...],
        what: str,
    ) -> FloatArray:
        v = np.asarray(fn(x), dtype=float)
        if v.shape != shape:
            raise ValueError(f"{self.name}.{what} returned shape {v.shape}, expected {shape}")
        if not np.all(np.isfinite(v)):
            raise ValueError(f"{self.name}.{what} returned non-finite values")
        return v

    def _mean(self, X: FloatArray) -> FloatArray:
        d = X.shape[1]
        return np.stack([self._call(self._mean_fn, x, (d,), "mean") for x in X])

    def closed_form(self, X: FloatArray) -> tuple[str, dict[str, object]]:
        return "dense_runs", {
            "M": np.ascontiguousarray(self.matrices(X)),
            "mu": np.ascontiguousarray(self._mean(X)),
        }

    def matrices(self, X: FloatArray) -> FloatArray:
        """The second moments of every row: (n, d, d)."""
        d = X.shape[1]
        return np.stack([self._call(self._m2_fn, x, (d, d), "second_moment") for x in X])

    def _second_moment_times(self, X: FloatArray, w: FloatArray) -> FloatArray:
        return self.matrices(X) @ w

    def _sample(self, x: FloatArray, rng: np.random.Generator, n: int) -> FloatArray:
        sample_fn = self._sample_fn
        if sample_fn is None:
            raise ValueError(
                f"augmentation: {self.name} was given no sample function "
                "(Moments(..., sample=fn) draws copies)"
            )
        return np.stack(
            [self._call(lambda v: sample_fn(v, rng), x, x.shape, "sample") for _ in range(n)]
        )

    def __repr__(self) -> str:
        return f"Moments({self.name})"
