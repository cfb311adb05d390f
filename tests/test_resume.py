"""Resume and interrupt (issue 15, item 3): a resumed run equals the uninterrupted one
bitwise, calls split into parts equal one call, Ctrl-C stops a long call within a second."""

import math
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest

import fastperm
from fastperm import knobs

CASES = [
    (1, "fixed", "permutation"),
    (3, "fixed", "permutation"),
    (3, "fresh", "permutation"),
    (3, "fixed", "resample"),
    (2, "fresh", "gaussian"),
    (math.inf, "fixed", "permutation"),
    (math.inf, "fixed", "gaussian"),
    (math.inf, "fixed", "cyclic"),
]


def _aug(name):
    return {
        "gaussian": fastperm.augment.Gaussian(0.3),
        "cyclic": fastperm.augment.CyclicShift(),
    }.get(name, name)


def _supported(backend, k, aug):
    if backend == "cuda":
        return aug in ("permutation", "resample")
    if backend == "cython" and math.isinf(k) and aug == "cyclic":
        return "circulant_runs" in fastperm.backends.capabilities()["cython"]
    return True


@pytest.fixture(scope="module")
def problem():
    return fastperm.LinearProblem.sample(d=16, n=5, seed=4)


@pytest.mark.parametrize("k, sampling, aug", CASES)
def test_resumed_equals_uninterrupted(backend, problem, k, sampling, aug):
    if not _supported(backend, k, aug):
        pytest.skip(f"{backend} has no kernel for this case")
    kw = dict(sampling=sampling, augmentation=_aug(aug), backend=backend, record_every=7)
    many = dict(seeds=[0, 1, 2], lr=[0.01, 0.03, 0.05])
    whole = fastperm.train_many(problem, k, steps=60, **many, **kw)
    first = fastperm.train_many(problem, k, steps=23, **many, **kw)
    mid = fastperm.resume(first, problem, 17, backend=backend)
    rest = fastperm.resume(mid, problem, 20, backend=backend)
    np.testing.assert_array_equal(rest.w, whole.w)
    np.testing.assert_array_equal(rest.steps, [40, 42, 49, 56, 60])
    np.testing.assert_array_equal(rest.loss[:, 1:], whole.loss[:, -4:])
    np.testing.assert_array_equal(mid.steps, [23, 28, 35, 40])
    np.testing.assert_array_equal(mid.loss[:, 0], first.loss[:, -1])
    assert rest.meta["start_step"] == 40 and rest.meta["steps"] == 60
    np.testing.assert_array_equal(rest.meta["w0"], whole.meta["w0"])
    # a single run, and a resume of a result read back from a file
    one = fastperm.train(problem, k, steps=23, lr=0.03, seed=1, **kw)
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"fastperm-resume-{os.getpid()}.npz")
    one.save(path)
    try:
        back = fastperm.TrainResult.load(path)
    finally:
        os.remove(path)
    again = fastperm.resume(back, problem, 37, backend=backend, augmentation=_aug(aug))
    np.testing.assert_array_equal(again.w, whole.w[1])
    np.testing.assert_array_equal(again.loss[-1], whole.loss[1, -1])


def test_resume_planted_error_is_seen(problem):
    """The comparison above can fail: resuming from a w one ulp off changes the result."""
    first = fastperm.train(problem, 3, steps=23, lr=0.03, sampling="fresh")
    whole = fastperm.train(problem, 3, steps=60, lr=0.03, sampling="fresh")
    first.w = np.nextafter(first.w, 2.0)
    assert not np.array_equal(fastperm.resume(first, problem, 37).w, whole.w)


@pytest.mark.parametrize("k, sampling", [(1, "fixed"), (4, "fixed"), (4, "fresh")])
def test_parts_equal_one_call(backend, problem, k, sampling, monkeypatch):
    """A call split into parts (Ctrl-C points) is bitwise one call, divergence included."""
    kw = dict(seeds=[0, 1, 2], lr=[0.01, 0.05, 3.0], steps=300, record_every=11)
    kw.update(sampling=sampling, backend=backend)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastperm.DivergenceWarning)
        one = fastperm.train_many(problem, k, **kw)
        monkeypatch.setattr(knobs, "INTERRUPT_WORK", 2000.0)
        monkeypatch.setattr(knobs, "PART_MIN_EPOCHS", 8)
        parts = fastperm.train_many(problem, k, **kw)
    assert one.diverged_step[2] > 0  # the large lr diverges, at the same step
    np.testing.assert_array_equal(parts.diverged_step, one.diverged_step)
    np.testing.assert_array_equal(parts.loss, one.loss)
    np.testing.assert_array_equal(parts.w, one.w)


def test_diverged_runs_stay_diverged(problem):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastperm.DivergenceWarning)
        first = fastperm.train_many(problem, 2, seeds=[0, 1], lr=[0.01, 5.0], steps=200)
    assert first.diverged_step[1] > 0
    rest = fastperm.resume(first, problem, 50)
    assert rest.diverged_step[1] == first.diverged_step[1] and np.isnan(rest.loss[1]).all()
    whole = fastperm.train(problem, 2, seed=0, lr=0.01, steps=250)
    np.testing.assert_array_equal(rest.w[0], whole.w)


def test_resume_over_problems():
    problems = [fastperm.LinearProblem.sample(d=9, n=3 + s, seed=s) for s in range(3)]
    first = fastperm.train_many(problems, 4, seeds=[0, 1, 2], steps=30, lr=0.02)
    rest = fastperm.resume(first, problems, 30)
    whole = fastperm.train_many(problems, 4, seeds=[0, 1, 2], steps=60, lr=0.02)
    np.testing.assert_array_equal(rest.w, whole.w)
    with pytest.raises(ValueError, match="is not the problem of result"):
        fastperm.resume(first, problems[::-1], 30)


