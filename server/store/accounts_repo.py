"""Accounts and their identifiers (MSISDN, IMSI, meter ids): reads, writes, audit.

Every write runs in one transaction with its ``audit.record``. Identifiers are unique across
accounts; giving one that another account holds is a conflict, never a silent move.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any, Literal

import asyncpg
import msgspec

from billing_oss.core.errors import Conflict, NotFound
from billing_oss.server.store import audit
from billing_oss.server.store.filters import Where
from billing_oss.server.store.pool import Connection

Status = Literal["active", "suspended", "closed"]
IdentifierKind = Literal["msisdn", "imsi", "meter", "other"]


class AccountIdentifier(msgspec.Struct, frozen=True):
    identifier: str
    kind: IdentifierKind = "msisdn"


class Account(msgspec.Struct, frozen=True, kw_only=True):
    account_id: str
    name: str
    status: Status
    currency: str
    timezone: str
    billing_day: int
    identifiers: list[AccountIdentifier]
    attrs: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime
    itemised_invoice: bool = False  # invoice PDFs list each call and session billed


class NewAccount(msgspec.Struct, frozen=True, kw_only=True):
    account_id: str
    name: str
    status: Status
    currency: str
    timezone: str
    billing_day: int
    identifiers: list[AccountIdentifier]
    attrs: dict[str, Any]
    itemised_invoice: bool = False


class AccountFilter(msgspec.Struct, frozen=True, kw_only=True):
    status: Status | None = None
    currency: str | None = None
    identifier: str | None = None
    name_prefix: str | None = None
    after: str | None = None  # keyset: account ids greater than this
    limit: int = 50


_SELECT = (
    "SELECT a.account_id, a.name, a.status, a.currency, a.timezone, a.billing_day,"
    " a.attrs::text AS attrs, a.created_at, a.updated_at, a.itemised_invoice,"
    " coalesce((SELECT json_agg(json_build_array(i.identifier, i.kind) ORDER BY i.identifier)"
    "           FROM account_identifiers i WHERE i.account_id = a.account_id)::text, '[]')"
    " AS identifiers FROM accounts a"
)


async def get(conn: Connection | asyncpg.Pool, account_id: str) -> Account:
    row = await conn.fetchrow(_SELECT + " WHERE a.account_id = $1", account_id)
    if row is None:
        raise NotFound(f"no account {account_id}")
    return _account(row)


async def find(pool: asyncpg.Pool, f: AccountFilter) -> list[Account]:
    """Accounts matching ``f`` in account id order, ``f.limit + 1`` at most (for paging)."""
    w = (Where().add("a.status = {}", f.status).add("a.currency = {}", f.currency)
         .add("a.account_id IN (SELECT account_id FROM account_identifiers"
              " WHERE identifier = {})", f.identifier)
         .add("starts_with(a.name, {})", f.name_prefix).add("a.account_id > {}", f.after))
    sql = _SELECT + w.sql() + " ORDER BY a.account_id" + w.limit(f.limit + 1)
    rows = await pool.fetch(sql, *w.args)
    return [_account(r) for r in rows]


async def create(pool: asyncpg.Pool, actor: str, account: NewAccount) -> Account:
    async with pool.acquire() as conn, conn.transaction():
        inserted = await conn.fetchval(
            "INSERT INTO accounts (account_id, name, status, currency, timezone, billing_day,"
            " attrs, itemised_invoice) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8)"
            " ON CONFLICT (account_id) DO NOTHING RETURNING true",
            account.account_id, account.name, account.status, account.currency,
            account.timezone, account.billing_day, json.dumps(account.attrs),
            account.itemised_invoice,
        )
        if not inserted:
            raise Conflict(f"account {account.account_id} already exists")
        await _add_identifiers(conn, account.account_id, account.identifiers)
        stored = await get(conn, account.account_id)
        await audit.record(conn, actor, "account.create", _entity(account.account_id),
                           None, stored)
    return stored


async def update(pool: asyncpg.Pool, actor: str, account_id: str,
                 changes: dict[str, Any]) -> Account:
    """Apply ``changes`` (column → value; ``identifiers`` replaces the whole list)."""
    async with pool.acquire() as conn, conn.transaction():
        locked = await conn.fetchval(
            "SELECT status FROM accounts WHERE account_id = $1 FOR UPDATE", account_id)
        if locked is None:
            raise NotFound(f"no account {account_id}")
        before = await get(conn, account_id)
        if before.status == "closed" and changes.get("status", "closed") != "closed":
            raise Conflict(f"account {account_id} is closed; a closed account is not reopened")
        identifiers = changes.pop("identifiers", None)
        columns = {k: v for k, v in changes.items() if k in _UPDATABLE}
        if "attrs" in columns:
            columns["attrs"] = json.dumps(columns["attrs"])
        sets = [f"{name} = ${i}{'::jsonb' if name == 'attrs' else ''}"
                for i, name in enumerate(columns, start=2)]
        await conn.execute(
            f"UPDATE accounts SET {', '.join([*sets, 'updated_at = now()'])}"
            " WHERE account_id = $1", account_id, *columns.values(),
        )
        if identifiers is not None:
            await conn.execute(
                "DELETE FROM account_identifiers WHERE account_id = $1", account_id)
            await _add_identifiers(conn, account_id, identifiers)
        after = await get(conn, account_id)
        await audit.record(conn, actor, "account.update", _entity(account_id), before, after)
    return after


_UPDATABLE = frozenset({"name", "status", "currency", "timezone", "billing_day", "attrs",
                        "itemised_invoice"})


async def claim_identifier(conn: Connection, identifier: str, account_id: str,
                           kind: str) -> str:
    """Give ``identifier`` to ``account_id`` unless it has an owner; return its owner."""
    owner: str = await conn.fetchval(
        "INSERT INTO account_identifiers (identifier, account_id, kind) VALUES ($1, $2, $3)"
        " ON CONFLICT (identifier) DO UPDATE SET identifier = EXCLUDED.identifier"
        " RETURNING account_id",
        identifier, account_id, kind,
    )
    return owner


async def _add_identifiers(conn: Connection, account_id: str,
                           identifiers: Sequence[AccountIdentifier]) -> None:
    for ident in identifiers:
        owner = await claim_identifier(conn, ident.identifier, account_id, ident.kind)
        if owner != account_id:
            raise Conflict(f"identifier {ident.identifier} already belongs to account {owner}")


def _entity(account_id: str) -> str:
    return f"account:{account_id}"


def _account(row: asyncpg.Record) -> Account:
    return Account(
        account_id=row["account_id"], name=row["name"], status=row["status"],
        currency=row["currency"].strip(), timezone=row["timezone"],
        billing_day=row["billing_day"],
        identifiers=[AccountIdentifier(i, k) for i, k in json.loads(row["identifiers"])],
        attrs=json.loads(row["attrs"]), created_at=row["created_at"],
        updated_at=row["updated_at"], itemised_invoice=row["itemised_invoice"],
    )
