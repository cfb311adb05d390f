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

Every backend module offers the kernels of the contract
(:mod:`fastperm.backends.reference`) with the same signatures, plus ``name``,
``compile()`` (compile or load ahead of timing; a no-op where nothing is
compiled at run time) and ``threads()`` (the threads its parallel kernels use).

The environment variable ``FASTPERM_BACKEND`` forces the backend that
``backend=None`` / ``"auto"`` selects. Asking for a backend that cannot be
imported raises :class:`BackendUnavailableError` with the reason.
"""

from __future__ import annotations

import importlib
import os

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

_loaded: dict = {}
_errors: dict = {}


class BackendUnavailableError(ImportError):
    """A backend was asked for by name but cannot be used here."""


def _load(name: str):
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


def get(backend=None, needs=None):
    """The kernel module for ``backend``.

    Parameters
    ----------
    backend : str or None
        ``None`` or ``"auto"``: the value of ``$FASTPERM_BACKEND`` if set, else
        the first available of ``numba``, ``cython``, ``numpy`` (never ``cuda``). A name from
        :data:`KNOWN` selects that backend.
    needs : str, optional
        A kernel the caller will use (``"deep_linear_runs"``, …) that not every backend
        implements: the automatic choice skips backends without it; a named (or
        ``$FASTPERM_BACKEND``-forced) backend without it raises ValueError.

    Raises
    ------
    ValueError
        ``backend`` is not a known name.
    BackendUnavailableError
        The backend is known but cannot be imported here (the message says why).
    """
    if backend is None or backend == "auto":
        forced = os.environ.get(ENV_VAR, "").strip()
        if forced and forced != "auto":
            return _check_needs(_get_named(forced, source=f"${ENV_VAR}"), needs)
        for name in AUTO:
            mod = _load(name)
            if mod is not None and (needs is None or hasattr(mod, needs)):
                return mod
        raise BackendUnavailableError(f"no backend could be imported: {_errors}")
    return _check_needs(_get_named(backend, source="backend"), needs)


def _check_needs(mod, needs):
    if needs is None or hasattr(mod, needs):
        return mod
    have = [n for n in available() if hasattr(_loaded[n], needs)]
    raise ValueError(f"backend {mod.name!r} does not implement {needs}; backends that do: "
                     f"{', '.join(have) or 'none here'}")


def _get_named(name, source):
    if not isinstance(name, str) or name not in KNOWN:
        raise ValueError(f"{source} must be one of {', '.join(map(repr, KNOWN))} or 'auto'; "
                         f"got {name!r}")
    mod = _load(name)
    if mod is None:
        raise BackendUnavailableError(
            f"backend {name!r} is not available here: {_errors[name]}. "
            f"Available: {', '.join(available()) or 'none'}")
    return mod
