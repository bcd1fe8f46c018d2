"""Webhook endpoints as the operator manages them (HTTP routes and the ``webhook`` verb):
register, change, delete, rotate the secret, ping, read the delivery log, replay.

Delivery itself is ``server.integrations.delivery``; this module only writes what it reads.
"""

from __future__ import annotations

import datetime as dt

import asyncpg
import msgspec

from billing_oss.core.errors import InvalidRequest
from billing_oss.server.config import WebhooksConfig
from billing_oss.server.integrations import outbox, webhook_repo
from billing_oss.server.integrations.events import REGISTRY, WebhookPing
from billing_oss.server.integrations.targets import TargetRefused, check_url, new_secret
from billing_oss.server.integrations.webhook_repo import Endpoint

ALL = "*"


class NewEndpoint(msgspec.Struct, frozen=True, kw_only=True):
    endpoint: Endpoint
    secret: str  # shown at creation and rotation only


class Rotated(msgspec.Struct, frozen=True, kw_only=True):
    endpoint_id: int
    secret: str
    previous_expires_at: dt.datetime  # until then the previous secret signs too


def checked_url(url: str, settings: WebhooksConfig) -> str:
    try:
        return check_url(url, allow_http=settings.allow_http,
                         allow_private=settings.allow_private)
    except TargetRefused as exc:
        raise InvalidRequest(f"url: {exc}", errors=[
            {"location": "body", "path": "$.url", "message": str(exc)}]) from None


def checked_types(types: list[str]) -> list[str]:
    """Known event types (or ``*`` for all), each once, in the order given."""
    if not types:
        raise InvalidRequest("event_types: subscribe to at least one event type (or \"*\")",
                             errors=[{"location": "body", "path": "$.event_types",
                                      "message": "empty"}])
    for i, name in enumerate(types):
        if name != ALL and name not in REGISTRY:
            raise InvalidRequest(
                f"event_types[{i}]: no event type {name!r}; known: {', '.join(sorted(REGISTRY))}",
                errors=[{"location": "body", "path": f"$.event_types[{i}]",
                         "message": "unknown event type"}])
    return list(dict.fromkeys(types))


async def create(pool: asyncpg.Pool, settings: WebhooksConfig, url: str,
                 event_types: list[str], description: str = "",
                 max_concurrency: int | None = None) -> NewEndpoint:
    url, types = checked_url(url, settings), checked_types(event_types)
    secret = new_secret()
    async with pool.acquire() as conn, conn.transaction():
        endpoint = await webhook_repo.create(conn, url, types, description,
                                             max_concurrency or settings.max_concurrency, secret)
    return NewEndpoint(endpoint=endpoint, secret=secret)


async def update(pool: asyncpg.Pool, settings: WebhooksConfig, endpoint_id: int, *,
                 url: str | None = None, event_types: list[str] | None = None,
                 description: str | None = None, max_concurrency: int | None = None,
                 enabled: bool | None = None) -> Endpoint:
    async with pool.acquire() as conn, conn.transaction():
        return await webhook_repo.update(
            conn, endpoint_id, url=None if url is None else checked_url(url, settings),
            event_types=None if event_types is None else checked_types(event_types),
            description=description, max_concurrency=max_concurrency, enabled=enabled)


async def rotate(pool: asyncpg.Pool, settings: WebhooksConfig, endpoint_id: int,
                 grace_s: float | None = None) -> Rotated:
    grace = settings.rotation_grace_s if grace_s is None else grace_s
    secret = new_secret()
    async with pool.acquire() as conn, conn.transaction():
        await webhook_repo.rotate(conn, endpoint_id, secret, grace)
        until = await webhook_repo.from_now(conn, grace)
    return Rotated(endpoint_id=endpoint_id, secret=secret, previous_expires_at=until)


async def ping(pool: asyncpg.Pool, endpoint_id: int, message: str) -> str:
    """Send the endpoint a ``webhook.ping`` event (whatever it subscribes to); its id."""
    async with pool.acquire() as conn, conn.transaction():
        await webhook_repo.get(conn, endpoint_id)
        return await outbox.emit(conn, WebhookPing(endpoint_id=endpoint_id, message=message),
                                 stream=f"webhook:{endpoint_id}")


async def replay(pool: asyncpg.Pool, endpoint_id: int, *, event_id: str | None = None,
                 since: dt.datetime | None = None, until: dt.datetime | None = None) -> int:
    """Queue one event (by id) or a time range ``[since, until)`` again for the endpoint."""
    if (event_id is None) == (since is None):
        raise InvalidRequest("replay one event (event_id) or a time range (since, until)",
                             errors=[{"location": "body", "path": "$",
                                      "message": "give event_id, or since and until"}])
    if since is not None:
        until = until or dt.datetime.now(dt.UTC)
        if until <= since:
            raise InvalidRequest("until must be after since", errors=[
                {"location": "body", "path": "$.until", "message": "not after since"}])
    async with pool.acquire() as conn, conn.transaction():
        return await webhook_repo.replay(conn, endpoint_id, event_id=event_id, since=since,
                                         until=until)
