"""Migration 1475 on a Citus cluster already serving traffic: the rollup trigger of
``charges``, fired on every shard of it on the workers, is gone everywhere, and the writer's
deltas are then the only ones (a trigger left on a shard would count each charge twice)."""

from __future__ import annotations

import datetime as dt

import asyncpg
import pytest

from billing_oss.server.store import migrate as migrate_module
from billing_oss.server.store.usage_repo import ensure_partitions
from tests.charge_seed import insert_charges
from tests.migrations_before import migrate_before

pytestmark = pytest.mark.citus
MARCH = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
TRIGGERS = "SELECT count(*) FROM pg_trigger WHERE tgname = 'charges_roll_up'"


async def triggers_everywhere(pool: asyncpg.Pool) -> int:
    """The rollup triggers on the coordinator and on every worker's shards."""
    here: int = await pool.fetchval(TRIGGERS)
    workers = await pool.fetch(
        "SELECT success, result FROM run_command_on_workers($1)", TRIGGERS)
    assert all(w["success"] for w in workers), workers
    return here + sum(int(w["result"]) for w in workers)


async def test_the_trigger_is_dropped_on_the_shards(citus_url: str) -> None:
    pool = await asyncpg.create_pool(citus_url, min_size=1, max_size=4,
                                     server_settings={"timezone": "UTC"})
    assert pool is not None
    try:
        await migrate_before(pool, "1475")
        async with pool.acquire() as conn:
            await ensure_partitions(conn, [MARCH.date().replace(day=1)])
        workers = await pool.fetchval("SELECT count(*) FROM pg_dist_node WHERE groupid > 0")
        assert await triggers_everywhere(pool) > workers  # on shards of the table, and parent
        assert "1475_rollups_by_writer" in await migrate_module.migrate(pool)
        assert await triggers_everywhere(pool) == 0

        await pool.execute("INSERT INTO accounts (account_id) VALUES ('A1'), ('A2')")
        await pool.execute(
            "INSERT INTO usage_records (account_id, usage_id, event_time, source, record_key,"
            " kind, duration_s) VALUES ('A1', 1, $1, 'msc1', 'k1', 'voice', 42),"
            " ('A2', 2, $1, 'msc1', 'k2', 'voice', 7)", MARCH)
        await insert_charges(pool, ("account_id", "event_time", "usage_id", "kind",
                                    "amount_micros", "currency"),
                             [("A1", MARCH, 1, "charge", 1_000_001, "EUR"),
                              ("A2", MARCH, 2, "charge", 3, "EUR")])
        for table in ("charge_rollups", "charge_rollups_monthly"):
            rows = await pool.fetch(
                f"SELECT account_id, sum(amount_micros) AS a, sum(records) AS r,"
                f" sum(units) AS u FROM {table} GROUP BY 1 ORDER BY 1")
            assert [tuple(r) for r in rows] == [("A1", 1_000_001, 1, 42), ("A2", 3, 1, 7)]
    finally:
        await pool.close()
