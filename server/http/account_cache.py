"""Encoded `GET /v1/accounts/{id}` responses, cached per process and dropped on any change.

Account reads are the API's hottest path (CRM and self-care front ends poll them). A cached
body is dropped: at once when this process writes the account; on PostgreSQL's
``NOTIFY billing_catalog`` (sent by the triggers on ``accounts`` and ``account_identifiers``
of every writer, in any process) for all accounts; and after ``TTL_SECONDS`` regardless,
which bounds staleness should the listening connection be lost.

An ``epoch`` guards the race where a read started before a change and finishes after it:
the body it fetched is only cached if no invalidation happened in between.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from aiohttp import web

log = logging.getLogger(__name__)

TTL_SECONDS = 5.0
MAX_ENTRIES = 100_000
CHANNEL = "billing_catalog"


class AccountCache:
    def __init__(self, ttl_s: float = TTL_SECONDS) -> None:
        self._ttl = ttl_s
        self._entries: dict[str, tuple[float, bytes]] = {}
        self.epoch = 0

    def get(self, account_id: str) -> bytes | None:
        hit = self._entries.get(account_id)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def put(self, account_id: str, body: bytes, epoch: int) -> None:
        if epoch != self.epoch:
            return  # something changed while this body was read: it may be stale
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[account_id] = (time.monotonic() + self._ttl, body)

    def forget(self, account_id: str) -> None:
        self.epoch += 1
        self._entries.pop(account_id, None)

    def clear(self, *_: Any) -> None:
        self.epoch += 1
        self._entries.clear()


ACCOUNT_CACHE = web.AppKey("account_cache", AccountCache)


async def listen_for_changes(app: web.Application) -> AsyncIterator[None]:
    """aiohttp cleanup context: LISTEN on one pooled connection while the app runs."""
    from billing_oss.server.http.keys import POOL

    cache = app[ACCOUNT_CACHE]
    conn: Any = None
    try:
        conn = await app[POOL].acquire()
        await conn.add_listener(CHANNEL, cache.clear)
    except (OSError, asyncpg.PostgresError):
        log.warning("account cache: cannot LISTEN; entries expire after their TTL only")
    yield
    if conn is not None:
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            await conn.remove_listener(CHANNEL, cache.clear)
        await app[POOL].release(conn)
