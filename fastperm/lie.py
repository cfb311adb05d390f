"""Lie brackets of training examples: how much the order of two SGD steps matters.

Each example x defines the vector field ``v_x(θ) = −∇_θ L(x; θ) = −g_x(θ)``; an SGD
step is ``θ ← θ + ε v_x(θ)``. Two steps do not commute:

    θ_xy − θ_yx = ε² [v_x, v_y](θ) + O(ε³),     [v_x, v_y] = H_y g_x − H_x g_y,

(x then y, minus y then x; H = Hessian of the per-example loss). For least squares
``L = ½(θ·x̃ − y)²`` the identity is exact and ``[v_x, v_y] = (x̃·ỹ)(r_x ỹ − r_y x̃)``.

fastperm computes brackets in batches by central finite differences of the
per-example gradients along the other example's gradient,

    H_y g_x ≈ (g_y(θ + h g_x) − g_y(θ − h g_x)) / 2h        (order 2, error O(h²)),

or the five-point stencil (``order=4``: Richardson extrapolation of the
above with h and 2h, error O(h⁴)), in compiled kernels fused over all pairs.
"""

from __future__ import annotations

import functools
import importlib
import math
import numbers
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal, TypeVar, overload

import numpy as np
import numpy.typing as npt

from . import _checks, _runs, backends
from ._typing import FloatArray, IntArray
from .models import MLP, CustomModel, Model

_T = TypeVar("_T")

EPS = float(np.finfo(np.float64).eps)

#: order → (stencil offsets c_j, weights w_j): H u ≈ Σ_j w_j g(θ + c_j h u) / h
STENCILS = {
    2: (np.array([1.0, -1.0]), np.array([0.5, -0.5])),
    4: (np.array([1.0, -1.0, 2.0, -2.0]), np.array([2 / 3, -2 / 3, -1 / 12, 1 / 12])),
}


def _stencil(
    order: int, method: str | None, h: object, model: Model, kern: ModuleType
) -> tuple[FloatArray, FloatArray]:
    """(c, w) for a fastperm model's reductions: the order's stencil for ``method="fd"``
    (the default), an empty one for ``"exact"`` (the kernels' exact products); checked
    before any work."""
    if method is None or method == "fd":
        return STENCILS[order]
    if method != "exact":
        raise ValueError(
            f"method for a fastperm model must be 'fd' (finite differences, the default) or "
            f"'exact' (forward over reverse), got {method!r} ('auto', 'forward' and 'reverse' "
            "are a TorchModel's)"
        )
    if not model.builtin:
        raise ValueError(
            f"method='exact' needs a built-in model (MLP, LinearRegression, "
            f"MultiLabelLogistic); {model.name}'s Hessian is known only through its gradient: "
            "leave method out (finite differences)"
        )
    if kern.name == "cuda":
        raise ValueError(
            "method='exact' runs on the CPU backends (numba, cython, numpy); the cuda "
            "backend computes the brackets by the stencil: leave method out, or use "
            "backend='numba'"
        )
    if h is not None:
        raise ValueError("h is the finite-difference step: method='exact' takes none")
    empty = np.empty(0)
    return empty, empty


def _reducing_kernels(
    kern: ModuleType, model: Model, c: FloatArray, fused: object
) -> ModuleType | None:
    """The backend whose fused kernels reduce the brackets, or None for the full-array path
    (``fused=False`` with finite differences, or a CustomModel). Exact products without
    ``fused`` run on the NumPy reference: the full (pairs, P) array by the complex step,
    reduced in NumPy."""
    if not isinstance(fused, (bool, np.bool_)):
        raise TypeError(f"fused must be True or False, got {fused!r}")
    if c.shape[0] == 0:
        return kern if fused else backends.get("numpy")
    return kern if fused and model.builtin else None


def default_step(theta: FloatArray, G: FloatArray, order: int = 2) -> FloatArray:
    """Default FD multiplier ``h_x`` for each example: a parameter step of norm ε^{1/(m+1)}.

    The perturbation ``h_x g_x`` moves θ by ``s = h_x ‖g_x‖``. A central
    difference of order m has truncation error ``~ (s/ℓ)^m`` and rounding error
    ``~ ε_mach ℓ / s`` (relative), where ℓ is the distance in parameter space over
    which the Hessian changes; they balance at ``s ≈ ε_mach^{1/(m+1)} ℓ`` with a
    relative error ``~ ε_mach^{m/(m+1)}`` (about 4e-11 for m = 2, 3e-13 for m = 4;
    the classical argument, e.g. Press et al., *Numerical Recipes*, §5.7).

    For networks with tanh / sigmoid / ReLU units and inputs of order one, ℓ is
    set by the pre-activations: a parameter step of norm O(1) changes them by
    O(1). It does *not* grow with the weights — larger weights saturate the
    units and make the landscape more curved — so we take ℓ = 1:

        h_x = ε_mach^{1/(m+1)} / ‖g_x‖₂        (‖h_x g_x‖ ≈ 6e-6 for m = 2).

    A step proportional to rms(θ) (tried first) was ~30× too large at the
    default initialisation and got worse as the weights grew. Measured against
    exact complex-step brackets for MLPs 64-32-10, 64-256-10, 6-5-4-3 and
    64-32-32-10 (tanh and ReLU; at init, init × 3, × 5 and at θ = 0; digits and
    uniform inputs), the worst pair's relative error at this h is 8.2e-9 for
    order 2 (order 4, tanh: below 1e-8). Inputs far from unit scale should be
    standardised, or h given explicitly. An example with g_x = 0 gets h_x = 1
    (its terms H_y g_x vanish exactly).

    Parameters
    ----------
    theta : (P,) array (unused by the rule; kept so other rules can use it)
    G : (B, P) array of per-example gradients at θ
    order : {2, 4}

    Returns
    -------
    (B,) array of h_x.
    """
    g = row_norms(G)
    eta = EPS ** (1.0 / (order + 1))
    return np.where(g > 0, eta / np.where(g > 0, g, 1.0), 1.0)


