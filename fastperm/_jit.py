"""The one compilation policy of the compiled (Numba) kernels, and their decorators.

Without numba installed, ``njit`` is a no-op and ``prange`` is ``range``, so that
:mod:`fastperm.models` (whose kernels are decorated at import) and everything that
imports it still import; fastperm then runs on its other backends.

``fastmath`` allows reassociation (so reductions vectorise) and contraction into
FMAs. It leaves out ``nnan`` and ``ninf`` so the kernels' NaN/inf checks keep
working, and also ``nsz``: with numba 0.68 / llvmlite 0.50, ``reassoc`` together
with ``nsz`` let LLVM delete the ``isfinite`` test on the k = ∞ loss, so an
overflowing run was not reported (``tests/test_train.py::test_divergence_reported``
catches it). It leaves out ``arcp`` (a division may become a multiplication by the
rounded reciprocal) too: together with ``reassoc`` it made the code a process runs
right after compiling a kernel differ from the code Numba writes to its cache, so
``augmented_gradient`` and the training kernels gave other bits (1 ulp, in 8% of
the entries of 16 kernels compared) in the process that compiled them than in every
process that loaded them from the cache (issue 13;
``tests/test_kernel_cache.py::test_cold_and_cached_builds_agree``). Each flag alone,
and ``reassoc`` with ``contract``, gave the same bits both ways.
"""

import glob
import os
import types
import warnings

try:
    from numba import njit as _numba_njit
    from numba import prange
    from numba.core.caching import FunctionCache

    HAVE_NUMBA = True
except ImportError:  # fastperm works without numba, on its other backends
    HAVE_NUMBA = False
    prange = range  # type: ignore[misc]
    FunctionCache = object  # type: ignore[misc, assignment]

    def njit(*args, **kwargs):
        """No-op stand-in for ``numba.njit`` (numba is not installed)."""
        if len(args) == 1 and callable(args[0]) and not kwargs:
            return args[0]
        return lambda f: f


class KernelCacheWarning(RuntimeWarning):
    """A damaged entry of Numba's on-disk kernel cache was deleted and is being recompiled."""


class HealingCache(FunctionCache):
    """Numba's on-disk cache of one function, made self-healing.

    An entry that cannot be loaded — truncated or corrupted by a full disk or an interrupted
    write, or written for another function (swapped files), or another numba version — used
    to make every later call fail, run after run, with an error from inside numba. Here the
    function's index and data files are deleted instead, one :class:`KernelCacheWarning` per
    process says so, and the function is compiled again (and cached anew).

    An entry is also stale when *any* fastperm source file changed since it was written, not
    only the function's own file (Numba's rule): a driver in one file inlines workers from
    others, so an edit to a worker left the driver's cached machine code running the old
    worker (seen while changing the bracket shortcut of ``numba_cpu/mlp.py``).
    """

    def __init__(self, py_func):
        super().__init__(py_func)
        files = self._cache_file
        files._source_stamp = (files._source_stamp, _package_stamp())

    def load_overload(self, sig, target_context):
        try:
            data = super().load_overload(sig, target_context)
        except Exception as exc:  # any failure to read an entry: it is damaged
            self.discard(f"{type(exc).__name__}: {exc}")
            return None
        if data is not None and (
            tuple(data.signature.args) != tuple(sig)
            or data.fndesc.qualname != self._py_func.__qualname__
        ):
            self.discard(f"the entry is {data.fndesc.qualname}{data.signature}'s")
            return None
        return data

    def discard(self, why):
        """Delete this function's index and data files, with one warning per process."""
        files = self._cache_file
        paths = [files._index_path] + glob.glob(
            os.path.join(files._cache_path, glob.escape(self._impl.filename_base) + ".*.nbc")
        )
        for path in paths:
            try:
                os.remove(path)
            except OSError:
                pass
        if not _warned:
            _warned.append(True)
            warnings.warn(
                f"fastperm: the Numba cache of {self._py_func.__qualname__} in "
                f"{files._cache_path} could not be loaded ({why}); its files were "
                "deleted and the kernel is compiled again (`fastperm cache clear` "
                "removes every cached kernel)",
                KernelCacheWarning,
                stacklevel=2,
            )


