"""Numba CPU backend (the default): fused, compiled training runs and bracket batches,
parallel over runs / example blocks.

Kernel contract: :mod:`fastperm.backends.contract`.
"""

from . import closed_forms, deep_linear, schemes, sgd
from .closed_forms import block_runs, circulant_runs, dense_runs, diag_rank1_runs
from .deep_linear import deep_linear_runs
from .lie import brackets_all, brackets_pairs, example_grads
from .parallel import set_threads, threads
from .schemes import scheme_runs
from .sgd import augmented_gradient, expected_runs, sgd_runs

name = "numba"


def compile():
    """Compile (or load from Numba's cache) every training kernel, both twins of each driver
    (serial and parallel), so that ``TrainResult.seconds`` never includes JIT compilation.
    Once per process."""
    sgd.compile()
    closed_forms.compile()
    deep_linear.compile()
    schemes.compile()


__all__ = ["augmented_gradient", "block_runs", "brackets_all", "brackets_pairs",
           "circulant_runs", "compile", "deep_linear_runs", "dense_runs", "diag_rank1_runs",
           "example_grads", "expected_runs", "name",
           "scheme_runs", "set_threads", "sgd_runs", "threads"]
