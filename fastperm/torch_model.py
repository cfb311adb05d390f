"""Brackets of your own PyTorch module: :class:`TorchModel`, and what ``fastperm.lie`` runs on it.

``TorchModel(module, loss_fn)`` makes a ``torch.nn.Module`` a fastperm model. The functions
of :mod:`fastperm.lie` (``brackets``, ``tensor_rms``, ``logit_perturbation``,
``swap_difference``) accept it and compute, with ``torch.func`` on the module's own device
and dtype:

* the per-example gradients ``g_x = ∇_θ L(θ; x, y)`` (``vmap`` of ``grad``);
* the Hessian-vector products ``H_y g_x`` of a bracket ``[v_x, v_y] = H_y g_x − H_x g_y``,
  exactly, by one of three methods:

  - ``"forward"``: forward-over-reverse, the ``jvp`` of ``y``'s gradient along ``g_x``
    (one pass gives g_y and H_y g_x);
  - ``"reverse"``: reverse-over-reverse, the gradient of ``g_y · g_x``, for operations
    without forward-mode derivatives (some attention kernels);
  - ``"fd"``: central finite differences of the gradient with fastperm's step rule
    (:func:`fastperm.lie.default_step`, with the module's ε_mach: a float32 module steps
    about 800× further than a float64 one), the method of the compiled kernels;

  ``"auto"`` (the default) is ``"forward"``, falling back to ``"reverse"`` (with a warning)
  where forward mode is not implemented;
* in chunks of pairs, so that memory stays O(chunk × P): the reductions (RMS per named
  parameter tensor) are computed chunk by chunk, and the full (pairs, P) or (B, B, P) array
  is formed only when :func:`fastperm.lie.brackets` is asked for it.

θ is the module's parameters (``named_parameters()``, detached) flattened in that order into
one vector of P entries: ``model.theta()`` gives the current one, and every function takes
``theta=None`` for it, or another vector (a checkpoint). The module is evaluated in eval
mode (BatchNorm uses its running statistics, dropout is off) and left in the mode it was
in. PyTorch is the optional extra ``torch`` (``pip install ".[torch]"``); this module
imports it on first use.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from . import adapted, knobs
from ._typing import FloatArray, IntArray

METHODS = ("auto", "forward", "reverse", "fd")


def _tensor(A: Any) -> Any:
    """A tensor as it is, anything else as a tensor of a (writeable) NumPy copy."""
    torch = _torch()
    return A if torch.is_tensor(A) else torch.from_numpy(np.array(A))


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise ImportError("TorchModel needs PyTorch: pip install 'fastperm[torch]'") from None
    return torch


class TorchModel:
    """A ``torch.nn.Module`` and its per-example loss, as a fastperm model.

    Parameters
    ----------
    module : torch.nn.Module
        Its parameters (``named_parameters()``) are θ. Evaluated in eval mode.
    loss_fn : callable
        ``loss_fn(output, target) -> scalar``, called on a batch of one example (the
        module's output for ``x[None]`` and ``y[None]``): the per-example loss L(θ; x, y),
        e.g. ``torch.nn.functional.binary_cross_entropy_with_logits``.
    method : {"auto", "forward", "reverse", "fd"}
        How Hessian-vector products are computed (module docstring).

    Attributes
    ----------
    P : int
        Number of parameters.
    tensors : dict
        name → (slice of θ, shape), in ``named_parameters()`` order.
    dtype : numpy dtype
        The parameters' (float32 or float64): the results come in it.

    Examples
    --------
    >>> import torch
    >>> from fastperm import lie
    >>> from fastperm.models import TorchModel
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))
    >>> model = TorchModel(net.double(), torch.nn.functional.binary_cross_entropy_with_logits)
    >>> X, Y = torch.randn(5, 4).double(), (torch.rand(5, 2) > 0.5).double()
    >>> lie.brackets(model, None, X, Y).shape  # all pairs, exact (forward-over-reverse)
    (5, 5, 23)
    """

    #: the module computing fastperm.lie's functions for this model
    lie_ops = "fastperm.torch_model"

    def __init__(self, module: Any, loss_fn: Callable[..., Any], method: str = "auto") -> None:
        torch = _torch()
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        wrapped = (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)
        if isinstance(module, wrapped):
            raise TypeError(
                f"module is wrapped in {type(module).__name__}: pass the module inside it "
                "(module.module); brackets run on one device"
            )
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable (output, target) -> scalar, got {loss_fn!r}")
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        params = dict(module.named_parameters())
        if not params:
            raise ValueError("module has no parameters: there is nothing to bracket")
        dtypes = {p.dtype for p in params.values()}
        devices = {p.device for p in params.values()}
        if len(dtypes) != 1 or next(iter(dtypes)) not in (torch.float32, torch.float64):
            raise TypeError(
                f"the module's parameters must all be float32 or all float64, got {dtypes}"
            )
        if len(devices) != 1:
            raise ValueError(f"the module's parameters must be on one device, got {devices}")
        self.module, self.loss_fn, self.method = module, loss_fn, method
        self.torch_dtype, self.device = next(iter(dtypes)), next(iter(devices))
        self.dtype = np.dtype("float32" if self.torch_dtype == torch.float32 else "float64")
        self.tensors: dict[str, tuple[slice, tuple[int, ...]]] = {}
        start = 0
        for name, p in params.items():
            self.tensors[name] = (slice(start, start + p.numel()), tuple(p.shape))
            start += p.numel()
        self.P = start
        self.name = f"TorchModel({type(module).__name__})"
        #: what "auto" runs: "forward" until it fails on this module, then "reverse"
        self.auto = "forward"

    def __repr__(self) -> str:
        return f"{self.name} with P = {self.P}, {self.dtype}, on {self.device}"

    # -- θ and data -----------------------------------------------------------------------

    def theta(self) -> FloatArray:
        """The module's current parameters as one vector (a NumPy copy)."""
        torch = _torch()
        with torch.no_grad():
            flat = torch.cat([p.detach().reshape(-1) for p in self.module.parameters()])
        return flat.cpu().numpy().copy()

    def as_theta(self, theta: Any) -> Any:
        """θ as a flat tensor on the module's device: the current parameters for None."""
        torch = _torch()
        if theta is None:
            return torch.cat([p.detach().reshape(-1) for p in self.module.parameters()])
        t = _tensor(theta)
        if t.ndim != 1 or t.shape[0] != self.P:
            raise ValueError(f"theta has shape {tuple(t.shape)} but {self.name} has P = {self.P}")
        t = t.detach().to(self.device, self.torch_dtype)
        if not bool(torch.isfinite(t).all()):
            raise ValueError("theta has non-finite value(s) (NaN or inf)")
        return t

    def as_data(self, X: Any, Y: Any = None) -> tuple[Any, ...]:
        """X (and Y) as tensors on the module's device, floating data in its dtype; the
        first axis is the example."""
        out = []
        for label, A in (("X", X), ("Y", Y)):
            if A is None and label == "Y":
                break
            t = _tensor(A).to(self.device)
            if t.is_floating_point():
                t = t.to(self.torch_dtype)
            if t.ndim == 0:
                raise ValueError(f"{label} must have a first axis of examples, got a scalar")
            out.append(t)
        if len(out) == 2 and out[0].shape[0] != out[1].shape[0]:
            raise ValueError(
                f"X has {out[0].shape[0]} examples but Y has {out[1].shape[0]}: one target each"
            )
        return tuple(out)

    def unflatten(self, flat: Any) -> dict[str, Any]:
        """θ of shape ``(..., P)`` → the module's parameters by name, each of shape
        ``(..., *shape)`` (views)."""
        lead = tuple(flat.shape[:-1])
        return {
            name: flat[..., sl].view(*lead, *shape) for name, (sl, shape) in self.tensors.items()
        }

    def flatten(self, tree: dict[str, Any], lead: int) -> Any:
        """Parameters by name, each with ``lead`` leading axes → (..., P) (one copy)."""
        torch = _torch()
        return torch.cat(
            [tree[name].reshape(*tree[name].shape[:lead], -1) for name in self.tensors], dim=-1
        )

    @contextlib.contextmanager
    def evaluating(self) -> Iterator[None]:
        """The module in eval mode for the duration, then back in the mode it was in;
        PyTorch's errors for what cannot work under the transforms said plainly."""
        was = self.module.training
        self.module.eval()
        try:
            yield
        except RuntimeError as exc:
            text = str(exc).lower()
            in_place = ("inplace", "in-place", "in place", "doesn't match the broadcast shape")
            if any(s in text for s in in_place):
                raise ValueError(
                    f"{self.name} modifies a tensor in place, which torch.func cannot batch "
                    "or differentiate (e.g. z = torch.zeros(...); z += f(x)): use "
                    "out-of-place operations (z = f(x), x = x + y instead of x += y, "
                    f"torch.relu(x) instead of x.relu_()); PyTorch said: {exc}"
                ) from None
            raise
        finally:
            self.module.train(was)

    # -- the maths (tensors in, tensors out) ---------------------------------------------

    # The differentiated functions take the parameters as a dict of tensors: the flat θ's
    # views would make every gradient scatter into a P-sized buffer per tensor (measured:
    # several times slower than torch.func on a dict).

    def loss(self, params: dict[str, Any], x: Any, y: Any) -> Any:
        """L(θ; x, y) of one example (a scalar tensor)."""
        torch = _torch()
        out = torch.func.functional_call(self.module, params, (x.unsqueeze(0),))
        return self.loss_fn(out, y.unsqueeze(0))

    def output(self, params: dict[str, Any], X: Any) -> Any:
        """The module's output for a batch (its logits)."""
        torch = _torch()
        return torch.func.functional_call(self.module, params, (X,))

    def grad(self, theta: Any, x: Any, y: Any) -> Any:
        """The gradient of one example, flat (P,)."""
        torch = _torch()
        return self.flatten(torch.func.grad(self.loss)(self.unflatten(theta), x, y), 0)

    def grads(self, theta: Any, X: Any, Y: Any) -> Any:
        """Per-example gradients (B, P)."""
        torch = _torch()
        per = torch.func.vmap(torch.func.grad(self.loss), in_dims=(None, 0, 0))
        return self.flatten(per(self.unflatten(theta), X, Y), 1)

    def hvp(self, method: str) -> Callable[..., Any]:
        """``(params, v, x, y) → H_(x,y) v`` for one example (dicts), exactly."""
        torch = _torch()
        grad = torch.func.grad(self.loss)
        if method == "forward":

            def forward(params: Any, v: Any, x: Any, y: Any) -> Any:
                return torch.func.jvp(lambda p: grad(p, x, y), (params,), (v,))[1]

            return forward

        def reverse(params: Any, v: Any, x: Any, y: Any) -> Any:
            def along(p: Any) -> Any:
                g = grad(p, x, y)
                return sum((g[k] * v[k]).sum() for k in g)

            return torch.func.grad(along)(params)

        return reverse

    def chunk_pairs(self) -> int:
        """Pairs per chunk: about :data:`fastperm.knobs.TORCH_CHUNK_BYTES` of bracket-sized
        vectors (each pair holds ~8 vectors of P entries while it is computed)."""
        return max(1, knobs.TORCH_CHUNK_BYTES // (8 * self.P * self.dtype.itemsize))


def pair_brackets(
    model: TorchModel,
    theta: Any,
    X: Any,
    Y: Any,
    G: Any,
    pairs: Any,
    method: str,
    h: Any = None,
    stencil: tuple[Any, Any] | None = None,
) -> Any:
    """Brackets ``H_b g_a − H_a g_b`` of the pairs (a, b), as a (pairs, P) tensor."""
    torch = _torch()
    a, b = pairs[:, 0], pairs[:, 1]
    params = model.unflatten(theta)
    if method == "fd":
        c, w = stencil  # type: ignore[misc]
        grad = torch.func.grad(model.loss)

        def directional(u: Any, hu: Any, x: Any, y: Any) -> Any:
            # Σ_j w_j g_y(θ + c_j h u) / h: the compiled kernels' stencil
            total = None
            for j in range(len(c)):
                g = grad({k: params[k] + (c[j] * hu) * u[k] for k in params}, x, y)
                total = {k: w[j] * g[k] if total is None else total[k] + w[j] * g[k] for k in g}
            return {k: v / hu for k, v in total.items()}  # type: ignore[union-attr]

        D = torch.func.vmap(directional)
        ab = D(model.unflatten(G[a]), h[a], X[b], Y[b])
        ba = D(model.unflatten(G[b]), h[b], X[a], Y[a])
    else:
        hvp = torch.func.vmap(model.hvp(method), in_dims=(None, 0, 0, 0))
        ab = hvp(params, model.unflatten(G[a]), X[b], Y[b])
        ba = hvp(params, model.unflatten(G[b]), X[a], Y[a])
    return model.flatten({k: ab[k] - ba[k] for k in ab}, 1)  # one (pairs, P) copy, not three


def _method(model: TorchModel, method: str | None) -> str:
    method = model.method if method is None else method
    if method == "exact":  # the built-in models' name for exact products: "auto" here
        method = "auto"
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    return method


class Bracketer:
    """Brackets of one θ and batch, computed chunk by chunk (the gradients once)."""

    def __init__(
        self,
        model: TorchModel,
        theta: Any,
        X: Any,
        Y: Any,
        method: str | None,
        h: Any = None,
        order: int = 2,
    ) -> None:
        from .lie import EPS, STENCILS, _as_h

        self.model, self.method = model, _method(model, method)
        self.theta = model.as_theta(theta)
        self.X, self.Y = model.as_data(X, Y)
        with model.evaluating():
            self.G = model.grads(self.theta, self.X, self.Y)
        # G is checked only where the brackets come out non-finite (a pass over it saved)
        # or the finite-difference step needs its norms
        self.h: Any = None
        self.stencil: tuple[list[float], list[float]] | None = None
        if self.method == "fd":
            self._check_gradients()
            G = self.G.detach().cpu().double().numpy()
            th = self.theta.detach().cpu().double().numpy()
            step = _as_h(h, G, th, order)  # the compiled kernels' rule and checks
            if h is None and model.dtype == np.float32:  # the rule's ε_mach is the module's
                step = step * (np.finfo(np.float32).eps / EPS) ** (1.0 / (order + 1))
            self.h = _tensor(step).to(model.device, model.torch_dtype)
            c, w = STENCILS[order]
            self.stencil = (c.tolist(), w.tolist())

    def __call__(self, pairs: IntArray) -> Any:
        """The brackets of ``pairs`` (a chunk) as a (pairs, P) tensor."""
        torch = _torch()
        idx = torch.as_tensor(pairs, device=self.model.device)
        method = self.model.auto if self.method == "auto" else self.method
        with self.model.evaluating():
            try:
                out = pair_brackets(self.model, self.theta, self.X, self.Y, self.G, idx,
                                    method, self.h, self.stencil)  # fmt: skip
            except (NotImplementedError, RuntimeError) as exc:
                if self.method != "auto" or method != "forward" or not _no_forward_mode(exc):
                    raise
                warnings.warn(
                    f"{self.model.name}: forward-over-reverse failed on this module and loss "
                    f"(PyTorch said: {str(exc).splitlines()[0]}); using reverse-over-reverse "
                    "for this model from now on (the same brackets, more memory per pair)",
                    RuntimeWarning,
                    stacklevel=3,
                )
                self.model.auto = "reverse"
                out = pair_brackets(self.model, self.theta, self.X, self.Y, self.G, idx,
                                    "reverse")  # fmt: skip
        if not bool(torch.isfinite(out).all()):
            self._check_gradients()
            raise FloatingPointError("brackets are not finite: theta, X, Y or h are too large")
        return out

    def _check_gradients(self) -> None:
        if not bool(_torch().isfinite(self.G).all()):
            raise FloatingPointError("the per-example gradients at theta are not finite")


def _no_forward_mode(exc: BaseException) -> bool:
    """Whether PyTorch's error is one of forward mode: an operation without a forward-mode
    derivative, or one whose double backward mishandles forward-mode zeros (PyTorch 2.13's
    ``mse_loss``: "ZeroTensors are immutable")."""
    text = str(exc).lower()
    return isinstance(exc, NotImplementedError) or any(
        s in text for s in ("forward ad", "forward-mode", "jvp", "forward mode", "zerotensor")
    )


def brackets(
    model: TorchModel,
    theta: Any,
    X: Any,
    Y: Any,
    pairs: IntArray | None,
    h: Any,
    order: int,
    return_error: bool,
    out: FloatArray | None,
    method: str | None,
) -> FloatArray | tuple[FloatArray, FloatArray]:
    """:func:`fastperm.lie.brackets` for a TorchModel (validated pairs; None: all)."""
    run = Bracketer(model, theta, X, Y, method, h, order)

    def coarse() -> Callable[[IntArray], FloatArray]:
        twice = Bracketer(model, theta, X, Y, "fd", 2 * run.h.cpu().numpy(), order)
        return lambda p: twice(p).detach().cpu().numpy()

    return adapted.brackets(model, lambda p: run(p).detach().cpu().numpy(), run.X.shape[0],
                            run.method, coarse, pairs, order, return_error, out)  # fmt: skip


def rms_block(
    model: TorchModel,
    theta: Any,
    X: Any,
    Y: Any,
    pairs: IntArray,
    h: Any,
    order: int,
    method: str | None,
) -> dict[str, tuple[FloatArray, FloatArray]]:
    """Per named tensor: (RMS of each pair's bracket, RMS of its two gradients), computed
    chunk by chunk (no (pairs, P) array)."""
    run = Bracketer(model, theta, X, Y, method, h, order)
    G = run.G
    rb = {k: np.empty(pairs.shape[0]) for k in model.tensors}
    rg = {k: np.empty(pairs.shape[0]) for k in model.tensors}
    for sl in adapted.chunks(model, pairs):
        b = run(pairs[sl])
        a, c = pairs[sl, 0], pairs[sl, 1]
        for k, (ts, _) in model.tensors.items():
            rb[k][sl] = b[:, ts].double().pow(2).mean(dim=1).sqrt().cpu().numpy()
            ga, gc = G[a][:, ts].double(), G[c][:, ts].double()
            rg[k][sl] = (0.5 * (ga.pow(2).mean(dim=1) + gc.pow(2).mean(dim=1))).sqrt().cpu().numpy()
    return {k: (rb[k], rg[k]) for k in model.tensors}


def _logit_jvp(model: TorchModel, theta: Any, X_batch: Any) -> Callable[[Any], Any]:
    """``V ↦ J_f(θ) v`` over the batch for each row v of a (rows, P) tensor (forward mode)."""
    torch = _torch()
    (Xb,) = model.as_data(X_batch)
    params = model.unflatten(theta)

    def jvp(v: Any) -> Any:
        return torch.func.jvp(lambda p: model.output(p, Xb), (params,), (v,))[1]

    return lambda V: torch.func.vmap(jvp)(model.unflatten(V))


def logit_perturbation(model: TorchModel, theta: Any, V: FloatArray, X_batch: Any) -> FloatArray:
    """``J_f(θ) v`` for each row v of V over a batch, exactly (forward mode), in chunks of
    rows."""
    th = model.as_theta(theta)
    Vt = _tensor(V).to(model.device, model.torch_dtype)
    jvps = _logit_jvp(model, th, X_batch)
    parts = []
    step = model.chunk_pairs()
    with model.evaluating():
        for start in range(0, Vt.shape[0], step):
            parts.append(jvps(Vt[start : start + step]))
    return _torch().cat(parts).detach().cpu().numpy()


def bracket_logits(
    model: TorchModel,
    theta: Any,
    X: Any,
    Y: Any,
    X_batch: Any,
    pairs: IntArray,
    h: Any,
    order: int,
    method: str | None,
) -> FloatArray:
    """``J_f(θ) [v_a, v_b]`` over a batch for each pair, chunk by chunk: no (pairs, P)
    array (the jvp of a chunk holds chunk × batch activations besides), in the module's
    dtype."""
    run = Bracketer(model, theta, X, Y, method, h, order)
    jvps = _logit_jvp(model, run.theta, X_batch)
    parts = []
    for sl in adapted.chunks(model, pairs):
        b = run(pairs[sl])
        with model.evaluating():
            parts.append(jvps(b).detach().cpu().numpy())
    return np.concatenate(parts)


def swap_difference(
    model: TorchModel, theta: Any, a: tuple[Any, Any], b: tuple[Any, Any], lr: float
) -> FloatArray:
    """``θ_ab − θ_ba`` by literal SGD steps (the form of :func:`fastperm.lie.swap_difference`)."""
    th = model.as_theta(theta)
    xa, ya = model.as_data(*(_tensor(v)[None] for v in a))  # one example: a batch of one
    xb, yb = model.as_data(*(_tensor(v)[None] for v in b))
    grad = model.grad
    with model.evaluating():
        ga, gb = grad(th, xa[0], ya[0]), grad(th, xb[0], yb[0])
        ta, tb = th - lr * ga, th - lr * gb
        d = lr * (gb - grad(ta, xb[0], yb[0])) - lr * (ga - grad(tb, xa[0], ya[0]))
    return d.detach().cpu().numpy()
