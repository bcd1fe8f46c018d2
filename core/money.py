"""Money at the edges: decimal strings and ``Decimal`` in, signed int64 micro-units inside.

1 unit of currency = 1 000 000 micro-units. Every conversion here is exact or says which
rounding it applies; no float is ever accepted.

API (used by rating, pipeline, billing, HTTP):

- ``parse_micros(text)`` -> int: an exact decimal string with at most 6 decimals
  (``"0.15"``, ``"-3"``, ``"12.345678"``); raises ``ValueError`` otherwise.
- ``parse_decimal(text)`` -> ``Fraction``: any plain decimal string, exact (catalog prices
  may carry more than 6 decimals; they are never rounded before rating).
- ``format_micros(micros)`` -> str: the shortest exact decimal string (``150000`` ->
  ``"0.15"``, ``0`` -> ``"0"``, ``-1`` -> ``"-0.000001"``). Never an exponent.
- ``micros_to_decimal(micros)`` / ``decimal_to_micros(value)``: ``Decimal`` at the edges;
  the latter refuses more than 6 decimals.
- ``fraction_to_micros(value)``: an exact rational amount of currency -> micro-units, half-up
  (away from zero on a tie) at the sixth decimal — the one rounding DESIGN.md §5 names for
  storing an amount.
- ``fits_int64(micros)``: whether an amount fits the signed 64-bit column.
"""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction

MICROS_PER_UNIT = 1_000_000
DECIMALS = 6
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

_DECIMAL_RE = re.compile(r"^([+-]?)(\d+)(?:\.(\d+))?$")


def parse_decimal(text: str) -> Fraction:
    """An exact plain decimal string (no exponent, no spaces) as a ``Fraction``."""
    match = _DECIMAL_RE.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"not a decimal string: {text!r}")
    sign, whole, frac = match.groups()
    frac = frac or ""
    value = Fraction(int(whole + frac), 10 ** len(frac))
    return -value if sign == "-" else value


def decimal_places(text: str) -> int:
    """How many digits follow the decimal point in a decimal string already validated."""
    _, _, frac = text.partition(".")
    return len(frac)


def parse_micros(text: str) -> int:
    """An exact decimal string with at most 6 decimals, in micro-units."""
    value = parse_decimal(text)
    micros = value * MICROS_PER_UNIT
    if micros.denominator != 1:
        raise ValueError(f"{text!r} has more than {DECIMALS} decimals")
    return int(micros)


def format_micros(micros: int) -> str:
    """Micro-units as the shortest exact decimal string."""
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), MICROS_PER_UNIT)
    if frac == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:06d}".rstrip("0")


def micros_to_decimal(micros: int) -> Decimal:
    return Decimal(micros).scaleb(-DECIMALS)


def decimal_to_micros(value: Decimal) -> int:
    """A ``Decimal`` with at most 6 decimals, in micro-units; anything else is refused."""
    if not value.is_finite():
        raise ValueError(f"not a finite amount: {value}")
    scaled = value.scaleb(DECIMALS)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{value} has more than {DECIMALS} decimals")
    return int(scaled)


def fraction_to_micros(value: Fraction) -> int:
    """An exact amount of currency in micro-units, half-up (ties away from zero)."""
    scaled = value * MICROS_PER_UNIT
    magnitude = abs(scaled)
    q, r = divmod(magnitude.numerator, magnitude.denominator)
    if 2 * r >= magnitude.denominator:
        q += 1
    return -q if scaled < 0 else q


def fits_int64(micros: int) -> bool:
    return INT64_MIN <= micros <= INT64_MAX
