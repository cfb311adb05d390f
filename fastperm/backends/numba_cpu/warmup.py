"""Tiny arguments of the types fastperm passes, for the ``compile()`` of each kernel module.

Numba compiles one specialisation per argument type, so the warm-up calls must use the
types the front ends pass: the problem's arrays are read-only (``LinearProblem`` owns
them), starts and outputs are writable, and every driver runs as both of its twins
(:func:`fastperm.backends.numba_cpu.parallel.for_each_twin`, hence two runs).
"""

from __future__ import annotations

import functools

import numpy as np

from .parallel import for_each_twin


def problem(d: int = 2, dtype=np.float64):
    """``(X, y, w_star)``: one example of d features, read-only like a LinearProblem's."""
    X, y, w_star = np.ones((1, d), dtype), np.ones(1, dtype), np.ones(d, dtype)
    for a in (X, y, w_star):
        a.setflags(write=False)
    return X, y, w_star


def runs(width: int, records: int = 2, dtype=np.float64):
    """``(lr, seeds, record_steps, loss_out, w_rec, w_out, status_out)`` for two runs of one
    step (the parameters kept at each record; parameters of ``dtype``)."""
    return (
        np.ones(2),
        np.zeros(2, dtype=np.uint64),
        np.array([0, 1, 2], dtype=np.int64),
        np.empty((2, records)),
        np.empty((2, records, width), dtype),
        np.empty((2, width), dtype),
        np.empty(2, dtype=np.int64),
    )


def once(warm):
    """``compile()`` from ``warm()``: run it under each twin's thread count, once a process."""
    done: list[bool] = []

    @functools.wraps(warm)
    def compile():
        if not done:
            for_each_twin(warm)
            done.append(True)

    return compile
