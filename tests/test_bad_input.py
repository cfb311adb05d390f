"""One answer per bad input, on every backend (issue 13, items 4 and 5).

Each case below was a crash, a silent non-finite value, an error from inside NumPy that
named no argument, or an accepted invalid value before; each now ends in a
ValueError / TypeError / FloatingPointError that names the argument, the same on every
backend, or (bracket overflow) in the finite answer the NumPy reference gives.
"""

import warnings

import numpy as np
import pytest
from tolerance import rel_max

import fastperm
from fastperm import augment, backends, lie, models, schemes
from fastperm.deep_linear import DeepLinear
from fastperm.deep_linear import train as deep_train

TD = np.array([1, 2, 3], dtype="timedelta64[s]")


# -- arrays: ragged nestings and non-real dtypes are refused by name --------------------------


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: fastperm.LinearProblem([[1, 2], [3]], [1, 2], [1, 1]), "X"),
        (
            lambda: fastperm.train(fastperm.LinearProblem.sample(d=2, n=2), 1, w0=[[1, 2], [3]]),
            "w0",
        ),
        (lambda: fastperm.expected_gradient(np.ones(2), [[1, 2], [3]], [1, 2]), "x"),
        (
            lambda: lie.brackets(models.MLP([2, 2]), np.zeros(6), np.ones((2, 2)), [[1, 0], [1]]),
            "Y",
        ),
    ],
)
def test_ragged_arrays_named(call, name):
    with pytest.raises(ValueError, match=f"^{name} is ragged"):
        call()


@pytest.mark.parametrize(
    "call, name",
    [
        (
            lambda: fastperm.LinearProblem(
                np.ones((2, 3)).astype("timedelta64[s]"), np.ones(2), np.ones(3)
            ),
            "X",
        ),
        (lambda: fastperm.augmented_gradient(TD, np.ones(3), 1.0, 2), "w"),
        (
            lambda: fastperm.train(
                fastperm.LinearProblem.sample(d=3, n=2), 1, lr=np.timedelta64(1, "s")
            ),
            "lr",
        ),
        (
            lambda: fastperm.train(
                fastperm.LinearProblem.sample(d=3, n=2), 1, steps=np.timedelta64(1, "s")
            ),
            "steps",
        ),
        (lambda: augment.BlockPermutation([TD]), r"groups\[0\]"),
        (
            lambda: lie.brackets(
                models.MLP([2, 2]),
                np.zeros(6),
                np.ones((2, 2)),
                np.ones((2, 2)),
                pairs=np.array([[0, 1]], dtype="timedelta64[s]"),
            ),
            "pairs",
        ),
    ],
)
def test_timedelta_is_not_a_number(call, name):
    """NumPy files timedelta64 under the integers; it is refused like any non-real dtype."""
    with pytest.raises((TypeError, ValueError), match=f"^{name}"):
        call()


# -- models: shapes, non-finite values and missing targets named ------------------------------


@pytest.fixture
def mlp():
    m = models.MLP([3, 4, 2])
    return m, m.init(0), np.ones((4, 3)), np.full((4, 2), 0.5)


@pytest.mark.parametrize("method", ["grad", "loss", "logits"])
def test_model_maths_check_arguments(mlp, method):
    m, th, X, Y = mlp
    f = getattr(m, method)
    args = (lambda t, x: (t, x)) if method == "logits" else (lambda t, x: (t, x, Y))
    with pytest.raises(ValueError, match="^X has 5 features"):
        f(*args(th, np.ones((4, 5))))
    with pytest.raises(ValueError, match="^theta has shape"):
        f(*args(th[:-1], X))
    with pytest.raises(ValueError, match="^X has 12 non-finite"):
        f(*args(th, np.full((4, 3), np.nan)))
    # a stack of θ and complex θ (the complex step) are still taken
    assert f(*args(np.stack([th, th]), X)).shape[0] == 2
    assert np.iscomplexobj(f(*args(th + 1e-30j, X)))


def test_brackets_name_the_argument(mlp):
    m, th, X, Y = mlp
    with pytest.raises(ValueError, match="^X has 5 examples .* but Y has 4"):
        lie.brackets(m, th, np.ones((5, 3)), Y)
    with pytest.raises(TypeError, match="^Y must be an array"):
        lie.brackets(m, th, X, None)
    with pytest.raises(ValueError, match="^order must be 2 or 4"):
        lie.brackets(m, th, X, Y, order=[2])


@pytest.mark.parametrize("name", backends.available())
@pytest.mark.parametrize(
    "n, exc",
    [
        (2.5, TypeError),
        (True, TypeError),
        ("2", TypeError),
        (np.float64(2), TypeError),
        (0, ValueError),
    ],
)
def test_set_threads_same_refusals_on_every_backend(name, n, exc):
    kern = backends.get(name)
    with pytest.raises(exc, match="^threads must be"):
        kern.set_threads(n)


