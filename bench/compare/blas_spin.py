"""OpenBLAS threads spinning after a NumPy matmul slow the next parallel Numba kernel.

Times one all-pairs bracket batch (MLP 64-256-10, B = 32) when the machine is quiet,
right after a 256×256 matmul, and half a second later. This is why fastperm's wrappers
compute nothing with BLAS right before a parallel kernel; in your own code,
``OPENBLAS_NUM_THREADS=1`` (or threadpoolctl) removes the effect.

    python bench/compare/blas_spin.py
"""

import time

import numpy as np

from fastperm import lie, models


def main():
    rs = np.random.default_rng(0)
    m = models.MLP([64, 256, 10])
    X, Y = rs.random((32, 64)), np.eye(10)[rs.integers(0, 10, 32)]
    theta = m.init(0)
    out = np.empty((32, 32, m.P))
    lie.brackets(m, theta, X, Y, out=out)

    def once():
        t0 = time.perf_counter()
        lie.brackets(m, theta, X, Y, out=out)
        return (time.perf_counter() - t0) * 1e3

    A = rs.random((256, 256))
    print("quiet:               " + "  ".join(f"{once():.1f} ms" for _ in range(3)))
    after = []
    for _ in range(3):
        A @ A
        after.append(once())
    print("right after A @ A:   " + "  ".join(f"{t:.1f} ms" for t in after))
    time.sleep(0.5)
    print(f"0.5 s later:         {once():.1f} ms")


if __name__ == "__main__":
    main()
