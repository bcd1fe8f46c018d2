"""Migrations 1540–1541 over a database an earlier release compacted: the accounts' days are
marked from the daily rows compacted already, the levels its compactions counted become the
starting point the next folds add to, and every report still equals the raw charges, before
and after the first compaction of the new kind."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from billing_oss.server.analytics import repo
from billing_oss.server.store import migrate as migrate_module
from billing_oss.server.store.dsn import with_database
from tests.integration.test_month_totals import charge, seed_catalog
from tests.integration.test_report_spans import (
    FIRST,
    account_days,
    check,
    presence,
    raw_account_days,
    raw_presence,
)
from tests.migrations_before import migrate_before


@pytest.fixture
async def before_1540(pg_admin_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    name = f"t_account_days_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg_admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    pool = await asyncpg.create_pool(with_database(pg_admin_dsn, name), min_size=1, max_size=4)
    assert pool is not None
    await migrate_before(pool, "1540")
    try:
        yield pool
    finally:
        await pool.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_the_days_compacted_before_are_marked_and_counting_goes_on(
        before_1540: asyncpg.Pool) -> None:
    pool = before_1540
    catalog = await seed_catalog(pool)
    await charge(pool, 7, catalog, account="M2", day=dt.date(2025, 12, 30))
    for i in range(60):
        await charge(pool, i, catalog, reverse=i % 9 == 4)
    await repo.compact(pool, FIRST, dt.date(2026, 12, 31))  # the earlier release's compaction
    for i in range(60, 90):  # deltas the earlier release left, into days it counted
        await charge(pool, i, catalog, reverse=i % 5 == 0)

    applied = await migrate_module.migrate(pool)
    assert {"1540_charge_account_days", "1541_charge_levels_from_deltas"} <= set(applied)
    assert await pool.fetchval("SELECT count(*) FROM charge_account_days") > 0
    await check(pool)  # the backfilled days and the deltas

    await repo.compact(pool, FIRST, dt.date(2026, 12, 31))
    assert await pool.fetchval("SELECT count(*) FROM charge_rollups WHERE NOT compacted") == 0
    assert await account_days(pool) == await raw_account_days(pool)
    assert await presence(pool) == await raw_presence(pool)
    await check(pool)
