"""Results (issue 15, item 1): metadata, labelled arrays, files and equality."""

import json
import math
import warnings

import numpy as np
import pytest

import fastperm
from fastperm import TrainResult, deep_linear

xr = pytest.importorskip("xarray")


@pytest.fixture(scope="module")
def problem():
    return fastperm.LinearProblem.sample(d=12, n=4, seed=7)


@pytest.fixture(scope="module")
def results(problem):
    """One result of each front end: a single run, many runs, k = ∞, a deep linear network,
    a run that diverged (NaN in its arrays)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastperm.DivergenceWarning)
        diverged = fastperm.train_many(problem, 2, seeds=[0, 1], lr=[0.01, 5.0], steps=40)
    return {
        "single": fastperm.train(problem, 4, lr=0.02, steps=30, seed=5, record_every=7),
        "many": fastperm.train_many(
            problem, 2, seeds=[3, 4, 5], lr=[0.01, 0.02, 0.03], steps=20, sampling="fresh"
        ),
        "inf": fastperm.train(problem, math.inf, steps=25, augmentation="resample"),
        "gaussian": fastperm.train(
            problem, 3, steps=10, augmentation=fastperm.augment.Gaussian(0.5)
        ),
        "deep": deep_linear.train(
            problem, deep_linear.DeepLinear([12, 3]), 2, sigma=0.1, seeds=[0, 1], steps=15
        ),
        "diverged": diverged,
    }


NAMES = ["single", "many", "inf", "gaussian", "deep", "diverged"]


@pytest.mark.parametrize("suffix", [".npz", ".nc"])
@pytest.mark.parametrize("name", NAMES)
def test_save_load_round_trip(results, name, suffix, tmp_path):
    if suffix == ".nc":
        pytest.importorskip("h5netcdf")
        pytest.importorskip("h5py")
    res = results[name]
    path = tmp_path / f"result{suffix}"
    res.save(path)
    back = TrainResult.load(path)
    assert back == res
    assert back.metadata() == res.metadata()  # timings and environment kept too
    assert type(back.diverged_step) is type(res.diverged_step)
    np.testing.assert_array_equal(back.seed, res.seed)


@pytest.mark.parametrize("name", NAMES)
def test_equality_sees_every_planted_change(results, name, tmp_path):
    res = results[name]
    res.save(tmp_path / "r.npz")
    for change in ("loss", "w", "lr", "sampling", "meta"):
        other = TrainResult.load(tmp_path / "r.npz")
        if change == "loss":
            other.loss[..., -1] = np.nextafter(other.loss[..., -1], 2.0)
        elif change == "w":
            other.w[..., 0] = np.nextafter(other.w[..., 0], 2.0)
        elif change == "lr":
            other.lr = np.nextafter(other.lr, 1.0)
        elif change == "sampling":
            other.sampling = "fresh" if res.sampling == "fixed" else "fixed"
        else:
            other.meta["problem"] = {**other.meta["problem"], "seed": 99}
        assert other != res, change


def test_equality_ignores_how_it_ran(problem):
    """Threads, timings, versions and the backend's name do not make results differ; a
    different seed does. (Backends agree up to reassociation, not bitwise: ``==`` is bitwise.)"""
    a = fastperm.train_many(problem, 4, seeds=[0, 1], steps=30, threads=1)
    b = fastperm.train_many(problem, 4, seeds=[0, 1], steps=30, threads=2)
    b.meta["versions"] = {"numpy": "0"}
    b.backend, b.seconds = "another", 1.0
    assert a.meta["threads"] != b.meta["threads"]
    assert a == b
    assert a != fastperm.train_many(problem, 4, seeds=[0, 2], steps=30)
    assert (a == "a result") is False


def test_metadata_says_how_it_was_made(results, problem):
    meta = results["single"].metadata()
    assert meta["problem"] == {
        "n": 4,
        "d": 12,
        "source": "sample",
        "seed": 7,
        "w_star": 1.0,
        "blake2b": problem.digest,
    }
    other = fastperm.LinearProblem(problem.X, problem.y + 1.0, problem.w_star)
    assert other.digest != problem.digest  # the digest names the data
    assert (meta["k"], meta["steps"], meta["record_every"]) == (4, 30, 7)
    assert meta["family"] == "sgd_runs" and meta["threads"] >= 1
    assert {"python", "numpy", "fastperm"} <= set(meta["versions"])
    assert results["inf"].metadata()["k"] == "inf"
    json.dumps(meta)  # JSON-ready
    own = fastperm.LinearProblem(problem.X, problem.y, problem.w_star)
    assert fastperm.train(own, 1, steps=3).meta["problem"]["source"] == "arrays"
    np.testing.assert_array_equal(results["single"].meta["w0"], np.zeros((1, 12)))


def test_xarray_labels(results):
    res = results["many"]
    ds = res.to_xarray()
    assert ds["loss"].dims == ("run", "step")
    np.testing.assert_array_equal(ds["step"], res.steps)
    np.testing.assert_array_equal(ds["seed"], [3, 4, 5])
    np.testing.assert_array_equal(ds["lr"], [0.01, 0.02, 0.03])
    # selecting by label gives that run's row
    np.testing.assert_array_equal(ds["loss"].sel(run=1).values, res.loss[1])
    np.testing.assert_array_equal(
        ds["loss"].where(ds["seed"] == 5, drop=True).values[0], res.loss[2]
    )
    assert ds.attrs["sampling"] == "fresh" and ds.attrs["problem_d"] == 12
    single = results["single"].to_xarray()
    assert single["loss"].dims == ("step",) and int(single["seed"]) == 5
    assert TrainResult.from_xarray(ds) == res
    assert results["deep"].to_xarray()["theta"].dims == ("run", "parameter")


def test_pandas_long_table(results):
    res = results["many"]
    df = res.to_pandas()
    assert list(df.columns) == ["run", "seed", "lr", "step", "loss"]
    assert len(df) == res.loss.size
    row = df[(df.seed == 4) & (df.step == res.steps[-1])]
    assert float(row.loss.iloc[0]) == res.loss[1, -1]
    assert len(results["single"].to_pandas()) == results["single"].loss.size


def test_files_refuse_what_they_cannot_read(results, tmp_path):
    with pytest.raises(ValueError, match="path must end in .npz or .nc"):
        results["single"].save(tmp_path / "r.csv")
    np.savez(tmp_path / "other.npz", a=np.zeros(2))
    with pytest.raises(ValueError, match="not written by TrainResult.save"):
        TrainResult.load(tmp_path / "other.npz")
    with pytest.raises(ValueError, match="fastperm_metadata"):
        TrainResult.from_xarray(xr.Dataset())
    # a file from a newer format says so
    res = results["single"]
    arrays = res._arrays()
    meta = json.dumps({**res.metadata(), "fastperm_format": 99})
    np.savez(tmp_path / "new.npz", metadata=np.array(meta), **arrays)
    with pytest.raises(ValueError, match="format 99"):
        TrainResult.load(tmp_path / "new.npz")
