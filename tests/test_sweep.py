"""fastperm.sweep (issue 16, item 2): a declarative grid → a labelled Dataset, its numbers
those of train_many run by run; a Zarr store that resumes, recomputes what is missing or
damaged (and counts it), and refuses another spec without touching it; the same numbers on a
Dask cluster, even when a worker dies."""

import hashlib
import math
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest

import fastperm
from fastperm import sweeps

xr = pytest.importorskip("xarray")


def _has_zarr3():
    try:
        import zarr
    except ImportError:
        return False
    return int(zarr.__version__.split(".")[0]) >= 3


#: tests that write a store need zarr >= 3 (Python 3.11+); the others run without it
needs_store = pytest.mark.skipif(not _has_zarr3(), reason="store= needs zarr >= 3")

SPEC = dict(
    k=[1, 4, "inf"],
    lr={"start": 0.002, "stop": 0.02, "num": 3},
    seeds=5,
    d=12,
    n=[4, 6],
    steps=60,
    record_every=20,
    record=["error", "test"],
    n_test=7,
    augmentation=["permutation", {"name": "gaussian", "sigma": 0.3}],
    chunk_seeds=2,
)


@pytest.fixture(scope="module")
def local():
    return fastperm.sweep(SPEC)


def test_labelled_and_equal_to_train_many(local):
    assert local.loss_error.dims == (*sweeps.DIMS, "step")
    assert local.sizes == {"augmentation": 2, "sampling": 1, "d": 1, "n": 2, "data_seed": 1,
                           "k": 3, "lr": 3, "seed": 5, "step": 4}  # fmt: skip
    assert list(local.k.values) == [1, 4, math.inf] and list(local.step.values) == [0, 20, 40, 60]
    assert local.attrs["chunks"] == 2 * 2 * 3 * 3 == local.attrs["chunks_computed"]
    assert "fastperm" in local.attrs["versions"]
    # one cell, run by hand: the same numbers bitwise
    problem = fastperm.LinearProblem.sample(d=12, n=6, seed=0, n_test=7)
    res = fastperm.train_many(problem, 4, seeds=[3], lr=local.lr.values[1], steps=60,
                              record_every=20, record=["error", "test"],
                              augmentation=fastperm.augment.Gaussian(0.3))  # fmt: skip
    cell = local.sel(augmentation="gaussian(sigma=0.3)", n=6, k=4.0, seed=3).isel(lr=1)
    np.testing.assert_array_equal(cell.loss_error.values.ravel(), res.loss[0])
    np.testing.assert_array_equal(cell.loss_test.values.ravel(), res.records["test"][0])
    assert (local.diverged_step.values == -1).all()


def _tree_digest(path):
    h = hashlib.sha256()
    for root, dirs, files in sorted(os.walk(path)):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            h.update(full.encode())
            with open(full, "rb") as f:
                h.update(f.read())
    return h.hexdigest()


@needs_store
def test_store_resumes_and_recomputes_damaged_chunks(tmp_path, local):
    store = tmp_path / "sweep.zarr"
    first = fastperm.sweep(SPEC, store=store)
    xr.testing.assert_identical(first.drop_attrs(), local.drop_attrs())
    again = fastperm.sweep(SPEC, store=store)
    assert again.attrs["chunks_computed"] == 0

    # a chunk's numbers changed behind the sweep's back (its digest no longer matches), and
    # another chunk's file garbled: exactly these two are computed again
    import zarr

    group = zarr.open_group(store, mode="r+")
    group["loss_error"][0, 0, 0, 1, 0, 2, :, 0:2] = 7.0
    files = sorted((store / "loss_test").rglob("c/*/*/*/*/*/*/*/*/*"))
    assert files, "no chunk files found: the layout changed"
    files[3].write_bytes(b"\x00garbled\xff" * 3)
    resumed = fastperm.sweep(SPEC, store=store)
    assert resumed.attrs["chunks_computed"] == 2
    xr.testing.assert_identical(resumed.drop_attrs(), local.drop_attrs())


