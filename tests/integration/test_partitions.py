"""Month partitions are UTC months whatever the session's time zone."""

from __future__ import annotations

import asyncpg

from billing_oss.server.store.pool import open_pool


async def test_partition_bounds_are_utc_months_from_any_session(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL timezone = 'Europe/Paris'")
        await conn.execute("SELECT ensure_month_partition('charges', '2031-07-15')")
        await conn.execute("SET LOCAL timezone = 'UTC'")
        bounds = await conn.fetchval(
            "SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = 'charges_2031_07'")
    assert bounds == ("FOR VALUES FROM ('2031-07-01 00:00:00+00') "
                      "TO ('2031-08-01 00:00:00+00')")


async def test_the_servers_sessions_run_in_utc(database_url: str) -> None:
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute("ALTER ROLE CURRENT_USER SET timezone = 'Europe/Paris'")
        pool = await open_pool(database_url, min_size=1, max_size=1)
        try:
            assert await pool.fetchval("SHOW timezone") == "UTC"
        finally:
            await pool.close()
    finally:
        await admin.execute("ALTER ROLE CURRENT_USER RESET timezone")
        await admin.close()
