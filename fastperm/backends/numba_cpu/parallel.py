"""Thread count of the Numba backend, and how many chunks a parallel driver deals tasks to.

Numba's thread count is per calling thread (``numba.set_num_threads``), so a per-call
setting made by :mod:`fastperm` never changes another Python thread's.
"""

import numba


def threads():
    """Threads Numba's parallel kernels use (``numba.get_num_threads()``)."""
    return numba.get_num_threads()


def set_threads(n):
    """Set the number of Numba threads for this (calling) thread."""
    numba.set_num_threads(int(n))


def chunks(ntasks):
    """One chunk per thread, never more chunks than tasks (at least one). One chunk means
    the driver's serial twin runs (:class:`fastperm._jit.Twins`)."""
    return max(1, min(ntasks, numba.get_num_threads()))


def for_each_twin(call):
    """For ``compile()``: ``call()`` once with one thread (the serial twins run) and, when
    the pool has two or more, once with two (the parallel twins run, given two tasks)."""
    prev = numba.get_num_threads()
    try:
        for n in (1, 2) if numba.config.NUMBA_NUM_THREADS >= 2 else (1,):
            numba.set_num_threads(n)
            call()
    finally:
        numba.set_num_threads(prev)