@needs_store
def test_oracle_sees_a_changed_chunk(tmp_path, local):
    """The comparison above would catch a damaged chunk that was not recomputed."""
    store = tmp_path / "sweep.zarr"
    fastperm.sweep(SPEC, store=store)
    import zarr

    zarr.open_group(store, mode="r+")["loss_error"][0, 0, 0, 0, 0, 0, 0, 0, 1] = 7.0
    damaged = sweeps.open_store(store)
    with pytest.raises(AssertionError):
        xr.testing.assert_identical(damaged.drop_attrs(), local.drop_attrs())


@needs_store
def test_another_spec_is_refused_and_the_store_untouched(tmp_path):
    store = tmp_path / "sweep.zarr"
    small = dict(SPEC, k=[1], n=4, augmentation="permutation")
    fastperm.sweep(small, store=store)
    before = _tree_digest(store)
    with pytest.raises(ValueError, match=r"different sweep.*\bk\b.*left untouched"):
        fastperm.sweep(dict(small, k=[1, 2]), store=store)
    assert _tree_digest(store) == before
    (tmp_path / "other.zarr").mkdir()
    with pytest.raises(ValueError, match="not written by fastperm.sweep"):
        fastperm.sweep(small, store=tmp_path / "other.zarr")


#: many small chunks (64 of ~10 ms with numba): a kill lands mid-sweep on a fast machine,
#: and the rerun stays cheap on a slow backend (CI's bounds-checked Cython run)
# (the primal loop: the dual form's chunks end before the watcher sees the third one)
KILLED_SPEC = dict(k=[1, 2], lr=[0.001], seeds=32, chunk_seeds=1, d=100, n=10, steps=20_000,
                   record_every=5_000, algorithm="primal")  # fmt: skip
KILLED = textwrap.dedent(
    f"""
    import sys, fastperm
    fastperm.sweep({KILLED_SPEC!r}, store=sys.argv[1])
    """
)


def _stored(store):
    """Chunks with a digest in the store (None while it is being created)."""
    import zarr

    try:
        return int((zarr.open_group(store, mode="r")["chunk_digest"][...] != 0).sum())
    except Exception:  # the store is being created (or renamed into place)
        return None


