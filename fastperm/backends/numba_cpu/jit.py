"""The one compilation policy of the Numba CPU backend.

``fastmath`` allows reassociation (so reductions vectorise), contraction into
FMAs, and ignoring the sign of zero; it deliberately leaves out ``nnan`` and
``ninf`` so that the kernels' NaN/inf checks keep working.
"""

FASTMATH = frozenset({"reassoc", "contract", "nsz", "arcp"})

#: options for serial workers and drivers
JIT = dict(cache=True, fastmath=set(FASTMATH), error_model="numpy", nogil=True)
#: options for drivers that run a parallel loop over independent runs
PARALLEL = dict(JIT, parallel=True)
