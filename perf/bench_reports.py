"""How long revenue reports over a year of rollups take, against the same report computed
by one grouped aggregate with a distinct-account count over the per-account monthly rows
(the earlier query, the peer), at several numbers of accounts: how each scales with rows.

    python perf/bench_reports.py [--accounts 1250 2500 5000] [--runs 3] [--database-url DSN]

For each number of accounts N, builds a throwaway database on the server at DSN (default:
BILLING_OSS_TEST_DATABASE_URL) holding a year (2025) of monthly rollups, as the daily ones
of two rows per account and day (voice and data, one of four zones) add up to: 96 rows per
account, 480 k for 5,000 accounts; and the daily rollups of its last quarter (184 rows per
account, 920 k). They are written as deltas and folded by the compaction ``serve`` runs
(timed: all of them, then the one month and the one day holding a late delta, which is what
a run costs), which also fills the account-less levels (day, week, month), the per-account
monthly one and the accounts' months and days. Then runs ``report revenue`` by month over the
year by zone, by service, in total (the MRR report's revenue) and by account and country, by day and
by week over the quarter, by month for one service, by month from 15 October to 19 December
(partial months), and in total over the year and over 15 October to 19 December (CASES), R
times each way, checks both give the same rows (money, records and distinct accounts), and
prints the medians and their ratio; drops the database after.
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
from typing import NamedTuple

import asyncpg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from embedded_pg import scratch_pool  # noqa: E402  perf/ is on sys.path: this folder

from billing_oss.server.analytics import reports  # noqa: E402

START, END = dt.date(2025, 1, 1), dt.date(2026, 1, 1)
QUARTER = dt.date(2025, 10, 1)  # the daily rollups' first day


def peer(column: str | None, join: str = "", table: str = "charge_rollups_monthly",
         period: str = "date_trunc('month', r.day)::date", where: str = "") -> str:
    """The earlier form of repo.totals over the monthly level (or ``table``), by ``column``
    (None: in total) and ``period`` (the first day of a row's period; NULL: the range): one
    aggregate whose count(DISTINCT account_id) sorts every group's rows."""
    key = f" {column}," if column else ""
    n = 4 if column else 3
    return (f"SELECT {period},{key} rtrim(r.currency),"
            " sum(r.amount_micros)::bigint, sum(r.records)::bigint, sum(r.units),"
            f" count(DISTINCT r.account_id) FROM {table} r{join}"
            f" WHERE r.day >= $1 AND r.day < $2{where}"
            f" GROUP BY {', '.join(map(str, range(1, n)))}"
            f" ORDER BY {', '.join(map(str, range(1, n)))}")


WEEK = "date_trunc('week', r.day::timestamp)::date"
# Migration 1502–1503's shapes, over the quarter's days or the year's months.
MID_QUARTER = (dt.date(2025, 10, 15), dt.date(2025, 12, 20))  # whole November, days around


class Case(NamedTuple):
    label: str
    period: str
    by: list[str]
    start: dt.date
    end: dt.date
    service: str | None
    sql: str  # the peer


CASES = [
    # zone, service and none read the account-less levels, account and country one row per
    # account and month (its attributes read as they are now).
    Case("--period month --by zone", "month", ["zone"], START, END, None, peer("r.zone")),
    Case("--period month --by service", "month", ["service"], START, END, None,
         peer("r.service")),
    Case("--period month --by (total)", "month", [], START, END, None, peer(None)),
    Case("--period month --by account", "month", ["account"], START, END, None,
         peer("r.account_id")),
    Case("--period month --by country", "month", ["country"], START, END, None,
         peer("a.attrs->>'country'", " LEFT JOIN accounts a ON a.account_id = r.account_id")),
    Case("--period day --by zone (a quarter)", "day", ["zone"], QUARTER, END, None,
         peer("r.zone", table="charge_rollups", period="r.day")),
    # the week level (1502), partial weeks at both ends (1 Oct and 31 Dec are Wednesdays)
    Case("--period week --by zone (a quarter)", "week", ["zone"], QUARTER, END, None,
         peer("r.zone", table="charge_rollups", period=WEEK)),
    Case("--period week --by (total) (a quarter)", "week", [], QUARTER, END, None,
         peer(None, table="charge_rollups", period=WEEK)),
    # a service filter on a report not by service: the service's grouping
    Case("--period month --by zone --service voice", "month", ["zone"], START, END, "voice",
         peer("r.zone", where=" AND r.service = 'voice'")),
    # partial months: the month level inside, the end days per account
    Case("--period month --by zone 15 Oct-19 Dec", "month", ["zone"], *MID_QUARTER, None,
         peer("r.zone", table="charge_rollups",
              period="date_trunc('month', r.day::timestamp)::date")),
    # several months in total: the accounts' months (1503)
    Case("--period total --by zone (a year)", "total", ["zone"], START, END, None,
         peer("r.zone", period="NULL::date")),
    Case("--period total --by service (a year)", "total", ["service"], START, END, None,
         peer("r.service", period="NULL::date")),
    Case("--period total --by zone 15 Oct-19 Dec", "total", ["zone"], *MID_QUARTER, None,
         peer("r.zone", table="charge_rollups", period="NULL::date")),
]


async def seed(pool: asyncpg.Pool, accounts: int) -> None:
    await pool.execute(
        "INSERT INTO accounts (account_id, attrs) SELECT 'a' || i,"
        " jsonb_build_object('country', (ARRAY['FR', 'DE', 'ES', 'IT'])[i % 4 + 1])"
        " FROM generate_series(1, $1) i", accounts)
    await pool.execute(
        "INSERT INTO charge_rollups_monthly (account_id, day, service, zone, currency,"
        " tariff_version_id, amount_micros, records, units)"
        " SELECT 'a' || i, date_trunc('month', d)::date, s,"
        " 'z' || ((i + extract(doy FROM d)::int) % 4), 'EUR', NULL,"
        " sum((i % 97 + 1) * 10000 * (CASE s WHEN 'voice' THEN 3 ELSE 1 END)),"
        " sum(i % 13 + 1), sum((i % 13 + 1) * 60)"
        " FROM generate_series(1, $1) i,"
        " generate_series(timestamp '2025-01-01', timestamp '2025-12-31', interval '1 day') d,"
        " unnest(ARRAY['voice', 'data']) s GROUP BY 1, 2, 3, 4", accounts)
    await pool.execute(
        "INSERT INTO charge_rollups (account_id, day, service, zone, currency,"
        " tariff_version_id, amount_micros, records, units)"
        " SELECT 'a' || i, d::date, s, 'z' || ((i + extract(doy FROM d)::int) % 4), 'EUR',"
        " NULL, (i % 97 + 1) * 10000 * (CASE s WHEN 'voice' THEN 3 ELSE 1 END),"
        " i % 13 + 1, (i % 13 + 1) * 60 FROM generate_series(1, $1) i,"
        " generate_series($2::timestamp, timestamp '2025-12-31', interval '1 day') d,"
        " unnest(ARRAY['voice', 'data']) s", accounts, QUARTER)


# The peer: the fold of the compaction before the report levels (migrations 1421 and 1423's
# fold_charge_rollups and fold_charge_rollups_monthly, dropped by 1542 since no compaction
# calls them), the same statements on the day $2 and its month, in one transaction under the
# compaction's lock as they ran.
FOLD_BEFORE_LEVELS = """
WITH lock AS MATERIALIZED (
    SELECT $1::date, pg_advisory_xact_lock(hashtext('compact_charge_rollups'))
), days AS (
    SELECT DISTINCT day FROM charge_rollups
    WHERE NOT compacted AND day = $2::date AND (SELECT count(*) FROM lock) = 1
), gone AS MATERIALIZED (
    DELETE FROM charge_rollups r USING days d WHERE r.day = d.day
    RETURNING r.*
), folded AS (
    INSERT INTO charge_rollups (account_id, day, service, zone, currency, tariff_version_id,
                                amount_micros, records, units, reversals, reversed_micros,
                                compacted)
    SELECT account_id, day, service, zone, currency, tariff_version_id, sum(amount_micros),
           sum(records), sum(units), sum(reversals), sum(reversed_micros), true
    FROM gone GROUP BY 1, 2, 3, 4, 5, 6
    RETURNING 1
), old AS (
    DELETE FROM charge_totals t WHERE t.day IN (SELECT day FROM gone WHERE NOT compacted)
    RETURNING t.*
), moved AS (
    INSERT INTO charge_totals (day, service, zone, currency, tariff_version_id,
                               amount_micros, records, units, reversals, reversed_micros)
    SELECT day, service, zone, currency, tariff_version_id, sum(amount_micros),
           sum(records), sum(units), sum(reversals), sum(reversed_micros)
    FROM (SELECT day, service, zone, currency, tariff_version_id, amount_micros, records,
                 units, reversals, reversed_micros FROM old
          UNION ALL
          SELECT day, service, zone, currency, tariff_version_id, amount_micros, records,
                 units, reversals, reversed_micros FROM gone WHERE NOT compacted) f
    GROUP BY 1, 2, 3, 4, 5
    RETURNING 1
), months AS (
    SELECT DISTINCT day FROM charge_rollups_monthly
    WHERE NOT compacted AND day = date_trunc('month', $2::date)::date
      AND (SELECT count(*) FROM lock) = 1
), gone_monthly AS MATERIALIZED (
    DELETE FROM charge_rollups_monthly r USING months d WHERE r.day = d.day
    RETURNING r.*
), folded_monthly AS (
    INSERT INTO charge_rollups_monthly (account_id, day, service, zone, currency,
                                        tariff_version_id, amount_micros, records, units,
                                        reversals, reversed_micros, compacted)
    SELECT account_id, day, service, zone, currency, tariff_version_id, sum(amount_micros),
           sum(records), sum(units), sum(reversals), sum(reversed_micros), true
    FROM gone_monthly GROUP BY 1, 2, 3, 4, 5, 6
    RETURNING 1
)
SELECT (SELECT count(*) FROM gone) - (SELECT count(*) FROM folded)
       + (SELECT count(*) FROM gone_monthly) - (SELECT count(*) FROM folded_monthly)"""


async def compact(pool: asyncpg.Pool) -> tuple[float, float, float]:
    """The compaction's time over every delta; then over the one day and month a late delta
    is in (what a run of ``serve``'s compaction costs), and the fold alone of the same (the
    compaction before the report levels: its peer)."""
    fold = "SELECT compact_charge_rollups($1, $2) + compact_charge_rollups_monthly($1, $2)"
    began = time.perf_counter()
    await pool.fetchval(fold, START, END)
    everything = time.perf_counter() - began
    await pool.execute("VACUUM ANALYZE")
    times = []
    for sql in (fold, FOLD_BEFORE_LEVELS):
        for table in ("charge_rollups", "charge_rollups_monthly"):
            await pool.execute(
                f"INSERT INTO {table} (account_id, day, service, zone, currency, amount_micros,"
                " records, units) VALUES ('a1', '2025-12-01', 'voice', 'z1', 'EUR', 0, 0, 0)")
        began = time.perf_counter()
        await pool.fetchval(sql, START, dt.date(2025, 12, 1))
        times.append(time.perf_counter() - began)
        await pool.execute("VACUUM ANALYZE")
    return everything, times[0], times[1]


async def timed(runs: int, call: object) -> tuple[float, object]:
    times, out = [], None
    for _ in range(runs):
        began = time.perf_counter()
        out = await call()  # type: ignore[operator]
        times.append(time.perf_counter() - began)
    return statistics.median(times), out


async def measure(pool: asyncpg.Pool, accounts: int, runs: int) -> None:
    began = time.perf_counter()
    await seed(pool, accounts)
    everything, late, fold_only = await compact(pool)
    rows = {t: await pool.fetchval(f"SELECT count(*) FROM {t}") for t in (
        "charge_rollups_monthly", "charge_rollups", "charge_month_totals", "charge_day_totals",
        "charge_week_totals", "charge_account_presence")}
    print(f"\n{accounts:,} accounts: {rows['charge_rollups_monthly']:,} monthly rollup rows"
          f" (a year), {rows['charge_rollups']:,} daily (a quarter); account-less levels:"
          f" {rows['charge_month_totals']:,} monthly, {rows['charge_week_totals']:,} weekly and"
          f" {rows['charge_day_totals']:,} daily rows; the accounts' months:"
          f" {rows['charge_account_presence']:,} rows ({time.perf_counter() - began:.0f} s to"
          " build); compaction: all"
          f" {everything:.2f} s, a late day and month {late:.2f} s (the fold alone"
          f" {fold_only:.2f} s); median of {runs} runs,"
          f" load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'report revenue':42} {'ours s':>7} {'peer s':>7} {'ratio':>6}")
    for case in CASES:
        now, report = await timed(runs, lambda c=case: reports.build(
            pool, "revenue", by=c.by, period=c.period, start=c.start, end=c.end,
            service=c.service))
        then, rows = await timed(runs, lambda c=case: pool.fetch(c.sql, c.start, c.end))
        got = [(r.period, *r.key.values(), r.currency, r.amount, r.records, r.accounts)
               for r in report.rows]  # type: ignore[attr-defined]
        want = [(r[0].isoformat() if r[0] else None, *r[1:-5], r[-5],
                 reports.format_micros(r[-4]), r[-3], r[-1])
                for r in rows]  # type: ignore[union-attr]
        assert got == want, f"{case.label}: the rows differ from the peer's"
        print(f"{case.label:42} {now:7.3f} {then:7.3f} {then / now:6.1f}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, nargs="+", default=[1250, 2500, 5000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database-url", default=os.environ.get("BILLING_OSS_TEST_DATABASE_URL"))
    args = parser.parse_args()
    if not args.database_url:
        parser.error("--database-url (or BILLING_OSS_TEST_DATABASE_URL) is required")
    for accounts in args.accounts:
        async with scratch_pool(args.database_url, "bench_reports") as pool:
            await measure(pool, accounts, args.runs)


if __name__ == "__main__":
    asyncio.run(main())
