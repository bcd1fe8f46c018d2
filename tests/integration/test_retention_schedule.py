"""Retention's housekeeping on its clock (``server.scheduled`` with a test clock): it archives
the months the retention lets go, and only those, once per interval."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import asyncpg

from billing_oss.server.billing.bill_runs import bill_run
from billing_oss.server.collections import payments
from billing_oss.server.collections.model import NewPayment
from billing_oss.server.config import RetentionConfig
from billing_oss.server.retention import housekeeping
from tests.integration import billing_seed
from tests.integration.api_harness import seed_usage


async def test_housekeeping_archives_what_the_retention_lets_go(pool: asyncpg.Pool,
                                                                tmp_path: Path) -> None:
    """A test clock through months: January (paid) goes once six months have passed since it
    ended, February (unpaid) stays; between two runs of the interval nothing runs."""
    async with pool.acquire() as conn:
        await billing_seed.base(conn)
        await billing_seed.account(conn, "R")
    for day in ("2025-01-05", "2025-02-05"):
        await seed_usage(pool, "R", f"{day}T10:00:00Z", amount_micros=250_000)
    for period in ("2025-01", "2025-02"):
        await bill_run(pool, period, billing_seed.SETTINGS, accounts=["R"], finalize=True,
                       force=True, now=dt.datetime(2025, 3, 1, tzinfo=dt.UTC), actor="test")
    january = await pool.fetchrow("SELECT payable_micros FROM invoices WHERE period = '2025-01'")
    await payments.record(pool, "test", NewPayment(
        account_id="R", amount_micros=january["payable_micros"],
        received_on=dt.date(2025, 3, 2), method="transfer"))
    cfg = RetentionConfig(interval_s=86_400, partitions_ahead_months=1, archive_after_months=6,
                          archive_dir=str(tmp_path))
    clock = dt.datetime(2025, 7, 10, tzinfo=dt.UTC)

    done = await housekeeping.run_if_due(pool, cfg, clock, "test")
    assert done is not None and done.archived == []  # January ended less than 6 months ago
    clock = dt.datetime(2025, 8, 10, tzinfo=dt.UTC)
    done = await housekeeping.run_if_due(pool, cfg, clock, "test")
    assert done is not None and done.archived == ["2025-01"]
    assert (tmp_path / "2025-01" / "manifest.json").exists()
    assert await housekeeping.run_if_due(pool, cfg, clock + dt.timedelta(hours=1)) is None
    clock = dt.datetime(2025, 9, 10, tzinfo=dt.UTC)
    done = await housekeeping.run_if_due(pool, cfg, clock, "test")
    assert done is not None and done.archived == []  # February's invoice is not paid
    assert done.months_ensured == ["2025-09", "2025-10"]
    archived = await pool.fetch("SELECT month FROM retention_archives ORDER BY month")
    assert [r["month"] for r in archived] == [dt.date(2025, 1, 1)]
    assert await pool.fetchval("SELECT count(*) FROM usage_records") == 1
