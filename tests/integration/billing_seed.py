"""Seeding helpers for the billing tests: accounts, products, tax rates, usage and charges."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from server.billing.model import Settings
from server.store.pool import Connection

SELLER = {"name": "Example Telecom SAS", "country": "FR", "vat_id": "FR12345678901",
          "address": "1 rue de la Paix", "city": "Paris", "postcode": "75002",
          "iban": "FR7630006000011234567890189"}
SETTINGS = Settings(seller=SELLER, rounding="half-up")
UTC = dt.UTC


async def base(conn: Connection) -> None:
    await conn.execute("""
        INSERT INTO tax_rates VALUES
          ('FR', 'standard', 'S', 20, '2000-01-01', NULL),
          ('DE', 'standard', 'S', 16, '2020-07-01', '2021-01-01'),
          ('DE', 'standard', 'S', 19, '2021-01-01', NULL),
          ('FR', 'reduced', 'S', 5.5, '2000-01-01', NULL)
        ON CONFLICT DO NOTHING""")
    await conn.execute("""
        INSERT INTO tariffs (tariff_id, currency) VALUES ('retail', 'EUR')
        ON CONFLICT DO NOTHING""")


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
    await conn.execute(
        "INSERT INTO products VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        product_id, f"Plan {product_id}", currency, fee, tax_class,
        json.dumps(usage_pricing or []))


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
    charge_id: int = await conn.fetchval(
        "INSERT INTO charges (account_id, charge_id, event_time, usage_id, kind, amount_micros, "
        "currency, zone) VALUES ($1, nextval('charge_id_seq'), $2, $3, 'charge', $4, $5, $6) "
        "RETURNING charge_id", account_id, when, usage_id, amount_micros, currency, zone)
    return charge_id
