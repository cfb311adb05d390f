"""Lie brackets: closed forms, exact oracles, identities, convergence orders, backends, errors."""

import numpy as np
import pytest
from oracles import exact_brackets, linear_brackets
from tolerance import rel_norm as _rel

from fastperm import lie, models
from fastperm._jit import HAVE_NUMBA, njit

MODELS = [
    models.MLP([6, 5, 4, 3], activation="tanh", loss="bce"),
    models.MLP([6, 5, 3], activation="relu", loss="mse"),
    models.MLP([6, 4, 3], activation="tanh", loss="mse", bias=False),
    models.LinearRegression(6),
    models.LinearRegression(6, bias=False),
    models.MultiLabelLogistic(6, 3),
]


def _data(model, B, seed=0):
    rs = np.random.default_rng(seed)
    theta = model.init(seed) + 0.3 * rs.standard_normal(model.P)
    X = rs.random((B, model.d))
    Y = (rs.random((B, model.K)) > 0.5).astype(float)
    return theta, X, Y


def _pairwise_rel(b, ex):
    iu = np.triu_indices(b.shape[0], 1)
    return np.linalg.norm(b[iu] - ex[iu], axis=1) / np.linalg.norm(ex[iu], axis=1)


# -- models -------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS, ids=repr)
def test_gradient_vs_finite_differences_of_loss(model):
    theta, X, Y = _data(model, 3)
    G = model.grad(theta, X, Y)
    e = 1e-6
    fd = np.array(
        [
            (model.loss(theta + e * u, X, Y) - model.loss(theta - e * u, X, Y)) / (2 * e)
            for u in np.eye(model.P)
        ]
    ).T
    assert np.abs(G - fd).max() < 1e-8 * max(1.0, np.abs(G).max())


@pytest.mark.parametrize("model", MODELS, ids=repr)
def test_compiled_gradient_matches_numpy_and_accumulates(model):
    theta, X, Y = _data(model, 3, seed=1)
    G = model.grad(theta, X, Y)
    work = np.empty(model.work_size)
    for b in range(3):
        out = np.full(model.P, np.nan)  # beta = 0 must not read out
        model.kernel(theta, X[b], Y[b], model.layout, work, out, 1.0, 0.0)
        np.testing.assert_allclose(out, G[b], rtol=1e-13, atol=1e-15)
        acc = np.arange(model.P, dtype=float)
        model.kernel(theta, X[b], Y[b], model.layout, work, acc, -2.0, 0.5)
        np.testing.assert_allclose(
            acc, -2.0 * G[b] + 0.5 * np.arange(model.P), rtol=1e-13, atol=1e-14
        )


def test_tensor_layout():
    m = models.MLP([64, 32, 10])
    assert m.P == 64 * 32 + 32 + 32 * 10 + 10
    assert list(m.tensors) == ["W1", "b1", "W2", "b2"]
    assert m.tensors["W2"] == (slice(2080, 2400), (10, 32))
    theta = np.arange(m.P, dtype=float)
    T = m.unflatten(theta)
    assert T["W1"][1, 0] == 64 and T["b2"][0] == 2400


def test_bce_loss_is_stable():
    m = models.MultiLabelLogistic(1, 1)
    loss = m.loss(np.array([1.0, 0.0]), np.array([[1000.0], [-1000.0]]), np.array([[0.0], [1.0]]))
    np.testing.assert_allclose(loss, [1000.0, 1000.0])


# -- closed forms and exact oracles -----------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
def test_linear_regression_closed_form(backend, bias):
    rs = np.random.default_rng(2)
    m = models.LinearRegression(5, bias=bias)
    theta, X, y = rs.standard_normal(m.P), rs.standard_normal((6, 5)), rs.standard_normal(6)
    b = lie.brackets(m, theta, X, y, backend=backend)
    assert _rel(b, linear_brackets(theta, X, y, bias)) < 1e-9


