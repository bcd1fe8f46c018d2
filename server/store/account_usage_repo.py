"""One account's usage as its customer reads it: each record with what it was charged
(its latest charge that no reversal undid), the totals of a span, and the records an
invoice billed (the itemised list its PDF can carry).

Usage and charges share their key (account, event time, usage id), so a record's charge is
an index probe into the same month's partition.
"""

from __future__ import annotations

import datetime as dt
from typing import TypeAlias

import asyncpg
import msgspec

from billing_oss.server.store.filters import Where
from billing_oss.server.store.pool import Connection

Db: TypeAlias = "Connection | asyncpg.Pool"


class ItemRow(msgspec.Struct, frozen=True, kw_only=True):
    usage_id: int
    event_time: dt.datetime
    source: str
    kind: str
    calling: str | None
    called: str | None
    msisdn: str | None
    duration_s: int | None
    volume_up: int | None
    volume_down: int | None
    quantity: str | None
    unit: str | None
    zone: str | None
    band: str | None
    amount_micros: int | None  # None: not charged (yet)
    currency: str | None


class ItemFilter(msgspec.Struct, frozen=True, kw_only=True):
    account_id: str
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    kind: str | None = None
    number: str | None = None  # the calling, called or subscriber number


class KindTotal(msgspec.Struct, frozen=True, kw_only=True):
    kind: str
    currency: str | None
    records: int
    duration_s: int
    volume: int
    amount_micros: int


_ACTIVE_CHARGE = (
    " LEFT JOIN LATERAL (SELECT c.amount_micros, rtrim(c.currency) AS currency, c.zone, c.band"
    " FROM charges c WHERE c.account_id = u.account_id AND c.event_time = u.event_time"
    " AND c.usage_id = u.usage_id AND c.kind = 'charge' AND NOT EXISTS (SELECT 1 FROM charges r"
    " WHERE r.account_id = c.account_id AND r.event_time = c.event_time"
    " AND r.reverses_charge_id = c.charge_id) ORDER BY c.charge_id DESC LIMIT 1) c ON true"
)
_ITEM_COLUMNS = (
    "SELECT u.usage_id, u.event_time, u.source, u.kind, u.calling, u.called, u.msisdn,"
    " u.duration_s,"
    " u.volume_up, u.volume_down, u.quantity::text AS quantity, u.unit, c.zone, c.band,"
    " c.amount_micros, c.currency FROM usage_records u"
)


def _where(f: ItemFilter) -> Where:
    return (Where().add("u.account_id = {}", f.account_id).add("u.event_time >= {}", f.start)
            .add("u.event_time < {}", f.end).add("u.kind = {}", f.kind)
            .add("{} IN (u.calling, u.called, u.msisdn)", f.number))


async def items(db: Db, f: ItemFilter, *, after: tuple[dt.datetime, int] | None,
                limit: int, newest_first: bool = False) -> list[ItemRow]:
    """Records of ``f`` in (event time, usage id) order after ``after``, ``limit`` at most;
    ``newest_first``: in the reverse order, before ``after`` (the console's pages)."""
    w = _where(f).keyset("u.event_time, u.usage_id", after, descending=newest_first)
    order = " DESC" if newest_first else ""
    rows = await db.fetch(_ITEM_COLUMNS + _ACTIVE_CHARGE + w.sql()
                          + f" ORDER BY u.event_time{order}, u.usage_id{order}"
                          + w.limit(limit), *w.args)
    return [ItemRow(**dict(r)) for r in rows]


