"""Seeding helpers for the billing tests: accounts, products, tax rates, usage and charges."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import asyncpg

from billing_oss.server.billing.bill_runs import bill_run
from billing_oss.server.billing.model import Settings
from billing_oss.server.catalog.pricing import Product, parse_components
from billing_oss.server.store import catalog_repo, products_repo
from billing_oss.server.store.pool import Connection
from tests.charge_seed import insert_charges

SELLER = {"name": "Example Telecom SAS", "country": "FR", "vat_id": "FR12345678901",
          "address": "1 rue de la Paix", "city": "Paris", "postcode": "75002",
          "iban": "FR7630006000011234567890189"}
SETTINGS = Settings(seller=SELLER, rounding="half-up")
TAX_RATES = [
    {"jurisdiction": "FR", "rate": "20", "valid_from": "2000-01-01"},
    {"jurisdiction": "DE", "rate": "16", "valid_from": "2020-07-01", "valid_to": "2021-01-01"},
    {"jurisdiction": "DE", "rate": "19", "valid_from": "2021-01-01"},
    {"jurisdiction": "FR", "tax_class": "reduced", "rate": "5.5", "valid_from": "2000-01-01"},
]
UTC = dt.UTC


async def base(conn: Connection) -> None:
    """The tax rates and the (empty) tariff the billing tests share, through the catalog
    loader; loading them again changes nothing."""
    async with conn.transaction():
        await catalog_repo.load_into(conn, {"currency": "EUR", "tariffs": [
            {"id": "retail", "versions": []}], "tax_rates": TAX_RATES})


async def account(conn: Connection, account_id: str, *, currency: str = "EUR",
                  timezone: str = "UTC", billing_day: int = 1, **attrs: Any) -> None:
    attrs.setdefault("country", "FR")
    await conn.execute(
        "INSERT INTO accounts (account_id, name, currency, timezone, billing_day, attrs) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        account_id, f"Customer {account_id}", currency, timezone, billing_day, json.dumps(attrs))


async def product(conn: Connection, product_id: str, fee: int, *, currency: str = "EUR",
                  usage_pricing: list[dict[str, Any]] | None = None,
                  tax_class: str = "standard") -> None:
    async with conn.transaction():
        await products_repo.upsert(conn, [Product(
            product_id=product_id, name=f"Plan {product_id}", currency=currency,
            recurring_fee_micros=fee, tax_class=tax_class,
            usage_pricing=tuple(parse_components(usage_pricing or [])))])


async def subscribe(conn: Connection, account_id: str, product_id: str, valid_from: dt.datetime,
                    valid_to: dt.datetime | None = None) -> int:
    sub_id: int = await conn.fetchval(
        "INSERT INTO subscriptions (account_id, tariff_id, product, valid_from, valid_to) "
        "VALUES ($1, 'retail', $2, $3, $4) RETURNING subscription_id",
        account_id, product_id, valid_from, valid_to)
    return sub_id


async def charge(conn: Connection, account_id: str, when: dt.datetime, amount_micros: int, *,
                 kind: str = "voice", zone: str = "national", currency: str = "EUR",
                 duration_s: int = 60, volume: int = 0) -> int:
    await conn.execute("SELECT ensure_month_partition('usage_records', $1::date)", when.date())
    await conn.execute("SELECT ensure_month_partition('charges', $1::date)", when.date())
    usage_id = await conn.fetchval("SELECT nextval('usage_id_seq')")
    await conn.execute(
        "INSERT INTO usage_records (account_id, usage_id, event_time, source, record_key, kind, "
        "duration_s, volume_down) VALUES ($1, $2, $3, 'test', $7, $4, $5, $6)",
        account_id, usage_id, when, kind, duration_s if kind == "voice" else None,
        volume if kind == "data" else None, str(usage_id))
    charge_id: int = await conn.fetchval("SELECT nextval('charge_id_seq')")
    await insert_charges(conn, ("account_id", "charge_id", "event_time", "usage_id", "kind",
                                "amount_micros", "currency", "zone"),
                         [(account_id, charge_id, when, usage_id, "charge", amount_micros,
                           currency, zone)])
    return charge_id


async def finalised_invoice(pool: asyncpg.Pool, account_id: str, *, fee: int = 0,
                            charges: Sequence[tuple[str, int]] = (), **attrs: Any) -> int:
    """One account billed for 2026-01 and finalised: a plan of ``fee`` (if any) and one
    voice charge per (zone, amount). Returns the invoice id."""
    async with pool.acquire() as conn:
        await base(conn)
        await account(conn, account_id, **attrs)
        if fee:
            await product(conn, f"plan-{account_id}", fee)
            await subscribe(conn, account_id, f"plan-{account_id}",
                            dt.datetime(2025, 1, 1, tzinfo=UTC))
        for zone, amount in charges:
            await charge(conn, account_id, dt.datetime(2026, 1, 5, tzinfo=UTC), amount,
                         zone=zone)
    run = await bill_run(pool, "2026-01", SETTINGS, accounts=[account_id], finalize=True,
                         force=True, actor="test")
    (invoice_id,) = run.invoice_ids
    return invoice_id
