"""Subscriptions: which tariff an account is on, from when to when.

Periods of one account never overlap: rating must find exactly one tariff at any instant.
"""

from __future__ import annotations

import datetime as dt

import asyncpg
import msgspec

from billing_oss.core.errors import Conflict, InvalidRequest, NotFound
from billing_oss.server.store import audit
from billing_oss.server.store.filters import Where
from billing_oss.server.store.pool import Connection


class Subscription(msgspec.Struct, frozen=True, kw_only=True):
    subscription_id: int
    account_id: str
    tariff_id: str
    product: str
    valid_from: dt.datetime
    valid_to: dt.datetime | None


class SubscriptionFilter(msgspec.Struct, frozen=True, kw_only=True):
    account_id: str | None = None
    tariff_id: str | None = None
    active_at: dt.datetime | None = None
    after: int | None = None
    limit: int = 50


_SELECT = ("SELECT subscription_id, account_id, tariff_id, product, valid_from, valid_to"
           " FROM subscriptions")


async def get(conn: Connection | asyncpg.Pool, subscription_id: int) -> Subscription:
    row = await conn.fetchrow(_SELECT + " WHERE subscription_id = $1", subscription_id)
    if row is None:
        raise NotFound(f"no subscription {subscription_id}")
    return Subscription(**dict(row))


async def find(pool: asyncpg.Pool, f: SubscriptionFilter) -> list[Subscription]:
    w = (Where().add("account_id = {}", f.account_id).add("tariff_id = {}", f.tariff_id)
         .add("valid_from <= {0} AND (valid_to IS NULL OR valid_to > {0})", f.active_at)
         .add("subscription_id > {}", f.after))
    rows = await pool.fetch(_SELECT + w.sql() + " ORDER BY subscription_id"
                            + w.limit(f.limit + 1), *w.args)
    return [Subscription(**dict(r)) for r in rows]


async def create(pool: asyncpg.Pool, actor: str, account_id: str, tariff_id: str,
                 product: str, valid_from: dt.datetime,
                 valid_to: dt.datetime | None) -> Subscription:
    _check_period(valid_from, valid_to)
    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval(
                "SELECT true FROM accounts WHERE account_id = $1 FOR UPDATE", account_id):
            raise _unknown("account_id", f"no account {account_id}")
        if not await conn.fetchval("SELECT true FROM tariffs WHERE tariff_id = $1", tariff_id):
            raise _unknown("tariff_id", f"no tariff {tariff_id}")
        await _refuse_overlap(conn, account_id, valid_from, valid_to, None)
        new_id = await conn.fetchval(
            "INSERT INTO subscriptions (account_id, tariff_id, product, valid_from, valid_to)"
            " VALUES ($1, $2, $3, $4, $5) RETURNING subscription_id",
            account_id, tariff_id, product, valid_from, valid_to,
        )
        stored = await get(conn, new_id)
        await audit.record(conn, actor, "subscription.create", _entity(new_id), None, stored)
    return stored


async def update(pool: asyncpg.Pool, actor: str, subscription_id: int, *,
                 product: str | None, valid_to: dt.datetime | None,
                 set_valid_to: bool) -> Subscription:
    async with pool.acquire() as conn, conn.transaction():
        account_id = await conn.fetchval(
            "SELECT account_id FROM subscriptions WHERE subscription_id = $1", subscription_id)
        if account_id is None:
            raise NotFound(f"no subscription {subscription_id}")
        await conn.execute("SELECT 1 FROM accounts WHERE account_id = $1 FOR UPDATE", account_id)
        before = await get(conn, subscription_id)
        new_to = valid_to if set_valid_to else before.valid_to
        _check_period(before.valid_from, new_to)
        await _refuse_overlap(conn, account_id, before.valid_from, new_to, subscription_id)
        await conn.execute(
            "UPDATE subscriptions SET product = $2, valid_to = $3 WHERE subscription_id = $1",
            subscription_id, before.product if product is None else product, new_to,
        )
        after = await get(conn, subscription_id)
        await audit.record(conn, actor, "subscription.update", _entity(subscription_id),
                           before, after)
    return after


async def _refuse_overlap(conn: Connection, account_id: str, start: dt.datetime,
                          end: dt.datetime | None, own_id: int | None) -> None:
    other = await conn.fetchval(
        "SELECT subscription_id FROM subscriptions WHERE account_id = $1"
        " AND subscription_id IS DISTINCT FROM $4"
        " AND tstzrange(valid_from, valid_to) && tstzrange($2, $3) LIMIT 1",
        account_id, start, end, own_id,
    )
    if other is not None:
        raise Conflict(f"account {account_id} already has subscription {other} in that period")


def _check_period(start: dt.datetime, end: dt.datetime | None) -> None:
    if end is not None and end <= start:
        raise InvalidRequest(
            "invalid body: $.valid_to: must be after valid_from",
            errors=[{"location": "body", "path": "$.valid_to",
                     "message": "must be after valid_from"}],
        )


def _unknown(field: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"invalid body: $.{field}: {message}",
                          errors=[{"location": "body", "path": f"$.{field}", "message": message}])


def _entity(subscription_id: int) -> str:
    return f"subscription:{subscription_id}"
