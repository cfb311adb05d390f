"""Deep linear networks trained with Gaussian input noise: the exact expected gradient.

The network ``f(x) = uᵀ W_L ⋯ W_1 x`` (sizes ``[d, h_1, …, h_L]``, W_l of shape
h_l × h_{l−1}, u of length h_L) is linear in x, so with x' = x + σε (ε ~ N(0, I))
the output ``f(x') = vᵀx + σ vᵀε`` is linear in the noise, where
``v = W_1ᵀ ⋯ W_Lᵀ u`` is the end-to-end vector. Loss ``ℓ = ½ (f(x') − y)²``.

Derivation. Write ``h_l = W_l ⋯ W_1 x`` (h_0 = x) for the clean activations,
``B_l = W_{l−1} ⋯ W_1`` (B_1 = I), ``a_l = W_{l+1}ᵀ ⋯ W_Lᵀ u`` (a_L = u) for the
backward vectors, and ``r = vᵀx − y``. With noise the residual is
``r' = r + σ vᵀε`` and layer l's input is ``B_l x' = h_{l−1} + σ B_l ε``, so

    ∂ℓ/∂W_l = r' a_l (B_l x')ᵀ,        ∂ℓ/∂u = r' (B_{L+1} x').

Only the product ``r' · B_l x'`` is random; with E[ε] = 0, E[εεᵀ] = I,

    E[r' B_l x'] = r h_{l−1} + σ² B_l v,

hence the exact expected gradient, one rank-one correction per layer:

    E[∂ℓ/∂W_l] = a_l (r h_{l−1} + σ² B_l v)ᵀ,     E[∂ℓ/∂u] = r h_L + σ² B_{L+1} v.

No layer covariance is needed: ``B_l v`` is v pushed forward through the first
l − 1 layers, one extra forward pass. Equivalently (check by differentiating),
``E[ℓ] = ½ (vᵀx − y)² + (σ²/2) |v|²``: noise on the input of a deep linear
network is ridge on its end-to-end vector (the L = 0 case is Bishop 1995; the
deep case follows because the output stays linear in ε). This answers, for
linear networks, the open question of the post "Perturbation Invariant
Gradients: Permutation Case Study" (the expected gradient under Gaussian
perturbations of a multi-layer linear model).

Training (:func:`train`): each step computes the vectors ``m_l = E[r' B_{l+1} x']``
(k = ∞, closed form above) or their mean over k noisy copies (k-fold, copies drawn
by the counter-based generator of :mod:`fastperm.rng`, the ``Gaussian`` spec), then
updates ``W_l ← W_l − lr a_l m_{l−1}ᵀ``, ``u ← u − lr m_L``. Cost per step:
k = ∞ ≈ 3 passes over the parameters (forward of x, forward of v, the update) plus
the backward pass; k-fold ≈ k + 2 passes. The recorded loss is the library's
``mean((v − w*)²)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _checks, _runs, results
from ._typing import FloatArray, IntArray, Sampling
from .backends.reference import deep_linear as _maths  # the NumPy maths (also the oracle)
from .problems import LinearProblem, as_problem
from .results import TrainResult


class DeepLinear:
    """``f(x) = uᵀ W_L ⋯ W_1 x``; θ = [W_1 (row-major), …, W_L, u].

    Parameters
    ----------
    sizes : list of int
        ``[d, h_1, …, h_L]`` (L ≥ 0 hidden maps; ``[d]`` alone is the linear model uᵀx).

    Examples
    --------
    >>> import numpy as np
    >>> from fastperm.deep_linear import DeepLinear
    >>> net = DeepLinear([10, 5, 3])  # W_1 (5 × 10), W_2 (3 × 5), u (3,)
    >>> net
    DeepLinear([10, 5, 3], P=68)
    >>> theta = net.init(seed=0)
    >>> x, y = np.linspace(-1.0, 1.0, 10), 1.0
    >>> Ws, u = net.unpack(theta)
    >>> bool(np.isclose(net.end_to_end(theta) @ x, u @ Ws[1] @ Ws[0] @ x))  # f(x) = vᵀx
    True

    The exact expected gradient under input noise, and a Monte Carlo estimate of it:

    >>> g = net.expected_grad(theta, x, y, sigma=0.5)
    >>> eps = np.random.default_rng(0).standard_normal((4000, 10))
    >>> mc = net.noisy_grads(theta, x, y, 0.5, eps).mean(axis=0)
    >>> g.shape, bool(np.linalg.norm(mc - g) < 0.1 * np.linalg.norm(g))
    ((68,), True)
    """

    sizes: IntArray
    offs: IntArray

    def __init__(self, sizes: Sequence[int]) -> None:
        if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__len__") or len(sizes) < 1:
            raise ValueError(f"sizes must list [d, h_1, ..., h_L], got {sizes!r}")
        self.sizes = np.array(
            [_checks.as_int(f"sizes[{i}]", s, minimum=1) for i, s in enumerate(sizes)],
            dtype=np.int64,
        )
        self.L = len(sizes) - 1
        self.d = int(self.sizes[0])
        offs = [0]
        for layer in range(1, self.L + 1):
            offs.append(offs[-1] + int(self.sizes[layer] * self.sizes[layer - 1]))
        self.offs = np.array(offs, dtype=np.int64)  # offs[l-1]: start of W_l; offs[L]: u
        self.P = offs[-1] + int(self.sizes[-1])

    def __repr__(self) -> str:
        return f"DeepLinear({self.sizes.tolist()}, P={self.P})"

    def unpack(self, theta: FloatArray) -> tuple[list[FloatArray], FloatArray]:
        """``([W_1, …, W_L], u)`` as views of θ."""
        return _maths.unpack(theta, self.sizes, self.offs)

    def init(self, seed: int = 0, scale: float | None = None) -> FloatArray:
        """Gaussian entries, variance ``scale² / fan_in`` (scale 1 by default)."""
        rs = np.random.default_rng(seed)
        theta = np.empty(self.P)
        Ws, u = self.unpack(theta)
        s = 1.0 if scale is None else float(scale)
        for W in Ws:
            W[:] = s * rs.standard_normal(W.shape) / math.sqrt(W.shape[1])
        u[:] = s * rs.standard_normal(u.shape) / math.sqrt(u.shape[0])
        return theta

    def end_to_end(self, theta: npt.ArrayLike) -> FloatArray:
        """``v = W_1ᵀ ⋯ W_Lᵀ u``, so that f(x) = vᵀx."""
        return _maths.end_to_end(self._theta(theta), self.sizes, self.offs)

    def _theta(self, theta: object) -> FloatArray:
        theta = _checks.as_float_array("theta", theta, 1)
        if theta.shape[0] != self.P:
            raise ValueError(f"theta has {theta.shape[0]} entries; this network has P = {self.P}")
        return theta

    def grad(self, theta: npt.ArrayLike, x: npt.ArrayLike, y: float) -> FloatArray:
        """Plain gradient of ``½ (f(x) − y)²`` at one input."""
        return self.expected_grad(theta, x, y, 0.0)

    def expected_grad(
        self, theta: npt.ArrayLike, x: npt.ArrayLike, y: float, sigma: float
    ) -> FloatArray:
        """``E_ε[∇θ ½ (f(x + σε) − y)²]``, exactly (module docstring)."""
        theta, x, y = self._example(theta, x, y)
        sigma = _checks.as_nonnegative_real("sigma", sigma)
        return _maths.expected_grad(theta, self.sizes, self.offs, x, y, sigma)

    def _example(self, theta: object, x: object, y: object) -> tuple[FloatArray, FloatArray, float]:
        """Validated ``(θ, x, y)`` of one example."""
        theta = self._theta(theta)
        x = _checks.as_float_array("x", x, 1)
        if x.shape[0] != self.d:
            raise ValueError(f"x has {x.shape[0]} entries; the network takes d = {self.d}")
        return theta, x, _checks.as_finite_real("y", y)

    def noisy_grads(
        self, theta: npt.ArrayLike, x: npt.ArrayLike, y: float, sigma: float, eps: npt.ArrayLike
    ) -> FloatArray:
        """Gradients at the noisy inputs ``x + σ eps[j]``: (len(eps), P) (for Monte Carlo)."""
        theta, x, y = self._example(theta, x, y)
        sigma = _checks.as_nonnegative_real("sigma", sigma)
        eps = _checks.as_float_array("eps", eps, 2)
        if eps.shape[1] != self.d:
            raise ValueError(
                f"eps has {eps.shape[1]} entries per draw; the network takes d = {self.d}"
            )
        return np.stack(
            [_maths.expected_grad(theta, self.sizes, self.offs, x + sigma * e, y, 0.0) for e in eps]
        )


def train(
    problem: LinearProblem,
    net: DeepLinear,
    k: float,
    *,
    sigma: float,
    seeds: npt.ArrayLike = (0,),
    lr: npt.ArrayLike = 1e-3,
    steps: int = 1000,
    sampling: Sampling = "fixed",
    theta0: npt.ArrayLike | None = None,
    record_every: int = 1,
    backend: str | None = None,
    cache_bytes: int | None = None,
    threads: int | None = None,
    client: Any = None,
) -> TrainResult:
    """Noise-augmented SGD of a deep linear network on a linear problem, R runs in one call.

    Step t visits example ``i = t mod n`` and steps with the mean gradient over its k
    noisy copies ``x_i + σ ε`` (copy 0 is noisy too: all k are draws), or with the exact
    expected gradient for ``k = math.inf`` (module docstring).

    Parameters
    ----------
    problem : LinearProblem
    net : DeepLinear
        Its input size must be the problem's d.
    k : int >= 1 or math.inf
    sigma : float >= 0
        Noise standard deviation.
    seeds : int or sequence of int
        One run per seed (noise keyed like ``augment.Gaussian``: fixed mode by
        (example, copy), fresh mode by (step, copy)).
    lr : float > 0
    theta0 : (P,) or (runs, P) array, optional
        Start; ``net.init(0)`` by default.
    backend : {"numba", "numpy"} or None
        By default the first available that implements it.
    cache_bytes : int, optional
        Memory the fixed noisy copies may be kept in (n·k·d·8 bytes per concurrent run);
        default :data:`fastperm.knobs.CACHE_BYTES`. Never changes results.
    threads : int, optional
        Threads for this call (as in :func:`fastperm.train`). Never changes results.
    client : dask.distributed.Client, optional
        Spread the runs over a Dask cluster (:mod:`fastperm.distributed`); the same result.

    Returns
    -------
    TrainResult
        ``.loss`` (runs, records) of ``mean((v − w*)²)`` for the end-to-end vector v,
        ``.w`` the final v (runs, d), ``.meta["theta"]`` the final parameters (runs, P).

    Examples
    --------
    >>> import math
    >>> import numpy as np
    >>> from fastperm import LinearProblem, deep_linear
    >>> problem = LinearProblem.sample(d=10, n=20, seed=0)
    >>> net = deep_linear.DeepLinear([10, 5, 3])
    >>> res = deep_linear.train(problem, net, math.inf, sigma=0.1, seeds=[0, 1], lr=0.01,
    ...                         steps=200, record_every=100, backend="numpy")
    >>> res.loss.shape, res.w.shape, res.meta["theta"].shape
    ((2, 3), (2, 10), (2, 68))
    >>> np.round(res.loss, 6)  # k = ∞ draws nothing: both runs alike
    array([[1.113676, 0.049632, 0.014263],
           [1.113676, 0.049632, 0.014263]])
    >>> res = deep_linear.train(problem, net, 4, sigma=0.1, seeds=[0, 1], lr=0.01,
    ...                         steps=200, record_every=100, backend="numpy")
    >>> np.round(res.loss, 6)  # 4 noisy copies per step, keyed by the seed
    array([[1.113676, 0.050474, 0.016184],
           [1.113676, 0.05408 , 0.019087]])
    """
    problem = as_problem(problem)
    if not isinstance(net, DeepLinear):
        raise TypeError(f"net must be a fastperm.deep_linear.DeepLinear, got {type(net).__name__}")
    if net.d != problem.d:
        raise ValueError(f"net takes d = {net.d} inputs but the problem has d = {problem.d}")
    k = _checks.as_k(k)
    sigma = _checks.as_nonnegative_real("sigma", sigma)
    steps = _checks.as_int("steps", steps, minimum=0, maximum=2**32 - 2)
    sampling = _checks.as_choice("sampling", sampling, _checks.SAMPLINGS)
    record_every = _checks.as_int("record_every", record_every, minimum=1)
    cache_bytes = _runs.as_cache_bytes(cache_bytes)
    threads = _runs.as_threads(threads)
    seeds, lr = _checks.seeds_and_lr(seeds, lr)
    R = lr.shape[0]
    if theta0 is None:
        T0 = net.init(0)[None, :]
    else:
        T0 = _checks.as_float_array("theta0", theta0, (1, 2))
        T0 = T0[None, :] if T0.ndim == 1 else T0
        if T0.shape[1] != net.P or T0.shape[0] not in (1, R):
            raise ValueError(
                f"theta0 must be (P,) or (runs, P) with P = {net.P}, runs = {R}; got {T0.shape}"
            )
        T0 = np.ascontiguousarray(T0)
    with np.errstate(all="ignore"):
        V0 = np.stack([net.end_to_end(t) for t in T0])
    problem.check_start(V0, "theta0")
    rec = _runs.record_steps(steps, record_every)
    n, d = problem.X.shape
    kk = _runs.k_code(k)
    out = _runs.run_outputs(R, rec.shape[0] - 1, net.P)
    values: dict[str, Any] = {  # the kernel's arguments by name (contract.FAMILIES)
        "X": problem.X,
        "y": problem.y,
        "w_star": problem.known_w_star(
            "a deep linear network's loss mean((v − w*)²)", "train it on a problem with w*"
        ),
        "Theta0": T0,
        "sizes": net.sizes,
        "offs": net.offs,
        "lr": lr,
        "seeds": seeds,
        "k": kk,
        "sigma": sigma,
        "steps": steps,
        "fresh": sampling == "fresh",
        "record_steps": rec,
        "loss_out": out["loss_out"],
        "theta_out": out["w_out"],
        "status_out": out["status_out"],
    }
    keep = kk > 0 and sampling == "fixed" and steps > n
    call = _runs.Call(
        "deep_linear_runs",
        values,
        R,
        R * steps * 4.0 * net.P * max(kk, 1),
        cache_bytes_per_holder=n * kk * d * 8 if keep else 0,
        cache_bytes=cache_bytes,
    )
    done = _runs.run(call, backend=backend, threads=threads, client=client)
    loss, theta, status = values["loss_out"], values["theta_out"], values["status_out"]
    with np.errstate(all="ignore"):  # a diverged run's θ is NaN (reported above)
        V = np.stack([_maths.end_to_end(t, net.sizes, net.offs) for t in theta])
    return TrainResult(
        rec[:-1],
        loss,
        V,
        status,
        done.seconds,
        k,
        lr,
        seeds,
        sampling,
        f"gaussian(sigma={sigma:g}) on {net!r}",
        done.backend,
        meta={
            "problem": problem.describe(),
            "net": repr(net),
            "sigma": sigma,
            "steps": steps,
            "record_every": record_every,
            "theta0": T0,
            "theta": theta,
            **done.metadata(call.family),
            **results.environment(),
        },
    )
