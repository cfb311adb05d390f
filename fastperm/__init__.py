"""fastperm: compiled kernels for studying how training depends on symmetry and example order.

Public API
----------
LinearProblem
    The permutation-invariant linear regression problem (or your own X, y, w*).
expected_gradient, augmented_gradient
    Closed-form expected gradient over an augmentation, and its k-copy estimate.
train, train_many, TrainResult, DivergenceWarning
    Whole training runs (k = 1, k-fold augmentation, k = ∞) as one compiled call.
resume, Interrupted
    Continue a result exactly; Ctrl-C during a long call (the steps done are kept).
backends
    ``backends.available()``, ``backends.get(name)``.
rng
    The counter-based random-number specification shared by all backends.
augment
    Augmentation distributions with closed forms: ``augment.Gaussian(sigma)``,
    ``Mask(p)``, ``CyclicShift()``, ``BlockPermutation(groups)``, ``Moments(...)``.
deep_linear, schemes, equilibrium, meanfield
    Deep linear networks with input noise (exact expected gradient), the
    vanilla / DA / FA / EA schemes, SGD's noise equilibrium of two-layer linear
    networks, and the schemes at mean-field scale with the particle laws' distances
    (on first access).
lie, models
    Lie brackets of training examples, and models with per-example gradients
    (imported on first access: ``fastperm.lie.brackets(...)``).
timing, plot, digits
    Measurement helpers, figures, the digits study (also on first access).
sweep, sweeps, distributed
    A declarative grid of runs → a labelled xarray Dataset, saved to a resumable Zarr
    store, locally or on a Dask cluster (on first access).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import augment, backends, rng
from ._runs import Interrupted
from .augment import expected_gradient
from .gradients import augmented_gradient
from .problems import LinearProblem
from .train import DivergenceWarning, TrainResult, resume, train, train_many


def _installed_version() -> str:
    """The version, written once in ``pyproject.toml``, as the installed metadata says."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fastperm")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


__version__ = _installed_version()

_LAZY = (
    "lie", "models", "timing", "plot", "digits", "deep_linear", "schemes", "sweeps",
    "distributed", "equilibrium", "equilibrium_study", "meanfield", "meanfield_study",
)  # fmt: skip

if TYPE_CHECKING:  # imported on first access, by __getattr__ below
    from . import deep_linear, lie, models
    from . import digits as digits
    from . import equilibrium as equilibrium
    from . import meanfield as meanfield
    from . import plot as plot
    from . import schemes as schemes
    from . import timing as timing
    from .sweeps import sweep as sweep


def __getattr__(name: str) -> Any:
    """Import the heavier submodules on first access (PEP 562): ``import fastperm`` stays light."""
    if name == "sweep":
        return importlib.import_module(f"{__name__}.sweeps").sweep
    if name in _LAZY:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DivergenceWarning",
    "LinearProblem",
    "TrainResult",
    "resume",
    "Interrupted",
    "augment",
    "augmented_gradient",
    "backends",
    "deep_linear",
    "equilibrium",
    "expected_gradient",
    "lie",
    "meanfield",
    "models",
    "rng",
    "sweep",
    "train",
    "train_many",
]
