"""Tariffs and their versions as the admin API reads and publishes them.

A published version is never edited: publishing different content at an existing
``effective_from`` is a conflict; the same content again is a no-op. Every publication is
audited in the transaction that stores it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

import asyncpg
import msgspec

from billing_oss.core.errors import CatalogError, Conflict, NotFound
from billing_oss.server.catalog import BillingCatalog
from billing_oss.server.store import audit, catalog_repo
from billing_oss.server.store.filters import Where
from billing_oss.server.store.pool import Connection


class VersionSummary(msgspec.Struct, frozen=True, kw_only=True):
    tariff_version_id: int
    effective_from: dt.datetime
    published_at: dt.datetime
    sha256: str


class Tariff(msgspec.Struct, frozen=True, kw_only=True):
    tariff_id: str
    currency: str
    description: str
    created_at: dt.datetime
    versions: list[VersionSummary]


class TariffVersion(msgspec.Struct, frozen=True, kw_only=True):
    tariff_version_id: int
    tariff_id: str
    effective_from: dt.datetime
    published_at: dt.datetime
    sha256: str
    definition: dict[str, Any]


class CatalogLoaded(catalog_repo.LoadResult, frozen=True):
    """What an upload stored (the API's name for the catalog load's result)."""


class Published(msgspec.Struct, frozen=True):
    version: TariffVersion
    created: bool


_VERSIONS = (
    "coalesce((SELECT json_agg(json_build_object('tariff_version_id', v.tariff_version_id,"
    " 'effective_from', v.effective_from, 'published_at', v.published_at, 'sha256', v.sha256)"
    " ORDER BY v.effective_from) FROM tariff_versions v WHERE v.tariff_id = t.tariff_id)::text,"
    " '[]') AS versions"
)
_SELECT = f"SELECT t.tariff_id, t.currency, t.description, t.created_at, {_VERSIONS} FROM tariffs t"
_VERSION = ("SELECT tariff_version_id, tariff_id, effective_from, published_at, sha256,"
            " definition::text AS definition FROM tariff_versions")


async def get(conn: Connection | asyncpg.Pool, tariff_id: str) -> Tariff:
    row = await conn.fetchrow(_SELECT + " WHERE t.tariff_id = $1", tariff_id)
    if row is None:
        raise NotFound(f"no tariff {tariff_id}")
    return _tariff(row)


async def find(pool: asyncpg.Pool, after: str | None, limit: int) -> list[Tariff]:
    w = Where().add("t.tariff_id > {}", after)
    rows = await pool.fetch(_SELECT + w.sql() + " ORDER BY t.tariff_id" + w.limit(limit + 1),
                            *w.args)
    return [_tariff(r) for r in rows]


async def versions(pool: asyncpg.Pool, tariff_id: str, after: dt.datetime | None,
                   limit: int) -> list[TariffVersion]:
    await get(pool, tariff_id)
    w = Where().add("tariff_id = {}", tariff_id).add("effective_from > {}", after)
    rows = await pool.fetch(_VERSION + w.sql() + " ORDER BY effective_from" + w.limit(limit + 1),
                            *w.args)
    return [_version(r) for r in rows]


async def version(conn: Connection | asyncpg.Pool, tariff_id: str,
                  version_id: int) -> TariffVersion:
    row = await conn.fetchrow(_VERSION + " WHERE tariff_id = $1 AND tariff_version_id = $2",
                              tariff_id, version_id)
    if row is None:
        raise NotFound(f"tariff {tariff_id} has no version {version_id}")
    return _version(row)


async def upload_catalog(pool: asyncpg.Pool, actor: str, catalog: Mapping[str, Any],
                         billing: BillingCatalog) -> CatalogLoaded:
    """Store a validated catalog (tariffs, versions, accounts, products, tax rates,
    discounts) in one audited transaction."""
    async with pool.acquire() as conn, conn.transaction():
        try:
            result = await catalog_repo.load_into(conn, catalog, billing=billing, actor=actor)
        except CatalogError as exc:
            path = "$." + exc.path
            raise Conflict(exc.message.replace(exc.path, path, 1)) from None
        loaded = CatalogLoaded(**msgspec.structs.asdict(result))
        await audit.record(conn, actor, "catalog.upload", "catalog",
                           None, {"catalog": catalog, "result": loaded})
    return loaded


async def publish(pool: asyncpg.Pool, actor: str, tariff_id: str,
                  definition: Mapping[str, Any]) -> Published:
    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval(
                "SELECT true FROM tariffs WHERE tariff_id = $1 FOR UPDATE", tariff_id):
            raise NotFound(f"no tariff {tariff_id}")
        try:
            added = await catalog_repo.publish_version(conn, tariff_id, definition, "$")
        except CatalogError as exc:
            raise Conflict(exc.message) from None
        row = await conn.fetchrow(
            _VERSION + " WHERE tariff_id = $1 AND effective_from = $2::text::timestamptz",
            tariff_id, definition["effective_from"],
        )
        stored = _version(row)
        if added:
            await audit.record(conn, actor, "tariff_version.publish",
                               f"tariff:{tariff_id}", None, stored)
    return Published(stored, bool(added))


def _tariff(row: asyncpg.Record) -> Tariff:
    versions = [
        VersionSummary(tariff_version_id=v["tariff_version_id"],
                       effective_from=_ts(v["effective_from"]),
                       published_at=_ts(v["published_at"]), sha256=v["sha256"])
        for v in json.loads(row["versions"])
    ]
    return Tariff(tariff_id=row["tariff_id"], currency=row["currency"].strip(),
                  description=row["description"], created_at=row["created_at"],
                  versions=versions)


def _version(row: asyncpg.Record | None) -> TariffVersion:
    assert row is not None
    return TariffVersion(
        tariff_version_id=row["tariff_version_id"], tariff_id=row["tariff_id"],
        effective_from=row["effective_from"], published_at=row["published_at"],
        sha256=row["sha256"], definition=json.loads(row["definition"]),
    )


def _ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(dt.UTC)
