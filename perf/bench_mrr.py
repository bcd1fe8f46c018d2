"""How long the MRR report takes over a year of subscriptions, and which of its queries
costs what (MRR per product, account movements, usage revenue).

    python perf/bench_mrr.py [--accounts N] [--runs R] [--database-url DSN]

Builds a throwaway database on the server at DSN (default: BILLING_OSS_TEST_DATABASE_URL),
with N accounts each holding one subscription to one of five products (starting over 500
days from 2025-01-01, a quarter of them ending 30 to 230 days later), runs the report over
2025 R times and prints the median of each part and of the whole; drops the database after.
No peer ships this report, so there is no side-by-side figure.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from billing_oss.server.analytics import repo, reports  # noqa: E402
from billing_oss.server.store.dsn import with_database  # noqa: E402
from billing_oss.server.store.migrate import migrate  # noqa: E402

START, END = dt.date(2025, 1, 1), dt.date(2026, 1, 1)


async def seed(pool: asyncpg.Pool, accounts: int) -> None:
    await pool.execute("INSERT INTO tariffs (tariff_id, currency) VALUES ('t', 'EUR')")
    await pool.execute(
        "INSERT INTO products (product_id, name, currency, recurring_fee_micros)"
        " SELECT 'p' || i, 'P' || i, 'EUR', i * 1000000 FROM generate_series(1, 5) i")
    await pool.execute("INSERT INTO accounts (account_id)"
                       " SELECT 'a' || i FROM generate_series(1, $1) i", accounts)
    await pool.execute(
        "INSERT INTO subscriptions (account_id, tariff_id, product, valid_from, valid_to)"
        " SELECT 'a' || i, 't', 'p' || (i % 5 + 1),"
        " timestamptz '2025-01-01' + (i % 500) * interval '1 day',"
        " CASE WHEN i % 4 = 0 THEN timestamptz '2025-01-01'"
        "  + (i % 500 + 30 + i % 200) * interval '1 day' END"
        " FROM generate_series(1, $1) i", accounts)
    await pool.execute("ANALYZE")


async def timed(runs: int, call: Callable[[], Awaitable[object]]) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        await call()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--database-url", default=os.environ.get("BILLING_OSS_TEST_DATABASE_URL"))
    args = parser.parse_args()
    if not args.database_url:
        parser.error("--database-url (or BILLING_OSS_TEST_DATABASE_URL) is required")
    name = f"bench_mrr_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(args.database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        pool = await asyncpg.create_pool(with_database(args.database_url, name))
        assert pool is not None
        await migrate(pool)
        await seed(pool, args.accounts)
        parts = {
            "mrr per product": lambda: repo.mrr(pool, START, END),
            "account movements": lambda: repo.account_movements(pool, START, END),
            "usage revenue": lambda: repo.totals(pool, period="month", dims=[], start=START,
                                                 end=END),
            "whole report": lambda: reports.build(pool, "mrr", by=[], period="month",
                                                  start=START, end=END),
        }
        print(f"report mrr over {START} to {END}, {args.accounts:,} subscriptions, "
              f"median of {args.runs} runs")
        for label, call in parts.items():
            print(f"{label:18} {await timed(args.runs, call):7.3f} s")
        await pool.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