def test_swap_identity_exact_for_least_squares():
    rs = np.random.default_rng(3)
    m = models.LinearRegression(5)
    theta, X, y = rs.standard_normal(6), rs.standard_normal((2, 5)), rs.standard_normal(2)
    exact = linear_brackets(theta, X, y)[0, 1]
    for lr in (1e-3, 0.1, 0.7):
        swap = lie.swap_difference(m, theta, (X[0], y[0]), (X[1], y[1]), lr)
        np.testing.assert_allclose(swap / lr**2, exact, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("model", MODELS[:3], ids=repr)
def test_default_h_within_1e8_of_exact(model, backend):
    theta, X, Y = _data(model, 7, seed=4)
    ex = exact_brackets(model, theta, X, Y)
    b = lie.brackets(model, theta, X, Y, backend=backend)
    assert _pairwise_rel(b, ex).max() < 1e-8
    if model.activation == "tanh":  # order 4 is for smooth models (it warns for ReLU)
        b4 = lie.brackets(model, theta, X, Y, order=4, backend=backend)
        assert _pairwise_rel(b4, ex).max() < 1e-8


def test_digit_sized_mlp_within_1e8_of_exact():
    """MLP 64-32-10 on [0, 1] inputs, one-hot targets (the digits setting), at init and moved."""
    m = models.MLP([64, 32, 10])
    rs = np.random.default_rng(5)
    X = rs.random((10, 64))
    Y = np.eye(10)[rs.integers(0, 10, 10)]
    for theta in (m.init(0), m.init(1) * 3.0):
        assert (
            _pairwise_rel(lie.brackets(m, theta, X, Y), exact_brackets(m, theta, X, Y)).max() < 1e-8
        )


def test_complex_step_oracle_can_fail():
    """A wrong sign convention is far from the oracle: the comparisons above are meaningful."""
    m = MODELS[0]
    theta, X, Y = _data(m, 4)
    ex = exact_brackets(m, theta, X, Y)
    assert _rel(-lie.brackets(m, theta, X, Y), ex) > 1.0


# -- structure and identities ----------------------------------------------------------------


def test_antisymmetric_zero_diagonal(backend):
    m = MODELS[0]
    theta, X, Y = _data(m, 6)
    b = lie.brackets(m, theta, X, Y, backend=backend)
    assert b.shape == (6, 6, m.P)
    np.testing.assert_array_equal(b, -b.transpose(1, 0, 2))
    np.testing.assert_array_equal(b[np.arange(6), np.arange(6)], 0.0)
    assert np.abs(b).max() > 0


def test_pairs_match_all_pairs(backend):
    m = MODELS[1]
    theta, X, Y = _data(m, 5)
    full = lie.brackets(m, theta, X, Y, backend=backend)
    pairs = [(0, 4), (3, 1), (2, 2), (4, 0)]
    b = lie.brackets(m, theta, X, Y, pairs=pairs, backend=backend)
    assert b.shape == (4, m.P)
    # the same terms added in another order: FD divides rounding (1e-16) by h ~ 6e-6
    for q, (a, c) in enumerate(pairs):
        np.testing.assert_allclose(b[q], full[a, c], rtol=1e-9, atol=1e-9 * np.abs(full).max())
    np.testing.assert_array_equal(b[2], 0.0)


def _field_bracket(model, theta, X, Y, a, b, c, t):
    """[[v_a, v_b], v_c] = −H_c V + DV·g_c with V = [v_a, v_b] (FD brackets, order 4)."""
    gc = model.grad(theta, X[c : c + 1], Y[c : c + 1])[0]

    def V(th):
        return lie.brackets(model, th, X, Y, pairs=[(a, b)], order=4)[0]

    v = V(theta)
    s = 1e-30
    Hc_v = model.grad(theta + 1j * s * v, X[c : c + 1], Y[c : c + 1])[0].imag / s
    DV_gc = (V(theta + t * gc) - V(theta - t * gc)) / (2 * t)
    return -Hc_v + DV_gc


def test_jacobi_identity():
    m = models.MLP([4, 3, 2])
    theta, X, Y = _data(m, 3, seed=6)
    t = 1e-4 * np.sqrt(np.mean(theta**2)) / np.sqrt(np.mean(m.grad(theta, X, Y) ** 2))
    terms = [
        _field_bracket(m, theta, X, Y, 0, 1, 2, t),
        _field_bracket(m, theta, X, Y, 1, 2, 0, t),
        _field_bracket(m, theta, X, Y, 2, 0, 1, t),
    ]
    scale = max(np.linalg.norm(T) for T in terms)
    assert np.linalg.norm(sum(terms)) < 1e-5 * scale
    assert np.linalg.norm(terms[0] + terms[1] - terms[2]) > 1e-2 * scale  # can fail


# -- convergence orders ------------------------------------------------------------------------


def _slope(x, y):
    return np.polyfit(np.log(x), np.log(y), 1)[0]


@pytest.mark.parametrize(
    "order, factors, want", [(2, [30, 100, 300, 1000], 2.0), (4, [4, 8, 16, 32], 4.0)]
)
def test_fd_error_falls_with_the_order(order, factors, want):
    m = MODELS[0]
    theta, X, Y = _data(m, 3, seed=7)
    ex = exact_brackets(m, theta, X, Y)[0, 1]
    h0 = lie.default_step(theta, m.grad(theta, X, Y), order)
    errs = [
        np.linalg.norm(lie.brackets(m, theta, X, Y, pairs=[(0, 1)], h=f * h0, order=order)[0] - ex)
        for f in factors
    ]
    assert abs(_slope(factors, errs) - want) < 0.3, errs


def test_error_estimate_tracks_the_error():
    m = MODELS[0]
    theta, X, Y = _data(m, 4, seed=8)
    ex = exact_brackets(m, theta, X, Y)
    h = 300 * lie.default_step(theta, m.grad(theta, X, Y), 2)  # truncation-dominated
    b, err = lie.brackets(m, theta, X, Y, h=h, return_error=True)
    true = np.linalg.norm(b - ex, axis=-1)
    iu = np.triu_indices(4, 1)
    ratio = err[iu] / true[iu]
    assert err.shape == (4, 4) and np.all((ratio > 0.5) & (ratio < 2.0)), ratio


def test_swap_identity_converges_at_rate_eps():
    m = MODELS[0]
    theta, X, Y = _data(m, 2, seed=9)
    exact = exact_brackets(m, theta, X, Y)[0, 1]
    eps = np.array([1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2])
    errs = [
        np.linalg.norm(lie.swap_difference(m, theta, (X[0], Y[0]), (X[1], Y[1]), e) / e**2 - exact)
        for e in eps
    ]
    assert abs(_slope(eps, errs) - 1.0) < 0.15, errs


# -- backends ------------------------------------------------------------------------------------


@pytest.mark.parametrize("order", [2, 4])
@pytest.mark.parametrize("model", MODELS, ids=repr)
def test_compiled_matches_reference(compiled, model, order):
    theta, X, Y = _data(model, 6, seed=10)
    if order == 4 and getattr(model, "activation", None) == "relu":
        with pytest.warns(RuntimeWarning, match="smooth model"):
            ref = lie.brackets(model, theta, X, Y, order=order, backend="numpy")
        with pytest.warns(RuntimeWarning, match="smooth model"):
            got = lie.brackets(model, theta, X, Y, order=order, backend=compiled)
    else:
        ref = lie.brackets(model, theta, X, Y, order=order, backend="numpy")
        got = lie.brackets(model, theta, X, Y, order=order, backend=compiled)
    assert _rel(got, ref) < 1e-10


def test_deterministic_and_out_buffer(compiled):
    m = MODELS[0]
    theta, X, Y = _data(m, 9)
    a = lie.brackets(m, theta, X, Y, backend=compiled)
    buf = np.full_like(a, np.nan)
    b = lie.brackets(m, theta, X, Y, backend=compiled, out=buf)
    assert b is buf
    np.testing.assert_array_equal(a, b)


@njit
def _ls_grad(theta, x, y, layout, work, out, alpha, beta):
    r = 0.0
    for p in range(theta.shape[0]):
        r += theta[p] * x[p]
    r -= y[0]
    for p in range(theta.shape[0]):
        g = alpha * r * x[p]
        out[p] = g if beta == 0.0 else g + beta * out[p]


@pytest.mark.skipif(not HAVE_NUMBA, reason="a CustomModel's gradient is a Numba function")
def test_custom_model():
    def numpy_grad(th, X, Y):  # broadcasts over stacked θ (..., P) → (..., B, P)
        r = np.einsum("...p,bp->...b", th, X) - Y[:, 0]
        return r[..., None] * X

    m = models.CustomModel(_ls_grad, P=4, d=4, K=1, numpy_grad=numpy_grad)
    rs = np.random.default_rng(11)
    theta, X, y = rs.standard_normal(4), rs.standard_normal((5, 4)), rs.standard_normal(5)
    want = linear_brackets(theta, X, y, bias=False)
    assert _rel(lie.brackets(m, theta, X, y), want) < 1e-9
    assert _rel(lie.brackets(m, theta, X, y, backend="numpy"), want) < 1e-9
    with pytest.raises(ValueError, match="no logits"):
        m.logits(theta, X)
    with pytest.raises(TypeError, match="numba.njit function"):
        models.CustomModel(lambda *a: None, P=1, d=1, K=1)


# -- analyses ------------------------------------------------------------------------------------


def test_logit_perturbation_is_the_directional_derivative():
    m = MODELS[0]
    theta, X, Y = _data(m, 4)
    b = lie.brackets(m, theta, X, Y, pairs=[(0, 1), (2, 3)])
    J = lie.logit_perturbation(m, theta, b, X)
    assert J.shape == (2, 4, m.K)
    t = 1e-6
    fd = (m.logits(theta + t * b[1], X) - m.logits(theta - t * b[1], X)) / (2 * t)
    np.testing.assert_allclose(J[1], fd, rtol=1e-6, atol=1e-9 * np.abs(fd).max())
    np.testing.assert_array_equal(lie.logit_perturbation(m, theta, b[0], X), J[0])


def test_tensor_rms():
    m = models.MLP([6, 5, 3])
    rs = np.random.default_rng(12)
    X, Y = rs.random((4, 6)), np.eye(3)[rs.integers(0, 3, 4)]
    cps = [m.init(0), m.init(0) * 2, m.init(0) * 4]
    r = lie.tensor_rms(m, cps, X, Y)
    assert r.pairs.shape == (6, 2)
    assert set(r.slope) == {"W1", "b1", "W2", "b2"}
    assert r.rms_bracket["W1"].shape == (3, 6)
    b = lie.brackets(m, cps[1], X, Y)
    sl = m.tensors["W2"][0]
    assert r.rms_bracket["W2"][1, 0] == pytest.approx(np.sqrt(np.mean(b[0, 1, sl] ** 2)), rel=1e-9)
    G = m.grad(cps[2], X, Y)
    want = np.sqrt(0.5 * (np.mean(G[0, sl] ** 2) + np.mean(G[1, sl] ** 2)))
    assert r.rms_grad["W2"][2, 0] == pytest.approx(want, rel=1e-12)
    assert all(np.isfinite(v) for v in r.slope.values())
    assert "slope" in r.summary()


# -- fused reductions (issue 17, item 2) -----------------------------------------------------------


def _squares(b, model):
    """Per-tensor sums of squares of (npairs, P) brackets."""
    return np.stack([np.sum(b[:, sl] ** 2, axis=1) for sl, _ in model.tensors.values()], axis=1)


def _fused_norms(kern, model, theta, X, Y, pairs, order=2, bounds=None):
    G, h = lie._gradients(kern, model, theta, X, Y, None, order)
    c, w = lie.STENCILS[order]
    out = np.empty((len(pairs), len(model.tensors)))
    bounds = lie._bounds(model) if bounds is None else bounds
    kern.bracket_norms(model, theta, X, Y, G, h, c, w, np.asarray(pairs, np.int64), bounds, out)
    return out


PAIRS = [(0, 1), (4, 2), (3, 3), (1, 5), (5, 0)]


#: MODELS and two shapes they lack: a hidden layer wider than the input, ReLU with L = 3
FUSED_MODELS = MODELS + [
    models.MLP([6, 11, 4, 3], activation="relu", loss="bce"),
    models.MLP([6, 13, 9, 3], activation="tanh", loss="mse", bias=False),
]


@pytest.mark.filterwarnings("ignore:order=4 assumes a smooth model")
@pytest.mark.parametrize("order", [2, 4])
@pytest.mark.parametrize("model", FUSED_MODELS, ids=repr)
def test_fused_norms_equal_the_full_arrays(backend, model, order):
    """The kernel's per-tensor sums of squares are those of the backend's own (npairs, P)
    brackets, to rounding (the first layer's from its factors)."""
    from fastperm import backends

    kern = backends.get(backend)
    theta, X, Y = _data(model, 6, seed=3)
    full = lie.brackets(model, theta, X, Y, pairs=PAIRS, order=order, backend=backend)
    got = _fused_norms(kern, model, theta, X, Y, PAIRS, order)
    want = _squares(full, model)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13 * want.max())
    np.testing.assert_array_equal(got[2], 0.0)


