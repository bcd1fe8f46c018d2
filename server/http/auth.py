"""Bearer-key authentication and role checks for the routes that declare ``roles``.

A route declares the roles it serves (``roles=("viewer",)``); a key's role grants itself and
the roles below it: admin ⊃ operator ⊃ viewer, and admin ⊃ ingest. A ``customer`` key grants
only ``customer``: the routes that serve one declare it and scope themselves to the key's
account. No key, an unknown key or a revoked key: 401. A valid key without a granting role:
403. Tokens never reach a log line.

Verified keys are cached for a few seconds so a busy API does not pay a query per request;
a revocation therefore takes effect within ``CACHE_SECONDS``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import asyncpg
from aiohttp import web

from billing_oss.core.errors import ErrorCode
from billing_oss.server.http.keys import POOL, PRINCIPAL
from billing_oss.server.http.problems import problem_for
from billing_oss.server.store import api_keys
from billing_oss.server.store.api_keys import ApiKey

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


class KeyCache:
    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, ApiKey | None]] = {}

    async def lookup(self, pool: asyncpg.Pool, token: str) -> ApiKey | None:
        now = time.monotonic()
        hit = self._entries.get(token)
        if hit is not None and hit[0] > now:
            return hit[1]
        key = await api_keys.verify(pool, token)
        if len(self._entries) >= _CACHE_MAX:
            self._entries.clear()
        self._entries[token] = (now + CACHE_SECONDS, key)
        return key

    def forget(self, key_id: str) -> None:
        """Drop a key's cached verdicts (after a revocation through this process)."""
        stale = [t for t, (_, key) in self._entries.items() if key and key.key_id == key_id]
        for token in stale:
            del self._entries[token]


KEY_CACHE = web.AppKey("key_cache", KeyCache)


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
        request[PRINCIPAL] = key
        return await handler(request)

    guarded.__name__ = handler.__name__
    guarded.__doc__ = handler.__doc__
    return guarded


def actor(request: web.Request) -> str:
    """How the audit log names who made a request: ``key:<key id>``."""
    return f"key:{request[PRINCIPAL].key_id}"


def bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None
