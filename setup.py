"""Declares the Cython extensions; everything else lives in pyproject.toml.

Every ``native/**/*.pyx`` becomes an extension named after its path under the
``billing_oss`` import root (``billing_oss.native.rating``). Set
``BILLING_OSS_NATIVE_DEBUG=1`` for a debug build (bounds and wraparound checks on,
line tracing, -O0 -g) used when hunting memory bugs and by the fuzz tests.
"""

import os
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("BILLING_OSS_NATIVE_DEBUG") == "1"


def _extensions() -> list[Extension]:
    macros: list[tuple[str, str | None]] = []
    if DEBUG:
        macros.append(("CYTHON_TRACE_NOGIL", "1"))
    args = ["-O0", "-g"] if DEBUG else ["-O3"]
    return [
        Extension(
            ".".join(pyx.with_suffix("").parts),
            [str(pyx)],
            define_macros=macros,
            extra_compile_args=args,
        )
        for pyx in sorted(Path("billing_oss/native").rglob("*.pyx"))
    ]


setup(
    ext_modules=cythonize(
        _extensions(),
        language_level=3,
        compiler_directives={
            "boundscheck": DEBUG,
            "wraparound": DEBUG,
            "cdivision": True,
            "initializedcheck": DEBUG,
            "linetrace": DEBUG,
            "embedsignature": True,
        },
    ),
)
