"""UTC months, the unit of partitions and archives."""

from __future__ import annotations

import datetime as dt


def first_of(when: dt.datetime | dt.date) -> dt.date:
    """The first day of the UTC month ``when`` falls in."""
    if isinstance(when, dt.datetime):
        when = when.astimezone(dt.UTC).date()
    return when.replace(day=1)


def add(month: dt.date, n: int) -> dt.date:
    """The first day of the month ``n`` months after ``month`` (before, when negative)."""
    index = month.year * 12 + month.month - 1 + n
    return dt.date(index // 12, index % 12 + 1, 1)


def start(month: dt.date) -> dt.datetime:
    return dt.datetime(month.year, month.month, 1, tzinfo=dt.UTC)


def label(month: dt.date) -> str:
    return f"{month:%Y-%m}"


def parse(text: str) -> dt.date:
    """``YYYY-MM`` → the first day of that month."""
    try:
        year, month = text.split("-")
        return dt.date(int(year), int(month), 1)
    except ValueError:
        raise ValueError(f"{text!r} is not a month (YYYY-MM)") from None
