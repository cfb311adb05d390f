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
  the signature ``grad(theta, x, y, shape, work, out, alpha, beta)`` (below).

Built in: :class:`MLP` (any depth), and its one-layer cases
:class:`LinearRegression` and :class:`MultiLabelLogistic`, all sharing one
compiled kernel :func:`mlp_grad`.

Bringing your own model
-----------------------
Write a Numba function ``grad(theta, x, y, shape, work, out, alpha, beta)`` that
sets ``out ← alpha · ∇_θ L(x, y; θ) + beta · out`` (P,) for one example — when
``beta == 0`` it must not read ``out`` — using only ``work`` (float64 scratch of
``work_size`` entries) and the int64 array ``shape`` (any integers your model
needs), and wrap it. (The BLAS-style update lets the bracket kernel accumulate
finite-difference stencils in one pass over memory.) ::

    @numba.njit
    def my_grad(theta, x, y, shape, work, out, alpha, beta):
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

import numpy as np

from . import _checks
from ._jit import JIT, PARALLEL, njit, prange

ACTIVATIONS = {"tanh": 0, "relu": 1}
LOSSES = {"bce": 0, "mse": 1}


class Model:
    """Base class: the attributes and checks every model shares."""

    name = "model"
    d: int
    K: int
    P: int
    tensors: dict
    shape: np.ndarray
    work_size: int
    kernel = None
    #: built-in models whose compiled kernels the cached bracket drivers call directly
    builtin = False
    directional_work = 0
    stencil_start = 0

    def bracket_aux(self, theta, X, Y, G):
        """Per-example data the model's stencil kernel needs (B, m); none by default."""
        return np.zeros((X.shape[0], 0))

    def check(self, theta, X, Y=None):
        """Validate and coerce ``θ (P,)``, ``X (B, d)``, ``Y (B, K)`` (or ``(B,)`` when K = 1)."""
        theta = _checks.as_float_array("theta", theta, 1)
        if theta.shape[0] != self.P:
            raise ValueError(f"theta has {theta.shape[0]} entries but {self.name} has P = {self.P}")
        X = _checks.as_float_array("X", X, (1, 2))
        if X.ndim == 1:
            X = X[None, :]
        if X.shape[1] != self.d:
            raise ValueError(f"X has {X.shape[1]} features but {self.name} takes d = {self.d}")
        if Y is None:
            return theta, X
        Y = _checks.as_float_array("Y", np.atleast_1d(np.asarray(Y)) if Y is not None else Y,
                                   (1, 2))
        if Y.ndim == 1:
            Y = Y[:, None] if self.K == 1 and Y.shape[0] == X.shape[0] else Y[None, :]
        if Y.shape != (X.shape[0], self.K):
            raise ValueError(f"Y has shape {Y.shape}; expected ({X.shape[0]}, {self.K}) "
                             f"(one row of K = {self.K} targets per example)")
        return theta, X, Y

    def unflatten(self, theta) -> dict:
        """The named tensors of θ, as views with their shapes."""
        return {k: theta[..., sl].reshape(theta.shape[:-1] + shape)
                for k, (sl, shape) in self.tensors.items()}

    def __repr__(self):
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
    """

    name = "MLP"

    def __init__(self, sizes, activation: str = "tanh", loss: str = "bce", bias: bool = True):
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
        for l in range(L):
            nin, nout = self.sizes[l], self.sizes[l + 1]
            pw.append(p)
            self.tensors[f"W{l + 1}"] = (slice(p, p + nout * nin), (nout, nin))
            p += nout * nin
            pb.append(p)
            if self.bias:
                self.tensors[f"b{l + 1}"] = (slice(p, p + nout), (nout,))
                p += nout
        self.P = p
        ao = np.concatenate([[0], np.cumsum(self.sizes[1:])])[:-1]
        # shape: [L, activation, loss, bias, sizes (L+1), W offsets (L), b offsets (L), act offsets (L)]
        self.shape = np.array([L, ACTIVATIONS[self.activation], LOSSES[self.loss_name],
                               int(self.bias), *self.sizes, *pw, *pb, *ao], dtype=np.int64)
        self.work_size = int(sum(self.sizes[1:]) + 2 * max(self.sizes))
        self.kernel = mlp_grad
        #: the bracket drivers use mlp_directional: its work size, and the first
        #: parameter it reads from the stencil points (layers 2.. only)
        self.builtin = True
        self.directional_work = self.work_size + 2 * self.sizes[1]
        self.stencil_start = pw[1] if L > 1 else self.P

    def __repr__(self):
        return (f"MLP({self.sizes}, activation={self.activation!r}, loss={self.loss_name!r}, "
                f"P={self.P})")

    # -- NumPy implementation (reference backend, oracles, analyses) --------------------------
    def init(self, seed: int = 0) -> np.ndarray:
        """Glorot-normal weights (variance 2/(fan_in + fan_out)), zero biases."""
        rs = np.random.default_rng(_checks.as_seed("seed", seed))
        theta = np.zeros(self.P)
        for name, (sl, shape) in self.tensors.items():
            if name.startswith("W"):
                nout, nin = shape
                theta[sl] = rs.standard_normal(nout * nin) * math.sqrt(2.0 / (nin + nout))
        return theta

    def _act(self, z):
        if self.activation == "tanh":
            return np.tanh(z)
        return np.where(z.real > 0, z, 0)

    def _dact(self, a):
        if self.activation == "tanh":
            return 1 - a * a
        return (a.real > 0).astype(np.float64)

    def _forward(self, theta, X):
        """Activations a_0 = X, ..., a_L = logits; θ (..., P) broadcasts to (..., B, ·)."""
        T = self.unflatten(np.asarray(theta))
        acts = [X]
        L = len(self.sizes) - 1
        for l in range(L):
            z = np.einsum("...oi,...bi->...bo", T[f"W{l + 1}"], acts[-1])
            if self.bias:
                z = z + T[f"b{l + 1}"][..., None, :]
            acts.append(self._act(z) if l < L - 1 else z)
        return T, acts

    def logits(self, theta, X):
        """Logits (B, K) (or (..., B, K) for a stack of θ)."""
        return self._forward(theta, X)[1][-1]

    def bracket_aux(self, theta, X, Y, G):
        """``[W₁x + b₁ (H₁) | δ₁ (H₁) | xᵢ·x + bias (B)]`` per example, for :func:`mlp_directional`.

        Computed by the compiled :func:`mlp_aux`, not NumPy: a BLAS call just
        before a parallel kernel leaves OpenBLAS threads spinning, which was
        measured to double the bracket kernel's time.
        """
        aux = np.empty((X.shape[0], 2 * self.sizes[1] + X.shape[0]))
        mlp_aux(theta, X, G, self.shape, aux)
        return aux

    def _output_delta(self, z, Y):
        if self.loss_name == "bce":
            with np.errstate(over="ignore"):
                sig = np.where(z.real >= 0, 1 / (1 + np.exp(-z)), np.exp(z) / (1 + np.exp(z)))
            return (sig - Y) / self.K
        return (z - Y) / self.K

    def loss(self, theta, X, Y):
        """Per-example loss (B,)."""
        z = self.logits(theta, X)
        if self.loss_name == "bce":
            per = np.maximum(z, 0) - z * Y + np.log1p(np.exp(-np.abs(z)))
        else:
            per = 0.5 * (z - Y) ** 2
        return per.mean(axis=-1)

    def grad(self, theta, X, Y):
        """Per-example gradients (B, P) by backpropagation (θ may be (S, P): → (S, B, P))."""
        theta = np.asarray(theta)
        T, acts = self._forward(theta, X)
        z = acts[-1]
        delta = self._output_delta(z, Y)
        lead = np.broadcast_shapes(theta.shape[:-1] + (1,), z.shape[:-1])
        out = np.zeros(lead + (self.P,), dtype=np.result_type(theta, X, z))
        for l in range(len(self.sizes) - 2, -1, -1):
            sl, shape = self.tensors[f"W{l + 1}"]
            out[..., sl] = (delta[..., :, None] * acts[l][..., None, :]).reshape(lead + (-1,))
            if self.bias:
                out[..., self.tensors[f"b{l + 1}"][0]] = delta
            if l > 0:
                delta = np.einsum("...bo,...oi->...bi", delta, T[f"W{l + 1}"]) * self._dact(acts[l])
        return out


class LinearRegression(MLP):
    """``L = ½ (wᵀx + b − y)²``: layout ``[w (1×d), b]`` (tensors ``W1``, ``b1``); Y may be (B,)."""

    name = "LinearRegression"

    def __init__(self, d: int, bias: bool = True):
        super().__init__([d, 1], activation="tanh", loss="mse", bias=bias)

    def __repr__(self):
        return f"LinearRegression(d={self.d}, bias={self.bias}, P={self.P})"


class MultiLabelLogistic(MLP):
    """``z = Wx + b``, K independent sigmoids, loss = mean binary cross-entropy over the K labels."""

    name = "MultiLabelLogistic"

    def __init__(self, d: int, K: int):
        super().__init__([d, K], activation="tanh", loss="bce", bias=True)

    def __repr__(self):
        return f"MultiLabelLogistic(d={self.d}, K={self.K}, P={self.P})"


class CustomModel(Model):
    """A user's model: a compiled per-example gradient and, optionally, NumPy functions.

    Parameters
    ----------
    kernel : numba.njit function ``grad(theta, x, y, shape, work, out, alpha, beta)``
        ``out ← alpha · gradient + beta · out`` (see the module docstring).
    P, d, K : int
        Parameters, input features, targets per example.
    work_size : int
        Scratch entries the kernel needs.
    shape : sequence of int, optional
        Passed to the kernel unchanged.
    tensors : dict, optional
        name → (slice, shape); default one tensor ``"theta"``.
    numpy_grad, loss, logits : callables, optional
        ``(θ, X, Y) → (B, P)``, ``(θ, X, Y) → (B,)``, ``(θ, X) → (B, K)``.
    init : callable, optional
        ``seed → θ``.
    """

    name = "CustomModel"

    def __init__(self, kernel, *, P, d, K, work_size=0, shape=(), tensors=None,
                 numpy_grad=None, loss=None, logits=None, init=None):
        if not hasattr(kernel, "py_func"):
            raise TypeError("kernel must be a numba.njit function "
                            "grad(theta, x, y, shape, work, out, alpha, beta)")
        self.kernel = kernel
        self.P = _checks.as_int("P", P, minimum=1)
        self.d = _checks.as_int("d", d, minimum=1)
        self.K = _checks.as_int("K", K, minimum=1)
        self.work_size = _checks.as_int("work_size", work_size, minimum=0)
        self.shape = np.asarray(shape, dtype=np.int64).reshape(-1)
        self.tensors = tensors or {"theta": (slice(0, self.P), (self.P,))}
        self._grad, self._loss, self._logits, self._init = numpy_grad, loss, logits, init

    def _need(self, fn, what):
        if fn is None:
            raise NotImplementedError(f"this CustomModel was given no {what}")
        return fn

    def grad(self, theta, X, Y):
        return self._need(self._grad, "numpy_grad")(theta, X, Y)

    def loss(self, theta, X, Y):
        return self._need(self._loss, "loss")(theta, X, Y)

    def logits(self, theta, X):
        return self._need(self._logits, "logits")(theta, X)

    def init(self, seed=0):
        return self._need(self._init, "init")(seed)


@njit(inline="always", **JIT)
def _activate(v, act):
    """tanh (act = 0) or ReLU (act = 1)."""
    return math.tanh(v) if act == 0 else max(v, 0.0)


@njit(inline="always", **JIT)
def _dactivate(a, act):
    """The activation's derivative, from its output a: 1 − a² (tanh) or [a > 0] (ReLU)."""
    return (1.0 - a * a) if act == 0 else (1.0 if a > 0.0 else 0.0)


