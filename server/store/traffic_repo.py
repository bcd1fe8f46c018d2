"""Read side of rated traffic: usage records, charges and charge totals, for the admin API.

Both tables are partitioned by month on ``event_time`` and keyed by account; lists walk
``(event_time, id)`` so a period filter prunes partitions and a cursor resumes exactly.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec

from billing_oss.server.store import compaction_lock
from billing_oss.server.store.filters import Where


class Period(msgspec.Struct, frozen=True, kw_only=True):
    account_id: str | None = None
    start: dt.datetime | None = None
    end: dt.datetime | None = None

    def where(self) -> Where:
        return (Where().add("account_id = {}", self.account_id)
                .add("event_time >= {}", self.start).add("event_time < {}", self.end))


class UsageRow(msgspec.Struct, frozen=True, kw_only=True):
    usage_id: int
    account_id: str
    event_time: dt.datetime
    source: str
    record_key: str
    kind: str
    duration_s: int | None
    volume_up: int | None
    volume_down: int | None
    quantity: str | None
    unit: str | None
    calling: str | None
    called: str | None
    imsi: str | None
    msisdn: str | None
    charge: str | None
    partial_seq: int | None
    attrs: dict[str, Any]
    source_file_id: int | None
    ingested_at: dt.datetime


class ChargeRow(msgspec.Struct, frozen=True, kw_only=True):
    charge_id: int
    account_id: str
    event_time: dt.datetime
    usage_id: int | None
    kind: str
    amount_micros: int
    currency: str
    tariff_version_id: int | None
    zone: str | None
    band: str | None
    reverses_charge_id: int | None
    rerate_job_id: int | None
    created_at: dt.datetime


class Total(msgspec.Struct, frozen=True, kw_only=True):
    currency: str
    charges: int
    reversals: int
    charged_micros: int
    reversed_micros: int


def usage_query(period: Period, *, kind: str | None, source: str | None,
                after: tuple[dt.datetime, int] | None, limit: int) -> tuple[str, list[Any]]:
    """The SQL and arguments of one page of usage (``limit + 1`` rows, to see if more)."""
    w = (period.where().add("kind = {}", kind).add("source = {}", source)
         .keyset("event_time, usage_id", after))
    return ("SELECT usage_id, account_id, event_time, source, record_key, kind, duration_s,"
            " volume_up, volume_down, quantity::text, unit, calling, called, imsi, msisdn,"
            " charge::text, partial_seq, attrs::text, source_file_id, ingested_at"
            " FROM usage_records" + w.sql() + " ORDER BY event_time, usage_id"
            + w.limit(limit + 1), w.args)


async def usage(pool: asyncpg.Pool, period: Period, *, kind: str | None, source: str | None,
                after: tuple[dt.datetime, int] | None, limit: int) -> list[UsageRow]:
    sql, args = usage_query(period, kind=kind, source=source, after=after, limit=limit)
    rows = await pool.fetch(sql, *args)
    return [UsageRow(**{**dict(r), "attrs": json.loads(r["attrs"])}) for r in rows]


def charges_query(period: Period, *, kind: str | None, rerate_job_id: int | None,
                  after: tuple[dt.datetime, int] | None,
                  limit: int) -> tuple[str, list[Any]]:
    """The SQL and arguments of one page of charges (``limit + 1`` rows)."""
    w = (period.where().add("kind = {}", kind).add("rerate_job_id = {}", rerate_job_id)
         .keyset("event_time, charge_id", after))
    return ("SELECT charge_id, account_id, event_time, usage_id, kind, amount_micros,"
            " rtrim(currency) AS currency, tariff_version_id, zone, band, reverses_charge_id,"
            " rerate_job_id, created_at FROM charges" + w.sql()
            + " ORDER BY event_time, charge_id" + w.limit(limit + 1), w.args)


async def charges(pool: asyncpg.Pool, period: Period, *, kind: str | None,
                  rerate_job_id: int | None, after: tuple[dt.datetime, int] | None,
                  limit: int) -> list[ChargeRow]:
    sql, args = charges_query(period, kind=kind, rerate_job_id=rerate_job_id, after=after,
                              limit=limit)
    return [ChargeRow(**dict(r)) for r in await pool.fetch(sql, *args)]


async def totals(pool: asyncpg.Pool, period: Period) -> list[Total]:
    """Charged and reversed sums per currency (exact: summed as numeric, checked to fit).

    Whole UTC days come from the analytics rollups: for one account its daily rows (whole
    months from the monthly level), kept in the charges' transaction; across accounts the
    account-less level compaction fills plus the deltas it has not folded yet; so the answer
    reads a row per key × day or month instead of every charge. The parts of days at either
    end of the period are summed from the charges for one account; across accounts their
    whole UTC hours come from the account-less hourly level (migration 1512) and only the
    minutes before the first whole hour and after the last from the charges (under an hour
    at each end). Rollups are read only over the months
    whose charges partition is attached: an archived month's charges are gone and the rollups
    keep it, so it would count here and not in the charges. The sums are those of the
    charges, to the micro-unit.
    """
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    def by_hour(start: dt.datetime, end: dt.datetime) -> list[str]:
        """[start, end) across accounts: its whole UTC hours from the hourly level, the
        minutes around them from the charges. (The hourly level needs no compaction lock:
        on Citus too it is folded on the coordinator alone, in one transaction.)"""
        hours_from, hours_to = _hour_on_or_after(start), _hour_of(end)
        if hours_from >= hours_to:
            return [_raw(arg, "", start, end)]
        parts = [_hourly(arg, hours_from, hours_to)]
        if start < hours_from:
            parts.append(_raw(arg, "", start, hours_from))
        if hours_to < end:
            parts.append(_raw(arg, "", hours_to, end))
        return parts

    account = "" if period.account_id is None else f" AND account_id = {arg(period.account_id)}"
    start, end = period.start, period.end
    first = None if start is None else _day_on_or_after(start)
    last = None if end is None else end.astimezone(dt.UTC).date()  # days before it are whole
    across = False  # whether the account-less level is read: then between compactions
    # the part of a day at either end: from the charges, or by the hour across accounts
    partial = (by_hour if period.account_id is None
               else lambda a, b: [_raw(arg, account, a, b)])
    if first is not None and last is not None and first >= last:
        assert start is not None and end is not None
        parts = partial(start, end)
    else:
        parts = []
        if start is not None and first is not None and _midnight(first) > start:
            parts += partial(start, _midnight(first))
        if end is not None and last is not None and _midnight(last) < end:
            parts += partial(_midnight(last), end)
        months_from = None if first is None else _month_on_or_after(first)
        months_to = None if last is None else last.replace(day=1)
        if period.account_id is None:
            parts.append(_rolled_all(arg, first, last))
            across = True
        elif months_from is None or months_to is None or months_from < months_to:
            parts.append(_rolled(arg, account, "charge_rollups_monthly", months_from,
                                 months_to))
            if first is not None and months_from is not None and first < months_from:
                parts.append(_rolled(arg, account, "charge_rollups", first, months_from))
            if last is not None and months_to is not None and months_to < last:
                parts.append(_rolled(arg, account, "charge_rollups", months_to, last))
        else:
            parts.append(_rolled(arg, account, "charge_rollups", first, last))
    # The first day the charges' partitions still hold (months before it are archived).
    sql = ("WITH live AS (SELECT since FROM charges_live_span())"
           " SELECT rtrim(currency) AS currency, sum(charges)::bigint AS charges,"
           " sum(reversals)::bigint AS reversals, sum(charged) AS charged,"
           " sum(reversed) AS reversed FROM (" + " UNION ALL ".join(parts) + ") p"
           " GROUP BY currency ORDER BY currency")
    rows = await (compaction_lock.fetch_between_compactions(pool, sql, args) if across
            else pool.fetch(sql, *args))
    return [Total(currency=r["currency"], charges=r["charges"], reversals=r["reversals"],
                  charged_micros=_int(r["charged"]), reversed_micros=_int(r["reversed"]))
            for r in rows]


def _raw(arg: Callable[[Any], str], account: str, start: dt.datetime | None,
         end: dt.datetime | None) -> str:
    """The sums of the charges of [start, end), read from the charges themselves."""
    w = "" if start is None else f" AND event_time >= {arg(start)}"
    w += "" if end is None else f" AND event_time < {arg(end)}"
    return ("SELECT currency, count(*) FILTER (WHERE kind = 'charge') AS charges,"
            " count(*) FILTER (WHERE kind = 'reversal') AS reversals,"
            " coalesce(sum(amount_micros::numeric) FILTER (WHERE kind = 'charge'), 0)"
            " AS charged,"
            " coalesce(sum(amount_micros::numeric) FILTER (WHERE kind = 'reversal'), 0)"
            " AS reversed FROM charges WHERE true" + account + w + " GROUP BY currency")


def _rolled(arg: Callable[[Any], str], account: str, table: str, first: dt.date | None,
            until: dt.date | None) -> str:
    """The same sums over the rollup rows of days (or months) [first, until): a row holds
    records = charges − reversals and amount = charged + reversed."""
    w = "" if first is None else f" AND day >= {arg(first)}"
    w += "" if until is None else f" AND day < {arg(until)}"
    return ("SELECT currency, sum(records + reversals) AS charges,"
            " sum(reversals) AS reversals,"
            " sum(amount_micros::numeric - reversed_micros) AS charged,"
            " sum(reversed_micros::numeric) AS reversed FROM " + table
            + " WHERE day >= (SELECT since FROM live)" + account + w + " GROUP BY currency")


def _rolled_all(arg: Callable[[Any], str], first: dt.date | None,
                until: dt.date | None) -> str:
    """The sums of every account's days [first, until): the account-less level holds what
    compaction folded, the per-account deltas not folded yet add the rest (same snapshot,
    so a compaction in between moves sums, never loses or doubles them)."""
    w = "" if first is None else f" AND day >= {arg(first)}"
    w += "" if until is None else f" AND day < {arg(until)}"
    sums = ("currency, records, reversals, amount_micros, reversed_micros FROM {}"
            " WHERE day >= (SELECT since FROM live)" + w)
    return ("SELECT currency, sum(records + reversals) AS charges,"
            " sum(reversals) AS reversals,"
            " sum(amount_micros::numeric - reversed_micros) AS charged,"
            " sum(reversed_micros::numeric) AS reversed FROM ("
            " SELECT " + sums.format("charge_totals") + " UNION ALL"
            " SELECT " + sums.format("charge_rollups") + " AND NOT compacted) t"
            " GROUP BY currency")


def _hourly(arg: Callable[[Any], str], start: dt.datetime, end: dt.datetime) -> str:
    """The sums of every account's charges of the whole UTC hours [start, end): the hourly
    level's folded rows and deltas (migration 1512), a row per hour and currency and the
    deltas not folded yet."""
    return ("SELECT currency, sum(charges) AS charges, sum(reversals) AS reversals,"
            " sum(charged_micros) AS charged, sum(reversed_micros) AS reversed"
            " FROM charge_hour_totals WHERE hour >= (SELECT since FROM live)::timestamp"
            " AT TIME ZONE 'UTC' AND hour >= " + arg(start) + " AND hour < " + arg(end)
            + " GROUP BY currency")


def _hour_of(moment: dt.datetime) -> dt.datetime:
    """The start of ``moment``'s UTC hour."""
    return moment.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def _hour_on_or_after(moment: dt.datetime) -> dt.datetime:
    """The first UTC hour that starts at or after ``moment``."""
    hour = _hour_of(moment)
    return hour if hour >= moment else hour + dt.timedelta(hours=1)


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def _day_on_or_after(moment: dt.datetime) -> dt.date:
    """The first UTC day that starts at or after ``moment``."""
    day = moment.astimezone(dt.UTC).date()
    return day if _midnight(day) >= moment else day + dt.timedelta(days=1)


def _month_on_or_after(day: dt.date) -> dt.date:
    if day.day == 1:
        return day
    return (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def _int(value: Decimal) -> int:
    return int(value)