def _package_stamp():
    """(latest modification time, total size) of fastperm's Python sources, read once."""
    if not _stamp:
        root = os.path.dirname(os.path.abspath(__file__))
        stats = [os.stat(p) for p in glob.glob(os.path.join(root, "**", "*.py"), recursive=True)]
        _stamp.append((max(s.st_mtime for s in stats), sum(s.st_size for s in stats)))
    return _stamp[0]


_stamp: list = []
_warned: list = []
#: every cached fastperm kernel of this process (``fastperm cache clear`` uses them)
CACHED: list = []

if HAVE_NUMBA:

    def njit(*args, **kwargs):
        """``numba.njit``; with ``cache=True`` the on-disk cache heals itself
        (:class:`HealingCache`)."""
        if len(args) == 1 and callable(args[0]) and not kwargs:
            return _numba_njit(args[0])
        decorate = _numba_njit(*args, **kwargs)
        if not kwargs.get("cache"):
            return decorate

        def cached(fn):
            dispatcher = decorate(fn)
            dispatcher._cache = HealingCache(dispatcher.py_func)
            CACHED.append(dispatcher)
            return dispatcher

        return cached


def cache_files():
    """The on-disk cache files (``.nbi`` index, ``.nbc`` data) of every cached kernel
    imported so far, and the directories they are in."""
    dirs, paths = set(), []
    for dispatcher in CACHED:
        files = dispatcher._cache._cache_file
        dirs.add(files._cache_path)
        paths += glob.glob(glob.escape(files._index_path))
        paths += glob.glob(
            os.path.join(
                files._cache_path, glob.escape(dispatcher._cache._impl.filename_base) + ".*.nbc"
            )
        )
    return sorted(dirs), sorted(set(paths))


FASTMATH = frozenset({"reassoc", "contract"})

#: options for serial workers and drivers
JIT = dict(cache=True, fastmath=set(FASTMATH), error_model="numpy", nogil=True)
#: options for drivers that run a parallel loop over independent runs
PARALLEL = dict(JIT, parallel=True)
#: for functions that take another jitted function as an argument (a user's gradient):
#: Numba's cache index cannot hold such signatures reliably, so they compile per process
NOCACHE = dict(JIT, cache=False)
PARALLEL_NOCACHE = dict(PARALLEL, cache=False)


def specialise(fn, suffix, **names):
    """A copy of ``fn`` named ``<name><suffix>`` whose global ``names`` are bound to the
    given objects (jitted functions it calls).

    One driver body then serves several kernels that differ only in a function they call,
    and each copy keeps Numba's on-disk cache: the cache files are named after the function
    (so each copy needs its own name), and a function bound as a global, unlike a closure
    variable or an argument, keeps the signature cacheable.
    """
    code = fn.__code__.replace(co_name=fn.__name__ + suffix, co_qualname=fn.__qualname__ + suffix)
    scope = {**fn.__globals__, **names} if names else fn.__globals__
    copy = types.FunctionType(code, scope, fn.__name__ + suffix, fn.__defaults__, fn.__closure__)
    copy.__qualname__ = fn.__qualname__ + suffix
    copy.__doc__ = fn.__doc__
    return copy


class Twins:
    """One driver body compiled twice: ``parallel`` launches its ``prange`` on the thread
    pool; ``serial`` runs the same loop as ``range`` in the calling thread.

    A parallel launch costs microseconds on an idle machine but a scheduler time slice
    (~8 ms measured) whenever one of its threads has to wait for a busy core, whatever the
    work (issue 12). So a call with one chunk of work never launches: ``twins(nchunks, ...)``
    runs ``serial`` when ``nchunks <= 1`` and ``parallel`` otherwise. Both give the same
    result (each run or task is computed by the same serial worker either way).

    Parameters
    ----------
    body : function
        The driver, written with ``prange`` over its independent tasks.
    cache : bool
        Cache both compilations on disk (False for drivers taking a user's function).
    """

    def __init__(self, body, cache=True):
        self.parallel = njit(**(PARALLEL if cache else PARALLEL_NOCACHE))(body)
        self.serial = njit(**(JIT if cache else NOCACHE))(specialise(body, "_serial"))
        self.__doc__ = body.__doc__

    def __call__(self, nchunks, *args):
        return (self.parallel if nchunks > 1 else self.serial)(*args)
