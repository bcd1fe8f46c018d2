"""The rollup deltas apart from the folded rows (migration 1511): a delta the writer appends
updates one index, compaction moves the deltas' sums into the folded rows' partition, and a
database migrated with rollups in it keeps every row, each in the partition of its kind."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from billing_oss.server.analytics import compaction
from billing_oss.server.store import migrate as migrate_module
from billing_oss.server.store.dsn import with_database
from tests.integration.api_harness import seed_usage
from tests.migrations_before import migrate_before

LEVELS = ("charge_rollups", "charge_rollups_monthly")
COLUMNS = ("account_id, day, service, zone, currency, tariff_version_id, amount_micros,"
           " records, units, compacted, reversals, reversed_micros")


async def indexes(pool: asyncpg.Pool, table: str) -> list[str]:
    return [r["d"] for r in await pool.fetch(
        "SELECT pg_get_indexdef(indexrelid) AS d FROM pg_index WHERE indrelid = $1::regclass"
        " ORDER BY 1", table)]


async def placed(pool: asyncpg.Pool, table: str) -> list[tuple[str, bool, int]]:
    """(partition, compacted, rows) of ``table``'s rows."""
    return [tuple(r) for r in await pool.fetch(
        f"SELECT tableoid::regclass::text, compacted, count(*)::int FROM {table}"
        " GROUP BY 1, 2 ORDER BY 1, 2")]


async def test_a_delta_updates_one_index_and_compaction_moves_it(pool: asyncpg.Pool) -> None:
    for level in LEVELS:
        assert await indexes(pool, f"{level}_deltas") == [
            f"CREATE INDEX {level}_deltas_day ON public.{level}_deltas USING btree (day)"]
    await pool.execute("INSERT INTO accounts (account_id) VALUES ('D1'), ('D2')")
    for i in range(6):
        await seed_usage(pool, f"D{i % 2 + 1}", f"2026-03-0{i + 1}T10:00:00Z",
                         amount_micros=100_003 * (i + 1))
    charged = await pool.fetchval("SELECT sum(amount_micros) FROM charges")
    assert await placed(pool, "charge_rollups") == [("charge_rollups_deltas", False, 6)]
    assert await placed(pool, "charge_rollups_monthly") == [
        ("charge_rollups_monthly_deltas", False, 6)]  # one per charge's transaction

    await compaction.run_once(pool)
    assert await placed(pool, "charge_rollups") == [("charge_rollups_kept", True, 6)]
    assert await placed(pool, "charge_rollups_monthly") == [
        ("charge_rollups_monthly_kept", True, 2)]
    for level in LEVELS:
        assert await pool.fetchval(f"SELECT sum(amount_micros) FROM {level}") == charged


@pytest.fixture
async def before_1511(pg_admin_dsn: str) -> asyncpg.Pool:
    name = f"t_rollup_deltas_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg_admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    pool = await asyncpg.create_pool(with_database(pg_admin_dsn, name), min_size=1, max_size=4)
    assert pool is not None
    await migrate_before(pool, "1511")
    try:
        yield pool
    finally:
        await pool.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_the_migration_moves_every_row_to_its_partition(before_1511: asyncpg.Pool) -> None:
    pool = before_1511
    for level in LEVELS:
        await pool.execute(
            f"INSERT INTO {level} ({COLUMNS}) VALUES"
            " ('A1', '2026-02-01', 'voice', 'national', 'EUR', 7, 1500000, 3, 180, true, 1,"
            " -250000),"
            " ('A1', '2026-02-01', 'voice', 'national', 'EUR', 7, 20001, 1, 60, false, 0, 0),"
            " ('A2', '2026-02-01', NULL, NULL, 'USD', NULL, -5, -1, -1, false, 1, -5)")
    rows = {level: await pool.fetch(f"SELECT {COLUMNS} FROM {level} ORDER BY {COLUMNS}")
            for level in LEVELS}

    assert "1511_rollup_deltas_apart" in await migrate_module.migrate(pool)
    for level in LEVELS:
        assert await pool.fetch(f"SELECT {COLUMNS} FROM {level} ORDER BY {COLUMNS}") == rows[
            level]
        assert await placed(pool, level) == [(f"{level}_deltas", False, 2),
                                             (f"{level}_kept", True, 1)]
    assert await pool.fetchval("SELECT to_regclass('charge_rollups_before_1511')") is None
