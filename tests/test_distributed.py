"""Runs spread over a Dask cluster (issue 16, item 1): ``train_many(..., client=...)`` equals
the same call without a client bitwise, on a cluster of two worker processes on loopback,
and once on a scheduler and workers started with Dask's own command-line tools."""

import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import fastperm
from fastperm import augment, distributed

dd = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def problem():
    return fastperm.LinearProblem.sample(d=24, n=6, seed=3, n_test=10)


KW = dict(seeds=range(11), lr=np.linspace(0.002, 0.03, 11), steps=120, record_every=20)

CASES = [
    (1, "fixed", "permutation"),
    (16, "fixed", "permutation"),
    (16, "fresh", "permutation"),
    (math.inf, "fixed", "permutation"),
    (4, "fresh", augment.Gaussian(0.3)),
    (math.inf, "fixed", augment.CyclicShift()),
]


@pytest.mark.parametrize("k, sampling, aug", CASES)
def test_spread_equals_local(client, problem, k, sampling, aug):
    kw = dict(KW, sampling=sampling, augmentation=aug)
    local = fastperm.train_many(problem, k, **kw)
    spread = fastperm.train_many(problem, k, client=client, **kw)
    assert spread == local  # every array bitwise, the settings, the problem
    np.testing.assert_array_equal(spread.loss, local.loss)
    np.testing.assert_array_equal(spread.w, local.w)
    assert spread.meta["tasks"] > 1 and spread.meta["workers"] == 2


def test_spread_over_problems_starts_records_dtype(client, problem):
    problems = [
        fastperm.LinearProblem.sample(d=24, n=n, seed=s, n_test=5) for s, n in ((0, 4), (1, 9))
    ]
    w0 = np.random.default_rng(0).standard_normal((2, 24)) * 0.1
    kw = dict(seeds=[0, 1], lr=0.01, steps=90, record_every=15, record=["test", "w"], w0=w0)
    local = fastperm.train_many(problems, 3, **kw)
    assert fastperm.train_many(problems, 3, client=client, **kw) == local
    if "numba" in fastperm.backends.available():
        kw32 = dict(KW, dtype="float32", backend="numba")
        assert fastperm.train_many(problem, 2, client=client, **kw32) == fastperm.train_many(
            problem, 2, **kw32
        )


def test_divergence_is_reported_once(client, problem):
    with pytest.warns(fastperm.DivergenceWarning, match="run 0"):
        res = fastperm.train_many(problem, 1, seeds=[0, 1, 2], lr=[80.0, 0.01, 0.01],
                                  steps=400, record_every=100, client=client)  # fmt: skip
    assert res.diverged_step[0] > 0 and (res.diverged_step[1:] == -1).all()


def test_tasks_balance_costs():
    cost = np.array([1.0] * 8 + [16.0] * 8)  # k = 1 runs, then k = 16 runs
    slices = distributed.task_slices(cost, 4)
    sums = [cost[s].sum() for s in slices]
    assert slices[0].start == 0 and slices[-1].stop == 16
    assert all(a.stop == b.start for a, b in zip(slices[:-1], slices[1:], strict=True))
    assert max(sums) <= 1.5 * cost.sum() / 4  # about equal cost, not equal counts
    assert [s.stop - s.start for s in slices] != [4, 4, 4, 4]
    assert distributed.task_slices(np.ones(3), 10) == [slice(0, 1), slice(1, 2), slice(2, 3)]


def test_not_a_client(problem):
    with pytest.raises(TypeError, match="client must be a dask.distributed.Client"):
        fastperm.train_many(problem, 1, client="tcp://localhost:8786")


