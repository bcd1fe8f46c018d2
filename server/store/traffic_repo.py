"""Read side of rated traffic: usage records, charges and charge totals, for the admin API.

Both tables are partitioned by month on ``event_time`` and keyed by account; lists walk
``(event_time, id)`` so a period filter prunes partitions and a cursor resumes exactly.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec

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


async def usage(pool: asyncpg.Pool, period: Period, *, kind: str | None, source: str | None,
                after: tuple[dt.datetime, int] | None, limit: int) -> list[UsageRow]:
    w = (period.where().add("kind = {}", kind).add("source = {}", source)
         .keyset("event_time, usage_id", after))
    rows = await pool.fetch(
        "SELECT usage_id, account_id, event_time, source, record_key, kind, duration_s,"
        " volume_up, volume_down, quantity::text, unit, calling, called, imsi, msisdn,"
        " charge::text, partial_seq, attrs::text, source_file_id, ingested_at"
        " FROM usage_records" + w.sql() + " ORDER BY event_time, usage_id" + w.limit(limit + 1),
        *w.args,
    )
    return [UsageRow(**{**dict(r), "attrs": json.loads(r["attrs"])}) for r in rows]


async def charges(pool: asyncpg.Pool, period: Period, *, kind: str | None,
                  rerate_job_id: int | None, after: tuple[dt.datetime, int] | None,
                  limit: int) -> list[ChargeRow]:
    w = (period.where().add("kind = {}", kind).add("rerate_job_id = {}", rerate_job_id)
         .keyset("event_time, charge_id", after))
    rows = await pool.fetch(
        "SELECT charge_id, account_id, event_time, usage_id, kind, amount_micros,"
        " rtrim(currency) AS currency, tariff_version_id, zone, band, reverses_charge_id,"
        " rerate_job_id, created_at FROM charges" + w.sql()
        + " ORDER BY event_time, charge_id" + w.limit(limit + 1),
        *w.args,
    )
    return [ChargeRow(**dict(r)) for r in rows]


async def totals(pool: asyncpg.Pool, period: Period) -> list[Total]:
    """Charged and reversed sums per currency (exact: summed as numeric, checked to fit)."""
    w = period.where()
    rows = await pool.fetch(
        "SELECT rtrim(currency) AS currency,"
        " count(*) FILTER (WHERE kind = 'charge') AS charges,"
        " count(*) FILTER (WHERE kind = 'reversal') AS reversals,"
        " coalesce(sum(amount_micros::numeric) FILTER (WHERE kind = 'charge'), 0) AS charged,"
        " coalesce(sum(amount_micros::numeric) FILTER (WHERE kind = 'reversal'), 0) AS reversed"
        " FROM charges" + w.sql() + " GROUP BY currency ORDER BY currency",
        *w.args,
    )
    return [Total(currency=r["currency"], charges=r["charges"], reversals=r["reversals"],
                  charged_micros=_int(r["charged"]), reversed_micros=_int(r["reversed"]))
            for r in rows]


def _int(value: Decimal) -> int:
    return int(value)
