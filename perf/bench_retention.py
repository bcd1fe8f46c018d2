"""Retention benchmark, two parts, each beside its peer in the same run:

1. pseudonymisation of ``1 M × scale`` usage records of one month (four identifiers each,
   HMAC-SHA256 in the database, 16 MiB a transaction, audited), beside one plain UPDATE
   computing the same HMACs over a copy of the same rows (same key) in a single statement;
2. archiving that month (usage and its charges: gzip CSV, sha256, manifest, detach, drop),
   beside ``psql \\copy ... to stdout csv header | gzip -6`` of the same two tables.

    python perf/bench_retention.py [--scale 0.1] [--database-url DSN]

Without --database-url (or BILLING_OSS_TEST_DATABASE_URL) an embedded PostgreSQL is used.
A fresh database is created and dropped. Data are generated server-side.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg

from billing_oss.server.retention import archive, pseudonyms, repo
from billing_oss.server.store.dsn import with_database
from billing_oss.server.store.migrate import migrate

KEY = "bench key"
NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
MONTH = dt.date(2026, 1, 1)


async def seed(pool: asyncpg.Pool, n: int) -> None:
    async with pool.acquire() as conn:
        await conn.execute("SELECT ensure_month_partition('usage_records', '2026-01-01'),"
                           " ensure_month_partition('charges', '2026-01-01')")
        await conn.execute(
            "INSERT INTO usage_records (account_id, usage_id, event_time, source, record_key,"
            " kind, duration_s, calling, called, imsi, msisdn)"
            " SELECT 'A' || (g % 1000), g, '2026-01-01Z'::timestamptz"
            " + (g % 2592000) * interval '1 s', 'bench', g::text, 'voice', 60,"
            " '3361' || lpad((g % 100000)::text, 7, '0'), '4930' || lpad((g % 77777)::text, 7,"
            " '0'), '20801' || lpad((g % 1000)::text, 10, '0'),"
            " '3361' || lpad((g % 100000)::text, 7, '0') FROM generate_series(1, $1) g", n)
        await conn.execute(
            "INSERT INTO charges (account_id, charge_id, event_time, usage_id, kind,"
            " amount_micros, currency) SELECT account_id, usage_id, event_time, usage_id,"
            " 'charge', 150000, 'EUR' FROM usage_records")
        # Billed (a zero invoice per account, every charge on its line) so nothing holds it.
        await conn.execute(
            "INSERT INTO accounts (account_id) SELECT 'A' || g FROM generate_series(0, 999) g;"
            "INSERT INTO invoices (account_id, period, period_start, period_end, currency,"
            " rounding_method, line_total_micros, allowance_micros, net_micros, tax_micros,"
            " total_micros, rounding_micros, payable_micros, seller, buyer)"
            " SELECT account_id, '2026-01', '2026-01-01Z', '2026-02-01Z', 'EUR', 'half-up',"
            " 0, 0, 0, 0, 0, 0, 0, '{}', '{}' FROM accounts;"
            "INSERT INTO invoice_lines (account_id, invoice_id, line_no, kind, service,"
            " description, quantity, unit, gross_micros, net_micros, tax_category, tax_rate)"
            " SELECT account_id, invoice_id, 1, 'usage', 'voice', 'calls', 0, 's', 0, 0, 'S', 20"
            " FROM invoices;"
            "INSERT INTO invoice_line_charges (account_id, charge_id, invoice_id, line_no)"
            " SELECT c.account_id, c.charge_id, i.invoice_id, 1 FROM charges c"
            " JOIN invoices i USING (account_id);"
            "UPDATE invoices SET status = 'finalised', series = 'B', number = invoice_id,"
            " number_text = 'B-' || invoice_id, issue_date = '2026-02-01',"
            " due_date = '2026-02-15', finalised_at = '2026-02-01Z'")
        await conn.execute("VACUUM ANALYZE usage_records_2026_01")
        await conn.execute("VACUUM ANALYZE charges_2026_01")


async def copy_for_peer(pool: asyncpg.Pool) -> None:
    """The month's usage again, as a table of the same shape and key, for the peer."""
    await pool.execute("CREATE TABLE peer_usage AS SELECT * FROM usage_records_2026_01;"
                       "ALTER TABLE peer_usage ADD PRIMARY KEY (account_id, event_time,"
                       " usage_id)")
    await pool.execute("VACUUM ANALYZE peer_usage")


