"""`/v1/products`: what subscriptions bill each cycle (recurring fee, periodic usage pricing).

A subscription names its product by id (``subscriptions.product``). ``PUT`` creates or
replaces a product whole; the rules are the catalog file's (``server.catalog.billing``).
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from billing_oss.core.errors import CatalogError
from billing_oss.server.catalog.billing import ProductIn, check_product
from billing_oss.server.catalog.pricing import Product, UsageComponent
from billing_oss.server.http.auth import actor
from billing_oss.server.http.catalog_schema import invalid
from billing_oss.server.http.keys import POOL
from billing_oss.server.http.pagination import ListQuery, decode_cursor, page
from billing_oss.server.http.routing import Api, reply
from billing_oss.server.http.types import Id, Money, money, plain
from billing_oss.server.http.validation import decode_body, decode_path, decode_query
from billing_oss.server.store import products_repo


class TierView(msgspec.Struct, frozen=True):
    up_to: str | None  # units, inclusive; null: open-ended
    price: str


class UsageComponentView(msgspec.Struct, frozen=True, kw_only=True):
    service: str
    model: str
    unit: str
    unit_size: int
    included: str
    price: str
    package_size: str
    tiers: list[TierView]


class ProductView(msgspec.Struct, frozen=True, kw_only=True):
    product_id: str
    name: str
    currency: str
    recurring_fee: Money
    tax_class: str
    usage_pricing: list[UsageComponentView]


class ProductPage(msgspec.Struct, frozen=True):
    items: list[ProductView]
    next_cursor: str | None


class ProductPath(msgspec.Struct, frozen=True):
    product_id: Id


async def list_products(request: web.Request) -> web.Response:
    q = decode_query(request, ListQuery)
    after = decode_cursor(q.cursor, tuple[str])
    rows = await products_repo.find(request.app[POOL], after[0] if after else None, q.limit)
    items, next_cursor = page(rows, q.limit, lambda p: (p.product_id,))
    return reply(ProductPage([view(p) for p in items], next_cursor))


async def get_product(request: web.Request) -> web.Response:
    path = decode_path(request, ProductPath)
    return reply(view(await products_repo.get(request.app[POOL], path.product_id)))


async def put_product(request: web.Request) -> web.Response:
    path = decode_path(request, ProductPath)
    body = await decode_body(request, ProductIn)
    try:
        product = check_product(body, path.product_id, body.currency, "$")
    except CatalogError as exc:
        raise invalid(exc) from None
    stored, created = await products_repo.put(request.app[POOL], actor(request), product)
    return reply(view(stored), status=201 if created else 200)


def view(p: Product) -> ProductView:
    return ProductView(
        product_id=p.product_id, name=p.name, currency=p.currency,
        recurring_fee=money(p.recurring_fee_micros, p.currency), tax_class=p.tax_class,
        usage_pricing=[_component(c) for c in p.usage_pricing],
    )


def _component(c: UsageComponent) -> UsageComponentView:
    return UsageComponentView(
        service=c.service, model=c.model, unit=c.unit, unit_size=c.unit_size,
        included=plain(c.included), price=plain(c.price), package_size=plain(c.package_size),
        tiers=[TierView(None if t.up_to is None else plain(t.up_to), plain(t.price))
               for t in c.tiers],
    )


def register(api: Api) -> None:
    tag = "products"
    api.add("GET", "/v1/products", list_products, summary="List products", tag=tag,
            query=ListQuery, response=ProductPage, roles=("viewer",))
    api.add("GET", "/v1/products/{product_id}", get_product, summary="Read a product",
            tag=tag, params=ProductPath, response=ProductView, roles=("viewer",))
    api.add("PUT", "/v1/products/{product_id}", put_product,
            summary="Create (201) or replace (200) a product; drafts pick it up when "
            "recomputed, finalised invoices keep what they billed", tag=tag,
            params=ProductPath, request=ProductIn, response=ProductView, status=201,
            also=(200,), roles=("operator",))