def test_fused_norms_comparison_can_fail(compiled):
    """One entry moved from b2 to W2 (the bounds shifted by one) is caught."""
    from fastperm import backends

    model = MODELS[1]
    kern = backends.get(compiled)
    theta, X, Y = _data(model, 6, seed=3)
    want = _squares(lie.brackets(model, theta, X, Y, pairs=PAIRS, backend=compiled), model)
    bounds = lie._bounds(model).copy()
    bounds[3] += 1
    got = _fused_norms(kern, model, theta, X, Y, PAIRS, bounds=bounds)
    assert not np.allclose(got, want, rtol=1e-12, atol=1e-13 * want.max())


@pytest.mark.parametrize("model", MODELS[:3], ids=repr)
def test_fused_reductions_against_exact_brackets(model):
    """Independent oracle: complex-step (exact) brackets, reduced in NumPy; the fused
    results agree to the finite differences' error."""
    theta, X, Y = _data(model, 5, seed=4)
    ex = exact_brackets(model, theta, X, Y)
    iu = lie._upper_pairs(5)
    b = ex[iu[:, 0], iu[:, 1]]
    r = lie.tensor_rms(model, theta, X, Y)
    for name, (sl, _) in model.tensors.items():
        want = np.sqrt(np.mean(b[:, sl] ** 2, axis=1))
        np.testing.assert_allclose(r.rms_bracket[name][0], want, rtol=1e-6, atol=1e-9 * want.max())
    Z = np.random.default_rng(1).random((3, model.d))
    J = lie.bracket_logits(model, theta, X, Y, Z)
    want = lie.logit_perturbation(model, theta, b, Z)
    assert J.shape == (10, 3, model.K)
    assert np.abs(J - want).max() < 1e-6 * np.abs(want).max()


