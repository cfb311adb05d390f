"""Argument checks shared by the public functions.

Every public entry point validates and coerces its arguments here, once,
before any kernel runs: kernels assume float64, C-contiguous, finite inputs.
Each error names the argument and the problem.
"""

from __future__ import annotations

import functools
import math
import numbers
import os
from collections.abc import Callable
from typing import Any, TypeGuard, TypeVar

import numpy as np
import numpy.typing as npt

from ._typing import EngineAugmentation, FloatArray, Sampling, UIntArray

_Choice = TypeVar("_Choice", bound=str)

AUGMENTATIONS: tuple[EngineAugmentation, ...] = ("permutation", "resample")
SAMPLINGS: tuple[Sampling, ...] = ("fixed", "fresh")


#: dtype kinds that hold real numbers: float, signed and unsigned integer (not bool, complex,
#: timedelta64 — NumPy files it under the integers —, datetime64, object or strings)
REAL_KINDS = "fiu"


def is_real_scalar(v: object) -> TypeGuard[numbers.Real]:
    """A real number: not a bool, not a NumPy timedelta/datetime (which NumPy and
    :mod:`numbers` file under the integers)."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        return False
    return not isinstance(v, np.generic) or v.dtype.kind in REAL_KINDS


def as_array(name: str, a: object) -> npt.NDArray[Any]:
    """``np.asarray(a)``, with a ragged nesting refused by name (NumPy's message names none)."""
    if a is None:
        raise TypeError(f"{name} must be an array, got None")
    try:
        return np.asarray(a)
    except ValueError as exc:
        if "inhomogeneous" in str(exc) or "sequence" in str(exc):
            raise ValueError(f"{name} is ragged: its rows have different lengths") from None
        raise


def as_float_array(name: str, a: object, ndim: int | tuple[int, ...]) -> FloatArray:
    """``a`` as a finite, C-contiguous float64 array with ``ndim`` dimensions.

    Integer and float32 inputs are converted; bool, complex, timedelta64,
    datetime64, object and string arrays are refused, and so are ragged nestings.
    """
    arr = as_array(name, a)
    if arr.dtype.kind not in REAL_KINDS:
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    dims = (ndim,) if isinstance(ndim, int) else ndim
    if arr.ndim not in dims:
        want = " or ".join(f"{k}-D" for k in dims)
        raise ValueError(f"{name} must be {want}, got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name} has {bad} non-finite value(s) (NaN or inf)")
    return arr


def as_int(name: str, v: object, *, minimum: int, maximum: int | None = None) -> int:
    """``v`` as a Python int in ``[minimum, maximum]``; floats and bools are refused."""
    if (
        isinstance(v, (bool, np.bool_))
        or not isinstance(v, numbers.Integral)
        or (isinstance(v, np.generic) and v.dtype.kind not in "iu")
    ):
        raise TypeError(f"{name} must be an integer, got {v!r} ({type(v).__name__})")
    v = int(v)
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    if maximum is not None and v > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {v}")
    return v


def is_inf_name(v: object) -> bool:
    """Whether ``v`` is text for k = ∞ (``"inf"``, ``"infinity"``, ``"∞"``, any case): the
    spelling of the command line and of sweep specs."""
    return isinstance(v, str) and v.strip().lower() in ("inf", "infinity", "∞")


def as_k(v: object) -> float:
    """The augmentation factor: an integer >= 1, or ``math.inf`` for the expected gradient."""
    if is_real_scalar(v) and not isinstance(v, numbers.Integral):
        if math.isinf(v) and v > 0:  # type: ignore[operator]  # typeshed: Real has no __gt__
            return math.inf
        raise TypeError(f"k must be an integer >= 1 or math.inf (the expected gradient), got {v!r}")
    return as_int("k", v, minimum=1, maximum=2**32 - 1)


def as_finite_real(name: str, v: object) -> float:
    """A finite real number."""
    if not is_real_scalar(v):
        raise TypeError(f"{name} must be a real number, got {v!r} ({type(v).__name__})")
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v!r}")
    return float(v)


def as_positive_real(name: str, v: object) -> float:
    """A finite real number > 0."""
    if not is_real_scalar(v):
        raise TypeError(f"{name} must be a real number, got {v!r} ({type(v).__name__})")
    v = float(v)
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be finite and > 0, got {v}")
    return v


def as_nonnegative_real(name: str, v: object) -> float:
    """A finite real number >= 0 (a noise level)."""
    if not is_real_scalar(v) or not (math.isfinite(v) and v >= 0):  # type: ignore[operator]
        raise ValueError(f"{name} must be a finite real >= 0, got {v!r}")
    return float(v)


def as_choice(name: str, v: object, choices: tuple[_Choice, ...]) -> _Choice:
    if not isinstance(v, str) or v not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {v!r}")
    return v


def as_dtype(name: str, v: object, k: float) -> str:
    """``"float64"`` or ``"float32"`` (a NumPy dtype or type of either is taken too); float32
    for plain and k-fold runs only (k = ∞ runs are O(T + d) scalar work, kept in float64)."""
    try:
        dt = np.dtype(v)  # type: ignore[call-overload]
    except TypeError:
        dt = None
    if dt not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise ValueError(f"{name} must be 'float64' or 'float32', got {v!r}")
    if dt == np.float32 and math.isinf(k):
        raise ValueError(
            f"{name}='float32' is for plain and k-fold runs (their memory traffic is "
            "O(T·k·d)); k = ∞ runs are O(T + d) and computed in float64"
        )
    return str(dt)


