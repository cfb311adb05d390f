"""Numba CPU backend (the default): fused, compiled training runs and bracket batches,
parallel over runs / example blocks.

Kernel contract: :mod:`fastperm.backends.reference`.
"""

from .lie import brackets_all, brackets_pairs, example_grads
from .parallel import set_threads, threads
from .sgd import augmented_gradient, compile, expected_runs, sgd_runs

name = "numba"

__all__ = ["augmented_gradient", "brackets_all", "brackets_pairs", "compile", "example_grads",
           "expected_runs", "name", "set_threads", "sgd_runs", "threads"]

from .closed_forms import block_runs, circulant_runs, dense_runs, diag_rank1_runs  # noqa: E402
from .sgd import dist_augmented_gradient, dist_sgd_runs  # noqa: E402

__all__ += ["block_runs", "circulant_runs", "dense_runs", "diag_rank1_runs",
            "dist_augmented_gradient", "dist_sgd_runs"]
from .deep_linear import deep_linear_runs  # noqa: E402

__all__ += ["deep_linear_runs"]
from .schemes import scheme_runs  # noqa: E402

__all__ += ["scheme_runs"]
