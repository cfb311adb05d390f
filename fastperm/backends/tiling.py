"""How the compiled bracket kernels cut the (B, B, P) output into tasks (shared by backends).

A task is a pair of example blocks (I, J), I ≤ J; it owns the output tiles
``out[I, J]`` and ``out[J, I]``, so tasks never write the same element. Blocks are
sized so that the two tiles of a task stay in about one core's L2 cache while the
task combines them.
"""

from .. import knobs


def block_pairs(P, B):
    """``(block, nb, ntasks)`` for B examples of P parameters.

    ``block`` examples per block, so that two (block × block × P) float64 tiles fit in
    :data:`fastperm.knobs.TILE_BYTES`; ``nb`` blocks; ``ntasks = nb (nb + 1) / 2`` block pairs
    (I ≤ J).
    """
    block = max(1, min(B, int((knobs.TILE_BYTES / (16.0 * P)) ** 0.5)))
    nb = (B + block - 1) // block
    return block, nb, nb * (nb + 1) // 2
