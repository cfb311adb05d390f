"""Models with per-example gradients on a flat float64 parameter vector.

Every model has ``P`` parameters in one vector θ, laid out as named tensors
(``model.tensors``: name → (slice, shape), row-major), and offers

* ``init(seed)`` → θ;
* ``loss(θ, X, Y)`` → (B,) per-example losses;
* ``grad(θ, X, Y)`` → (B, P) per-example gradients (NumPy; θ may also be a
  stack (S, P) of parameter points → (S, B, P), and complex, which the tests
  use for exact complex-step derivatives);
* ``logits(θ, X)`` → (B, K);
* ``kernel``: the compiled per-example gradient the bracket kernels call, with
  the signature ``grad(theta, x, y, layout, work, out, alpha, beta)`` (below).

Built in: :class:`MLP` (any depth), and its one-layer cases
:class:`LinearRegression` and :class:`MultiLabelLogistic`, all sharing one
compiled kernel, ``mlp_grad`` of ``fastperm.backends.numba_cpu.mlp`` (with the
other Numba MLP kernels; this module holds the descriptions and the NumPy maths
only, and imports without numba). ``fastperm.models.mlp_grad``,
``mlp_directional`` and ``mlp_aux`` still name those kernels: they are imported from
there on first access (which imports numba), e.g. ``CustomModel(models.mlp_grad, ...)``.

Bringing your own model
-----------------------
Write a Numba function ``grad(theta, x, y, layout, work, out, alpha, beta)`` that
sets ``out ← alpha · ∇_θ L(x, y; θ) + beta · out`` (P,) for one example — when
``beta == 0`` it must not read ``out`` — using only ``work`` (float64 scratch of
``work_size`` entries) and the int64 array ``layout`` (any integers your model
needs), and wrap it. (The BLAS-style update lets the bracket kernel accumulate
finite-difference stencils in one pass over memory.) ::

    @numba.njit
    def my_grad(theta, x, y, layout, work, out, alpha, beta):
        r = theta @ x - y[0]               # least squares, no bias
        for p in range(theta.shape[0]):
            g = alpha * r * x[p]
            out[p] = g if beta == 0.0 else g + beta * out[p]

    model = fastperm.models.CustomModel(my_grad, P=..., d=..., K=..., work_size=...,
                                        tensors={"w": (slice(0, P), (P,))},
                                        loss=..., logits=..., numpy_grad=...)

``fastperm.lie.brackets(model, ...)`` then runs the fused bracket kernel on it. The
drivers that take your function are compiled once per process (about 2 s here),
not cached on disk: Numba's cache cannot hold signatures that contain another
jitted function. The built-in models' kernels are cached.
The NumPy callables are optional: ``numpy_grad`` (θ, X, Y) → (B, P) enables the
reference backend (it must broadcast over a stack of parameter points: θ of
shape (..., P) → (..., B, P)), ``logits`` enables
:func:`fastperm.lie.logit_perturbation`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import numpy as np
import numpy.typing as npt

from . import _checks
from ._typing import FloatArray, InexactArray, IntArray

ACTIVATIONS = {"tanh": 0, "relu": 1}
LOSSES = {"bce": 0, "mse": 1}

Activation = Literal["tanh", "relu"]
LossName = Literal["bce", "mse"]
# a per-example gradient kernel ``grad(theta, x, y, layout, work, out, alpha, beta)``
KernelFn = Callable[..., None]
# a user's NumPy function of ``(θ, X, Y)`` or ``(θ, X)`` (CustomModel), returning an array
NumpyFn = Callable[..., npt.NDArray[Any]]
# the named tensors of θ: name → (slice of θ, shape)
Tensors = dict[str, tuple[slice, tuple[int, ...]]]
# real θ, as the models' NumPy maths take it (a complex array is the complex-step case)
RealArrayLike = npt.NDArray[np.floating[Any] | np.integer[Any]] | Sequence[float] | float
ComplexArray = npt.NDArray[np.complexfloating[Any, Any]]

_S = TypeVar("_S", bound=np.generic)
_F = TypeVar("_F", bound=Callable[..., Any])

_NO_Y = object()  # "no Y argument" (an explicit None is refused)


class Model:
    """Base class: the attributes and checks every model shares."""

    name = "model"
    d: int
    K: int
    P: int
    tensors: Tensors
    #: int64 integers the compiled gradient reads its structure from (an MLP: layer sizes
    #: and offsets); passed to ``grad(theta, x, y, layout, work, out, alpha, beta)``
    layout: IntArray
    work_size: int
    kernel: KernelFn | None = None
    #: built-in models whose compiled kernels the cached bracket drivers call directly
    builtin = False
    directional_work = 0
    stencil_start = 0

    if TYPE_CHECKING:  # the model's unchecked NumPy maths (the subclasses define them)

        def _grad(self, theta: InexactArray, X: FloatArray, Y: FloatArray) -> InexactArray: ...

        def _loss(self, theta: InexactArray, X: FloatArray, Y: FloatArray) -> InexactArray: ...

        def _logits(self, theta: InexactArray, X: FloatArray) -> InexactArray: ...

    @property
    def shape(self) -> IntArray:
        """Deprecated name of :attr:`layout` (it is not an array shape)."""
        warnings.warn(
            "Model.shape is deprecated: use Model.layout", DeprecationWarning, stacklevel=2
        )
        return self.layout

    def bracket_aux(
        self, theta: FloatArray, X: FloatArray, Y: FloatArray, G: FloatArray
    ) -> FloatArray:
        """Per-example data the model's stencil kernel needs (B, m); none by default."""
        return np.zeros((X.shape[0], 0))

    @overload
    def check(self, theta: npt.ArrayLike, X: npt.ArrayLike) -> tuple[FloatArray, FloatArray]: ...

    @overload
    def check(
        self, theta: npt.ArrayLike, X: npt.ArrayLike, Y: npt.ArrayLike
    ) -> tuple[FloatArray, FloatArray, FloatArray]: ...

    def check(
        self, theta: npt.ArrayLike, X: npt.ArrayLike, Y: object = _NO_Y
    ) -> tuple[FloatArray, ...]:
        """Validate and coerce ``θ (P,)``, ``X (B, d)``, ``Y (B, K)`` (or ``(B,)`` when K = 1);
        without Y, ``(θ, X)``."""
        theta = _checks.as_float_array("theta", theta, 1)
        if theta.shape[0] != self.P:
            raise ValueError(f"theta has {theta.shape[0]} entries but {self.name} has P = {self.P}")
        return (theta, *self._check_data(X, Y))

    def _check_data(self, X: npt.ArrayLike, Y: object = _NO_Y) -> tuple[FloatArray, ...]:
        """``(X (B, d),)`` or ``(X, Y (B, K))``, validated and coerced."""
        X = _checks.as_float_array("X", X, (1, 2))
        if X.ndim == 1:
            X = X[None, :]
        if X.shape[1] != self.d:
            raise ValueError(f"X has {X.shape[1]} features but {self.name} takes d = {self.d}")
        if Y is _NO_Y:
            return (X,)
        if Y is None:
            raise TypeError("Y must be an array of targets (one row of K per example), got None")
        Y = _checks.as_float_array("Y", np.atleast_1d(_checks.as_array("Y", Y)), (1, 2))
        if Y.ndim == 1:  # K = 1: one target per example; else one example's K targets
            Y = Y[:, None] if self.K == 1 else Y[None, :]
        if Y.shape[1] != self.K:
            raise ValueError(
                f"Y has {Y.shape[1]} targets per example but {self.name} has K = {self.K} outputs"
            )
        if Y.shape[0] != X.shape[0]:
            raise ValueError(
                f"X has {X.shape[0]} examples (rows) but Y has {Y.shape[0]}: "
                "one row of targets per example"
            )
        return X, Y

    @overload
    def _check_eval(
        self, theta: npt.ArrayLike, X: npt.ArrayLike
    ) -> tuple[InexactArray, FloatArray]: ...

    @overload
    def _check_eval(
        self, theta: npt.ArrayLike, X: npt.ArrayLike, Y: npt.ArrayLike
    ) -> tuple[InexactArray, FloatArray, FloatArray]: ...

    def _check_eval(
        self, theta: npt.ArrayLike, X: npt.ArrayLike, Y: object = _NO_Y
    ) -> tuple[InexactArray, ...]:
        """Arguments of :meth:`grad`, :meth:`loss`, :meth:`logits`: as :meth:`check`, but θ may
        be a stack ``(..., P)`` and complex (for complex-step derivatives)."""
        theta = _checks.as_array("theta", theta)
        if theta.dtype.kind not in "fiuc":
            raise TypeError(f"theta must hold real or complex numbers, got dtype {theta.dtype}")
        if theta.ndim == 0 or theta.shape[-1] != self.P:
            raise ValueError(
                f"theta has shape {theta.shape}; {self.name} takes (P,) or a "
                f"stack (..., P) with P = {self.P}"
            )
        if not np.all(np.isfinite(theta)):
            raise ValueError("theta has non-finite value(s) (NaN or inf)")
        if theta.dtype.kind in "iu":
            theta = theta.astype(np.float64)
        return (theta, *self._check_data(X, Y))

    # -- the public NumPy maths: checked arguments, then the model's unchecked maths
    # (``_grad``, ``_loss``, ``_logits``, which the reference backend calls directly)
    # (complex θ gives complex128 results, X being float64: the complex step; real θ float64)
    @overload
    def grad(
        self, theta: ComplexArray, X: npt.ArrayLike, Y: npt.ArrayLike
    ) -> npt.NDArray[np.complex128]: ...

    @overload
    def grad(self, theta: RealArrayLike, X: npt.ArrayLike, Y: npt.ArrayLike) -> FloatArray: ...

    @overload
    def grad(self, theta: npt.ArrayLike, X: npt.ArrayLike, Y: npt.ArrayLike) -> InexactArray: ...

    def grad(self, theta: npt.ArrayLike, X: npt.ArrayLike, Y: npt.ArrayLike) -> InexactArray:
        """Per-example gradients (B, P) (θ may be a stack (S, P): → (S, B, P))."""
        return self._grad(*self._check_eval(theta, X, Y))

    @overload
    def loss(
        self, theta: ComplexArray, X: npt.ArrayLike, Y: npt.ArrayLike
    ) -> npt.NDArray[np.complex128]: ...

    @overload
    def loss(self, theta: RealArrayLike, X: npt.ArrayLike, Y: npt.ArrayLike) -> FloatArray: ...

    @overload
    def loss(self, theta: npt.ArrayLike, X: npt.ArrayLike, Y: npt.ArrayLike) -> InexactArray: ...

    def loss(self, theta: npt.ArrayLike, X: npt.ArrayLike, Y: npt.ArrayLike) -> InexactArray:
        """Per-example loss (B,)."""
        return self._loss(*self._check_eval(theta, X, Y))

    @overload
    def logits(self, theta: ComplexArray, X: npt.ArrayLike) -> npt.NDArray[np.complex128]: ...

    @overload
    def logits(self, theta: RealArrayLike, X: npt.ArrayLike) -> FloatArray: ...

    @overload
    def logits(self, theta: npt.ArrayLike, X: npt.ArrayLike) -> InexactArray: ...

    def logits(self, theta: npt.ArrayLike, X: npt.ArrayLike) -> InexactArray:
        """Logits (B, K) (or (..., B, K) for a stack of θ)."""
        return self._logits(*self._check_eval(theta, X))

    def unflatten(self, theta: npt.NDArray[_S]) -> dict[str, npt.NDArray[_S]]:
        """The named tensors of θ, as views with their shapes."""
        return {
            k: theta[..., sl].reshape(theta.shape[:-1] + shape)
            for k, (sl, shape) in self.tensors.items()
        }

    def __repr__(self) -> str:
        return f"{self.name}(P={self.P})"


