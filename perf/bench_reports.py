"""How long revenue reports over a year of rollups take, against the same report computed
by one grouped aggregate with a distinct-account count (the earlier query, the peer).

    python perf/bench_reports.py [--accounts 5000] [--runs 3] [--database-url DSN]

Builds a throwaway database on the server at DSN (default: BILLING_OSS_TEST_DATABASE_URL)
holding a year (2025) of compacted rollups: per account and day two rows (voice and data,
one of four zones), 3.65 M daily rows for 5,000 accounts, and their monthly level; runs
``report revenue --period month`` over the year by zone, by account and by country R times
each way, checks both give the same rows, and prints the medians and their ratio; drops the
database after.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import sys
import time
from pathlib import Path

import asyncpg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from embedded_pg import scratch_pool  # noqa: E402  perf/ is on sys.path: this folder

from billing_oss.server.analytics import reports  # noqa: E402

START, END = dt.date(2025, 1, 1), dt.date(2026, 1, 1)
# The earlier form of repo.totals over the monthly level: one aggregate whose
# count(DISTINCT account_id) sorts every group's rows.
PEER = {
    "zone": ("SELECT date_trunc('month', r.day)::date, r.zone, rtrim(r.currency),"
             " sum(r.amount_micros)::bigint, sum(r.records)::bigint, sum(r.units),"
             " count(DISTINCT r.account_id) FROM charge_rollups_monthly r"
             " WHERE r.day >= $1 AND r.day < $2 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"),
    "account": ("SELECT date_trunc('month', r.day)::date, r.account_id, rtrim(r.currency),"
                " sum(r.amount_micros)::bigint, sum(r.records)::bigint, sum(r.units),"
                " count(DISTINCT r.account_id) FROM charge_rollups_monthly r"
                " WHERE r.day >= $1 AND r.day < $2 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"),
    "country": ("SELECT date_trunc('month', r.day)::date, a.attrs->>'country',"
                " rtrim(r.currency), sum(r.amount_micros)::bigint, sum(r.records)::bigint,"
                " sum(r.units), count(DISTINCT r.account_id) FROM charge_rollups_monthly r"
                " LEFT JOIN accounts a ON a.account_id = r.account_id"
                " WHERE r.day >= $1 AND r.day < $2 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"),
}


async def seed(pool: asyncpg.Pool, accounts: int) -> None:
    await pool.execute(
        "INSERT INTO accounts (account_id, attrs) SELECT 'a' || i,"
        " jsonb_build_object('country', (ARRAY['FR', 'DE', 'ES', 'IT'])[i % 4 + 1])"
        " FROM generate_series(1, $1) i", accounts)
    await pool.execute(
        "INSERT INTO charge_rollups (account_id, day, service, zone, currency,"
        " tariff_version_id, amount_micros, records, units, compacted)"
        " SELECT 'a' || i, d::date, s, 'z' || ((i + extract(doy FROM d)::int) % 4), 'EUR',"
        " NULL, (i % 97 + 1) * 10000 * (CASE s WHEN 'voice' THEN 3 ELSE 1 END),"
        " i % 13 + 1, (i % 13 + 1) * 60, true"
        " FROM generate_series(1, $1) i,"
        " generate_series(timestamp '2025-01-01', timestamp '2025-12-31', interval '1 day') d,"
        " unnest(ARRAY['voice', 'data']) s", accounts)
    await pool.execute(
        "INSERT INTO charge_rollups_monthly (account_id, day, service, zone, currency,"
        " tariff_version_id, amount_micros, records, units, compacted)"
        " SELECT account_id, date_trunc('month', day)::date, service, zone, currency,"
        " tariff_version_id, sum(amount_micros), sum(records), sum(units), true"
        " FROM charge_rollups GROUP BY 1, 2, 3, 4, 5, 6")
    await pool.execute("VACUUM ANALYZE charge_rollups")
    await pool.execute("VACUUM ANALYZE charge_rollups_monthly")
    await pool.execute("ANALYZE accounts")


async def timed(runs: int, call: object) -> tuple[float, object]:
    times, out = [], None
    for _ in range(runs):
        began = time.perf_counter()
        out = await call()  # type: ignore[operator]
        times.append(time.perf_counter() - began)
    return statistics.median(times), out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database-url", default=os.environ.get("BILLING_OSS_TEST_DATABASE_URL"))
    args = parser.parse_args()
    if not args.database_url:
        parser.error("--database-url (or BILLING_OSS_TEST_DATABASE_URL) is required")
    async with scratch_pool(args.database_url, "bench_reports") as pool:
        began = time.perf_counter()
        await seed(pool, args.accounts)
        daily = await pool.fetchval("SELECT count(*) FROM charge_rollups")
        monthly = await pool.fetchval("SELECT count(*) FROM charge_rollups_monthly")
        print(f"a year of {args.accounts:,} accounts: {daily:,} daily and {monthly:,} monthly "
              f"rollup rows ({time.perf_counter() - began:.0f} s to build); median of "
              f"{args.runs} runs, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} "
              "cores")
        print(f"{'report revenue --period month':34} {'now s':>7} {'peer s':>7} {'ratio':>6}")
        for dim, peer_sql in PEER.items():
            now, report = await timed(args.runs, lambda dim=dim: reports.build(
                pool, "revenue", by=[dim], period="month", start=START, end=END))
            peer, rows = await timed(args.runs, lambda sql=peer_sql: pool.fetch(sql, START,
                                                                                END))
            got = [(r.period, *r.key.values(), r.currency, r.amount, r.records, r.accounts)
                   for r in report.rows]  # type: ignore[attr-defined]
            want = [(r[0].isoformat(), r[1], r[2], reports.format_micros(r[3]), r[4], r[6])
                    for r in rows]  # type: ignore[union-attr]
            assert got == want, f"--by {dim}: the rows differ from the peer's"
            print(f"{'--by ' + dim:34} {now:7.3f} {peer:7.3f} {peer / now:6.1f}")


if __name__ == "__main__":
    asyncio.run(main())
