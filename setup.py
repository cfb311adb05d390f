"""Build script: the pure-Python package, plus the Cython fallback kernels.

Metadata lives in pyproject.toml. The Cython backend
(``fastperm/backends/_cython/*.pyx``) is compiled when Cython is importable (it is
a build requirement, so ``pip install .`` has it). Each extension is tried with
OpenMP first, then without; when it cannot be compiled at all (no C compiler)
the install still succeeds and fastperm runs on its other backends
(``fastperm info`` lists what is there).

Compiler flags — the C side of fastperm's one fastmath policy (``fastperm/_jit.py``):
``-O3 -fno-math-errno -fassociative-math -fno-signed-zeros -fno-trapping-math
-ffp-contract=fast -freciprocal-math``, i.e. reassociation (so reductions
vectorise), contraction into FMAs and reciprocals; and ``-funroll-loops
-fvariable-expansion-in-unroller`` so that a reduction keeps several partial sums,
as LLVM does for Numba (k = 16 fixed copies: 1,250 → 1,095 ns/step here, measured); and
``-falign-functions=64 -falign-loops=64``, so that an unrelated edit that moves the hot
loops does not change their speed (k = 16 fresh: 11.6 ms, then 13.9–15.2 ms after an edit
that left the generated C of its kernel identical, 11.1–11.5 ms aligned). GCC's reassociation needs
no-signed-zeros and no-trapping-math to take effect; finite-math-only is never
set, so the kernels' ``isfinite`` checks stay (the divergence tests run on this
backend too). ``-march=native`` is added by default, as Numba compiles for the
host CPU; set ``FASTPERM_PORTABLE=1`` to leave it out (for wheels built on one
machine and installed on another).

Bounds checks: the kernels index without them (``boundscheck=False``, ``wraparound=False``,
set here for every ``.pyx``). ``FASTPERM_BOUNDSCHECK=1`` builds them with bounds checks on
(memoryview indexing; raw-pointer loops are not covered), as CI does for one run of the
suite: an out-of-range index then raises instead of corrupting memory.
"""

import glob
import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

FASTMATH = [
    "-O3",
    "-fno-math-errno",
    "-fassociative-math",
    "-fno-signed-zeros",
    "-fno-trapping-math",
    "-ffp-contract=fast",
    "-freciprocal-math",
    "-funroll-loops",
    "-fvariable-expansion-in-unroller",
    "-falign-functions=64",
    "-falign-loops=64",
]
OPENMP = ["-fopenmp"]


class OptionalBuildExt(build_ext):
    """Build each extension with OpenMP, else without; never fail the install over one."""

    def build_extensions(self):
        self.unix = self.compiler.compiler_type == "unix"
        super().build_extensions()

    def run(self):
        try:
            super().run()
        except Exception as exc:  # compiler missing or broken
            print(
                f"fastperm: compiled fallback not built ({exc}); other backends still work",
                file=sys.stderr,
            )

    def build_extension(self, ext):
        base_compile = list(ext.extra_compile_args)
        base_link = list(ext.extra_link_args)
        attempts = []
        if self.unix:
            native = [] if os.environ.get("FASTPERM_PORTABLE") else ["-march=native"]
            attempts = [
                (FASTMATH + native + OPENMP, OPENMP),
                (FASTMATH + native, []),
                (FASTMATH, []),
            ]
        attempts.append(([], []))
        for cflags, lflags in attempts:
            ext.extra_compile_args = base_compile + cflags
            ext.extra_link_args = base_link + lflags
            try:
                super().build_extension(ext)
                print(
                    f"fastperm: built {ext.name} with {' '.join(cflags) or 'default flags'}",
                    file=sys.stderr,
                )
                return
            except Exception as exc:
                print(
                    f"fastperm: {ext.name} with {' '.join(cflags) or 'default flags'} "
                    f"failed ({exc})",
                    file=sys.stderr,
                )
        print(
            f"fastperm: extension {ext.name} not built; other backends still work", file=sys.stderr
        )


def cython_extensions():
    here = os.path.join("fastperm", "backends", "_cython")
    sources = sorted(glob.glob(os.path.join(here, "*.pyx")))
    if not sources:
        return []
    try:
        from Cython.Build import cythonize
        from setuptools import Extension
    except ImportError as exc:
        print(f"fastperm: Cython fallback not built ({exc})", file=sys.stderr)
        return []
    exts = [Extension(src[:-4].replace(os.sep, "."), [src], include_dirs=[here]) for src in sources]
    checked = os.environ.get("FASTPERM_BOUNDSCHECK", "") not in ("", "0")
    directives = {"boundscheck": checked, "wraparound": False}
    # the generated C goes to a build folder, never next to the sources
    c_dir = os.environ.get("FASTPERM_CYTHON_BUILD_DIR", os.path.join("build", "cython"))
    try:
        return cythonize(
            exts,
            language_level=3,
            quiet=True,
            compiler_directives=directives,
            force=True,  # the directives may differ from the last build
            build_dir=c_dir,
        )
    except Exception as exc:  # a Cython error must not break the pure-Python install
        print(f"fastperm: Cython fallback not generated ({exc})", file=sys.stderr)
        return []


setup(ext_modules=cython_extensions(), cmdclass={"build_ext": OptionalBuildExt})
