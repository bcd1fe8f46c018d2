"""The kept aging on Citus: its deltas are distributed by account beside the ledger, the
level without the account stays on the coordinator, and aging as of today from them equals
the ledger's, per account, across accounts and page by page, before and after compactions,
after a seeded run of invoices, payments, allocations, refunds, reversals, credit notes and
write-offs (the same steps as the single-node property test)."""

from __future__ import annotations

import datetime as dt
import random

import asyncpg
import pytest

from billing_oss.server.collections import aging_kept_repo
from tests.integration import collections_seed as seed
from tests.integration.test_collections_ledger import CENT, World, apply

pytestmark = pytest.mark.citus


def steps(rng: random.Random, n: int) -> list[tuple[object, ...]]:
    def amount() -> int:
        return rng.randint(1, 50_000) * CENT

    kinds = [
        lambda: ("invoice", amount()),
        lambda: ("pay", amount(), rng.choice(["auto", "none"])),
        lambda: ("allocate", rng.randint(0, 9), rng.randint(0, 9), rng.choice([None, amount()])),
        lambda: ("allocate_auto", rng.randint(0, 9)),
        lambda: ("refund", rng.randint(0, 9), amount()),
        lambda: ("reverse", rng.randint(0, 9)),
        lambda: ("credit", rng.randint(0, 9), rng.randint(1, 100)),
        lambda: ("write_off", rng.randint(0, 9)),
    ]
    return [("invoice", amount()), ("invoice", amount()), ("pay", amount(), "auto")] + [
        rng.choice(kinds)() for _ in range(n)]


async def test_kept_aging_equals_the_ledgers_on_citus(citus_pool: asyncpg.Pool,
                                                     citus_url: str) -> None:
    # Sessions opened after the migration: they and their connections to the workers have
    # the nesting setting the migration gives the database (collections_settle's helpers).
    await citus_pool.close()
    citus_pool = await asyncpg.create_pool(citus_url, min_size=1, max_size=4,
                                           server_settings={"timezone": "UTC"})
    try:
        await _run(citus_pool)
    finally:
        await citus_pool.close()


async def _run(citus_pool: asyncpg.Pool) -> None:
    placed = dict(await citus_pool.fetch(
        "SELECT logicalrelid::regclass::text, partmethod::text FROM pg_dist_partition"
        " WHERE logicalrelid::regclass::text IN ('aging_open', 'aging_totals')"))
    assert placed == {"aging_open": "h"}  # the level without the account: on the coordinator
    rng = random.Random(24)
    today = dt.datetime.now(dt.UTC).date()
    worlds = [World(account=f"K{i}") for i in range(4)]
    async with citus_pool.acquire() as conn:
        for w in worlds:
            await seed.account(conn, w.account)
    for round_ in range(3):
        for w in worlds:
            day = today - dt.timedelta(days=120) + dt.timedelta(days=40 * round_)
            for op in steps(rng, 8):
                day += dt.timedelta(days=rng.randint(0, 9))  # some beyond today
                w.days.append(day)
                await apply(citus_pool, w, day, op)
        await seed.assert_kept_aging_is_the_ledgers(citus_pool, days=[today + dt.timedelta(3)])
        for w in worlds:
            await seed.assert_kept_aging_is_the_ledgers(citus_pool, account_id=w.account,
                                                        days=w.days)
        assert await aging_kept_repo.compact(citus_pool) >= 0
        assert await aging_kept_repo.fresh(citus_pool) == 0
        await seed.assert_kept_aging_is_the_ledgers(citus_pool, days=[today + dt.timedelta(3)])
    assert await citus_pool.fetchval("SELECT count(*) FROM aging_totals") > 0
    await aging_kept_repo.rebuild(citus_pool)  # the backfill's path
    await seed.assert_kept_aging_is_the_ledgers(citus_pool)