@pytest.mark.parametrize("model", FUSED_MODELS, ids=repr)
def test_fused_logits_equal_the_full_arrays(backend, model):
    """Forward mode along the factored bracket = the complex step along the full one."""
    theta, X, Y = _data(model, 6, seed=5)
    Z = np.random.default_rng(2).random((4, model.d))
    got = lie.bracket_logits(model, theta, X, Y, Z, pairs=PAIRS, backend=backend)
    want = lie.bracket_logits(model, theta, X, Y, Z, pairs=PAIRS, backend=backend, fused=False)
    assert got.shape == (5, 4, model.K)
    np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-12 * np.abs(want).max())
    np.testing.assert_array_equal(got[2], 0.0)
    shifted = lie.bracket_logits(model, theta, X, Y, Z[::-1], pairs=PAIRS, backend=backend)
    assert not np.allclose(shifted, want, rtol=1e-11, atol=1e-12 * np.abs(want).max())


def test_tensor_rms_fused_and_full_agree(backend):
    m = MODELS[0]
    theta, X, Y = _data(m, 6, seed=6)
    cps = [theta, 1.5 * theta]
    a = lie.tensor_rms(m, cps, X, Y, backend=backend)
    b = lie.tensor_rms(m, cps, X, Y, backend=backend, fused=False)
    for k in m.tensors:
        np.testing.assert_allclose(a.rms_bracket[k], b.rms_bracket[k], rtol=1e-12)
        np.testing.assert_allclose(a.rms_grad[k], b.rms_grad[k], rtol=1e-14)


