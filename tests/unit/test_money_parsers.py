"""The named money parsers of ``core/money.py`` take exactly what the parsers they replaced
took, and refuse the rest with the same message.

Each ``_old_*`` below is the replaced function as it was, kept here only to compare with:
``server/billing/rounding.from_decimal``, the amount of ``server/collections/camt._amount``,
``server/catalog/validate._money`` and ``server/catalog/billing._micros``.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing_oss.core.errors import CatalogError
from billing_oss.core.money import (
    INT64_MAX,
    MICROS_PER_UNIT,
    MoneyError,
    micros_of_decimal,
    parse_decimal,
    parse_micros,
    parse_micros_int64,
    parse_unsigned_micros,
)
from billing_oss.server.catalog import billing as catalog_billing
from billing_oss.server.catalog import validate as catalog_validate

MAX_DENOMINATOR = 2**62  # server/catalog/validate.py


def _old_from_decimal(value: Decimal | str) -> int:
    try:
        amount = Decimal(value)
    except ArithmeticError:
        raise MoneyError(f"not a decimal amount: {value!r}") from None
    if not amount.is_finite():
        raise MoneyError(f"not a finite amount: {value!r}")
    micros = amount.scaleb(6)
    if micros != micros.to_integral_value():
        raise MoneyError(f"{value} has more than 6 decimals")
    result = int(micros)
    if not -(2**63) <= result < 2**63:
        raise MoneyError(f"{value} does not fit in 64-bit micro-units")
    return result


def _old_camt_amount(text: str) -> int:
    whole, _, frac = text.partition(".")
    if whole.isdigit() and len(frac) <= 6 and (frac.isdigit() or not frac) and whole.isascii():
        return int(whole) * 1_000_000 + int(frac.ljust(6, "0") or 0)
    raise ValueError(f"amount: not a decimal amount: {text!r}")


def _old_money(text: str, path: str, *, fee: bool) -> Fraction:
    try:
        value = parse_decimal(text)
    except ValueError:
        raise CatalogError(path, f"not a decimal string: {text!r}") from None
    if value < 0:
        raise CatalogError(path, f"must not be negative: {text}")
    if value * MICROS_PER_UNIT > INT64_MAX:
        raise CatalogError(path, f"{text} does not fit in int64 micro-units")
    if fee and (value * MICROS_PER_UNIT).denominator > MAX_DENOMINATOR:
        raise CatalogError(path, f"{text} has too many decimals")
    return value


def _old_catalog_micros(text: str, path: str) -> int:
    try:
        micros = parse_micros(text)
    except ValueError as exc:
        raise CatalogError(path, str(exc)) from None
    if abs(micros) > INT64_MAX:
        raise CatalogError(path, f"{text} does not fit in int64 micro-units")
    return micros


def _outcome(call: Any, *args: Any, **kwargs: Any) -> tuple[str, Any]:
    try:
        return "value", call(*args, **kwargs)
    except (ValueError, MoneyError, CatalogError) as exc:
        return type(exc).__name__, str(exc)


# Decimal-looking texts (signs, points, long fractions, huge magnitudes, exponents, other
# scripts' digits) beside arbitrary text: where the parsers differ is at these edges.
_DIGITS = st.text(alphabet="0123456789", min_size=0, max_size=25)
_DECIMALISH = st.builds(
    lambda sign, whole, point, frac, tail: f"{sign}{whole}{point}{frac}{tail}",
    st.sampled_from(["", "-", "+", " "]), _DIGITS, st.sampled_from(["", ".", ","]),
    _DIGITS | st.text(alphabet="0123456789٠١٢٣٤٥٦٧٨٩", max_size=8),
    st.sampled_from(["", "e3", "E-2", " ", "x"]))
TEXTS = _DECIMALISH | st.text(max_size=30) | st.sampled_from(
    ["9223372036854.775807", "9223372036854.775808", "-9223372036854.775808", "NaN", "Infinity",
     "1.", ".5", "١٢", "12.٣", "0.0000001", "00012.500000"])
FAST = settings(max_examples=600, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@FAST
@given(TEXTS | st.decimals(allow_nan=True, allow_infinity=True).map(str))
def test_micros_of_decimal_is_from_decimal_for_text(text: str) -> None:
    assert _outcome(micros_of_decimal, text) == _outcome(_old_from_decimal, text)


@FAST
@given(st.decimals(allow_nan=True, allow_infinity=True) | st.integers(-(2**70), 2**70).map(
    lambda n: Decimal(n).scaleb(-6)))
def test_micros_of_decimal_is_from_decimal_for_decimals(value: Decimal) -> None:
    assert _outcome(micros_of_decimal, value) == _outcome(_old_from_decimal, value)


@FAST
@given(TEXTS)
def test_the_bank_statement_amount_is_the_camt_parser(text: str) -> None:
    new = _outcome(parse_unsigned_micros, text)
    old = _outcome(_old_camt_amount, text)
    assert new[0] == old[0]
    if new[0] == "value":
        assert new == old
    else:  # camt prefixes the field: "Amt: not a decimal amount: ..."
        assert old[1] == "amount: " + new[1]


@FAST
@given(TEXTS, st.booleans())
def test_the_catalog_price_is_the_old_money_parser(text: str, fee: bool) -> None:
    assert _outcome(catalog_validate._money, text, "$.x", fee=fee) == _outcome(
        _old_money, text, "$.x", fee=fee)


@FAST
@given(TEXTS)
def test_the_catalog_amount_is_the_old_micros_parser(text: str) -> None:
    assert _outcome(catalog_billing._micros, text, "$.x") == _outcome(
        _old_catalog_micros, text, "$.x")
    assert _outcome(parse_micros_int64, text)[0] in ("value", "ValueError")

