"""Sweeps: a declarative grid of training runs → a labelled xarray Dataset, saved as it runs.

A sweep spec (a dict, or a TOML file for ``fastperm sweep``) names the grid: every key of
:data:`GRID` takes one value or a list, and each list becomes a dimension of the result::

    k = [1, 4, 16, "inf"]                     # "inf": the closed-form expectation
    lr = {start = 1e-3, stop = 3e-2, num = 10}  # log-spaced (or a list)
    seeds = 50                                # 0 .. 49 (or a list)
    d = 400
    n = 40
    steps = 1000
    record_every = 10
    augmentation = ["permutation", {name = "gaussian", sigma = 0.3}]

:func:`sweep` runs it one chunk at a time: a chunk is one setting of the dimensions other
than ``lr`` and ``seed``, and a block of ``chunk_seeds`` seeds, with every lr: one
``train_many`` call. With ``store="sweep.zarr"`` every chunk is written to a Zarr store as
it finishes, followed by its digest (the mark that it is complete); running the same spec
again computes only the chunks whose digest is missing or does not match their data (a
chunk half-written when the process died, or corrupted since). A store written by another
spec is refused and left as it is. With ``client=`` (a ``dask.distributed.Client``) the
chunks run as tasks on the cluster, the most expensive first, and are written on the client
as they arrive; the numbers are bitwise those of the local sweep.

The result has dimensions ``augmentation, sampling, d, n, data_seed, k, lr, seed, step``
(the first six of length one unless swept), variables ``loss_<metric>`` for every recorded
metric and ``diverged_step`` (-1 for runs that stayed finite), and the spec, its digest and
the library versions in its attributes.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import math
import os
import shutil
import sys
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _checks, _runs, augment, backends, distributed, dual
from .problems import LinearProblem
from .results import environment
from .train import DivergenceWarning, train_many

if TYPE_CHECKING:
    import xarray

#: The grid's dimensions, in the result's order (``lr`` and ``seed`` vary inside a chunk).
DIMS = ("augmentation", "sampling", "d", "n", "data_seed", "k", "lr", "seed")

#: Keys that take a value or a list (a list is a dimension), with their defaults.
GRID: dict[str, Any] = {
    "augmentation": "permutation",
    "sampling": "fixed",
    "d": 400,
    "n": 40,
    "data_seed": 0,
    "k": None,  # required
    "lr": 1e-3,
    "seeds": 5,
}

#: Keys that take one value, with their defaults (None: chosen from the others).
SETTINGS: dict[str, Any] = {
    "steps": 1000,
    "record_every": None,  # steps // 100, at least 1
    "record": "error",
    "n_test": 0,
    "w_star": 1.0,
    "dtype": "float64",
    "chunk_seeds": None,  # the seeds in about 8 blocks
    "algorithm": "auto",  # train(algorithm=...): primal loop or dual (Gram) form
}

#: Keys that name metrics a sweep can record (w itself varies in size with d: not here).
SWEEP_METRICS = ("error", "train", "test")

_AUGMENTATION_PARAMS: dict[str, tuple[str, ...]] = {
    "permutation": (),
    "resample": (),
    "cyclic_shift": (),
    "gaussian": ("sigma",),
    "mask": ("p", "rescale"),
    "block_permutation": ("groups",),
}


def _spec_error(key: str, message: str) -> ValueError:
    return ValueError(f"sweep spec key {key!r}: {message}")


def _as_list(key: str, value: Any) -> list[Any]:
    """One value or a list (a tuple, range or 1-D NumPy array) as a list."""
    if isinstance(value, np.ndarray):
        if value.ndim > 1:
            raise _spec_error(key, f"give one value or a 1-D list, got shape {value.shape}")
        value = value.tolist()
    values = list(value) if isinstance(value, (list, tuple, range)) else [value]
    if not values:
        raise _spec_error(key, "the list is empty (give at least one value)")
    return values


def _augmentation_form(value: Any) -> str | dict[str, Any]:
    """An augmentation as the spec stores it: an engine name, or a table ``{name, params}``."""
    if isinstance(value, augment.Augmentation):
        name = {
            augment.Permutation: "permutation",
            augment.Resample: "resample",
            augment.CyclicShift: "cyclic_shift",
            augment.Gaussian: "gaussian",
            augment.Mask: "mask",
            augment.BlockPermutation: "block_permutation",
        }.get(type(value))
        if name is None:
            raise _spec_error(
                "augmentation",
                f"{value!r} cannot be named in a spec (a store must be able to tell two "
                "sweeps apart): use a built-in augmentation",
            )
        params = {p: getattr(value, p) for p in _AUGMENTATION_PARAMS[name]}
        if "groups" in params:
            params["groups"] = [g.tolist() for g in params["groups"]]
        return name if not params else {"name": name, **params}
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, Mapping) or not isinstance(value.get("name"), str):
        raise _spec_error(
            "augmentation",
            f"each value must be a name or a table with 'name', got {value!r}",
        )
    name = value["name"]
    if name not in _AUGMENTATION_PARAMS:
        raise _spec_error(
            "augmentation", f"unknown name {name!r}; known: {', '.join(_AUGMENTATION_PARAMS)}"
        )
    extra = set(value) - {"name", *_AUGMENTATION_PARAMS[name]}
    if extra:
        raise _spec_error(
            "augmentation", f"{name} takes {list(_AUGMENTATION_PARAMS[name])}, not {sorted(extra)}"
        )
    if "rescale" in value and not isinstance(value["rescale"], (bool, np.bool_)):
        raise _spec_error(
            "augmentation", f"mask: rescale must be true or false, got {value['rescale']!r}"
        )
    built = _build_augmentation({"name": name, **{p: value[p] for p in value if p != "name"}})
    # the canonical form is the object's: {sigma = 1} and Gaussian(1.0) name one sweep
    return built if isinstance(built, str) else _augmentation_form(built)


def _build_augmentation(form: str | Mapping[str, Any]) -> str | augment.Augmentation:
    """The object (or engine name) ``train_many`` takes, from the spec's form."""
    if isinstance(form, str):
        form = {"name": form}
    name, params = form["name"], {p: v for p, v in form.items() if p != "name"}
    if name in ("permutation", "resample"):
        return str(name)
    cls = {
        "cyclic_shift": augment.CyclicShift,
        "gaussian": augment.Gaussian,
        "mask": augment.Mask,
        "block_permutation": augment.BlockPermutation,
    }[name]
    try:
        return cls(**params)
    except (TypeError, ValueError) as exc:
        raise _spec_error("augmentation", f"{name}: {exc}") from None


