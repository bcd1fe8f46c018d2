"""`/v1/accounts`: create, read, update and list accounts with their identifiers."""

from __future__ import annotations

import zoneinfo
from typing import Annotated, Any

import msgspec
from aiohttp import web

from billing_oss.core.errors import InvalidRequest
from billing_oss.server.http.account_cache import ACCOUNT_CACHE
from billing_oss.server.http.auth import actor
from billing_oss.server.http.keys import POOL
from billing_oss.server.http.pagination import Cursor, Limit, decode_cursor, page
from billing_oss.server.http.routing import Api, reply
from billing_oss.server.http.scope import own
from billing_oss.server.http.types import Attrs, Currency, Id, Identifier, Text
from billing_oss.server.http.validation import decode_body, decode_path, decode_query
from billing_oss.server.store import accounts_repo
from billing_oss.server.store.accounts_repo import (
    Account,
    AccountIdentifier,
    IdentifierKind,
    NewAccount,
    Status,
)

BillingDay = Annotated[int, msgspec.Meta(ge=1, le=28)]
TimeZone = Annotated[str, msgspec.Meta(min_length=1, max_length=64,
                                       pattern="^[A-Za-z0-9_+/-]+$", examples=["Europe/Paris"])]


class IdentifierIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    identifier: Identifier
    kind: IdentifierKind = "msisdn"


Identifiers = Annotated[list[IdentifierIn], msgspec.Meta(max_length=100)]


class AccountCreate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    account_id: Id
    name: Text = ""
    status: Status = "active"
    currency: Currency = "EUR"
    timezone: TimeZone = "UTC"
    billing_day: BillingDay = 1
    identifiers: Identifiers = []
    attrs: Attrs = {}
    itemised_invoice: bool = False  # invoice PDFs list each call and session billed


class AccountUpdate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Only the fields present change; ``identifiers`` replaces the whole list."""

    name: Text | msgspec.UnsetType = msgspec.UNSET
    status: Status | msgspec.UnsetType = msgspec.UNSET
    currency: Currency | msgspec.UnsetType = msgspec.UNSET
    timezone: TimeZone | msgspec.UnsetType = msgspec.UNSET
    billing_day: BillingDay | msgspec.UnsetType = msgspec.UNSET
    identifiers: Identifiers | msgspec.UnsetType = msgspec.UNSET
    attrs: Attrs | msgspec.UnsetType = msgspec.UNSET
    itemised_invoice: bool | msgspec.UnsetType = msgspec.UNSET


class AccountQuery(msgspec.Struct, frozen=True, kw_only=True):
    status: Status | None = None
    currency: Currency | None = None
    identifier: Identifier | None = None
    name_prefix: Text | None = None
    limit: Limit = 50
    cursor: Cursor | None = None


class AccountPath(msgspec.Struct, frozen=True):
    account_id: Id


class AccountPage(msgspec.Struct, frozen=True):
    items: list[Account]
    next_cursor: str | None


async def create_account(request: web.Request) -> web.Response:
    body = await decode_body(request, AccountCreate)
    return reply(await create(request.app, actor(request), body), status=201)


async def create(app: web.Application, who: str, body: AccountCreate) -> Account:
    """Create an account (REST and SOAP alike): ``who`` is the audit log's actor."""
    new = NewAccount(
        account_id=body.account_id, name=body.name, status=body.status,
        currency=body.currency, timezone=_checked_zone(body.timezone),
        billing_day=body.billing_day,
        identifiers=[AccountIdentifier(i.identifier, i.kind) for i in body.identifiers],
        attrs=dict(body.attrs), itemised_invoice=body.itemised_invoice,
    )
    return await accounts_repo.create(app[POOL], who, new)


async def get_account(request: web.Request) -> web.Response:
    path = decode_path(request, AccountPath)
    own(request, path.account_id, f"account {path.account_id}")
    cache = request.app[ACCOUNT_CACHE]
    body = cache.get(path.account_id)
    if body is None:
        epoch = cache.epoch
        body = msgspec.json.encode(await accounts_repo.get(request.app[POOL], path.account_id))
        cache.put(path.account_id, body, epoch)
    return web.Response(body=body, content_type="application/json")


async def update_account(request: web.Request) -> web.Response:
    path = decode_path(request, AccountPath)
    body = await decode_body(request, AccountUpdate)
    return reply(await update(request.app, actor(request), path.account_id, body))


async def update(app: web.Application, who: str, account_id: str,
                 body: AccountUpdate) -> Account:
    """Change the fields ``body`` sets (REST and SOAP alike)."""
    changes: dict[str, Any] = {
        f: getattr(body, f) for f in body.__struct_fields__
        if getattr(body, f) is not msgspec.UNSET
    }
    if "timezone" in changes:
        _checked_zone(changes["timezone"])
    if "identifiers" in changes:
        changes["identifiers"] = [
            AccountIdentifier(i.identifier, i.kind) for i in changes["identifiers"]
        ]
    try:
        return await accounts_repo.update(app[POOL], who, account_id, changes)
    finally:
        app[ACCOUNT_CACHE].forget(account_id)


async def list_accounts(request: web.Request) -> web.Response:
    q = decode_query(request, AccountQuery)
    after = decode_cursor(q.cursor, tuple[str])
    rows = await accounts_repo.find(request.app[POOL], accounts_repo.AccountFilter(
        status=q.status, currency=q.currency, identifier=q.identifier,
        name_prefix=q.name_prefix, after=after[0] if after else None, limit=q.limit,
    ))
    items, next_cursor = page(rows, q.limit, lambda a: (a.account_id,))
    return reply(AccountPage(items, next_cursor))


def _checked_zone(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidRequest(
            f"invalid body: $.timezone: unknown time zone {name!r}",
            errors=[{"location": "body", "path": "$.timezone",
                     "message": "not an IANA time zone name"}],
        ) from None
    return name


def register(api: Api) -> None:
    tag = "accounts"
    api.add("POST", "/v1/accounts", create_account, summary="Create an account", tag=tag,
            request=AccountCreate, response=Account, status=201, roles=("operator",),
            errors=(409,))
    api.add("GET", "/v1/accounts", list_accounts, summary="List accounts", tag=tag,
            query=AccountQuery, response=AccountPage, roles=("viewer",))
    api.add("GET", "/v1/accounts/{account_id}", get_account, summary="Read an account",
            tag=tag, params=AccountPath, response=Account, roles=("viewer", "customer"))
    api.add("PATCH", "/v1/accounts/{account_id}", update_account,
            summary="Change an account (only the fields sent)", tag=tag, params=AccountPath,
            request=AccountUpdate, response=Account, roles=("operator",), errors=(409,))