def row_norms(A: FloatArray) -> FloatArray:
    """Euclidean norms of the rows of ``A`` (last axis), without overflow where the norm is
    finite: ``m ‖A/m‖`` with m the row's largest magnitude (``np.linalg.norm`` squares the
    entries first, and overflows beyond 1e154)."""
    m = np.max(np.abs(A), axis=-1, initial=0.0)
    safe = np.where(m > 0, m, 1.0)
    return m * np.sqrt(np.sum((A / safe[..., None]) ** 2, axis=-1))


def _as_adapter(model: object, backend: str | None = None, client: Any = None) -> Any:
    """For a model adapted from another framework (a TorchModel, a JaxModel: its class names
    the module computing this module's functions for it, ``lie_ops``), that module, with no
    backend or client, which do not apply to it; None for a fastperm model. The framework
    itself is imported only by such a model."""
    ops = getattr(type(model), "lie_ops", None)
    if ops is None:
        return None
    if backend is not None or client is not None:
        raise ValueError(
            f"backend= and client= choose fastperm's compiled kernels; {model.name} runs "  # type: ignore[attr-defined]
            "with its own framework on its own device: leave them out"
        )
    return importlib.import_module(ops)


def _as_model(model: object) -> Model:
    if not isinstance(model, Model):
        raise TypeError(
            f"model must be a fastperm.models model (MLP, LinearRegression, "
            f"MultiLabelLogistic or CustomModel), got {type(model).__name__}"
        )
    return model


def _as_pairs(pairs: object, B: int) -> IntArray:
    arr = _checks.as_array("pairs", pairs)
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] == 0:
        raise ValueError(
            f"pairs must be a non-empty sequence of (a, b) index pairs, got shape {arr.shape}"
        )
    if arr.dtype.kind not in "iu":
        raise TypeError(f"pairs must hold integer indices, got dtype {arr.dtype}")
    bad = np.flatnonzero((arr < 0).any(axis=1) | (arr >= B).any(axis=1))
    if bad.size:
        raise ValueError(
            f"pairs[{bad[0]}] = {tuple(arr[bad[0]])} is out of range for B = {B} examples"
        )
    return np.ascontiguousarray(arr, dtype=np.int64)


def _as_order(order: object) -> int:
    if (
        not (isinstance(order, numbers.Integral) and _checks.is_real_scalar(order))
        or order not in STENCILS
    ):
        raise ValueError(f"order must be 2 or 4, got {order!r}")
    return int(order)  # type: ignore[call-overload]  # an Integral (typeshed: Real has no __int__)


def _as_h(h: object, G: FloatArray, theta: FloatArray, order: int) -> FloatArray:
    """The FD multipliers (B,): the default, or the caller's, checked against the gradients.

    A caller's h must keep ``1/h`` and the step ``h_x ‖g_x‖`` finite (else a ValueError);
    a step wider than 1 (the scale on which :func:`default_step` assumes the Hessian
    changes) or within a thousand roundings of θ gives a RuntimeWarning: the stencil then
    measures a secant, or rounding noise, rather than the Hessian.
    """
    B = G.shape[0]
    if h is None:
        return default_step(theta, G, order)
    if _checks.is_real_scalar(h):
        arr = np.full(B, _checks.as_positive_real("h", h))
    else:
        arr = _checks.as_float_array("h", h, 1)
        if arr.shape[0] != B:
            raise ValueError(
                f"h has {arr.shape[0]} entries; expected a scalar or one per example ({B})"
            )
        if np.any(arr <= 0):
            raise ValueError(f"h must be > 0; h[{int(np.argmax(arr <= 0))}] = {arr.min()}")
    with np.errstate(all="ignore"):
        inv = 1.0 / arr
        step = arr * row_norms(G)
    if not np.all(np.isfinite(inv)):
        raise ValueError(f"h = {arr.min():.3g} is too small: 1/h overflows")
    if not np.all(np.isfinite(step)):
        raise ValueError(f"h = {arr.max():.3g} is too large: the step h·‖g_x‖ overflows")
    moved = step[step > 0]
    floor = 1e3 * EPS * max(1.0, float(np.max(np.abs(theta))))
    if moved.size and (moved.max() > 1.0 or moved.min() < floor):
        warnings.warn(
            f"h moves θ by h·‖g_x‖ in [{moved.min():.3g}, {moved.max():.3g}]: outside "
            f"[{floor:.3g}, 1], the stencil measures a secant (too wide) or rounding "
            "noise (too narrow), not the Hessian; the default h (default_step) moves "
            "θ by about 6e-6",
            RuntimeWarning,
            stacklevel=_runs.outside_stacklevel(),
        )
    return arr


def _kernels(model: Model, backend: str | None) -> ModuleType:
    kern = backends.get(backend)
    if kern.name != "numpy" and model.kernel is None:
        raise ValueError(
            f"{model.name} has no compiled gradient kernel: use backend='numpy' (or give "
            "the model a kernel)"
        )
    return kern


