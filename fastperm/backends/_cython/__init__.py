"""Cython backend: the fallback when Numba is not installed.

Ahead-of-time compiled twins of the Numba CPU kernels, with the same signatures
(kernel contract: :mod:`fastperm.backends.contract`) and the same random
numbers; parallel over runs and example pairs with OpenMP when the extension was
built with it. Built by ``setup.py`` at install time; when no C compiler was
there, this import fails and fastperm runs on its other backends
(``fastperm info`` says which).
"""

from .closed_forms import block_runs, circulant_runs, dense_runs, diag_rank1_runs
from .dual import dual_runs
from .equilibrium import balance_runs
from .lie import (
    bracket_logits,
    bracket_norms,
    brackets_all,
    brackets_pairs,
    example_grads,
)
from .meanfield import meanfield_runs
from .parallel import CYTHON_VERSION, have_openmp, set_threads, threads
from .sgd import augmented_gradient, compile, expected_runs, fixed_copies, sgd_runs

name = "cython"

__all__ = [
    "CYTHON_VERSION",
    "augmented_gradient",
    "balance_runs",
    "block_runs",
    "bracket_logits",
    "bracket_norms",
    "brackets_all",
    "brackets_pairs",
    "circulant_runs",
    "compile",
    "dense_runs",
    "dual_runs",
    "diag_rank1_runs",
    "example_grads",
    "expected_runs",
    "fixed_copies",
    "have_openmp",
    "meanfield_runs",
    "name",
    "set_threads",
    "sgd_runs",
    "threads",
]