def as_seed(name: str, v: object) -> int:
    return as_int(name, v, minimum=0, maximum=2**64 - 1)


def example_args(
    w: object, x: object, y: object
) -> tuple[FloatArray, FloatArray, FloatArray, bool]:
    """Validate ``(w, x, y)`` for one example (1-D x) or a batch (2-D X)."""
    x = as_float_array("x", x, (1, 2))
    single = x.ndim == 1
    X = x[None, :] if single else x
    n, d = X.shape
    if d == 0:
        raise ValueError("x must have at least one feature (d >= 1), got d = 0")
    if n == 0:
        raise ValueError("x must hold at least one example, got 0 rows")
    w = as_float_array("w", w, 1)
    if w.shape[0] != d:
        raise ValueError(f"w has {w.shape[0]} entries but x has d = {d} features")
    y = as_float_array("y", np.atleast_1d(as_array("y", y)), 1)
    if y.shape[0] != n:
        raise ValueError(f"y has {y.shape[0]} entries but x has {n} example(s)")
    return w, X, y, single


def as_array_param(
    name: str, v: object, check: Callable[[str, Any], object], dtype: type[np.generic]
) -> npt.NDArray[Any]:
    """A scalar or 1-D sequence of parameters, each checked by ``check``, as ``dtype``."""
    arr = np.asarray(v, dtype=object)
    if arr.ndim == 0:
        return np.array([check(name, arr.item())], dtype=dtype)
    if arr.ndim != 1 or arr.shape[0] == 0:
        raise ValueError(
            f"{name} must be a scalar or a non-empty 1-D sequence, got shape {arr.shape}"
        )
    # the dtype is explicit: NumPy would store [0, 2**64 - 1] as float64, changing the seed
    return np.array([check(f"{name}[{i}]", x) for i, x in enumerate(arr)], dtype=dtype)


def seeds_and_lr(seeds: object, lr: object) -> tuple[UIntArray, FloatArray]:
    """Validated per-run seeds (uint64) and step sizes (float64), broadcast against each other."""
    seeds = as_array_param("seeds", seeds, as_seed, np.uint64)
    lr = as_array_param("lr", lr, as_positive_real, np.float64)
    try:
        seeds, lr = np.broadcast_arrays(seeds, lr)
    except ValueError:
        raise ValueError(
            f"seeds ({seeds.shape[0]}) and lr ({lr.shape[0]}) must have equal "
            "lengths or one of them length 1; use np.meshgrid for a grid"
        ) from None
    return np.ascontiguousarray(seeds, dtype=np.uint64), np.ascontiguousarray(lr, dtype=np.float64)


def broadcast_runs(**per_run: npt.NDArray[Any]) -> list[npt.NDArray[Any]]:
    """1-D per-run arrays broadcast against each other (length 1 or one common length), in
    the order given; a ValueError naming their lengths otherwise."""
    try:
        out = np.broadcast_arrays(*per_run.values())
    except ValueError:
        lengths = ", ".join(f"{name} ({a.shape[0]})" for name, a in per_run.items())
        raise ValueError(
            f"{lengths} must have equal lengths or length 1; use np.meshgrid for a grid"
        ) from None
    return [np.ascontiguousarray(a) for a in out]


def finite_result(out: npt.NDArray[Any], what: str, inputs: str) -> None:
    """The same answer on every backend when a result overflows: a FloatingPointError naming
    the inputs to rescale (compiled kernels do not warn, NumPy does: neither is enough)."""
    bad = out.size - np.count_nonzero(np.isfinite(out))
    if bad:
        raise FloatingPointError(
            f"{bad} of {out.size} entries of the {what} are not finite: "
            f"{inputs} too large for float64; rescale them"
        )


def moments_fit(**arrays: FloatArray) -> None:
    """Refuse arrays whose second moments may overflow: every closed form (k = ∞) is built
    from sums of products of two entries of a row (of X; of w and w* for the k = ∞ loss),
    at most ``(d·max|x|)²``; past float64's range the kernels would form inf (and each
    backend report it at its own point, or the NumPy reference not at all)."""
    for name, a in arrays.items():
        top = float(np.max(np.abs(a), initial=0.0)) * a.shape[-1]
        if top > math.sqrt(np.finfo(np.float64).max):
            raise ValueError(
                f"{name} is too large for the closed form (k = inf): d·max|{name}| "
                f"= {top:.3g} exceeds 1.3e154, where its second moments may "
                "overflow float64; rescale the problem"
            )


def copies_fit(k: float, d: int) -> None:
    """Refuse, before allocating, a k whose (k, d) block of copies cannot fit in memory."""
    need = int(k) * d * 8
    total = _physical_memory()
    if total is not None and need > total // 2:
        raise MemoryError(
            f"k = {int(k)} needs {need / 2**30:.3g} GiB for the copies of one "
            f"example (k·d·8 bytes, d = {d}); this machine has "
            f"{total / 2**30:.3g} GiB: use a smaller k"
        )


@functools.lru_cache(maxsize=1)
def _physical_memory() -> int | None:
    """Bytes of physical memory (read once), or None where the platform does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
