"""Micro-units (integer, 1 unit = 1 000 000) as the decimal strings JSON and humans see."""

from __future__ import annotations

MICROS = 1_000_000


def decimal_string(micros: int) -> str:
    """``1234500`` → ``"1.2345"``; exact, no float, trailing zeros trimmed to at least 2."""
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), MICROS)
    digits = f"{frac:06d}".rstrip("0").ljust(2, "0")
    return f"{sign}{whole}.{digits}"
