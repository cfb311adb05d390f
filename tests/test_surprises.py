"""Issue 15, item 5 ("no surprises") and item 4 (data seeds): each test failed on the code
before the fix it guards."""

import math
import time
import warnings

import numpy as np
import pytest
from test_lie import _ls_grad

import fastperm
from fastperm import _runs, backends, cli, knobs, models
from fastperm._jit import HAVE_NUMBA


# -- a first run says it is compiling ----------------------------------------------------------
def test_slow_compilation_is_announced(monkeypatch, capsys):
    kern = backends.get("numpy")
    monkeypatch.setattr(knobs, "COMPILE_NOTICE_SECONDS", 0.05)
    monkeypatch.setattr(kern, "compile", lambda families=None: time.sleep(0.3))
    problem = fastperm.LinearProblem.sample(d=5, n=2)
    fastperm.train(problem, 2, steps=3, backend="numpy")
    err = capsys.readouterr().err
    assert "compiling the numpy kernels for sgd_runs" in err and "compiled in" in err


def test_fast_compilation_is_silent(capsys):
    problem = fastperm.LinearProblem.sample(d=5, n=2)
    fastperm.train(problem, 2, steps=3, backend="numpy")
    assert capsys.readouterr().err == ""


# -- the CLI's table and warnings when runs diverge ------------------------------------------------
def test_cli_table_stays_readable_when_runs_diverge(capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the CLI reports divergence itself, not as warnings
        code = cli.main(
            "figure1 --seeds 3 --steps 400 --lr 3 --d 20 --n 5 --k 1,4,inf --out= --quiet".split()
        )
    assert code == 0
    out, err = capsys.readouterr()
    rows = [line for line in out.splitlines() if line.strip().startswith(("1 ", "4 ", "inf"))]
    assert len(rows) == 3
    assert all(len(row) <= 100 for row in rows), rows  # was ~200 characters of digits
    assert all(row[6] == " " for row in rows), rows  # k and the first cell stay apart
    assert "3/3 diverged" in rows[0]
    lines = [line for line in err.splitlines() if line.startswith("fastperm figure1:")]
    assert len(lines) == 2 and lines[0].startswith("fastperm figure1: k = 1: run 0 (seed=0")
    assert "3 of 3 runs diverged" in lines[0]


def test_cli_mean_sd_cells():
    assert cli._mean_sd(np.array([0.5, 0.7])) == "        0.6000 ± 0.100"
    assert len(cli._mean_sd(np.array([1e200, 3e300]))) == 22
    assert cli._mean_sd(np.array([1.0, np.inf, np.nan])).strip() == "2/3 diverged"


# -- plots -----------------------------------------------------------------------------------------
@pytest.fixture
def curves():
    steps = np.arange(0, 101, 10)
    rs = np.random.default_rng(0)
    return {k: (steps, rs.random((3, steps.size))) for k in (1, 2, 4, 8, 16, math.inf)}


@pytest.mark.parametrize(
    "sampling, augmentation, lines",
    [("fixed", "permutation", 5), ("fixed", "resample", 0), ("fresh", "permutation", 0)],
)
def test_figure1_plateaus_only_where_they_hold(curves, sampling, augmentation, lines):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from fastperm import plot

    fig = plot.figure1(curves, d=400, n=40, lr=1e-3, sampling=sampling, augmentation=augmentation)
    dotted = [line for line in fig.axes[0].lines if line.get_linestyle() == ":"]
    assert len(dotted) == lines
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    assert ("plateau" in texts) == (lines > 0)
    plt.close(fig)


def test_figure1_title_fits_for_long_settings(curves):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from fastperm import plot

    fig = plot.figure1(
        {k: (s, np.repeat(v, 40, axis=0)) for k, (s, v) in curves.items()},
        d=100_000,
        n=10_000,
        lr=1.2345e-05,
        sampling="fresh",
        augmentation="resample",
    )
    fig.canvas.draw()
    box = fig.axes[0].title.get_window_extent(fig.canvas.get_renderer())
    assert box.x0 >= 0 and box.x1 <= fig.bbox.x1, (box, fig.bbox)
    plt.close(fig)


# -- the digits study's Adam ---------------------------------------------------------------------
def test_train_adam_progress_forms():
    m = models.MLP([3, 2, 2])
    rs = np.random.default_rng(0)
    X, Y = rs.random((8, 3)), np.eye(2)[rs.integers(0, 2, 8)]
    from fastperm import digits

    runs = [
        digits.train_adam(m, m.init(0), X, Y, steps=5, checkpoints=[0, 5], progress=p)
        for p in (True, "label", False, None)
    ]
    for saved in runs:
        assert sorted(saved) == [0, 5] and saved[5].shape == (m.P,)
        np.testing.assert_array_equal(saved[5], runs[0][5])


# -- CustomModel: no silent zeros, a NumPy-only model works ---------------------------------------
def _numpy_grad(th, X, Y):
    r = np.einsum("...p,bp->...b", th, X) - Y[:, 0]
    return r[..., None] * X


def _data():
    rs = np.random.default_rng(3)
    return rs.standard_normal(4), rs.standard_normal((5, 4)), rs.standard_normal(5)


def test_custom_model_without_a_kernel_runs_on_numpy():
    from oracles import linear_brackets

    m = models.CustomModel(P=4, d=4, K=1, numpy_grad=_numpy_grad)
    theta, X, y = _data()
    got = fastperm.lie.brackets(m, theta, X, y, backend="numpy")
    want = linear_brackets(theta, X, y, bias=False)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
    if HAVE_NUMBA:
        with pytest.raises(ValueError, match="no compiled gradient kernel: use backend='numpy'"):
            fastperm.lie.brackets(m, theta, X, y, backend="numba")
    with pytest.raises(ValueError, match="needs a gradient"):
        models.CustomModel(P=4, d=4, K=1)


@pytest.mark.skipif(not HAVE_NUMBA, reason="a CustomModel's gradient is a Numba function")
def test_custom_model_kernel_that_writes_nothing_is_refused():
    from numba import njit

    @njit
    def lazy(theta, x, y, layout, work, out, alpha, beta):
        pass

    @njit
    def wrong(theta, x, y, layout, work, out, alpha, beta):
        for p in range(out.shape[0]):
            out[p] = alpha * 2.0 + beta * out[p]

    theta, X, y = _data()
    with pytest.raises(ValueError, match="left 4 of 4 entries of out unwritten"):
        fastperm.lie.brackets(models.CustomModel(lazy, P=4, d=4, K=1), theta, X, y)
    m = models.CustomModel(wrong, P=4, d=4, K=1, numpy_grad=_numpy_grad)
    with pytest.raises(ValueError, match="kernel and numpy_grad disagree"):
        fastperm.lie.brackets(m, theta, X, y)
    good = models.CustomModel(_ls_grad, P=4, d=4, K=1, numpy_grad=_numpy_grad)
    assert np.abs(fastperm.lie.brackets(good, theta, X, y)).max() > 0


# -- data seeds (item 4): several problems in one train_many ---------------------------------------
@pytest.mark.parametrize("k", [1, 4, math.inf])
def test_train_many_over_problems_equals_separate_calls(k):
    problems = [fastperm.LinearProblem.sample(d=15, n=3 + s, seed=s) for s in range(3)]
    lr = [0.01, 0.02, 0.03]
    res = fastperm.train_many(problems, k, seeds=[5, 6, 7], lr=lr, steps=40, record_every=9)
    for r in range(3):
        one = fastperm.train(problems[r], k, seed=5 + r, lr=lr[r], steps=40, record_every=9)
        np.testing.assert_array_equal(res.loss[r], one.loss)
        np.testing.assert_array_equal(res.w[r], one.w)
    np.testing.assert_array_equal(res.meta["problem_index"], [0, 1, 2])
    assert [p["seed"] for p in res.meta["problem"]] == [0, 1, 2]
    # broadcasting: one seed, three problems; per-run starts follow their runs
    W0 = np.arange(45.0).reshape(3, 15) / 100
    again = fastperm.train_many(problems, k, seeds=5, lr=0.01, steps=40, w0=W0)
    one = fastperm.train(problems[2], k, seed=5, lr=0.01, steps=40, w0=W0[2])
    np.testing.assert_array_equal(again.loss[2], one.loss)
    np.testing.assert_array_equal(again.meta["w0"], W0)


def test_train_many_over_problems_warns_once_and_checks():
    problems = [fastperm.LinearProblem.sample(d=10, n=3, seed=s) for s in range(3)]
    with pytest.warns(fastperm.DivergenceWarning) as caught:
        fastperm.train_many(problems, 1, seeds=0, lr=[0.01, 5.0, 5.0], steps=300)
    assert len(caught) == 1 and "2 of 3 runs diverged" in str(caught[0].message)
    assert caught[0].filename == __file__
    with pytest.raises(ValueError, match="same d"):
        fastperm.train_many([problems[0], fastperm.LinearProblem.sample(d=11, n=3)], 1)
    with pytest.raises(ValueError, match=r"problem \(3\), seeds \(2\)"):
        fastperm.train_many(problems, 1, seeds=[0, 1])
    with pytest.raises(TypeError, match=r"problem\[1\] must be a fastperm.LinearProblem"):
        fastperm.train_many([problems[0], "data"], 1)
    with pytest.raises(ValueError, match="empty"):
        fastperm.train_many([], 1)


def test_progress_bar_over_problems(capsys):
    pytest.importorskip("tqdm")
    problems = [fastperm.LinearProblem.sample(d=10, n=3, seed=s) for s in range(2)]
    fastperm.train_many(problems, 2, seeds=[0, 1], steps=10, progress="bands")
    assert "bands" in capsys.readouterr().err


def test_outside_stacklevel_is_public():
    assert callable(_runs.outside_stacklevel)
