"""TorchModel (issue 17, item 1): brackets of a user's PyTorch module by torch.func, checked
against fastperm's exact complex-step brackets of the same function, the bracket identities,
the swap identity, and each other (forward over reverse, reverse over reverse, finite
differences); reductions equal the reductions of the full brackets."""

import numpy as np
import pytest

from fastperm import lie, models

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _mlp_as_torch(model, theta):
    """A torch module computing the built-in MLP [4, 5, 3] (tanh, bce) at θ."""
    net = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    net = net.double()
    with torch.no_grad():
        for p, (sl, shape) in zip(net.parameters(), model.tensors.values(), strict=True):
            p.copy_(torch.as_tensor(theta[sl]).view(shape))
    return net


@pytest.fixture(scope="module")
def mlp_case():
    model = models.MLP([4, 5, 3])
    theta = model.init(seed=3)
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((6, 4)), rng.integers(0, 2, (6, 3)).astype(float)
    tm = models.TorchModel(_mlp_as_torch(model, theta), F.binary_cross_entropy_with_logits)
    return model, theta, X, Y, tm


def test_same_function_same_brackets(mlp_case):
    model, theta, X, Y, tm = mlp_case
    exact = lie.exact_brackets(model, theta, X, Y)
    assert tm.P == model.P and list(tm.tensors) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    np.testing.assert_allclose(tm.theta(), theta, rtol=0, atol=0)
    for method in ("forward", "reverse"):
        got = lie.brackets(tm, None, X, Y, method=method)
        assert got.dtype == np.float64 and got.shape == exact.shape
        np.testing.assert_allclose(got, exact, rtol=0, atol=1e-12 * np.abs(exact).max())
    fd, err = lie.brackets(tm, theta, X, Y, method="fd", return_error=True)
    off = np.sqrt(((fd - exact) ** 2).sum(axis=-1))
    assert np.all(off <= 10 * err + 1e-13)  # within the FD error estimate
    assert np.allclose(fd, lie.brackets(model, theta, X, Y), rtol=1e-6, atol=1e-12)


def test_exact_oracle_rejects_a_planted_error(mlp_case):
    model, theta, X, Y, tm = mlp_case
    got = lie.brackets(tm, None, X, Y)
    got[1, 4, 7] *= 1 + 1e-9
    exact = lie.exact_brackets(model, theta, X, Y)
    assert not np.allclose(got, exact, rtol=0, atol=1e-12 * np.abs(exact).max())


def _cnn():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 3, 3), torch.nn.Tanh(), torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 4)
    ).double()
    X = torch.randn(5, 1, 6, 6, dtype=torch.float64)
    Y = (torch.rand(5, 4) > 0.5).double()
    return models.TorchModel(net, F.binary_cross_entropy_with_logits), X, Y


def test_cnn_identities():
    tm, X, Y = _cnn()
    b = lie.brackets(tm, None, X, Y)
    np.testing.assert_array_equal(b, -b.transpose(1, 0, 2))
    assert not np.any(b[np.arange(5), np.arange(5)])
    np.testing.assert_allclose(lie.brackets(tm, None, X, Y, method="reverse"), b, rtol=1e-10,
                               atol=1e-14)  # fmt: skip
    pairs = [(0, 3), (4, 1), (2, 2)]
    # (batched convolutions may round differently for another number of pairs)
    np.testing.assert_allclose(lie.brackets(tm, None, X, Y, pairs=pairs),
                               b[[0, 4, 2], [3, 1, 2]], rtol=1e-12, atol=1e-16)  # fmt: skip


def _cnn_field_bracket(tm, theta, X, Y, a, b, c, t):
    """[[v_a, v_b], v_c] = −H_c V + DV·g_c, V = [v_a, v_b] (exact brackets; H_c V exactly by
    forward over reverse, DV·g_c by a central difference of the exact V along g_c)."""
    th = torch.as_tensor(theta)
    gc = tm.grad(th, X[c], Y[c]).numpy()

    def V(at):
        return lie.brackets(tm, at, X, Y, pairs=[(a, b)])[0]

    v = V(theta)
    Hc_v = tm.flatten(tm.hvp("forward")(tm.unflatten(th), tm.unflatten(torch.as_tensor(v)),
                                        X[c], Y[c]), 0).numpy()  # fmt: skip
    DV_gc = (V(theta + t * gc) - V(theta - t * gc)) / (2 * t)
    return -Hc_v + DV_gc