def _label(form: str | Mapping[str, Any]) -> str:
    """The augmentation's coordinate label: its name and parameters."""
    if isinstance(form, str):
        return form
    params = ", ".join(f"{p}={v}" for p, v in form.items() if p != "name")
    return f"{form['name']}({params})"


def _lr_values(value: Any) -> list[float]:
    if isinstance(value, Mapping):
        unknown = set(value) - {"start", "stop", "num", "spacing"}
        if unknown or not {"start", "stop", "num"} <= set(value):
            raise _spec_error(
                "lr", "a table needs start, stop and num (and optionally spacing = "
                f"'log' or 'linear'), got {sorted(value)}"
            )  # fmt: skip
        num = _checks.as_int("lr.num", value["num"], minimum=1)
        start = _checks.as_positive_real("lr.start", value["start"])
        stop = _checks.as_positive_real("lr.stop", value["stop"])
        spacing = _checks.as_choice("lr.spacing", value.get("spacing", "log"), ("log", "linear"))
        grid = np.geomspace if spacing == "log" else np.linspace
        return [float(v) for v in grid(start, stop, num)]
    return [_checks.as_positive_real("lr", v) for v in _as_list("lr", value)]


@dataclass(frozen=True)
class Spec:
    """A validated sweep spec: the grid's coordinates and the settings of every run."""

    augmentation: tuple[str | dict[str, Any], ...]
    sampling: tuple[str, ...]
    d: tuple[int, ...]
    n: tuple[int, ...]
    data_seed: tuple[int, ...]
    k: tuple[float, ...]
    lr: tuple[float, ...]
    seeds: tuple[int, ...]
    steps: int
    record_every: int
    record: tuple[str, ...]
    n_test: int
    w_star: float
    dtype: str
    chunk_seeds: int
    algorithm: str = "auto"

    @classmethod
    def parse(cls, spec: Mapping[str, Any]) -> Spec:
        """Validate a dict (or a parsed TOML file); errors are ValueErrors naming the key."""
        if not isinstance(spec, Mapping):
            raise TypeError(f"spec must be a dict or a TOML file's path, got {type(spec).__name__}")
        try:
            return cls._parse(spec)
        except TypeError as exc:  # a value of the wrong type: fastperm's checks name the key
            raise ValueError(f"sweep spec: {exc}") from None

    @classmethod
    def _parse(cls, spec: Mapping[str, Any]) -> Spec:
        known = {*GRID, *SETTINGS}
        for key in spec:
            if key not in known:
                near = difflib.get_close_matches(str(key), known, n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                raise _spec_error(key, f"unknown key{hint}; known: {', '.join(sorted(known))}")
        if "k" not in spec:
            raise _spec_error("k", "required (e.g. k = [1, 4, 16, 'inf'])")
        get = {**GRID, **SETTINGS, **spec}.__getitem__
        ks = []
        for v in _as_list("k", get("k")):
            ks.append(math.inf if _checks.is_inf_name(v) else _checks.as_k(v))
        seeds = get("seeds")
        if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
            seeds = list(range(_checks.as_int("seeds", seeds, minimum=1)))
        seeds = [_checks.as_seed("seeds", s) for s in _as_list("seeds", seeds)]
        steps = _checks.as_int("steps", get("steps"), minimum=1, maximum=2**32 - 2)
        every = get("record_every")
        every = max(1, steps // 100) if every is None else every
        record = tuple(_as_list("record", get("record")))
        for name in record:
            if name not in SWEEP_METRICS:
                raise _spec_error("record", f"{name!r} is not one of {', '.join(SWEEP_METRICS)}")
        chunk = get("chunk_seeds")
        chunk = max(1, -(-len(seeds) // 8)) if chunk is None else chunk
        out = cls(
            augmentation=tuple(
                _augmentation_form(v) for v in _as_list("augmentation", get("augmentation"))
            ),
            sampling=tuple(
                _checks.as_choice("sampling", v, _checks.SAMPLINGS)
                for v in _as_list("sampling", get("sampling"))
            ),
            d=tuple(_checks.as_int("d", v, minimum=1) for v in _as_list("d", get("d"))),
            n=tuple(_checks.as_int("n", v, minimum=1) for v in _as_list("n", get("n"))),
            data_seed=tuple(
                _checks.as_seed("data_seed", v) for v in _as_list("data_seed", get("data_seed"))
            ),
            k=tuple(ks),
            lr=tuple(_lr_values(get("lr"))),
            seeds=tuple(seeds),
            steps=steps,
            record_every=_checks.as_int("record_every", every, minimum=1),
            record=tuple(dict.fromkeys(record)),
            n_test=_checks.as_int("n_test", get("n_test"), minimum=0),
            w_star=_checks.as_finite_real("w_star", get("w_star")),
            dtype=_checks.as_choice("dtype", get("dtype"), ("float64", "float32")),
            chunk_seeds=_checks.as_int("chunk_seeds", chunk, minimum=1),
            algorithm=_checks.as_choice("algorithm", get("algorithm"), dual.ALGORITHMS),
        )
        for name, values in (("k", out.k), ("lr", out.lr), ("seeds", out.seeds), ("d", out.d),
                             ("n", out.n), ("data_seed", out.data_seed),
                             ("sampling", out.sampling),
                             ("augmentation", [_label(a) for a in out.augmentation])):  # fmt: skip
            if len(set(values)) != len(values):
                raise _spec_error(name, f"values repeat: {list(values)}")
        if "test" in out.record and out.n_test == 0:
            raise _spec_error("record", "'test' needs held-out examples: set n_test >= 1")
        if out.dtype == "float32" and out.algorithm == "dual":
            raise _spec_error("algorithm", "the dual form computes in float64: dtype float32")
        if out.dtype == "float32" and math.inf in out.k:
            raise _spec_error("dtype", "float32 runs plain and k-fold SGD only, not k = inf")
        for form in out.augmentation:
            aug = _build_augmentation(form)
            if isinstance(aug, augment.Augmentation):
                for d in out.d:
                    try:
                        aug.check_d(d)
                    except ValueError as exc:
                        raise _spec_error("augmentation", f"with d = {d}: {exc}") from None
        return out

    def as_dict(self) -> dict[str, Any]:
        """The canonical form (JSON: k = inf as "inf"), the same for equal specs."""
        out: dict[str, Any] = {}
        for key in (*GRID, *SETTINGS):
            value = getattr(self, key)
            out[key] = list(value) if isinstance(value, tuple) else value
        out["k"] = ["inf" if math.isinf(k) else int(k) for k in self.k]
        if out["algorithm"] == "auto":  # (the default: the digests of earlier specs hold)
            del out["algorithm"]
        return out

    def digest(self) -> str:
        """SHA-256 of the canonical form: a store belongs to the spec with this digest."""
        text = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def coords(self) -> dict[str, Any]:
        """The result's coordinates, by dimension."""
        return {
            # object arrays: Zarr stores them as variable-length strings
            "augmentation": np.array([_label(a) for a in self.augmentation], dtype=object),
            "sampling": np.array(self.sampling, dtype=object),
            "d": list(self.d),
            "n": list(self.n),
            "data_seed": list(self.data_seed),
            "k": list(self.k),
            "lr": list(self.lr),
            "seed": list(self.seeds),
            "step": self.step_values().tolist(),
        }

    def step_values(self) -> np.ndarray:
        """The recorded steps: 0, record_every, 2·record_every, …, and the last step."""
        return _runs.record_steps(self.steps, self.record_every)[:-1]

    @property
    def outer_shape(self) -> tuple[int, ...]:
        """Lengths of the dimensions that select a chunk's setting (all but lr, seed, step)."""
        return tuple(len(getattr(self, key)) for key in GRID if key not in ("lr", "seeds"))

    @property
    def seed_blocks(self) -> list[slice]:
        S, c = len(self.seeds), self.chunk_seeds
        return [slice(a, min(S, a + c)) for a in range(0, S, c)]


def load_spec(spec: object) -> Spec:
    """A :class:`Spec` from a Spec, a dict, or the path of a TOML file."""
    if isinstance(spec, Spec):
        return spec
    if isinstance(spec, (str, os.PathLike)):
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # the [dask] extra installs it
            try:
                import tomli as tomllib
            except ImportError:
                raise ImportError(
                    "reading a TOML spec on Python 3.10 needs tomli: pip install 'fastperm[dask]'"
                ) from None

        path = os.fspath(spec)
        try:
            with open(path, "rb") as f:
                spec = tomllib.load(f)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"spec file {path!r} is not valid TOML: {exc}") from None
    return Spec.parse(spec)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Chunk:
    """One train_many call of a sweep: a setting (``where``) and a block of seeds."""

    where: tuple[int, ...]  # indices along augmentation, sampling, d, n, data_seed, k
    block: int  # index of the seed block
    seeds: slice
    cost: float


def chunks(spec: Spec) -> list[Chunk]:
    """Every chunk of the sweep, with its estimated cost (element operations)."""
    out = []
    for where in itertools.product(*(range(m) for m in spec.outer_shape)):
        a, s, di, ni, _, ki = where
        k, d = spec.k[ki], spec.d[di]
        per_step = (d if math.isinf(k) else k * d) + spec.n[ni]
        for b, sl in enumerate(spec.seed_blocks):
            runs = (sl.stop - sl.start) * len(spec.lr)
            out.append(Chunk(where, b, sl, float(runs * spec.steps * per_step)))
    return out


class _Problems:
    """The sweep's problems, drawn once each (d, n, data seed)."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self._made: dict[tuple[int, int, int], LinearProblem] = {}

    def __call__(self, where: tuple[int, ...]) -> LinearProblem:
        key = (self.spec.d[where[2]], self.spec.n[where[3]], self.spec.data_seed[where[4]])
        if key not in self._made:
            d, n, seed = key
            self._made[key] = LinearProblem.sample(
                d=d, n=n, seed=seed, w_star=self.spec.w_star, n_test=self.spec.n_test
            )
        return self._made[key]


def run_chunk(
    spec: Spec,
    chunk: Chunk,
    problem: LinearProblem,
    backend: str | None = None,
    threads: int | None = None,
) -> dict[str, np.ndarray]:
    """One chunk's arrays: ``loss_<metric>`` (lr, seeds, step) and ``diverged_step`` (lr, seeds)."""
    a, s, _, _, _, ki = chunk.where
    seeds = np.asarray(spec.seeds[chunk.seeds], dtype=np.uint64)
    lr = np.asarray(spec.lr)
    L, S = lr.shape[0], seeds.shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DivergenceWarning)  # the sweep reports them once
        res = train_many(
            problem,
            spec.k[ki],
            seeds=np.tile(seeds, L),
            lr=np.repeat(lr, S),
            steps=spec.steps,
            sampling=spec.sampling[s],  # type: ignore[arg-type]
            augmentation=_build_augmentation(spec.augmentation[a]),
            record_every=spec.record_every,
            record=list(spec.record),
            dtype=spec.dtype,
            backend=backend,
            threads=threads,
            algorithm=dual.form(spec.algorithm, spec.k[ki], spec.sampling[s]),
        )
    out: dict[str, np.ndarray] = {
        f"loss_{name}": np.ascontiguousarray(res.records[name], dtype=np.float64).reshape(L, S, -1)
        for name in spec.record
    }
    out["diverged_step"] = np.asarray(res.diverged_step, dtype=np.int64).reshape(L, S)
    return out


def _index(chunk: Chunk) -> tuple[Any, ...]:
    """Where a chunk's arrays sit in the sweep's (…, lr, seed[, step]) arrays."""
    return (*chunk.where, slice(None), chunk.seeds)


def _digest(arrays: Mapping[str, np.ndarray]) -> int:
    """A chunk's fingerprint: 63 bits of BLAKE2b over its arrays (never 0, which marks
    a chunk not written)."""
    h = hashlib.blake2b(digest_size=8)
    for name in sorted(arrays):
        h.update(name.encode())
        h.update(np.ascontiguousarray(arrays[name]).tobytes())
    return (int.from_bytes(h.digest(), "little") >> 1) or 1


class _Memory:
    """Where an in-memory sweep's chunks go."""

    def __init__(self, spec: Spec) -> None:
        shape = (*spec.outer_shape, len(spec.lr), len(spec.seeds))
        steps = spec.step_values().shape[0]
        self.arrays = {f"loss_{m}": np.full((*shape, steps), np.nan) for m in spec.record}
        self.arrays["diverged_step"] = np.full(shape, -2, dtype=np.int64)

    def done(self, chunks: list[Chunk]) -> list[bool]:
        return [False] * len(chunks)

    def write(self, chunk: Chunk, arrays: Mapping[str, np.ndarray]) -> None:
        for name, values in arrays.items():
            self.arrays[name][_index(chunk)] = values


class _Store:
    """A Zarr store of a sweep: data arrays chunked as the sweep's chunks, and a
    ``chunk_digest`` array (one file per chunk) written after each chunk's data."""

    DIGEST = "chunk_digest"

    def __init__(self, path: str | os.PathLike[str], spec: Spec, attrs: dict[str, Any]) -> None:
        try:
            import zarr
        except ImportError:
            raise ImportError(
                "store= needs zarr >= 3 (Python 3.11+): pip install 'fastperm[dask]'"
            ) from None

        if int(zarr.__version__.split(".")[0]) < 3:
            raise ImportError(
                f"store= needs zarr >= 3 (Python 3.11+), found zarr {zarr.__version__}: "
                "pip install 'fastperm[dask]'"
            )
        self.path = os.fspath(path)
        self.spec = spec
        self._arrays: dict[str, Any] = {}
        if os.path.exists(self.path):
            try:
                self.group = zarr.open_group(self.path, mode="r+")
            except (FileNotFoundError, ValueError, zarr.errors.GroupNotFoundError):
                raise ValueError(self._mismatch(None)) from None
            theirs = self.group.attrs.get("spec_digest")
            if theirs != spec.digest():
                stored = self.group.attrs.get("spec")
                raise ValueError(self._mismatch(stored if isinstance(stored, str) else None))
            if self.group.attrs.get("backend") != attrs["backend"]:
                warnings.warn(
                    f"store {self.path!r} was computed with backend "
                    f"{self.group.attrs.get('backend')!r}, this run uses "
                    f"{attrs['backend']!r}: the chunks computed now may differ from the "
                    "stored ones in the last bits",
                    RuntimeWarning,
                    stacklevel=3,
                )
        else:
            self._create(attrs)
            self.group = zarr.open_group(self.path, mode="r+")

    def _mismatch(self, stored: str | None) -> str:
        if stored is None:
            return f"store {self.path!r} was not written by fastperm.sweep; left untouched"
        theirs, ours = json.loads(stored), self.spec.as_dict()
        differ = sorted(key for key in {*theirs, *ours} if theirs.get(key) != ours.get(key))
        return (
            f"store {self.path!r} holds a different sweep (spec keys that differ: "
            f"{', '.join(differ)}); it is left untouched: use another store, or delete it "
            "to start again"
        )

    def _create(self, attrs: dict[str, Any]) -> None:
        """The empty store, built in a temporary folder next to it and renamed into place
        when complete: a process killed meanwhile leaves no half-made store at the path."""
        import tempfile

        parent, name = os.path.split(os.path.abspath(self.path))
        tmp = tempfile.mkdtemp(prefix=f".{name}.", suffix=".creating", dir=parent)
        try:
            self._layout(os.path.join(tmp, name), attrs)
            os.rename(os.path.join(tmp, name), self.path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _layout(self, path: str, attrs: dict[str, Any]) -> None:
        import xarray
        import zarr

        spec = self.spec
        coords = spec.coords
        xarray.Dataset(coords=coords, attrs=attrs).to_zarr(path, mode="w-", consolidated=False)
        group = zarr.open_group(path, mode="r+")
        outer = (*spec.outer_shape, len(spec.lr), len(spec.seeds))
        chunk = (*(1 for _ in spec.outer_shape), len(spec.lr), spec.chunk_seeds)
        nsteps = len(coords["step"])
        dims = DIMS
        for metric in spec.record:
            group.create_array(
                f"loss_{metric}", shape=(*outer, nsteps), chunks=(*chunk, nsteps),
                dtype="float64", fill_value=np.nan, dimension_names=(*dims, "step"),
                attributes={"long_name": _LONG_NAMES[metric]},
            )  # fmt: skip
        group.create_array(
            "diverged_step", shape=outer, chunks=chunk, dtype="int64", fill_value=-2,
            dimension_names=dims,
            attributes={"long_name": "first non-finite step (-1: finite, -2: not computed)"},
        )  # fmt: skip
        group.create_array(
            self.DIGEST, shape=(*spec.outer_shape, len(spec.seed_blocks)),
            chunks=(*(1 for _ in spec.outer_shape), 1), dtype="uint64", fill_value=0,
            dimension_names=(*dims[:6], "seed_block"),
        )  # fmt: skip

    def _read(self, chunk: Chunk) -> dict[str, np.ndarray]:
        index = _index(chunk)
        names = [f"loss_{m}" for m in self.spec.record] + ["diverged_step"]
        return {name: np.asarray(self._array(name)[index]) for name in names}

    def done(self, chunks: list[Chunk]) -> list[bool]:
        """Which chunks are complete: their digest is there and matches their data."""
        out = []
        for chunk in chunks:
            try:
                stored = int(self._array(self.DIGEST)[chunk.where + (chunk.block,)])
                ok = stored != 0 and stored == _digest(self._read(chunk))
            except Exception:  # noqa: BLE001 (an unreadable chunk is one to compute again)
                ok = False
            out.append(ok)
        return out

    def write(self, chunk: Chunk, arrays: Mapping[str, np.ndarray]) -> None:
        index = _index(chunk)
        for name, values in arrays.items():
            self._array(name)[index] = values
        self._array(self.DIGEST)[chunk.where + (chunk.block,)] = np.uint64(_digest(arrays))

    def _array(self, name: str) -> Any:
        if name not in self._arrays:  # opened once (each opening reads its metadata)
            self._arrays[name] = self.group[name]
        return self._arrays[name]


_LONG_NAMES = {
    "error": "parameter error mean((w - w*)^2)",
    "train": "training loss mean((Xw - y)^2)",
    "test": "held-out loss mean((Xw - y)^2)",
}


def sweep(
    spec: Mapping[str, Any] | str | os.PathLike[str] | Spec,
    store: str | os.PathLike[str] | None = None,
    *,
    client: Any = None,
    backend: str | None = None,
    threads: int | None = None,
    progress: bool | str = False,
) -> xarray.Dataset:
    """Run a grid of training runs (module docstring) and return it as a labelled Dataset.

    Parameters
    ----------
    spec : dict, path of a TOML file, or Spec
        The grid (:data:`GRID` keys: one value or a list each; ``k`` is required) and the
        settings (:data:`SETTINGS`). Errors name the key.
    store : path, optional
        A Zarr store (directory) the chunks are written to as they finish. If it exists, it
        must hold this spec's sweep: only its missing or damaged chunks are computed (the
        result's ``attrs["chunks_computed"]`` says how many). Without a store the sweep is
        held in memory and lost if the process dies.
    client : dask.distributed.Client, optional
        Run the chunks as tasks on a Dask cluster (one thread each; the most expensive
        first); results are bitwise those of the local sweep.
    backend : str, optional
        As in :func:`fastperm.train_many` (the numbers of one backend; the store does not
        record it).
    threads : int, optional
        Threads of each chunk run locally (default: as ``train_many`` chooses); with a
        client, each chunk runs on one thread of a worker. Never changes the numbers.
    progress : bool or str
        A progress bar over the chunks (time left included).

    Returns
    -------
    xarray.Dataset
        Dimensions ``augmentation, sampling, d, n, data_seed, k, lr, seed, step``;
        ``loss_<metric>`` and ``diverged_step``; attributes ``spec`` (JSON),
        ``spec_digest``, ``versions``, ``chunks``, ``chunks_computed``. With a store, the
        Dataset reads from it (lazily when dask is installed).

    Raises
    ------
    ValueError
        A bad spec (naming the key), or a store of another spec (left untouched).
    KeyboardInterrupt
        On Ctrl-C: the chunks finished so far are in the store; running again resumes.

    Warns
    -----
    DivergenceWarning
        Once, if runs diverged: how many, and the first one's setting.
    """
    spec = load_spec(spec)
    threads = _runs.as_threads(threads)
    if client is not None:
        distributed.check_client(client)
    try:
        import xarray  # the sweep's result type: fail here, before any work, if it is missing
    except ImportError:
        raise ImportError("fastperm.sweep needs xarray: pip install 'fastperm[dask]'") from None

    env = environment()
    attrs = {
        "spec": json.dumps(spec.as_dict(), sort_keys=True),
        "spec_digest": spec.digest(),
        "versions": json.dumps(env["versions"], sort_keys=True),
        "platform": env["platform"],
        "created": env["date"],
        "metric": spec.record[0],
        "backend": backends.get(backend).name,
    }
    sink: _Memory | _Store = _Memory(spec) if store is None else _Store(store, spec, attrs)
    every = chunks(spec)
    todo = [c for c, done in zip(every, sink.done(every), strict=True) if not done]
    todo.sort(key=lambda c: -c.cost)  # the most expensive first: the tail stays short
    problems = _Problems(spec)
    bar = None
    if progress:
        if len(todo) < len(every):
            stored = len(every) - len(todo)
            print(f"resuming {os.fspath(store or '')}: {stored} of {len(every)} chunks "
                  f"stored, computing {len(todo)}", file=sys.stderr)  # fmt: skip
        bar = _runs.progress_bar(progress, len(todo), unit="chunk")
    t0 = time.perf_counter()
    try:
        for chunk, arrays in _computed(spec, todo, problems, client, backend, threads):
            sink.write(chunk, arrays)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    counts = {"chunks": len(every), "chunks_computed": len(todo), "seconds": seconds}
    if isinstance(sink, _Store):
        ds = open_store(sink.path)
    else:
        coords = spec.coords
        ds = xarray.Dataset(
            {
                name: ((*DIMS, "step")[: values.ndim], values)
                for name, values in sink.arrays.items()
            },
            coords=coords,
            attrs=attrs,
        )
    ds.attrs.update(counts)
    _warn_divergence(ds)
    return ds


def _computed(
    spec: Spec,
    todo: list[Chunk],
    problems: _Problems,
    client: Any,
    backend: str | None,
    threads: int | None,
) -> Iterator[tuple[Chunk, dict[str, np.ndarray]]]:
    """The chunks' arrays as they finish: in order locally, as they arrive from a cluster."""
    if client is None:
        for chunk in todo:
            yield chunk, run_chunk(spec, chunk, problems(chunk.where), backend, threads)
        return
    scattered: dict[tuple[int, ...], Any] = {}
    futures = []
    for chunk in todo:
        key = chunk.where[2:5]
        if key not in scattered:  # each problem travels to the workers once
            scattered[key] = distributed.scatter(client, problems(chunk.where))
        futures.append(client.submit(run_chunk, spec, chunk, scattered[key], backend, 1,
                                     pure=False))  # fmt: skip
    for i, arrays in distributed.completed(client, futures):
        yield todo[i], arrays


def open_store(path: str | os.PathLike[str]) -> xarray.Dataset:
    """A stored sweep as a Dataset (its digests left out), lazily when dask is installed."""
    import xarray

    try:
        import dask  # noqa: F401

        chunks: dict[str, Any] | None = {}
    except ImportError:
        chunks = None
    try:
        ds = xarray.open_zarr(os.fspath(path), chunks=chunks, consolidated=False)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise ValueError(f"{os.fspath(path)!r} is not a sweep store: {exc}") from None
    if _Store.DIGEST not in ds or "spec_digest" not in ds.attrs:
        raise ValueError(f"{os.fspath(path)!r} was not written by fastperm.sweep")
    return ds.drop_vars(_Store.DIGEST)


def summary(ds: xarray.Dataset, where: str = "sweep") -> str:
    """A few lines on a sweep: chunks computed, runs, time, and a table of the median final
    loss over seeds by lr (rows) and k (columns), at the first value of the other
    dimensions (``fastperm sweep`` prints it)."""
    runs = int(np.prod([ds.sizes[dim] for dim in DIMS]))
    metric = ds.attrs["metric"]
    first = {dim: 0 for dim in DIMS[:5]}
    final = ds[f"loss_{metric}"].isel(step=-1).median("seed").isel(first)
    table = np.asarray(final.transpose("lr", "k").values)
    ks = ["inf" if math.isinf(k) else str(int(k)) for k in ds["k"].values]
    lines = [
        f"{where}: {ds.attrs['chunks_computed']} of {ds.attrs['chunks']} chunks computed "
        f"({runs} runs in all) in {ds.attrs['seconds']:.1f} s",
        f"median final loss ({metric}) over seeds, by lr (rows) and k (columns); "
        + ", ".join(f"{dim} = {ds[dim].values[0]}" for dim in first),
        f"{'lr':>10}" + "".join(f"{k:>12}" for k in ks),
    ]
    for lr, row in zip(ds["lr"].values, table, strict=True):
        lines.append(f"{lr:>10.3g}" + "".join(f"{v:>12.4g}" for v in row))
    return "\n".join(lines)


def _warn_divergence(ds: xarray.Dataset) -> None:
    status = np.asarray(ds["diverged_step"])
    bad = np.argwhere(status >= 0)
    if bad.shape[0] == 0:
        return
    setting = ", ".join(f"{dim}={ds[dim].values[i]}" for dim, i in zip(DIMS, bad[0], strict=True))
    warnings.warn(
        f"{bad.shape[0]} of {status.size} runs diverged (the first: {setting}, at step "
        f"{int(status[tuple(bad[0])])}); their losses are NaN after it",
        DivergenceWarning,
        stacklevel=3,
    )