def _probe(kern: ModuleType, model: Model, theta: FloatArray, X: FloatArray, Y: FloatArray) -> None:
    """A user's compiled kernel is probed before a backend that calls it first relies on it."""
    calls = getattr(kern, "CALLS_MODEL_KERNEL", False)
    if calls and isinstance(model, CustomModel) and X.shape[0]:
        model.check_kernel(theta, X[0], Y[0])


def _as_out(out: object, shape: tuple[int, ...]) -> FloatArray:
    if out is None:
        return np.empty(shape)
    if not (
        isinstance(out, np.ndarray)
        and out.dtype == np.float64
        and out.shape == shape
        and out.flags.c_contiguous
        and out.flags.writeable
    ):
        got = f"{type(out).__name__} {getattr(out, 'dtype', '')} {getattr(out, 'shape', '')}"
        raise ValueError(
            f"out must be a writeable C-contiguous float64 array of shape {shape}, got {got}"
        )
    return out


def _run(
    kern: ModuleType,
    model: Model,
    theta: FloatArray,
    X: FloatArray,
    Y: FloatArray,
    G: FloatArray,
    h: FloatArray,
    order: int,
    pairs: IntArray | None,
    out: FloatArray | None = None,
) -> FloatArray:
    c, w = STENCILS[order]
    with np.errstate(all="ignore"):  # NumPy's warnings: the callers check the result instead
        if pairs is None:
            out = _as_out(out, (X.shape[0], X.shape[0], model.P))
            kern.brackets_all(model, theta, X, Y, G, h, c, w, out)
        else:
            out = _as_out(out, (pairs.shape[0], model.P))
            kern.brackets_pairs(model, theta, X, Y, G, h, c, w, pairs, out)
    return out


@overload
def brackets(
    model: Model,
    theta: npt.ArrayLike,
    X: npt.ArrayLike,
    Y: npt.ArrayLike,
    pairs: npt.ArrayLike | None = None,
    h: npt.ArrayLike | None = None,
    order: int = 2,
    backend: str | None = None,
    return_error: Literal[False] = False,
    out: FloatArray | None = None,
    client: Any = None,
    method: str | None = None,
) -> FloatArray: ...


@overload
def brackets(
    model: Model,
    theta: npt.ArrayLike,
    X: npt.ArrayLike,
    Y: npt.ArrayLike,
    pairs: npt.ArrayLike | None = None,
    h: npt.ArrayLike | None = None,
    order: int = 2,
    backend: str | None = None,
    *,
    return_error: Literal[True],
    out: FloatArray | None = None,
    client: Any = None,
    method: str | None = None,
) -> tuple[FloatArray, FloatArray]: ...


@overload
def brackets(
    model: Model,
    theta: npt.ArrayLike,
    X: npt.ArrayLike,
    Y: npt.ArrayLike,
    pairs: npt.ArrayLike | None = None,
    h: npt.ArrayLike | None = None,
    order: int = 2,
    backend: str | None = None,
    return_error: bool = False,
    out: FloatArray | None = None,
    client: Any = None,
    method: str | None = None,
) -> FloatArray | tuple[FloatArray, FloatArray]: ...


