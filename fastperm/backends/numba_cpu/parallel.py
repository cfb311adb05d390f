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

import numba

_forked = [False]


def _in_child():
    _forked[0] = True


os.register_at_fork(after_in_child=_in_child)


def threads():
    """Threads Numba's parallel kernels use (``numba.get_num_threads()``; 1 in a forked
    child)."""
    return 1 if _forked[0] else numba.get_num_threads()


def set_threads(n):
    """Set the number of Numba threads for this (calling) thread (no effect in a forked
    child, which runs serially)."""
    if not _forked[0]:
        numba.set_num_threads(int(n))


def chunks(ntasks):
    """One chunk per thread, never more chunks than tasks (at least one). One chunk means
    the driver's serial twin runs (:class:`fastperm._jit.Twins`)."""
    return max(1, min(ntasks, threads()))


def for_each_twin(call):
    """For ``compile()``: ``call()`` once with one thread (the serial twins run) and, when
    the pool has two or more, once with two (the parallel twins run, given two tasks)."""
    prev = threads()
    try:
        for n in (1, 2) if numba.config.NUMBA_NUM_THREADS >= 2 and not _forked[0] else (1,):
            set_threads(n)
            call()
    finally:
        set_threads(prev)
