"""Result objects of the training front ends: metadata, labelled arrays, files, equality.

A :class:`TrainResult` carries the arrays a call computed and everything needed to say how
they were obtained: the settings, the problem (its sizes, and its seed when it was sampled),
the start, and the environment (backend, threads, library versions, date).

Files
-----
``result.save("run.npz")`` writes a NumPy ``.npz`` archive (a zip of ``.npy`` files, readable
by any NumPy without fastperm): the arrays ``steps``, ``loss``, ``w``, ``diverged_step``,
``lr``, ``seed``, each further record as ``record.<name>`` (``record.test``, ``record.w``),
each array-valued metadata entry as ``meta.<name>`` (the start ``w0``, a deep
linear network's ``theta``), and ``metadata``, a 0-d string array holding JSON (format
version :data:`FORMAT`). ``result.save("run.nc")`` writes :meth:`TrainResult.to_xarray` as
netCDF-4 (needs xarray and h5netcdf or netCDF4). :meth:`TrainResult.load` reads both.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import sys
from dataclasses import dataclass, field
from importlib import metadata as _importlib_metadata
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ._typing import FloatArray, IntArray, UIntArray
from .problems import LOSSES

if TYPE_CHECKING:
    import pandas
    import xarray

    from .augment import Augmentation

#: dimensions of the array-valued metadata in :meth:`TrainResult.to_xarray`
_META_DIMS = {
    "w0": ("start", "feature"),
    "theta0": ("start", "parameter"),
    "theta": ("run", "parameter"),
    "problem_index": ("run",),
}

#: version of the file layout :meth:`TrainResult.save` writes
FORMAT = 1

#: metadata entries that describe how a result was computed, not what: ``==`` ignores them
ENVIRONMENT_KEYS = frozenset(
    {
        "threads",
        "cache",
        "compile_seconds",
        "versions",
        "platform",
        "date",
        "family",
        "tasks",
        "workers",
        "worker_threads",
        "task_seconds",
    }
)


def environment() -> dict[str, Any]:
    """Versions of Python, NumPy, fastperm and of the compilers that are loaded, the
    platform, and the date (UTC): the ``environment`` part of a result's metadata."""
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    for dist, module in (("fastperm", "fastperm"), ("numba", "numba"), ("Cython", "Cython")):
        if dist == "fastperm" or module in sys.modules:  # never import a compiler to ask
            try:
                versions[dist] = _importlib_metadata.version(dist)
            except _importlib_metadata.PackageNotFoundError:
                versions[dist] = "unknown"
    return {
        "versions": versions,
        "platform": f"{platform.system()} {platform.machine()}",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _label(augmentation: object) -> str:
    """The augmentation as a file stores it: its name, or the repr of a distribution."""
    return augmentation if isinstance(augmentation, str) else repr(augmentation)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else repr(v)  # JSON has no inf: "inf", "nan"
    return value


def _k_from_json(value: Any) -> float:
    """k as the front ends hold it: an int, or ``math.inf`` (stored as ``"inf"``)."""
    return math.inf if value == "inf" else int(value)


@dataclass(eq=False)
class TrainResult:
    """Losses and final parameters of one run (``train``) or many (``train_many``).

    Attributes
    ----------
    steps : (records,) int array
        Steps at which the loss was recorded (0, record_every, ..., and the last step).
    loss : (records,) or (runs, records) float array
        The primary loss after those steps (:attr:`metric`: by default the parameter error
        ``mean((w − w*)²)``, or the training loss for a problem without w*; else the first
        loss named in ``record=``); NaN after a divergence.
    w : (d,) or (runs, d) float array
        Final parameters; NaN for a run that diverged (its last values depend on which
        operation overflowed first, which differs between backends).
    diverged_step : int or None, or (runs,) int array
        First step with a non-finite residual, parameter or loss (-1 in the array
        form where a run stayed finite; None for a single finite run).
    seconds : float
        Wall time of the compiled call(s), validation and allocation excluded.
    k, lr, seed, sampling, augmentation, backend : the settings of the run(s).
    meta : dict
        The rest of the metadata: ``problem`` (n, d, and how it was made: its seed when
        sampled), ``steps``, ``record_every``, the start ``w0`` (``theta0`` and the final
        ``theta`` for a deep linear network), ``threads``, ``cache``,
        ``compile_seconds``, ``family`` (the kernel family), ``record`` (the names
        recorded), ``dtype`` (of w), ``versions``, ``platform``, ``date``.
        :meth:`metadata` returns all of it, settings included.
    records : dict of str to array
        Everything recorded, by name (:data:`fastperm.problems.METRICS`): ``loss`` is
        ``records[metric]``; ``"train"``/``"test"``/``"error"`` have the shape of ``loss``,
        ``"w"`` one more axis (records, d) or (runs, records, d).

    Notes
    -----
    ``a == b`` compares what was computed and with which settings: the arrays bitwise
    (NaN equals NaN), k, lr, seeds, sampling, augmentation, the problem's description and
    the start. It ignores how: the backend, threads, timings, versions and date. Results
    of one backend are bitwise the same for every thread count; different backends agree up
    to floating-point reassociation (:mod:`fastperm.backends.contract`), so compare those
    with ``numpy.allclose``.
    """

    steps: IntArray
    loss: FloatArray
    w: FloatArray
    diverged_step: int | None | IntArray
    seconds: float
    k: float
    lr: float | FloatArray
    seed: int | UIntArray
    sampling: str
    augmentation: str | Augmentation
    backend: str
    meta: dict[str, Any] = field(default_factory=dict, repr=False)
    records: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.records:  # only the primary loss (deep linear networks, schemes)
            self.records = {self.metric: self.loss}

    @property
    def metric(self) -> str:
        """The name of the primary loss, :attr:`loss` (``"error"``, ``"train"`` or ``"test"``)."""
        return str(self.meta.get("record", ["error"])[0])

    @property
    def runs(self) -> int:
        return 1 if self.loss.ndim == 1 else self.loss.shape[0]

    @property
    def ns_per_step(self) -> float:
        """Wall time per training step (all runs counted), in nanoseconds: the steps this
        call computed (a resumed result's from its ``start_step``; a resumed k = ∞ run
        replays from step 0, which its time includes)."""
        done = int(self.steps[-1]) - int(self.meta.get("start_step", 0))
        total = max(done, 1) * self.runs
        return self.seconds * 1e9 / total

    def __repr__(self) -> str:
        k = "inf" if math.isinf(self.k) else self.k
        final = self.loss[..., -1]
        last = f"{float(final):.6g}" if np.ndim(final) == 0 else f"mean {np.nanmean(final):.6g}"
        return (
            f"TrainResult(k={k}, runs={self.runs}, steps={int(self.steps[-1])}, "
            f"final loss {last}, {self.ns_per_step:.1f} ns/step, backend={self.backend!r})"
        )

    # -- metadata and equality ------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        """Every scalar setting and description, JSON-ready (inf as ``"inf"``); array-valued
        entries of :attr:`meta` (``w0``, ``theta``) are left out (they are arrays of the
        saved file)."""
        scalars = {k: v for k, v in self.meta.items() if not isinstance(v, np.ndarray)}
        return _jsonable(
            {
                "k": self.k,
                "sampling": self.sampling,
                "augmentation": _label(self.augmentation),
                "backend": self.backend,
                "seconds": self.seconds,
                "single": self.loss.ndim == 1,
                **scalars,
            }
        )

    def _arrays(self) -> dict[str, np.ndarray]:
        """Every array of the result, by its name in a saved file."""
        ds = self.diverged_step
        arrays = {
            "steps": np.asarray(self.steps),
            "loss": np.asarray(self.loss),
            "w": np.asarray(self.w),
            "diverged_step": np.asarray(-1 if ds is None else ds, dtype=np.int64),
            "lr": np.asarray(self.lr, dtype=np.float64),
            "seed": np.asarray(self.seed, dtype=np.uint64),
        }
        for name, value in self.records.items():
            if name != self.metric:
                arrays[f"record.{name}"] = np.asarray(value)
        for name, value in self.meta.items():
            if isinstance(value, np.ndarray):
                arrays[f"meta.{name}"] = value
        return arrays

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TrainResult):
            return NotImplemented
        mine, theirs = self._arrays(), other._arrays()
        if mine.keys() != theirs.keys():
            return False
        for name, a in mine.items():
            b = theirs[name]
            nan = a.dtype.kind == "f" and b.dtype.kind == "f"
            if a.shape != b.shape or not np.array_equal(a, b, equal_nan=nan):
                return False
        ignore = ENVIRONMENT_KEYS | {"backend", "seconds"}
        m1 = {k: v for k, v in self.metadata().items() if k not in ignore}
        m2 = {k: v for k, v in other.metadata().items() if k not in ignore}
        return m1 == m2

    __hash__ = None  # type: ignore[assignment]  # mutable arrays: not hashable

    # -- labelled arrays --------------------------------------------------------------------------
    def to_xarray(self) -> xarray.Dataset:
        """The result as an ``xarray.Dataset``.

        Variables ``loss`` (run, step) (the primary loss; its ``metric`` attribute names it),
        further losses as ``loss_<name>`` (run, step) (``loss_test``), the recorded
        parameters as ``w_path`` (run, step, feature), ``w`` (run, feature),
        ``diverged_step`` (run) and, for a deep linear network, ``theta`` (run, parameter);
        coordinates ``step``, ``run``
        and, along ``run``, ``seed`` and ``lr``. A single run (:func:`fastperm.train`) has no
        ``run`` dimension; its seed and lr are scalar coordinates. The attributes hold the
        scalar settings (k, sampling, augmentation, backend, steps, n, d, …) and the whole
        metadata as JSON (``attrs["fastperm_metadata"]``), so that
        :meth:`from_xarray` and :meth:`load` restore the result. Needs xarray.
        """
        import xarray as xr

        arrays = self._arrays()
        single = self.loss.ndim == 1
        run = () if single else ("run",)
        data = {
            "loss": (run + ("step",), arrays["loss"]),
            "w": (run + ("feature",), arrays["w"]),
            "diverged_step": (run, arrays["diverged_step"]),
        }
        for name, value in self.records.items():
            if name == "w":
                data["w_path"] = (run + ("step", "feature"), np.asarray(value))
            elif name != self.metric:
                data[f"loss_{name}"] = (run + ("step",), np.asarray(value))
        for name, value in arrays.items():
            if name.startswith("meta."):
                key = name[len("meta.") :]
                data[key] = (_META_DIMS.get(key, (f"{key}_row", f"{key}_entry")), value)
        coords: dict[str, Any] = {
            "step": arrays["steps"],
            "seed": (run, arrays["seed"]),
            "lr": (run, arrays["lr"]),
        }
        if not single:
            coords["run"] = np.arange(self.runs)
        meta = self.metadata()
        attrs: dict[str, Any] = {
            key: value
            for key, value in meta.items()
            if isinstance(value, (str, int, float)) and not isinstance(value, bool)
        }
        problem = meta.get("problem", {})
        if isinstance(problem, dict):  # one problem (several: in fastperm_metadata)
            attrs.update({f"problem_{key}": value for key, value in problem.items()})
        attrs["fastperm_metadata"] = json.dumps(meta)
        attrs["fastperm_format"] = FORMAT
        ds = xr.Dataset(data, coords=coords, attrs=attrs)
        ds["loss"].attrs["long_name"] = f"{LOSSES.get(self.metric, self.metric)} after the step"
        ds["loss"].attrs["metric"] = self.metric
        for name in self.records:
            if f"loss_{name}" in ds:
                ds[f"loss_{name}"].attrs["long_name"] = LOSSES[name]
        ds["diverged_step"].attrs["long_name"] = "first non-finite step, -1 if none"
        return ds

    @classmethod
    def from_xarray(cls, ds: xarray.Dataset) -> TrainResult:
        """The result :meth:`to_xarray` described."""
        if "fastperm_metadata" not in ds.attrs:
            raise ValueError(
                "ds was not written by TrainResult.to_xarray: it has no 'fastperm_metadata' "
                "attribute"
            )
        meta = json.loads(ds.attrs["fastperm_metadata"])
        arrays = {
            "steps": ds["step"].values,
            "loss": ds["loss"].values,
            "w": ds["w"].values,
            "diverged_step": ds["diverged_step"].values,
            "lr": ds["lr"].values,
            "seed": ds["seed"].values,
        }
        for name in ds.data_vars:
            value = ds[name].values
            if name == "w_path":
                arrays["record.w"] = value
            elif str(name).startswith("loss_"):
                arrays[f"record.{str(name)[len('loss_') :]}"] = value
            elif name not in ("loss", "w", "diverged_step"):
                arrays[f"meta.{name}"] = value
        return cls._from_parts(arrays, meta)

    def to_pandas(self) -> pandas.DataFrame:
        """The recorded losses as a long table: one row per (run, step), columns ``run``,
        ``seed``, ``lr``, ``step``, ``loss`` and one per further loss recorded
        (``loss_test``; a single run has run 0; recorded parameters are left out: see
        :meth:`to_xarray`). Needs pandas."""
        import pandas as pd

        loss = np.atleast_2d(self.loss)
        R, m = loss.shape
        seed = np.broadcast_to(np.asarray(self.seed, dtype=np.uint64), (R,))
        lr = np.broadcast_to(np.asarray(self.lr, dtype=np.float64), (R,))
        columns = {
            "run": np.repeat(np.arange(R), m),
            "seed": np.repeat(seed, m),
            "lr": np.repeat(lr, m),
            "step": np.tile(np.asarray(self.steps), R),
            "loss": loss.ravel(),
        }
        for name, value in self.records.items():
            if name not in ("w", self.metric):
                columns[f"loss_{name}"] = np.asarray(value).ravel()
        return pd.DataFrame(columns)

    # -- files -------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the result to ``path``: ``.npz`` (NumPy archive + JSON metadata, no other
        dependency) or ``.nc`` (netCDF-4 through :meth:`to_xarray`). The module docstring
        describes the layout."""
        path = os.fspath(path)
        suffix = os.path.splitext(path)[1].lower()
        if suffix == ".nc":
            self.to_xarray().to_netcdf(path, engine=_netcdf_engine())
        elif suffix == ".npz":
            meta = json.dumps({**self.metadata(), "fastperm_format": FORMAT})
            np.savez(path, metadata=np.array(meta), **self._arrays())  # type: ignore[arg-type]
        else:
            raise ValueError(f"path must end in .npz or .nc, got {path!r}")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TrainResult:
        """Read a result :meth:`save` wrote (``.npz`` or ``.nc``)."""
        path = os.fspath(path)
        suffix = os.path.splitext(path)[1].lower()
        if suffix == ".nc":
            import xarray as xr

            with xr.open_dataset(path, engine=_netcdf_engine()) as ds:
                return cls.from_xarray(ds.load())
        if suffix != ".npz":
            raise ValueError(f"path must end in .npz or .nc, got {path!r}")
        with np.load(path, allow_pickle=False) as archive:
            if "metadata" not in archive.files:
                raise ValueError(f"{path!r} was not written by TrainResult.save (no metadata)")
            meta = json.loads(str(archive["metadata"]))
            arrays = {name: archive[name] for name in archive.files if name != "metadata"}
        return cls._from_parts(arrays, meta)

    @classmethod
    def _from_parts(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> TrainResult:
        version = meta.pop("fastperm_format", FORMAT)
        if int(version) > FORMAT:
            raise ValueError(
                f"this file has format {version}; this fastperm reads up to {FORMAT}: upgrade"
            )
        single = bool(meta.pop("single"))
        rest = {
            key: value
            for key, value in meta.items()
            if key not in ("k", "sampling", "augmentation", "backend", "seconds")
        }
        for name, value in arrays.items():
            if name.startswith("meta."):
                key = name[len("meta.") :]
                rest[key] = value
        ds = arrays["diverged_step"].astype(np.int64)
        seed = arrays["seed"].astype(np.uint64)
        lr = arrays["lr"].astype(np.float64)
        loss = arrays["loss"].astype(np.float64)
        metric = str(rest.get("record", ["error"])[0])
        records = {metric: loss}
        for name, value in arrays.items():
            if name.startswith("record."):
                kind = rest.get("dtype", "float64") if name == "record.w" else np.float64
                records[name[len("record.") :]] = value.astype(kind)
        order = rest.get("record", [metric])  # the order they were asked for
        records = {name: records[name] for name in order if name in records}
        return cls(
            arrays["steps"].astype(np.int64),
            loss,
            arrays["w"].astype(rest.get("dtype", "float64")),
            (None if int(ds) < 0 else int(ds)) if single else ds,
            float(meta["seconds"]),
            _k_from_json(meta["k"]),
            float(lr) if single else lr,
            int(seed) if single else seed,
            meta["sampling"],
            meta["augmentation"],
            meta["backend"],
            meta=rest,
            records=records,
        )


def _netcdf_engine() -> Literal["h5netcdf", "netcdf4"]:
    """h5netcdf, else netCDF4: an engine that writes netCDF-4 (uint64 seeds need it)."""
    engines: tuple[tuple[Literal["h5netcdf", "netcdf4"], str], ...] = (
        ("h5netcdf", "h5netcdf"),
        ("netcdf4", "netCDF4"),
    )
    for engine, module in engines:
        try:
            __import__(module)
        except ImportError:
            continue
        return engine
    raise ImportError(
        "writing or reading .nc needs h5netcdf or netCDF4 (pip install h5netcdf); "
        "or save to .npz, which needs nothing else"
    )


def save_arrays(result: Any, path: str | os.PathLike[str], info: dict[str, Any]) -> None:
    """Write a result dataclass to ``.nc`` (netCDF-4, through its ``to_xarray()``) or to
    ``.npz`` (its array fields, and ``info`` with its ``meta`` as JSON)."""
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".nc":
        result.to_xarray().to_netcdf(path, engine=_netcdf_engine())
    elif suffix == ".npz":
        arrays: dict[str, Any] = {
            k: v for k, v in vars(result).items() if isinstance(v, np.ndarray)
        }
        arrays["fastperm_metadata"] = np.array(json.dumps({**info, "meta": result.meta}))
        np.savez(path, **arrays)
    else:
        raise ValueError(f"path must end in .npz or .nc, got {path!r}")


def load_arrays(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The arrays and the JSON information :func:`save_arrays` wrote to ``.npz``."""
    with np.load(os.fspath(path), allow_pickle=False) as archive:
        info = json.loads(str(archive["fastperm_metadata"]))
        arrays = {n: archive[n] for n in archive.files if n != "fastperm_metadata"}
    return arrays, info


class SavedResult:
    """What the result dataclasses with array fields, ``backend``, ``seconds``, ``meta`` and
    ``to_xarray()`` share: :meth:`save` to ``.npz`` or ``.nc``, :meth:`load` from ``.npz``."""

    steps: IntArray
    diverged_step: IntArray
    backend: str
    seconds: float
    meta: dict[str, Any]
    #: array fields that may be None (then absent from a saved file)
    OPTIONAL: tuple[str, ...] = ("theta_path",)

    def _dataset(self, data: dict[str, Any], per_run: dict[str, Any]) -> Any:
        """The ``xarray.Dataset`` of ``data`` with the coordinates ``step``, ``run`` and, along
        ``run``, the runs' settings ``per_run``; backend, seconds and the metadata (JSON in
        ``attrs["fastperm_metadata"]``) as attributes."""
        import xarray as xr

        coords = {
            "step": self.steps,
            "run": np.arange(self.diverged_step.shape[0]),
            **{name: ("run", values) for name, values in per_run.items()},
        }
        attrs = {
            "backend": self.backend,
            "seconds": self.seconds,
            "fastperm_metadata": json.dumps(self.meta),
        }
        return xr.Dataset(data, coords=coords, attrs=attrs)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write to ``.nc`` (netCDF-4 through ``to_xarray()``) or ``.npz``."""
        save_arrays(self, path, {"backend": self.backend, "seconds": self.seconds})

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Any:
        """Read what :meth:`save` wrote to ``.npz``."""
        arrays, info = load_arrays(path)
        for name in cls.OPTIONAL:
            arrays.setdefault(name, None)
        make: Any = cls  # a dataclass: its fields are the saved arrays and these three
        return make(**arrays, seconds=info["seconds"], backend=info["backend"], meta=info["meta"])
