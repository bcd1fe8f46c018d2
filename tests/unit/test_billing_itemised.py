"""The itemised list's cells, formatted in integers for speed, read exactly as the
invoice's own formatting of the same amounts and volumes (format_printed, page.human)."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from billing_oss.core.money import format_printed, printed_in
from billing_oss.server.billing.render import itemised
from billing_oss.server.billing.render.page import human

MICROS = st.one_of(st.integers(-10**15, 10**15), st.integers(-10**7, 10**7),
                   st.integers(0, 10**6).map(lambda n: n * 10_000))


@given(MICROS, st.sampled_from(["EUR", "JPY", "BHD", "CLF"]))
def test_amounts_print_as_format_printed(micros: int, currency: str) -> None:
    assert printed_in(currency)(micros) == format_printed(micros, currency)


@given(st.one_of(st.integers(-10**4, 10**16), st.sampled_from(
    [0, 999, 1000, 994_999, 995_000, 999_995, 999_994_999, 10**15, 10**16 - 1])))
def test_volumes_print_as_human(total: int) -> None:
    assert itemised._volume(total) == human(Decimal(total), "byte")
