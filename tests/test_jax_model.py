"""JaxModel (issue 17, item 4): brackets of a JAX model, checked against fastperm's exact
complex-step brackets of the same function, each other (forward over reverse, reverse over
reverse, finite differences), the swap identity, and the reductions of the full brackets."""

import numpy as np
import pytest

from fastperm import knobs, lie, models

jax = pytest.importorskip("jax")
jnp = jax.numpy
jax.config.update("jax_enable_x64", True)


def _apply(p, X):
    return jnp.tanh(X @ p["W1"].T + p["b1"]) @ p["W2"].T + p["b2"]


def _bce(out, y):  # the built-in MLP's loss: mean over labels of the stable BCE
    return jnp.mean(jnp.maximum(out, 0) - out * y + jnp.log1p(jnp.exp(-jnp.abs(out))))


@pytest.fixture(scope="module")
def case():
    model = models.MLP([4, 5, 3])
    theta = model.init(seed=3)
    rs = np.random.default_rng(0)
    X, Y = rs.standard_normal((6, 4)), rs.integers(0, 2, (6, 3)).astype(float)
    params = {k: np.array(v) for k, v in model.unflatten(theta).items()}
    jm = models.JaxModel(_apply, params, _bce)
    # the pytree's order (W1, W2, b1, b2) → the built-in layout (W1, b1, W2, b2)
    order = np.concatenate([np.arange(model.P)[model.tensors[k[2:-2]][0]] for k in jm.tensors])
    return model, theta, X, Y, jm, order


def test_same_function_same_brackets(case):
    model, theta, X, Y, jm, order = case
    exact = lie.exact_brackets(model, theta, X, Y)[:, :, order]
    b = lie.brackets(jm, None, X, Y)
    assert np.abs(b - exact).max() < 1e-12 * np.abs(exact).max()
    np.testing.assert_array_equal(b, -b.transpose(1, 0, 2))
    assert not np.any(b[np.arange(6), np.arange(6)])
    rev = lie.brackets(jm, None, X, Y, method="reverse")
    assert np.abs(rev - b).max() < 1e-13 * np.abs(b).max()
    fd, err = lie.brackets(jm, None, X, Y, pairs=[(0, 1), (2, 5)], method="fd", return_error=True)
    for q, (a, c) in enumerate([(0, 1), (2, 5)]):
        assert np.linalg.norm(fd[q] - exact[a, c]) < 10 * err[q] + 1e-12
    # the comparison can fail: the pytree's own order is not the built-in layout
    assert np.abs(b - lie.exact_brackets(model, theta, X, Y)).max() > 1e-3


def test_reductions_logits_and_swap(case, monkeypatch):
    model, theta, X, Y, jm, order = case
    monkeypatch.setattr(knobs, "TORCH_CHUNK_BYTES", 8 * 8 * jm.P * 2)  # 2 pairs per chunk
    rms = lie.tensor_rms(jm, [theta[order], 0.7 * theta[order]], X, Y)
    for c, th in enumerate([theta[order], 0.7 * theta[order]]):
        full = lie.brackets(jm, th, X, Y, pairs=rms.pairs)
        for name, (sl, _) in jm.tensors.items():
            want = np.sqrt(np.mean(full[:, sl] ** 2, axis=1))
            np.testing.assert_allclose(rms.rms_bracket[name][c], want, rtol=1e-12)
    Z = X[::-1]
    got = lie.bracket_logits(jm, None, X, Y, Z)
    kernel = lie.bracket_logits(model, theta, X, Y, Z, method="exact")
    assert np.abs(got - kernel).max() < 1e-12 * np.abs(kernel).max()
    b = lie.brackets(jm, None, X, Y, pairs=[(0, 1)])[0]
    lrs = np.array([1e-2, 5e-3, 2.5e-3])
    errs = [np.linalg.norm(lie.swap_difference(jm, None, (X[0], Y[0]), (X[1], Y[1]), lr) / lr**2
                           - b) for lr in lrs]  # fmt: skip
    slope = np.polyfit(np.log(lrs), np.log(errs), 1)[0]
    assert 0.8 < slope < 1.2, (slope, errs)


def test_float32_and_what_is_refused(case):
    model, theta, X, Y, jm, order = case
    p32 = {k: np.array(v, dtype=np.float32) for k, v in model.unflatten(theta).items()}
    j32 = models.JaxModel(_apply, p32, _bce)
    b = lie.brackets(j32, None, X, Y)
    assert b.dtype == np.float32
    exact = lie.exact_brackets(model, theta, X, Y)[:, :, order]
    assert np.abs(b - exact).max() < 1e-4 * np.abs(exact).max()
    fd = lie.brackets(j32, None, X, Y, method="fd")  # float32's step, not float64's
    assert np.abs(fd - exact).max() < 1e-2 * np.abs(exact).max()
    with pytest.raises(TypeError, match="float32 or all float64"):
        models.JaxModel(_apply, {"W1": np.ones((2, 2), dtype=np.int64)}, _bce)
    with pytest.raises(ValueError, match="backend= and client="):
        lie.brackets(jm, None, X, Y, backend="numba")
    with pytest.raises(ValueError, match="theta has shape"):
        lie.brackets(jm, np.zeros(3), X, Y)
    jax.config.update("jax_enable_x64", False)
    try:
        with pytest.raises(ValueError, match="x64 mode is off"):
            models.JaxModel(_apply, {k: np.array(v) for k, v in model.unflatten(theta).items()},
                            _bce)  # fmt: skip
    finally:
        jax.config.update("jax_enable_x64", True)