class MLP(Model):
    """Fully connected network ``sizes = [d, H1, ..., K]`` with linear logits.

    Layer l computes ``z_l = W_l a_{l-1} + b_l``; hidden layers apply the
    activation (tanh or relu), the last is the logits. Layout of θ, row-major:
    ``[W1 (H1×d), b1, W2 (H2×H1), b2, ..., WL (K×H), bL]`` (no b's when
    ``bias=False``). Per-example loss:

    * ``"bce"``: K independent sigmoids, mean over labels of the binary cross
      entropy ``max(z, 0) − z y + log(1 + exp(−|z|))`` (stable for any z);
    * ``"mse"``: ``mean_k ½ (z_k − y_k)²``.

    Parameters
    ----------
    sizes : list of int, at least two entries >= 1
    activation : {"tanh", "relu"}
    loss : {"bce", "mse"}
    bias : bool

    Examples
    --------
    >>> import numpy as np
    >>> from fastperm.models import MLP
    >>> model = MLP([4, 3, 2])
    >>> model
    MLP([4, 3, 2], activation='tanh', loss='bce', P=23)
    >>> {name: shape for name, (_, shape) in model.tensors.items()}
    {'W1': (3, 4), 'b1': (3,), 'W2': (2, 3), 'b2': (2,)}
    >>> theta = model.init(seed=0)
    >>> X, Y = np.ones((5, 4)), np.zeros((5, 2))
    >>> model.grad(theta, X, Y).shape, model.loss(theta, X, Y).shape, model.logits(theta, X).shape
    ((5, 23), (5,), (5, 2))
    >>> round(float(model.loss(np.zeros(model.P), X, Y)[0]), 6)  # logits 0: log 2
    0.693147
    """

    name = "MLP"

    def __init__(
        self,
        sizes: Sequence[int],
        activation: Activation = "tanh",
        loss: LossName = "bce",
        bias: bool = True,
    ) -> None:
        if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__len__") or len(sizes) < 2:
            raise ValueError(f"sizes must list at least the input and output sizes, got {sizes!r}")
        self.sizes = [_checks.as_int(f"sizes[{i}]", s, minimum=1) for i, s in enumerate(sizes)]
        self.activation = _checks.as_choice("activation", activation, tuple(ACTIVATIONS))
        self.loss_name = _checks.as_choice("loss", loss, tuple(LOSSES))
        self.bias = bool(bias)
        self.d, self.K = self.sizes[0], self.sizes[-1]
        L = len(self.sizes) - 1
        self.tensors = {}
        pw, pb, p = [], [], 0
        for layer in range(L):
            nin, nout = self.sizes[layer], self.sizes[layer + 1]
            pw.append(p)
            self.tensors[f"W{layer + 1}"] = (slice(p, p + nout * nin), (nout, nin))
            p += nout * nin
            pb.append(p)
            if self.bias:
                self.tensors[f"b{layer + 1}"] = (slice(p, p + nout), (nout,))
                p += nout
        self.P = p
        ao = np.concatenate([[0], np.cumsum(self.sizes[1:])])[:-1]
        # layout: [L, activation, loss, bias, sizes (L+1), W offsets (L), b offsets (L),
        # act offsets (L)]
        self.layout = np.array(
            [
                L,
                ACTIVATIONS[self.activation],
                LOSSES[self.loss_name],
                int(self.bias),
                *self.sizes,
                *pw,
                *pb,
                *ao,
            ],
            dtype=np.int64,
        )
        self.work_size = int(sum(self.sizes[1:]) + 2 * max(self.sizes))
        #: the bracket drivers use mlp_directional: its work size, and the first
        #: parameter it reads from the stencil points (layers 2.. only)
        self.builtin = True
        self.directional_work = self.work_size + 2 * self.sizes[1]
        #: the exact Hessian-vector products' scratch (mlp_hvp): the tangents ż and ȧ of
        #: every layer, then two delta buffers
        self.hvp_work = 2 * sum(self.sizes[1:]) + 2 * max(self.sizes)
        self.stencil_start = pw[1] if L > 1 else self.P

    def __repr__(self) -> str:
        return (
            f"MLP({self.sizes}, activation={self.activation!r}, loss={self.loss_name!r}, "
            f"P={self.P})"
        )

    @property
    def kernel(self) -> KernelFn:  # type: ignore[override]  # read-only here, set by CustomModel
        """The compiled per-example gradient, ``mlp_grad`` of
        ``fastperm.backends.numba_cpu.mlp`` (imported on first access). Without numba, the
        same update ``out ← alpha · g + beta · out`` by this model's NumPy gradient (no
        backend calls it then: the Cython and CUDA kernels have their own MLP code)."""
        try:
            from .backends.numba_cpu.mlp import mlp_grad
        except ImportError:  # numba not installed
            return self._numpy_kernel
        return mlp_grad

    def _numpy_kernel(
        self,
        theta: FloatArray,
        x: FloatArray,
        y: FloatArray,
        layout: IntArray,
        work: FloatArray,
        out: FloatArray,
        alpha: float,
        beta: float,
    ) -> None:
        g = alpha * self._grad(theta, x[None, :], y[None, :])[0]
        out[:] = g if beta == 0.0 else g + beta * out

    # -- NumPy implementation (reference backend, oracles, analyses) --------------------------
    def init(self, seed: int = 0) -> FloatArray:
        """Glorot-normal weights (variance 2/(fan_in + fan_out)), zero biases."""
        rs = np.random.default_rng(_checks.as_seed("seed", seed))
        theta = np.zeros(self.P)
        for name, (sl, shape) in self.tensors.items():
            if name.startswith("W"):
                nout, nin = shape
                theta[sl] = rs.standard_normal(nout * nin) * math.sqrt(2.0 / (nin + nout))
        return theta

    def _act(self, z: InexactArray) -> InexactArray:
        if self.activation == "tanh":
            return np.tanh(z)
        # NaN stays NaN (an overflow upstream must not become a silent zero, as in the kernels)
        return np.where((z.real > 0) | np.isnan(z.real), z, 0)

    def _dact(self, a: InexactArray) -> InexactArray:
        if self.activation == "tanh":
            return 1 - a * a
        return (a.real > 0).astype(np.float64)

    def _forward(
        self, theta: InexactArray, X: FloatArray
    ) -> tuple[dict[str, InexactArray], list[InexactArray]]:
        """Activations a_0 = X, ..., a_L = logits; θ (..., P) broadcasts to (..., B, ·)."""
        T = self.unflatten(np.asarray(theta))
        acts: list[InexactArray] = [X]
        L = len(self.sizes) - 1
        for layer in range(L):
            z = np.einsum("...oi,...bi->...bo", T[f"W{layer + 1}"], acts[-1])
            if self.bias:
                z = z + T[f"b{layer + 1}"][..., None, :]
            acts.append(self._act(z) if layer < L - 1 else z)
        return T, acts

    def _logits(self, theta: InexactArray, X: FloatArray) -> InexactArray:
        return self._forward(theta, X)[1][-1]

    def bracket_aux(
        self, theta: FloatArray, X: FloatArray, Y: FloatArray, G: FloatArray
    ) -> FloatArray:
        """``[W₁x + b₁ (H₁) | δ₁ (H₁) | scaled xᵢ·x + bias (B) | scale]`` per example, for
        ``mlp_directional``
        (``fastperm.backends.numba_cpu.mlp``, whose bracket drivers alone call this).

        Computed by the compiled ``mlp_aux`` there, not NumPy: a BLAS call just
        before a parallel kernel leaves OpenBLAS threads spinning, which was
        measured to double the bracket kernel's time.
        """
        from .backends.numba_cpu.mlp import mlp_aux

        aux = np.empty((X.shape[0], 2 * self.sizes[1] + X.shape[0] + 1))
        mlp_aux(theta, X, G, self.layout, aux)
        return aux

    def _output_delta(self, z: InexactArray, Y: FloatArray) -> InexactArray:
        if self.loss_name == "bce":
            with np.errstate(over="ignore"):
                sig = np.where(z.real >= 0, 1 / (1 + np.exp(-z)), np.exp(z) / (1 + np.exp(z)))
            return (sig - Y) / self.K
        return (z - Y) / self.K

    def _loss(self, theta: InexactArray, X: FloatArray, Y: FloatArray) -> InexactArray:
        z = self._logits(theta, X)
        if self.loss_name == "bce":
            per = np.maximum(z, 0) - z * Y + np.log1p(np.exp(-np.abs(z)))
        else:
            per = 0.5 * (z - Y) ** 2
        return per.mean(axis=-1)

    def _grad(self, theta: InexactArray, X: FloatArray, Y: FloatArray) -> InexactArray:
        """Backpropagation."""
        theta = np.asarray(theta)
        T, acts = self._forward(theta, X)
        z = acts[-1]
        delta = self._output_delta(z, Y)
        lead = np.broadcast_shapes(theta.shape[:-1] + (1,), z.shape[:-1])
        out = np.zeros(lead + (self.P,), dtype=np.result_type(theta, X, z))
        for layer in range(len(self.sizes) - 2, -1, -1):
            sl, shape = self.tensors[f"W{layer + 1}"]
            out[..., sl] = (delta[..., :, None] * acts[layer][..., None, :]).reshape(lead + (-1,))
            if self.bias:
                out[..., self.tensors[f"b{layer + 1}"][0]] = delta
            if layer > 0:
                delta = np.einsum("...bo,...oi->...bi", delta, T[f"W{layer + 1}"]) * self._dact(
                    acts[layer]
                )
        return out


