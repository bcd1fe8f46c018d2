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

Renderings — the one place an amount becomes text; each surface uses one of these, and no
other module formats money itself (``tests/unit/test_money_renderings.py`` checks the tree):

- ``format_micros(micros)`` — *exact*, shortest: ``"0.15"``, ``"3"``. Reports, collections
  and settlement results, ``billing-oss rate``, CLI messages, domain events.
- ``format_api(micros)`` — *API*, six decimals: ``"1.230000"``. Every ``Money`` of the admin
  API (``{"amount", "currency"}``), and ``billing-oss rerate``'s per-account lines.
- ``format_outcome(micros)`` — *outcome*, at least two decimals: ``"3.00"``, ``"1.2345"``.
  Ingest outcomes: ``POST /v1/usage`` per-record amounts, ``billing-oss ingest`` and file
  totals, suspense retries.
- ``format_minor(micros, currency)`` — *invoice*, the currency's minor unit: ``"1.50"`` EUR,
  ``"150"`` JPY, ``"1.500"`` BHD (an amount finer than that, which invoices never hold, keeps
  its digits). Invoices, credit notes, statements, the ledger, the e-invoice XML.
- ``format_printed(micros, currency)`` — *printed*, the invoice rendering with thousands
  separators: ``"1,234.50"``. The PDFs' figures.
- ``format_scaled(raw, places)`` — *TAP*, an integer at ``places`` decimals, every digit
  kept and never an exponent: ``(1500, 3)`` -> ``"1.500"``. TAP3 charges (``tapDecimalPlaces``,
  0 to 12) as records and settlement files state them; also the analytics ratios.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction

from babel.numbers import get_currency_precision, is_currency

from billing_oss.core.errors import InvalidValue

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


def parse_micros_int64(text: str) -> int:
    """``parse_micros`` that also refuses an amount beyond int64 micro-units."""
    micros = parse_micros(text)
    if abs(micros) > INT64_MAX:
        raise ValueError(f"{text} does not fit in int64 micro-units")
    return micros


def parse_unsigned_micros(text: str) -> int:
    """An amount as a bank statement writes it: ASCII digits, then optionally a point and at
    most 6 more digits (``12``, ``12.5``, ``12.``); no sign, no exponent, no spaces."""
    whole, _, frac = text.partition(".")
    if whole.isdigit() and len(frac) <= DECIMALS and (frac.isdigit() or not frac) \
            and whole.isascii():
        return int(whole) * MICROS_PER_UNIT + int(frac.ljust(DECIMALS, "0") or 0)
    raise ValueError(f"not a decimal amount: {text!r}")


def parse_price(text: str, *, max_denominator: int | None = None) -> Fraction:
    """A catalog price or fee: a plain decimal string, not negative, within int64 micro-units,
    and (``max_denominator``) a whole number of at most that many parts of a micro-unit."""
    try:
        value = parse_decimal(text)
    except ValueError:
        raise ValueError(f"not a decimal string: {text!r}") from None
    if value < 0:
        raise ValueError(f"must not be negative: {text}")
    if value * MICROS_PER_UNIT > INT64_MAX:
        raise ValueError(f"{text} does not fit in int64 micro-units")
    if max_denominator is not None and (value * MICROS_PER_UNIT).denominator > max_denominator:
        raise ValueError(f"{text} has too many decimals")
    return value


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


class MoneyError(InvalidValue):
    """An amount or a currency that billing cannot represent exactly."""


def micros_of_decimal(value: Decimal | str) -> int:
    """Micro-units of a decimal amount (a ``Decimal`` or its text): finite, at most 6
    decimals, within int64 — anything else is refused (``MoneyError``), never rounded."""
    try:
        amount = Decimal(value)
    except ArithmeticError:
        raise MoneyError(f"not a decimal amount: {value!r}") from None
    if not amount.is_finite():
        raise MoneyError(f"not a finite amount: {value!r}")
    micros = amount.scaleb(DECIMALS)
    if micros != micros.to_integral_value():
        raise MoneyError(f"{value} has more than 6 decimals")
    result = int(micros)
    if not INT64_MIN <= result <= INT64_MAX:
        raise MoneyError(f"{value} does not fit in 64-bit micro-units")
    return result


@functools.cache
def minor_digits(currency: str) -> int:
    """Decimal places of the currency's minor unit (EUR 2, JPY 0, BHD 3), from the CLDR /
    ISO 4217 data shipped with babel, never from a table typed here."""
    if not is_currency(currency):
        raise MoneyError(f"unknown ISO 4217 currency {currency!r}", currency=currency)
    digits = int(get_currency_precision(currency))
    if not 0 <= digits <= DECIMALS:
        raise MoneyError(f"currency {currency} has {digits} decimals; at most 6 are supported")
    return digits


def format_api(micros: int) -> str:
    """Six decimals, always: the admin API's amounts."""
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), MICROS_PER_UNIT)
    return f"{sign}{whole}.{frac:06d}"


def format_outcome(micros: int) -> str:
    """Exact, trailing zeros trimmed to at least two decimals: ingest outcomes."""
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), MICROS_PER_UNIT)
    return f"{sign}{whole}.{f'{frac:06d}'.rstrip('0').ljust(2, '0')}"


def format_minor(micros: int, currency: str) -> str:
    """Exactly the currency's minor digits; an amount finer than its minor unit keeps its
    digits (shortest exact) rather than being rounded by a rendering."""
    digits = minor_digits(currency)
    whole, frac = divmod(abs(micros), MICROS_PER_UNIT)
    if frac % 10 ** (DECIMALS - digits):
        return format_micros(micros)
    sign = "-" if micros < 0 else ""
    shown = f"{frac:06d}"[:digits]
    return f"{sign}{whole}.{shown}" if digits else f"{sign}{whole}"


def format_printed(micros: int, currency: str) -> str:
    """The invoice rendering with thousands separators: ``1,234.50``."""
    return f"{Decimal(format_minor(micros, currency)):,f}"


def printed_in(currency: str) -> Callable[[int], str]:
    """``format_printed`` in ``currency`` done in integers, for a list that renders every
    record's amount (the Decimal round trip was a quarter of an itemised list's time)."""
    digits = minor_digits(currency)
    step = 10 ** (DECIMALS - digits)

    def printed(micros: int) -> str:
        sign = "-" if micros < 0 else ""
        whole, frac = divmod(abs(micros), MICROS_PER_UNIT)
        if frac % step:
            return f"{sign}{whole:,}.{frac:06d}".rstrip("0")
        if digits:
            return f"{sign}{whole:,}.{frac // step:0{digits}d}"
        return f"{sign}{whole:,}"

    return printed


def format_labelled(micros: int, currency: str) -> str:
    """The printed rendering with its currency code, ``1,234.50 EUR``: the console's pages."""
    return f"{format_printed(micros, currency)} {currency}"


def format_scaled(raw: int, places: int) -> str:
    """An integer at ``places`` decimals as a fixed-point string with all ``places`` digits."""
    value = Decimal(raw).scaleb(-places)
    text = str(value)  # the fast path; it turns to an exponent below 1E-6 ("0E-8")
    return text if "E" not in text else format(value, "f")
