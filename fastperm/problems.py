"""Data for the permutation-invariant linear regression problem."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _checks
from ._typing import FloatArray

#: what training can record (``record=`` of :func:`fastperm.train`): three losses and w
METRICS = ("error", "train", "test", "w")

#: the losses among :data:`METRICS`, as they are defined (rows of X: examples)
LOSSES = {
    "error": "mean((w - w*)^2), the parameter error",
    "train": "mean((X w - y)^2) over the training examples",
    "test": "mean((X_test w - y_test)^2) over the held-out examples",
}

# work of one batch of the losses: (rows, examples) residuals, well inside the caches' reach
_BATCH_ENTRIES = 1 << 22


def _owned(a: FloatArray) -> FloatArray:
    """A read-only C-contiguous float64 copy (the problem owns its data: the caller's arrays
    keep their flags, and a later write to them cannot change a validated problem)."""
    a = np.array(a, dtype=np.float64, order="C", copy=True)
    a.setflags(write=False)
    return a


class LinearProblem:
    """A linear regression data set: examples X and labels y, with the parameters w* that
    generated them when known, and a held-out split when given.

    Parameters
    ----------
    X : (n, d) array
        Examples, one per row. Converted to C-contiguous float64.
    y : (n,) array
        Labels.
    w_star : (d,) array, optional
        The parameters the parameter error ``mean((w − w*)²)`` compares with; None for real
        data, where no w* exists (training then records the training loss by default).
    X_test, y_test : (n_test, d) and (n_test,) arrays, optional
        A held-out split for the test loss ``mean((X_test w − y_test)²)`` (both or neither).

    Attributes
    ----------
    X, y, w_star, X_test, y_test : float64 arrays (or None), read-only copies owned by the
        problem (the caller's arrays are never modified, and later changes to them do not
        reach the problem).
    n, d, n_test : int

    Examples
    --------
    >>> p = LinearProblem.sample(d=400, n=40, seed=0)
    >>> p.X.shape, p.y.shape, p.w_star.shape
    ((40, 400), (40,), (400,))

    Real data has no w*: give X and y (and a held-out split for the test loss).

    >>> rng = np.random.default_rng(1)
    >>> X = rng.standard_normal((60, 5))
    >>> y = X @ np.arange(5.0) + 0.1 * rng.standard_normal(60)
    >>> real = LinearProblem(X[:50], y[:50], X_test=X[50:], y_test=y[50:])
    >>> real.w_star is None, real.n, real.n_test
    (True, 50, 10)
    """

    X: FloatArray
    y: FloatArray
    w_star: FloatArray | None
    X_test: FloatArray | None
    y_test: FloatArray | None

    def __init__(
        self,
        X: npt.ArrayLike,
        y: npt.ArrayLike,
        w_star: npt.ArrayLike | None = None,
        *,
        X_test: npt.ArrayLike | None = None,
        y_test: npt.ArrayLike | None = None,
    ) -> None:
        X = _checks.as_float_array("X", X, 2)
        n, d = X.shape
        if n == 0:
            raise ValueError("X must hold at least one example (n >= 1), got n = 0")
        if d == 0:
            raise ValueError("X must have at least one feature (d >= 1), got d = 0")
        y = _checks.as_float_array("y", y, 1)
        if y.shape[0] != n:
            raise ValueError(f"y has {y.shape[0]} entries but X has n = {n} rows")
        self.X, self.y = _owned(X), _owned(y)
        self.w_star: FloatArray | None = None
        if w_star is not None:
            w_star = _checks.as_float_array("w_star", w_star, 1)
            if w_star.shape[0] != d:
                raise ValueError(f"w_star has {w_star.shape[0]} entries but X has d = {d} columns")
            self.w_star = _owned(w_star)
        self.X_test: FloatArray | None = None
        self.y_test: FloatArray | None = None
        if (X_test is None) != (y_test is None):
            raise ValueError(
                "X_test and y_test go together: give both (a held-out split) or neither"
            )
        if X_test is not None:
            X_test = _checks.as_float_array("X_test", X_test, 2)
            y_test = _checks.as_float_array("y_test", y_test, 1)
            if X_test.shape[1] != d:
                raise ValueError(f"X_test has {X_test.shape[1]} columns but X has d = {d}")
            if X_test.shape[0] == 0:
                raise ValueError("X_test has no rows: a held-out split needs at least one")
            if y_test.shape[0] != X_test.shape[0]:
                raise ValueError(
                    f"y_test has {y_test.shape[0]} entries but X_test has {X_test.shape[0]} rows"
                )
            self.X_test, self.y_test = _owned(X_test), _owned(y_test)
        self.origin: dict[str, Any] = {"source": "arrays"}
        self._digest: str | None = None
        self._cast: dict[str, tuple[FloatArray, FloatArray]] = {}

    @classmethod
    def sample(
        cls, d: int = 400, n: int = 40, seed: int = 0, w_star: float = 1.0, n_test: int = 0
    ) -> LinearProblem:
        """The problem of the post: ``x ~ N(0, I_d)``, ``w* = w_star·1``, ``y = xᵀw*``.

        Parameters
        ----------
        d, n : int >= 1
            Features and examples (defaults: the post's d = 400, n = 40).
        seed : int >= 0
            Seed of NumPy's PCG64 generator for X (then X_test, so X does not depend on
            ``n_test``).
        w_star : float
            The constant value c of ``w* = c·1``.
        n_test : int >= 0
            Held-out examples drawn the same way (for ``record="test"``); none by default.
        """
        d = _checks.as_int("d", d, minimum=1)
        n = _checks.as_int("n", n, minimum=1)
        seed = _checks.as_seed("seed", seed)
        c = _checks.as_finite_real("w_star", w_star)
        n_test = _checks.as_int("n_test", n_test, minimum=0)
        gen = np.random.default_rng(seed)
        X = gen.standard_normal((n, d))
        ws = np.full(d, c)
        test = {}
        if n_test:
            X_test = gen.standard_normal((n_test, d))
            test = {"X_test": X_test, "y_test": X_test @ ws}
        problem = cls(X, X @ ws, ws, **test)
        problem.origin = {"source": "sample", "seed": seed, "w_star": c}
        return problem

    @property
    def n(self) -> int:
        return self.X.shape[0]

    @property
    def d(self) -> int:
        return self.X.shape[1]

    @property
    def n_test(self) -> int:
        return 0 if self.X_test is None else self.X_test.shape[0]

    def describe(self) -> dict[str, Any]:
        """Sizes and origin, for a result's metadata: ``n``, ``d``, ``n_test`` (when there
        is a held-out split), whether w* is known, ``source`` ("sample" or "arrays"), for a
        sampled problem its ``seed`` and the constant ``w_star``, and ``blake2b``, a digest
        of the data (so that a result names its data)."""
        sizes: dict[str, Any] = {"n": self.n, "d": self.d}
        if self.n_test:
            sizes["n_test"] = self.n_test
        if self.w_star is None:
            sizes["w_star_known"] = False
        return {**sizes, **self.origin, "blake2b": self.digest}

    @property
    def digest(self) -> str:
        """BLAKE2b digest (16 bytes, hex) of X, y, w* and the held-out split (those that
        exist): computed once (the data is read-only), ~1 s per GB."""
        if self._digest is None:
            h = hashlib.blake2b(digest_size=16)
            for a in (self.X, self.y, self.w_star, self.X_test, self.y_test):
                if a is None:
                    continue
                h.update(np.asarray(a.shape, dtype=np.int64).tobytes())
                h.update(a.tobytes())
            self._digest = h.hexdigest()
        return self._digest

    def known_w_star(self, what: str, instead: str) -> FloatArray:
        """w*, or a ValueError saying that ``what`` needs it (a problem of real data has none)
        and what to do ``instead``."""
        if self.w_star is None:
            raise ValueError(
                f"{what} needs the problem's w_star, and this problem has none (real data); "
                f"{instead}"
            )
        return self.w_star

    def check_metrics(self, names: tuple[str, ...]) -> None:
        """Refuse to record losses this problem cannot give (``error`` without w*, ``test``
        without a held-out split)."""
        if "error" in names:
            self.known_w_star("record='error'", "record the training or test loss instead")
        if "test" in names and self.X_test is None:
            raise ValueError(
                "record='test' needs a held-out split: LinearProblem(X, y, X_test=..., "
                "y_test=...) or LinearProblem.sample(..., n_test=...)"
            )

    def metric(self, name: str, W: npt.ArrayLike) -> FloatArray:
        """The loss ``name`` of :data:`fastperm.problems.LOSSES` at parameters ``W`` (..., d),
        of shape (...).

        ``error`` is ``mean((w − w*)²)``; ``train`` and ``test`` are the mean squared
        residuals ``mean((Xw − y)²)`` over the training and held-out examples. Each value
        is computed on its own (``numpy.einsum`` without BLAS, in batches), so it is the same
        bitwise whatever the batch it is part of: a resumed run's records equal one call's.
        """
        name = _checks.as_choice("name", name, tuple(LOSSES))
        self.check_metrics((name,))
        W = np.asarray(W)
        flat = W.reshape(-1, self.d)  # a view of the caller's array: batches are cast below
        out = np.empty(flat.shape[0])
        if name == "error":
            X, y = None, None
            step = max(1, _BATCH_ENTRIES // self.d)
        else:
            X, y = (self.X, self.y) if name == "train" else (self.X_test, self.y_test)
            assert X is not None and y is not None  # (check_metrics)
            step = max(1, _BATCH_ENTRIES // max(X.shape[0], self.d))
        with np.errstate(all="ignore"):  # a diverged run's NaN rows stay NaN
            for a in range(0, flat.shape[0], step):
                rows = flat[a : a + step].astype(np.float64)
                if X is None:
                    res = rows - self.target  # (check_metrics: w* is known)
                else:
                    res = np.einsum("rd,nd->rn", rows, X, optimize=False) - y
                out[a : a + step] = np.mean(res * res, axis=1)
        return out.reshape(W.shape[:-1])

    def loss(self, w: npt.ArrayLike) -> float:
        """Parameter error ``mean((w − w*)²)``: the population MSE divided by d (needs w*)."""
        w = _checks.as_float_array("w", w, 1)
        w_star = self.known_w_star("loss", "problem.metric('train', w) gives the training loss")
        return float(np.mean((w - w_star) ** 2))

    def start(
        self, w0: npt.ArrayLike | None, runs: int | None = None, *, check: bool = True
    ) -> FloatArray:
        """The validated start of training, ``(1, d)`` or ``(runs, d)`` (a copy).

        ``w0``: None (zeros), a (d,) array, or — when ``runs`` is given — a (runs, d)
        array, one start per run. A start where training cannot begin is refused by
        :meth:`check_start` (unless ``check=False``: the caller checks).
        """
        if w0 is None:
            W0 = np.zeros((1, self.d))
        else:
            W0 = _checks.as_float_array("w0", w0, (1, 2) if runs is not None else 1).copy()
            W0 = W0[None, :] if W0.ndim == 1 else W0
            if W0.shape[1] != self.d:
                raise ValueError(
                    f"w0 has {W0.shape[1]} entries per run but the problem has d = {self.d}"
                )
            if W0.shape[0] not in (1, runs or 1):
                raise ValueError(f"w0 has {W0.shape[0]} rows; expected 1 or one per run ({runs})")
        if check:  # the default start too: a huge w* makes its loss inf
            self.check_start(W0, "w0")
        return W0

    def check_start(self, W: FloatArray, name: str) -> None:
        """Refuse starts ``W`` (rows: runs) whose loss ``mean((w − w*)²)`` (w = 0 when w* is
        unknown) or residuals ``X w − y`` are not finite: training could not begin (every
        backend would report a divergence, at step 0 or 1 by its own order of checks), so it
        is an error of the argument ``name`` instead."""
        with np.errstate(all="ignore"):
            loss = np.mean((W - self.target) ** 2, axis=1)
            residual_ok = np.isfinite(W @ self.X.T - self.y).all(axis=1)
        bad = np.flatnonzero(~(np.isfinite(loss) & residual_ok))
        if bad.size:
            r = int(bad[0])
            row = f" (run {r})" if W.shape[0] > 1 else ""
            of = "mean((w − w*)²)" if self.w_star is not None else "mean(w²)"
            what = (
                f"the loss {of} is {loss[r]}"
                if not np.isfinite(loss[r])
                else "the residuals X·w − y overflow"
            )
            star = (
                f", max |w*| = {np.max(np.abs(self.w_star)):.3g}" if self.w_star is not None else ""
            )
            raise ValueError(
                f"{name}{row} cannot start training on this problem: {what} "
                f"(max |w| = {np.max(np.abs(W[r])):.3g}{star}, max |X| = "
                f"{np.max(np.abs(self.X)):.3g}); rescale {name} or the problem"
            )

    def examples(self, dtype: str = "float64") -> tuple[FloatArray, FloatArray]:
        """``(X, y)`` in ``dtype``: the problem's own arrays for float64, read-only copies
        (made once) for float32 training."""
        if dtype == "float64":
            return self.X, self.y
        if dtype not in self._cast:
            X, y = self.X.astype(dtype), self.y.astype(dtype)
            for a in (X, y):
                a.setflags(write=False)
            self._cast[dtype] = (X, y)
        return self._cast[dtype]

    @property
    def target(self) -> FloatArray:
        """What the kernels' in-loop loss ``mean((w − target)²)`` compares with: w*, or zeros
        when w* is unknown (that loss then only watches w for overflow)."""
        if self.w_star is not None:
            return self.w_star
        zeros = np.zeros(self.d)
        zeros.setflags(write=False)  # the kernels are compiled for the problem's read-only arrays
        return zeros

    def __repr__(self) -> str:
        test = f", n_test={self.n_test}" if self.n_test else ""
        star = "" if self.w_star is not None else ", w_star=None"
        return f"LinearProblem(n={self.n}, d={self.d}{test}{star})"


def as_problem(problem: object) -> LinearProblem:
    """``problem`` if it is a :class:`LinearProblem`, else a TypeError saying how to make one."""
    if not isinstance(problem, LinearProblem):
        raise TypeError(
            "problem must be a fastperm.LinearProblem "
            f"(LinearProblem.sample(...) or LinearProblem(X, y)), "
            f"got {type(problem).__name__}"
        )
    return problem


def as_problems(problem: object) -> list[LinearProblem]:
    """``[problem]`` for one :class:`LinearProblem`, or a non-empty sequence of them with the
    same d (a TypeError or ValueError naming ``problem`` otherwise)."""
    if isinstance(problem, LinearProblem):
        return [problem]
    if isinstance(problem, (str, bytes)) or not hasattr(problem, "__iter__"):
        return [as_problem(problem)]  # the TypeError saying how to make one
    problems = list(problem)
    if not problems:
        raise ValueError("problem is an empty sequence; give at least one LinearProblem")
    for j, p in enumerate(problems):
        if not isinstance(p, LinearProblem):
            raise TypeError(
                f"problem[{j}] must be a fastperm.LinearProblem, got {type(p).__name__}"
            )
    ds = sorted({p.d for p in problems})
    if len(ds) > 1:
        raise ValueError(f"the problems must have the same d (w is (runs, d)); got d = {ds}")
    return problems
