"""Discounts, named by their code.

A catalog load states discounts by code: the file's definition replaces the stored one, so
loading a file again changes nothing. Through the API a discount is created once and then
only ended: ``end`` sets ``valid_to`` rather than deleting the row, because invoices (drafts
and finalised ones) name the discount by id in their lines and allowances, and the history
of what applied when must stay readable.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence

import asyncpg
import msgspec

from billing_oss.core.errors import CatalogError, Conflict, InvalidRequest, NotFound
from billing_oss.server.catalog.billing import DiscountSpec
from billing_oss.server.catalog.pricing import VolumeTier
from billing_oss.server.store import audit
from billing_oss.server.store.filters import Where
from billing_oss.server.store.pool import Connection

_COLUMNS = ("code, account_id, kind, scope, service, percent, amount_micros, currency,"
            " tiers, description, valid_from, valid_to")
_VALUES = "$1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, $11, $12"
_EXCLUDED = ", ".join(f"excluded.{c.strip()}" for c in _COLUMNS.split(","))
_SELECT = f"SELECT discount_id, {_COLUMNS.replace('tiers', 'tiers::text AS tiers')} FROM discounts"


class Discount(msgspec.Struct, frozen=True):
    discount_id: int
    spec: DiscountSpec


class DiscountFilter(msgspec.Struct, frozen=True, kw_only=True):
    account_id: str | None = None
    code: str | None = None
    active_on: dt.date | None = None
    after: int | None = None
    limit: int = 50


async def get(conn: Connection | asyncpg.Pool, discount_id: int) -> Discount:
    row = await conn.fetchrow(_SELECT + " WHERE discount_id = $1", discount_id)
    if row is None:
        raise NotFound(f"no discount {discount_id}")
    return _discount(row)


async def find(pool: asyncpg.Pool, f: DiscountFilter) -> list[Discount]:
    w = (Where().add("account_id = {}", f.account_id).add("code = {}", f.code)
         .add("valid_from <= {0} AND (valid_to IS NULL OR valid_to > {0})", f.active_on)
         .add("discount_id > {}", f.after))
    rows = await pool.fetch(_SELECT + w.sql() + " ORDER BY discount_id" + w.limit(f.limit + 1),
                            *w.args)
    return [_discount(r) for r in rows]


async def create(pool: asyncpg.Pool, actor: str, spec: DiscountSpec) -> tuple[Discount, bool]:
    """A new discount, audited; the same definition again is the stored one (not created),
    another definition under a stored code is a conflict."""
    async with pool.acquire() as conn, conn.transaction():
        if spec.account_id is not None and not await _account_exists(conn, spec.account_id):
            raise InvalidRequest(
                f"invalid body: $.account_id: no account {spec.account_id}",
                errors=[{"location": "body", "path": "$.account_id",
                         "message": f"no account {spec.account_id}"}])
        discount_id = await conn.fetchval(
            f"INSERT INTO discounts ({_COLUMNS}) VALUES ({_VALUES}) ON CONFLICT (code)"
            " DO NOTHING RETURNING discount_id", *_values(spec))
        if discount_id is None:  # the code is taken (by a concurrent create, waited for)
            same = (await _by_code(conn, [spec.code]))[spec.code]
            if same.spec == spec:
                return same, False
            raise Conflict(f"discount {spec.code} exists with another definition; codes are "
                           "not reused: end it and create one under a new code")
        created = Discount(discount_id, spec)
        await audit.record(conn, actor, "discount.create", _entity(spec), None, created)
    return created, True


async def end(pool: asyncpg.Pool, actor: str, discount_id: int, on: dt.date) -> Discount:
    """Stop applying a discount to cycles ending on ``on`` or later (never later than it
    already ends, never before it starts); audited."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(_SELECT + " WHERE discount_id = $1 FOR UPDATE", discount_id)
        if row is None:
            raise NotFound(f"no discount {discount_id}")
        before = _discount(row)
        valid_to = max(before.spec.valid_from,
                       min(on, before.spec.valid_to or dt.date.max))
        if valid_to == before.spec.valid_to:
            return before
        await conn.execute("UPDATE discounts SET valid_to = $2 WHERE discount_id = $1",
                           discount_id, valid_to)
        after = Discount(discount_id, msgspec.structs.replace(before.spec, valid_to=valid_to))
        await audit.record(conn, actor, "discount.end", _entity(after.spec), before, after)
    return after


async def upsert(conn: Connection, specs: Sequence[DiscountSpec], paths: Sequence[str]
                 ) -> list[audit.Change]:
    """Store a catalog's discounts by code (inside the caller's transaction); an unknown
    account is a ``CatalogError`` at its path. The changes made."""
    if not specs:
        return []
    for spec, path in zip(specs, paths, strict=True):
        if spec.account_id is not None and not await _account_exists(conn, spec.account_id):
            raise CatalogError(f"{path}.account_id", f"no account {spec.account_id}")
    stored = await _by_code(conn, [s.code for s in specs])
    changes: list[audit.Change] = []
    for spec in specs:
        before = stored.get(spec.code)
        if before is None or before.spec != spec:
            discount_id = await conn.fetchval(
                f"INSERT INTO discounts ({_COLUMNS}) VALUES ({_VALUES}) ON CONFLICT (code) DO"
                f" UPDATE SET ({_COLUMNS}) = ({_EXCLUDED}) RETURNING discount_id",
                *_values(spec))
            changes.append((_entity(spec), before, Discount(discount_id, spec)))
    return changes


async def _by_code(conn: Connection, codes: list[str]) -> dict[str, Discount]:
    rows = await conn.fetch(_SELECT + " WHERE code = ANY($1) FOR UPDATE", codes)
    return {r["code"]: _discount(r) for r in rows}


async def _account_exists(conn: Connection, account_id: str) -> bool:
    return bool(await conn.fetchval("SELECT true FROM accounts WHERE account_id = $1",
                                    account_id))


def _values(s: DiscountSpec) -> tuple[object, ...]:
    return (s.code, s.account_id, s.kind, s.scope, s.service, s.percent, s.amount_micros,
            s.currency, json.dumps(msgspec.to_builtins(s.tiers)), s.description, s.valid_from,
            s.valid_to)


def _entity(spec: DiscountSpec) -> str:
    return f"discount:{spec.code}"


def _discount(row: asyncpg.Record) -> Discount:
    tiers = json.loads(row["tiers"]) if row["tiers"] else []
    return Discount(row["discount_id"], DiscountSpec(
        code=row["code"], kind=row["kind"], scope=row["scope"], account_id=row["account_id"],
        service=row["service"], percent=row["percent"], amount_micros=row["amount_micros"],
        currency=row["currency"].strip() if row["currency"] else None,
        tiers=tuple(msgspec.convert(tiers, list[VolumeTier])),
        description=row["description"], valid_from=row["valid_from"],
        valid_to=row["valid_to"]))
