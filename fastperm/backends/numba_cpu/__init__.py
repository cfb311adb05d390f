"""Numba CPU backend (the default): fused, compiled training runs and bracket batches,
parallel over runs / example blocks.

Kernel contract: :mod:`fastperm.backends.reference`.
"""

from .lie import brackets_all, brackets_pairs, example_grads
from .sgd import augmented_gradient, compile, expected_runs, sgd_runs

name = "numba"


def threads():
    """Threads Numba's parallel kernels use (``numba.get_num_threads()``)."""
    import numba

    return numba.get_num_threads()


def set_threads(n):
    """Set the number of Numba threads for this process."""
    import numba

    numba.set_num_threads(int(n))

__all__ = ["augmented_gradient", "brackets_all", "brackets_pairs", "compile", "example_grads",
           "expected_runs", "name", "set_threads", "sgd_runs", "threads"]