def test_scalar_parameters_checked():
    with pytest.raises(TypeError, match="^w_star must be a real number"):
        fastperm.LinearProblem.sample(d=3, n=2, w_star="1")
    net = DeepLinear([3, 2, 1])
    th = net.init(0)
    with pytest.raises(ValueError, match="^sigma must be"):
        net.expected_grad(th, np.ones(3), 1.0, -1)
    with pytest.raises(ValueError, match="^eps must be 2-D"):
        net.noisy_grads(th, np.ones(3), 1.0, 0.1, np.ones(3))
    with pytest.raises(ValueError, match="^y must be finite"):
        net.grad(th, np.ones(3), np.inf)


# -- a start where training cannot begin is an error of the argument -------------------------


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda p: fastperm.train(p, 1, w0=np.full(4, 1e200), steps=0), "^w0 cannot start"),
        (lambda p: fastperm.train(p, 3, w0=np.full(4, 1e200), steps=5), "^w0 cannot start"),
        (
            lambda p: fastperm.train_many(p, 2, seeds=[0, 1], w0=[np.zeros(4), np.full(4, 1e155)]),
            r"^w0 \(run 1\) cannot start training",
        ),
        (lambda p: schemes.run(p, "fa", w0=np.full(4, 1e200), steps=3), "^w0 cannot start"),
        (
            lambda p: fastperm.train(fastperm.LinearProblem(p.X, p.y, np.full(4, 1e200)), 1),
            "^w0 cannot start",
        ),  # the default start, w* too large
        (
            lambda p: deep_train(
                p,
                DeepLinear([4, 3, 1]),
                2,
                sigma=0.1,
                theta0=np.full(DeepLinear([4, 3, 1]).P, 1e120),
            ),
            "^theta0 cannot start",
        ),
    ],
)
def test_non_finite_start_refused(backend, call, match):
    """Before: ``loss == [inf]`` and no divergence for steps = 0; "diverged at step 1" on the
    compiled backends but step 0 on NumPy (schemes) for steps > 0."""
    p = fastperm.LinearProblem.sample(d=4, n=2, seed=0)
    with pytest.raises(ValueError, match=match):
        call(p)


def test_divergence_message_names_what_overflowed(small):
    with pytest.warns(
        fastperm.DivergenceWarning,
        match=r"diverged at step \d+ \(a residual, parameter or loss overflowed\)",
    ):
        fastperm.train(small, 1, lr=1e3, steps=400)


# -- non-finite gradients: one FloatingPointError on every backend ---------------------------


def test_augmented_gradient_overflow_raises_everywhere(backend):
    """Before: inf with no warning on numba and cython, a RuntimeWarning on numpy."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no backend-specific RuntimeWarning first
        with pytest.raises(FloatingPointError, match="augmented gradient are not finite"):
            fastperm.augmented_gradient(
                np.full(4, 1e200), np.full(4, 1e200), 1.0, 3, backend=backend
            )
        with pytest.raises(FloatingPointError, match="expected gradient are not finite"):
            fastperm.expected_gradient(np.full(4, 1e200), np.full(4, 1e200), 1.0)


# -- brackets: the first-layer shortcut without overflow; h checked --------------------------


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("scale", [1e200, 1e307])
def test_bracket_shortcut_does_not_overflow(compiled, bias, scale):
    """Before: |x| > ~1e154 made the shortcut's x_a·x_b overflow: NaN in most entries on
    numba and cython, where the reference (and the exact complex-step brackets) are finite."""
    rng = np.random.default_rng(1)
    m = models.MLP([3, 5, 4, 2], bias=bias)
    th = m.init(0)
    X = rng.normal(size=(5, 3)) * scale
    Y = rng.uniform(size=(5, 2))
    ref = lie.brackets(m, th, X, Y, backend="numpy")
    got = lie.brackets(m, th, X, Y, backend=compiled)
    assert np.all(np.isfinite(got))
    assert rel_max(got, ref) < 1e-8
    assert rel_max(got, lie.exact_brackets(m, th, X, Y)) < 1e-8


def test_bracket_h_checked(backend, mlp):
    m, th, X, Y = mlp
    with pytest.raises(ValueError, match="^h = .* too small: 1/h overflows"):
        lie.brackets(m, th, X, Y, h=5e-324, backend=backend)
    with pytest.warns(RuntimeWarning, match="stencil measures a secant"):
        lie.brackets(m, th, X, Y, h=1e300, backend=backend)
    with pytest.raises(ValueError, match=r"^h must be > 0; h\[2\]"):
        lie.brackets(m, th, X, Y, h=np.array([1e-3, 1e-3, -1.0, 1e-3]), backend=backend)
