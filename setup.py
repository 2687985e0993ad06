"""Build the Cython extensions under src/fastexec/_core.

Every ``.pyx`` in ``_core`` becomes one extension module. The core is compiled
with directives that drop Python-level safety nets the core does not need
(bounds checks, wraparound) — the core does its own range checks and raises
with clear messages instead.
"""
import glob
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

CORE_DIR = os.path.join("src", "fastexec", "_core")


def _extensions():
    exts = []
    for pyx in sorted(glob.glob(os.path.join(CORE_DIR, "*.pyx"))):
        mod = os.path.splitext(os.path.basename(pyx))[0]
        exts.append(
            Extension(
                f"fastexec._core.{mod}",
                [pyx],
                extra_compile_args=["-O3"],
            )
        )
    return exts


setup(
    ext_modules=cythonize(
        _extensions(),
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "initializedcheck": False,
            "cdivision": True,
            "embedsignature": True,
        },
        annotate=False,
    ),
)
