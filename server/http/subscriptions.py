"""`/v1/subscriptions`: which tariff an account is on, and from when to when."""

from __future__ import annotations

import asyncpg
import msgspec
from aiohttp import web

from billing_oss.server.http.auth import actor
from billing_oss.server.http.keys import POOL
from billing_oss.server.http.pagination import Cursor, Limit, decode_cursor, page
from billing_oss.server.http.routing import Api, reply
from billing_oss.server.http.types import Id, IntId, Text, Timestamp
from billing_oss.server.http.validation import decode_body, decode_path, decode_query
from billing_oss.server.store import subscriptions_repo
from billing_oss.server.store.subscriptions_repo import Subscription, SubscriptionFilter


class SubscriptionCreate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    account_id: Id
    tariff_id: Id
    product: Text = ""
    valid_from: Timestamp
    valid_to: Timestamp | None = None


class SubscriptionUpdate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """End (or re-open) a subscription by ``valid_to``; rename its ``product``."""

    product: Text | msgspec.UnsetType = msgspec.UNSET
    valid_to: Timestamp | msgspec.UnsetType | None = msgspec.UNSET


class SubscriptionQuery(msgspec.Struct, frozen=True, kw_only=True):
    account_id: Id | None = None
    tariff_id: Id | None = None
    active_at: Timestamp | None = None
    limit: Limit = 50
    cursor: Cursor | None = None


class SubscriptionPath(msgspec.Struct, frozen=True):
    subscription_id: IntId


class SubscriptionPage(msgspec.Struct, frozen=True):
    items: list[Subscription]
    next_cursor: str | None


async def create_subscription(request: web.Request) -> web.Response:
    body = await decode_body(request, SubscriptionCreate)
    return reply(await create(request.app[POOL], actor(request), body), status=201)


async def create(pool: asyncpg.Pool, who: str, body: SubscriptionCreate) -> Subscription:
    """Put an account on a tariff (REST and SOAP alike)."""
    return await subscriptions_repo.create(pool, who, body.account_id, body.tariff_id,
                                           body.product, body.valid_from, body.valid_to)


async def get_subscription(request: web.Request) -> web.Response:
    path = decode_path(request, SubscriptionPath)
    return reply(await subscriptions_repo.get(request.app[POOL], path.subscription_id))


async def update_subscription(request: web.Request) -> web.Response:
    path = decode_path(request, SubscriptionPath)
    body = await decode_body(request, SubscriptionUpdate)
    return reply(await update(request.app[POOL], actor(request), path.subscription_id, body))


async def update(pool: asyncpg.Pool, who: str, subscription_id: int,
                 body: SubscriptionUpdate) -> Subscription:
    """End, re-open or rename a subscription (REST and SOAP alike)."""
    return await subscriptions_repo.update(
        pool, who, subscription_id,
        product=None if body.product is msgspec.UNSET else body.product,
        valid_to=None if body.valid_to is msgspec.UNSET else body.valid_to,
        set_valid_to=body.valid_to is not msgspec.UNSET,
    )


async def list_subscriptions(request: web.Request) -> web.Response:
    q = decode_query(request, SubscriptionQuery)
    after = decode_cursor(q.cursor, tuple[IntId])
    rows = await subscriptions_repo.find(request.app[POOL], SubscriptionFilter(
        account_id=q.account_id, tariff_id=q.tariff_id, active_at=q.active_at,
        after=after[0] if after else None, limit=q.limit,
    ))
    items, next_cursor = page(rows, q.limit, lambda s: (s.subscription_id,))
    return reply(SubscriptionPage(items, next_cursor))


def register(api: Api) -> None:
    tag = "subscriptions"
    api.add("POST", "/v1/subscriptions", create_subscription,
            summary="Put an account on a tariff for a period", tag=tag,
            request=SubscriptionCreate, response=Subscription, status=201,
            roles=("operator",), errors=(409,))
    api.add("GET", "/v1/subscriptions", list_subscriptions, summary="List subscriptions",
            tag=tag, query=SubscriptionQuery, response=SubscriptionPage, roles=("viewer",))
    api.add("GET", "/v1/subscriptions/{subscription_id}", get_subscription,
            summary="Read a subscription", tag=tag, params=SubscriptionPath,
            response=Subscription, roles=("viewer",))
    api.add("PATCH", "/v1/subscriptions/{subscription_id}", update_subscription,
            summary="End or rename a subscription", tag=tag, params=SubscriptionPath,
            request=SubscriptionUpdate, response=Subscription, roles=("operator",),
            errors=(409,))
