"""Memory safety: every index a user supplies is proven in range before a kernel sees it.

The compiled kernels run without bounds checks, so an index out of range would read or
write outside the arrays (issue 13: ``BlockPermutation([range(1000)])`` on a d = 6 problem
crashed k-fold training). The cases run in a subprocess, so that a regression shows as a
failed test rather than a crashed test session. CI also runs the whole suite once with
``NUMBA_BOUNDSCHECK=1`` and the Cython kernels built with bounds checks
(``FASTPERM_BOUNDSCHECK=1``), where any out-of-range access fails a test.
"""

import os
import subprocess
import sys
import textwrap

import pytest
from conftest import _backends_under_test

SCRIPT = textwrap.dedent("""
    import math, sys
    import numpy as np
    import fastperm
    from fastperm import augment

    backend = sys.argv[1]
    p = fastperm.LinearProblem.sample(d=6, n=3, seed=0)
    bad = {"too many entries": augment.BlockPermutation([list(range(1000))]),
           "too few entries": augment.BlockPermutation([[0, 1], [2]])}
    refused = 0
    for what, aug in bad.items():
        calls = []
        for k in (1, 2, 4, math.inf):
            for sampling in ("fixed", "fresh"):
                kw = dict(augmentation=aug, sampling=sampling, steps=20, backend=backend)
                calls.append(lambda k=k, kw=kw: fastperm.train(p, k, **kw))
                calls.append(lambda k=k, kw=kw: fastperm.train_many(p, k, seeds=[0, 1], **kw))
        calls.append(lambda aug=aug: fastperm.augmented_gradient(
            np.zeros(6), p.X, p.y, 3, augmentation=aug, backend=backend))
        calls.append(lambda aug=aug: fastperm.expected_gradient(np.zeros(6), p.X, p.y,
                                                                augmentation=aug))
        for call in calls:
            try:
                call()
            except ValueError as exc:
                assert "BlockPermutation groups partition" in str(exc), exc
                assert "d = 6" in str(exc), exc
                refused += 1
            else:
                raise AssertionError(f"{what}: accepted")
    print("refused", refused)
""")


@pytest.mark.parametrize("backend", _backends_under_test())
def test_block_groups_checked_against_d_for_every_k(backend, tmp_path):
    """Groups that do not partition range(d) are refused for every k, sampling and entry point
    (k-fold training used to run on them and corrupt memory)."""
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, backend],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )  # the installed package
    assert out.returncode == 0, f"exit {out.returncode}\n{out.stderr[-3000:]}"
    assert out.stdout.split() == ["refused", str(2 * (4 * 2 * 2 + 2))], out.stdout


PLANTED = textwrap.dedent("""
    import numpy as np
    from fastperm import rng
    from fastperm.backends import numba_cpu as kern

    X, y, w_star, W0 = np.ones((3, 6)), np.ones(3), np.ones(6), np.zeros((1, 6))
    gidx = np.arange(1000, dtype=np.int64)  # a group reaching far past d = 6
    gptr = np.array([0, 1000], dtype=np.int64)
    try:
        kern.sgd_runs(X, y, w_star, W0, np.full(1, 1e-3), np.zeros(1, dtype=np.uint64), 2, 5, 0,
                      False, rng.KIND_BLOCK, np.zeros(2), gidx, gptr, np.array([0, 5, 6]),
                      True, np.empty((1, 2)), np.empty((1, 0, 6)), np.empty((1, 6)),
                      np.empty(1, dtype=np.int64))
    except Exception as exc:  # IndexError, wrapped in SystemError when raised in a prange
        chain = [exc, exc.__context__, exc.__cause__]
        print("caught" if any(isinstance(e, IndexError) for e in chain) else repr(exc))
""")


@pytest.mark.skipif(
    os.environ.get("NUMBA_BOUNDSCHECK") != "1",
    reason="the bounds-checked CI run (NUMBA_BOUNDSCHECK=1) only",
)
def test_bounds_checked_run_catches_a_planted_overrun(tmp_path):
    """In the bounds-checked run, an out-of-range index handed straight to a kernel (bypassing
    the front end's check) raises IndexError: the run really checks."""
    pytest.importorskip("numba")
    out = subprocess.run(
        [sys.executable, "-c", PLANTED], capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert out.stdout.strip() == "caught", (out.returncode, out.stdout, out.stderr[-2000:])


def test_problem_owns_its_data():
    """Inputs are never modified (issue 13): the caller's float64 arrays stay writable, and a
    later write through them does not change the validated problem."""
    import numpy as np

    import fastperm

    X = np.arange(12.0).reshape(3, 4)
    y, w_star = X.sum(axis=1), np.ones(4)
    p = fastperm.LinearProblem(X, y, w_star)
    assert X.flags.writeable and y.flags.writeable and w_star.flags.writeable
    X[0, 0] = 1e6
    y[:] = -1.0
    w_star[:] = 7.0
    assert p.X[0, 0] == 0.0 and p.y[0] == 6.0 and p.w_star[0] == 1.0
    assert not p.X.flags.writeable


def test_sizes_and_scales_refused_before_any_work():
    """Issue 13: a k whose copies cannot fit is a MemoryError saying how much, before any
    allocation (it failed inside the Numba driver as SystemError); a noise level or keep
    probability whose square overflows is refused when the distribution is built (k = ∞
    failed later with OverflowError, and the compiled samplers trained on all-zero copies)."""
    import numpy as np

    import fastperm
    from fastperm import augment

    p = fastperm.LinearProblem.sample(d=400, n=4)
    with pytest.raises(MemoryError, match=r"k = 1000000000 needs .* GiB .*use a smaller k"):
        fastperm.train(p, 10**9)
    with pytest.raises(MemoryError, match="use a smaller k"):
        fastperm.augmented_gradient(np.zeros(400), p.X, p.y, 10**9)
    with pytest.raises(ValueError, match="sigma must be at most"):
        augment.Gaussian(1e200)
    with pytest.raises(ValueError, match="p must be at least"):
        augment.Mask(1e-310, rescale=True)
    augment.Mask(1e-310)  # without rescaling nothing overflows
