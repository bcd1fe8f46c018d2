"""A compaction never makes readers of the totals wait for a long reader: while an assurance
control holds the compaction's lock shared (its whole query), a fold that waited for the lock
exclusive would queue every later shared request, every read of the totals across accounts,
behind it. The fold gives its run up after ``compaction_lock.FOLD_LOCK_WAIT_MS`` instead, and
the next run folds."""

from __future__ import annotations

import asyncio
import time

import asyncpg

from billing_oss.server.analytics import compaction
from billing_oss.server.store import compaction_lock
from tests.integration.api_harness import seed_usage

PENDING = "SELECT count(*) FROM charge_rollups WHERE NOT compacted"


async def test_a_fold_leaves_its_run_to_a_long_reader(pool: asyncpg.Pool) -> None:
    await pool.execute("INSERT INTO accounts (account_id) VALUES ('W1')")
    for day in range(1, 4):
        await seed_usage(pool, "W1", f"2026-03-0{day}T10:00:00Z", amount_micros=250_000)
    assert await pool.fetchval(PENDING) == 3

    async with pool.acquire() as control, control.transaction():
        await control.execute(compaction_lock.LOCK)  # a control's query under way
        started = time.monotonic()
        await asyncio.wait_for(compaction.run_once(pool), 10)
        assert time.monotonic() - started < 5
        assert await pool.fetchval(PENDING) == 3  # left to the next run
        # a reader of the totals takes the lock shared at once: nothing queued before it
        async with pool.acquire() as reader, reader.transaction():
            await reader.execute("SET LOCAL lock_timeout = 1000")
            await reader.execute(compaction_lock.LOCK)

    await compaction.run_once(pool)
    assert await pool.fetchval(PENDING) == 0
