"""`/v1/discounts`: percentage, fixed and volume discounts, per line or per invoice, for
one account or for all.

A discount is created once under its code (the same definition again: 200; another one
under a stored code: 409) and ended rather than deleted: ``DELETE`` sets ``valid_to`` (today
or ``on``), so invoices that name it keep a readable history. It applies to the cycles whose
last day falls in ``[valid_from, valid_to)``; drafts drop it when recomputed.
"""

from __future__ import annotations

import datetime as dt

import msgspec
from aiohttp import web

from billing_oss.core.errors import CatalogError
from billing_oss.server.catalog.billing import DiscountDef, check_discount
from billing_oss.server.http.auth import actor
from billing_oss.server.http.catalog_schema import invalid
from billing_oss.server.http.keys import POOL
from billing_oss.server.http.pagination import Cursor, Limit, decode_cursor, page
from billing_oss.server.http.routing import Api, reply
from billing_oss.server.http.types import Id, IntId, Money, money, plain
from billing_oss.server.http.validation import decode_body, decode_path, decode_query
from billing_oss.server.store import discounts_repo
from billing_oss.server.store.discounts_repo import Discount, DiscountFilter


class VolumeTierView(msgspec.Struct, frozen=True):
    from_: Money = msgspec.field(name="from")  # the discounted base from which it applies
    percent: str


class DiscountView(msgspec.Struct, frozen=True, kw_only=True):
    discount_id: int
    code: str
    kind: str
    scope: str
    account_id: str | None  # null: every account
    service: str | None
    percent: str | None
    amount: Money | None
    tiers: list[VolumeTierView]
    currency: str | None  # null: a percentage discount on invoices of any currency
    description: str
    valid_from: dt.date | None  # null: since always
    valid_to: dt.date | None  # exclusive; null: open-ended


class DiscountPage(msgspec.Struct, frozen=True):
    items: list[DiscountView]
    next_cursor: str | None


class DiscountQuery(msgspec.Struct, frozen=True, kw_only=True):
    account_id: Id | None = None
    code: Id | None = None
    active_on: dt.date | None = None  # only discounts valid that day
    limit: Limit = 50
    cursor: Cursor | None = None


class EndQuery(msgspec.Struct, frozen=True, kw_only=True):
    on: dt.date | None = None  # default: today (UTC)


class DiscountPath(msgspec.Struct, frozen=True):
    discount_id: IntId


async def list_discounts(request: web.Request) -> web.Response:
    q = decode_query(request, DiscountQuery)
    after = decode_cursor(q.cursor, tuple[IntId])
    rows = await discounts_repo.find(request.app[POOL], DiscountFilter(
        account_id=q.account_id, code=q.code, active_on=q.active_on,
        after=after[0] if after else None, limit=q.limit))
    items, next_cursor = page(rows, q.limit, lambda d: (d.discount_id,))
    return reply(DiscountPage([view(d) for d in items], next_cursor))


async def get_discount(request: web.Request) -> web.Response:
    path = decode_path(request, DiscountPath)
    return reply(view(await discounts_repo.get(request.app[POOL], path.discount_id)))


async def create_discount(request: web.Request) -> web.Response:
    body = await decode_body(request, DiscountDef)
    try:
        spec = check_discount(body, "$", None)
    except CatalogError as exc:
        raise invalid(exc) from None
    stored, created = await discounts_repo.create(request.app[POOL], actor(request), spec)
    return reply(view(stored), status=201 if created else 200)


async def end_discount(request: web.Request) -> web.Response:
    path = decode_path(request, DiscountPath)
    q = decode_query(request, EndQuery)
    on = q.on or dt.datetime.now(dt.UTC).date()
    ended = await discounts_repo.end(request.app[POOL], actor(request), path.discount_id, on)
    return reply(view(ended))


def view(d: Discount) -> DiscountView:
    s = d.spec
    return DiscountView(
        discount_id=d.discount_id, code=s.code, kind=s.kind, scope=s.scope,
        account_id=s.account_id, service=s.service,
        percent=None if s.percent is None else plain(s.percent),
        amount=None if s.amount_micros is None or s.currency is None
        else money(s.amount_micros, s.currency),
        tiers=[VolumeTierView(money(t.from_micros, s.currency or ""), plain(t.percent))
               for t in s.tiers],
        currency=s.currency, description=s.description,
        valid_from=None if s.valid_from == dt.date.min else s.valid_from, valid_to=s.valid_to,
    )


def register(api: Api) -> None:
    tag = "discounts"
    api.add("GET", "/v1/discounts", list_discounts, summary="List discounts", tag=tag,
            query=DiscountQuery, response=DiscountPage, roles=("viewer",))
    api.add("POST", "/v1/discounts", create_discount,
            summary="Create a discount under a new code (the same definition again: 200)",
            tag=tag, request=DiscountDef, response=DiscountView, status=201, also=(200,),
            roles=("operator",), errors=(409,))
    api.add("GET", "/v1/discounts/{discount_id}", get_discount, summary="Read a discount",
            tag=tag, params=DiscountPath, response=DiscountView, roles=("viewer",))
    api.add("DELETE", "/v1/discounts/{discount_id}", end_discount,
            summary="End a discount (valid_to = today or `on`); the row and its history stay",
            tag=tag, params=DiscountPath, query=EndQuery, response=DiscountView,
            roles=("operator",))
