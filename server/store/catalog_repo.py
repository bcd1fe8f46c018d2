"""Catalog persistence: tariffs, their versions (jsonb definitions), accounts and identifiers.

A published tariff version is immutable: loading a catalog again is a no-op for versions
already stored with the same content, and an error for one whose content differs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import asyncpg
import msgspec

from server.errors import CatalogError
from server.store import accounts_repo
from server.store.pool import Connection


class LoadResult(msgspec.Struct, frozen=True):
    tariffs: int
    versions_added: int
    accounts_added: int


async def has_tariffs(pool: asyncpg.Pool) -> bool:
    return bool(await pool.fetchval("SELECT EXISTS (SELECT 1 FROM tariffs)"))


async def load_catalog(pool: asyncpg.Pool, catalog: Mapping[str, Any]) -> LoadResult:
    """Store a parsed catalog in one transaction."""
    async with pool.acquire() as conn, conn.transaction():
        return await load_into(conn, catalog)


async def load_into(conn: Connection, catalog: Mapping[str, Any]) -> LoadResult:
    """Store a parsed catalog on ``conn`` (inside the caller's transaction)."""
    currency = catalog.get("currency", "EUR")
    versions_added = accounts_added = 0
    for t_index, tariff in enumerate(catalog.get("tariffs", [])):
        await conn.execute(
            "INSERT INTO tariffs (tariff_id, currency, description) VALUES ($1, $2, $3) "
            "ON CONFLICT (tariff_id) DO NOTHING",
            tariff["id"], tariff.get("currency") or currency, tariff.get("description", ""),
        )
        for v_index, version in enumerate(tariff.get("versions", [])):
            path = f"tariffs[{t_index}].versions[{v_index}]"
            versions_added += await publish_version(conn, tariff["id"], version, path)
    for account in catalog.get("accounts", []):
        accounts_added += await _add_account(conn, account, currency)
    return LoadResult(len(catalog.get("tariffs", [])), versions_added, accounts_added)


async def publish_version(
    conn: Connection, tariff_id: str, version: Mapping[str, Any], path: str
) -> int:
    definition = json.dumps(version, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(definition.encode()).hexdigest()
    stored = await conn.fetchval(
        "SELECT sha256 FROM tariff_versions "
        "WHERE tariff_id = $1 AND effective_from = $2::text::timestamptz",
        tariff_id, version["effective_from"],
    )
    if stored is not None:
        if stored != digest:
            raise CatalogError(
                f"{path}.effective_from",
                f"tariff {tariff_id} already has a different version effective "
                f"{version['effective_from']}; published versions are never edited",
            )
        return 0
    await conn.execute(
        "INSERT INTO tariff_versions (tariff_id, effective_from, definition, sha256) "
        "VALUES ($1, $2::text::timestamptz, $3::jsonb, $4)",
        tariff_id, version["effective_from"], definition, digest,
    )
    return 1


async def _add_account(conn: Connection, account: Mapping[str, Any], currency: str) -> int:
    inserted = await conn.fetchval(
        "INSERT INTO accounts (account_id, name, currency) VALUES ($1, $2, $3) "
        "ON CONFLICT (account_id) DO NOTHING RETURNING 1",
        account["id"], account.get("name", ""), account.get("currency") or currency,
    )
    for identifier in account.get("identifiers", []):
        owner = await accounts_repo.claim_identifier(
            conn, identifier, account["id"], _identifier_kind(identifier))
        if owner != account["id"]:
            raise CatalogError(
                f"accounts[{account['id']}].identifiers",
                f"identifier {identifier} already belongs to account {owner}",
            )
    if inserted and account.get("tariff"):
        await conn.execute(
            "INSERT INTO subscriptions (account_id, tariff_id, valid_from) "
            "SELECT $1, $2, coalesce(min(effective_from), now()) FROM tariff_versions "
            "WHERE tariff_id = $2",
            account["id"], account["tariff"],
        )
    return 1 if inserted else 0


def _identifier_kind(identifier: str) -> str:
    # IMSIs are 15 digits starting with the MCC; MSISDNs are shorter in practice. Operators
    # can correct the kind through the API; rating matches on the identifier alone.
    return "imsi" if len(identifier) == 15 and identifier.isdigit() else "msisdn"
