"""The binary COPY encoder against its pure-Python twin, on generated rows and bad values."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing_oss.native.pgcopy import encode
from billing_oss.server.store.copy_payload import encode_reference

_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "t": st.text(),
    "j": st.text(),
    "q": st.integers(-(1 << 63), (1 << 63) - 1),
    "i": st.integers(-(1 << 31), (1 << 31) - 1),
    "h": st.integers(-(1 << 15), (1 << 15) - 1),
    "T": st.datetimes(timezones=st.sampled_from(
        [dt.UTC, dt.timezone(dt.timedelta(hours=5, minutes=30)),
         dt.timezone(dt.timedelta(hours=-11))])),
    "b": st.binary(),
    "?": st.booleans(),
}


@st.composite
def tables(draw: st.DrawFn) -> tuple[list[tuple[Any, ...]], str]:
    kinds = draw(st.text(alphabet="tjqihTb?", min_size=1, max_size=12))
    row = st.tuples(*(st.one_of(st.none(), _VALUES[k]) for k in kinds))
    return draw(st.lists(row, max_size=20)), kinds


# Up to 12 columns x 20 rows of text and binary: drawing them is slow on a busy machine. That
# says nothing about the encoders, so neither the health check nor a deadline may fail it,
# whatever profile is loaded (this test was seen failing a first run under load).
BUSY_MACHINE = settings(max_examples=400, deadline=None,
                        suppress_health_check=[HealthCheck.too_slow])


@BUSY_MACHINE
@given(tables())
def test_native_equals_reference(table: tuple[list[tuple[Any, ...]], str]) -> None:
    rows, kinds = table
    assert encode(rows, kinds) == encode_reference(rows, kinds)


def test_the_differential_test_tolerates_a_busy_machine() -> None:
    declared = test_native_equals_reference._hypothesis_internal_use_settings  # type: ignore[attr-defined]
    assert HealthCheck.too_slow in declared.suppress_health_check
    assert declared.deadline is None


@pytest.mark.parametrize(("kinds", "row", "error", "message"), [
    ("q", ("1",), TypeError, "row 0 column 0: expected int, got str"),
    ("i", (1 << 31,), OverflowError, "row 0 column 0: 2147483648 out of range"),
    ("h", (-(1 << 15) - 1,), OverflowError, "out of range"),
    ("q", (1 << 63,), OverflowError, "out of range"),
    ("tq", ("a", True), TypeError, "row 0 column 1: expected int, got bool"),
    ("T", (dt.datetime(2026, 1, 1),), TypeError, "naive datetime"),
    ("T", ("2026-01-01",), TypeError, "expected datetime"),
    ("b", ("x",), TypeError, "expected bytes"),
    ("?", (1,), TypeError, "expected bool"),
    ("t", (b"x",), TypeError, "expected str"),
    ("tt", ("a",), ValueError, "row 0: 1 values for 2 columns"),
    ("x", ("a",), ValueError, "column 0: unknown kind 'x'"),
])
def test_bad_values_name_row_and_column(kinds: str, row: tuple[Any, ...],
                                        error: type[Exception], message: str) -> None:
    rows = [tuple(None for _ in kinds), row]
    for encoder in (encode, encode_reference):
        with pytest.raises(error) as raised:
            encoder(rows if len(row) == len(kinds) else [row], kinds)
        assert message.replace("row 0", "row 1" if len(row) == len(kinds) else "row 0") in str(
            raised.value)
