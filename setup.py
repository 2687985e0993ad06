"""Build the Cython extensions: src/fastexec/_core (the engine's fixed-point
core), any hot kernel of the simulated venue (src/fastexec/sim/*.pyx), the
engine's per-order path and wire form (src/fastexec/engine/*.pyx), and the
per-record/per-request hot parts of the journal and the REST layer
(src/fastexec/journal/*.pyx, src/fastexec/api/*.pyx) when they have one.

Every ``.pyx`` there becomes one extension module. The core is compiled
with directives that drop Python-level safety nets the core does not need
(bounds checks, wraparound) — the core does its own range checks and raises
with clear messages instead.
"""
import glob
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

PACKAGES = ("_core", "sim", "engine", "journal", "api")


def _extensions():
    exts = []
    for package in PACKAGES:
        for pyx in sorted(glob.glob(os.path.join("src", "fastexec", package, "*.pyx"))):
            exts.append(_extension(package, pyx))
    return exts


def _extension(package, pyx):
    mod = os.path.splitext(os.path.basename(pyx))[0]
    return Extension(f"fastexec.{package}.{mod}", [pyx], extra_compile_args=["-O3"])


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