def test_resume_refusals(problem):
    res = fastperm.train(problem, 2, steps=5, augmentation=fastperm.augment.Gaussian(0.2))
    res.augmentation = repr(res.augmentation)  # as read back from a file
    with pytest.raises(ValueError, match="pass it again"):
        fastperm.resume(res, problem, 5)
    with pytest.raises(TypeError, match="result must be a fastperm.TrainResult"):
        fastperm.resume("result", problem, 5)
    with pytest.raises(ValueError, match="steps"):
        fastperm.resume(res, problem, -1, augmentation=fastperm.augment.Gaussian(0.2))


def test_progress_bar_for_one_long_run(problem, capsys):
    pytest.importorskip("tqdm")
    fastperm.train(problem, 2, steps=2000, progress="one run")
    err = capsys.readouterr().err
    assert "one run" in err and "2.00k/2.00k" in err


SIGINT_SCRIPT = """
import math, time, numpy as np, fastperm
problem = fastperm.LinearProblem.sample(d=4000, n=50, seed=0)
fastperm.train(problem, 16, steps=10, sampling="fresh")  # compiled before the clock
print("ready", flush=True)
t0 = time.perf_counter()
try:
    fastperm.train(problem, 16, steps=2_000_000, sampling="fresh", lr=1e-5, record_every=1000)
    print("finished", flush=True)
except KeyboardInterrupt as exc:
    dt = time.perf_counter() - t0
    res = exc.result
    print("interrupted", type(exc).__name__, round(dt, 2), exc.step, res.steps[-1], flush=True)
    more = fastperm.resume(res, problem, 100)  # the process is usable, the result resumable
    whole = fastperm.train(problem, 16, steps=int(res.steps[-1]) + 100, sampling="fresh",
                           lr=1e-5, record_every=1000)
    print("resumed", bool(np.array_equal(more.w, whole.w)), flush=True)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_sigint_stops_a_long_call_within_seconds(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(SIGINT_SCRIPT)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready"
    # 3 s: on a machine loaded three times over its cores (this one, 2 cores, during a CI run
    # beside other work) the first part of the call (~1 s idle) may not be done after 1 s
    time.sleep(3.0)
    sent = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    line = proc.stdout.readline().split()
    waited = time.perf_counter() - sent
    out, err = proc.communicate(timeout=600)
    assert line[:2] == ["interrupted", "Interrupted"], (line, out, err)
    assert waited < 3.0, waited  # the call had ~60 s of work left
    step, last = int(line[3]), int(line[4])
    assert 0 < step == last < 2_000_000
    assert out.strip() == "resumed True", (out, err)


def test_resume_leaves_its_input_alone_and_names_the_right_run(problem):
    """resume() never changes the result passed in; a divergence during it names the run
    among all runs (review of issue 15: both went wrong)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastperm.DivergenceWarning)
        first = fastperm.train_many(problem, 1, seeds=0, lr=[5.0, 0.01, 2.0], steps=150)
    assert first.diverged_step.tolist()[0] > 0 and first.diverged_step.tolist()[1:] == [-1, -1]
    before = (first.diverged_step.copy(), first.lr.copy(), first.meta["w0"].copy())
    with pytest.warns(fastperm.DivergenceWarning, match=r"run 2 .*1 of 3 runs diverged") as w:
        rest = fastperm.resume(first, problem, 400)
    assert w[0].filename == __file__
    np.testing.assert_array_equal(first.diverged_step, before[0])
    np.testing.assert_array_equal(first.lr, before[1])
    np.testing.assert_array_equal(first.meta["w0"], before[2])
    assert rest.diverged_step[2] > 150
    # and again from the untouched input: the same continuation
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastperm.DivergenceWarning)
        assert fastperm.resume(first, problem, 400) == rest


def ctrl_c_at_third_part(monkeypatch):
    """The numpy backend's sgd_runs raises KeyboardInterrupt at its third call (a part of a
    call split into parts); returns the real kernel and the list of calls."""
    real = fastperm.backends.get("numpy").sgd_runs
    calls = []

    def stop_at_third(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(fastperm.backends.get("numpy"), "sgd_runs", stop_at_third)
    return real, calls


def test_interrupted_resume_gives_all_runs(problem, monkeypatch):
    """Ctrl-C during resume(): the partial result has every run, the earlier record first."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastperm.DivergenceWarning)
        first = fastperm.train_many(problem, 2, seeds=[0, 1, 2], lr=[5.0, 0.01, 0.02], steps=200)
    monkeypatch.setattr(knobs, "INTERRUPT_WORK", 2000.0)
    monkeypatch.setattr(knobs, "PART_MIN_EPOCHS", 8)
    ctrl_c_at_third_part(monkeypatch)
    with pytest.raises(fastperm.Interrupted) as info:
        fastperm.resume(first, problem, 500, backend="numpy")
    part = info.value.result
    assert part.loss.shape[0] == 3 and np.isnan(part.loss[0]).all()
    np.testing.assert_array_equal(part.loss[1:, 0], first.loss[1:, -1])
    assert 200 < part.steps[-1] < 700
    more = fastperm.resume(part, problem, 700 - int(part.steps[-1]), backend="numpy")
    monkeypatch.undo()
    whole = fastperm.resume(first, problem, 500, backend="numpy")
    np.testing.assert_array_equal(more.w, whole.w)


def test_resume_refuses_other_results(problem):
    net = fastperm.deep_linear.DeepLinear([problem.d, 2])
    res = fastperm.deep_linear.train(problem, net, 2, sigma=0.1, steps=5)
    with pytest.raises(ValueError, match="train or fastperm.train_many"):
        fastperm.resume(res, problem, 5)
