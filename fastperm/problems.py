"""Data for the permutation-invariant linear regression problem."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _checks
from ._typing import FloatArray


class LinearProblem:
    """A linear regression data set ``y = Xw*`` (or the user's own ``X, y``).

    Parameters
    ----------
    X : (n, d) array
        Examples, one per row. Converted to C-contiguous float64.
    y : (n,) array
        Labels.
    w_star : (d,) array
        The parameters the evaluation loss ``mean((w − w*)²)`` compares with.

    Attributes
    ----------
    X, y, w_star : float64 arrays, read-only copies owned by the problem (the caller's arrays
        are never modified, and later changes to them do not reach the problem).
    n, d : int

    Examples
    --------
    >>> p = LinearProblem.sample(d=400, n=40, seed=0)
    >>> p.X.shape, p.y.shape, p.w_star.shape
    ((40, 400), (40,), (400,))
    """

    X: FloatArray
    y: FloatArray
    w_star: FloatArray

    def __init__(self, X: npt.ArrayLike, y: npt.ArrayLike, w_star: npt.ArrayLike) -> None:
        X = _checks.as_float_array("X", X, 2)
        n, d = X.shape
        if n == 0:
            raise ValueError("X must hold at least one example (n >= 1), got n = 0")
        if d == 0:
            raise ValueError("X must have at least one feature (d >= 1), got d = 0")
        y = _checks.as_float_array("y", y, 1)
        if y.shape[0] != n:
            raise ValueError(f"y has {y.shape[0]} entries but X has n = {n} rows")
        w_star = _checks.as_float_array("w_star", w_star, 1)
        if w_star.shape[0] != d:
            raise ValueError(f"w_star has {w_star.shape[0]} entries but X has d = {d} columns")
        # the problem owns its data: copies (the caller's arrays keep their flags, and a later
        # write to them cannot change a validated problem), read-only from here on
        X, y, w_star = (np.array(a, dtype=np.float64, order="C", copy=True) for a in (X, y, w_star))
        for a in (X, y, w_star):
            a.setflags(write=False)
        self.X, self.y, self.w_star = X, y, w_star
        self.origin: dict[str, Any] = {"source": "arrays"}
        self._digest: str | None = None

    @classmethod
    def sample(cls, d: int = 400, n: int = 40, seed: int = 0, w_star: float = 1.0) -> LinearProblem:
        """The problem of the post: ``x ~ N(0, I_d)``, ``w* = w_star·1``, ``y = xᵀw*``.

        Parameters
        ----------
        d, n : int >= 1
            Features and examples (defaults: the post's d = 400, n = 40).
        seed : int >= 0
            Seed of NumPy's PCG64 generator for X.
        w_star : float
            The constant value c of ``w* = c·1``.
        """
        d = _checks.as_int("d", d, minimum=1)
        n = _checks.as_int("n", n, minimum=1)
        seed = _checks.as_seed("seed", seed)
        c = _checks.as_finite_real("w_star", w_star)
        X = np.random.default_rng(seed).standard_normal((n, d))
        ws = np.full(d, c)
        problem = cls(X, X @ ws, ws)
        problem.origin = {"source": "sample", "seed": seed, "w_star": c}
        return problem

    @property
    def n(self) -> int:
        return self.X.shape[0]

    @property
    def d(self) -> int:
        return self.X.shape[1]

    def describe(self) -> dict[str, Any]:
        """Sizes and origin, for a result's metadata: ``n``, ``d``, ``source`` ("sample" or
        "arrays"), for a sampled problem its ``seed`` and the constant ``w_star``, and
        ``blake2b``, a digest of X, y and w* (so that a result names its data)."""
        return {"n": self.n, "d": self.d, **self.origin, "blake2b": self.digest}

    @property
    def digest(self) -> str:
        """BLAKE2b digest (16 bytes, hex) of X, y and w*: computed once (the data is
        read-only), ~1 s per GB."""
        if self._digest is None:
            h = hashlib.blake2b(digest_size=16)
            for a in (self.X, self.y, self.w_star):
                h.update(np.asarray(a.shape, dtype=np.int64).tobytes())
                h.update(a.tobytes())
            self._digest = h.hexdigest()
        return self._digest

    def loss(self, w: npt.ArrayLike) -> float:
        """Evaluation loss ``mean((w − w*)²)``: the population MSE divided by d."""
        w = _checks.as_float_array("w", w, 1)
        return float(np.mean((w - self.w_star) ** 2))

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
        """Refuse starts ``W`` (rows: runs) whose loss ``mean((w − w*)²)`` or residuals
        ``X w − y`` are not finite: training could not begin (every backend would report a
        divergence, at step 0 or 1 by its own order of checks), so it is an error of the
        argument ``name`` instead."""
        with np.errstate(all="ignore"):
            loss = np.mean((W - self.w_star) ** 2, axis=1)
            residual_ok = np.isfinite(W @ self.X.T - self.y).all(axis=1)
        bad = np.flatnonzero(~(np.isfinite(loss) & residual_ok))
        if bad.size:
            r = int(bad[0])
            row = f" (run {r})" if W.shape[0] > 1 else ""
            what = (
                f"the loss mean((w − w*)²) is {loss[r]}"
                if not np.isfinite(loss[r])
                else "the residuals X·w − y overflow"
            )
            raise ValueError(
                f"{name}{row} cannot start training on this problem: {what} "
                f"(max |w| = {np.max(np.abs(W[r])):.3g}, max |w*| = "
                f"{np.max(np.abs(self.w_star)):.3g}, max |X| = "
                f"{np.max(np.abs(self.X)):.3g}); rescale {name} or the problem"
            )

    def __repr__(self) -> str:
        return f"LinearProblem(n={self.n}, d={self.d})"


def as_problem(problem: object) -> LinearProblem:
    """``problem`` if it is a :class:`LinearProblem`, else a TypeError saying how to make one."""
    if not isinstance(problem, LinearProblem):
        raise TypeError(
            "problem must be a fastperm.LinearProblem "
            f"(LinearProblem.sample(...) or LinearProblem(X, y, w_star)), "
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
