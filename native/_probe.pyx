# cython: language_level=3
"""Smallest possible extension: proves the native toolchain builds and loads."""

from libc.stdint cimport int64_t


cdef extern from *:
    bint __builtin_add_overflow(int64_t a, int64_t b, int64_t *out) nogil


def add_micros(int64_t a, int64_t b) -> int:
    """Add two micro-unit amounts, refusing to wrap around."""
    cdef int64_t out
    if __builtin_add_overflow(a, b, &out):
        raise OverflowError(f"{a} + {b} overflows int64 micro-units")
    return out
