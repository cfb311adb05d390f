"""Shared fixtures: every backend-facing test runs once per available backend.

``FASTPERM_TEST_BACKENDS`` (comma-separated) restricts the backends tested;
by default all CPU backends that import here are tested. The cuda backend has
its own suite (``tests/test_cuda.py``, tiny sizes): it runs on Numba's CUDA
simulator unless ``NUMBA_ENABLE_CUDASIM=0`` is set (on a machine with a GPU).
"""

import os

# before anything imports numba: the CUDA kernels run on the simulator unless told otherwise
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import numpy as np
import pytest

import fastperm
from fastperm import backends


def _backends_under_test():
    names = [b for b in backends.available() if b in backends.AUTO]
    chosen = os.environ.get("FASTPERM_TEST_BACKENDS")
    if chosen:
        names = [b for b in chosen.split(",") if b]
    return names


COMPILED = [b for b in _backends_under_test() if b != "numpy"]


@pytest.fixture(params=_backends_under_test())
def backend(request):
    """Name of a backend under test (the reference included)."""
    return request.param


@pytest.fixture(
    params=COMPILED or [pytest.param(None, marks=pytest.mark.skip("no compiled backend"))]
)
def compiled(request):
    """Name of a compiled backend under test (checked against the reference)."""
    return request.param


@pytest.fixture
def small():
    """A small problem: d = 12, n = 5 (the reference backend is slow)."""
    return fastperm.LinearProblem.sample(d=12, n=5, seed=3)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def client():
    """A Dask cluster of two single-threaded worker processes on loopback, shared by the
    distributed tests (test_distributed, test_sweep). Its HTTP server takes a free port
    (":0"), leaving Dask's default 8787 to the clusters the README and CLI tests start."""
    dd = pytest.importorskip("distributed")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the cluster's own start-up notices
        cluster = dd.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        )
        c = dd.Client(cluster)
    yield c
    c.close()
    cluster.close()
