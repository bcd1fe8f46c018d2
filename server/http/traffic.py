"""`/v1/usage` and `/v1/charges`: query rated traffic by account, period and kind; totals."""

from __future__ import annotations

from typing import Literal

import asyncpg
import msgspec
from aiohttp import web

from billing_oss.server.http.keys import POOL
from billing_oss.server.http.pagination import Cursor, Limit, decode_cursor, page
from billing_oss.server.http.routing import Api, reply
from billing_oss.server.http.scope import narrowed
from billing_oss.server.http.types import Id, IntId, Money, Text, Timestamp, money
from billing_oss.server.http.validation import decode_query
from billing_oss.server.store import traffic_repo
from billing_oss.server.store.traffic_repo import Period, UsageRow

UsageKind = Literal["voice", "sms", "data", "event"]
MINE = ("viewer", "customer")  # a customer key: its own account's only


class UsageQuery(msgspec.Struct, frozen=True, kw_only=True):
    account_id: Id | None = None
    from_: Timestamp | None = msgspec.field(name="from", default=None)
    to: Timestamp | None = None
    kind: UsageKind | None = None
    source: Text | None = None
    limit: Limit = 50
    cursor: Cursor | None = None


class ChargeQuery(msgspec.Struct, frozen=True, kw_only=True):
    account_id: Id | None = None
    from_: Timestamp | None = msgspec.field(name="from", default=None)
    to: Timestamp | None = None
    kind: Literal["charge", "reversal"] | None = None
    rerate_job_id: IntId | None = None
    limit: Limit = 50
    cursor: Cursor | None = None


class TotalsQuery(msgspec.Struct, frozen=True, kw_only=True):
    account_id: Id | None = None
    from_: Timestamp | None = msgspec.field(name="from", default=None)
    to: Timestamp | None = None


class UsagePage(msgspec.Struct, frozen=True):
    items: list[UsageRow]
    next_cursor: str | None


class ChargeView(msgspec.Struct, frozen=True, kw_only=True):
    charge_id: int
    account_id: str
    event_time: Timestamp
    usage_id: int | None
    kind: Literal["charge", "reversal"]
    amount: Money
    tariff_version_id: int | None
    zone: str | None
    band: str | None
    reverses_charge_id: int | None
    rerate_job_id: int | None
    created_at: Timestamp


class ChargePage(msgspec.Struct, frozen=True):
    items: list[ChargeView]
    next_cursor: str | None


class CurrencyTotal(msgspec.Struct, frozen=True, kw_only=True):
    """Sums in one currency: ``net = charged + reversed`` (reversals are negative amounts)."""

    currency: str
    charges: int
    reversals: int
    charged: Money
    reversed: Money
    net: Money


class ChargeTotals(msgspec.Struct, frozen=True):
    account_id: str | None
    items: list[CurrencyTotal]


async def list_usage(request: web.Request) -> web.Response:
    q = decode_query(request, UsageQuery)
    q = msgspec.structs.replace(q, account_id=narrowed(request, q.account_id))
    return reply(await usage_page(request.app[POOL], q))


async def usage_page(pool: asyncpg.Pool, q: UsageQuery) -> UsagePage:
    """One page of usage records (REST and SOAP alike)."""
    rows = await traffic_repo.usage(
        pool, Period(account_id=q.account_id, start=q.from_, end=q.to),
        kind=q.kind, source=q.source, after=decode_cursor(q.cursor, tuple[Timestamp, IntId]),
        limit=q.limit,
    )
    items, next_cursor = page(rows, q.limit, lambda u: (u.event_time, u.usage_id))
    return UsagePage(items, next_cursor)


async def list_charges(request: web.Request) -> web.Response:
    q = decode_query(request, ChargeQuery)
    rows = await traffic_repo.charges(
        request.app[POOL], Period(account_id=narrowed(request, q.account_id), start=q.from_,
                                  end=q.to),
        kind=q.kind, rerate_job_id=q.rerate_job_id,
        after=decode_cursor(q.cursor, tuple[Timestamp, IntId]), limit=q.limit,
    )
    items, next_cursor = page(rows, q.limit, lambda c: (c.event_time, c.charge_id))
    return reply(ChargePage([_charge(c) for c in items], next_cursor))


async def charge_totals(request: web.Request) -> web.Response:
    q = decode_query(request, TotalsQuery)
    account_id = narrowed(request, q.account_id)
    rows = await traffic_repo.totals(
        request.app[POOL], Period(account_id=account_id, start=q.from_, end=q.to))
    return reply(ChargeTotals(account_id, [
        CurrencyTotal(currency=t.currency, charges=t.charges, reversals=t.reversals,
                      charged=money(t.charged_micros, t.currency),
                      reversed=money(t.reversed_micros, t.currency),
                      net=money(t.charged_micros + t.reversed_micros, t.currency))
        for t in rows
    ]))


def _charge(c: traffic_repo.ChargeRow) -> ChargeView:
    return ChargeView(
        charge_id=c.charge_id, account_id=c.account_id, event_time=c.event_time,
        usage_id=c.usage_id, kind=c.kind,  # type: ignore[arg-type]
        amount=money(c.amount_micros, c.currency), tariff_version_id=c.tariff_version_id,
        zone=c.zone, band=c.band, reverses_charge_id=c.reverses_charge_id,
        rerate_job_id=c.rerate_job_id, created_at=c.created_at,
    )


def register(api: Api) -> None:
    api.add("GET", "/v1/usage", list_usage, summary="Query usage records", tag="usage",
            query=UsageQuery, response=UsagePage, roles=MINE)
    api.add("GET", "/v1/charges", list_charges, summary="Query charges and reversals",
            tag="charges", query=ChargeQuery, response=ChargePage, roles=MINE)
    api.add("GET", "/v1/charges/totals", charge_totals,
            summary="Totals per currency: charged, reversed, net", tag="charges",
            query=TotalsQuery, response=ChargeTotals, roles=MINE)
