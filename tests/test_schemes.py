"""The symmetry schemes: invariances that hold exactly, numba vs the reference, the figure."""

import math

import numpy as np
import pytest

import fastperm
from fastperm import backends, schemes


@pytest.fixture(scope="module")
def problem():
    return fastperm.LinearProblem.sample(d=30, n=6, seed=1)


def _outside(d):
    return 0.5 * np.random.default_rng(99).standard_normal(d)


def _backends():
    return [b for b in ("numba", "numpy") if b in backends.available()]


@pytest.mark.parametrize("backend", _backends())
def test_ea_stays_in_the_subspace_exactly(problem, backend):
    r = schemes.run(problem, "ea", w0=_outside(problem.d), steps=200, lr=1e-3, backend=backend)
    assert (r.distance == 0).all()
    assert np.ptp(r.w[0]) == 0  # all entries equal, bit for bit
    assert r.loss[0, -1] < 0.1 * r.loss[0, 0]


@pytest.mark.parametrize("backend", _backends())
def test_da_expected_from_invariant_start_stays_and_equals_fa(problem, backend):
    w0 = np.full(problem.d, 0.3)
    da = schemes.run(problem, "da", k=math.inf, w0=w0, steps=300, lr=2e-3, backend=backend)
    fa = schemes.run(problem, "fa", w0=w0, steps=300, lr=2e-3, backend=backend)
    assert da.distance.max() < 1e-14
    np.testing.assert_allclose(da.loss, fa.loss, rtol=1e-12)
    # but k-fold DA and vanilla leave it (so the check above can fail)
    kf = schemes.run(problem, "da", k=4, w0=w0, steps=300, lr=2e-3, backend=backend)
    van = schemes.run(problem, "vanilla", w0=w0, steps=300, lr=2e-3, backend=backend)
    assert kf.distance[0, -1] > 1e-3 and van.distance[0, -1] > 1e-3


@pytest.mark.parametrize("backend", _backends())
def test_fa_keeps_the_distance_of_its_start(problem, backend):
    w0 = _outside(problem.d)
    fa = schemes.run(problem, "fa", w0=w0, steps=300, lr=2e-3, backend=backend)
    np.testing.assert_allclose(fa.distance, fa.distance[0, 0], rtol=1e-10)
    # and its non-invariant part is w0's, untouched
    np.testing.assert_allclose(fa.w[0] - fa.w[0].mean(), w0 - w0.mean(), atol=1e-12)


@pytest.mark.skipif("numba" not in backends.available(), reason="needs numba")
@pytest.mark.parametrize(
    "scheme,k,sampling",
    [
        ("vanilla", 1, "fixed"),
        ("da", 3, "fixed"),
        ("da", 3, "fresh"),
        ("da", math.inf, "fixed"),
        ("fa", 1, "fixed"),
        ("ea", 1, "fixed"),
    ],
)
def test_numba_matches_reference(problem, scheme, k, sampling):
    kw = dict(
        k=k,
        sampling=sampling,
        w0=_outside(problem.d),
        steps=60,
        lr=2e-3,
        seeds=[3, 4],
        record_every=7,
    )
    a = schemes.run(problem, scheme, backend="numba", **kw)
    b = schemes.run(problem, scheme, backend="numpy", **kw)
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-12)
    np.testing.assert_allclose(a.distance, b.distance, rtol=1e-10, atol=1e-14)


@pytest.mark.skipif("numba" not in backends.available(), reason="needs numba")
def test_da_kfold_matches_train(problem):
    """The DA scheme is train(..., k) with the same copies: same loss curve."""
    w0 = _outside(problem.d)
    for k, sampling in ((3, "fixed"), (3, "fresh"), (math.inf, "fixed")):
        a = schemes.run(problem, "da", k=k, sampling=sampling, w0=w0, steps=80, lr=2e-3, seeds=[5])
        b = fastperm.train(problem, k, sampling=sampling, w0=w0, steps=80, lr=2e-3, seed=5)
        np.testing.assert_allclose(a.loss[0], b.loss, rtol=1e-11)


def test_bad_input_named(problem):
    with pytest.raises(ValueError, match="scheme must be one of"):
        schemes.run(problem, "mixup")
    with pytest.raises(ValueError, match="w0 has 3 entries"):
        schemes.run(problem, "fa", w0=np.zeros(3))


@pytest.mark.skipif("numba" not in backends.available(), reason="needs numba")
def test_figure_schemes_cli(tmp_path):
    pytest.importorskip("matplotlib")
    from fastperm import cli

    out = tmp_path / "schemes.png"
    assert (
        cli.main(
            [
                "figure-schemes",
                "--out",
                str(out),
                "--d",
                "40",
                "--n",
                "5",
                "--steps",
                "100",
                "--seeds",
                "2",
            ]
        )
        == 0
    )
    assert out.stat().st_size > 10_000
