"""numba.cuda backend: batched training runs and bracket batches on an NVIDIA GPU.

Never chosen by ``backend="auto"``; ask for it with ``backend="cuda"``. Needs
``pip install 'fastperm[cuda]'`` (numba-cuda), an NVIDIA GPU and its driver;
importing this module without them raises ImportError saying what is missing,
which :func:`fastperm.backends.get` reports. With ``NUMBA_ENABLE_CUDASIM=1``
(set before numba is imported) the kernels run on Numba's CUDA simulator, on
the CPU: slow, for tests at tiny sizes.

Kernel contract: :mod:`fastperm.backends.contract` (arguments may also be
device arrays, see :mod:`.device`). Launch layout: :mod:`.sgd`, :mod:`.dual`, :mod:`.lie`,
:mod:`.equilibrium`, :mod:`.meanfield`.
"""

from ...knobs import as_thread_count
from .device import check_available

check_available()

from .device import SIMULATOR, block, describe, set_block  # noqa: E402
from .dual import dual_runs  # noqa: E402
from .equilibrium import balance_runs  # noqa: E402
from .lie import (  # noqa: E402
    bracket_logits,
    bracket_norms,
    brackets_all,
    brackets_pairs,
    example_grads,
)
from .meanfield import meanfield_runs  # noqa: E402
from .sgd import (  # noqa: E402
    SAMPLER_KINDS,
    augmented_gradient,
    compile,
    expected_runs,
    fixed_copies,
    sgd_runs,
)

name = "cuda"

#: the fixed-copy cache holds n·k·d floats for every run at once (all runs are resident)
CACHE_PER_RUN = True


def threads():
    """Runs (blocks) the device holds at once, about: 16 per multiprocessor (1 on the simulator)."""
    from .device import concurrent_blocks

    return concurrent_blocks()


def set_threads(n):
    """No effect (``n`` is checked as on every backend): GPU parallelism comes from the launch
    (threads per block: :func:`set_block`)."""
    as_thread_count(n)


__all__ = [
    "SAMPLER_KINDS",
    "SIMULATOR",
    "augmented_gradient",
    "balance_runs",
    "block",
    "bracket_logits",
    "bracket_norms",
    "brackets_all",
    "brackets_pairs",
    "compile",
    "describe",
    "dual_runs",
    "example_grads",
    "expected_runs",
    "fixed_copies",
    "meanfield_runs",
    "name",
    "set_block",
    "set_threads",
    "sgd_runs",
    "threads",
]
