"""Money at the invoice edge: micro-units ⇄ Decimal, and the one rounding DESIGN.md names
for invoices — a line amount to the currency's minor unit, with a named method.

Minor units (``core.money.minor_digits``) come from CLDR/ISO 4217 data shipped with babel;
an amount becomes text through ``core.money``'s renderings (``format_minor`` here).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Literal, get_args

from billing_oss.core.money import MoneyError as MoneyError  # billing code's import path
from billing_oss.core.money import minor_digits as minor_digits

MICROS = 1_000_000
Method = Literal["half-up", "half-even", "up", "down"]
METHODS: tuple[str, ...] = get_args(Method)


def minor_step(currency: str) -> int:
    """Micro-units in one minor unit (EUR: 10 000)."""
    step: int = 10 ** (6 - minor_digits(currency))
    return step


def round_fraction(value: Fraction | int, step: int, method: Method) -> int:
    """``value`` (micro-units, exact) rounded to a multiple of ``step`` micro-units."""
    q = Fraction(value) / step
    floor = q.numerator // q.denominator
    rest = q - floor
    if rest == 0:
        return floor * step
    if method == "down":  # toward zero
        n = floor if q > 0 else floor + 1
    elif method == "up":  # away from zero
        n = floor + 1 if q > 0 else floor
    elif rest != Fraction(1, 2):
        n = floor + 1 if rest > Fraction(1, 2) else floor
    elif method == "half-up":  # ties away from zero
        n = floor + 1 if q > 0 else floor
    elif method == "half-even":
        n = floor + (floor % 2)
    else:
        raise MoneyError(f"unknown rounding method {method!r}; one of {', '.join(METHODS)}")
    return n * step


def round_minor(value: Fraction | int, currency: str, method: Method) -> int:
    """Micro-units rounded to the currency's minor unit."""
    return round_fraction(value, minor_step(currency), method)


def plain(value: Decimal) -> str:
    """A decimal without exponent or trailing zeros: 20.0000 → "20", 5.50 → "5.5"."""
    return format(value.normalize(), "f")


QUANTITY_STEP = Decimal("0.0001")


def quantity_text(value: Decimal | int) -> str:
    """A quantity as printed: at most four decimals (a prorated 22/31 month reads 0.7097).

    Display only; amounts never derive from it (the e-invoice states each line's price for a
    basis quantity equal to its billed quantity, so both may carry this same rounded value).
    """
    exact = Decimal(value)
    shown = exact.quantize(QUANTITY_STEP, ROUND_HALF_UP)
    if not shown and exact:  # 0.00003 MB is not "0": four significant digits instead
        shown = exact.quantize(Decimal(1).scaleb(exact.adjusted() - 3), ROUND_HALF_UP)
    return plain(shown)
