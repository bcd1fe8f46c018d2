"""The journal's days kept at posting on Citus (migration 1543): the deltas are distributed
by account beside the ledger, so each writer appends on its account's shard, the days (no
account) stay on the coordinator, written by the fold only, and the minor units are a
reference table. Over the export's quarter (every kind of entry, the dunning fee included, a write-
off reversed by ``collections_release_excess``, one currency more), the days are the
builder's per currency and day and the totals the builder's over every period, before and
after a fold and after a rebuild; the ``ledger.journal_days`` control passes. The migration
forms the days of a ledger already on the cluster."""

from __future__ import annotations

import datetime as dt

import asyncpg
import pytest

from billing_oss.server.assurance.controls.journal_days import JOURNAL_DAYS
from billing_oss.server.assurance.model import Context, Settings
from billing_oss.server.collections import journal_days_repo, payments
from billing_oss.server.store import migrate as migrate_module
from tests.integration.journal_days_check import assert_kept_days_are_the_builders
from tests.integration.test_ledger_export import credit_note, pay, seed_ledger
from tests.integration.test_ledger_journal_days import (
    assert_totals_are_the_builders,
    post_in_batches,
)
from tests.migrations_before import migrate_before

pytestmark = pytest.mark.citus


async def test_posting_keeps_the_days_and_totals_match_on_citus(
        citus_pool: asyncpg.Pool, citus_url: str) -> None:
    # Sessions opened after the migration, as test_aging_kept explains.
    await citus_pool.close()
    pool = await asyncpg.create_pool(citus_url, min_size=1, max_size=4,
                                     server_settings={"timezone": "UTC"})
    try:
        placed = dict(await pool.fetch(
            "SELECT logicalrelid::regclass::text, partmethod::text FROM pg_dist_partition"
            " WHERE logicalrelid::regclass::text IN ('ledger_journal_deltas',"
            " 'ledger_journal_days', 'currency_minor_steps')"))
        assert placed == {"ledger_journal_deltas": "h", "currency_minor_steps": "n"}
        assert await pool.fetchval(
            "SELECT count(DISTINCT colocationid) FROM pg_dist_partition WHERE logicalrelid"
            " IN ('ledger_journal_deltas'::regclass, 'ledger_entries'::regclass)") == 1

        await seed_ledger(pool)
        invoice_id = await pool.fetchval("SELECT invoice_id FROM ledger_entries"
                                         " WHERE kind = 'write_off' AND account_id = 'C3'")
        async with pool.acquire() as conn, conn.transaction():
            await credit_note(conn, "C3", invoice_id, 20_000_000, 4_000_000,
                              dt.date(2026, 3, 25))
        assert await pool.fetchval(
            "SELECT count(*) FROM ledger_entries WHERE kind = 'write_off_reversal'") >= 2
        assert await journal_days_repo.fresh(pool) > 0
        await assert_kept_days_are_the_builders(pool)
        await assert_totals_are_the_builders(pool)

        assert await journal_days_repo.fold(pool) > 0
        assert await journal_days_repo.fresh(pool) == 0
        assert await pool.fetchval("SELECT count(*) FROM ledger_journal_days") > 5
        await payments.record(pool, "test", pay("C2", 4_000_000, dt.date(2026, 3, 3)))
        await post_in_batches(pool)
        await assert_kept_days_are_the_builders(pool)
        await assert_totals_are_the_builders(pool)

        await journal_days_repo.rebuild(pool)  # the migration's backfill
        assert await journal_days_repo.fresh(pool) == 0
        await assert_kept_days_are_the_builders(pool)
        await assert_totals_are_the_builders(pool)
        async with pool.acquire() as conn:
            outcome = await JOURNAL_DAYS.evaluate(
                conn, Context(as_of=dt.datetime.now(dt.UTC), settings=Settings()))
        assert outcome.offending == 0, outcome
    finally:
        await pool.close()


async def test_the_migration_forms_the_days_of_an_existing_ledger_on_citus(
        citus_url: str) -> None:
    """Migration 1543 on a cluster whose ledger an earlier release wrote (the stand-ins of
    ``test_ledger_journal_days`` let today's writers run on the earlier schema): its backfill
    reads the distributed ledger into the coordinator's days, and the tables are placed."""
    pool = await asyncpg.create_pool(citus_url, min_size=1, max_size=4,
                                     server_settings={"timezone": "UTC"})
    try:
        await migrate_before(pool, "1543")
    finally:
        await pool.close()
    # Sessions opened after each migration, as test_aging_kept explains.
    pool = await asyncpg.create_pool(citus_url, min_size=1, max_size=4,
                                     server_settings={"timezone": "UTC"})
    try:
        await pool.execute(
            "CREATE TABLE ledger_journal_deltas (account_id text, currency char(3),"
            " entry_date date, entries bigint, debit_micros bigint, credit_micros bigint)")
        await pool.execute(
            "CREATE VIEW ledger_journal_moves AS SELECT account_id, entry_id, kind, payment_id,"
            " currency, entry_date, 0::bigint AS debit_micros, 0::bigint AS credit_micros"
            " FROM ledger_entries")
        await seed_ledger(pool)
        await pool.execute("DROP VIEW ledger_journal_moves")
        await pool.execute("DROP TABLE ledger_journal_deltas")
        await migrate_module.migrate(pool)  # 1543 and the migrations after it
        assert await pool.fetchval("SELECT count(*) FROM schema_migrations"
                                   " WHERE name = '1543_ledger_journal_days'") == 1
    finally:
        await pool.close()
    pool = await asyncpg.create_pool(citus_url, min_size=1, max_size=4,
                                     server_settings={"timezone": "UTC"})
    try:
        assert await pool.fetchval(
            "SELECT partmethod::text FROM pg_dist_partition"
            " WHERE logicalrelid = 'ledger_journal_deltas'::regclass") == "h"
        assert await pool.fetchval("SELECT count(*) FROM ledger_journal_days") > 5
        await assert_kept_days_are_the_builders(pool)
        await assert_totals_are_the_builders(pool)
        await payments.record(pool, "test", pay("C2", 4_000_000, dt.date(2026, 3, 3)))
        await assert_kept_days_are_the_builders(pool)
    finally:
        await pool.close()