@njit(inline="always", **JIT)
def _layer_matrix(v, shape, l):
    """Layer l's (out × in) block of a parameter-shaped vector (θ or a gradient), as a view."""
    L = shape[0]
    nin = shape[4 + l]
    nout = shape[5 + l]
    off = shape[5 + L + l]
    return v[off:off + nout * nin].reshape((nout, nin))


@njit(inline="always", **JIT)
def _layer_output(work, shape, l):
    """Layer l's activations in the work buffer, as a view."""
    L = shape[0]
    off = shape[5 + 3 * L + l]
    return work[off:off + shape[5 + l]]


@njit(inline="always", **JIT)
def _affine(W, theta, boff, bias, src, dst, hidden, act):
    """``dst = act(W src + b)`` (the activation only on hidden layers)."""
    for o in range(W.shape[0]):
        s = theta[boff + o] if bias else 0.0
        row = W[o]
        for i in range(W.shape[1]):
            s += row[i] * src[i]
        dst[o] = _activate(s, act) if hidden else s


@njit(inline="always", **JIT)
def _outer(delta, src, G, gb, bias, beta):
    """``G ← delta ⊗ src + beta G``, ``gb ← delta + beta gb`` (reads G only when beta ≠ 0)."""
    for o in range(G.shape[0]):
        dl = delta[o]
        row = G[o]
        if beta == 0.0:
            for i in range(G.shape[1]):
                row[i] = dl * src[i]
            if bias:
                gb[o] = dl
        else:
            for i in range(G.shape[1]):
                row[i] = dl * src[i] + beta * row[i]
            if bias:
                gb[o] = dl + beta * gb[o]


