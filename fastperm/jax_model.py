"""Brackets of your own JAX model: :class:`JaxModel`, and what ``fastperm.lie`` runs on it.

``JaxModel(apply_fn, params, loss_fn)`` makes a JAX model — a function
``apply_fn(params, X) -> outputs`` of a parameter pytree and a batch — a fastperm model, the
twin of :class:`fastperm.torch_model.TorchModel`: :func:`fastperm.lie.brackets`,
``tensor_rms``, ``logit_perturbation``, ``bracket_logits`` and ``swap_difference`` accept it
and compute, with ``jax.vmap``, ``jax.grad`` and ``jax.jvp`` (each chunk ``jax.jit``-compiled
once per shape):

* the per-example gradients ``g_x = ∇_θ L(θ; x, y)``, ``L = loss_fn(apply_fn(θ, x[None]),
  y[None])``;
* the Hessian-vector products ``H_y g_x`` of ``[v_x, v_y] = H_y g_x − H_x g_y`` by
  ``"forward"`` (forward over reverse: the jvp of y's gradient along g_x; also ``"auto"``
  and ``"exact"``), ``"reverse"`` (the gradient of ``g_y · g_x``) or ``"fd"`` (fastperm's
  stencil and step rule, with the parameters' ε_mach);
* in chunks of pairs (:data:`fastperm.knobs.TORCH_CHUNK_BYTES`, shared with TorchModel), so
  the reductions never hold a (pairs, P) array.

θ is the pytree's leaves flattened in ``jax.tree_util`` order into one vector; the tensors
are named by their key paths (``jax.tree_util.keystr``: ``"['W1']"``). ``model.theta()`` is
the parameters given, and every function takes ``theta=None`` for them or another vector.
Float64 parameters need ``jax.config.update("jax_enable_x64", True)`` first (JAX computes
in float32 otherwise). JAX is the optional extra ``jax`` (``pip install ".[jax]"``); this
module imports it on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from . import adapted, knobs
from ._typing import FloatArray, IntArray

METHODS = ("auto", "forward", "reverse", "fd")


def _jax() -> Any:
    try:
        import jax
    except ImportError:
        raise ImportError("JaxModel needs JAX: pip install 'fastperm[jax]'") from None
    return jax


class JaxModel:
    """A JAX model (a function of a parameter pytree) and its per-example loss, as a
    fastperm model.

    Parameters
    ----------
    apply_fn : callable
        ``apply_fn(params, X) -> outputs`` for a batch X (first axis: the example); the
        outputs are the logits :func:`fastperm.lie.logit_perturbation` differentiates.
    params : pytree of arrays
        θ: all float32, or all float64 (with JAX's x64 mode on).
    loss_fn : callable
        ``loss_fn(output, target) -> scalar`` on a batch of one example (``output`` of
        ``x[None]``, ``y[None]``): the per-example loss L(θ; x, y), e.g. the mean binary
        cross-entropy of ``optax.sigmoid_binary_cross_entropy``.
    method : {"auto", "forward", "reverse", "fd"}
        How Hessian-vector products are computed (module docstring).

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> jax.config.update("jax_enable_x64", True)
    >>> from fastperm import lie
    >>> from fastperm.models import JaxModel
    >>> def apply(p, X):
    ...     return jnp.tanh(X @ p["W1"].T + p["b1"]) @ p["W2"].T
    >>> def loss(out, y):
    ...     return jnp.mean((out - y) ** 2) / 2
    >>> rs = np.random.default_rng(0)
    >>> params = {"W1": rs.normal(size=(3, 4)), "b1": np.zeros(3), "W2": rs.normal(size=(2, 3))}
    >>> model = JaxModel(apply, params, loss)
    >>> lie.brackets(model, None, rs.normal(size=(5, 4)), rs.normal(size=(5, 2))).shape
    (5, 5, 21)
    """

    #: the module computing fastperm.lie's functions for this model
    lie_ops = "fastperm.jax_model"

    def __init__(
        self, apply_fn: Callable[..., Any], params: Any, loss_fn: Callable[..., Any],
        method: str = "auto",
    ) -> None:  # fmt: skip
        jax = _jax()
        if not callable(apply_fn):
            raise TypeError(f"apply_fn must be callable (params, X) -> outputs, got {apply_fn!r}")
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable (output, target) -> scalar, got {loss_fn!r}")
        if method not in METHODS and method != "exact":
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        paths, self.treedef = jax.tree_util.tree_flatten_with_path(params)
        if not paths:
            raise ValueError("params has no arrays: there is nothing to bracket")
        leaves = [np.asarray(leaf) for _, leaf in paths]
        dtypes = {a.dtype for a in leaves}
        if len(dtypes) != 1 or next(iter(dtypes)) not in (np.float32, np.float64):
            raise TypeError(f"params must be all float32 or all float64 arrays, got {dtypes}")
        self.dtype = np.dtype(next(iter(dtypes)))
        if self.dtype == np.float64 and not jax.config.jax_enable_x64:
            raise ValueError(
                "params are float64 but JAX's x64 mode is off (it would compute in float32): "
                'call jax.config.update("jax_enable_x64", True) first, or pass float32 params'
            )
        self.apply_fn, self.loss_fn, self.method = apply_fn, loss_fn, method
        self.tensors: dict[str, tuple[slice, tuple[int, ...]]] = {}
        start = 0
        for (path, _), a in zip(paths, leaves, strict=True):
            self.tensors[jax.tree_util.keystr(path)] = (slice(start, start + a.size), a.shape)
            start += a.size
        self.P = start
        self._theta = np.concatenate([a.ravel() for a in leaves])
        self.name = f"JaxModel({getattr(apply_fn, '__name__', type(apply_fn).__name__)})"
        self._compiled: dict[Any, Any] = {}

    def __repr__(self) -> str:
        return f"{self.name} with P = {self.P}, {self.dtype}"

    def theta(self) -> FloatArray:
        """The parameters given, as one vector (a copy)."""
        return self._theta.copy()

    def as_theta(self, theta: Any) -> Any:
        """θ as a flat JAX array in the parameters' dtype (None: the parameters given)."""
        jnp = _jax().numpy
        t = self._theta if theta is None else np.asarray(theta)
        if t.ndim != 1 or t.shape[0] != self.P:
            raise ValueError(f"theta has shape {t.shape} but {self.name} has P = {self.P}")
        if not np.all(np.isfinite(t)):
            raise ValueError("theta has non-finite value(s) (NaN or inf)")
        return jnp.asarray(t, dtype=self.dtype)

    def as_data(self, X: Any, Y: Any = None) -> tuple[Any, ...]:
        """X (and Y) as JAX arrays, floating data in the parameters' dtype."""
        jnp = _jax().numpy
        out = []
        for label, A in (("X", X), ("Y", Y)):
            if A is None and label == "Y":
                break
            a = np.asarray(A)
            if a.ndim == 0:
                raise ValueError(f"{label} must have a first axis of examples, got a scalar")
            out.append(jnp.asarray(a, dtype=self.dtype if a.dtype.kind == "f" else a.dtype))
        if len(out) == 2 and out[0].shape[0] != out[1].shape[0]:
            raise ValueError(
                f"X has {out[0].shape[0]} examples but Y has {out[1].shape[0]}: one target each"
            )
        return tuple(out)

    def unflatten(self, flat: Any) -> Any:
        """θ of shape ``(..., P)`` → the parameter pytree, leaves of shape ``(..., *shape)``."""
        lead = tuple(flat.shape[:-1])
        leaves = [flat[..., sl].reshape(lead + shape) for sl, shape in self.tensors.values()]
        return _jax().tree_util.tree_unflatten(self.treedef, leaves)

    def flatten(self, tree: Any, lead: int) -> Any:
        """A parameter pytree whose leaves have ``lead`` leading axes → (..., P)."""
        jax = _jax()
        leaves = jax.tree_util.tree_leaves(tree)
        return jax.numpy.concatenate([a.reshape(a.shape[:lead] + (-1,)) for a in leaves], axis=-1)

    def loss(self, params: Any, x: Any, y: Any) -> Any:
        """L(θ; x, y) of one example."""
        return self.loss_fn(self.apply_fn(params, x[None]), y[None])

    def chunk_pairs(self) -> int:
        """Pairs per chunk (TorchModel's rule: ~8 bracket-sized vectors per pair)."""
        return max(1, knobs.TORCH_CHUNK_BYTES // (8 * self.P * self.dtype.itemsize))

    def compiled(self, key: Any, make: Callable[[], Any]) -> Any:
        """A jitted function built once per key (JAX compiles it again per input shape)."""
        if key not in self._compiled:
            self._compiled[key] = _jax().jit(make())
        return self._compiled[key]


def _grads(model: JaxModel) -> Any:
    """θ, X, Y → per-example gradients (B, P)."""
    jax = _jax()

    def run(theta: Any, X: Any, Y: Any) -> Any:
        per = jax.vmap(jax.grad(model.loss), in_axes=(None, 0, 0))(model.unflatten(theta), X, Y)
        return model.flatten(per, 1)

    return model.compiled("grads", lambda: run)


def _pairs_fn(model: JaxModel, method: str, S: int) -> Any:
    """θ, X, Y, G, a, b, h, c, w → the brackets of the pairs (a, b), (pairs, P)."""
    jax = _jax()
    grad = jax.grad(model.loss)

    def products(params: Any, U: Any, X: Any, Y: Any, hs: Any, c: Any, w: Any) -> Any:
        if method == "fd":  # Σ_j w_j g_y(θ + c_j h u) / h, the compiled kernels' stencil

            def stencil(u: Any, hu: Any, x: Any, y: Any) -> Any:
                total = 0.0
                for j in range(S):
                    at = jax.tree_util.tree_map(lambda p, v, j=j: p + (c[j] * hu) * v, params, u)
                    total = total + w[j] * model.flatten(grad(at, x, y), 0)
                return total / hu

            return jax.vmap(stencil)(U, hs, X, Y)

        def reverse(u: Any, x: Any, y: Any) -> Any:  # the gradient of g_y · u
            def along(p: Any) -> Any:
                leaves = zip(jax.tree_util.tree_leaves(grad(p, x, y)),
                             jax.tree_util.tree_leaves(u), strict=True)  # fmt: skip
                return sum(jax.numpy.vdot(g, v) for g, v in leaves)

            return model.flatten(jax.grad(along)(params), 0)

        def forward(u: Any, x: Any, y: Any) -> Any:  # the jvp of g_y along u
            return model.flatten(jax.jvp(lambda p: grad(p, x, y), (params,), (u,))[1], 0)

        return jax.vmap(reverse if method == "reverse" else forward)(U, X, Y)

    def run(theta: Any, X: Any, Y: Any, G: Any, a: Any, b: Any, h: Any, c: Any, w: Any) -> Any:
        params = model.unflatten(theta)
        ab = products(params, model.unflatten(G[a]), X[b], Y[b], h[a], c, w)
        ba = products(params, model.unflatten(G[b]), X[a], Y[a], h[b], c, w)
        return ab - ba

    return model.compiled(("pairs", method, S), lambda: run)


class Bracketer:
    """Brackets of one θ and batch, chunk by chunk (the gradients once), as NumPy arrays."""

    def __init__(
        self, model: JaxModel, theta: Any, X: Any, Y: Any, method: str | None, h: Any = None,
        order: int = 2,
    ) -> None:  # fmt: skip
        from .lie import EPS, STENCILS, _as_h

        method = model.method if method is None else method
        method = "forward" if method in ("auto", "exact") else method
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        self.model, self.method = model, method
        self.theta = model.as_theta(theta)
        self.X, self.Y = model.as_data(X, Y)
        self.G = _grads(model)(self.theta, self.X, self.Y)
        self.h = np.ones(self.X.shape[0])
        self.c, self.w = np.zeros(1), np.zeros(1)
        if method == "fd":
            self._check_gradients()
            G = np.asarray(self.G, dtype=np.float64)
            step = _as_h(h, G, np.asarray(self.theta, np.float64), order)
            if h is None and model.dtype == np.float32:  # the rule's ε_mach is the model's
                step = step * (np.finfo(np.float32).eps / EPS) ** (1.0 / (order + 1))
            self.h = step
            self.c, self.w = STENCILS[order]
        self._run = _pairs_fn(model, method, len(self.c) if method == "fd" else 0)

    def __call__(self, pairs: IntArray) -> FloatArray:
        jnp = _jax().numpy
        dt = self.model.dtype
        out = np.asarray(self._run(self.theta, self.X, self.Y, self.G, jnp.asarray(pairs[:, 0]),
                                   jnp.asarray(pairs[:, 1]), jnp.asarray(self.h, dt),
                                   jnp.asarray(self.c, dt), jnp.asarray(self.w, dt)))  # fmt: skip
        if not np.all(np.isfinite(out)):
            self._check_gradients()
            raise FloatingPointError("brackets are not finite: theta, X, Y or h are too large")
        return out

    def _check_gradients(self) -> None:
        if not bool(np.all(np.isfinite(np.asarray(self.G)))):
            raise FloatingPointError("the per-example gradients at theta are not finite")


def brackets(
    model: JaxModel, theta: Any, X: Any, Y: Any, pairs: IntArray | None, h: Any, order: int,
    return_error: bool, out: FloatArray | None, method: str | None,
) -> FloatArray | tuple[FloatArray, FloatArray]:  # fmt: skip
    """:func:`fastperm.lie.brackets` for a JaxModel (validated pairs; None: all)."""
    run = Bracketer(model, theta, X, Y, method, h, order)

    def coarse() -> Bracketer:
        return Bracketer(model, theta, X, Y, "fd", 2 * run.h, order)

    return adapted.brackets(model, run, run.X.shape[0], run.method, coarse, pairs, order,
                            return_error, out)  # fmt: skip


def rms_block(
    model: JaxModel, theta: Any, X: Any, Y: Any, pairs: IntArray, h: Any, order: int,
    method: str | None,
) -> dict[str, tuple[FloatArray, FloatArray]]:  # fmt: skip
    """Per named tensor: (RMS of each pair's bracket, RMS of its two gradients), chunk by
    chunk (no (pairs, P) array)."""
    run = Bracketer(model, theta, X, Y, method, h, order)
    G = np.asarray(run.G, dtype=np.float64)
    rb = {k: np.empty(pairs.shape[0]) for k in model.tensors}
    for sl in adapted.chunks(model, pairs):
        b = run(pairs[sl]).astype(np.float64)
        for k, (ts, _) in model.tensors.items():
            rb[k][sl] = np.sqrt(np.mean(b[:, ts] ** 2, axis=1))
    out = {}
    for k, (ts, _) in model.tensors.items():
        g2 = np.mean(G[:, ts] ** 2, axis=1)
        out[k] = (rb[k], np.sqrt(0.5 * (g2[pairs[:, 0]] + g2[pairs[:, 1]])))
    return out


def _logit_jvp(model: JaxModel, theta: Any, X_batch: Any) -> Callable[[Any], FloatArray]:
    """(rows, P) → ``J_f(θ) v`` over the batch for each row v, (rows, batch, K)."""
    jax = _jax()
    (Xb,) = model.as_data(X_batch)
    params = model.unflatten(theta)

    def run(V: Any, Xb: Any) -> Any:
        def one(v: Any) -> Any:
            return jax.jvp(lambda p: model.apply_fn(p, Xb), (params,), (model.unflatten(v),))[1]

        return jax.vmap(one)(V)

    fn = jax.jit(run)
    return lambda V: np.asarray(fn(jax.numpy.asarray(V, model.dtype), Xb))


def logit_perturbation(model: JaxModel, theta: Any, V: FloatArray, X_batch: Any) -> FloatArray:
    """``J_f(θ) v`` for each row v of V over a batch, exactly (forward mode), in chunks."""
    jvps = _logit_jvp(model, model.as_theta(theta), X_batch)
    step = model.chunk_pairs()
    return np.concatenate([jvps(V[s : s + step]) for s in range(0, V.shape[0], step)])


def bracket_logits(
    model: JaxModel, theta: Any, X: Any, Y: Any, X_batch: Any, pairs: IntArray, h: Any,
    order: int, method: str | None,
) -> FloatArray:  # fmt: skip
    """``J_f(θ) [v_a, v_b]`` over a batch for each pair, chunk by chunk, in the model's dtype."""
    run = Bracketer(model, theta, X, Y, method, h, order)
    jvps = _logit_jvp(model, run.theta, X_batch)
    return np.concatenate([jvps(run(pairs[sl])) for sl in adapted.chunks(model, pairs)])


def swap_difference(
    model: JaxModel, theta: Any, a: tuple[Any, Any], b: tuple[Any, Any], lr: float
) -> FloatArray:
    """``θ_ab − θ_ba`` by literal SGD steps (the form of :func:`fastperm.lie.swap_difference`)."""
    jax = _jax()
    th = model.as_theta(theta)
    xa, ya = model.as_data(*(np.asarray(v)[None] for v in a))
    xb, yb = model.as_data(*(np.asarray(v)[None] for v in b))

    def grad(t: Any, x: Any, y: Any) -> Any:
        return model.flatten(jax.grad(model.loss)(model.unflatten(t), x, y), 0)

    ga, gb = grad(th, xa[0], ya[0]), grad(th, xb[0], yb[0])
    ta, tb = th - lr * ga, th - lr * gb
    return np.asarray(lr * (gb - grad(ta, xb[0], yb[0])) - lr * (ga - grad(tb, xa[0], ya[0])))
