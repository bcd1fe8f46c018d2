"""Declares the Cython extensions; everything else lives in pyproject.toml.

Every ``native/**/*.pyx`` becomes an extension named after its path under the
``billing_oss`` import root (``billing_oss.native.rating``). Set
``BILLING_OSS_NATIVE_DEBUG=1`` for a debug build (bounds and wraparound checks on,
line tracing, -O0 -g) used when hunting memory bugs and by the fuzz tests.
``BILLING_OSS_NATIVE_SANITIZE=1`` builds with AddressSanitizer and UndefinedBehaviorSanitizer
and without ``-fwrapv`` (which CPython's own flags add), so a signed overflow is reported
instead of wrapping; ``./run.sh sanitize`` builds that way into ``build/sanitize`` and runs the
native property and fuzz tests against it.
"""

import os
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("BILLING_OSS_NATIVE_DEBUG") == "1"
SANITIZE = os.environ.get("BILLING_OSS_NATIVE_SANITIZE") == "1"
SANITIZERS = "-fsanitize=address,undefined"


def _extensions() -> list[Extension]:
    macros: list[tuple[str, str | None]] = []
    if DEBUG:
        macros.append(("CYTHON_TRACE_NOGIL", "1"))
    args = ["-O0", "-g"] if DEBUG else ["-O3"]
    link_args: list[str] = []
    if SANITIZE:
        args = ["-O1", "-g", "-fno-omit-frame-pointer", "-fno-wrapv", SANITIZERS,
                "-fno-sanitize-recover=undefined"]
        link_args = [SANITIZERS]
    return [
        Extension(
            ".".join(pyx.with_suffix("").parts),
            [str(pyx)],
            define_macros=macros,
            extra_compile_args=args,
            extra_link_args=link_args,
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
