"""The compaction ``serve`` runs on its clock: at the first start it folds every day's
deltas into compacted rows and the account-less level, records its tick, and the totals
across accounts equal the charges' sums before and after it."""

from __future__ import annotations

import asyncio
import datetime as dt

import asyncpg

from billing_oss.server.analytics import compaction
from billing_oss.server.store import traffic_repo
from billing_oss.server.store.traffic_repo import Period
from tests.integration.api_harness import seed_usage


async def sums(pool: asyncpg.Pool, period: Period) -> list[tuple[object, ...]]:
    return [(t.currency, t.charges, t.reversals, t.charged_micros, t.reversed_micros)
            for t in await traffic_repo.totals(pool, period)]


async def test_the_clock_folds_deltas_into_the_account_less_level(pool: asyncpg.Pool) -> None:
    await pool.execute("INSERT INTO accounts (account_id) VALUES ('K1'), ('K2'), ('K3')")
    start = dt.datetime(2026, 2, 26, 22, 0, tzinfo=dt.UTC)
    for i in range(40):
        moment = start + dt.timedelta(minutes=317 * i)
        await seed_usage(pool, f"K{i % 3 + 1}", moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
                         amount_micros=999_999 * (i + 1) + 3)
    periods = [Period(), Period(start=dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
                                end=dt.datetime(2026, 3, 5, tzinfo=dt.UTC))]
    before = [await sums(pool, p) for p in periods]
    assert before[0] and before[1]
    assert await pool.fetchval("SELECT count(*) FROM charge_totals") == 0

    stop = asyncio.Event()
    task = asyncio.create_task(compaction.run_forever(pool, 3600, stop))
    for _ in range(200):  # the first run is due at the first start
        if await pool.fetchval("SELECT count(*) FROM scheduled_ticks WHERE task = $1",
                               compaction.TASK):
            break
        await asyncio.sleep(0.05)
    stop.set()
    await task

    assert await pool.fetchval("SELECT count(*) FROM charge_rollups WHERE NOT compacted") == 0
    assert await pool.fetchval("SELECT count(*) FROM charge_totals") > 0
    assert [await sums(pool, p) for p in periods] == before


async def test_totals_across_accounts_wait_for_a_compaction_to_commit(
        pool: asyncpg.Pool) -> None:
    # On Citus a compaction commits on the coordinator and on the workers one after the
    # other: a read in between would count the deltas it moves twice or not at all. Totals
    # across accounts therefore read after a running compaction has committed everywhere.
    await pool.execute("INSERT INTO accounts (account_id) VALUES ('W1'), ('W2')")
    for i in range(6):
        await seed_usage(pool, f"W{i % 2 + 1}", f"2026-03-0{i + 1}T10:00:00Z",
                         amount_micros=123_457 * (i + 1))
    whole = Period(start=dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
                   end=dt.datetime(2026, 3, 7, tzinfo=dt.UTC))
    want = await sums(pool, whole)
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        await conn.fetchval("SELECT compact_charge_rollups('2026-01-01', '2026-12-31')")
        reading = asyncio.create_task(sums(pool, whole))
        await asyncio.sleep(0.5)
        assert not reading.done()  # waits for the compaction
        await tx.commit()
    assert await asyncio.wait_for(reading, 10) == want
    assert await pool.fetchval("SELECT count(*) FROM charge_totals") > 0
    assert await sums(pool, Period(account_id="W1")) != []  # one account: no wait, no lock
