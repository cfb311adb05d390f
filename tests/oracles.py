"""Independent oracles for the bracket tests."""

import numpy as np


def exact_brackets(model, theta, X, Y):
    """All-pairs brackets with exact Hessian-vector products by the complex step.

    Deliberately a copy of ``fastperm.lie.exact_brackets``: an oracle should not be
    library code (test_lie checks the two agree).

    ``H_y g_x = Im g_y(θ + i t g_x) / t`` with t = 1e-30 is exact to rounding for
    a complex-analytic gradient (the built-in models' NumPy backprop is).
    """
    G = model.grad(theta, X, Y)
    t = 1e-30
    D = model.grad(theta + 1j * t * G, X, Y).imag / t  # D[x, y] = H_y g_x
    return D - D.transpose(1, 0, 2)


def linear_brackets(theta, X, y, bias=True):
    """Closed form for L = ½(θ·x̃ − y)²: [v_x, v_y] = (x̃·ỹ)(r_x ỹ − r_y x̃), x̃ = [x, 1]."""
    Xt = np.hstack([X, np.ones((X.shape[0], 1))]) if bias else X
    r = Xt @ theta - y
    dots = Xt @ Xt.T
    return dots[:, :, None] * (
        r[:, None, None] * Xt[None, :, :] - r[None, :, None] * Xt[:, None, :]
    )
