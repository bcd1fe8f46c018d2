"""Money as text: the named renderings of core.money, byte for byte what each surface printed
before they were gathered there, and no other module rendering money on its own."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing_oss.adapters.formats import decode_bytes
from billing_oss.core.money import (
    INT64_MAX,
    INT64_MIN,
    format_api,
    format_labelled,
    format_micros,
    format_minor,
    format_outcome,
    format_printed,
    format_scaled,
)
from tests.conftest import REPO
from tests.generators.tap3_files import tap3_file

AMOUNTS = st.integers(min_value=INT64_MIN, max_value=INT64_MAX)


@pytest.mark.parametrize(("micros", "exact", "api", "outcome"), [
    (0, "0", "0.000000", "0.00"),
    (150_000, "0.15", "0.150000", "0.15"),
    (3_000_000, "3", "3.000000", "3.00"),
    (-1, "-0.000001", "-0.000001", "-0.000001"),
    (1_234_500, "1.2345", "1.234500", "1.2345"),
    (INT64_MAX, "9223372036854.775807", "9223372036854.775807", "9223372036854.775807"),
])
def test_the_decimal_renderings(micros: int, exact: str, api: str, outcome: str) -> None:
    assert (format_micros(micros), format_api(micros), format_outcome(micros)) == (
        exact, api, outcome)


@pytest.mark.parametrize(("micros", "currency", "minor", "printed"), [
    (1_500_000, "EUR", "1.50", "1.50"),
    (0, "EUR", "0.00", "0.00"),
    (-10_000, "EUR", "-0.01", "-0.01"),
    (1_234_500_000, "EUR", "1234.50", "1,234.50"),
    (150_000_000, "JPY", "150", "150"),
    (1_500_000, "BHD", "1.500", "1.500"),
    (1_234_567, "EUR", "1.234567", "1.234567"),  # finer than cents: never rounded by a rendering
])
def test_the_invoice_renderings(micros: int, currency: str, minor: str, printed: str) -> None:
    assert (format_minor(micros, currency), format_printed(micros, currency)) == (minor, printed)
    assert format_labelled(micros, currency) == f"{printed} {currency}"


# What each surface computed before the renderings were gathered in core.money.
def _old_api(micros: int) -> str:  # server/http/types.py, server/commands/rerate.py
    return f"{Decimal(micros) / Decimal(1_000_000):.6f}"


def _old_outcome(micros: int) -> str:  # server/pipeline/amounts.py
    whole, frac = divmod(abs(micros), 1_000_000)
    return f"{'-' if micros < 0 else ''}{whole}.{f'{frac:06d}'.rstrip('0').ljust(2, '0')}"


def _old_minor(micros: int, digits: int) -> str:  # core/rounding.py
    value = Decimal(micros).scaleb(-6)
    exact = value.quantize(Decimal(1).scaleb(-digits))
    return str(exact) if exact == value else format(value.normalize(), "f")


@given(AMOUNTS)
def test_renderings_are_byte_identical_to_what_they_replace(micros: int) -> None:
    assert format_api(micros) == _old_api(micros)
    assert format_outcome(micros) == _old_outcome(micros)
    for currency, digits in (("EUR", 2), ("JPY", 0), ("BHD", 3)):
        assert format_minor(micros, currency) == _old_minor(micros, digits)
        assert format_printed(micros, currency) == f"{Decimal(_old_minor(micros, digits)):,f}"


@given(AMOUNTS, st.integers(min_value=0, max_value=12))
def test_tap_amounts_keep_every_decimal(raw: int, places: int) -> None:
    assert format_scaled(raw, places) == f"{Decimal(raw).scaleb(-places):.{places}f}"
    if places <= 6:  # what the TAP3 decoder printed, where it printed no exponent
        assert format_scaled(raw, places) == str(Decimal(raw).scaleb(-places))


def test_a_tap3_charge_at_more_than_six_decimals_has_no_exponent() -> None:
    """TAP3 allows TapDecimalPlaces up to 12; the decoder used to print a charge of 0 at 8
    decimals as "0E-8" and 1 as "1E-8", which no decimal-string reader takes."""
    event = {"type": "moc", "imsi": "208010000000001", "msisdn": "33611111111",
             "called": "33622222222", "start": "20260115112030", "utc_code": 1,
             "duration": 60, "charges": [("00", 0)]}
    cheap = {**event, "charges": [("00", 1)]}
    decoded = decode_bytes("tap3", tap3_file([event, cheap], decimal_places=8), source="r",
                           options={"check_audit": "false"})
    assert [r.charge for r in decoded.records] == ["0.00000000", "0.00000001"]


# Money becomes text only in core/money.py. Quantities (minutes, megabytes, a prorated month)
# are rounded for display where they are printed: those lines are named below, one by one.
RENDERING = re.compile(
    r"quantize\(|:\.6f\}|:06d\}|scaleb\(-|divmod\([^)]*(?:MICRO|1_000_000)"
    r"|def (?:format_amount|decimal_string|scaled|_money|money)\([^)]*\) -> str:")
NOT_MONEY = {
    ("server/catalog/validate.py", 'stamp += f".{utc.microsecond:06d}".rstrip("0")'),
    ("server/billing/issuing.py", 'return f"{series}-{number:06d}"'),  # an invoice number
    ("core/rounding.py", "shown = exact.quantize(QUANTITY_STEP, ROUND_HALF_UP)"),
    ("core/rounding.py",
     "shown = exact.quantize(Decimal(1).scaleb(exact.adjusted() - 3), ROUND_HALF_UP)"),
    ("server/billing/render/page.py",  # minutes and megabytes to two decimals
     'return value.quantize(Decimal("0.01"), ROUND_HALF_UP)'),
    ("server/simulation/report.py",  # a percentage change, to two decimals
     'return str(change.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN))'),
    ("server/simulation/engine.py",  # an event quantity held in micro-units
     "quantity = quantity.scaleb(-6).normalize()"),
}


def test_no_module_renders_money_on_its_own() -> None:
    found = []
    for folder in ("core", "server", "adapters"):
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if rel == "core/money.py":
                continue
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                if RENDERING.search(line) and (rel, line.strip()) not in NOT_MONEY:
                    found.append(f"{rel}:{number}: {line.strip()}")
    assert found == []