async def peer_update(pool: asyncpg.Pool) -> float:
    """The same HMACs over the same rows in one statement: no ranges, no audit."""
    inner, outer = pseudonyms.pads(KEY)
    sets = ", ".join(f"{c} = {repo._pseudonym_sql(c)}" for c in repo.IDENTIFIERS)
    began = time.perf_counter()
    await pool.execute(f"UPDATE peer_usage SET {sets}", inner, outer)
    return time.perf_counter() - began


def peer_copy(dsn: str, out: Path) -> float:
    psql = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"
    began = time.perf_counter()
    for table in ("usage_records_2026_01", "charges_2026_01"):
        subprocess.run(f"{psql} -X -q '{dsn}' -c '\\copy {table} to stdout csv header'"
                       f" | gzip -6 > {out / table}.csv.gz", shell=True, check=True)
    return time.perf_counter() - began


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--database-url", default=os.environ.get("BILLING_OSS_TEST_DATABASE_URL"))
    args = parser.parse_args()
    if not args.database_url:
        from billing_oss.server.store.embedded import start_server

        server = start_server(Path(tempfile.mkdtemp(prefix="bench-retention-")) / "data",
                              cleanup_mode="delete")
        args.database_url = server.get_uri()
    n = int(1_000_000 * args.scale)
    name = f"bench_retention_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(args.database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = with_database(args.database_url, name)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    try:
        await migrate(pool)
        began = time.perf_counter()
        await seed(pool, n)
        print(f"seeded {n:,} usage records and charges in {time.perf_counter() - began:.1f} s")
        size = await pool.fetchval("SELECT pg_total_relation_size('usage_records_2026_01')"
                                   " + pg_total_relation_size('charges_2026_01')")

        await copy_for_peer(pool)
        began = time.perf_counter()
        changed = await pseudonyms.run(pool, KEY, 30, NOW, "bench")
        ours = time.perf_counter() - began
        peer = await peer_update(pool)
        same = await pool.fetchval("SELECT count(*) FROM peer_usage p JOIN usage_records u"
                                   " USING (account_id, event_time, usage_id)"
                                   " WHERE p.calling = u.calling AND p.imsi = u.imsi")
        assert same == n, same
        assert changed == n, changed
        print(f"pseudonymise {n:,} records: ours {ours:.1f} s ({n / ours:,.0f} records/s);"
              f" one UPDATE, no batches {peer:.1f} s ({n / peer:,.0f} records/s);"
              f" ours/peer time {ours / peer:.2f}")

        with tempfile.TemporaryDirectory() as tmp:
            peer_dir, our_dir = Path(tmp) / "peer", Path(tmp) / "ours"
            peer_dir.mkdir()
            peer = await asyncio.to_thread(peer_copy, dsn, peer_dir)
            peer_bytes = sum(f.stat().st_size for f in peer_dir.iterdir())
            began = time.perf_counter()
            (plan,) = await archive.plan(pool, NOW, 3)
            planned = time.perf_counter() - began
            assert plan.action == "archive", plan
            began = time.perf_counter()
            made = await archive.archive_month(pool, our_dir, MONTH, NOW, 3, "bench")
            ours = time.perf_counter() - began
            our_bytes = sum(f.stat().st_size for f in (our_dir / made.month).iterdir())
            rows = sum(t.rows for t in made.tables)
            print(f"archive {rows:,} rows ({size / 1e6:,.0f} MB in tables): plan (counts,"
                  f" holds) {planned:.1f} s, then archive (holds again under lock, export,"
                  f" sha256, manifest, drop) {ours:.1f} s ({rows / ours:,.0f} rows/s,"
                  f" {our_bytes / 1e6:.0f} MB of files);"
                  f" psql \\copy | gzip -6 {peer:.1f} s ({rows / peer:,.0f} rows/s,"
                  f" {peer_bytes / 1e6:.0f} MB); ours/peer time {ours / peer:.2f}")
    finally:
        await pool.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
