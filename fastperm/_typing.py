"""Type aliases shared by the annotations of the public modules (static typing only).

Nothing here is checked at run time: the front ends validate their arguments themselves
(``fastperm._checks``), so a parameter annotated ``int`` also accepts a NumPy integer, and
one annotated ``float`` an integer or a NumPy float, exactly as before.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import numpy.typing as npt

#: float64 arrays: everything the front ends validate, compute and return
FloatArray = npt.NDArray[np.float64]
#: int64 arrays: indices, recorded steps, statuses, layouts
IntArray = npt.NDArray[np.int64]
#: uint64 arrays: per-run seeds, as the kernels take them
UIntArray = npt.NDArray[np.uint64]
#: bool arrays
BoolArray = npt.NDArray[np.bool_]
#: real or complex arrays: the models' NumPy maths also take complex θ (complex-step
#: derivatives), and return complex values then
InexactArray = npt.NDArray[np.inexact[Any]]

#: ``(kind, fparams, gidx, gptr)``: how every backend draws an augmentation's copies
SamplerSpec = tuple[int, FloatArray, IntArray, IntArray]

#: the choices of ``sampling=``
Sampling = Literal["fixed", "fresh"]
#: the augmentations the core engine knows by name
EngineAugmentation = Literal["permutation", "resample"]
#: the schemes of :mod:`fastperm.schemes`
Scheme = Literal["vanilla", "da", "fa", "ea"]
