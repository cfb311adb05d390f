"""The GPU this backend runs on, the launch configuration, and moving arrays to and from it.

Arguments of the backend's kernels may be NumPy arrays (copied to the device
once per call; outputs copied back when the call ends) or device arrays
(``numba.cuda.to_device``, or anything with ``__cuda_array_interface__``;
used in place, outputs stay on the device). Passing device arrays lets a
caller keep a problem on the GPU across many calls.
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
from numba import cuda
from numba.core import config

from ... import knobs

#: True when Numba's CUDA simulator runs the kernels (``NUMBA_ENABLE_CUDASIM=1``)
SIMULATOR = bool(config.ENABLE_CUDASIM)  # type: ignore[attr-defined]  # set at import

#: largest number of threads per block the kernels support (their static shared arrays)
MAX_BLOCK = 256


def check_available():
    """Raise ImportError saying what is missing when no GPU can be used."""
    if SIMULATOR:
        return
    try:
        cuda.get_current_device()
    except Exception as exc:  # CudaSupportError, or a driver error of another kind
        reason = " ".join(str(exc).split())
        raise ImportError(
            f"numba.cuda found no usable GPU ({reason}). The cuda backend needs an NVIDIA GPU, "
            "its driver, and `pip install 'fastperm[cuda]'`; to run the kernels on the CPU "
            "for testing, set NUMBA_ENABLE_CUDASIM=1 before numba is imported"
        ) from None


def describe() -> str:
    """One line naming the device (or the simulator)."""
    if SIMULATOR:
        return "Numba CUDA simulator (NUMBA_ENABLE_CUDASIM=1: kernels run on the CPU, slowly)"
    dev = cuda.get_current_device()
    name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
    free, total = cuda.current_context().get_memory_info()
    cc = ".".join(map(str, dev.compute_capability))
    return (
        f"{name}, compute capability {cc}, {dev.MULTIPROCESSOR_COUNT} SMs, "
        f"{total / 2**30:.1f} GiB ({free / 2**30:.1f} GiB free)"
    )


def concurrent_blocks() -> int:
    """About how many blocks the device runs at once (1 on the simulator)."""
    if SIMULATOR:
        return 1
    return int(cuda.get_current_device().MULTIPROCESSOR_COUNT) * 16


def set_block(n):
    """Threads per block: a power of two in [1, MAX_BLOCK], or 0 to choose by problem size."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"block must be an int, got {type(n).__name__}")
    n = int(n)
    if n != 0 and not (1 <= n <= MAX_BLOCK and n & (n - 1) == 0):
        raise ValueError(
            f"block must be 0 (automatic) or a power of two in [1, {MAX_BLOCK}], got {n}"
        )
    knobs.CUDA_BLOCK = n


def block(width: int) -> int:
    """Threads per block for work ``width`` wide: the setting, else a power of two near
    width / 8 in [32, MAX_BLOCK] (a few elements per thread keeps the block reductions
    short)."""
    if knobs.CUDA_BLOCK:
        return knobs.CUDA_BLOCK
    t = 32
    while t < MAX_BLOCK and 8 * t < width:
        t *= 2
    return t


def is_device(a) -> bool:
    return hasattr(a, "__cuda_array_interface__") or hasattr(a, "copy_to_host")


def to_device(a):
    """A device array for ``a`` (``a`` itself when it already lives on the device)."""
    return a if is_device(a) else cuda.to_device(np.ascontiguousarray(a))


class Outputs:
    """Device arrays for the output arguments; ``finish()`` copies them back into host outputs."""

    def __init__(self, *arrays):
        self.host = arrays
        # host outputs get fresh device arrays (nothing to copy in: the kernels never read an
        # output before writing it; entries they leave unwritten are set by the harness)
        self.dev = [a if is_device(a) else cuda.device_array(a.shape, a.dtype) for a in arrays]

    def finish(self):
        for h, d in zip(self.host, self.dev, strict=False):
            if d is not h:
                d.copy_to_host(h)
            else:
                cuda.synchronize()


@contextlib.contextmanager
def quiet_simulator():
    """The simulator runs device code as NumPy scalars, whose uint64 products warn on the
    (intended, wrapping) overflow of the generator's arithmetic; silence that warning only."""
    if not SIMULATOR:
        yield
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "overflow encountered", RuntimeWarning)
        yield
