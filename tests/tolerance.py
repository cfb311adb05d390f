"""The error measures the tests compare results with, defined once.

* :func:`rel_max`: the largest absolute difference relative to the largest reference entry
  (curves, parameters: a scale-aware measure that tolerates entries near zero);
* :func:`rel_norm`: the Euclidean norm of the difference relative to the reference's
  (brackets, where the direction of the whole vector matters);
* :func:`rel_each`: the largest entry-wise relative difference (the strictest: every entry,
  however small, to the same relative accuracy).
"""

import numpy as np


def rel_max(a, b) -> float:
    """``max|a − b| / max|b|``."""
    return float(np.abs(a - b).max() / np.abs(b).max())


def rel_norm(a, b) -> float:
    """``‖a − b‖ / ‖b‖``."""
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def rel_each(a, b) -> float:
    """``max_i |a_i − b_i| / |b_i|`` (with |b_i| floored at 1e-300)."""
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))
