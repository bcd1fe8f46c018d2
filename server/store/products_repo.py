"""Products: what a subscription bills each cycle (a recurring fee) and how it prices the
cycle's aggregated usage. A product is named by its id and replaced whole (catalog load,
``PUT /v1/products/{id}``); drafts pick the change up when they are recomputed, finalised
invoices keep what they billed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import asyncpg
import msgspec

from billing_oss.core.errors import NotFound
from billing_oss.server.catalog.pricing import Product, parse_components
from billing_oss.server.store import audit
from billing_oss.server.store.filters import Where
from billing_oss.server.store.pool import Connection

_SELECT = ("SELECT product_id, name, currency, recurring_fee_micros, tax_class,"
           " usage_pricing::text AS usage_pricing FROM products")


async def get(conn: Connection | asyncpg.Pool, product_id: str) -> Product:
    row = await conn.fetchrow(_SELECT + " WHERE product_id = $1", product_id)
    if row is None:
        raise NotFound(f"no product {product_id}")
    return _product(row)


async def find(pool: asyncpg.Pool, after: str | None, limit: int) -> list[Product]:
    w = Where().add("product_id > {}", after)
    rows = await pool.fetch(_SELECT + w.sql() + " ORDER BY product_id" + w.limit(limit + 1),
                            *w.args)
    return [_product(r) for r in rows]


async def put(pool: asyncpg.Pool, actor: str, product: Product) -> tuple[Product, bool]:
    """Create or replace a product, audited; (stored, created)."""
    async with pool.acquire() as conn, conn.transaction():
        changes = await upsert(conn, [product])
        await audit.record_many(conn, actor, "product.put", changes)
    return product, any(before is None for _, before, _ in changes)


async def upsert(conn: Connection, products: Sequence[Product]) -> list[audit.Change]:
    """Insert or replace ``products`` (inside the caller's transaction); the changes made,
    none for a product stored as it is."""
    if not products:
        return []
    rows = await conn.fetch(_SELECT + " WHERE product_id = ANY($1) FOR UPDATE",
                            [p.product_id for p in products])
    stored = {r["product_id"]: _product(r) for r in rows}
    changed = [p for p in products if stored.get(p.product_id) != p]
    await conn.executemany(
        "INSERT INTO products (product_id, name, currency, recurring_fee_micros, tax_class,"
        " usage_pricing) VALUES ($1, $2, $3, $4, $5, $6::jsonb) ON CONFLICT (product_id)"
        " DO UPDATE SET name = excluded.name, currency = excluded.currency,"
        " recurring_fee_micros = excluded.recurring_fee_micros,"
        " tax_class = excluded.tax_class, usage_pricing = excluded.usage_pricing",
        [(p.product_id, p.name, p.currency, p.recurring_fee_micros, p.tax_class,
          json.dumps(msgspec.to_builtins(p.usage_pricing))) for p in changed],
    )
    return [(f"product:{p.product_id}", stored.get(p.product_id), p) for p in changed]


def _product(row: asyncpg.Record) -> Product:
    return Product(
        product_id=row["product_id"], name=row["name"], currency=row["currency"].strip(),
        recurring_fee_micros=row["recurring_fee_micros"], tax_class=row["tax_class"],
        usage_pricing=tuple(parse_components(json.loads(row["usage_pricing"]))),
    )