def _stop_after(proc, store, chunks, sig):
    """Send ``sig`` to ``proc`` once the store holds ``chunks`` chunks."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
        if (_stored(store) or 0) >= chunks:
            break
    proc.send_signal(sig)


def test_a_killed_sweep_resumes_with_only_the_missing_chunks(tmp_path):
    """The sweep's process is killed (SIGKILL: no clean-up) after some chunks; running it
    again computes exactly the chunks without a valid digest, and the numbers are those of
    an uninterrupted sweep."""

    store = tmp_path / "sweep.zarr"
    # (cwd: the installed fastperm, as this process imports it, not a source tree's)
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(store)], cwd=tmp_path)
    try:
        _stop_after(proc, store, 3, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the sweep finished before it was killed"
    stored = _stored(store)
    assert 3 <= stored < 64
    spec = sweeps.load_spec(KILLED_SPEC)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the same backend in both processes
        resumed = fastperm.sweep(spec, store=store)
    assert resumed.attrs["chunks_computed"] == 64 - stored
    fresh = fastperm.sweep(spec)
    xr.testing.assert_identical(resumed.drop_attrs(), fresh.drop_attrs())


@pytest.mark.parametrize(
    "change, key",
    [
        ({"lrs": [0.1]}, "lrs"),
        ({"k": []}, "k"),
        ({"seeds": 0}, "seeds"),
        ({"lr": -1.0}, "lr"),
        ({"lr": {"start": 1e-3, "num": 3}}, "lr"),
        ({"d": [4, 4]}, "d"),
        ({"augmentation": {"name": "rotation"}}, "augmentation"),
        ({"augmentation": {"name": "gaussian", "sigma": -1.0}}, "sigma"),
        ({"augmentation": {"name": "mask", "q": 0.5}}, "augmentation"),
        ({"record": ["w"]}, "record"),
        ({"record": "test", "n_test": 0}, "record"),
        ({"sampling": "sometimes"}, "sampling"),
        ({"steps": 0}, "steps"),
        ({"k": [0]}, "k"),
        ({"dtype": "float32"}, "dtype"),
        ({"augmentation": {"name": "block_permutation", "groups": [[0, 1]]}}, "augmentation"),
    ],
)
def test_bad_specs_name_the_key(change, key):
    spec = dict(SPEC, **change)
    with pytest.raises(ValueError, match=rf"\b{key}\b"):
        fastperm.sweep(spec)


def test_spec_needs_k_and_a_mapping(tmp_path):
    with pytest.raises(ValueError, match="'k'"):
        fastperm.sweep({"lr": 0.1})
    with pytest.raises(TypeError, match="spec must be"):
        fastperm.sweep([("k", 1)])
    bad = tmp_path / "bad.toml"
    bad.write_text("k = [1,\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        fastperm.sweep(bad)


def test_toml_spec_and_augmentation_objects_name_the_same_sweep(tmp_path):
    path = tmp_path / "spec.toml"
    path.write_text(textwrap.dedent(
        """
        k = [1, "inf"]
        lr = {start = 0.001, stop = 0.01, num = 2}
        seeds = 3
        augmentation = {name = "block_permutation", groups = [[0, 1, 2], [3, 4, 5]]}
        d = 6
        n = 4
        steps = 30
        """
    ))  # fmt: skip
    from_toml = sweeps.load_spec(path)
    obj = fastperm.augment.BlockPermutation([[0, 1, 2], [3, 4, 5]])
    from_dict = sweeps.load_spec(dict(k=[1, math.inf], lr=[0.001, 0.01], seeds=[0, 1, 2],
                                      augmentation=obj, d=6, n=4, steps=30))  # fmt: skip
    assert from_toml.digest() == from_dict.digest()
    split = fastperm.augment.BlockPermutation([[0, 1], [2, 3, 4, 5]])
    other = sweeps.load_spec(dict(k=[1, math.inf], lr=[0.001, 0.01], seeds=[0, 1, 2],
                                  augmentation=split, d=6, n=4, steps=30))  # fmt: skip
    assert other.digest() != from_dict.digest()


def test_divergence_is_warned_once(recwarn):
    spec = dict(k=[1], lr=[0.01, 50.0], seeds=2, d=8, n=4, steps=200, chunk_seeds=1)
    ds = fastperm.sweep(spec)  # two chunks, each with a diverged run: one warning
    said = [w for w in recwarn if issubclass(w.category, fastperm.DivergenceWarning)]
    assert len(said) == 1
    assert re.search(r"2 of 4 runs diverged.*lr=50", str(said[0].message))
    assert (ds.diverged_step.sel(lr=50.0) >= 0).all()
    assert (ds.diverged_step.sel(lr=0.01) == -1).all()


@needs_store
def test_sweep_on_a_cluster_equals_local(client, local, tmp_path):
    spread = fastperm.sweep(SPEC, client=client, progress=True)
    xr.testing.assert_identical(spread.drop_attrs(), local.drop_attrs())
    stored = fastperm.sweep(SPEC, store=tmp_path / "s.zarr", client=client)
    xr.testing.assert_identical(stored.drop_attrs(), local.drop_attrs())


def test_a_killed_worker_leaves_the_sweep_exact(client):
    import threading

    spec = dict(k=[2, 8], lr=[0.001, 0.002], seeds=8, chunk_seeds=2, d=40, n=8,
                steps=40_000, record_every=10_000, sampling="fresh")  # fmt: skip
    t0 = time.perf_counter()
    local = fastperm.sweep(spec)
    took = time.perf_counter() - t0
    before = set(client.nthreads())

    def kill():
        time.sleep(min(0.5, took / 4))
        try:
            client.run(os._exit, 1, workers=[sorted(before)[0]])
        except Exception:  # the worker died before it could answer: as intended
            pass

    killer = threading.Thread(target=kill, daemon=True)
    killer.start()
    spread = fastperm.sweep(spec, client=client)
    killer.join()
    xr.testing.assert_identical(spread.drop_attrs(), local.drop_attrs())
    client.wait_for_workers(2, timeout=120)
    assert set(client.nthreads()) != before, "no worker was killed: the test proved nothing"


CLI_SPEC = """
k = [1, "inf"]
lr = {start = 0.002, stop = 0.02, num = 3}
seeds = 4
d = 10
n = 5
steps = 100
record_every = 25
"""


@needs_store
def test_cli_sweep_resume_and_plot(tmp_path, capsys):
    from fastperm import cli

    spec = tmp_path / "spec.toml"
    spec.write_text(CLI_SPEC)
    store = tmp_path / "sweep.zarr"
    assert cli.main(["sweep", str(spec), "--out", str(store), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "8 of 8 chunks computed (24 runs in all)" in text and "inf" in text
    xr.testing.assert_identical(
        sweeps.open_store(store).drop_attrs(), fastperm.sweep(spec).drop_attrs()
    )
    assert cli.main(["sweep", str(spec), "--out", str(store)]) == 0
    captured = capsys.readouterr()
    assert "0 of 8 chunks computed" in captured.out
    assert "8 of 8 chunks stored, computing 0" in captured.err
    fig = tmp_path / "sweep.png"
    assert cli.main(["sweep-plot", str(store), "--out", str(fig)]) == 0
    assert fig.stat().st_size > 20_000


@pytest.mark.parametrize(
    "argv, message",
    [
        (["sweep", "{spec}", "--out", "{tmp}/x.nc"], "ends in .zarr"),
        (["sweep", "{bad}", "--out", "{tmp}/x.zarr"], "'lrs': unknown key (did you mean 'lr'?)"),
        (["sweep", "{spec}", "--out", "{tmp}/x.zarr", "--workers", "0"], "workers"),
        (["sweep", "{spec}", "--out", "{tmp}/x.zarr", "--workers", "2", "--scheduler", "a"],
         "not allowed with"),
        (["sweep-plot", "{tmp}/none.zarr", "--out", "{tmp}/f.png"], "not a sweep store"),
        (["sweep-plot", "{tmp}", "--out", "{tmp}/f.png"], "not a sweep store"),
    ],
)  # fmt: skip
@needs_store
def test_cli_sweep_errors_are_one_line(tmp_path, capsys, argv, message):
    from fastperm import cli

    (tmp_path / "spec.toml").write_text(CLI_SPEC)
    (tmp_path / "bad.toml").write_text("k = [1]\nlrs = 3\n")
    fill = dict(spec=tmp_path / "spec.toml", bad=tmp_path / "bad.toml", tmp=tmp_path)
    assert cli.main([a.format(**fill) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.zarr").exists()


@needs_store
def test_cli_sweep_on_local_workers(tmp_path, capsys):
    from fastperm import cli

    spec = tmp_path / "spec.toml"
    spec.write_text(CLI_SPEC)
    store = tmp_path / "sweep.zarr"
    assert cli.main(["sweep", str(spec), "--out", str(store), "--workers", "2", "--quiet"]) == 0
    xr.testing.assert_identical(
        sweeps.open_store(store).drop_attrs(), fastperm.sweep(spec).drop_attrs()
    )


@needs_store
def test_cli_ctrl_c_says_how_to_resume(tmp_path):
    """SIGINT to ``fastperm sweep``: exit status 130, a line saying the store holds the
    finished chunks, and the same command then finishes the rest."""

    spec = tmp_path / "spec.toml"
    spec.write_text("\n".join(f"{key} = {value!r}" for key, value in KILLED_SPEC.items()))
    store = tmp_path / "sweep.zarr"
    argv = [sys.executable, "-m", "fastperm.cli", "sweep", str(spec), "--out", str(store),
            "--quiet"]  # fmt: skip
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    _stop_after(proc, store, 2, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "run the same command again to resume" in err
    stored = _stored(store)
    done = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=600,
                          cwd=tmp_path)  # fmt: skip
    assert f"{64 - stored} of 64 chunks computed" in done.stdout


def test_spec_takes_arrays_ranges_and_every_spelling_of_inf():
    a = sweeps.load_spec(dict(k=[1, 4, "INF"], seeds=np.arange(3),
                              lr=np.geomspace(1e-3, 1e-2, 3), d=range(4, 6)))  # fmt: skip
    b = sweeps.load_spec(dict(k=[1, 4, math.inf], seeds=[0, 1, 2],
                              lr=list(np.geomspace(1e-3, 1e-2, 3)), d=[4, 5]))  # fmt: skip
    assert a.digest() == b.digest()
    assert sweeps.load_spec(dict(k=np.array([1, 4]))).k == (1, 4)
    assert (
        sweeps.load_spec(dict(k=["∞"])).k == sweeps.load_spec(dict(k="Infinity")).k == (math.inf,)
    )


def test_augmentation_tables_and_objects_are_one_canonical_form():
    table = sweeps.load_spec(dict(k=[1], augmentation={"name": "mask", "p": 0.5}))
    obj = sweeps.load_spec(dict(k=[1], augmentation=fastperm.augment.Mask(0.5)))
    assert table.digest() == obj.digest() and table.coords["augmentation"][0] == (
        "mask(p=0.5, rescale=False)"
    )
    g1 = sweeps.load_spec(dict(k=[1], augmentation={"name": "gaussian", "sigma": 1}))
    g2 = sweeps.load_spec(dict(k=[1], augmentation=fastperm.augment.Gaussian(np.float32(1))))
    assert g1.digest() == g2.digest()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"augmentation": {"name": "mask", "p": 0.5, "rescale": "no"}}, "rescale must be true"),
        ({"augmentation": ["permutation", "permutation"]}, "'augmentation': values repeat"),
        ({"sampling": ["fixed", "fixed"]}, "'sampling': values repeat"),
        ({"augmentation": {"name": ["x"]}}, "'augmentation'"),
        ({"k": [1.5]}, "k must be"),
        ({"d": "4"}, "d must be"),
        ({"seeds": np.zeros((2, 2), int)}, "'seeds'"),
    ],
)
def test_more_bad_specs_are_value_errors(change, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        sweeps.load_spec(dict(SPEC, **change))


@needs_store
def test_a_store_never_appears_half_made(tmp_path, monkeypatch):
    """Creating the store fails midway (a killed process, a full disk): nothing is left at
    the store's path, and the next sweep creates it whole."""
    store = tmp_path / "sweep.zarr"
    real = sweeps._Store._layout

    def fail_after_coords(self, path, attrs):
        import xarray

        xarray.Dataset(coords=self.spec.coords, attrs=attrs).to_zarr(path, consolidated=False)
        raise OSError("disk full (planted)")

    monkeypatch.setattr(sweeps._Store, "_layout", fail_after_coords)
    with pytest.raises(OSError, match="planted"):
        fastperm.sweep(dict(SPEC, k=[1]), store=store)
    assert not store.exists() and list(tmp_path.iterdir()) == []
    monkeypatch.setattr(sweeps._Store, "_layout", real)
    assert fastperm.sweep(dict(SPEC, k=[1]), store=store).attrs["chunks_computed"] == 12


@needs_store
def test_resuming_with_another_backend_warns(tmp_path):
    compiled = [b for b in fastperm.backends.available() if b in ("numba", "cython")]
    if not compiled:
        pytest.skip("needs a compiled backend beside the reference")
    spec = dict(k=[1], lr=[0.01], seeds=2, d=6, n=3, steps=20)
    store = tmp_path / "s.zarr"
    fastperm.sweep(spec, store=store, backend=compiled[0])
    with pytest.warns(RuntimeWarning, match=f"computed with backend '{compiled[0]}'"):
        fastperm.sweep(spec, store=store, backend="numpy")
    fastperm.sweep(spec, store=store, backend=compiled[0])  # the same backend: no warning
