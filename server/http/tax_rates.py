"""`/v1/tax-rates`: VAT/GST rate periods by jurisdiction (the buyer's country) and tax
class (a product's or an adjustment's ``tax_class``).

Periods are added, not edited. A new open-ended period that starts inside the current
open-ended one ends that one on its start day (a rate change from a date, e.g. 19 % → 16 %
from 2020-07-01, then 16 % → 19 % from 2021-01-01); any other overlap with a stored period of
the same jurisdiction and class is a 409. The same period posted again is a 200.
"""

from __future__ import annotations

import datetime as dt

import msgspec
from aiohttp import web

from billing_oss.core.errors import CatalogError
from billing_oss.server.catalog.billing import Jurisdiction, TaxClass, TaxRateDef, check_tax_rate
from billing_oss.server.catalog.tax import TaxRate
from billing_oss.server.http.auth import actor
from billing_oss.server.http.catalog_schema import invalid
from billing_oss.server.http.keys import POOL
from billing_oss.server.http.pagination import Cursor, Limit, decode_cursor, page
from billing_oss.server.http.routing import Api, reply
from billing_oss.server.http.types import plain
from billing_oss.server.http.validation import decode_body, decode_query
from billing_oss.server.store import tax_rates_repo
from billing_oss.server.store.tax_rates_repo import RateFilter


class TaxRateView(msgspec.Struct, frozen=True, kw_only=True):
    jurisdiction: str
    tax_class: str
    category: str  # UNCL 5305
    rate: str  # percent
    valid_from: dt.date
    valid_to: dt.date | None  # exclusive; null: open-ended


class TaxRatePage(msgspec.Struct, frozen=True):
    items: list[TaxRateView]
    next_cursor: str | None


class TaxRateQuery(msgspec.Struct, frozen=True, kw_only=True):
    jurisdiction: Jurisdiction | None = None
    tax_class: TaxClass | None = None
    valid_on: dt.date | None = None  # only the periods in force that day
    limit: Limit = 50
    cursor: Cursor | None = None


async def list_tax_rates(request: web.Request) -> web.Response:
    q = decode_query(request, TaxRateQuery)
    after = decode_cursor(q.cursor, tuple[str, str, dt.date])
    rows = await tax_rates_repo.find(request.app[POOL], RateFilter(
        jurisdiction=q.jurisdiction, tax_class=q.tax_class, valid_on=q.valid_on, after=after,
        limit=q.limit))
    items, next_cursor = page(rows, q.limit, lambda r: (r.jurisdiction, r.tax_class,
                                                        r.valid_from))
    return reply(TaxRatePage([view(r) for r in items], next_cursor))


async def add_tax_rate(request: web.Request) -> web.Response:
    body = await decode_body(request, TaxRateDef)
    try:
        rate = check_tax_rate(body, "$")
    except CatalogError as exc:
        raise invalid(exc) from None
    added = await tax_rates_repo.add(request.app[POOL], actor(request), rate)
    return reply(view(added.rate), status=201 if added.created else 200)


def view(r: TaxRate) -> TaxRateView:
    return TaxRateView(jurisdiction=r.jurisdiction, tax_class=r.tax_class,
                       category=r.category, rate=plain(r.rate), valid_from=r.valid_from,
                       valid_to=r.valid_to)


def register(api: Api) -> None:
    tag = "tax-rates"
    api.add("GET", "/v1/tax-rates", list_tax_rates,
            summary="List tax rate periods by jurisdiction, class and start", tag=tag,
            query=TaxRateQuery, response=TaxRatePage, roles=("viewer",))
    api.add("POST", "/v1/tax-rates", add_tax_rate,
            summary="Add a rate period (201; the same again: 200); a new open-ended period "
            "ends the open-ended one it starts in, any other overlap is a 409", tag=tag,
            request=TaxRateDef, response=TaxRateView, status=201, also=(200,),
            roles=("operator",), errors=(409,))
