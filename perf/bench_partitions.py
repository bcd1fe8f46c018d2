"""What splitting months of usage and charges into their days costs the reads: the planning
and execution time of four queries over ``--months`` months of partitions, in the same run,
for three layouts: every month one table (``month``); the schema's, every month one table
but the last, the open one, made of its days (``open``, migration 1550); every month made
of its days (``day``).

    python perf/bench_partitions.py [--months 3,13] [--records 200000] [--runs 21]
                                    [--database-url DSN]

Each layout in a fresh database: ``--months`` months of partitions from January 2026, then
``--records`` voice records over the first 69 days (fewer if the months are) across 100
accounts. The queries, shaped
as the API's (``traffic_repo``): one account's usage with no time bound (``/v1/usage?
account_id=``), the all-accounts first page (``/v1/usage``), one account within one month,
and one record by account and usage id (what reads of a charge's usage do). Each runs
``--runs`` times under ``EXPLAIN ANALYZE``; the median planning and execution times and the
95th percentile of their sum are printed. Without --database-url (or
BILLING_OSS_TEST_DATABASE_URL) an embedded PostgreSQL is used.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics

import asyncpg
import embedded_pg  # perf/ is on sys.path: this script's folder

QUERIES = {
    "one account, no time bound": "SELECT * FROM usage_records WHERE account_id = 'A7'"
                                  " ORDER BY event_time, usage_id LIMIT 51",
    "all accounts, page 1": "SELECT * FROM usage_records ORDER BY event_time, usage_id LIMIT 51",
    "one account, one month": "SELECT * FROM usage_records WHERE account_id = 'A7'"
                              " AND event_time >= '2026-02-01Z' AND event_time < '2026-03-01Z'"
                              " ORDER BY event_time, usage_id LIMIT 51",
    "one record by id": "SELECT * FROM usage_records WHERE account_id = 'A7' AND usage_id = 7007",
}


# Every month one table (as closed months are); the schema's: closed months one table each,
# the last (open) one its days; every month its days (under the month).
LAYOUTS = ("month", "open", "day")


def month_after(month: dt.date) -> dt.date:
    return (month + dt.timedelta(days=32)).replace(day=1)


def spread(months: int) -> dt.timedelta:
    """The records' span: 69 days from 1 January 2026, or the partitions' if shorter."""
    end = dt.date(2026, 1, 1)
    for _ in range(months):
        end = month_after(end)
    return min(dt.timedelta(days=69), end - dt.date(2026, 1, 1) - dt.timedelta(days=1))


async def partition(conn: asyncpg.Connection, layout: str, months: int) -> None:
    month = dt.date(2026, 1, 1)
    for n in range(months):
        end = month_after(month)
        if layout == "open" and n == months - 1:  # the schema's open month (migration 1550)
            await conn.execute("SELECT make_day_partitions('usage_records', $1),"
                               " make_day_partitions('charges', $1)", month)
            break
        for parent in ("usage_records", "charges"):
            name = f"{parent}_{month:%Y_%m}"
            by_day = " PARTITION BY RANGE (event_time)" if layout == "day" else ""
            await conn.execute(f"CREATE TABLE {name} PARTITION OF {parent} FOR VALUES FROM"
                               f" ('{month} 00:00+00') TO ('{end} 00:00+00'){by_day}")
            day = month
            while by_day and day < end:
                await conn.execute(
                    f"CREATE TABLE {name}_{day:%d} PARTITION OF {name} FOR VALUES FROM"
                    f" ('{day} 00:00+00') TO ('{day + dt.timedelta(days=1)} 00:00+00')")
                day += dt.timedelta(days=1)
        month = end


async def measure(dsn: str, layout: str, months: int, records: int, runs: int) -> None:
    async with embedded_pg.scratch_pool(dsn, "bench_partitions") as pool, \
            pool.acquire() as conn:
        await partition(conn, layout, months)
        await conn.execute(
            "INSERT INTO usage_records (account_id, usage_id, event_time, source, record_key,"
            " kind) SELECT 'A' || (g % 100), g, '2026-01-01Z'::timestamptz + g * $1::interval,"
            " 's', 'k' || g, 'voice' FROM generate_series(1, $2) g",
            spread(months) / records, records)
        await conn.execute("ANALYZE usage_records")
        leaves = await conn.fetchval(
            "SELECT count(*) FROM pg_partition_tree('usage_records') WHERE isleaf")
        for label, sql in QUERIES.items():
            plans, execs, sums = [], [], []
            for _ in range(runs):
                (plan,) = json.loads(await conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + sql))
                plans.append(plan["Planning Time"])
                execs.append(plan["Execution Time"])
                sums.append(plans[-1] + execs[-1])
            p95 = statistics.quantiles(sums, n=20)[-1]
            print(f"{layout:<6}{months:>3} months {leaves:>4} tables  {label:<28} planning "
                  f"{statistics.median(plans):6.2f} ms  execution {statistics.median(execs):6.2f}"
                  f" ms  both p95 {p95:6.2f} ms", flush=True)


async def main(dsn: str, months: list[int], records: int, runs: int) -> None:
    for count in months:
        for layout in LAYOUTS:
            await measure(dsn, layout, count, records, runs)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--months", default="3,13", help="months of partitions, comma-separated")
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=21, help="runs of each query (median)")
    embedded_pg.add_database_url(parser)
    args = parser.parse_args()
    months = [int(m) for m in args.months.split(",")]
    embedded_pg.run(lambda url: main(url, months, args.records, args.runs), args.database_url)


if __name__ == "__main__":
    cli()
