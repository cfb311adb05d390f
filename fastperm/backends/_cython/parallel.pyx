# cython: language_level=3
"""Thread count of the Cython kernels: fastperm's own setting, passed to every ``prange``.

It starts at OpenMP's maximum when the module is imported (so ``OMP_NUM_THREADS``
applies) and changes only through :func:`set_threads`, for the calling Python thread
only (as Numba's ``set_num_threads``): a per-call setting made by :mod:`fastperm` never
changes the thread count of a call made meanwhile from another Python thread. A driver
given one chunk runs its ``prange`` with ``num_threads=1``: OpenMP then runs it in the
calling thread and wakes no other. The kernels pass it as
``num_threads`` explicitly instead of reading OpenMP's global setting, which other
libraries change: ``torch.set_num_threads(1)`` sets it for the whole process (seen in
the pytest-benchmark run, where it made the Cython brackets single-threaded).
"""

cdef extern from "omp_threads.h":
    int fastperm_max_threads() noexcept nogil
    int fastperm_num_procs() noexcept nogil
    int fastperm_have_openmp() noexcept nogil

cdef extern from *:
    const char* PYX_ABI_VERSION "__PYX_ABI_VERSION"

import os
import threading

from fastperm import knobs
from fastperm.knobs import as_thread_count

cdef int _default = max(1, fastperm_max_threads())
_local = threading.local()
_forked = [False]


def _in_child():
    _forked[0] = True


# a process forked after its parent used OpenMP must not start a parallel region (libgomp
# deadlocks there): a forked child runs every kernel with one thread, like the Numba backend
os.register_at_fork(after_in_child=_in_child)

#: the Cython version that generated these kernels
CYTHON_VERSION = (<bytes>PYX_ABI_VERSION).decode().replace("_", ".")


def threads():
    """Threads the parallel kernels use (1 without OpenMP, and in a forked child)."""
    return 1 if _forked[0] else getattr(_local, "n", _default)


def set_threads(n):
    """Use ``n`` threads in the parallel kernels called from this Python thread
    (1 ≤ n ≤ the number of processors)."""
    n = as_thread_count(n, max(fastperm_num_procs(), _default))
    if fastperm_have_openmp() and not _forked[0]:
        _local.n = n


def chunks(ntasks, work=None):
    """One chunk per thread, never more chunks than tasks (at least one); one chunk when the
    call's ``work`` (element operations) is below :data:`fastperm.knobs.PARALLEL_MIN_WORK`,
    where waking the other threads costs more than it saves (the per-example helpers of
    the bracket reductions: 0.4 → 0.67 M pairs/s once they stopped launching)."""
    if work is not None and work < knobs.PARALLEL_MIN_WORK:
        return 1
    return max(1, min(ntasks, threads()))


def have_openmp():
    """Whether the extension was compiled with OpenMP."""
    return bool(fastperm_have_openmp())
