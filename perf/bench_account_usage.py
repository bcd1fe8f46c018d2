"""What a customer's reads cost on a busy account: one account with 200 k usage records this
month (each charged, one in ten rerated: charge, reversal, new charge), among 100 others.

    python perf/bench_account_usage.py [--records N] [--runs R] [--database-url DSN]

Ours, each the median of ``--runs``: a page of 50 records with their charges (first page
and one deep in the month by cursor), the current cycle's totals per service, the whole
month as CSV rows. The peer, in the same run: PostgreSQL reading the same usage rows with no
charge (``/v1/usage``'s query, ``traffic_repo.usage``) and a plain ``sum`` of the month's
charges. Without --database-url (or BILLING_OSS_TEST_DATABASE_URL) an embedded PostgreSQL
is used.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import embedded_pg  # perf/ is on sys.path: this script's folder

from billing_oss.server.store import account_usage_repo, traffic_repo
from billing_oss.server.store.account_usage_repo import ItemFilter
from billing_oss.server.store.dsn import with_database
from billing_oss.server.store.migrate import migrate

ACCOUNT = "BUSY"


async def seed(pool: asyncpg.Pool, records: int, start: dt.datetime) -> None:
    async with pool.acquire() as conn:
        for table in ("usage_records", "charges"):
            await conn.execute("SELECT ensure_month_partition($1::regclass, $2::date)",
                               table, start.date())
        await conn.execute(
            "INSERT INTO accounts (account_id) SELECT 'A' || i FROM generate_series(1, 100) i")
        await conn.execute("INSERT INTO accounts (account_id) VALUES ($1)", ACCOUNT)
        seconds = 27 * 86400
        await conn.execute(f"""
            INSERT INTO usage_records (account_id, usage_id, event_time, source, record_key,
                kind, duration_s, volume_down, called)
            SELECT CASE WHEN i % 4 = 0 THEN 'A' || (i % 100 + 1) ELSE '{ACCOUNT}' END, i,
                   $1::timestamptz + (i % {seconds}) * interval '1 second', 'bench', i::text,
                   CASE WHEN i % 3 = 0 THEN 'data' ELSE 'voice' END,
                   CASE WHEN i % 3 = 0 THEN NULL ELSE 30 + i % 600 END,
                   CASE WHEN i % 3 = 0 THEN i % 10000000 END, '3314' || (i % 5000)
            FROM generate_series(1, {records * 4 // 3}) i""", start)
        await conn.execute("""
            INSERT INTO charges (account_id, charge_id, event_time, usage_id, kind,
                amount_micros, currency, zone)
            SELECT account_id, usage_id, event_time, usage_id, 'charge',
                   1000 + (usage_id * 7919) % 500000, 'EUR', 'national' FROM usage_records;
            SELECT setval('charge_id_seq', (SELECT max(charge_id) FROM charges));
            INSERT INTO charges (account_id, charge_id, event_time, usage_id, kind,
                amount_micros, currency, zone, reverses_charge_id)
            SELECT account_id, nextval('charge_id_seq'), event_time, usage_id, 'reversal',
                   -amount_micros, currency, zone, charge_id FROM charges
            WHERE usage_id % 10 = 0;
            INSERT INTO charges (account_id, charge_id, event_time, usage_id, kind,
                amount_micros, currency, zone)
            SELECT account_id, nextval('charge_id_seq'), event_time, usage_id, 'charge',
                   amount_micros / 2, currency, zone FROM charges
            WHERE usage_id % 10 = 0 AND kind = 'charge';
            ANALYZE""")


async def median_ms(runs: int, work: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    times, out = [], None
    await work()  # plans and caches warm, like a running server
    for _ in range(runs):
        t = time.perf_counter()
        out = await work()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), out


async def main(dsn: str, records: int, runs: int) -> None:
    admin = await asyncpg.connect(dsn)
    name = f"bench_account_usage_{uuid.uuid4().hex[:8]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        pool = await asyncpg.create_pool(with_database(dsn, name), min_size=1, max_size=2)
        assert pool is not None
        await migrate(pool)
        start = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
        end = dt.datetime(2026, 4, 1, tzinfo=dt.UTC)
        t = time.perf_counter()
        await seed(pool, records, start)
        mine = await pool.fetchval("SELECT count(*) FROM usage_records WHERE account_id = $1",
                                   ACCOUNT)
        print(f"seeded {mine:,} records for {ACCOUNT} (and others' beside) in "
              f"{time.perf_counter() - t:.1f} s; median of {runs} runs each")
        f = ItemFilter(account_id=ACCOUNT, start=start, end=end)
        deep = (start + dt.timedelta(days=20), 0)
        period = traffic_repo.Period(account_id=ACCOUNT, start=start, end=end)

        async def page_of(after: tuple[dt.datetime, int] | None) -> Any:
            return await account_usage_repo.items(pool, f, after=after, limit=51)

        async def plain_page(after: tuple[dt.datetime, int] | None) -> Any:
            return await traffic_repo.usage(pool, period, kind=None, source=None, after=after,
                                            limit=50)

        async def every(chunk: int = 5000) -> int:
            n, after = 0, None
            while True:
                rows = await account_usage_repo.items(pool, f, after=after, limit=chunk)
                n += len(rows)
                if len(rows) < chunk:
                    return n
                after = (rows[-1].event_time, rows[-1].usage_id)

        async def plain_every(chunk: int = 5000) -> int:
            n, after = 0, None
            while True:
                rows = await traffic_repo.usage(pool, period, kind=None, source=None,
                                                after=after, limit=chunk - 1)
                n += len(rows)
                if len(rows) < chunk:
                    return n
                after = (rows[-1].event_time, rows[-1].usage_id)

        for label, ours, peer in (
            ("page of 50, first", lambda: page_of(None), lambda: plain_page(None)),
            ("page of 50, day 21 by cursor", lambda: page_of(deep), lambda: plain_page(deep)),
        ):
            ms, _ = await median_ms(runs, ours)
            peer_ms, _ = await median_ms(runs, peer)
            print(f"{label:<34}{ms:>8.1f} ms   /v1/usage's query (no charge): {peer_ms:.1f} ms")
        ms, totals = await median_ms(
            runs, lambda: account_usage_repo.totals(pool, ACCOUNT, start, end))
        peer_ms, _ = await median_ms(runs, lambda: pool.fetchval(
            "SELECT sum(amount_micros) FROM charges WHERE account_id = $1"
            " AND event_time >= $2 AND event_time < $3", ACCOUNT, start, end))
        print(f"{'current cycle totals':<34}{ms:>8.1f} ms   plain sum of the charges: "
              f"{peer_ms:.1f} ms   ({sum(t.records for t in totals):,} records)")
        ms, n = await median_ms(runs, every)
        peer_ms, _ = await median_ms(runs, plain_every)
        print(f"{'the month for CSV, rows read':<34}{n / ms * 1000:>8,.0f} /s   "
              f"/v1/usage's query: {n / peer_ms * 1000:,.0f} /s ({n:,} rows, CSV writing "
              "not counted)")
        await pool.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000, help="the account's records")
    parser.add_argument("--runs", type=int, default=5, help="runs of each side (median)")
    embedded_pg.add_database_url(parser)
    args = parser.parse_args()
    embedded_pg.run(lambda url: main(url, args.records, args.runs), args.database_url)


if __name__ == "__main__":
    cli()