class LinearRegression(MLP):
    """``L = ½ (wᵀx + b − y)²``: layout ``[w (1×d), b]`` (tensors ``W1``, ``b1``); Y may be (B,)."""

    name = "LinearRegression"

    def __init__(self, d: int, bias: bool = True) -> None:
        super().__init__([d, 1], activation="tanh", loss="mse", bias=bias)

    def __repr__(self) -> str:
        return f"LinearRegression(d={self.d}, bias={self.bias}, P={self.P})"


class MultiLabelLogistic(MLP):
    """``z = Wx + b``, K independent sigmoids, loss: mean binary cross-entropy over the K labels."""

    name = "MultiLabelLogistic"

    def __init__(self, d: int, K: int) -> None:
        super().__init__([d, K], activation="tanh", loss="bce", bias=True)

    def __repr__(self) -> str:
        return f"MultiLabelLogistic(d={self.d}, K={self.K}, P={self.P})"


class CustomModel(Model):
    """A user's model: a compiled per-example gradient and, optionally, NumPy functions.

    Parameters
    ----------
    kernel : numba.njit function ``grad(theta, x, y, layout, work, out, alpha, beta)``, optional
        ``out ← alpha · gradient + beta · out`` (see the module docstring); needed by the
        compiled backends. Without it, give ``numpy_grad`` and use ``backend="numpy"``.
        Before a backend that calls it (numba) first relies on it, the kernel is probed
        once on the caller's first example (:meth:`check_kernel`): an output entry it does
        not write, or a gradient that disagrees with ``numpy_grad``, is a ValueError
        instead of silent zeros.
    P, d, K : int
        Parameters, input features, targets per example.
    work_size : int
        Scratch entries the kernel needs.
    layout : sequence of int, optional
        Integers passed to the kernel unchanged (its model's structure). ``shape=`` is the
        deprecated name of this argument.
    tensors : dict, optional
        name → (slice, shape); default one tensor ``"theta"``.
    numpy_grad, loss, logits : callables, optional
        ``(θ, X, Y) → (B, P)``, ``(θ, X, Y) → (B,)``, ``(θ, X) → (B, K)``.
    init : callable, optional
        ``seed → θ``.
    """

    name = "CustomModel"

    def __init__(
        self,
        kernel: KernelFn | None = None,
        *,
        P: int,
        d: int,
        K: int,
        work_size: int = 0,
        layout: npt.ArrayLike = (),
        tensors: Tensors | None = None,
        numpy_grad: NumpyFn | None = None,
        loss: NumpyFn | None = None,
        logits: NumpyFn | None = None,
        init: NumpyFn | None = None,
        shape: npt.ArrayLike | None = None,
    ) -> None:
        if shape is not None:
            warnings.warn(
                "CustomModel(shape=...) is deprecated: use layout=...",
                DeprecationWarning,
                stacklevel=2,
            )
            layout = shape
        if kernel is None and numpy_grad is None:
            raise ValueError(
                "CustomModel needs a gradient: kernel= (a numba.njit function, for the "
                "compiled backends) or numpy_grad= (for backend='numpy'), or both"
            )
        if kernel is not None and not hasattr(kernel, "py_func"):
            raise TypeError(
                "kernel must be a numba.njit function "
                "grad(theta, x, y, layout, work, out, alpha, beta)"
            )
        self.kernel = kernel
        self._kernel_checked = False
        self.P = _checks.as_int("P", P, minimum=1)
        self.d = _checks.as_int("d", d, minimum=1)
        self.K = _checks.as_int("K", K, minimum=1)
        self.work_size = _checks.as_int("work_size", work_size, minimum=0)
        self.layout = np.asarray(layout, dtype=np.int64).reshape(-1)
        self.tensors = tensors or {"theta": (slice(0, self.P), (self.P,))}
        for name, fn in (
            ("numpy_grad", numpy_grad),
            ("loss", loss),
            ("logits", logits),
            ("init", init),
        ):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be a callable or None, got {type(fn).__name__}")
        self._numpy_grad, self._loss_fn, self._logits_fn, self._init = (
            numpy_grad,
            loss,
            logits,
            init,
        )

    def check_kernel(self, theta: FloatArray, x: FloatArray, y: FloatArray) -> None:
        """Probe the compiled kernel once, on one example: it must write every entry of
        ``out`` (each starts as a sentinel, with ``alpha = 1, beta = 0``) and, when
        ``numpy_grad`` is given, agree with it (to 1e-6 relative). A ValueError says what is
        wrong; a kernel that does nothing would otherwise give all-zero brackets."""
        if self._kernel_checked or self.kernel is None:
            return
        sentinel = -1.2345678901234567e300
        out = np.full(self.P, sentinel)
        work = np.zeros(max(self.work_size, 1))
        self.kernel(theta, x, y, self.layout, work, out, 1.0, 0.0)
        unwritten = np.flatnonzero(out == sentinel)
        if unwritten.size:
            raise ValueError(
                f"model: the CustomModel kernel left {unwritten.size} of {self.P} entries of "
                f"out unwritten (first: {int(unwritten[0])}); it must set every entry to "
                "alpha·gradient + beta·out"
            )
        if self._numpy_grad is not None:
            want = np.asarray(self._numpy_grad(theta, x[None, :], y[None, :]))[0]
            scale = max(float(np.max(np.abs(want))), np.finfo(float).tiny)
            err = float(np.max(np.abs(out - want)))
            if not err <= 1e-6 * scale:
                raise ValueError(
                    f"model: the CustomModel kernel and numpy_grad disagree on the first "
                    f"example: max difference {err:.3g} (max |gradient| {scale:.3g})"
                )
        self._kernel_checked = True

    def _need(self, fn: _F | None, what: str) -> _F:
        if fn is None:
            raise ValueError(
                f"model: this CustomModel was given no {what} "
                f"(CustomModel(..., {what}=fn) enables it)"
            )
        return fn

    def _grad(self, theta: InexactArray, X: FloatArray, Y: FloatArray) -> InexactArray:
        return self._need(self._numpy_grad, "numpy_grad")(theta, X, Y)

    def _loss(self, theta: InexactArray, X: FloatArray, Y: FloatArray) -> InexactArray:
        return self._need(self._loss_fn, "loss")(theta, X, Y)

    def _logits(self, theta: InexactArray, X: FloatArray) -> InexactArray:
        return self._need(self._logits_fn, "logits")(theta, X)

    def init(self, seed: int = 0) -> FloatArray:
        return self._need(self._init, "init")(seed)


#: the Numba kernels this module used to define, importable from here on first access
_NUMBA_KERNELS = ("mlp_grad", "mlp_directional", "mlp_aux")


def __getattr__(name: str) -> Any:  # a Numba dispatcher, TorchModel or JaxModel
    """``mlp_grad``, ``mlp_directional``, ``mlp_aux``: imported from
    ``fastperm.backends.numba_cpu.mlp`` on first access (so this module imports without
    numba); ``TorchModel`` from :mod:`fastperm.torch_model`, ``JaxModel`` from
    :mod:`fastperm.jax_model`."""
    if name == "TorchModel":
        from .torch_model import TorchModel

        return TorchModel
    if name == "JaxModel":
        from .jax_model import JaxModel

        return JaxModel
    if name in _NUMBA_KERNELS:
        from .backends.numba_cpu import mlp

        value = getattr(mlp, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
