"""The one compilation policy of the compiled (Numba) kernels, and their decorators.

Without numba installed, ``njit`` is a no-op and ``prange`` is ``range``, so that
:mod:`fastperm.models` (whose kernels are decorated at import) and everything that
imports it still import; fastperm then runs on its other backends.

``fastmath`` allows reassociation (so reductions vectorise), contraction into
FMAs and approximate reciprocals. It leaves out ``nnan`` and ``ninf`` so the
kernels' NaN/inf checks keep working, and also ``nsz``: with numba 0.68 /
llvmlite 0.50, ``reassoc`` together with ``nsz`` let LLVM delete the
``isfinite`` test on the k = ∞ loss, so an overflowing run was not reported
(``tests/test_train.py::test_divergence_reported`` catches it).
"""

import types

try:
    from numba import njit, prange

    HAVE_NUMBA = True
except ImportError:  # fastperm works without numba, on its other backends
    HAVE_NUMBA = False
    prange = range

    def njit(*args, **kwargs):
        """No-op stand-in for ``numba.njit`` (numba is not installed)."""
        if len(args) == 1 and callable(args[0]) and not kwargs:
            return args[0]
        return lambda f: f

FASTMATH = frozenset({"reassoc", "contract", "arcp"})

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
    code = fn.__code__.replace(co_name=fn.__name__ + suffix,
                               co_qualname=fn.__qualname__ + suffix)
    scope = {**fn.__globals__, **names} if names else fn.__globals__
    copy = types.FunctionType(code, scope, fn.__name__ + suffix, fn.__defaults__,
                              fn.__closure__)
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
