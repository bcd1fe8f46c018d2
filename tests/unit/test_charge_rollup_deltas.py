"""``charge_writes.roll_up``: the delta rows of a set of charges, per key and day / month, and
per UTC hour and currency without the account."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from billing_oss.server.store.charge_writes import Fact, Rollup, roll_up, rollup_units

UTC = dt.UTC
PARIS = dt.timezone(dt.timedelta(hours=1))


def fact(when: dt.datetime, amount: int, *, reversal: bool = False, account: str = "A",
         service: str | None = "voice", zone: str | None = "national",
         units: int | Decimal = 60, version: int | None = 7) -> Fact:
    return Fact(account, when, service, zone, "EUR", version, reversal, amount, units)


def test_units_follow_the_usage_kind() -> None:
    assert rollup_units("voice", 61, 5, 5, "3") == 61
    assert rollup_units("voice", None, None, None, None) == 0
    assert rollup_units("data", None, 5, None, None) == 5
    assert rollup_units("data", None, 5, 7, None) == 12
    assert rollup_units("sms", 99, None, None, "4") == 1
    assert rollup_units("event", None, None, None, "2.500") == Decimal("2.5")
    assert rollup_units("event", None, None, None, None) == 1
    assert rollup_units(None, 60, None, None, None) == 1  # a charge of no usage row


def test_charges_group_per_key_and_utc_day_and_month() -> None:
    jan31 = dt.datetime(2026, 1, 31, 23, 30, tzinfo=UTC)
    feb1 = dt.datetime(2026, 2, 1, 0, 30, tzinfo=PARIS)  # 2026-01-31 23:30 UTC
    feb2 = dt.datetime(2026, 2, 2, 8, tzinfo=UTC)
    daily, monthly, hourly, _ = roll_up([
        fact(jan31, 100), fact(feb1, 200), fact(feb2, 5, units=30),
        fact(feb2, -5, reversal=True, units=30), fact(feb2, 9, version=8, units=30),
        fact(feb2, 1, account="B", service=None, zone=None, units=1),
    ])
    key = ("A", dt.date(2026, 1, 31), "voice", "national", "EUR", 7)
    assert sorted(daily, key=repr) == sorted([
        (*key, 300, 2, Decimal(120), 0, 0),
        ("A", dt.date(2026, 2, 2), "voice", "national", "EUR", 7, 0, 0, Decimal(0), 1, -5),
        ("A", dt.date(2026, 2, 2), "voice", "national", "EUR", 8, 9, 1, Decimal(30), 0, 0),
        ("B", dt.date(2026, 2, 2), None, None, "EUR", 7, 1, 1, Decimal(1), 0, 0),
    ], key=repr)
    assert sorted(monthly, key=repr) == sorted([
        ("A", dt.date(2026, 1, 1), "voice", "national", "EUR", 7, 300, 2, Decimal(120), 0, 0),
        ("A", dt.date(2026, 2, 1), "voice", "national", "EUR", 7, 0, 0, Decimal(0), 1, -5),
        ("A", dt.date(2026, 2, 1), "voice", "national", "EUR", 8, 9, 1, Decimal(30), 0, 0),
        ("B", dt.date(2026, 2, 1), None, None, "EUR", 7, 1, 1, Decimal(1), 0, 0),
    ], key=repr)
    # every account's charges and reversals of an hour in one row: counts and sums apart
    assert sorted(hourly, key=repr) == sorted([
        (dt.datetime(2026, 1, 31, 23, tzinfo=UTC), "EUR", 2, 0, Decimal(300), Decimal(0)),
        (dt.datetime(2026, 2, 2, 8, tzinfo=UTC), "EUR", 3, 1, Decimal(15), Decimal(-5)),
    ], key=repr)


def test_hours_are_utc_hours_and_currencies_apart() -> None:
    paris = dt.datetime(2026, 5, 4, 9, 59, 59, 999_999, tzinfo=PARIS)  # 08:59:59.999999 UTC
    hourly = roll_up([
        fact(paris, 7), fact(paris + dt.timedelta(microseconds=1), 11),
        Fact("C", paris, "sms", None, "USD", None, False, 13, 1),
    ]).hourly
    assert sorted(hourly, key=repr) == sorted([
        (dt.datetime(2026, 5, 4, 8, tzinfo=UTC), "EUR", 1, 0, Decimal(7), Decimal(0)),
        (dt.datetime(2026, 5, 4, 9, tzinfo=UTC), "EUR", 1, 0, Decimal(11), Decimal(0)),
        (dt.datetime(2026, 5, 4, 8, tzinfo=UTC), "USD", 1, 0, Decimal(13), Decimal(0)),
    ], key=repr)


def test_sums_are_exact_and_nothing_is_rolled_up_for_no_charge() -> None:
    when = dt.datetime(2026, 3, 1, tzinfo=UTC)
    daily, monthly, hourly, _ = roll_up(fact(when, 2**62 // 4, units=Decimal("0.000001"))
                                     for _ in range(3))
    assert daily == [("A", when.date(), "voice", "national", "EUR", 7, 3 * (2**62 // 4), 3,
                      Decimal("0.000003"), 0, 0)]
    assert monthly == daily
    assert hourly == [(when, "EUR", 3, 0, Decimal(3 * (2**62 // 4)), Decimal(0))]
    assert roll_up([]) == Rollup([], [], [])
