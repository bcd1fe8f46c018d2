"""The ledger journal on Citus, where ledger_entries is distributed by account: its JSON
pages walked by cursor and its CSV and FEC read in chunks are, entry for entry and byte for
byte, the whole period's journal read in one query, over the seeded quarter of
``tests/integration/test_ledger_export.py`` (every kind of entry, the dunning fee whose
ladder is upserted into a reference table included, and one in USD)."""

from __future__ import annotations

import asyncpg
import pytest

from billing_oss.server.config import LedgerConfig
from billing_oss.server.ledger import export
from tests.integration.test_ledger_export import END, JAN, SIREN, seed_ledger

pytestmark = pytest.mark.citus


async def test_journal_pages_and_chunks_are_the_whole_period_on_citus(
        citus_pool: asyncpg.Pool, citus_url: str) -> None:
    # Sessions opened after the migration, as test_aging_kept explains.
    await citus_pool.close()
    pool = await asyncpg.create_pool(citus_url, min_size=1, max_size=4,
                                     server_settings={"timezone": "UTC"})
    try:
        assert await pool.fetchval(
            "SELECT partmethod::text FROM pg_dist_partition"
            " WHERE logicalrelid = 'ledger_entries'::regclass") == "h"
        await seed_ledger(pool)
        chart = LedgerConfig(siren=SIREN)
        whole = await export.journal(pool, chart, JAN, END)
        assert len(whole.entries) > 6 and whole.other_currencies == ("USD",)
        walked, after = [], None
        while True:
            page = await export.page(pool, chart, JAN, END, after, 3)
            assert page.other_currencies == ("USD",)
            walked.extend(page.entries)
            if len(page.entries) < 3:
                break
            last = page.entries[-1]
            after = (last.date, last.ledger_entry_id, last.number)
        assert walked == list(whole.entries)
        async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            parts = [j async for j in export.chunks(conn, chart, JAN, END, 4)]
            totals = await export.totals(conn, chart, JAN, END)
        assert export.csv_head() + "".join(export.csv_body(j) for j in parts) == \
            export.to_csv(whole)
        assert export.fec_head() + b"".join(export.fec_body(j) for j in parts) == \
            export.to_fec(whole)
        assert (totals.entries, totals.debit_micros, totals.credit_micros) == (
            len(whole.entries), whole.debit_micros, whole.credit_micros)
    finally:
        await pool.close()