def test_jacobi_identity_on_a_cnn():
    """[[v_a, v_b], v_c] + [[v_b, v_c], v_a] + [[v_c, v_a], v_b] = 0 for three examples of a
    small CNN; the check fails for a wrong sign of one term."""
    tm, X, Y = _cnn()
    theta = tm.theta()
    t = 1e-4 / np.linalg.norm(tm.grads(torch.as_tensor(theta), X, Y).numpy(), axis=1).max()
    terms = [
        _cnn_field_bracket(tm, theta, X, Y, 0, 1, 2, t),
        _cnn_field_bracket(tm, theta, X, Y, 1, 2, 0, t),
        _cnn_field_bracket(tm, theta, X, Y, 2, 0, 1, t),
    ]
    scale = max(np.linalg.norm(T) for T in terms)
    assert np.linalg.norm(sum(terms)) < 1e-6 * scale
    assert np.linalg.norm(terms[0] + terms[1] - terms[2]) > 1e-2 * scale  # can fail


def test_swap_identity_on_a_cnn():
    """θ_ab − θ_ba = lr² [v_a, v_b] + O(lr³): the error of lr²·bracket falls as lr³ (slope 1
    once divided by lr²)."""
    tm, X, Y = _cnn()
    b = lie.brackets(tm, None, X, Y, pairs=[(0, 1)])[0]
    lrs = np.array([1e-2, 5e-3, 2.5e-3])
    errs = []
    for lr in lrs:
        d = lie.swap_difference(tm, None, (X[0], Y[0]), (X[1], Y[1]), lr)
        errs.append(np.linalg.norm(d / lr**2 - b))
    slope = np.polyfit(np.log(lrs), np.log(errs), 1)[0]
    assert 0.8 < slope < 1.2, (slope, errs)


def test_reductions_equal_reductions_of_the_full_brackets(mlp_case, monkeypatch):
    model, theta, X, Y, tm = mlp_case
    from fastperm import knobs

    monkeypatch.setattr(knobs, "TORCH_CHUNK_BYTES", 8 * 8 * tm.P * 2)  # 2 pairs per chunk
    thetas = [theta, theta * 0.7]
    rms = lie.tensor_rms(tm, thetas, X, Y)
    for c, th in enumerate(thetas):
        full = lie.brackets(tm, th, X, Y, pairs=rms.pairs)
        for name, (sl, _) in tm.tensors.items():
            want = np.sqrt(np.mean(full[:, sl] ** 2, axis=1))
            np.testing.assert_allclose(rms.rms_bracket[name][c], want, rtol=1e-13)
    same = lie.tensor_rms(model, thetas, X, Y)
    for name, mine in zip(same.rms_bracket, rms.rms_bracket, strict=True):
        np.testing.assert_allclose(rms.rms_bracket[mine], same.rms_bracket[name], rtol=1e-5)
    v = lie.brackets(tm, None, X, Y, pairs=[(0, 1), (2, 3)])
    np.testing.assert_allclose(lie.logit_perturbation(tm, None, v, X),
                               lie.logit_perturbation(model, theta, v, X), rtol=1e-10,
                               atol=1e-15)  # fmt: skip


def test_bracket_logits_chunk_by_chunk(mlp_case, monkeypatch):
    """TorchModel's bracket_logits (brackets and the jvp per chunk of pairs) = the jvp of
    the full brackets = the built-in model's fused kernel (exact vs FD brackets)."""
    model, theta, X, Y, tm = mlp_case
    from fastperm import knobs

    monkeypatch.setattr(knobs, "TORCH_CHUNK_BYTES", 8 * 8 * tm.P * 2)  # 2 pairs per chunk
    Z = X[::-1]
    got = lie.bracket_logits(tm, None, X, Y, Z)
    full = lie.brackets(tm, None, X, Y, pairs=lie._upper_pairs(6))
    np.testing.assert_allclose(got, lie.logit_perturbation(tm, None, full, Z), rtol=1e-13,
                               atol=1e-16)  # fmt: skip
    fused = lie.bracket_logits(model, theta, X, Y, Z)
    assert np.abs(got - fused).max() < 1e-6 * np.abs(fused).max()
    exact = lie.bracket_logits(model, theta, X, Y, Z, method="exact")  # the same maths
    np.testing.assert_allclose(lie.bracket_logits(tm, None, X, Y, Z, method="exact"), exact,
                               rtol=1e-10, atol=1e-13 * np.abs(exact).max())  # fmt: skip


