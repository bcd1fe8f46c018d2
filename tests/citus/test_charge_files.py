"""Migration 1430 on a database that already holds traffic: the original charges stored
before it take their usage record's file, on a Citus cluster whose tables are distributed
as on one PostgreSQL; a message's charge and a rerate's reversal and new charge keep none."""

from __future__ import annotations

import datetime as dt

import asyncpg
import pytest

from billing_oss.server.store.migrate import migrate
from billing_oss.server.store.usage_repo import ensure_partitions

pytestmark = pytest.mark.citus
MARCH = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)


async def _stored_before_1430(pool: asyncpg.Pool) -> int:
    """The database as it was before migration 1430, holding traffic; the file's id."""
    await pool.execute("ALTER TABLE charges DROP COLUMN source_file_id")
    await pool.execute("DELETE FROM schema_migrations WHERE name LIKE '1430\\_%'")
    async with pool.acquire() as conn:
        await ensure_partitions(conn, [MARCH.date().replace(day=1)])
    await pool.execute("INSERT INTO accounts (account_id) VALUES ('A1'), ('A2'), ('A3')")
    file_id: int = await pool.fetchval(
        "INSERT INTO source_files (source, name, format, sha256, state) VALUES"
        " ('msc1', 'MSC1_00001', 'csv', 'x', 'done') RETURNING source_file_id")
    # A1 and A2: usage of the file (A2's rerated), A3: a message's.
    for account, usage_id, file in (("A1", 1, file_id), ("A2", 2, file_id), ("A3", 3, None)):
        await pool.execute(
            "INSERT INTO usage_records (account_id, usage_id, event_time, source, record_key,"
            " kind, source_file_id) VALUES ($1, $2, $3, 'msc1', $1, 'voice', $4)",
            account, usage_id, MARCH, file)
    await pool.execute(
        "INSERT INTO charges (account_id, charge_id, event_time, usage_id, kind, amount_micros,"
        " currency, reverses_charge_id, rerate_job_id) VALUES"
        " ('A1', 11, $1, 1, 'charge', 100, 'EUR', NULL, NULL),"
        " ('A2', 12, $1, 2, 'charge', 200, 'EUR', NULL, NULL),"
        " ('A2', 13, $1, 2, 'reversal', -200, 'EUR', 12, 7),"
        " ('A2', 14, $1, 2, 'charge', 250, 'EUR', NULL, 7),"
        " ('A3', 15, $1, 3, 'charge', 300, 'EUR', NULL, NULL)", MARCH)
    return file_id


async def _backfilled(pool: asyncpg.Pool) -> dict[int, int | None]:
    file_id = await _stored_before_1430(pool)
    await migrate(pool)
    rows = await pool.fetch("SELECT charge_id, source_file_id FROM charges")
    return {r["charge_id"]: r["source_file_id"] and r["source_file_id"] - file_id + 1
            for r in rows}


EXPECTED = {11: 1, 12: 1, 13: None, 14: None, 15: None}


async def test_stored_charges_take_their_usage_file_on_citus(citus_pool: asyncpg.Pool) -> None:
    assert await citus_pool.fetchval(
        "SELECT count(*) FROM pg_dist_partition WHERE logicalrelid = 'charges'::regclass") == 1
    assert await _backfilled(citus_pool) == EXPECTED


async def test_stored_charges_take_their_usage_file_on_one_postgresql(plain_url: str) -> None:
    pool = await asyncpg.create_pool(plain_url, min_size=1, max_size=2)
    assert pool is not None
    try:
        await migrate(pool)
        assert await _backfilled(pool) == EXPECTED
    finally:
        await pool.close()