async def totals(db: Db, account_id: str, start: dt.datetime,
                 end: dt.datetime) -> list[KindTotal]:
    """Records, duration, volume and charge per service and currency of [start, end).

    One join of the span's records and charges, each charge row signed as the analytics
    rollups count it (a reversal: -1 record, minus its units): a rerated record stays one
    record at its new charge, and one whose charge was taken back without a new one counts
    nothing. A probe per record, as ``items`` does, costs 4× more over a busy month."""
    rows = await db.fetch(
        "SELECT u.kind, c.currency, sum(s.sign)::bigint AS records,"
        " coalesce(sum(s.sign * u.duration_s), 0)::bigint AS duration_s,"
        " coalesce(sum(s.sign * (coalesce(u.volume_up, 0) + coalesce(u.volume_down, 0))),"
        " 0)::bigint AS volume, coalesce(sum(c.amount_micros), 0)::bigint AS amount_micros"
        " FROM usage_records u LEFT JOIN charges c ON c.account_id = u.account_id"
        "  AND c.event_time = u.event_time AND c.usage_id = u.usage_id"
        " CROSS JOIN LATERAL (SELECT CASE WHEN c.kind = 'reversal' THEN -1 ELSE 1 END"
        "  AS sign) s"
        " WHERE u.account_id = $1 AND u.event_time >= $2 AND u.event_time < $3"
        " GROUP BY u.kind, c.currency HAVING sum(s.sign) <> 0"
        " ORDER BY u.kind, c.currency NULLS LAST",
        account_id, start, end)
    return [KindTotal(currency=None if r["currency"] is None else r["currency"].strip(),
                      **{k: r[k] for k in ("kind", "records", "duration_s", "volume",
                                           "amount_micros")}) for r in rows]


async def last_invoiced_end(db: Db, account_id: str, period: str, start: dt.datetime,
                            end: dt.datetime) -> dt.datetime | None:
    """Where the account's last finalised invoice before ``period`` ended, if it reaches
    into the cycle [start, end) or ends within a month before it (as a bill run reads it)."""
    value: dt.datetime | None = await db.fetchval(
        "SELECT max(period_end) FROM invoices WHERE account_id = $1 AND status = 'finalised'"
        " AND period < $2 AND period_end > $3::timestamptz - interval '1 month'"
        " AND period_start < $4", account_id, period, start, end)
    return value


async def invoiced_items(db: Db, account_id: str, invoice_id: int,
                         limit: int) -> tuple[int, int, list[tuple[int, ItemRow]]]:
    """The usage records an invoice billed, each with what the invoice billed for it (its
    charges on the invoice summed: a rerate before billing bills charge, reversal and new
    charge together) and the line that bills it, in time order: (how many, what the invoice
    bills for them all, the first ``limit``)."""
    rows = await db.fetch(
        "WITH billed AS (SELECT c.event_time, c.usage_id, max(l.line_no) AS line_no,"
        "  sum(c.amount_micros)::bigint AS amount_micros, min(rtrim(c.currency)) AS currency,"
        "  (array_agg(c.zone ORDER BY c.charge_id DESC))[1] AS zone,"
        "  (array_agg(c.band ORDER BY c.charge_id DESC))[1] AS band"
        "  FROM invoice_line_charges l"
        "  JOIN charges c ON c.account_id = l.account_id AND c.charge_id = l.charge_id"
        "   AND c.event_time < (SELECT period_end FROM invoices"
        "    WHERE account_id = $1 AND invoice_id = $2)"
        "  WHERE l.account_id = $1 AND l.invoice_id = $2 AND c.usage_id IS NOT NULL"
        "  GROUP BY c.event_time, c.usage_id)"
        " SELECT count(*) OVER () AS total,"
        " coalesce(sum(b.amount_micros) OVER (), 0)::bigint AS total_micros, b.line_no,"
        " u.usage_id, u.event_time, u.source, u.kind, u.calling, u.called, u.msisdn,"
        " u.duration_s, u.volume_up, u.volume_down,"
        " u.quantity::text AS quantity, u.unit, b.zone, b.band, b.amount_micros, b.currency"
        " FROM billed b JOIN usage_records u ON u.account_id = $1"
        "  AND u.event_time = b.event_time AND u.usage_id = b.usage_id"
        " ORDER BY u.event_time, u.usage_id LIMIT $3", account_id, invoice_id, limit)
    total, micros = (rows[0]["total"], rows[0]["total_micros"]) if rows else (0, 0)
    return total, micros, [(r["line_no"], ItemRow(**{k: v for k, v in dict(r).items()
                                                     if k not in ("line_no", "total",
                                                                  "total_micros")}))
                           for r in rows]


async def itemised(db: Db, account_id: str) -> bool:
    """Whether the account's invoices carry the itemised list of its records."""
    return bool(await db.fetchval(
        "SELECT itemised_invoice FROM accounts WHERE account_id = $1", account_id))