@njit(**JIT)
def mlp_grad(theta, x, y, shape, work, out, alpha, beta):
    """``out ← alpha · g + beta · out``, g the per-example gradient of :class:`MLP`.

    See :func:`_mlp_backprop` for the layout of ``shape`` and ``work``.
    """
    _mlp_backprop(theta, x, y, shape, work, out, alpha, beta, work[:0], work[:0])


@njit(inline="always", **JIT)
def _mlp_backprop(theta, x, y, shape, work, out, alpha, beta, acc0, z1):
    """Backpropagation. When ``acc0`` is non-empty the first layer's delta goes to
    ``acc0 += delta`` instead of out (the stencil sum of :func:`mlp_directional`);
    when ``z1`` is non-empty it is the first layer's pre-activation (θ's first layer
    is then not read).

    ``shape = [L, activation, loss, bias, sizes (L+1), W offsets (L), b offsets (L),
    activation offsets (L)]``; ``work`` holds the activations of layers 1..L
    followed by two delta buffers of ``max(sizes)`` entries. Each layer works on
    2-D views of θ and out (3× faster than flat index arithmetic, measured).
    """
    L = shape[0]
    act = shape[1]
    loss = shape[2]
    bias = shape[3] != 0
    sz = 4
    pw = sz + L + 1
    pb = pw + L
    nact = 0
    maxs = 0
    for l in range(L + 1):
        maxs = max(maxs, shape[sz + l])
        if l > 0:
            nact += shape[sz + l]
    dA = work[nact:nact + maxs]
    dB = work[nact + maxs:nact + 2 * maxs]
    # forward
    for l in range(L):
        W = _layer_matrix(theta, shape, l)
        dst = _layer_output(work, shape, l)
        if l == 0:
            if z1.shape[0] > 0:
                for o in range(dst.shape[0]):
                    dst[o] = _activate(z1[o], act) if L > 1 else z1[o]
            else:
                _affine(W, theta, shape[pb + l], bias, x, dst, L > 1, act)
        else:
            _affine(W, theta, shape[pb + l], bias, _layer_output(work, shape, l - 1), dst,
                    l < L - 1, act)
    # output delta: alpha · dL/dz
    K = shape[sz + L]
    z = _layer_output(work, shape, L - 1)
    for o in range(K):
        if loss == 0:
            if z[o] >= 0:
                sig = 1.0 / (1.0 + math.exp(-z[o]))
            else:
                ez = math.exp(z[o])
                sig = ez / (1.0 + ez)
            dA[o] = alpha * (sig - y[o]) / K
        else:
            dA[o] = alpha * (z[o] - y[o]) / K
    cur = dA
    nxt = dB
    # backward
    for l in range(L - 1, -1, -1):
        G = _layer_matrix(out, shape, l)
        gb = out[shape[pb + l]:shape[pb + l] + G.shape[0]]
        if l == 0:
            if acc0.shape[0] > 0:
                for o in range(G.shape[0]):
                    acc0[o] += cur[o]
            else:
                _outer(cur, x, G, gb, bias, beta)
        else:
            src = _layer_output(work, shape, l - 1)
            _outer(cur, src, G, gb, bias, beta)
            W = _layer_matrix(theta, shape, l)
            nin = W.shape[1]
            for i in range(nin):
                nxt[i] = 0.0
            for o in range(W.shape[0]):
                dl = cur[o]
                row = W[o]
                for i in range(nin):
                    nxt[i] += dl * row[i]
            for i in range(nin):
                nxt[i] *= _dactivate(src[i], act)
            cur, nxt = nxt, cur


