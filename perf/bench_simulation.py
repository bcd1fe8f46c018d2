"""Simulation benchmark: N usage records of 10 k accounts priced under a candidate catalog,
end to end from PostgreSQL (binary COPY out → rating kernel, both catalogs → per-account
sums → every account's cycle priced twice), against a plain binary COPY out of the same rows
in the same run. Targets: ≥ 1,000,000 records/s; 10 M records in ≤ 15 s; peak RSS said.

    python perf/bench_simulation.py [--records N] [--accounts A] [--runs R] [--database-url DSN]

The data is seeded once (the demo catalog plus A accounts on its retail tariff, N records
of voice, SMS and data in 2026-03); each side then runs ``--runs`` times (default 3),
alternating, and the medians are printed. Without --database-url (or
BILLING_OSS_TEST_DATABASE_URL) an embedded PostgreSQL is used.
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import statistics
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import embedded_pg  # perf/ is on sys.path: this script's folder

from billing_oss.server.billing.model import Settings
from billing_oss.server.simulation import engine, report, snapshot_repo
from billing_oss.server.store import catalog_repo
from billing_oss.server.store.dsn import with_database
from billing_oss.server.store.migrate import migrate

REPO = Path(__file__).resolve().parent.parent
DEMO = json.loads((REPO / "config/demo-catalog.json").read_text())
SETTINGS = Settings(seller={"name": "Bench Telecom", "country": "FR", "vat_id": "FR1"})
PERIOD = "2026-03"


async def seed(pool: asyncpg.Pool, accounts: int, records: int) -> None:
    await catalog_repo.load_catalog(pool, DEMO)
    async with pool.acquire() as conn:
        await conn.execute(f"""
            SELECT ensure_month_partition('usage_records', '2026-03-01');
            INSERT INTO accounts (account_id, name, timezone, attrs)
            SELECT 'S' || lpad(i::text, 6, '0'), 'Customer ' || i, 'Europe/Paris',
                   json_build_object('country', CASE WHEN i % 4 = 0 THEN 'DE' ELSE 'FR' END)
            FROM generate_series(1, {accounts}) i;
            INSERT INTO subscriptions (account_id, tariff_id, product, valid_from)
            SELECT account_id, 'retail', 'mobile-s', '2026-01-01' FROM accounts
            WHERE account_id LIKE 'S%';
            INSERT INTO usage_records (account_id, usage_id, event_time, source, record_key,
                kind, duration_s, volume_up, volume_down, calling, called)
            SELECT 'S' || lpad((i % {accounts} + 1)::text, 6, '0'), i,
                   '2026-03-02'::timestamptz + (i % 2419200) * interval '1 second', 'bench',
                   i::text, (ARRAY['voice', 'voice', 'sms', 'data'])[i % 4 + 1],
                   CASE WHEN i % 4 < 2 THEN i % 900 END,
                   CASE WHEN i % 4 = 3 THEN i % 100000 END,
                   CASE WHEN i % 4 = 3 THEN i % 10000000 END, '3361' || lpad(i::text, 7, '0'),
                   (ARRAY['3361', '336', '49', '1', '2', '3389', '44', '337'])[i % 8 + 1]
                       || lpad((i % 9999991)::text, 7, '0')
            FROM generate_series(1, {records}) i;
            ANALYZE""")


def candidate() -> dict[str, Any]:
    """The demo catalog with every retail step price 10 % higher."""
    out = copy.deepcopy(DEMO)
    for version in out["tariffs"][0]["versions"]:
        for rate in version["rates"]:
            for step in rate["steps"]:
                step["price"] = str(Decimal(step["price"]) * Decimal("1.1"))
    return out


async def plain_copy(pool: asyncpg.Pool) -> tuple[float, int]:
    """Seconds and bytes of a binary COPY out of the same rows, the bytes dropped."""
    size = 0

    async def sink(data: bytes) -> None:
        nonlocal size
        size += len(data)

    query = snapshot_repo.copy_query("2026-02-28T00:00:00+00:00", "2026-04-02T00:00:00+00:00", None)
    async with pool.acquire() as conn:
        t = time.perf_counter()
        await conn.copy_from_query(query, output=sink, format="binary")
        return time.perf_counter() - t, size


async def simulate(pool: asyncpg.Pool, request: engine.Request) -> tuple[float, float, Any]:
    async with pool.acquire() as conn:
        t = time.perf_counter()
        outcome = await engine.simulate(conn, request, SETTINGS)
        result = report.build(outcome)
        return time.perf_counter() - t, outcome.read_s, (outcome, result)


async def main(dsn: str, accounts: int, records: int, runs: int) -> None:
    admin = await asyncpg.connect(dsn)
    name = f"bench_simulation_{uuid.uuid4().hex[:8]}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        pool = await asyncpg.create_pool(with_database(dsn, name), min_size=1, max_size=2)
        assert pool is not None
        await migrate(pool)
        t = time.perf_counter()
        await seed(pool, accounts, records)
        print(f"seeded {records:,} usage records for {accounts:,} accounts in "
              f"{time.perf_counter() - t:.1f} s")
        request = engine.Request(candidate=candidate(), period_from=PERIOD, period_to=PERIOD)
        copies, sims, reads = [], [], []
        outcome: Any = None
        for _ in range(runs):
            copy_s, size = await plain_copy(pool)
            copies.append(copy_s)
            sim_s, read_s, (outcome, result) = await simulate(pool, request)
            sims.append(sim_s)
            reads.append(read_s)
        await pool.close()
        assert outcome.records == records, (outcome.records, records)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        sim_s, copy_s, read_s = (statistics.median(x) for x in (sims, copies, reads))
        total = result["totals"][0]
        print(f"median of {runs} runs each; {records:,} records, {accounts:,} accounts, "
              f"revenue change {total['change']['net']} {total['currency']}")
        print(f"{'simulation, end to end':<40}{sim_s:>8.2f} s  ({records / sim_s:>12,.0f} "
              f"records/s; runs {min(sims):.2f}–{max(sims):.2f} s)   target ≥ 1,000,000/s: "
              f"{'ok' if records / sim_s >= 1e6 else 'MISSED'}")
        print(f"{'  of which COPY + rating ×2 + sums':<40}{read_s:>8.2f} s  "
              f"({records / read_s:>12,.0f} records/s)")
        print(f"{'plain binary COPY out, same rows':<40}{copy_s:>8.2f} s  "
              f"({records / copy_s:>12,.0f} records/s, {size / copy_s / 1e6:,.0f} MB/s)")
        print(f"{'ratio simulation / plain COPY':<40}{sim_s / copy_s:>8.2f} x")
        print(f"peak RSS {rss:,.0f} MiB (batches of {engine.BATCH:,} records)")
        if records >= 10_000_000:
            print(f"10 M records in ≤ 15 s: {'ok' if sim_s <= 15 else 'MISSED'} "
                  f"({sim_s:.1f} s)")
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3, help="runs of each side (median)")
    embedded_pg.add_database_url(parser)
    args = parser.parse_args()
    embedded_pg.run(lambda url: main(url, args.accounts, args.records, args.runs),
                    args.database_url)


if __name__ == "__main__":
    cli()
