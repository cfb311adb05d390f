"""fastperm: compiled kernels for studying how training depends on symmetry and example order.

Public API
----------
LinearProblem
    The permutation-invariant linear regression problem (or your own X, y, w*).
expected_gradient, augmented_gradient
    Closed-form expected gradient over an augmentation, and its k-copy estimate.
train, train_many, TrainResult, DivergenceWarning
    Whole training runs (k = 1, k-fold augmentation, k = ∞) as one compiled call.
backends
    ``backends.available()``, ``backends.get(name)``.
rng
    The counter-based random-number specification shared by all backends.
"""

from . import backends, rng
from .augment import augmented_gradient, expected_gradient
from .problems import LinearProblem
from .train import DivergenceWarning, TrainResult, train, train_many

__version__ = "0.1.0"

__all__ = [
    "DivergenceWarning",
    "LinearProblem",
    "TrainResult",
    "augmented_gradient",
    "backends",
    "expected_gradient",
    "rng",
    "train",
    "train_many",
]