@njit(**JIT)
def mlp_directional(shape, pts, w, c, hx, xi, yi, aux, X, Y, work, out):
    """``out = Σ_j w_j g_y(θ + c_j h_x g_x) / h_x`` for :class:`MLP`, exploiting the first layer.

    The first-layer block of g_x is ``δ₁ₓ ⊗ xₓ`` (and δ₁ₓ for its bias), so at the
    stencil point j example y's first pre-activation is, exactly,
    ``z₁ = (W₁ x_y + b₁) + c_j h_x (xₓ·x_y + 1) δ₁ₓ``: O(H₁) instead of O(H₁·d)
    given ``aux`` (:meth:`MLP.bracket_aux`: per example W₁x + b₁, δ₁, and the
    Gram row xₓ·x_y + 1). The first layer's gradient, ``δ₁ ⊗ x_y``, has the
    same x_y at every stencil point, so its stencil sum is written once:
    ``(Σ_j w_j δ₁(θ_j)/h_x) ⊗ x_y``. Deeper layers are evaluated at ``pts[j]``,
    which the driver fills from ``stencil_start`` on. ``work``: ``directional_work``
    entries. No function is passed in, so this and its drivers can be cached
    (Numba's cache index breaks on signatures holding other jitted functions).
    """
    L = shape[0]
    b1 = shape[5 + 2 * L]  # offset of the first bias
    bias = shape[3] != 0
    H1 = shape[5]
    base = work.shape[0] - 2 * H1
    acc = work[base:base + H1]
    z1 = work[base + H1:base + 2 * H1]
    inner = work[:base]
    for k in range(H1):
        acc[k] = 0.0
    kb = aux[xi, 2 * H1 + yi]
    invh = 1.0 / hx
    for j in range(pts.shape[0]):
        s = c[j] * hx * kb
        for o in range(H1):
            z1[o] = aux[yi, o] + s * aux[xi, H1 + o]
        _mlp_backprop(pts[j], X[yi], Y[yi], shape, inner, out, w[j] * invh,
                      0.0 if j == 0 else 1.0, acc, z1)
    _outer(acc, X[yi], _layer_matrix(out, shape, 0), out[b1:b1 + H1], bias, 0.0)