@pytest.mark.parametrize("model", FUSED_MODELS, ids=repr)
def test_exact_products_equal_complex_step_brackets(backend, model):
    """method="exact": the kernels' forward-over-reverse products against the complex-step
    brackets (an independent route), to rounding — norms and logit changes."""
    theta, X, Y = _data(model, 6, seed=7)
    ex = exact_brackets(model, theta, X, Y)
    pairs = np.asarray(PAIRS)
    b = ex[pairs[:, 0], pairs[:, 1]]
    r = lie.tensor_rms(model, theta, X, Y, pairs=PAIRS, backend=backend, method="exact")
    for name, (sl, _) in model.tensors.items():
        want = np.sqrt(np.mean(b[:, sl] ** 2, axis=1))
        np.testing.assert_allclose(
            r.rms_bracket[name][0], want, rtol=1e-12, atol=1e-14 * want.max()
        )
    Z = np.random.default_rng(3).random((3, model.d))
    J = lie.bracket_logits(model, theta, X, Y, Z, pairs=PAIRS, backend=backend, method="exact")
    want = lie.logit_perturbation(model, theta, b, Z)
    np.testing.assert_allclose(J, want, rtol=1e-11, atol=1e-13 * np.abs(want).max())
    # the comparison can fail: the FD brackets differ from the exact ones by ~1e-9
    fd = lie.tensor_rms(model, theta, X, Y, pairs=PAIRS, backend=backend)
    assert any(
        not np.allclose(fd.rms_bracket[k], r.rms_bracket[k], rtol=1e-12, atol=0) for k in r.slope
    )