def test_float32_module_stays_float32_and_auto_falls_back_once():
    """PyTorch 2.13's mse_loss fails under forward-over-reverse ("ZeroTensors are
    immutable"): "auto" says so once and runs reverse-over-reverse, the same brackets."""
    net = torch.nn.Sequential(torch.nn.Linear(3, 2))
    tm = models.TorchModel(net, F.mse_loss)
    X, Y = np.random.default_rng(0).standard_normal((4, 3)), np.ones((4, 2))
    with pytest.warns(RuntimeWarning, match="reverse-over-reverse"):
        b = lie.brackets(tm, None, X, Y)
    assert b.dtype == np.float32 and b.shape == (4, 4, tm.P)
    assert tm.auto == "reverse"
    np.testing.assert_array_equal(lie.brackets(tm, None, X, Y), b)  # no second warning
    manual = models.TorchModel(net, lambda out, t: ((out - t) ** 2).mean(), method="forward")
    np.testing.assert_allclose(lie.brackets(manual, None, X, Y), b, rtol=1e-5, atol=1e-7)
    # FD in float32 steps by float32's rounding, not float64's (which would be all noise)
    fd = lie.brackets(manual, None, X, Y, method="fd")
    assert np.abs(fd - b).max() < 1e-3 * np.abs(b).max()  # float64's step: 1.7e-2


def test_non_finite_gradients_are_said(mlp_case):
    """Overflowing parameters: the gradients are reported (checked once the brackets come
    out non-finite), on the exact and the finite-difference paths."""
    _, theta, X, Y, tm = mlp_case
    steep = models.TorchModel(tm.module, lambda out, t: 1e300 * ((out - t) ** 2).mean())
    for method in ("auto", "fd"):
        with pytest.raises(FloatingPointError, match="gradients at theta are not finite"):
            lie.brackets(steep, 1e10 * theta, X, Y, method=method)


def test_eval_mode_and_left_as_it_was():
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.5), torch.nn.Linear(4, 1))
    net = net.double().train()
    tm = models.TorchModel(net, lambda out, t: ((out - t) ** 2).mean())
    X, Y = torch.randn(4, 3).double(), torch.randn(4, 1).double()
    first = lie.brackets(tm, None, X, Y)
    np.testing.assert_array_equal(lie.brackets(tm, None, X, Y), first)  # dropout off
    assert net.training


def test_what_cannot_work_is_said():
    class InPlace(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 2)

        def forward(self, x):
            z = torch.zeros(x.shape[0], 2, dtype=x.dtype)
            z += self.lin(x)  # a batched value into an unbatched tensor: vmap cannot
            return z

    def mse(out, target):
        return ((out - target) ** 2).mean()

    tm = models.TorchModel(InPlace().double(), mse)
    X, Y = torch.randn(3, 3).double(), torch.randn(3, 2).double()
    with pytest.raises(ValueError, match="in place"):
        lie.brackets(tm, None, X, Y)
    with pytest.raises(TypeError, match="module.module"):
        models.TorchModel(torch.nn.DataParallel(torch.nn.Linear(2, 2)), F.mse_loss)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        models.TorchModel(lambda x: x, F.mse_loss)
    with pytest.raises(ValueError, match="method"):
        lie.brackets(tm, None, X, Y, method="magic")
    with pytest.raises(ValueError, match="theta has shape"):
        lie.brackets(tm, np.zeros(3), X, Y)
    with pytest.raises(ValueError, match="exact"):
        lie.brackets(models.TorchModel(torch.nn.Linear(3, 2).double(), mse), None, X, Y,
                     return_error=True)  # fmt: skip
