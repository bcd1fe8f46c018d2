"""Catalog persistence: tariffs, their versions (jsonb definitions), accounts and identifiers,
and what invoicing needs (products, tax rates, discounts), all in one transaction.

A published tariff version is immutable: loading a catalog again is a no-op for versions
already stored with the same content, and an error for one whose content differs. Accounts
are created once (with their first subscription); a later load leaves them as they are.
Products (by id), tax rate periods (by jurisdiction, class and start) and discounts (by
code) are stated by the file: its definition replaces the stored one, so the same file
loaded again changes nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import asyncpg
import msgspec

from billing_oss.core.errors import CatalogError
from billing_oss.server.catalog import BillingCatalog, billing_from_dict
from billing_oss.server.store import (
    accounts_repo,
    audit,
    discounts_repo,
    products_repo,
    tax_rates_repo,
)
from billing_oss.server.store.pool import Connection


class LoadResult(msgspec.Struct, frozen=True):
    tariffs: int
    versions_added: int
    accounts_added: int
    products_changed: int = 0  # added or replaced
    tax_rates_changed: int = 0
    discounts_changed: int = 0

    @property
    def changed(self) -> bool:
        return any((self.versions_added, self.accounts_added, self.products_changed,
                    self.tax_rates_changed, self.discounts_changed))


async def has_tariffs(pool: asyncpg.Pool) -> bool:
    return bool(await pool.fetchval("SELECT EXISTS (SELECT 1 FROM tariffs)"))


async def load_catalog(pool: asyncpg.Pool, catalog: Mapping[str, Any], *,
                       billing: BillingCatalog | None = None,
                       actor: str | None = None) -> LoadResult:
    """Store a parsed catalog in one transaction; with an ``actor``, audited."""
    async with pool.acquire() as conn, conn.transaction():
        result = await load_into(conn, catalog, billing=billing, actor=actor)
        if actor is not None:
            await audit.record(conn, actor, "catalog.load", "catalog", None, result)
    return result


async def load_into(conn: Connection, catalog: Mapping[str, Any], *,
                    billing: BillingCatalog | None = None,
                    actor: str | None = None) -> LoadResult:
    """Store a parsed catalog on ``conn`` (inside the caller's transaction). ``billing`` is
    its billing sections as already checked (checked here otherwise); with an ``actor``,
    each product, tax rate and discount changed is audited."""
    if billing is None:
        billing = billing_from_dict(catalog)
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
    products = await products_repo.upsert(conn, billing.products)
    rates = await tax_rates_repo.upsert(
        conn, billing.tax_rates, [f"tax_rates[{i}]" for i in range(len(billing.tax_rates))])
    discounts = await discounts_repo.upsert(
        conn, billing.discounts, [f"discounts[{i}]" for i in range(len(billing.discounts))])
    if actor is not None:
        for action, changes in (("product.put", products), ("tax_rate.put", rates),
                                ("discount.put", discounts)):
            await audit.record_many(conn, actor, action, changes)
    return LoadResult(len(catalog.get("tariffs", [])), versions_added, accounts_added,
                      len(products), len(rates), len(discounts))


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
        "INSERT INTO accounts (account_id, name, currency, attrs) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (account_id) DO NOTHING RETURNING 1",
        account["id"], account.get("name") or "", account.get("currency") or currency,
        json.dumps(account.get("attrs") or {}),
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
            "INSERT INTO subscriptions (account_id, tariff_id, product, valid_from) "
            "SELECT $1, $2, $3, coalesce(min(effective_from), now()) FROM tariff_versions "
            "WHERE tariff_id = $2",
            account["id"], account["tariff"], account.get("product") or "",
        )
    return 1 if inserted else 0


def _identifier_kind(identifier: str) -> str:
    # IMSIs are 15 digits starting with the MCC; MSISDNs are shorter in practice. Operators
    # can correct the kind through the API; rating matches on the identifier alone.
    return "imsi" if len(identifier) == 15 and identifier.isdigit() else "msisdn"
