"""Integer codes shared by the front ends and the kernels, defined once.

A leaf module at the bottom of the import order, with :mod:`fastperm.rng` (which holds the
augmentation kind codes, ``KIND_*``, beside the specification of their draws): the compiled
kernels import these as compile-time constants, the front ends translate their arguments
into them, and :mod:`fastperm.backends.contract` documents them.
"""

#: the value of a kernel's ``k`` that means k = ∞, the exact expected gradient
K_EXPECTED = 0

#: the schemes of :mod:`fastperm.schemes`, as ``scheme_runs`` takes them (DA with
#: ``k = K_EXPECTED`` is DA with the exact group average)
VANILLA, DA, FA, EA = range(4)
SCHEMES = {"vanilla": VANILLA, "da": DA, "fa": FA, "ea": EA}
