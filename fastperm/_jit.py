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
