"""`/v1/webhooks`: register endpoints for event types, rotate their secrets, read their
delivery log, replay and ping (admin only: the responses carry signing secrets)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from aiohttp import web

from billing_oss.server.http.keys import CONFIG, POOL
from billing_oss.server.http.pagination import Cursor, Limit, ListQuery, decode_cursor, page
from billing_oss.server.http.routing import Api, reply
from billing_oss.server.http.types import IntId, LongText, Text, Timestamp
from billing_oss.server.http.validation import decode_body, decode_path, decode_query
from billing_oss.server.integrations import webhook_repo, webhooks
from billing_oss.server.integrations.webhook_repo import Attempt, DeliveryRow, Endpoint
from billing_oss.server.integrations.webhooks import NewEndpoint, Rotated

Url = Annotated[str, msgspec.Meta(min_length=1, max_length=2000, pattern="^[^\\x00\\s]+$")]
EventType = Annotated[str, msgspec.Meta(min_length=1, max_length=100,
                                        pattern="^(\\*|[a-z0-9_.]+)$")]
EventTypes = Annotated[list[EventType], msgspec.Meta(min_length=1, max_length=100)]
Concurrency = Annotated[int, msgspec.Meta(ge=1, le=1000)]
EventId = Annotated[str, msgspec.Meta(min_length=1, max_length=100,
                                      pattern="^[A-Za-z0-9_:-]+$")]
GraceSeconds = Annotated[float, msgspec.Meta(ge=0, le=30 * 86400)]


class WebhookCreate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    url: Url
    event_types: EventTypes
    description: Text = ""
    max_concurrency: Concurrency | None = None


class WebhookUpdate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    url: Url | None = None
    event_types: EventTypes | None = None
    description: Text | None = None
    max_concurrency: Concurrency | None = None
    enabled: bool | None = None


class RotateRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    grace_s: GraceSeconds | None = None  # default: webhooks.rotation_grace_s


class ReplayRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    event_id: EventId | None = None
    since: Timestamp | None = None
    until: Timestamp | None = None


class PingRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    message: LongText = "ping"


class Queued(msgspec.Struct, frozen=True, kw_only=True):
    queued: int


class PingQueued(msgspec.Struct, frozen=True, kw_only=True):
    event_id: str


class EndpointPath(msgspec.Struct, frozen=True):
    endpoint_id: IntId


class EndpointPage(msgspec.Struct, frozen=True):
    items: list[Endpoint]
    next_cursor: str | None


class DeliveryQuery(msgspec.Struct, frozen=True, kw_only=True):
    state: Literal["pending", "delivered", "dead"] | None = None
    limit: Limit = 50
    cursor: Cursor | None = None


class DeliveryView(msgspec.Struct, frozen=True, kw_only=True):
    delivery: DeliveryRow
    attempts: list[Attempt]


class DeliveryPage(msgspec.Struct, frozen=True):
    items: list[DeliveryView]
    next_cursor: str | None


async def create_webhook(request: web.Request) -> web.Response:
    body = await decode_body(request, WebhookCreate)
    new = await webhooks.create(request.app[POOL], request.app[CONFIG].webhooks, body.url,
                                body.event_types, body.description, body.max_concurrency)
    return reply(new, status=201)


async def list_webhooks(request: web.Request) -> web.Response:
    q = decode_query(request, ListQuery)
    after = decode_cursor(q.cursor, tuple[int])
    async with request.app[POOL].acquire() as conn:
        rows = await webhook_repo.find(conn, after[0] if after else None, q.limit + 1)
    items, next_cursor = page(rows, q.limit, lambda e: (e.endpoint_id,))
    return reply(EndpointPage(items, next_cursor))


async def get_webhook(request: web.Request) -> web.Response:
    path = decode_path(request, EndpointPath)
    async with request.app[POOL].acquire() as conn:
        return reply(await webhook_repo.get(conn, path.endpoint_id))


async def update_webhook(request: web.Request) -> web.Response:
    path = decode_path(request, EndpointPath)
    body = await decode_body(request, WebhookUpdate)
    endpoint = await webhooks.update(
        request.app[POOL], request.app[CONFIG].webhooks, path.endpoint_id, url=body.url,
        event_types=body.event_types, description=body.description,
        max_concurrency=body.max_concurrency, enabled=body.enabled)
    return reply(endpoint)


async def delete_webhook(request: web.Request) -> web.Response:
    path = decode_path(request, EndpointPath)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        return reply(await webhook_repo.delete(conn, path.endpoint_id))


async def rotate_webhook_secret(request: web.Request) -> web.Response:
    path = decode_path(request, EndpointPath)
    body = await decode_body(request, RotateRequest)
    rotated = await webhooks.rotate(request.app[POOL], request.app[CONFIG].webhooks,
                                    path.endpoint_id, body.grace_s)
    return reply(rotated)


async def ping_webhook(request: web.Request) -> web.Response:
    path = decode_path(request, EndpointPath)
    body = await decode_body(request, PingRequest)
    event_id = await webhooks.ping(request.app[POOL], path.endpoint_id, body.message)
    return reply(PingQueued(event_id=event_id), status=202)


async def replay_webhook(request: web.Request) -> web.Response:
    path = decode_path(request, EndpointPath)
    body = await decode_body(request, ReplayRequest)
    count = await webhooks.replay(request.app[POOL], path.endpoint_id, event_id=body.event_id,
                                  since=body.since, until=body.until)
    return reply(Queued(queued=count), status=202)


async def list_webhook_deliveries(request: web.Request) -> web.Response:
    path = decode_path(request, EndpointPath)
    q = decode_query(request, DeliveryQuery)
    after = decode_cursor(q.cursor, tuple[int])
    async with request.app[POOL].acquire() as conn:
        await webhook_repo.get(conn, path.endpoint_id)
        rows = await webhook_repo.deliveries(conn, path.endpoint_id, state=q.state,
                                             after=after[0] if after else None,
                                             limit=q.limit + 1)
        items, next_cursor = page(rows, q.limit, lambda d: (d.delivery_id,))
        tried = await webhook_repo.attempts(conn, [d.delivery_id for d in items])
    by_delivery: dict[int, list[Attempt]] = {}
    for a in tried:
        by_delivery.setdefault(a.delivery_id, []).append(a)
    return reply(DeliveryPage([DeliveryView(delivery=d, attempts=by_delivery.get(
        d.delivery_id, [])) for d in items], next_cursor))


def register(api: Api) -> None:
    tag, admin = "webhooks", ("admin",)
    api.add("POST", "/v1/webhooks", create_webhook, tag=tag, roles=admin,
            summary="Register an endpoint for event types; the response carries its signing "
            "secret, shown this once", request=WebhookCreate, response=NewEndpoint, status=201)
    api.add("GET", "/v1/webhooks", list_webhooks, tag=tag, roles=admin,
            summary="List endpoints", query=ListQuery, response=EndpointPage)
    api.add("GET", "/v1/webhooks/{endpoint_id}", get_webhook, tag=tag, roles=admin,
            summary="One endpoint", params=EndpointPath, response=Endpoint)
    api.add("PATCH", "/v1/webhooks/{endpoint_id}", update_webhook, tag=tag, roles=admin,
            summary="Change an endpoint; enabled=true re-enables a disabled one",
            params=EndpointPath, request=WebhookUpdate, response=Endpoint)
    api.add("DELETE", "/v1/webhooks/{endpoint_id}", delete_webhook, tag=tag, roles=admin,
            summary="Delete an endpoint and its delivery log", params=EndpointPath,
            response=Endpoint)
    api.add("POST", "/v1/webhooks/{endpoint_id}/rotate-secret", rotate_webhook_secret,
            tag=tag, roles=admin, summary="A new signing secret; the old one keeps signing "
            "beside it for grace_s", params=EndpointPath, request=RotateRequest,
            response=Rotated)
    api.add("POST", "/v1/webhooks/{endpoint_id}/ping", ping_webhook, tag=tag, roles=admin,
            summary="Send the endpoint a webhook.ping event", params=EndpointPath,
            request=PingRequest, response=PingQueued, status=202)
    api.add("POST", "/v1/webhooks/{endpoint_id}/replay", replay_webhook, tag=tag,
            roles=admin, summary="Deliver one event (event_id) or a time range [since, until) "
            "again", params=EndpointPath, request=ReplayRequest, response=Queued, status=202)
    api.add("GET", "/v1/webhooks/{endpoint_id}/deliveries", list_webhook_deliveries, tag=tag,
            roles=admin, summary="The endpoint's deliveries, newest first, with every attempt "
            "(status, latency, error)", params=EndpointPath, query=DeliveryQuery,
            response=DeliveryPage)