def brackets(
    model: Model,
    theta: npt.ArrayLike,
    X: npt.ArrayLike,
    Y: npt.ArrayLike,
    pairs: npt.ArrayLike | None = None,
    h: npt.ArrayLike | None = None,
    order: int = 2,
    backend: str | None = None,
    return_error: bool = False,
    out: FloatArray | None = None,
    client: Any = None,
    method: str | None = None,
) -> FloatArray | tuple[FloatArray, FloatArray]:
    """Lie brackets ``[v_x, v_y] = H_y g_x − H_x g_y`` of training examples.

    Parameters
    ----------
    model : fastperm.models model
    theta : (P,) array
    X : (B, d) array
    Y : (B, K) array, or (B,) when K = 1
    pairs : sequence of (a, b), optional
        Index pairs into X. Default: all pairs.
    h : float or (B,) array, optional
        FD multiplier: ``θ ± h g_x``. Default :func:`default_step`.
    order : {2, 4}
        2: central differences (error O(h²)); 4: Richardson extrapolation /
        five-point stencil (error O(h⁴), twice the work). Order 4 needs a
        smooth model: with ReLU its wider stencil crosses kinks and can be far
        off (a warning says so); order 2 is the default for that reason too.
    backend : str, optional
        ``"numba"`` (default), ``"cython"`` or ``"cuda"`` (built-in models only; the GPU),
        or ``"numpy"`` (reference; needs the model's NumPy gradient); see
        :func:`fastperm.backends.get`.
    return_error : bool
        Also return an estimate of each bracket's FD error, ``‖b_h − b_{2h}‖ / (2^order − 1)``
        (the leading truncation term; doubles the work).
    out : float64 array of the result's shape, optional
        Written in place and returned: reusing one buffer across batches saves
        the first-touch cost of 8·B²·P fresh bytes (about a quarter of the time
        for B = 32 on a small MLP, measured).
    client : dask.distributed.Client, optional
        Spread the pairs over a Dask cluster (:mod:`fastperm.distributed`): blocks of pairs
        as tasks, the model, θ and the examples scattered once, each task on one thread of
        a worker. Every pair's bracket depends only on its two examples, so the result is
        bitwise the one without a client (all pairs are computed as the pairs a < b and
        filled in antisymmetrically, as the compiled all-pairs kernel does).

    method : {"auto", "forward", "reverse", "fd"}, optional
        For a :class:`~fastperm.torch_model.TorchModel` or
        :class:`~fastperm.jax_model.JaxModel` only (default: the model's):
        exact Hessian-vector products by forward-over-reverse or reverse-over-reverse
        ``torch.func`` (``jax``), or finite differences with the step rule above. Such a
        model takes ``theta=None`` for its current parameters, X and Y as tensors or
        arrays of any shape (first axis: the example), and returns arrays in its dtype;
        computed in chunks of pairs (:data:`fastperm.knobs.TORCH_CHUNK_BYTES`), on its
        device; ``backend`` and ``client`` do not apply.

    Returns
    -------
    brackets : (B, B, P) array (antisymmetric, zero diagonal), or (len(pairs), P)
    error : (B, B) or (len(pairs),) array, only with ``return_error``

    Notes
    -----
    Memory: the (B, B, P) float64 output (8·B²·P bytes) is the only object of
    that order; the compiled kernel needs (B, P) gradients and O(P) scratch per
    thread besides. Work: order/2 · 2·B(B − 1) per-example gradient evaluations
    for all pairs.

    Overflow: a result that is not finite raises FloatingPointError on every backend.
    Near float64's limits the backends can differ on whether it overflows: the
    compiled kernels scale each stencil gradient by w_j/h before summing (so
    ‖g_x‖/h_x must stay below ~1e300, i.e. gradients below ~1e150 at the default h),
    while the NumPy reference differences first; and for inputs beyond ~1e150 their
    first-layer shortcut stays finite where the reference's literal θ + c h g_x
    overflows.

    Examples
    --------
    >>> import numpy as np
    >>> from fastperm import lie, models
    >>> model = models.MLP([4, 3, 2])
    >>> theta = model.init(seed=0)
    >>> rng = np.random.default_rng(0)
    >>> X, Y = rng.random((5, 4)), rng.integers(0, 2, (5, 2)).astype(float)
    >>> B = lie.brackets(model, theta, X, Y)
    >>> B.shape  # (B, B, P)
    (5, 5, 23)
    >>> bool(np.allclose(B, -B.transpose(1, 0, 2)))  # antisymmetric
    True
    >>> bool(np.allclose(B, lie.exact_brackets(model, theta, X, Y), rtol=1e-6, atol=1e-12))
    True

    Only some pairs, with the estimated finite-difference error of each:

    >>> b, err = lie.brackets(model, theta, X, Y, pairs=[(0, 1), (2, 4)], return_error=True)
    >>> b.shape, err.shape, bool(np.allclose(b[0], B[0, 1]))
    ((2, 23), (2,), True)
    """
    ops = _as_adapter(model, backend, client)
    if ops is not None:
        listed = _pairs_for(pairs, len(X), all_pairs=None)  # type: ignore[arg-type]
        return ops.brackets(model, theta, X, Y, listed, h, _as_order(order), return_error,
                            out, method)  # fmt: skip
    if method is not None:
        raise ValueError(
            "method= applies to a TorchModel or JaxModel (the compiled kernels use FD; "
            "tensor_rms and bracket_logits take method='exact')"
        )
    model = _as_model(model)
    theta, X, Y = model.check(theta, X, Y)
    pairs = _pairs_for(pairs, X.shape[0], all_pairs=None)
    order = _as_order(order)
    if order == 4 and getattr(model, "activation", None) == "relu":
        warnings.warn(
            "order=4 assumes a smooth model; with ReLU the five-point stencil can "
            "cross kinks and be inaccurate. Use order=2.",
            RuntimeWarning,
            stacklevel=2,
        )
    kern = _kernels(model, backend)
    if client is not None:
        return _spread_brackets(
            client, model, theta, X, Y, pairs, h, order, backend, return_error, out
        )
    out, G, h = _compute(kern, model, theta, X, Y, pairs, h, order, out)
    if not return_error:
        return out
    coarse = _run(kern, model, theta, X, Y, G, 2 * h, order, pairs)
    _checks.finite_result(coarse, "brackets at 2h (the error estimate)", "theta, X, Y or h are")
    err = row_norms(out - coarse) / (2**order - 1)
    return out, err


def _upper_pairs(B: int) -> IntArray:
    """All pairs a < b of B examples, in row-major order."""
    return np.column_stack(np.triu_indices(B, 1)).astype(np.int64)


def _one_thread(fn: Callable[..., _T], backend: str | None, **kwargs: Any) -> _T:
    """``fn(backend=backend, **kwargs)`` with the backend on one thread (a Dask task: the
    worker's threads are the parallelism), the count restored after."""
    kern = backends.get(backend)
    before = kern.threads()
    kern.set_threads(1)
    try:
        return fn(backend=backend, **kwargs)
    finally:
        kern.set_threads(before)


