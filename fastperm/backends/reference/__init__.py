"""NumPy reference backend: the readable oracle every compiled backend is tested against.

Written for clarity, not speed: one Python iteration per step, permutations
drawn by the pure-Python specification in :mod:`fastperm.rng`, and the
k = ∞ runs done the explicit O(T·d) way (the compiled backends use the
O(T + d) recurrence; comparing the two is one of the tests).

Kernel contract (shared by every backend; arguments are validated by the
caller: float64, C-contiguous, finite, shapes consistent):

``sgd_runs(X, y, w_star, W0, lr, seeds, k, steps, fresh, resample, record_steps, cache,
loss_out, w_out, status_out)``
    R independent runs of k-fold augmented SGD (k = 1: plain SGD). Run r
    starts from ``W0[r]`` (or ``W0[0]`` when W0 has one row), uses step size
    ``lr[r]`` and seed ``seeds[r]``. At step t it visits example ``i = t mod n``
    and steps with the mean gradient of its k copies. ``loss_out[r, q]`` is
    ``mean((w − w_star)²)`` after ``record_steps[q]`` steps (``record_steps``
    ends with the sentinel ``steps + 1``). ``w_out[r]`` is the final w.
    ``status_out[r]`` is -1, or the first step at which w, a residual
    computed from it, or the recorded loss was non-finite; the run stops there
    and the remaining losses are NaN. ``cache`` allows the kernel to keep the n·k fixed copies
    (the caller has checked the memory budget); it never changes results.
``expected_runs(X, y, w_star, W0, lr, steps, resample, record_steps, loss_out, w_out,
status_out)``
    The same with the exact expected gradient (k = ∞); no seeds.
``augmented_gradient(w, X, y, k, seed, resample, out)``
    ``out[i]`` is the mean gradient over the k fixed copies of row i.
"""

from .closed_forms import block_runs, circulant_runs, dense_runs, diag_rank1_runs
from .deep_linear import deep_linear_runs
from .lie import brackets_all, brackets_pairs, example_grads
from .schemes import scheme_runs
from .sgd import (augmented_gradient, dist_augmented_gradient, dist_sgd_runs, expected_runs,
                  sgd_runs)

name = "numpy"


def threads():
    """The reference runs in one thread."""
    return 1


def set_threads(n):
    """No effect: the reference runs in one thread."""


def compile():
    """Nothing to compile."""


__all__ = ["augmented_gradient", "block_runs", "brackets_all", "brackets_pairs",
           "circulant_runs", "compile", "deep_linear_runs", "dense_runs", "diag_rank1_runs",
           "dist_augmented_gradient", "dist_sgd_runs", "example_grads", "expected_runs", "name",
           "scheme_runs", "set_threads", "sgd_runs", "threads"]
