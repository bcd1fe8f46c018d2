"""The one way charges are written: the charges and their rollup deltas, together.

``charge_rollups`` and ``charge_rollups_monthly`` (DESIGN.md §10) hold, per account × UTC day
(or month) × service × zone × currency × tariff version, the sums of the charges;
``charge_hour_totals`` (migration 1512), per UTC hour × currency without the account, the
counts and sums of the charges and of the reversals. Their writer appends the deltas in the
transaction that writes the charges — no trigger on ``charges`` (issue #21: nothing relies
on triggers on distributed tables), and no lookup of each charge's usage row (issue #24):
every writer has the usage in hand. ``roll_up`` groups
the charges' facts into the delta rows (pure; file ingest runs it on the CPU stage), and
``write`` sends the charges and the three levels, one COPY per table. ``tests/unit/
test_charge_writes_guard.py`` fails if any code inserts into ``charges`` another way.

A reversal counts -1 record and minus its usage's units, so a rerated usage stays one record
in the rollup while its money moves from the old tariff version to the new.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any, NamedTuple

from billing_oss.server.store import usage_repo
from billing_oss.server.store.pool import Connection

ROLLUP_COLUMNS = ("account_id", "day", "service", "zone", "currency", "tariff_version_id",
                  "amount_micros", "records", "units", "reversals", "reversed_micros")
HOUR_COLUMNS = ("hour", "currency", "charges", "reversals", "charged_micros", "reversed_micros")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

Units = int | Decimal


class Fact(NamedTuple):
    """What the rollups need of one charge row: the charge and its usage's kind and units."""
    account_id: str
    event_time: dt.datetime
    service: str | None  # usage_records.kind; None when the charge has no usage row
    zone: str | None
    currency: str
    tariff_version_id: int | None
    reversal: bool
    amount_micros: int
    units: Units  # ``rollup_units`` of its usage, unsigned


class Rollup(NamedTuple):
    daily: Sequence[tuple[Any, ...]]  # ROLLUP_COLUMNS rows of charge_rollups
    monthly: Sequence[tuple[Any, ...]]  # the same, of charge_rollups_monthly (day: the 1st)
    hourly: Sequence[tuple[Any, ...]]  # HOUR_COLUMNS rows of charge_hour_totals
    # their binary COPY payloads (daily, monthly, hourly), when built beforehand
    payloads: tuple[bytes, bytes, bytes] | None = None


# (UTC hour, currency) → [charges, reversals, charged_micros, reversed_micros]
Hours = dict[tuple[dt.datetime, str], list[int]]


def rollup_units(kind: str | None, duration_s: int | None, volume_up: int | None,
                 volume_down: int | None, quantity: str | Decimal | None) -> Units:
    """The SQL function ``charge_rollup_units`` (migration 1000), value for value: seconds
    of voice, bytes of data, one per SMS, else the quantity (1 when absent) — a charge of no
    usage row (kind None) counts 1 too, as the SQL's CASE over NULL did."""
    if kind == "voice":
        return duration_s or 0
    if kind == "data":
        return (volume_up or 0) + (volume_down or 0)
    if kind == "sms":
        return 1
    return 1 if quantity is None else Decimal(quantity)


def _utc_day(when: dt.datetime) -> dt.date:
    return (when if when.tzinfo is dt.UTC else when.astimezone(dt.UTC)).date()


def hour_of(when: dt.datetime) -> dt.datetime:
    """The start of ``when``'s UTC hour."""
    return (when if when.tzinfo is dt.UTC else when.astimezone(dt.UTC)).replace(
        minute=0, second=0, microsecond=0)


def hour_since_epoch(hours: int) -> dt.datetime:
    """The start of the UTC hour ``hours`` after the Unix epoch."""
    return _EPOCH + dt.timedelta(hours=hours)


def add_hour(into: Hours, hour: dt.datetime, currency: str, reversal: bool,
             amount_micros: int) -> None:
    """Count one charge (or reversal) of ``amount_micros`` into its hour's sums."""
    sums = into.get((hour, currency))
    if sums is None:
        sums = into[(hour, currency)] = [0, 0, 0, 0]
    if reversal:
        sums[1] += 1
        sums[3] += amount_micros
    else:
        sums[0] += 1
        sums[2] += amount_micros


def roll_up(facts: Iterable[Fact]) -> Rollup:
    """The delta rows of these charges: one per key and day, one per key and month, and one
    per hour and currency."""
    days: dict[tuple[Any, ...], list[Any]] = {}
    hours: Hours = {}
    last_time: dt.datetime | None = None
    day = dt.date.min
    hour = _EPOCH
    for f in facts:
        if f.event_time is not last_time:  # consecutive charges mostly share a time object
            last_time = f.event_time
            day = _utc_day(last_time)
            hour = hour_of(last_time)
        key = (f.account_id, day, f.service, f.zone, f.currency, f.tariff_version_id)
        sums = days.get(key)
        if sums is None:
            sums = days[key] = [0, 0, 0, 0, 0]
        if f.reversal:
            sums[0] += f.amount_micros
            sums[1] -= 1
            sums[2] -= f.units
            sums[3] += 1
            sums[4] += f.amount_micros
        else:
            sums[0] += f.amount_micros
            sums[1] += 1
            sums[2] += f.units
        add_hour(hours, hour, f.currency, f.reversal, f.amount_micros)
    return of_days(days, hours)


def of_days(days: dict[tuple[Any, ...], list[Any]], hours: Hours) -> Rollup:
    """The rollup of daily sums already grouped: key (account_id, day, service, zone,
    currency, tariff_version_id) → [amount, records, units, reversals, reversed_micros];
    and of the hours' sums (``add_hour``)."""
    months: dict[tuple[Any, ...], list[Any]] = {}
    for (account, on, service, zone, currency, version), sums in days.items():
        key = (account, on.replace(day=1), service, zone, currency, version)
        into = months.get(key)
        if into is None:
            months[key] = list(sums)
        else:
            for i, value in enumerate(sums):
                into[i] += value
    return Rollup(_rows(days), _rows(months),
                  [(hour, currency, charges, reversals, Decimal(charged), Decimal(reversed_))
                   for (hour, currency), (charges, reversals, charged, reversed_)
                   in hours.items()])


def _rows(sums: dict[tuple[Any, ...], list[Any]]) -> list[tuple[Any, ...]]:
    # numeric units: asyncpg's encoder takes int or Decimal, not a mix inside one row
    return [(*key, amount, records, Decimal(units), reversals, reversed_micros)
            for key, (amount, records, units, reversals, reversed_micros) in sums.items()]


async def write(conn: Connection, rows: Sequence[tuple[Any, ...]], rollup: Rollup, *,
                columns: Sequence[str] = usage_repo.CHARGE_COLUMNS,
                payload: bytes | None = None) -> None:
    """Insert charge ``rows`` (``columns`` of ``charges``; ``payload``: their binary COPY
    encoding, when built beforehand) and ``rollup``, the ``roll_up`` of the same charges,
    in the caller's transaction."""
    if not rows:
        return
    await usage_repo.copy_rows(conn, "charges", columns, rows, payload)
    daily, monthly, hourly = rollup.payloads or (None, None, None)
    await usage_repo.copy_rows(conn, "charge_rollups", ROLLUP_COLUMNS, rollup.daily, daily)
    await usage_repo.copy_rows(conn, "charge_rollups_monthly", ROLLUP_COLUMNS, rollup.monthly,
                               monthly)
    await usage_repo.copy_rows(conn, "charge_hour_totals", HOUR_COLUMNS, rollup.hourly, hourly)
