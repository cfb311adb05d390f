"""Thread count of the Numba backend, and how many chunks a parallel driver deals tasks to."""

import numba


def threads():
    """Threads Numba's parallel kernels use (``numba.get_num_threads()``)."""
    return numba.get_num_threads()


def set_threads(n):
    """Set the number of Numba threads for this process."""
    numba.set_num_threads(int(n))


def chunks(ntasks):
    """One chunk per thread, never more chunks than tasks (at least one)."""
    return max(1, min(ntasks, numba.get_num_threads()))