@njit(**PARALLEL)
def mlp_aux(theta, X, G, shape, aux):
    """Per example b: ``aux[b] = [W₁x_b + b₁ | δ₁ᵦ | x_b·x_c + bias for every c]``.

    δ₁ is read off the gradient: the first bias block when there is one, else
    ``G_W₁ x / (x·x)`` (G_W₁ = δ₁ ⊗ x; zero when x = 0, where it does not matter).
    """
    L = shape[0]
    pb0 = shape[5 + 2 * L]  # offset of the first bias
    bias = shape[3] != 0
    d = shape[4]
    H1 = shape[5]
    B = X.shape[0]
    W1 = _layer_matrix(theta, shape, 0)
    for b in prange(B):
        x = X[b]
        for o in range(H1):
            s = theta[pb0 + o] if bias else 0.0
            row = W1[o]
            for i in range(d):
                s += row[i] * x[i]
            aux[b, o] = s
        xx = 0.0
        for i in range(d):
            xx += x[i] * x[i]
        for o in range(H1):
            if bias:
                aux[b, H1 + o] = G[b, pb0 + o]
            else:
                Gb = _layer_matrix(G[b], shape, 0)[o]
                s = 0.0
                for i in range(d):
                    s += Gb[i] * x[i]
                aux[b, H1 + o] = s / xx if xx > 0.0 else 0.0
        for c in range(B):
            s = 1.0 if bias else 0.0
            for i in range(d):
                s += x[i] * X[c, i]
            aux[b, 2 * H1 + c] = s
