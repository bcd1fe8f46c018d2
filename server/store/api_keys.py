"""API keys: ``bok_<key id>_<secret>``; the secret is 256 random bits, stored as its sha256.

A sha256 suffices (no slow KDF) because the secret is random, not a password: nobody can
brute-force 2^256. Comparisons are constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Literal

import asyncpg
import msgspec

from billing_oss.core.errors import Conflict, InvalidRequest, NotFound
from billing_oss.server.store import audit
from billing_oss.server.store.filters import Where
from billing_oss.server.store.pool import Connection

Role = Literal["admin", "operator", "viewer", "ingest", "customer"]
ROLES: tuple[Role, ...] = ("admin", "operator", "viewer", "ingest", "customer")
TOKEN_PREFIX = "bok_"


class ApiKey(msgspec.Struct, frozen=True, kw_only=True):
    key_id: str
    role: Role
    name: str = ""
    source: str | None = None
    # Customer keys: the one account the key may see (None for every other role).
    account_id: str | None = None
    created_at: str | None = None
    revoked_at: str | None = None


class NewKey(msgspec.Struct, frozen=True, kw_only=True):
    key: ApiKey
    token: str  # shown once; never stored, never logged


async def create(pool: asyncpg.Pool | Connection, role: Role, name: str = "",
                 source: str | None = None, *, account_id: str | None = None) -> NewKey:
    """A new key. A ``customer`` key needs ``account_id`` (an existing account); no other
    role takes one."""
    if (role == "customer") != (account_id is not None):
        raise InvalidRequest(
            "a customer key needs an account, and only a customer key takes one",
            [{"path": "$.account_id", "message": "required for role customer, else absent"}])
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    try:
        row = await pool.fetchrow(
            "INSERT INTO api_keys (key_id, secret_sha256, role, name, source, account_id) "
            "VALUES ($1, $2, $3, $4, $5, $6) RETURNING created_at",
            key_id, _digest(secret), role, name, source, account_id,
        )
    except asyncpg.ForeignKeyViolationError:
        raise InvalidRequest(f"no account {account_id}", [
            {"path": "$.account_id", "message": f"no account {account_id}"}]) from None
    assert row is not None
    key = ApiKey(key_id=key_id, role=role, name=name, source=source, account_id=account_id,
                 created_at=row["created_at"].isoformat())
    return NewKey(key=key, token=f"{TOKEN_PREFIX}{key_id}_{secret}")


async def verify(pool: asyncpg.Pool, token: str) -> ApiKey | None:
    """The active key a token belongs to, or None (malformed, unknown, revoked, wrong secret)."""
    parsed = parse_token(token)
    if parsed is None:
        return None
    key_id, secret = parsed
    row = await pool.fetchrow(
        "SELECT key_id, secret_sha256, role, name, source, account_id FROM api_keys "
        "WHERE key_id = $1 AND revoked_at IS NULL", key_id,
    )
    if row is None or not hmac.compare_digest(bytes(row["secret_sha256"]), _digest(secret)):
        return None
    return ApiKey(key_id=row["key_id"], role=row["role"], name=row["name"], source=row["source"],
                  account_id=row["account_id"])


async def list_keys(pool: asyncpg.Pool) -> list[ApiKey]:
    rows = await pool.fetch(
        "SELECT key_id, role, name, source, account_id, created_at, revoked_at"
        " FROM api_keys ORDER BY created_at"
    )
    return [_key(r) for r in rows]


async def revoke(pool: asyncpg.Pool, key_id: str) -> bool:
    done = await pool.fetchval(
        "UPDATE api_keys SET revoked_at = now() WHERE key_id = $1 AND revoked_at IS NULL "
        "RETURNING true", key_id,
    )
    return bool(done)


async def create_audited(pool: asyncpg.Pool, actor: str, role: Role, name: str = "",
                         source: str | None = None, *,
                         account_id: str | None = None) -> NewKey:
    """``create`` with its audit entry (the key's description, never its token)."""
    async with pool.acquire() as conn, conn.transaction():
        new = await create(conn, role, name, source, account_id=account_id)
        await audit.record(conn, actor, "api_key.create", f"api_key:{new.key.key_id}",
                           None, new.key)
    return new


async def find(pool: asyncpg.Pool, *, role: Role | None, include_revoked: bool,
               after: str | None, limit: int, account_id: str | None = None) -> list[ApiKey]:
    w = (Where().add("role = {}", role).add("account_id = {}", account_id)
         .add("key_id > {}", after)
         .when(not include_revoked, "revoked_at IS NULL"))
    rows = await pool.fetch(
        "SELECT key_id, role, name, source, account_id, created_at, revoked_at FROM api_keys"
        + w.sql()
        + " ORDER BY key_id" + w.limit(limit + 1), *w.args,
    )
    return [_key(r) for r in rows]


async def revoke_audited(pool: asyncpg.Pool, actor: str, key_id: str) -> ApiKey:
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT key_id, role, name, source, account_id, created_at, revoked_at FROM api_keys"
            " WHERE key_id = $1 FOR UPDATE", key_id)
        if row is None:
            raise NotFound(f"no API key {key_id}")
        if row["revoked_at"] is not None:
            raise Conflict(f"API key {key_id} is already revoked")
        after = await conn.fetchrow(
            "UPDATE api_keys SET revoked_at = now() WHERE key_id = $1"
            " RETURNING key_id, role, name, source, account_id, created_at, revoked_at", key_id)
        assert after is not None
        await audit.record(conn, actor, "api_key.revoke", f"api_key:{key_id}",
                           _key(row), _key(after))
    return _key(after)


def _key(r: asyncpg.Record) -> ApiKey:
    return ApiKey(key_id=r["key_id"], role=r["role"], name=r["name"], source=r["source"],
                  account_id=r["account_id"], created_at=r["created_at"].isoformat(),
                  revoked_at=r["revoked_at"].isoformat() if r["revoked_at"] else None)


def parse_token(token: str) -> tuple[str, str] | None:
    if not token.startswith(TOKEN_PREFIX):
        return None
    key_id, sep, secret = token[len(TOKEN_PREFIX):].partition("_")
    if not sep or len(key_id) != 16 or not secret:
        return None
    return key_id, secret


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()
