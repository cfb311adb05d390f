"""Fork safety (issue 13): a process that ran fastperm's parallel kernels can fork workers
(``multiprocessing`` with the "fork" start method, Linux's default) that use them too.

Before, Numba's children aborted ("fork() called from a process already using GNU OpenMP")
and the Cython backend's children deadlocked in libgomp, so ``Pool.map`` waited for ever.
A forked child now runs every kernel serially (``threads()`` is 1 there). Each case runs in
a subprocess under a timeout, so a regression fails the test instead of hanging the suite.
"""

import subprocess
import sys
import textwrap

import pytest
from conftest import COMPILED

SCRIPT = textwrap.dedent("""
    import multiprocessing as mp, sys
    import numpy as np
    import fastperm
    from fastperm import backends, lie, models

    backend = sys.argv[1]
    p = fastperm.LinearProblem.sample(d=50, n=10, seed=0)
    kw = dict(seeds=range(8), steps=2000, backend=backend, threads=2)
    parent = fastperm.train_many(p, 16, **kw)  # a parallel region runs in the parent
    assert parent.meta["threads"] == 2, parent.meta
    m = models.MLP([6, 5, 3])
    X = np.random.default_rng(0).random((8, 6)); Y = np.eye(3)[np.arange(8) % 3]
    b_parent = lie.brackets(m, m.init(0), X, Y, backend=backend)

    def work(seed):
        r = fastperm.train_many(p, 16, **kw)
        b = lie.brackets(m, m.init(0), X, Y, backend=backend)
        return r.loss, r.meta["threads"], backends.get(backend).threads(), b

    with mp.get_context("fork").Pool(2) as pool:
        out = pool.map(work, range(2))
    for loss, used, threads, b in out:
        assert used == 1 and threads == 1, (used, threads)
        np.testing.assert_array_equal(loss, parent.loss)
        np.testing.assert_array_equal(b, b_parent)
    print("ok")
""")


@pytest.mark.parametrize("backend", COMPILED)
def test_fork_pool_after_parallel_use(backend, tmp_path):
    try:  # run outside the source tree: `python -c` there would import its uncompiled copy
        out = subprocess.run(
            [sys.executable, "-c", SCRIPT, backend],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{backend}: the fork pool hung (deadlocked children)")
    assert out.stdout.strip().endswith("ok"), (out.returncode, out.stderr[-3000:])