def test_exact_method_refusals():
    m = MODELS[0]
    theta, X, Y = _data(m, 4)
    with pytest.raises(ValueError, match="method for a fastperm model must be"):
        lie.tensor_rms(m, theta, X, Y, method="forward")
    with pytest.raises(ValueError, match="method='exact' takes none"):
        lie.bracket_logits(m, theta, X, Y, X, method="exact", h=1e-4)
    with pytest.raises(TypeError, match="fused must be True or False"):
        lie.tensor_rms(m, theta, X, Y, fused="no")


@pytest.mark.skipif(not HAVE_NUMBA, reason="a CustomModel's gradient is a Numba function")
def test_exact_method_refused_for_a_custom_model():
    m = models.CustomModel(_ls_grad, P=6, d=6, K=1)
    theta = np.linspace(-0.5, 0.5, 6)
    X, Y = np.random.default_rng(0).random((4, 6)), np.ones(4)
    with pytest.raises(ValueError, match="method='exact' needs a built-in model"):
        lie.tensor_rms(m, theta, X, Y, method="exact")
    fd = lie.tensor_rms(m, theta, X, Y)  # finite differences, through the full array
    assert np.all(np.isfinite(fd.rms_bracket["theta"]))


def test_bracket_logits_bad_input():
    m = MODELS[0]
    theta, X, Y = _data(m, 4)
    with pytest.raises(ValueError, match="X_batch has 5 features"):
        lie.bracket_logits(m, theta, X, Y, np.zeros((2, 5)))
    with pytest.raises(ValueError, match="out of range"):
        lie.bracket_logits(m, theta, X, Y, X, pairs=[(0, 4)])
    with pytest.raises(ValueError, match="order must be 2 or 4"):
        lie.bracket_logits(m, theta, X, Y, X, order=3)
    with pytest.raises(ValueError, match="X_batch has 12 non-finite"):
        lie.bracket_logits(m, theta, X, Y, np.full((2, 6), np.nan))


