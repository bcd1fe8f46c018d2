"""Bill runs against a real PostgreSQL: drafts, recomputation, late usage, finalisation."""

from __future__ import annotations

import datetime as dt

import asyncpg
import pytest

from server.billing import documents
from server.billing.runs import bill_run
from tests.integration import billing_seed as seed

UTC = dt.UTC


@pytest.fixture(scope="module", autouse=True)
async def seeded(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await seed.base(conn)
        await seed.product(conn, "basic", 10_000_000)
        await seed.account(conn, "A1")
        await seed.subscribe(conn, "A1", "basic", dt.datetime(2025, 12, 1, tzinfo=UTC))
        for i in range(10):
            await seed.charge(conn, "A1", dt.datetime(2026, 1, 5, 10, i, tzinfo=UTC), 123_456)


async def test_draft_totals_and_links(pool: asyncpg.Pool) -> None:
    run = await bill_run(pool, "2026-01", seed.SETTINGS, accounts=["A1"])
    assert run.invoices == 1 and run.charges == 10
    async with pool.acquire() as conn:
        inv = await documents.load(conn, run.invoice_ids[0])
        linked = await conn.fetchval("SELECT count(*) FROM invoice_line_charges "
                                     "WHERE invoice_id = $1", inv.invoice_id)
    t = inv.content.totals
    assert linked == 10
    # 10 × 0.123456 = 1.23456 → 1.23; fee 10.00; VAT 20 % of 11.23 = 2.246 → 2.25
    assert [ln.net_micros for ln in inv.content.lines] == [1_230_000, 10_000_000]
    assert t.net_micros == 11_230_000 and t.tax_micros == 2_250_000
    assert t.payable_micros == 13_480_000
