"""Build script: the pure-Python package, plus the Cython fallback kernels when present.

Metadata lives in pyproject.toml. The Cython backend (``fastperm/backends/_cython/*.pyx``)
is compiled when its sources exist and Cython is importable; when they do not, or
when compilation fails (no C compiler), the install still succeeds and fastperm
runs on its other backends.
"""

import glob
import os

from setuptools import setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """Build extensions, but never fail the install because one could not be compiled."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # compiler missing or broken
            print(f"fastperm: compiled fallback not built ({exc}); other backends still work")

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            print(f"fastperm: extension {ext.name} not built ({exc})")


def cython_extensions():
    sources = sorted(glob.glob(os.path.join("fastperm", "backends", "_cython", "*.pyx")))
    if not sources:
        return []
    try:
        import numpy
        from Cython.Build import cythonize
        from setuptools import Extension
    except ImportError as exc:
        print(f"fastperm: Cython fallback not built ({exc})")
        return []
    exts = [Extension(src[:-4].replace(os.sep, "."), [src], include_dirs=[numpy.get_include()])
            for src in sources]
    return cythonize(exts, language_level=3)


setup(ext_modules=cython_extensions(), cmdclass={"build_ext": OptionalBuildExt})
