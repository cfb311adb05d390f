"""Numba CPU backend (the default): fused, compiled training runs, parallel over runs.

Kernel contract: :mod:`fastperm.backends.reference`.
"""

from .sgd import augmented_gradient, compile, expected_runs, sgd_runs

name = "numba"

__all__ = ["augmented_gradient", "compile", "expected_runs", "sgd_runs", "name"]