def test_cluster_started_with_dask_commands(tmp_path, problem):
    """A scheduler and two workers as separate processes, started with ``dask scheduler`` and
    ``dask worker`` the way a real cluster runs (README: Running on a cluster)."""
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    worker = [sys.executable, "-m", "distributed.cli.dask_worker"]
    sched_file = tmp_path / "scheduler.json"
    env = dict(os.environ)
    procs = [subprocess.Popen([*dask, "--scheduler-file", str(sched_file), "--port", "0",
                               "--no-dashboard"], env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]  # fmt: skip
    try:
        for _ in range(200):
            if sched_file.exists():
                break
            time.sleep(0.1)
        for _ in range(2):
            procs.append(subprocess.Popen([*worker, "--scheduler-file", str(sched_file),
                                           "--nthreads", "1", "--no-dashboard"], env=env,
                                          cwd=tmp_path, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))  # fmt: skip
        with dd.Client(scheduler_file=str(sched_file), timeout=60) as c:
            c.wait_for_workers(2, timeout=120)
            spread = fastperm.train_many(problem, 4, client=c, **KW)
            assert spread.meta["workers"] == 2
        assert spread == fastperm.train_many(problem, 4, **KW)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


def test_progress_bar_over_tasks(client, problem):
    assert fastperm.train_many(problem, 2, client=client, progress="tasks", **KW) == (
        fastperm.train_many(problem, 2, **KW)
    )


def test_a_killed_worker_changes_nothing(client, problem):
    """A worker process dies in the middle of a call: its tasks run again elsewhere (or on
    its restarted self) and the result is still exactly the local one."""
    import threading

    kw = dict(seeds=range(40), lr=0.002, steps=80_000, record_every=20_000, sampling="fresh")
    t0 = time.perf_counter()
    local = fastperm.train_many(problem, 8, **kw)
    took = time.perf_counter() - t0
    before = set(client.nthreads())
    victim = sorted(before)[0]

    def kill():
        time.sleep(min(0.3, took / 4))
        try:
            client.run(os._exit, 1, workers=[victim])
        except Exception:  # the worker died before it could answer: as intended
            pass

    killer = threading.Thread(target=kill, daemon=True)
    killer.start()
    spread = fastperm.train_many(problem, 8, client=client, **kw)
    killer.join()
    assert spread == local
    client.wait_for_workers(2, timeout=120)  # the nanny restarts it for the next tests
    assert set(client.nthreads()) != before, "no worker was killed: the test proved nothing"


def test_deep_linear_and_schemes_spread(client, problem):
    from fastperm import deep_linear, schemes

    net = deep_linear.DeepLinear([24, 6, 3])
    kw = dict(k=4, sigma=0.2, seeds=range(9), lr=0.005, steps=80, record_every=20)
    local = deep_linear.train(problem, net, **kw)
    spread = deep_linear.train(problem, net, client=client, **kw)
    assert spread == local and spread.meta["tasks"] > 1
    skw = dict(k=3, lr=0.01, steps=60, seeds=range(7), record_every=20)
    a = schemes.run(problem, "da", **skw)
    b = schemes.run(problem, "da", client=client, **skw)
    for name in ("loss", "distance", "w", "diverged_step"):
        np.testing.assert_array_equal(getattr(b, name), getattr(a, name))


def test_workers_run_the_warmed_kernels(client, problem):
    """The problem's arrays reach the workers read-only, as locally (Dask's serialisation
    keeps the flag): their kernels are the specialisations compile() warmed, so no task
    compiles inside its timing."""
    fastperm.train_many(problem, 3, client=client, **KW)  # every worker has run a task
    res = fastperm.train_many(problem, 3, client=client, **dict(KW, steps=50))
    assert res.meta["compile_seconds"] < 1.0
    if "numba" in fastperm.backends.available():

        def x_is_readonly():  # on each worker: X (the first argument) of the serial driver
            from fastperm.backends.numba_cpu import sgd

            return [not sig[0].mutable for sig in sgd._sgd_driver.serial.signatures]

        for flags in client.run(x_is_readonly).values():
            assert flags and all(flags), flags


@pytest.fixture(scope="module")
def mlp_batch():
    from fastperm import models

    model = models.MLP([5, 4, 3])
    rng = np.random.default_rng(7)
    X, Y = rng.standard_normal((9, 5)), rng.integers(0, 2, (9, 3)).astype(float)
    return model, model.init(seed=1), X, Y


def test_brackets_spread_equal_local(client, mlp_batch):
    model, theta, X, Y = mlp_batch
    local = fastperm.lie.brackets(model, theta, X, Y)
    spread = fastperm.lie.brackets(model, theta, X, Y, client=client)
    np.testing.assert_array_equal(spread, local)  # all pairs, from pair blocks
    pairs = [(0, 3), (8, 1), (2, 2), (4, 5), (6, 7)]
    b, err = fastperm.lie.brackets(model, theta, X, Y, pairs=pairs, order=4, return_error=True)
    bs, errs = fastperm.lie.brackets(
        model, theta, X, Y, pairs=pairs, order=4, return_error=True, client=client
    )
    np.testing.assert_array_equal(bs, b)
    np.testing.assert_array_equal(errs, err)
    full, full_err = fastperm.lie.brackets(model, theta, X, Y, return_error=True)
    spread, spread_err = fastperm.lie.brackets(model, theta, X, Y, return_error=True,
                                               client=client)  # fmt: skip
    np.testing.assert_array_equal(spread_err, full_err)
    buffer = np.empty_like(full)
    assert fastperm.lie.brackets(model, theta, X, Y, client=client, out=buffer) is buffer
    np.testing.assert_array_equal(buffer, full)
    with pytest.raises(ValueError, match="out must be"):
        fastperm.lie.brackets(model, theta, X, Y, client=client, out=np.empty((2, 2)))


def test_brackets_spread_check_can_fail(client, mlp_batch):
    """The comparison above sees one pair off by one ulp (a planted error)."""
    model, theta, X, Y = mlp_batch
    spread = fastperm.lie.brackets(model, theta, X, Y, client=client)
    spread[2, 5, 3] = np.nextafter(spread[2, 5, 3], np.inf)
    with pytest.raises(AssertionError):
        np.testing.assert_array_equal(spread, fastperm.lie.brackets(model, theta, X, Y))


def test_tensor_rms_spread_equals_local(client, mlp_batch):
    model, theta, X, Y = mlp_batch
    thetas = [theta, theta * 0.5, model.init(seed=2)]
    local = fastperm.lie.tensor_rms(model, thetas, X, Y)
    spread = fastperm.lie.tensor_rms(model, thetas, X, Y, client=client, progress=True)
    for name in model.tensors:
        np.testing.assert_array_equal(spread.rms_bracket[name], local.rms_bracket[name])
        np.testing.assert_array_equal(spread.rms_grad[name], local.rms_grad[name])
        assert spread.slope[name] == local.slope[name]
    np.testing.assert_array_equal(spread.pairs, local.pairs)


def test_lie_refuses_a_non_client(mlp_batch):
    model, theta, X, Y = mlp_batch
    with pytest.raises(TypeError, match="client must be"):
        fastperm.lie.brackets(model, theta, X, Y, client="tcp://localhost:8786")
    with pytest.raises(TypeError, match="client must be"):
        fastperm.lie.tensor_rms(model, theta, X, Y, client=object())
