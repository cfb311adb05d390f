"""Accuracy of fastperm's finite-difference brackets against exact complex-step brackets.

Reproduces the measurement behind ``fastperm.lie.default_step``: for several MLPs,
weight scales and inputs, the worst pair's relative error ‖b − b_exact‖ / ‖b_exact‖ at
the default h and at multiples of it (order 2, and order 4 for tanh).

    python bench/compare/fd_accuracy.py            # needs scikit-learn for the digits rows
"""

import numpy as np

from fastperm import lie, models


def worst(model, theta, X, Y, order, factor):
    G = model.grad(theta, X, Y)
    b = lie.brackets(model, theta, X, Y, h=factor * lie.default_step(theta, G, order), order=order)
    ex = lie.exact_brackets(model, theta, X, Y)
    iu = np.triu_indices(X.shape[0], 1)
    num = np.linalg.norm(b[iu] - ex[iu], axis=1)
    den = np.linalg.norm(ex[iu], axis=1)
    # exactly zero brackets (θ = 0 in deep nets) count as exact when the FD result is zero too
    rel = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.where(num > 0, np.inf, 0.0))
    return rel.max()


def cases(rs):
    try:
        from sklearn.datasets import load_digits

        data = load_digits()
        digits = (data.data[:16] / 16.0, np.eye(10)[data.target[:16]])
    except ImportError:
        digits = None
    for sizes in ([64, 32, 10], [64, 256, 10], [6, 5, 4, 3], [64, 32, 32, 10]):
        for act in ("tanh", "relu"):
            m = models.MLP(sizes, activation=act)
            X = rs.random((10, m.d))
            Y = np.eye(m.K)[rs.integers(0, m.K, 10)]
            sets = [("uniform", X, Y)] + ([("digits", *digits)] if digits and m.d == 64 else [])
            for data_name, XX, YY in sets:
                for label, theta in (
                    ("init", m.init(0)),
                    ("init×3", 3 * m.init(1)),
                    ("init×5", 5 * m.init(2)),
                    ("θ=0", np.zeros(m.P)),
                ):
                    yield f"{sizes} {act} {data_name} {label}", m, theta, XX, YY


def main():
    rs = np.random.default_rng(5)
    factors = (0.1, 1.0, 10.0)
    print(f"{'case':<44}" + "".join(f"{'o2 h×' + str(f):>12}" for f in factors) + f"{'o4 h×1':>10}")
    top = {f: 0.0 for f in factors}
    top4 = 0.0
    for name, m, theta, X, Y in cases(rs):
        errs = [worst(m, theta, X, Y, 2, f) for f in factors]
        e4 = worst(m, theta, X, Y, 4, 1.0) if m.activation == "tanh" else float("nan")
        for f, e in zip(factors, errs, strict=False):
            top[f] = max(top[f], e)
        if m.activation == "tanh":
            top4 = max(top4, e4)
        print(f"{name:<44}" + "".join(f"{e:>12.1e}" for e in errs) + f"{e4:>10.1e}")
    print(f"{'worst':<44}" + "".join(f"{top[f]:>12.1e}" for f in factors) + f"{top4:>10.1e}")


if __name__ == "__main__":
    main()
