"""`/v1/api-keys`: create, list and revoke API keys (admin only; an operator may create
customer keys for its customers). A token is shown once."""

from __future__ import annotations

import msgspec
from aiohttp import web

from billing_oss.core.errors import Conflict, Forbidden
from billing_oss.server.http.auth import KEY_CACHE, actor
from billing_oss.server.http.keys import POOL, PRINCIPAL
from billing_oss.server.http.pagination import Cursor, Limit, decode_cursor, page
from billing_oss.server.http.routing import Api, reply
from billing_oss.server.http.types import Id, Text
from billing_oss.server.http.validation import decode_body, decode_path, decode_query
from billing_oss.server.store import api_keys
from billing_oss.server.store.api_keys import ApiKey, NewKey, Role


class KeyCreate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    role: Role
    name: Text = ""
    source: Id | None = None
    account_id: Id | None = None  # customer keys: the one account the key sees


class KeyQuery(msgspec.Struct, frozen=True, kw_only=True):
    role: Role | None = None
    account_id: Id | None = None
    include_revoked: bool = False
    limit: Limit = 50
    cursor: Cursor | None = None


class KeyPath(msgspec.Struct, frozen=True):
    key_id: Id


class KeyPage(msgspec.Struct, frozen=True):
    items: list[ApiKey]
    next_cursor: str | None


async def create_key(request: web.Request) -> web.Response:
    body = await decode_body(request, KeyCreate)
    if request[PRINCIPAL].role != "admin" and body.role != "customer":
        raise Forbidden(f"role {request[PRINCIPAL].role} may create customer keys only")
    new = await api_keys.create_audited(request.app[POOL], actor(request), body.role,
                                        body.name, body.source, account_id=body.account_id)
    return reply(new, status=201)


async def list_keys(request: web.Request) -> web.Response:
    q = decode_query(request, KeyQuery)
    after = decode_cursor(q.cursor, tuple[str])
    rows = await api_keys.find(request.app[POOL], role=q.role, account_id=q.account_id,
                               include_revoked=q.include_revoked,
                               after=after[0] if after else None, limit=q.limit)
    items, next_cursor = page(rows, q.limit, lambda k: (k.key_id,))
    return reply(KeyPage(items, next_cursor))


async def revoke_key(request: web.Request) -> web.Response:
    path = decode_path(request, KeyPath)
    if path.key_id == request[PRINCIPAL].key_id:
        raise Conflict("a key cannot revoke itself; revoke it with another admin key")
    revoked = await api_keys.revoke_audited(request.app[POOL], actor(request), path.key_id)
    request.app[KEY_CACHE].forget(path.key_id)
    return reply(revoked)


def register(api: Api) -> None:
    tag = "api-keys"
    api.add("POST", "/v1/api-keys", create_key,
            summary="Create a key; the response carries the token, shown this once", tag=tag,
            request=KeyCreate, response=NewKey, status=201, roles=("admin", "operator"))
    api.add("GET", "/v1/api-keys", list_keys, summary="List keys (never their tokens)", tag=tag,
            query=KeyQuery, response=KeyPage, roles=("admin",))
    api.add("DELETE", "/v1/api-keys/{key_id}", revoke_key,
            summary="Revoke a key (it stops working within seconds)", tag=tag, params=KeyPath,
            response=ApiKey, roles=("admin",), errors=(409,))
