"""Migration 1511 on a Citus cluster already holding rollups: both levels become
partitioned by ``compacted``, their rows move, and the new tables are distributed by
account again, co-located with the usage, partitions and all; a compaction then folds the
deltas on the shards."""

from __future__ import annotations

import asyncpg
import pytest

from billing_oss.server.analytics import compaction
from billing_oss.server.store import migrate as migrate_module
from tests.migrations_before import migrate_before

pytestmark = pytest.mark.citus
LEVELS = ("charge_rollups", "charge_rollups_monthly")
COLUMNS = ("account_id, day, service, zone, currency, tariff_version_id, amount_micros,"
           " records, units, compacted, reversals, reversed_micros")


async def test_the_rollups_move_and_stay_distributed(citus_url: str) -> None:
    pool = await asyncpg.create_pool(citus_url, min_size=1, max_size=4,
                                     server_settings={"timezone": "UTC"})
    assert pool is not None
    try:
        await migrate_before(pool, "1511")
        for level in LEVELS:
            await pool.execute(
                f"INSERT INTO {level} ({COLUMNS}) VALUES"
                " ('A1', '2026-02-01', 'voice', 'national', 'EUR', 7, 1500000, 3, 180, true,"
                " 1, -250000),"
                " ('A1', '2026-02-01', 'voice', 'national', 'EUR', 7, 20001, 1, 60, false, 0,"
                " 0),"
                " ('A2', '2026-02-01', NULL, NULL, 'USD', NULL, -5, -1, -1, false, 1, -5)")
        rows = {level: await pool.fetch(f"SELECT {COLUMNS} FROM {level} ORDER BY {COLUMNS}")
                for level in LEVELS}

        assert "1511_rollup_deltas_apart" in await migrate_module.migrate(pool)
        for level in LEVELS:
            assert await pool.fetch(
                f"SELECT {COLUMNS} FROM {level} ORDER BY {COLUMNS}") == rows[level]
            for table in (level, f"{level}_deltas", f"{level}_kept"):
                assert await pool.fetchval(
                    "SELECT colocationid FROM pg_dist_partition"
                    " WHERE logicalrelid = $1::regclass", table) == await pool.fetchval(
                    "SELECT colocationid FROM pg_dist_partition"
                    " WHERE logicalrelid = 'usage_records'::regclass"), table
            assert await pool.fetchval(
                f"SELECT count(*) FROM {level}_deltas") == 2

        await compaction.run_once(pool)
        for level in LEVELS:
            assert await pool.fetchval(f"SELECT count(*) FROM {level}_deltas") == 0
            sums = await pool.fetch(
                f"SELECT account_id, sum(amount_micros) AS a, sum(reversals) AS r"
                f" FROM {level}_kept GROUP BY 1 ORDER BY 1")
            assert [tuple(r) for r in sums] == [("A1", 1_520_001, 1), ("A2", -5, 1)]
    finally:
        await pool.close()