def _spread_brackets(
    client: Any,
    model: Model,
    theta: FloatArray,
    X: FloatArray,
    Y: FloatArray,
    pairs: IntArray | None,
    h: object,
    order: int,
    backend: str | None,
    return_error: bool,
    out: FloatArray | None,
) -> FloatArray | tuple[FloatArray, FloatArray]:
    """:func:`brackets` with ``client``: blocks of pairs as tasks, joined in order."""
    from . import distributed

    client = distributed.check_client(client)
    B = X.shape[0]
    listed = _upper_pairs(B) if pairs is None else pairs
    shape = (B, B, model.P) if pairs is None else (listed.shape[0], model.P)
    out = _as_out(out, shape)  # checked before the cluster works
    blocks = distributed.task_slices(
        np.ones(listed.shape[0]), distributed.tasks_for(client, listed.shape[0])
    )
    task = functools.partial(
        _one_thread, brackets, backend, h=h, order=order, return_error=return_error
    )
    parts = distributed.map_tasks(
        client,
        task,
        {"model": model, "theta": theta, "X": X, "Y": Y},
        [{"pairs": listed[s]} for s in blocks],
    )
    if return_error:
        b, err = (np.concatenate(column) for column in zip(*parts, strict=True))
    else:
        b, err = np.concatenate(parts), np.empty(0)
    if pairs is not None:
        out[...] = b
        return (out, err) if return_error else out
    a, c = listed[:, 0], listed[:, 1]
    out[a, c], out[c, a] = b, -b
    out[np.arange(B), np.arange(B)] = 0.0
    if not return_error:
        return out
    full_err = np.zeros((B, B))
    full_err[a, c] = full_err[c, a] = err
    return out, full_err


def _pairs_for(pairs: object, B: int, all_pairs: _T) -> IntArray | _T:
    """Validated pairs; when none are given, ``all_pairs`` (None: the full (B, B) form)."""
    if pairs is None:
        if B < 2:
            raise ValueError(f"X must hold at least 2 examples to form pairs, got B = {B}")
        return all_pairs
    return _as_pairs(pairs, B)


