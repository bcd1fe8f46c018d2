"""Money conversions: exact both ways, refusing what cannot be exact."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing_oss.core.money import (
    INT64_MAX,
    decimal_to_micros,
    fits_int64,
    format_micros,
    fraction_to_micros,
    micros_to_decimal,
    parse_decimal,
    parse_micros,
)


@pytest.mark.parametrize(
    ("text", "micros"),
    [
        ("0", 0),
        ("0.15", 150_000),
        ("-3", -3_000_000),
        ("12.345678", 12_345_678),
        ("+1.000000", 1_000_000),
        ("9223372036854.775807", INT64_MAX),
    ],
)
def test_parse_micros(text: str, micros: int) -> None:
    assert parse_micros(text) == micros


@pytest.mark.parametrize("text", ["0.0000001", "1e3", "1.", ".5", " 1", "NaN", "1,5", ""])
def test_parse_micros_refuses_inexact_or_odd_text(text: str) -> None:
    with pytest.raises(ValueError):
        parse_micros(text)


def test_format_micros_is_shortest_exact() -> None:
    assert format_micros(150_000) == "0.15"
    assert format_micros(0) == "0"
    assert format_micros(-1) == "-0.000001"
    assert format_micros(12_000_000) == "12"


@given(st.integers(-(2**63), 2**63 - 1))
def test_round_trips(micros: int) -> None:
    assert parse_micros(format_micros(micros)) == micros
    assert decimal_to_micros(micros_to_decimal(micros)) == micros
    assert parse_decimal(format_micros(micros)) == Fraction(micros, 1_000_000)


def test_decimal_to_micros_refuses_more_than_six_decimals() -> None:
    with pytest.raises(ValueError):
        decimal_to_micros(Decimal("0.0000001"))
    with pytest.raises(ValueError):
        decimal_to_micros(Decimal("NaN"))
    assert decimal_to_micros(Decimal("1.50")) == 1_500_000


def test_fraction_to_micros_is_half_up_away_from_zero() -> None:
    assert fraction_to_micros(Fraction(1, 2_000_000)) == 1
    assert fraction_to_micros(Fraction(-1, 2_000_000)) == -1
    assert fraction_to_micros(Fraction(1, 3_000_000)) == 0
    assert fraction_to_micros(Fraction(2, 3_000_000)) == 1
    assert fits_int64(INT64_MAX) and not fits_int64(INT64_MAX + 1)
