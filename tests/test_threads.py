"""Threads per call: no parallel launch without parallel work, ``threads=`` on every training
front end, and the same result on every thread count (serial and parallel twins agree)."""

import math
import threading

import numpy as np
import pytest

import fastperm
from fastperm import _runs, backends, deep_linear, knobs, schemes


def _two_threads(kern):
    if kern.threads() < 2:
        pytest.skip("needs a backend with two threads or more")


@pytest.mark.parametrize("k", [1, 3, math.inf])
@pytest.mark.parametrize("sampling", ["fixed", "fresh"])
def test_serial_and_parallel_twins_agree(compiled, small, k, sampling):
    """Forcing one thread (serial twins) or two (parallel twins) gives bitwise equal runs."""
    _two_threads(backends.get(compiled))
    kw = dict(seeds=range(5), lr=0.02, steps=40, sampling=sampling, backend=compiled)
    one = fastperm.train_many(small, k, threads=1, **kw)
    two = fastperm.train_many(small, k, threads=2, **kw)
    assert one.meta["threads"] == 1 and two.meta["threads"] == 2
    np.testing.assert_array_equal(one.loss, two.loss)
    np.testing.assert_array_equal(one.w, two.w)


def test_small_work_runs_on_one_thread(compiled, small):
    """A single run, or a batch too small to pay for a launch, uses one thread by default;
    a batch with enough work uses one thread per run up to the backend's count."""
    kern = backends.get(compiled)
    _two_threads(kern)
    assert fastperm.train(small, 1, steps=50, backend=compiled).meta["threads"] == 1
    r = fastperm.train_many(small, math.inf, seeds=range(5), steps=1000, backend=compiled)
    assert r.meta["threads"] == 1
    big = _runs.Call("sgd_runs", {}, runs=5, work=knobs.PARALLEL_MIN_WORK)
    assert _runs.threads_for(kern, big.runs, big.work) == min(5, kern.threads())
    assert _runs.threads_for(kern, 1, 1e12) == 1  # one run: never a launch
    assert _runs.threads_for(kern, 5, 0.0, threads=8) == 5  # at most one per run


def test_threads_restored_and_validated(compiled, small):
    kern = backends.get(compiled)
    before = kern.threads()
    fastperm.train_many(small, 2, seeds=range(3), steps=10, threads=1, backend=compiled)
    assert kern.threads() == before
    with pytest.raises(ValueError, match="threads must be >= 1"):
        fastperm.train(small, 1, steps=3, threads=0)
    with pytest.raises(TypeError, match="threads must be an integer"):
        fastperm.train(small, 1, steps=3, threads=2.5)
    with pytest.raises(ValueError, match="threads = 10000 is more than backend"):
        fastperm.train_many(small, 1, seeds=range(10000), steps=1, threads=10000, backend=compiled)


def test_threads_on_every_front_end(small):
    net = deep_linear.DeepLinear([small.d, 3])
    a = deep_linear.train(small, net, 2, sigma=0.1, seeds=[0, 1], steps=20, threads=1)
    b = deep_linear.train(small, net, 2, sigma=0.1, seeds=[0, 1], steps=20)
    np.testing.assert_array_equal(a.loss, b.loss)
    c = schemes.run(small, "da", k=3, seeds=[0, 1], steps=20, threads=1)
    d = schemes.run(small, "da", k=3, seeds=[0, 1], steps=20)
    np.testing.assert_array_equal(c.loss, d.loss)


def test_thread_setting_is_per_python_thread(compiled):
    """A per-call setting in one Python thread does not change another's."""
    kern = backends.get(compiled)
    _two_threads(kern)
    before = kern.threads()
    seen = []
    kern.set_threads(1)
    try:
        t = threading.Thread(target=lambda: seen.append(kern.threads()))
        t.start()
        t.join()
    finally:
        kern.set_threads(before)
    assert seen == [before]
