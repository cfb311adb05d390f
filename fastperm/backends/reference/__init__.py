"""NumPy reference backend: the readable oracle every compiled backend is tested against.

Written for clarity, not speed: one Python iteration per step, permutations
drawn by the pure-Python specification in :mod:`fastperm.rng`, and the
k = ∞ runs done the explicit O(T·d) way (the compiled backends use the
O(T + d) recurrence; comparing the two is one of the tests).

Kernel contract: :mod:`fastperm.backends.contract` (every family declared once, with its
arguments and their roles). The reference implements every family; its files have the
compiled backends' file names (``sgd``, ``dual``, ``closed_forms``, ``deep_linear``,
``schemes``, ``equilibrium``, ``meanfield``, ``lie``).
"""

from ...knobs import as_thread_count
from .closed_forms import block_runs, circulant_runs, dense_runs, diag_rank1_runs
from .deep_linear import deep_linear_runs
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
from .schemes import scheme_runs
from .sgd import augmented_gradient, expected_runs, fixed_copies, sgd_runs

name = "numpy"


def threads():
    """The reference runs in one thread."""
    return 1


def set_threads(n):
    """No effect (``n`` is checked as on every backend): the reference runs in one thread."""
    as_thread_count(n)


def compile(families=None):
    """Nothing to compile."""


__all__ = [
    "augmented_gradient",
    "balance_runs",
    "block_runs",
    "bracket_logits",
    "bracket_norms",
    "brackets_all",
    "brackets_pairs",
    "circulant_runs",
    "compile",
    "deep_linear_runs",
    "dense_runs",
    "dual_runs",
    "diag_rank1_runs",
    "example_grads",
    "expected_runs",
    "fixed_copies",
    "meanfield_runs",
    "name",
    "scheme_runs",
    "set_threads",
    "sgd_runs",
    "threads",
]
