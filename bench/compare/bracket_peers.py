"""Bracket peers: exact Hessian-vector products in PyTorch (torch.func) and JAX.

Each returns a zero-argument callable computing all (B, B, P) brackets
``[v_x, v_y] = H_y g_x − H_x g_y`` of an MLP with tanh hidden layers and mean
binary cross-entropy over K independent sigmoids — the model of
``fastperm.models.MLP(sizes)`` — with the parameters given as fastperm's flat θ.
"""

import numpy as np


def _layers(model, theta):
    T = model.unflatten(theta)
    L = len(model.sizes) - 1
    return [(T[f"W{layer + 1}"], T[f"b{layer + 1}"]) for layer in range(L)]


def torch_func_runner(model, theta, X, Y):
    """vmap over x and y of forward-over-reverse HVPs (torch.func.jvp of torch.func.grad)."""
    import torch
    from torch.func import grad, jvp, vmap

    torch.set_num_threads(1)
    params = [
        torch.as_tensor(np.ascontiguousarray(a)) for pair in _layers(model, theta) for a in pair
    ]
    Xt, Yt = torch.as_tensor(X), torch.as_tensor(Y)

    def loss(ps, x, y):
        a = x
        n = len(ps) // 2
        for layer in range(n):
            a = ps[2 * layer] @ a + ps[2 * layer + 1]
            if layer < n - 1:
                a = torch.tanh(a)
        return torch.nn.functional.binary_cross_entropy_with_logits(a, y)

    g = grad(loss)
    G = vmap(g, in_dims=(None, 0, 0))(params, Xt, Yt)  # per-example gradients, list of (B, ...)

    def hvp(u, x, y):  # H_y u
        return jvp(lambda ps: g(ps, x, y), (params,), (u,))[1]

    over_y = vmap(hvp, in_dims=(None, 0, 0))
    all_pairs = vmap(over_y, in_dims=(0, None, None))

    def run():
        D = all_pairs(G, Xt, Yt)  # D[x][y] = H_y g_x, per tensor
        flat = torch.cat([d.reshape(d.shape[0], d.shape[1], -1) for d in D], dim=-1)
        return flat - flat.transpose(0, 1)

    return run


def torch_func_rms_runner(model, theta, X, Y):
    """The per-tensor RMS of the brackets of all pairs a < b, by hand in torch.func (one
    torch thread): vmap over the pairs of forward-over-reverse HVPs, then the reduction."""
    import torch
    from torch.func import grad, jvp, vmap

    torch.set_num_threads(1)
    params = [
        torch.as_tensor(np.ascontiguousarray(a)) for pair in _layers(model, theta) for a in pair
    ]
    Xt, Yt = torch.as_tensor(X), torch.as_tensor(Y)
    a, b = torch.triu_indices(X.shape[0], X.shape[0], 1)

    def loss(ps, x, y):
        h = x
        n = len(ps) // 2
        for layer in range(n):
            h = ps[2 * layer] @ h + ps[2 * layer + 1]
            if layer < n - 1:
                h = torch.tanh(h)
        return torch.nn.functional.binary_cross_entropy_with_logits(h, y)

    g = grad(loss)

    def hvp(u, x, y):
        return jvp(lambda ps: g(ps, x, y), (params,), (u,))[1]

    H = vmap(hvp, in_dims=(0, 0, 0))

    def run():
        G = vmap(g, in_dims=(None, 0, 0))(params, Xt, Yt)
        D_ab = H([t[a] for t in G], Xt[b], Yt[b])
        D_ba = H([t[b] for t in G], Xt[a], Yt[a])
        return torch.stack(
            [
                (p - q).reshape(p.shape[0], -1).pow(2).mean(dim=1).sqrt()
                for p, q in zip(D_ab, D_ba, strict=True)
            ],
            dim=1,
        ).numpy()

    return run


def torch_model_runner(model, theta, X, Y):
    """fastperm.models.TorchModel of a torch.nn.Sequential holding the same weights (one
    torch thread, as torch_func_runner): torch.func's brackets plus TorchModel's overhead."""
    import torch

    from fastperm import lie, models

    torch.set_num_threads(1)
    layers = []
    for i, (W, b) in enumerate(_layers(model, theta)):
        lin = torch.nn.Linear(W.shape[1], W.shape[0]).double()
        with torch.no_grad():
            lin.weight.copy_(torch.as_tensor(W))
            lin.bias.copy_(torch.as_tensor(b))
        layers += [lin] if i == len(model.sizes) - 2 else [lin, torch.nn.Tanh()]
    tm = models.TorchModel(
        torch.nn.Sequential(*layers), torch.nn.functional.binary_cross_entropy_with_logits
    )
    Xt, Yt = torch.as_tensor(X), torch.as_tensor(Y)
    return lambda: lie.brackets(tm, None, Xt, Yt)


def jax_runner(model, theta, X, Y):
    """jit of vmap over x and y of jax.jvp of jax.grad (float64)."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    params = [jnp.asarray(a) for pair in _layers(model, theta) for a in pair]
    Xj, Yj = jnp.asarray(X), jnp.asarray(Y)

    def loss(ps, x, y):
        a = x
        n = len(ps) // 2
        for layer in range(n):
            a = ps[2 * layer] @ a + ps[2 * layer + 1]
            if layer < n - 1:
                a = jnp.tanh(a)
        return jnp.mean(jnp.maximum(a, 0) - a * y + jnp.log1p(jnp.exp(-jnp.abs(a))))

    g = jax.grad(loss)

    @jax.jit
    def run():
        G = jax.vmap(g, in_axes=(None, 0, 0))(params, Xj, Yj)

        def hvp(u, x, y):
            return jax.jvp(lambda ps: g(ps, x, y), (params,), (u,))[1]

        D = jax.vmap(jax.vmap(hvp, in_axes=(None, 0, 0)), in_axes=(0, None, None))(G, Xj, Yj)
        flat = jnp.concatenate([d.reshape(d.shape[0], d.shape[1], -1) for d in D], axis=-1)
        return flat - jnp.swapaxes(flat, 0, 1)

    return lambda: jax.block_until_ready(run())
