"""Backend registry: which kernel implementations exist here, and choosing one.

Backends, in the order ``"auto"`` tries them:

========== ==========================================================
``numba``  Numba CPU, compiled and parallel over runs (default)
``cython`` Cython, compiled at install time, OpenMP-parallel: the fallback
           when Numba is not installed
``numpy``  NumPy reference: readable, slow, always available; the test oracle
``cuda``   numba.cuda on an NVIDIA GPU: batched runs and bracket batches. Never
           chosen automatically; ``backend="cuda"`` asks for it
========== ==========================================================

Every backend module offers kernels of the contract (:mod:`fastperm.backends.contract`,
which declares every kernel family once) with the contract's signatures, plus ``name``,
``compile()`` (compile or load ahead of timing; a no-op where nothing is
compiled at run time), ``threads()`` and ``set_threads(n)`` (the threads its parallel
drivers use for calls from this Python thread). The reference implements every family;
:func:`capabilities` says which backend has which.

The environment variable ``FASTPERM_BACKEND`` forces the backend that
``backend=None`` / ``"auto"`` selects. Asking for a backend that cannot be
imported raises :class:`BackendUnavailableError` with the reason.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

from . import contract

#: every backend fastperm knows, in automatic order, and the module that implements it
KNOWN = {
    "numba": "fastperm.backends.numba_cpu",
    "cython": "fastperm.backends._cython",
    "numpy": "fastperm.backends.reference",
    "cuda": "fastperm.backends.numba_cuda",
}
#: the CPU backends ``"auto"`` chooses from, in order
AUTO = ("numba", "cython", "numpy")
ENV_VAR = "FASTPERM_BACKEND"

_loaded: dict[str, ModuleType] = {}
_errors: dict[str, str] = {}


class BackendUnavailableError(ImportError):
    """A backend was asked for by name but cannot be used here."""


def _load(name: str) -> ModuleType | None:
    if name in _loaded:
        return _loaded[name]
    if name in _errors:
        return None
    try:
        mod = importlib.import_module(KNOWN[name])
    except Exception as exc:  # an import failure of any kind makes the backend unavailable
        _errors[name] = f"{type(exc).__name__}: {exc}"
        return None
    _loaded[name] = mod
    return mod


def available() -> list[str]:
    """Names of the backends that import on this machine, in automatic order."""
    return [name for name in KNOWN if _load(name) is not None]


def unavailable() -> dict[str, str]:
    """Backends that failed to import, with the reason."""
    available()
    return dict(_errors)


def get(
    backend: str | None = None, needs: str | None = None, kind: int | None = None
) -> ModuleType:
    """The kernel module for ``backend``.

    Parameters
    ----------
    backend : str or None
        ``None`` or ``"auto"``: the value of ``$FASTPERM_BACKEND`` if set, else
        the first available of ``numba``, ``cython``, ``numpy`` (never ``cuda``). A name from
        :data:`KNOWN` selects that backend.
    needs : str, optional
        A kernel family of :mod:`~fastperm.backends.contract` the caller will use
        (``"deep_linear_runs"``, …): the automatic choice skips backends without it; a
        named (or ``$FASTPERM_BACKEND``-forced) backend without it raises ValueError.
    kind : int, optional
        An augmentation kind (``fastperm.rng.KIND_*``) the family's sampler must draw: a
        backend listing ``SAMPLER_KINDS`` draws only those.

    Raises
    ------
    ValueError
        ``backend`` is not a known name, ``needs`` is not a kernel family, or the named
        backend lacks the family (or the kind).
    BackendUnavailableError
        The backend is known but cannot be imported here (the message says why).

    Examples
    --------
    >>> from fastperm import backends
    >>> kern = backends.get("numpy")
    >>> kern.name, kern.threads()
    ('numpy', 1)
    >>> backends.get("numpy", needs="scheme_runs").name
    'numpy'
    >>> backends.get("fortran")
    Traceback (most recent call last):
    ...
    ValueError: backend must be one of 'numba', 'cython', 'numpy', 'cuda' or 'auto'; got 'fortran'
    """
    if needs is not None and needs not in contract.FAMILIES:
        raise ValueError(
            f"needs must be a kernel family of the contract "
            f"({', '.join(contract.FAMILIES)}), got {needs!r}"
        )
    if backend is None or backend == "auto":
        forced = os.environ.get(ENV_VAR, "").strip()
        if forced and forced != "auto":
            return _check_needs(_get_named(forced, source=f"${ENV_VAR}"), needs, kind)
        for name in AUTO:
            mod = _load(name)
            if mod is not None and _has(mod, needs, kind):
                return mod
        raise BackendUnavailableError(f"no backend could be imported: {_errors}")
    return _check_needs(_get_named(backend, source="backend"), needs, kind)


def _has(mod: ModuleType, family: str | None, kind: int | None = None) -> bool:
    """Whether backend module ``mod`` implements ``family`` (and draws ``kind``)."""
    if family is None:
        return True
    if not hasattr(mod, family):
        return False
    kinds = getattr(mod, contract.SAMPLER_KINDS_ATTR, None)
    return kind is None or kinds is None or kind in kinds


def _check_needs(mod: ModuleType, needs: str | None, kind: int | None) -> ModuleType:
    if _has(mod, needs, kind):
        return mod
    have = [n for n in available() if _has(_loaded[n], needs, kind)]
    # (needs is a family here: _has accepts every backend when it is None)
    what = needs if kind is None or not hasattr(mod, needs) else f"{needs} for this augmentation"  # type: ignore[arg-type]
    raise ValueError(
        f"backend {mod.name!r} does not implement {what}; backends that do: "
        f"{', '.join(have) or 'none here'}"
    )


def capabilities() -> dict[str, dict[str, bool]]:
    """``{backend: {family: implemented}}`` for every backend that imports here, over every
    kernel family of the contract (the matrix ``fastperm info`` prints).

    Examples
    --------
    >>> from fastperm import backends
    >>> caps = backends.capabilities()
    >>> "numpy" in caps, all(caps["numpy"].values())  # the reference implements every family
    (True, True)
    >>> list(caps["numpy"])[:3]
    ['sgd_runs', 'expected_runs', 'augmented_gradient']
    """
    return {
        name: {fam: _has(_loaded[name], fam) for fam in contract.FAMILIES} for name in available()
    }


def capability_table() -> str:
    """:func:`capabilities` as a text table: a row per kernel family, a column per backend
    (``x``: implemented; ``-``: not), with each family's module."""
    caps = capabilities()
    names = list(caps)
    width = max(len(f) for f in contract.FAMILIES) + 2
    lines = ["kernel family".ljust(width) + "module        " + "  ".join(names)]
    for fam, spec in contract.FAMILIES.items():
        marks = "  ".join(("x" if caps[n][fam] else "-").center(len(n)) for n in names)
        lines.append(fam.ljust(width) + spec.module.ljust(14) + marks)
    for n in names:
        kinds = getattr(_loaded[n], contract.SAMPLER_KINDS_ATTR, None)
        if kinds is not None:
            lines.append(
                f"({n} draws augmentation kinds {sorted(kinds)} only: see fastperm.rng.KIND_*)"
            )
    return "\n".join(lines)


def _get_named(name: object, source: str) -> ModuleType:
    if not isinstance(name, str) or name not in KNOWN:
        raise ValueError(
            f"{source} must be one of {', '.join(map(repr, KNOWN))} or 'auto'; got {name!r}"
        )
    mod = _load(name)
    if mod is None:
        raise BackendUnavailableError(
            f"backend {name!r} is not available here: {_errors[name]}. "
            f"Available: {', '.join(available()) or 'none'}"
        )
    return mod
