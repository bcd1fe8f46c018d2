"""Tax rates by jurisdiction and tax class, each valid on ``[valid_from, valid_to)``.

Periods of one jurisdiction and class never overlap, so a bill run finds at most one rate
for a day. Writers take ``tax_rates`` in SHARE ROW EXCLUSIVE mode (bill runs still read):
two writers cannot each add a period the other would overlap.

A catalog load states periods by their key ``(jurisdiction, tax_class, valid_from)``: the
file's row replaces the stored one of the same key. ``add`` (the API) records a new period:
a new open-ended period that starts inside the open-ended current one ends it there (a rate
change from a date); any other overlap is a conflict.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import asyncpg
import msgspec

from billing_oss.core.errors import CatalogError, Conflict
from billing_oss.server.catalog.billing import describe, first_overlap, overlaps
from billing_oss.server.catalog.tax import TaxRate
from billing_oss.server.store import audit
from billing_oss.server.store.filters import Where
from billing_oss.server.store.pool import Connection

_SELECT = "SELECT jurisdiction, tax_class, category, rate, valid_from, valid_to FROM tax_rates"
_KEY = "jurisdiction, tax_class, valid_from"


class Added(msgspec.Struct, frozen=True):
    rate: TaxRate
    created: bool
    ended: TaxRate | None = None  # the open-ended period the new one ended


class RateFilter(msgspec.Struct, frozen=True, kw_only=True):
    jurisdiction: str | None = None
    tax_class: str | None = None
    valid_on: dt.date | None = None
    after: tuple[str, str, dt.date] | None = None
    limit: int = 50


async def find(pool: asyncpg.Pool, f: RateFilter) -> list[TaxRate]:
    w = (Where().add("jurisdiction = {}", f.jurisdiction).add("tax_class = {}", f.tax_class)
         .add("valid_from <= {0} AND (valid_to IS NULL OR valid_to > {0})", f.valid_on)
         .keyset(_KEY, f.after))
    rows = await pool.fetch(_SELECT + w.sql() + f" ORDER BY {_KEY}" + w.limit(f.limit + 1),
                            *w.args)
    return [_rate(r) for r in rows]


async def add(pool: asyncpg.Pool, actor: str, rate: TaxRate) -> Added:
    async with pool.acquire() as conn, conn.transaction():
        stored = await _lock_and_read(conn, [rate])
        same = next((r for r in stored if r.valid_from == rate.valid_from), None)
        if same is not None:
            if same == rate:
                return Added(same, created=False)
            raise Conflict(f"{describe(same)} starts on the same day; a stored period is not "
                           "changed through the API: add a period from another day")
        clashing = [r for r in stored if overlaps(r, rate)]
        ended = None
        if (rate.valid_to is None and len(clashing) == 1 and clashing[0].valid_to is None
                and clashing[0].valid_from < rate.valid_from):
            ended = msgspec.structs.replace(clashing[0], valid_to=rate.valid_from)
            await _write(conn, [ended])
            await audit.record(conn, actor, "tax_rate.end", _entity(ended), clashing[0], ended)
        elif clashing:
            raise Conflict(f"{rate.jurisdiction}/{rate.tax_class} from "
                           f"{rate.valid_from.isoformat()} overlaps {describe(clashing[0])}")
        await _write(conn, [rate])
        await audit.record(conn, actor, "tax_rate.create", _entity(rate), None, rate)
    return Added(rate, created=True, ended=ended)


async def upsert(conn: Connection, rates: Sequence[TaxRate], paths: Sequence[str]
                 ) -> list[audit.Change]:
    """Store a catalog's periods by key (inside the caller's transaction); a period that
    would overlap a stored one is a ``CatalogError`` at its path. The changes made."""
    if not rates:
        return []
    stored = {_key(r): r for r in await _lock_and_read(conn, rates)}
    merged = list({**stored, **{_key(r): r for r in rates}}.values())
    path_of = {_key(r): p for r, p in zip(rates, paths, strict=True)}
    found = first_overlap(merged)
    if found is not None:
        mine, other = (found[1], found[0]) if _key(merged[found[1]]) in path_of else found
        raise CatalogError(f"{path_of[_key(merged[mine])]}.valid_from", "overlaps the stored "
                           f"period {describe(merged[other])}; end that one first (valid_to)")
    changed = [r for r in rates if stored.get(_key(r)) != r]
    await _write(conn, changed)
    return [(_entity(r), stored.get(_key(r)), r) for r in changed]


async def _lock_and_read(conn: Connection, rates: Sequence[TaxRate]) -> list[TaxRate]:
    """Lock the table for writing; the stored periods of the rates' jurisdictions and
    classes."""
    await conn.execute("LOCK TABLE tax_rates IN SHARE ROW EXCLUSIVE MODE")
    pairs = sorted({(r.jurisdiction, r.tax_class) for r in rates})
    rows = await conn.fetch(
        _SELECT + " WHERE (jurisdiction, tax_class) IN"
        " (SELECT * FROM unnest($1::text[], $2::text[])) ORDER BY " + _KEY,
        [j for j, _ in pairs], [c for _, c in pairs])
    return [_rate(r) for r in rows]


async def _write(conn: Connection, rates: Sequence[TaxRate]) -> None:
    await conn.executemany(
        "INSERT INTO tax_rates (jurisdiction, tax_class, category, rate, valid_from, valid_to)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (jurisdiction, tax_class, valid_from)"
        " DO UPDATE SET category = excluded.category, rate = excluded.rate,"
        " valid_to = excluded.valid_to",
        [(r.jurisdiction, r.tax_class, r.category, r.rate, r.valid_from, r.valid_to)
         for r in rates])


def _key(r: TaxRate) -> tuple[str, str, dt.date]:
    return r.jurisdiction, r.tax_class, r.valid_from


def _entity(r: TaxRate) -> str:
    return f"tax_rate:{r.jurisdiction}/{r.tax_class}/{r.valid_from.isoformat()}"


def _rate(row: asyncpg.Record) -> TaxRate:
    return TaxRate(**dict(row))
