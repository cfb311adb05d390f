"""Thread count of the Numba backend, and how many chunks a parallel driver deals tasks to.

Numba's thread count is per calling thread (``numba.set_num_threads``), so a per-call
setting made by :mod:`fastperm` never changes another Python thread's.

Fork safety: a process forked from one that ran a parallel region cannot use the OpenMP or
workqueue thread pool (Numba aborts: "fork() called from a process already using GNU
OpenMP"). So in a forked child every driver runs its serial twin: :func:`threads` is 1 and
:func:`set_threads` has no effect there. Worker processes of a ``multiprocessing`` pool
(Linux's default start method is "fork") therefore each compute on one thread, which is
what a pool of one process per core wants; start them with "spawn" or "forkserver" to give
each its own thread pool.
"""

import os
import threading

import numba

from ... import knobs
from ...knobs import as_thread_count

_forked = [False]
_local = threading.local()  # .n: this Python thread's setting, when it differs from Numba's


def _in_child():
    _forked[0] = True


os.register_at_fork(after_in_child=_in_child)


def threads():
    """Threads the parallel kernels use for calls from this Python thread: the last
    :func:`set_threads`, else ``numba.get_num_threads()``; 1 in a forked child."""
    if _forked[0]:
        return 1
    return getattr(_local, "n", 0) or numba.get_num_threads()


def set_threads(n):
    """Use ``n`` threads for calls from this Python thread (no effect in a forked child,
    which runs serially). One thread needs no thread pool, so it leaves Numba's own setting
    alone (and costs nothing); more set Numba's count (which refuses more than
    ``NUMBA_NUM_THREADS``). Setting Numba's current count drops the override, so a later
    ``numba.set_num_threads`` is followed again."""
    n = as_thread_count(n, numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
    if _forked[0]:
        return
    current = numba.get_num_threads()
    if n > 1 and n != current:
        numba.set_num_threads(n)
        current = n
    if n == current:
        _local.__dict__.pop("n", None)
    else:
        _local.n = n


def chunks(ntasks, work=None):
    """One chunk per thread, never more chunks than tasks (at least one); one chunk when the
    call's ``work`` (element operations) is below :data:`fastperm.knobs.PARALLEL_MIN_WORK`,
    where waking the other threads costs more than it saves (the per-example helpers of
    the bracket reductions: 0.4 → 0.67 M pairs/s once they stopped launching)."""
    if work is not None and work < knobs.PARALLEL_MIN_WORK:
        return 1
    return max(1, min(ntasks, threads()))


def for_each_twin(call):
    """For ``compile()``: ``call()`` once with one thread (the serial twins run) and, when
    the pool has two or more, once with two (the parallel twins run, given two tasks)."""
    prev = threads()
    try:
        for n in (1, 2) if numba.config.NUMBA_NUM_THREADS >= 2 and not _forked[0] else (1,):  # type: ignore[attr-defined]
            set_threads(n)
            call()
    finally:
        set_threads(prev)
