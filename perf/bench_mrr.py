"""How long the MRR report takes over a year of subscriptions, and which of its queries
costs what (MRR per product, account movements, usage revenue).

    python perf/bench_mrr.py [--accounts N [N ...]] [--runs R] [--database-url DSN]

For each N, builds a throwaway database on the server at DSN (default:
BILLING_OSS_TEST_DATABASE_URL), with N accounts each holding one subscription to one of five
products (starting over 500 days from 2025-01-01, a quarter of them ending 30 to 230 days
later), inserted in one statement whose trigger writes their steps (migration 1501; timed,
and so is ending one subscription), runs the report over 2025 R times and prints the median
of each part and of the whole; drops the database after. The peer is the definition the
earlier queries computed, every month joined with every subscription
(tests/integration/test_mrr_steps.py): both are run, and their rows must be equal.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from embedded_pg import scratch_pool  # noqa: E402  perf/ is on sys.path: this folder

from billing_oss.server.analytics import repo, reports  # noqa: E402
from tests.integration.test_mrr_steps import DEFINED_MOVEMENTS, DEFINED_MRR  # noqa: E402

START, END = dt.date(2025, 1, 1), dt.date(2026, 1, 1)
async def seed(pool: asyncpg.Pool, accounts: int) -> float:
    """The subscriptions, and the time their insert took (steps written by its trigger)."""
    await pool.execute("INSERT INTO tariffs (tariff_id, currency) VALUES ('t', 'EUR')")
    await pool.execute(
        "INSERT INTO products (product_id, name, currency, recurring_fee_micros)"
        " SELECT 'p' || i, 'P' || i, 'EUR', i * 1000000 FROM generate_series(1, 5) i")
    await pool.execute("INSERT INTO accounts (account_id)"
                       " SELECT 'a' || i FROM generate_series(1, $1) i", accounts)
    began = time.perf_counter()
    await pool.execute(
        "INSERT INTO subscriptions (account_id, tariff_id, product, valid_from, valid_to)"
        " SELECT 'a' || i, 't', 'p' || (i % 5 + 1),"
        " timestamptz '2025-01-01' + (i % 500) * interval '1 day',"
        " CASE WHEN i % 4 = 0 THEN timestamptz '2025-01-01'"
        "  + (i % 500 + 30 + i % 200) * interval '1 day' END"
        " FROM generate_series(1, $1) i", accounts)
    inserted = time.perf_counter() - began
    await pool.execute("ANALYZE")
    return inserted


async def timed(runs: int, call: Callable[[], Awaitable[object]]) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        await call()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def same(rows: object, peer: object) -> bool:
    return [tuple(r) for r in rows] == [tuple(r) for r in peer]  # type: ignore[attr-defined]


async def measure(pool: asyncpg.Pool, accounts: int, runs: int) -> None:
    inserted = await seed(pool, accounts)
    ended = await timed(runs, lambda: pool.execute(
        "UPDATE subscriptions SET valid_to = valid_from + interval '45 days'"
        " WHERE account_id = 'a7'"))
    parts = {
        "mrr per product": lambda: repo.mrr(pool, START, END),
        "account movements": lambda: repo.account_movements(pool, START, END),
        "usage revenue": lambda: repo.totals(pool, period="month", dims=[], start=START,
                                             end=END),
        "whole report": lambda: reports.build(pool, "mrr", by=[], period="month",
                                              start=START, end=END),
    }
    months = repo._months(START, END)
    peers = {"mrr per product": lambda: pool.fetch(DEFINED_MRR, months),
             "account movements": lambda: pool.fetch(DEFINED_MOVEMENTS, months)}
    for label, peer in peers.items():
        assert same(await parts[label](), await peer()), f"{label}: rows differ"
    print(f"report mrr over {START} to {END}, {accounts:,} subscriptions, "
          f"median of {runs} runs, load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores (peer: the earlier months × subscriptions join); the"
          f" insert of the subscriptions, steps included, took {inserted:.2f} s, ending"
          f" one subscription {ended * 1000:.1f} ms")
    for label, call in parts.items():
        now = await timed(runs, call)
        if label in peers:
            before = await timed(runs, peers[label])
            print(f"{label:18} {now:7.3f} s   peer {before:7.3f} s   "
                  f"{before / now:5.1f}× faster")
        else:
            print(f"{label:18} {now:7.3f} s")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, nargs="+", default=[100_000])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--database-url", default=os.environ.get("BILLING_OSS_TEST_DATABASE_URL"))
    args = parser.parse_args()
    if not args.database_url:
        parser.error("--database-url (or BILLING_OSS_TEST_DATABASE_URL) is required")
    for accounts in args.accounts:
        async with scratch_pool(args.database_url, "bench_mrr") as pool:
            await measure(pool, accounts, args.runs)


if __name__ == "__main__":
    asyncio.run(main())
