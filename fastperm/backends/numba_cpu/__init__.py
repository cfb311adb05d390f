"""Numba CPU backend (the default): fused, compiled training runs and bracket batches,
parallel over runs / example blocks.

Kernel contract: :mod:`fastperm.backends.contract`.
"""

import sys
from collections.abc import Sequence
from types import ModuleType

from . import closed_forms, deep_linear, dual, equilibrium, meanfield, schemes, sgd
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
from .parallel import set_threads, threads
from .schemes import scheme_runs
from .sgd import augmented_gradient, expected_runs, fixed_copies, sgd_runs

name = "numba"

#: its bracket kernels call a CustomModel's compiled gradient (the others refuse one, or
#: use the model's NumPy gradient): the front end probes that kernel before the first call
CALLS_MODEL_KERNEL = True


#: the parameter types its training kernels run in (``train(dtype=...)``): float32 for
#: ``sgd_runs`` (plain and k-fold SGD), whose kernels are generic in the array type
DTYPES = ("float64", "float32")

#: the modules whose kernels the run harness times, each with its compile()
_TRAINING = (sgd, dual, closed_forms, deep_linear, schemes, equilibrium, meanfield)


def compile(families=None, dtype="float64"):
    """Compile (or load from Numba's cache) the training kernels, both twins of each driver
    (serial and parallel), so that ``TrainResult.seconds`` never includes JIT compilation.

    ``families``: the kernel families about to run (names of the contract); their modules
    are compiled, each once a process. None: every training module. ``dtype="float32"``:
    the float32 specialisations of ``sgd_runs`` too."""
    if dtype == "float32":
        sgd.compile_float32()
    if families is None:
        modules: Sequence[ModuleType] = _TRAINING
    elif _ready.issuperset(families):
        return
    else:
        this = sys.modules[__name__]
        wanted = {getattr(this, f).__module__ for f in families if hasattr(this, f)}
        modules = [m for m in _TRAINING if m.__name__ in wanted]
    for module in modules:
        module.compile()
    if families is not None:
        _ready.update(families)


_ready: set = set()  # families whose modules compile() has done


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