def _compute(
    kern: ModuleType,
    model: Model,
    theta: FloatArray,
    X: FloatArray,
    Y: FloatArray,
    pairs: IntArray | None,
    h: object,
    order: int,
    out: FloatArray | None = None,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Brackets of validated inputs; returns (brackets, per-example gradients G, h)."""
    G, h = _gradients(kern, model, theta, X, Y, h, order)
    out = _run(kern, model, theta, X, Y, G, h, order, pairs, out)
    _checks.finite_result(out, "brackets", "theta, X, Y or h are")
    return out, G, h


def _gradients(
    kern: ModuleType,
    model: Model,
    theta: FloatArray,
    X: FloatArray,
    Y: FloatArray,
    h: object,
    order: int,
    step: bool = True,
    G: FloatArray | None = None,
) -> tuple[FloatArray, FloatArray]:
    """The per-example gradients G at θ (checked finite; into ``G`` when given) and the FD
    multipliers h (when ``step``; else an unused placeholder, for the exact products)."""
    _probe(kern, model, theta, X, Y)
    if G is None:
        G = np.empty((X.shape[0], model.P))
    with np.errstate(all="ignore"):  # checked right below, the same way on every backend
        kern.example_grads(model, theta, X, Y, G)
    if not np.all(np.isfinite(G)):
        raise FloatingPointError("the per-example gradients at theta are not finite")
    return G, _as_h(h, G, theta, order) if step else np.ones(X.shape[0])


def exact_brackets(
    model: Model, theta: npt.ArrayLike, X: npt.ArrayLike, Y: npt.ArrayLike
) -> FloatArray:
    """All-pairs brackets with exact Hessian-vector products, by the complex step.

    ``H_y g_x = Im g_y(θ + i t g_x) / t`` with t = 1e-30 has no truncation error and
    no cancellation, so it is exact to rounding — for the built-in models, whose NumPy
    backpropagation is complex-analytic. Slow (NumPy, materialises (B, B, P) complex
    values); meant for checking the FD brackets' accuracy on your own data.

    Returns
    -------
    (B, B, P) array
    """
    model = _as_model(model)
    if not isinstance(model, MLP):
        raise TypeError(
            "exact_brackets needs a built-in model (MLP, LinearRegression, "
            "MultiLabelLogistic): a CustomModel's gradient may not take complex θ"
        )
    theta, X, Y = model.check(theta, X, Y)
    if X.shape[0] < 2:
        raise ValueError(f"X must hold at least 2 examples to form pairs, got B = {X.shape[0]}")
    G = model.grad(theta, X, Y)
    t = 1e-30
    D = model.grad(theta + 1j * t * G, X, Y).imag / t  # D[x, y] = H_y g_x
    return D - D.transpose(1, 0, 2)


def swap_difference(
    model: Model,
    theta: npt.ArrayLike,
    a: tuple[npt.ArrayLike, npt.ArrayLike],
    b: tuple[npt.ArrayLike, npt.ArrayLike],
    lr: float,
) -> FloatArray:
    """``θ_ab − θ_ba``: one SGD step on a then b, minus b then a (literal steps).

    Computed as ``lr (g_b(θ) − g_b(θ_a)) − lr (g_a(θ) − g_a(θ_b))`` with
    ``θ_a = θ − lr g_a(θ)``, algebraically equal to the difference of the two
    end points but without subtracting two nearly equal parameter vectors.
    ``swap_difference / lr² → brackets(...)[a, b]`` as lr → 0, at rate O(lr).

    Parameters
    ----------
    model : fastperm.models model (needs its NumPy gradient)
    theta : (P,) array
    a, b : (x, y) pairs of one example each
    lr : float > 0

    Returns
    -------
    (P,) array
    """
    lr = _checks.as_positive_real("lr", lr)
    ops = _as_adapter(model)
    if ops is not None:
        return ops.swap_difference(model, theta, a, b, lr)
    model = _as_model(model)
    xa, ya = a
    xb, yb = b
    theta, Xa, Ya = model.check(theta, xa, ya)
    _, Xb, Yb = model.check(theta, xb, yb)
    if Xa.shape[0] != 1 or Xb.shape[0] != 1:
        raise ValueError("a and b must each be one example (x, y)")
    ga = model.grad(theta, Xa, Ya)[0]
    gb = model.grad(theta, Xb, Yb)[0]
    ta = theta - lr * ga
    tb = theta - lr * gb
    return lr * (gb - model.grad(ta, Xb, Yb)[0]) - lr * (ga - model.grad(tb, Xa, Ya)[0])


def logit_perturbation(
    model: Model, theta: npt.ArrayLike, bracket: npt.ArrayLike, X_batch: npt.ArrayLike
) -> FloatArray:
    """Change of every logit of a batch along a bracket: ``J_f(θ) · [v_a, v_b]``.

    The directional derivative of the logits, computed exactly by the complex
    step ``Im f(θ + i t b) / t`` (t = 1e-30) for the built-in models, whose NumPy
    forward pass is complex-analytic; by central differences (parameter step of
    norm ε^{1/3}) for a :class:`~fastperm.models.CustomModel`, whose ``logits``
    may not take complex θ. Multiplied by ε², it is the change of each logit
    caused by swapping the order of the two examples.

    Parameters
    ----------
    model : fastperm.models model
    theta : (P,) array
    bracket : (P,) or (npairs, P) array
    X_batch : (batch, d) array

    Returns
    -------
    (batch, K), or (npairs, batch, K)
    """
    v = _checks.as_float_array("bracket", bracket, (1, 2))
    single = v.ndim == 1
    V = v[None] if single else v
    ops = _as_adapter(model)
    if ops is not None:
        if V.shape[1] != model.P:
            raise ValueError(
                f"bracket has {V.shape[1]} entries per pair but the model has P = {model.P}"
            )
        out = ops.logit_perturbation(model, theta, V, X_batch)
        return out[0] if single else out
    model = _as_model(model)
    theta, X = model.check(theta, X_batch)
    if V.shape[1] != model.P:
        raise ValueError(
            f"bracket has {V.shape[1]} entries per pair but the model has P = {model.P}"
        )
    if isinstance(model, MLP):  # complex-analytic forward pass: exact complex step
        t = 1e-30
        out = model.logits(theta + 1j * t * V, X).imag / t
    else:  # a custom model's logits may not take complex θ: central differences
        norm = np.sqrt(np.sum(V * V, axis=1))
        s = EPS ** (1 / 3) / np.where(norm > 0, norm, 1.0)
        out = np.stack(
            [
                (model.logits(theta + s[q] * V[q], X) - model.logits(theta - s[q] * V[q], X))
                / (2 * s[q])
                for q in range(V.shape[0])
            ]
        )
    return out[0] if single else out


def bracket_logits(
    model: Model,
    theta: npt.ArrayLike,
    X: npt.ArrayLike,
    Y: npt.ArrayLike,
    X_batch: npt.ArrayLike,
    pairs: npt.ArrayLike | None = None,
    h: npt.ArrayLike | None = None,
    order: int = 2,
    backend: str | None = None,
    fused: bool = True,
    method: str | None = None,
) -> FloatArray:
    """How a batch's logits move along each pair's bracket: ``J_f(θ; z) · [v_a, v_b]``.

    :func:`logit_perturbation` of :func:`brackets`, for many pairs at once, without the
    (npairs, P) brackets: for the built-in models the compiled kernels form each bracket in
    factored form and push it through a forward-mode pass of the network (``bracket_logits``
    of the backends; the first layer's part in O(H₁) per input, as
    ``δ_ab (x_b·z + 1) − δ_ba (x_a·z + 1)``). Multiplied by ε², it is the change of each
    logit of z caused by swapping the order of the SGD steps on a and b (the article's
    logit-perturbation analysis).

    Parameters
    ----------
    model : fastperm.models model, or a :class:`~fastperm.torch_model.TorchModel`
    theta : (P,) array (None: a TorchModel's current parameters)
    X, Y : the examples whose pairs are bracketed
    X_batch : (batch, d) array
        The inputs whose logits are perturbed.
    pairs : sequence of (a, b), optional
        Default: all a < b, in row-major order (``np.triu_indices(B, 1)``).
    h, order, backend : as in :func:`brackets`
    method : as in :func:`tensor_rms`
        ``"exact"`` for a fastperm model: exact Hessian-vector products (no step).
    fused : bool
        False computes the (npairs, P) brackets first and calls :func:`logit_perturbation`
        (the complex step): the same numbers to the FD rounding, kept as a check. A
        CustomModel always takes that path.

    Returns
    -------
    (npairs, batch, K) array (float64; a TorchModel's in its module's dtype)
    """
    order = _as_order(order)
    ops = _as_adapter(model, backend)
    if ops is not None:
        listed = _pairs_for(pairs, len(X), _upper_pairs(len(X)))  # type: ignore[arg-type]
        return ops.bracket_logits(model, theta, X, Y, X_batch, listed, h, order, method)
    model = _as_model(model)
    theta, X, Y = model.check(theta, X, Y)
    Z = np.atleast_2d(_checks.as_float_array("X_batch", X_batch, (1, 2)))
    if Z.shape[1] != model.d:
        raise ValueError(f"X_batch has {Z.shape[1]} features but {model.name} takes d = {model.d}")
    listed = _pairs_for(pairs, X.shape[0], _upper_pairs(X.shape[0]))
    kern = _kernels(model, backend)
    c, w = _stencil(order, method, h, model, kern)
    reducing = _reducing_kernels(kern, model, c, fused)
    if reducing is None:
        b, _, _ = _compute(kern, model, theta, X, Y, listed, h, order)
        return logit_perturbation(model, theta, b, Z)
    G, hs = _gradients(reducing, model, theta, X, Y, h, order, step=c.shape[0] > 0)
    out = np.empty((listed.shape[0], Z.shape[0], model.K))
    with np.errstate(all="ignore"):
        reducing.bracket_logits(model, theta, X, Y, G, hs, c, w, listed, Z, out)
    _checks.finite_result(out, "logit perturbations", "theta, X, Y, X_batch or h are")
    return out


@dataclass
class TensorRMS:
    """Per named tensor: RMS of brackets and of gradients, and their log-log relation.

    Attributes
    ----------
    rms_bracket, rms_grad : dict name → (checkpoints, pairs) array
        ``rms(b[T])`` and ``rms([g_a[T], g_b[T]])`` (the two examples' gradient
        entries of tensor T together) for each pair and checkpoint.
    slope, intercept, corr : dict name → float
        Least-squares fit ``log10 rms_bracket = slope · log10 rms_grad + intercept``
        over all pairs and checkpoints, and the Pearson correlation of the logs.
    pairs : (npairs, 2) int array
    """

    rms_bracket: dict[str, FloatArray]
    rms_grad: dict[str, FloatArray]
    slope: dict[str, float]
    intercept: dict[str, float]
    corr: dict[str, float]
    pairs: IntArray

    def summary(self) -> str:
        lines = [
            f"{'tensor':<8}{'slope':>8}{'corr':>8}{'median rms bracket':>20}{'median rms grad':>18}"
        ]
        for k in self.slope:
            lines.append(
                f"{k:<8}{self.slope[k]:>8.3f}{self.corr[k]:>8.3f}"
                f"{np.median(self.rms_bracket[k]):>20.3e}{np.median(self.rms_grad[k]):>18.3e}"
            )
        return "\n".join(lines)


def tensor_rms(
    model: Model,
    checkpoints: npt.ArrayLike,
    X: npt.ArrayLike,
    Y: npt.ArrayLike,
    pairs: npt.ArrayLike | None = None,
    h: npt.ArrayLike | None = None,
    order: int = 2,
    backend: str | None = None,
    client: Any = None,
    progress: bool | str = False,
    fused: bool = True,
    method: str | None = None,
) -> TensorRMS:
    """RMS of brackets vs RMS of gradients per named tensor, over pairs and checkpoints.

    Parameters
    ----------
    model : fastperm.models model
    checkpoints : sequence of (P,) arrays (or one (P,) array)
        For a :class:`~fastperm.torch_model.TorchModel`, None is the module's current θ.
    X, Y : the examples whose pairs are bracketed
    pairs : sequence of (a, b), optional (default: all a < b)
    h, order, backend : as in :func:`brackets`
    client : dask.distributed.Client, optional
        Spread the work over a Dask cluster: checkpoints × blocks of pairs as tasks (the
        model and examples scattered once). Bitwise the result without a client.
    progress : bool or str
        A progress bar over the checkpoints (over the tasks with a ``client``).
    fused : bool
        For the built-in models, sum each bracket's squares inside the compiled kernel,
        never writing a bracket out (``bracket_norms``: O(P) scratch per thread, (S + 2)·P
        floats, instead of 8·npairs·P bytes; 2–4× faster, see the README's table). False
        computes the (npairs, P) brackets first and reduces them in NumPy (with
        ``method="exact"``: the NumPy reference's complex-step brackets): the same numbers
        to rounding, kept as a check. A CustomModel always takes that path.
    method : {"fd", "exact"} for a fastperm model; a TorchModel's as in :func:`brackets`
        (which takes "exact" as its "auto": its products are exact)
        ``"fd"`` (default): the finite differences of :func:`brackets` (h, order).
        ``"exact"``: the Hessian-vector products by forward-mode differentiation of the
        backpropagation (``fastperm.backends.numba_cpu.mlp.mlp_hvp``): no step, no
        truncation error, and about twice as fast (the built-in models on numba, cython
        and numpy; not on cuda).

    Returns
    -------
    TensorRMS
    """
    order = _as_order(order)
    ops = _as_adapter(model, backend, client)
    block: Callable[[FloatArray], dict[str, tuple[FloatArray, FloatArray]]]
    if ops is not None:
        adapted: Any = model
        thetas = np.atleast_2d(
            adapted.theta() if checkpoints is None else np.asarray(checkpoints, np.float64)
        )
        B = len(X)  # type: ignore[arg-type]
        listed = _pairs_for(pairs, B, _upper_pairs(B))
        tensors = adapted.tensors

        def block(theta: FloatArray) -> dict[str, tuple[FloatArray, FloatArray]]:
            return ops.rms_block(adapted, theta, X, Y, listed, h, order, method)

    else:
        builtin = _as_model(model)
        thetas = np.atleast_2d(_checks.as_float_array("checkpoints", checkpoints, (1, 2)))
        _, Xc, Yc = builtin.check(thetas[0], X, Y)
        thetas = np.stack([builtin.check(theta, Xc)[0] for theta in thetas])
        listed = _pairs_for(pairs, Xc.shape[0], _upper_pairs(Xc.shape[0]))
        tensors = builtin.tensors
        kern = _kernels(builtin, backend)  # the settings checked before any work
        _reducing_kernels(kern, builtin, _stencil(order, method, h, builtin, kern)[0], fused)
        G = np.empty((Xc.shape[0], builtin.P))

        def block(theta: FloatArray) -> dict[str, tuple[FloatArray, FloatArray]]:
            return _rms_block(builtin, theta, Xc, Yc, listed, h, order, backend, fused, method, G)

    C = thetas.shape[0]
    rb = {k: np.empty((C, listed.shape[0])) for k in tensors}
    rg = {k: np.empty((C, listed.shape[0])) for k in tensors}
    if client is None:
        bar = _runs.progress_bar(progress, C, unit="checkpoint") if progress else None
        for c in range(C):
            for k, (b, g) in block(thetas[c]).items():
                rb[k][c], rg[k][c] = b, g
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
    else:
        _spread_rms(
            client,
            builtin,
            thetas,
            Xc,
            Yc,
            listed,
            h,
            order,
            backend,
            fused,
            method,
            progress,
            rb,
            rg,
        )
    slope: dict[str, float] = {}
    intercept: dict[str, float] = {}
    corr: dict[str, float] = {}
    for k in tensors:
        ok = (rb[k] > 0) & (rg[k] > 0)
        lx, ly = np.log10(rg[k][ok]), np.log10(rb[k][ok])
        if lx.size >= 2 and np.ptp(lx) > 0:
            slope[k], intercept[k] = np.polyfit(lx, ly, 1)
            corr[k] = float(np.corrcoef(lx, ly)[0, 1])
        else:
            slope[k] = intercept[k] = corr[k] = math.nan
    return TensorRMS(rb, rg, slope, intercept, corr, listed)


def _rms_block(
    model: Model,
    theta: FloatArray,
    X: FloatArray,
    Y: FloatArray,
    pairs: IntArray,
    h: object,
    order: int,
    backend: str | None,
    fused: bool = True,
    method: str | None = None,
    G: FloatArray | None = None,
) -> dict[str, tuple[FloatArray, FloatArray]]:
    """Per tensor: (RMS of each pair's bracket, RMS of its two gradients) at one θ; the
    brackets' squares summed in the kernel (``fused``, built-in models) or from the full
    (npairs, P) array. ``G``: a (B, P) buffer for the gradients, reused across checkpoints
    (a fresh one each time costs page faults: 230 µs instead of 50 for the digits MLP)."""
    kern = _kernels(model, backend)
    tensors = list(model.tensors.values())
    c, w = _stencil(order, method, h, model, kern)
    reducing = _reducing_kernels(kern, model, c, fused)
    if reducing is not None:
        G, hs = _gradients(reducing, model, theta, X, Y, h, order, c.shape[0] > 0, G)
        squares = np.empty((pairs.shape[0], len(tensors)))
        with np.errstate(all="ignore"):
            reducing.bracket_norms(model, theta, X, Y, G, hs, c, w, pairs, _bounds(model), squares)
    else:
        b, G, _ = _compute(kern, model, theta, X, Y, pairs, h, order)
        with np.errstate(over="ignore"):
            squares = np.stack([np.sum(b[:, sl] ** 2, axis=1) for sl, _ in tensors], axis=1)
    _checks.finite_result(squares, "brackets' squared norms", "theta, X, Y or h are")
    rms = {}
    for t, (k, (sl, _)) in enumerate(model.tensors.items()):
        size = sl.stop - sl.start
        g2 = np.einsum("bp,bp->b", G[:, sl], G[:, sl]) / size  # no (B, size) temporary
        rms[k] = (
            np.sqrt(squares[:, t] / size),
            np.sqrt(0.5 * (g2[pairs[:, 0]] + g2[pairs[:, 1]])),
        )
    return rms


def _bounds(model: Model) -> IntArray:
    """The boundaries of a built-in model's tensors in θ (contiguous, in order: W₁ first)."""
    bounds = [sl.start for sl, _ in model.tensors.values()] + [model.P]
    assert bounds[0] == 0 and all(
        sl.stop == nxt for (sl, _), nxt in zip(model.tensors.values(), bounds[1:], strict=True)
    ), "a built-in model's tensors tile θ in order"
    return np.asarray(bounds, dtype=np.int64)


def _spread_rms(
    client: Any,
    model: Model,
    thetas: FloatArray,
    X: FloatArray,
    Y: FloatArray,
    pairs: IntArray,
    h: object,
    order: int,
    backend: str | None,
    fused: bool,
    method: str | None,
    progress: bool | str,
    rb: dict[str, FloatArray],
    rg: dict[str, FloatArray],
) -> None:
    """:func:`tensor_rms` with ``client``: tasks of (checkpoint, block of pairs), about
    :data:`fastperm.knobs.DASK_TASKS_PER_THREAD` per worker thread, written into rb, rg."""
    from . import distributed

    client = distributed.check_client(client)
    C, npairs = thetas.shape[0], pairs.shape[0]
    per_checkpoint = -(-distributed.tasks_for(client, C * npairs) // C)
    blocks = distributed.task_slices(np.ones(npairs), per_checkpoint)
    where = [(c, s) for c in range(C) for s in blocks]
    task = functools.partial(
        _one_thread, _rms_block, backend, h=h, order=order, fused=fused, method=method
    )
    parts = distributed.map_tasks(
        client,
        task,
        {"model": model, "X": X, "Y": Y},
        [{"theta": thetas[c], "pairs": pairs[s]} for c, s in where],
        progress,
    )
    for (c, s), rms in zip(where, parts, strict=True):
        for k, (b, g) in rms.items():
            rb[k][c, s], rg[k][c, s] = b, g
