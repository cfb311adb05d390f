"""Every tunable constant of fastperm, in one place.

None of these changes a result: they decide how a result is computed (memory kept, threads
woken, work per tile). Change them on the module before a call, e.g.
``fastperm.knobs.CACHE_BYTES = 2**30``; functions that take a per-call argument of the same
meaning (``cache_bytes=``, ``threads=``) default to the value here. Also here: the one
check of a thread count, :func:`as_thread_count`, which every backend's ``set_threads``
applies.
"""

from __future__ import annotations

import numbers

#: memory the fixed augmented copies may be kept in, per call (bytes): k-fold training
#: (``train(cache_bytes=...)``) and noise-augmented deep linear networks; above it the copies
#: are drawn again at every step (never changes results)
CACHE_BYTES = 256 * 2**20

#: a call whose estimated work is below this many element operations (about 10 ms of one
#: core) runs on one thread, however many runs it has: a parallel launch costs a scheduler
#: time slice (~8 ms, measured) whenever a thread must wait for a busy core, so a launch
#: pays only for work much larger than that (issue 12; ``bench/loaded.py`` measures it)
PARALLEL_MIN_WORK = 3e7

#: runs per progress-bar update: the runs of a call with ``progress=True`` are launched in
#: about this many chunks (each at least one run per thread)
PROGRESS_CHUNKS = 50

#: element operations (per thread) of one part of a long training call: a call of a family
#: with ``start_step`` (plain and k-fold SGD) runs in parts of about this much work, ~0.1–0.2 s
#: here, so that Ctrl-C stops it within a second and a progress bar moves; splitting never
#: changes the result
INTERRUPT_WORK = 2e9

#: memory the parameters kept at the recorded steps may take, per call (bytes): training
#: that records w, or the training or test loss (computed from the w kept at each record),
#: keeps runs × records × d float64; above it the call is refused before any work (record
#: less often: ``record_every``)
RECORD_BYTES = 2**30

#: shortest part (in epochs, n steps) of a call run in parts when the fixed copies are kept:
#: each part draws every run's copies again (n·(k − 1) draws), so a part of 64 epochs keeps
#: that under a few per cent of its steps (8 epochs cost 1.8× the whole time of 500 k = 16
#: runs of 1000 steps, measured); a call this short is one part
PART_MIN_EPOCHS = 64

#: the dual (Gram) form of plain and fixed k-fold SGD (``train(algorithm=...)``) forms w
#: and recomputes its residuals and loss from it every ``DUAL_RESYNC · d / k`` steps (at
#: least 1): a resynchronisation costs about 2·N·d, a step 2·N·k, so it adds
#: ``1/DUAL_RESYNC`` (6 %) to the steps' work while bounding the rounding the recurrences
#: accumulate (:mod:`fastperm.dual`)
DUAL_RESYNC = 16

#: ... and whenever its loss recurrence has fallen below this fraction of its value at the
#: last resynchronisation: the recurrence's rounding is relative to that value, so a loss
#: going to zero (a realizable problem) is recomputed as it falls and stays accurate
DUAL_DROP = 1e-3

#: ``algorithm="auto"`` takes the dual form only for calls whose primal work (element
#: operations, all runs) is at least this: below it (~1 ms) the saving is lost in the
#: call's fixed costs, and the literal loop is the one a reader expects
DUAL_MIN_WORK = 1e6

#: tasks per worker thread when runs are spread over a Dask cluster (``client=``): a few per
#: thread keep a grid of mixed costs balanced and make a lost worker cheap to redo, while
#: each task stays large enough that scheduling (~1 ms a task) is small beside it
DASK_TASKS_PER_THREAD = 4

#: seconds a kernel compilation (or cache load) may take before fastperm says on stderr that
#: it is compiling (the first call after an install or upgrade compiles for ~20 s)
COMPILE_NOTICE_SECONDS = 1.0

#: Lie brackets on the CPU: bytes of the two (block × block × P) output tiles a bracket task
#: owns (``fastperm.backends.tiling``): about one core's L2 cache, so that they stay in
#: cache while the task combines them
TILE_BYTES = 768 * 1024

#: Lie brackets of a TorchModel: bytes of bracket-sized vectors a chunk of pairs may hold
#: (about 8 vectors of P entries per pair while it is computed), so memory stays
#: O(chunk × P) however many pairs are asked for. Each chunk is one vmapped torch.func
#: call, whose fixed cost is tens of ms: at 64 MiB the 496 pairs of an MLP 64-32-10 took
#: two chunks and 2.4× the time of one
TORCH_CHUNK_BYTES = 256 * 2**20

#: numba.cuda: device memory for the directional derivatives of one chunk of pairs in the
#: fused bracket reductions (``bracket_norms``, ``bracket_logits``): 2 · chunk · P float64s,
#: so the device holds O(chunk × P) however many pairs are asked for
CUDA_PAIR_CHUNK_BYTES = 256 * 2**20

#: numba.cuda: threads per block for the training and bracket kernels; 0 chooses from the
#: problem size (a power of two near width/8 in [32, 256]). ``set_block(n)`` of the cuda
#: backend sets it (and checks n)
CUDA_BLOCK = 0


def as_thread_count(n: object, limit: int | None = None) -> int:
    """``n`` as every backend's ``set_threads`` takes it: an int >= 1 (a bool, a float, a
    string or a NumPy non-integer is a TypeError), at most ``limit`` where the backend has
    one (a ValueError naming it)."""
    if (
        isinstance(n, bool)
        or not isinstance(n, numbers.Integral)
        or getattr(getattr(n, "dtype", None), "kind", "i") not in "iu"
    ):
        raise TypeError(f"threads must be an integer, got {n!r} ({type(n).__name__})")
    n = int(n)
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    if limit is not None and n > limit:
        raise ValueError(f"threads must be <= {limit} on this backend, got {n}")
    return n