# -- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(theta=np.zeros(3)), ValueError, "theta has 3 entries"),
        (dict(X=np.zeros((4, 5))), ValueError, "X has 5 features"),
        (dict(Y=np.zeros((4, 2))), ValueError, "Y has 2 targets per example"),
        (dict(X=np.full((4, 6), np.nan)), ValueError, "X has 24 non-finite"),
        (dict(X=np.zeros((1, 6)), Y=np.zeros((1, 3))), ValueError, "at least 2 examples"),
        (dict(pairs=[(0, 4)]), ValueError, "out of range"),
        (dict(pairs=[(0, -1)]), ValueError, "out of range"),
        (dict(pairs=[0, 1]), ValueError, "pairs must be"),
        (dict(pairs=[(0.0, 1.0)]), TypeError, "integer"),
        (dict(h=0.0), ValueError, "h must be finite and > 0"),
        (dict(h=-1e-3), ValueError, "h must be finite and > 0"),
        (dict(h=[1e-3, 1e-3]), ValueError, "h has 2 entries"),
        (dict(order=3), ValueError, "order must be 2 or 4"),
        (dict(backend="gpu"), ValueError, "backend must be one of"),
        (dict(out=np.empty((4, 4, 3))), ValueError, "out must be"),
    ],
)
def test_bad_input(kwargs, exc, match):
    m = MODELS[0]
    theta, X, Y = _data(m, 4)
    args = dict(model=m, theta=theta, X=X, Y=Y)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        lie.brackets(**args)


def test_bad_model_and_swap_arguments():
    with pytest.raises(TypeError, match="model must be"):
        lie.brackets("mlp", np.zeros(3), np.zeros((2, 1)), np.zeros(2))
    m = MODELS[3]
    with pytest.raises(ValueError, match="lr must be finite and > 0"):
        lie.swap_difference(m, np.zeros(7), (np.zeros(6), 0.0), (np.zeros(6), 1.0), 0.0)
    for bad in ([5], [], "abc", 7):
        with pytest.raises(ValueError, match="sizes must list"):
            models.MLP(bad)
    with pytest.raises(ValueError, match="activation must be one of"):
        models.MLP([2, 2], activation="gelu")
    with pytest.raises(ValueError, match="sizes\\[1\\] must be >= 1"):
        models.MLP([2, 0, 1])


@pytest.mark.skipif(not HAVE_NUMBA, reason="a CustomModel's gradient is a Numba function")
def test_logit_perturbation_custom_model_uses_finite_differences():
    """A custom logits that casts θ to float would lose a complex step; FD is used instead."""

    def logits(th, X):
        th = np.asarray(th, dtype=float)
        return np.tanh(X @ th)[:, None]

    m = models.CustomModel(_ls_grad, P=3, d=3, K=1, logits=logits)
    rs = np.random.default_rng(13)
    theta, X, v = rs.standard_normal(3), rs.standard_normal((5, 3)), rs.standard_normal(3)
    want = ((1 - np.tanh(X @ theta) ** 2) * (X @ v))[:, None]
    np.testing.assert_allclose(lie.logit_perturbation(m, theta, v, X), want, rtol=1e-7)


