"""Reports on Citus: the account-less levels (migration 1500) stay on the coordinator and the
per-account monthly level (and the months and days of each account, 1503 and 1540) is
distributed beside the rollups, the week level (1502) stays on the coordinator, all filled by
compaction from the distributed rollups; the MRR steps (1501) follow the subscriptions on the
coordinator; every report equals the raw tables as on one PostgreSQL."""

from __future__ import annotations

import datetime as dt

import asyncpg
import pytest

from billing_oss.server.store.usage_repo import ensure_partitions
from tests.integration import test_month_totals, test_mrr_steps, test_report_spans

pytestmark = pytest.mark.citus


async def test_month_level_and_mrr_steps_on_citus(citus_pool: asyncpg.Pool) -> None:
    for table in ("charge_month_totals", "subscription_product_steps",
                  "subscription_account_steps"):
        placed = await citus_pool.fetchval(
            "SELECT count(*) FROM pg_dist_partition WHERE logicalrelid = $1::regclass"
            " AND partmethod <> 'n'", table)
        assert placed == 0, table  # no account to distribute by: on the coordinator
    assert await citus_pool.fetchval(  # beside the rollups it sums, by account
        "SELECT colocationid FROM pg_dist_partition"
        " WHERE logicalrelid = 'charge_account_months'::regclass") == \
        await citus_pool.fetchval("SELECT colocationid FROM pg_dist_partition"
                                  " WHERE logicalrelid = 'charge_rollups_monthly'::regclass")
    async with citus_pool.acquire() as conn:
        await ensure_partitions(conn, [dt.date(2026, m, 1) for m in (1, 2, 3)])
    await test_month_totals.scenario(citus_pool, await test_month_totals.seed_catalog(citus_pool))
    await test_mrr_steps.scenario(citus_pool)


async def test_week_level_and_account_presence_on_citus(citus_pool: asyncpg.Pool) -> None:
    assert await citus_pool.fetchval(  # no account: on the coordinator
        "SELECT count(*) FROM pg_dist_partition WHERE logicalrelid = 'charge_week_totals'"
        "::regclass AND partmethod <> 'n'") == 0
    for table in ("charge_account_presence", "charge_account_days"):
        assert await citus_pool.fetchval(  # beside the rollups it is set from
            "SELECT colocationid FROM pg_dist_partition WHERE logicalrelid = $1::regclass",
            table) == await citus_pool.fetchval(
            "SELECT colocationid FROM pg_dist_partition"
            " WHERE logicalrelid = 'charge_rollups_monthly'::regclass")
    async with citus_pool.acquire() as conn:
        await ensure_partitions(conn, [dt.date(2025, 12, 1),
                                       *(dt.date(2026, m, 1) for m in (1, 2, 3))])
    await test_report_spans.scenario(citus_pool,
                                     await test_month_totals.seed_catalog(citus_pool))
