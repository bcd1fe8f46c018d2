"""The native rollup of carried records (``native.columnar.rollup``) against its pure-Python
twin (``server.pipeline.columnar._rollup``), on generated columns: the same delta rows for
the daily, monthly and hourly levels, names that repeat across versions and tariffs grouped
as one, and None (the twin's turn) when a sum passes 64 bits, never a wrapped one."""

from __future__ import annotations

from array import array
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing_oss.native import columnar as native
from billing_oss.server.pipeline import columnar
from billing_oss.server.store import copy_payload

I64 = (1 << 63) - 1


@dataclass
class Compiled:
    """What the rollup reads of compiled tariffs."""

    currencies: tuple[str, ...]  # per tariff
    version_ids: list[int | None]  # per kernel version
    zone_names: list[list[str]]  # per version
    band_names: list[list[str]]


@dataclass
class Case:
    compiled: Compiled
    account_ids: list[str]
    role: bytearray
    account: array[int]
    event_us: array[int]
    kind: bytearray
    usage: array[int]
    tariff: array[int]
    amount: array[int]
    version: array[int]
    zone: array[int]

    def columns(self) -> tuple[Any, ...]:
        return (self.role, self.account, self.account_ids, self.event_us, self.kind,
                self.usage, self.tariff, self.amount, self.version, self.zone)


@st.composite
def cases(draw: st.DrawFn, big: bool = False) -> Case:
    # few names, drawn with repeats: equal names of different numbers must group
    currencies = tuple(draw(st.lists(st.sampled_from(["EUR", "USD", "GBP"]), min_size=1,
                                     max_size=4)))
    versions = draw(st.integers(1, 4))
    zone_names = [draw(st.lists(st.sampled_from(["national", "mobile", "eu", "ü-zone"]),
                                min_size=1, max_size=3)) for _ in range(versions)]
    version_ids = [draw(st.one_of(st.none(), st.integers(1, 3))) for _ in range(versions)]
    compiled = Compiled(currencies, version_ids, zone_names, [["peak"]] * versions)
    accounts = draw(st.integers(1, 5))
    n = draw(st.integers(0, 60))
    amounts = st.integers(-I64 - 1, I64) if big else st.integers(-10**12, 10**12)
    usages = st.integers(0, I64) if big else st.sampled_from([0, 1, 60, 9999, 10000, 10**8,
                                                              10**12 + 7, 123456789012])
    # 2025-12-31 .. 2026-03-02 UTC: month and day boundaries, every hour
    times = st.integers(1_767_139_200_000_000, 1_772_409_600_000_000)
    version = [draw(st.integers(0, versions - 1)) for _ in range(n)]
    return Case(
        compiled, [f"acct-{i}" for i in range(accounts)],
        bytearray(draw(st.lists(st.sampled_from([0, 1, 1, 1, 2]), min_size=n, max_size=n))),
        array("i", draw(st.lists(st.integers(0, accounts - 1), min_size=n, max_size=n))),
        array("q", draw(st.lists(times, min_size=n, max_size=n))),
        bytearray(draw(st.lists(st.sampled_from([0, 1, 2]), min_size=n, max_size=n))),
        array("q", draw(st.lists(usages, min_size=n, max_size=n))),
        array("i", draw(st.lists(st.integers(0, len(currencies) - 1), min_size=n,
                                 max_size=n))),
        array("q", draw(st.lists(amounts, min_size=n, max_size=n))),
        array("i", version),
        array("i", [draw(st.integers(-1, len(zone_names[v]) - 1)) for v in version]))


def native_rollup(case: Case) -> Any:
    tables = columnar.tables_of(case.compiled)  # type: ignore[arg-type]
    role, account, account_ids, event_us, kind, usage, tariff, amount, version, zone = (
        case.columns())
    return native.rollup(role, account, native.Names(account_ids), event_us, kind, usage,
                         tariff, amount, version, zone, tables.version_ids, tables.zone_base,
                         tables.zone_key, tables.zone_distinct, tables.currency_key,
                         tables.currency_distinct)


def twin(case: Case) -> Any:
    return columnar._rollup(*case.columns(), case.compiled)  # type: ignore[arg-type]


def rows(payload: bytes, kinds: str) -> Counter[tuple[Any, ...]]:
    return Counter(copy_payload.decode(payload, kinds))


@settings(max_examples=300, deadline=None)
@given(cases())
def test_native_rollup_equals_its_twin(case: Case) -> None:
    made = native_rollup(case)
    expected = twin(case)
    daily, days, monthly, months, hourly, hours = made
    assert rows(daily, columnar._ROLLUP_KINDS) == Counter(expected.daily)
    assert rows(monthly, columnar._ROLLUP_KINDS) == Counter(expected.monthly)
    assert rows(hourly, columnar._HOUR_KINDS) == Counter(expected.hourly)
    assert (days, months, hours) == (len(expected.daily), len(expected.monthly),
                                     len(expected.hourly))


@settings(max_examples=200, deadline=None)
@given(cases(big=True))
def test_a_sum_past_64_bits_is_the_twins_turn(case: Case) -> None:
    made = native_rollup(case)
    expected = twin(case)
    fits = all(-I64 - 1 <= v <= I64 for row in (*expected.daily, *expected.monthly)
               for v in (row[6], row[8])) and all(
        -I64 - 1 <= row[4] <= I64 for row in expected.hourly)
    if not fits:
        assert made is None  # never a wrapped sum
        return
    if made is None:
        return  # a partial sum passed 64 bits in the native order: the twin's turn still
    assert rows(made[0], columnar._ROLLUP_KINDS) == Counter(expected.daily)
    assert rows(made[4], columnar._HOUR_KINDS) == Counter(expected.hourly)


def test_numeric_digits_read_back_exactly() -> None:
    """Units and hour sums are numeric: base-10000 digits, trailing zero groups cut."""
    for value in (0, 1, 9999, 10000, 10**8, 10**12 + 7, 2**63 - 1, -1, -10000, -(2**63)):
        case = Case(Compiled(("EUR",), [None], [["z"]], [["b"]]), ["a"], bytearray([1]),
                    array("i", [0]), array("q", [1_767_139_200_000_000]), bytearray([0]),
                    array("q", [max(value, 0)]), array("i", [0]), array("q", [value]),
                    array("i", [0]), array("i", [-1]))
        daily, _, _, _, hourly, _ = native_rollup(case)
        (row,) = copy_payload.decode(daily, columnar._ROLLUP_KINDS)
        assert row[6] == value and row[8] == Decimal(max(value, 0))
        assert row[3] is None and row[5] is None  # no zone, no stored version
        (hour,) = copy_payload.decode(hourly, columnar._HOUR_KINDS)
        assert hour[4] == Decimal(value) and hour[5] == 0


def test_bad_columns_are_refused() -> None:
    case = Case(Compiled(("EUR",), [1], [["z"]], [["b"]]), ["a"], bytearray([1]),
                array("i", [0]), array("q", [0]), bytearray([0]), array("q", [1]),
                array("i", [0]), array("q", [5]), array("i", [0]), array("i", [0]))
    native_rollup(case)
    for field, bad, match in (("version", array("i", [3]), "out of range"),
                              ("zone", array("i", [4]), "zone out of range"),
                              ("kind", bytearray([7]), "kind 7"),
                              ("event_us", array("q", [-1]), "event time -1"),
                              ("amount", array("q"), "shorter")):
        broken = Case(**{**case.__dict__, field: bad})
        with pytest.raises(ValueError, match=match):
            native_rollup(broken)
