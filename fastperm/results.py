"""Result objects of the training front ends."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ._typing import FloatArray, IntArray, UIntArray

if TYPE_CHECKING:
    from .augment import Augmentation


@dataclass
class TrainResult:
    """Losses and final parameters of one run (``train``) or many (``train_many``).

    Attributes
    ----------
    steps : (records,) int array
        Steps at which the loss was recorded (0, record_every, ..., and the last step).
    loss : (records,) or (runs, records) float array
        ``mean((w − w*)²)`` after those steps; NaN after a divergence.
    w : (d,) or (runs, d) float array
        Final parameters; NaN for a run that diverged (its last values depend on which
        operation overflowed first, which differs between backends).
    diverged_step : int or None, or (runs,) int array
        First step with a non-finite residual, parameter or loss (-1 in the array
        form where a run stayed finite; None for a single finite run).
    seconds : float
        Wall time of the compiled call(s), validation and allocation excluded.
    k, lr, seed, sampling, augmentation, backend : the settings of the run(s).
    """

    steps: IntArray
    loss: FloatArray
    w: FloatArray
    diverged_step: int | None | IntArray
    seconds: float
    k: float
    lr: float | FloatArray
    seed: int | UIntArray
    sampling: str
    augmentation: str | Augmentation
    backend: str
    meta: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def runs(self) -> int:
        return 1 if self.loss.ndim == 1 else self.loss.shape[0]

    @property
    def ns_per_step(self) -> float:
        """Wall time per training step (all runs counted), in nanoseconds."""
        total = max(int(self.steps[-1]), 1) * self.runs
        return self.seconds * 1e9 / total

    def __repr__(self) -> str:
        k = "inf" if math.isinf(self.k) else self.k
        final = self.loss[..., -1]
        last = f"{float(final):.6g}" if np.ndim(final) == 0 else f"mean {np.nanmean(final):.6g}"
        return (
            f"TrainResult(k={k}, runs={self.runs}, steps={int(self.steps[-1])}, "
            f"final loss {last}, {self.ns_per_step:.1f} ns/step, backend={self.backend!r})"
        )