def test_no_cached_kernel_takes_a_jitted_function():
    """Numba's cache index breaks on signatures holding another jitted function (seen: a later
    save failed with "underlying object has vanished" after models.py changed), so the cached
    kernels never take one; only the per-process generic drivers for CustomModel do."""
    pytest.importorskip("numba")
    from numba.core import types
    from numba.core.caching import NullCache
    from numba.core.registry import CPUDispatcher

    import fastperm
    from fastperm.backends.numba_cpu import lie as nlie
    from fastperm.backends.numba_cpu import mlp as nmlp
    from fastperm.backends.numba_cpu import rng as nrng
    from fastperm.backends.numba_cpu import sgd as nsgd

    m = models.MLP([4, 3, 2])
    theta, X, Y = _data(m, 3)
    lie.brackets(m, theta, X, Y)
    lie.brackets(m, theta, X, Y, pairs=[(0, 1)])
    custom = models.CustomModel(_ls_grad, P=4, d=4, K=1)
    rs = np.random.default_rng(0)
    lie.brackets(custom, rs.standard_normal(4), rs.standard_normal((3, 4)), rs.standard_normal(3))
    fastperm.train(fastperm.LinearProblem.sample(d=5, n=2), 2, steps=3)
    checked = 0
    from fastperm._jit import Twins

    def dispatchers(mod):  # module-level dispatchers, twins, and dicts of twins
        for name, obj in vars(mod).items():
            objs = obj.values() if isinstance(obj, dict) else [obj]
            for o in objs:
                if isinstance(o, Twins):
                    yield name, o.parallel
                    yield name, o.serial
                elif isinstance(o, CPUDispatcher):
                    yield name, o

    for mod in (nmlp, nlie, nrng, nsgd):  # the MLP kernels live in numba_cpu.mlp
        for name, obj in dispatchers(mod):
            for sig in obj.signatures:
                if any(isinstance(t, types.Dispatcher) for t in sig):
                    assert isinstance(obj._cache, NullCache), f"{mod.__name__}.{name} is cached"
                    checked += 1
    assert checked >= 3  # the generic drivers were exercised


def test_exact_brackets_public():
    from oracles import exact_brackets as oracle

    m = MODELS[0]
    theta, X, Y = _data(m, 4)
    np.testing.assert_array_equal(lie.exact_brackets(m, theta, X, Y), oracle(m, theta, X, Y))
    lm = models.LinearRegression(3)
    rs = np.random.default_rng(14)
    th, Xl, yl = rs.standard_normal(4), rs.standard_normal((4, 3)), rs.standard_normal(4)
    assert _rel(lie.exact_brackets(lm, th, Xl, yl), linear_brackets(th, Xl, yl)) < 1e-13
    if not HAVE_NUMBA:
        return  # a CustomModel needs a Numba gradient
    with pytest.raises(TypeError, match="needs a built-in model"):
        lie.exact_brackets(
            models.CustomModel(_ls_grad, P=4, d=4, K=1), np.zeros(4), np.zeros((2, 4)), np.zeros(2)
        )


def test_layout_is_the_models_structure_and_shape_is_deprecated():
    """``Model.layout`` holds the integers the compiled gradient reads; the old name
    ``shape`` (attribute and CustomModel keyword) still works with a DeprecationWarning."""
    m = models.MLP([4, 3, 2])
    with pytest.warns(DeprecationWarning, match="use Model.layout"):
        np.testing.assert_array_equal(m.shape, m.layout)
    pytest.importorskip("numba")  # a CustomModel's kernel is a Numba function
    with pytest.warns(DeprecationWarning, match="use layout="):
        c = models.CustomModel(_ls_grad, P=4, d=4, K=1, shape=[1, 2])
    np.testing.assert_array_equal(c.layout, [1, 2])
