"""Billing cycles in the account's timezone, and proration of recurring fees by day.

Cycle ``YYYY-MM`` of an account with billing day ``d`` runs from day ``d`` of that month,
00:00 local time, to day ``d`` of the next month. A fee is prorated by the local calendar
days the subscription is active in the cycle (a started day counts in full) over the
cycle's days — so February has 28 or 29 days and a start on the last day bills 1 day.

After a change of billing day (or timezone) the previous cycle, already invoiced, may end
after this cycle's normal start, or before it: the cycle then starts where the invoiced one
ended (a shorter or longer transition cycle, see ``after``), so no day is billed twice and
none is skipped. Its fee is prorated over the days of the normal cycle (the month it would
cover): a transition cycle of d days bills fee × d / month_days — half a fee for half a
month, one and a half for a month and a half.
"""

from __future__ import annotations

import datetime as dt
import re
from fractions import Fraction
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from billing_oss.core.rounding import MoneyError

_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


class Cycle(msgspec.Struct, frozen=True):
    period: str
    start_local: dt.date  # first day
    end_local: dt.date  # first day after the cycle
    start: dt.datetime  # UTC instants
    end: dt.datetime
    month_days: int  # days of the normal cycle: what a fee is prorated over

    @property
    def days(self) -> int:
        return (self.end_local - self.start_local).days


def parse_period(period: str) -> tuple[int, int]:
    m = _PERIOD.match(period)
    if not m:
        raise MoneyError(f"period must be YYYY-MM, got {period!r}")
    return int(m[1]), int(m[2])


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise MoneyError(f"unknown timezone {name!r}") from None


def cycle(period: str, billing_day: int, timezone: str) -> Cycle:
    year, month = parse_period(period)
    if not 1 <= billing_day <= 28:
        raise MoneyError(f"billing day must be 1..28, got {billing_day}")
    tz = zone(timezone)
    start_local = dt.date(year, month, billing_day)
    end_local = dt.date(year + month // 12, month % 12 + 1, billing_day)
    return Cycle(
        period=period, start_local=start_local, end_local=end_local,
        start=_midnight_utc(start_local, tz), end=_midnight_utc(end_local, tz),
        month_days=(end_local - start_local).days,
    )


def after(c: Cycle, invoiced_end: dt.datetime, timezone: str) -> Cycle:
    """The cycle starting where the last invoiced cycle ended (``invoiced_end``): later than
    the normal start after the billing day moved earlier (a shorter cycle), earlier after it
    moved later (a longer one, so the days between are billed); unchanged when they meet.
    A start within a local day (the timezone changed) keeps that day: a started day counts,
    as for subscriptions."""
    if invoiced_end == c.start:
        return c
    start = min(invoiced_end, c.end)
    return msgspec.structs.replace(
        c, start=start, start_local=start.astimezone(zone(timezone)).date())


def _midnight_utc(day: dt.date, tz: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tz).astimezone(dt.UTC)


def active_days(c: Cycle, valid_from: dt.datetime, valid_to: dt.datetime | None,
                timezone: str) -> int:
    """Local days of the cycle touched by ``[valid_from, valid_to)``.

    The day of a start counts, the day of an end does not (unless it ends later that day
    after starting the same day): a plan change on the 15th bills the old plan through the
    14th and the new one from the 15th, never both on one day.
    """
    tz = zone(timezone)
    first = max(valid_from.astimezone(tz).date(), c.start_local)
    if valid_to is None:
        last = c.end_local
    else:
        end_local = valid_to.astimezone(tz)
        last = end_local.date()
        if last == valid_from.astimezone(tz).date() and end_local.time() != dt.time():
            last += dt.timedelta(days=1)
        last = min(last, c.end_local)
    return max(0, (last - first).days)


def prorated(fee_micros: int, days: int, cycle_days: int) -> Fraction:
    return Fraction(fee_micros * days, cycle_days)
