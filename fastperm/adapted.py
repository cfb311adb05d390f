"""What :mod:`fastperm.lie` runs on a model from another framework (a
:class:`~fastperm.torch_model.TorchModel` or a :class:`~fastperm.jax_model.JaxModel`) once
its ``Bracketer`` has turned a chunk of pairs into a NumPy array: the framework-free parts
both share. Each framework's module keeps what runs in its own arrays (gradients,
Hessian-vector products, the reductions on its device)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ._typing import FloatArray, IntArray


def chunks(model: Any, pairs: IntArray) -> Iterator[slice]:
    """Slices of ``model.chunk_pairs()`` pairs (the last may be shorter)."""
    step = model.chunk_pairs()
    for start in range(0, pairs.shape[0], step):
        yield slice(start, min(pairs.shape[0], start + step))


def brackets(
    model: Any,
    run: Callable[[IntArray], FloatArray],
    B: int,
    method: str,
    coarse: Callable[[], Callable[[IntArray], FloatArray]],
    pairs: IntArray | None,
    order: int,
    return_error: bool,
    out: FloatArray | None,
) -> FloatArray | tuple[FloatArray, FloatArray]:
    """:func:`fastperm.lie.brackets` from ``run(pairs)`` (a chunk's brackets, a NumPy array in
    the model's dtype) for B examples: the (B, B, P) array for ``pairs=None`` (filled
    antisymmetrically), else (npairs, P); with ``return_error``, ``coarse()`` makes the
    finite-difference run at twice the step."""
    from .lie import _upper_pairs, row_norms

    listed = _upper_pairs(B) if pairs is None else pairs
    shape = (B, B, model.P) if pairs is None else (listed.shape[0], model.P)
    if out is None:
        out = np.empty(shape, dtype=model.dtype)
    elif out.shape != shape or out.dtype != model.dtype or not out.flags.writeable:
        raise ValueError(
            f"out must be a writeable {model.dtype} array of shape {shape}, got "
            f"{out.dtype} {out.shape}"
        )
    if return_error and method != "fd":
        raise ValueError(
            f"return_error estimates finite-difference error; method {method!r} is exact "
            "(no truncation error): use method='fd' to compare"
        )
    twice = coarse() if return_error else None
    err = np.empty(listed.shape[0])
    for sl in chunks(model, listed):
        values = run(listed[sl])
        if pairs is None:
            i, j = listed[sl, 0], listed[sl, 1]
            out[i, j], out[j, i] = values, -values
        else:
            out[sl] = values
        if twice is not None:
            diff = values.astype(np.float64) - twice(listed[sl]).astype(np.float64)
            err[sl] = row_norms(diff) / (2**order - 1)
    if pairs is None:
        out[np.arange(B), np.arange(B)] = 0.0
        if return_error:
            full = np.zeros((B, B))
            full[listed[:, 0], listed[:, 1]] = full[listed[:, 1], listed[:, 0]] = err
            return out, full
    return (out, err) if return_error else out
