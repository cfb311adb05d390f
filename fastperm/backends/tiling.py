"""How the compiled bracket kernels cut the (B, B, P) output into tasks (shared by backends).

A task is a pair of example blocks (I, J), I ≤ J; it owns the output tiles
``out[I, J]`` and ``out[J, I]``, so tasks never write the same element. Blocks are
sized so that the two tiles of a task stay in about one core's L2 cache while the
task combines them.
"""

#: bytes of output tiles a task should keep in cache (about a core's L2)
TILE_BYTES = 768 * 1024


def tile_block(P, B):
    """Examples per block: two (block × block × P) float64 tiles fit in ``TILE_BYTES``."""
    block = int((TILE_BYTES / (16.0 * P)) ** 0.5)
    return max(1, min(B, block))


def block_pair_count(nb):
    """Number of block pairs (I ≤ J) of ``nb`` blocks: the tasks of an all-pairs batch."""
    return nb * (nb + 1) // 2
