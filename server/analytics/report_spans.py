"""How a report's range splits over the account-less levels (day, week, month: migrations
1500 and 1502): the whole periods inside it, each answered by its level, and the partial
periods at its ends, answered by the day level's sums and the accounts whose days meet them
(charge_account_days, migration 1540).

A distinct-account count is a level's own figure for its period and no sum of counts: an
account of two days of a week, or of two months, would count twice. So a level answers only
whole periods of its own length, and a partial one counts the accounts whose bits meet its
days: one row per account and value a year, whatever the days (at most 6 of a week, 30 of a
month at each end), never the range, which is what keeps a year by month or a quarter by
week as fast as whole ones.
"""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

ONE_DAY = dt.timedelta(days=1)


class Piece(NamedTuple):
    """Days [start, end) of a report, and the level answering them (None: the day level and
    the accounts' days); ``total``: one row for the whole piece (a report over one
    period)."""

    start: dt.date
    end: dt.date
    level: str | None
    total: bool = False


def period_start(period: str, day: dt.date) -> dt.date:
    """The first day of the week (Monday) or month holding ``day``; ``day`` by day."""
    if period == "week":
        return day - dt.timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    return day


def next_start(period: str, day: dt.date) -> dt.date:
    """The first day of the period after the one holding ``day``."""
    if period == "week":
        return period_start("week", day) + dt.timedelta(days=7)
    if period == "month":
        return (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    return day + ONE_DAY


def split(period: str, start: dt.date, end: dt.date) -> list[Piece] | None:
    """The pieces of [start, end) by ``period`` (day, week, month or total), in order; None
    when a total spans more than one period of a level (its distinct accounts are those of
    several periods: no level holds them)."""
    if period == "total":
        for level in ("day", "week", "month"):
            if period_start(level, start) == start and next_start(level, start) == end:
                return [Piece(start, end, level, total=True)]
        return None
    if period == "day":
        return [Piece(start, end, "day")]
    first = start if period_start(period, start) == start else next_start(period, start)
    last = period_start(period, end)  # the first day of the partial period at the end
    if first >= last:  # no whole period inside: at most two partial ones
        return [Piece(start, end, None)]
    pieces = [Piece(start, first, None)] if start < first else []
    pieces.append(Piece(first, last, period))
    if last < end:
        pieces.append(Piece(last, end, None))
    return pieces


def periods(period: str, start: dt.date, end: dt.date) -> list[Piece]:
    """[start, end) cut at the starts of ``period`` (week or month): each piece within one
    period (the partial periods of a piece ``split`` leaves to no level: at most two)."""
    pieces, day = [], start
    while day < end:
        after = min(next_start(period, day), end)
        pieces.append(Piece(day, after, None))
        day = after
    return pieces
