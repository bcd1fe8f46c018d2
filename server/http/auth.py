"""Bearer-key authentication and role checks for the routes that declare ``roles``.

A route declares the roles it serves (``roles=("viewer",)``); a key's role grants itself and
the roles below it: admin ⊃ operator ⊃ viewer, and admin ⊃ ingest. A ``customer`` key grants
only ``customer``: the routes that serve one declare it and scope themselves to the key's
account. No key, an unknown key or a revoked key: 401. A valid key without a granting role:
403. Tokens never reach a log line.

Verified keys are cached for a few seconds so a busy API does not pay a query per request.
A revocation, in any process, reaches every process at once: a trigger on ``api_keys`` sends
``NOTIFY api_key_revoked`` with the key's id, and each process drops that key's entries
(``listen_for_revocations``). Should the listening connection be lost, a revocation still
takes effect within ``CACHE_SECONDS``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
from aiohttp import web

from billing_oss.core.errors import ErrorCode
from billing_oss.server.http.keys import POOL, PRINCIPAL
from billing_oss.server.http.problems import problem_for
from billing_oss.server.store import api_keys
from billing_oss.server.store.api_keys import ApiKey

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

GRANTS: dict[str, frozenset[str]] = {
    "admin": frozenset({"admin", "operator", "viewer", "ingest"}),
    "operator": frozenset({"operator", "viewer"}),
    "viewer": frozenset({"viewer"}),
    "ingest": frozenset({"ingest"}),
    "customer": frozenset({"customer"}),
}
CACHE_SECONDS = 5.0
_CACHE_MAX = 10_000
CHANNEL = "api_key_revoked"  # payload: the key id (migration 1471)


class KeyCache:
    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, ApiKey | None]] = {}
        self._epoch = 0

    async def lookup(self, pool: asyncpg.Pool, token: str) -> ApiKey | None:
        now = time.monotonic()
        hit = self._entries.get(token)
        if hit is not None and hit[0] > now:
            return hit[1]
        epoch = self._epoch
        key = await api_keys.verify(pool, token)
        # A revocation heard while verifying may concern this key: use it once, keep nothing.
        if epoch == self._epoch:
            if len(self._entries) >= _CACHE_MAX:
                self._entries.clear()
            self._entries[token] = (now + CACHE_SECONDS, key)
        return key

    def forget(self, key_id: str) -> None:
        """Drop a key's cached verdicts (after its revocation, in this process or another)."""
        self._epoch += 1
        stale = [t for t, (_, key) in self._entries.items() if key and key.key_id == key_id]
        for token in stale:
            del self._entries[token]

    def revoked(self, _conn: Any, _pid: int, _channel: str, key_id: str) -> None:
        self.forget(key_id)


KEY_CACHE = web.AppKey("key_cache", KeyCache)


async def listen_for_revocations(app: web.Application) -> AsyncIterator[None]:
    """aiohttp cleanup context: LISTEN on one pooled connection while the app runs."""
    cache = app[KEY_CACHE]
    conn: Any = None
    try:
        conn = await app[POOL].acquire()
        await conn.add_listener(CHANNEL, cache.revoked)
    except (OSError, asyncpg.PostgresError):
        log.warning("key cache: cannot LISTEN; a revocation elsewhere takes effect within"
                    f" {CACHE_SECONDS:g} s")
    yield
    if conn is not None:
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            await conn.remove_listener(CHANNEL, cache.revoked)
        await app[POOL].release(conn)


def protect(handler: Handler, roles: tuple[str, ...]) -> Handler:
    """Wrap a handler so it runs only for a key whose role grants one of ``roles``."""
    wanted = frozenset(roles)

    async def guarded(request: web.Request) -> web.StreamResponse:
        token = bearer(request)
        key = await request.app[KEY_CACHE].lookup(request.app[POOL], token) if token else None
        if key is None:
            return problem_for(
                ErrorCode.UNAUTHORIZED, "Unauthorized",
                "a valid API key is required: Authorization: Bearer <key>",
                instance=request.path, headers={"WWW-Authenticate": 'Bearer realm="billing-oss"'},
            )
        if not GRANTS[key.role] & wanted:
            return problem_for(
                ErrorCode.FORBIDDEN, "Forbidden",
                f"role {key.role} may not do this (needs {' or '.join(sorted(wanted))})",
                instance=request.path,
            )
        if key.role == "customer" and _other_account(request, key):
            return problem_for(
                ErrorCode.FORBIDDEN, "Forbidden",
                "a customer key sees its own account only", instance=request.path,
            )
        request[PRINCIPAL] = key
        return await handler(request)

    guarded.__name__ = handler.__name__
    guarded.__doc__ = handler.__doc__
    return guarded


def _other_account(request: web.Request, key: ApiKey) -> bool:
    """Whether a request names (path or query ``account_id``) an account the key is not
    bound to: refused before any handler runs, whatever the handler does with it."""
    named = {request.match_info.get("account_id"), *request.query.getall("account_id", [])}
    named.discard(None)
    return bool(named - {key.account_id})


def actor(request: web.Request) -> str:
    """How the audit log names who made a request: ``key:<key id>``."""
    return f"key:{request[PRINCIPAL].key_id}"


def bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None
