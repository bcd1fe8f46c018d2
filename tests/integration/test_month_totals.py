"""Daily and monthly reports by a dimension without the account read the account-less levels
(charge_day_totals, charge_month_totals), and monthly reports by account or its attributes the
per-account monthly level (charge_account_months), each with the deltas not folded yet: money,
records and distinct accounts equal the raw charges' to the micro-unit and to the account,
before and after compaction, with late charges into days and months already folded,
reversals, and accounts already counted."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import defaultdict
from typing import Any

import asyncpg
import pytest

from billing_oss.core.money import format_micros
from billing_oss.server.analytics import repo, reports
from tests.charge_seed import insert_charges

CHARGE_COLUMNS = ("account_id", "event_time", "usage_id", "kind", "amount_micros", "currency",
                  "tariff_version_id", "zone")

START, END = dt.date(2026, 1, 1), dt.date(2026, 4, 1)
# Each grouping the level keeps (as a report asks for it: usage adds the service last).
DIMS: list[list[str]] = [[], ["service"], ["zone"], ["tariff"], ["tariff_version"],
                         ["currency"], ["zone", "service"], ["tariff_version", "service"],
                         ["tariff", "service"], ["service", "currency"]]
# By account or its attributes, monthly: the per-account monthly level (charge_account_months).
BY_ACCOUNT: list[list[str]] = [["account"], ["country"], ["country", "currency"], []]


async def seed_catalog(pool: asyncpg.Pool) -> list[int]:
    """Two tariffs (three versions) and eight accounts, M7 in USD; the versions."""
    await pool.execute("INSERT INTO tariffs (tariff_id, currency) VALUES ('T1', 'EUR'),"
                       " ('T2', 'EUR')")
    versions: list[int] = []
    for tariff, month in (("T1", 1), ("T1", 2), ("T2", 1)):
        versions.append(await pool.fetchval(
            "INSERT INTO tariff_versions (tariff_id, effective_from, definition, sha256)"
            " VALUES ($1, $2, '{}', '') RETURNING tariff_version_id", tariff,
            dt.datetime(2026, month, 1, tzinfo=dt.UTC)))
    await pool.execute("INSERT INTO accounts (account_id, currency, attrs) SELECT 'M' || i,"
                       " CASE WHEN i = 7 THEN 'USD' ELSE 'EUR' END, CASE WHEN i < 7 THEN"
                       " jsonb_build_object('country', (ARRAY['FR', 'DE'])[i % 2 + 1])"
                       " ELSE '{}' END FROM generate_series(1, 8) i")
    return versions


@pytest.fixture(scope="module")
async def catalog(pool: asyncpg.Pool) -> list[int]:
    return await seed_catalog(pool)


async def charge(pool: asyncpg.Pool, i: int, versions: list[int], *, account: str | None = None,
                 day: dt.date | None = None, reverse: bool = False) -> None:
    """Usage ``i`` and its charge (and a reversal of it when ``reverse``), spread over the
    accounts, days of the range, services, zones (one none) and tariff versions."""
    account = account or f"M{i % 7 + 1}"
    when = dt.datetime.combine(day or START + dt.timedelta(days=(i * 5) % 90),
                               dt.time(i % 24, 7), dt.UTC)
    kind = ("voice", "data", "sms")[i % 3]
    zone = (None, "z1", "z2", "z3")[i % 4]
    version = (None, *versions)[i % 4]
    currency = "USD" if account == "M7" else "EUR"
    amount = 1_000_003 * (i % 11 + 1) + i
    async with pool.acquire() as conn, conn.transaction():
        for table in ("usage_records", "charges"):
            await conn.execute("SELECT ensure_month_partition($1::regclass, $2::date)", table,
                               when.date())
        usage = await conn.fetchval("SELECT nextval('usage_id_seq')")
        await conn.execute(
            "INSERT INTO usage_records (account_id, usage_id, event_time, source, record_key,"
            " kind, duration_s, volume_up, volume_down, calling, called)"
            " VALUES ($1, $2, $3, 'm', $4, $5, $6, $7, 0, '1', '2')",
            account, usage, when, f"m-{usage}", kind, 30 + i, 1000 * i)
        rows = [("charge", amount)] + ([("reversal", -amount)] if reverse else [])
        await insert_charges(conn, CHARGE_COLUMNS, [
            (account, when, usage, sort, money, currency, version, zone)
            for sort, money in rows])


async def raw(pool: asyncpg.Pool, dims: list[str], service: str | None = None,
              period: str = "month") -> dict[tuple[Any, ...], tuple[str, int, int]]:
    """(period, values…, currency) → (money, records, distinct accounts) from the charges."""
    trunc = "month" if period == "total" else period
    rows = await pool.fetch(
        f"SELECT c.account_id AS account, date_trunc('{trunc}', c.event_time AT TIME ZONE"
        " 'UTC')::date AS month, u.kind AS service, c.zone,"
        " c.tariff_version_id::text AS tariff_version, tv.tariff_id AS tariff,"
        " a.attrs->>'country' AS country, rtrim(c.currency) AS currency, c.kind,"
        " c.amount_micros FROM charges c"
        " LEFT JOIN usage_records u USING (account_id, event_time, usage_id)"
        " LEFT JOIN tariff_versions tv USING (tariff_version_id)"
        " LEFT JOIN accounts a ON a.account_id = c.account_id")
    sums: dict[tuple[Any, ...], list[Any]] = defaultdict(lambda: [0, 0, set()])
    for r in rows:
        if service is not None and r["service"] != service:
            continue
        when = None if period == "total" else r["month"].isoformat()
        acc = sums[(when, *(r[d] for d in dims), r["currency"])]
        acc[0] += r["amount_micros"]
        acc[1] += -1 if r["kind"] == "reversal" else 1
        acc[2].add(r["account"])
    return {k: (format_micros(v[0]), v[1], len(v[2])) for k, v in sums.items()}


async def check(pool: asyncpg.Pool) -> None:
    for period in ("day", "month"):
        for dims in DIMS:
            report = await reports.build(pool, "revenue", by=dims, period=period, start=START,
                                         end=END)
            got = {(r.period, *r.key.values(), r.currency): (r.amount, r.records, r.accounts)
                   for r in report.rows}
            assert got == await raw(pool, dims, period=period), (period, dims)
    for period in ("month", "total"):
        for dims in BY_ACCOUNT:
            report = await reports.build(pool, "revenue", by=dims, period=period,
                                         start=START, end=END)
            got = {(r.period, *r.key.values(), r.currency): (r.amount, r.records, r.accounts)
                   for r in report.rows}
            assert got == await raw(pool, dims, period=period), (period, dims)
    usage = await reports.build(pool, "usage", by=["zone"], period="month", start=START,
                                end=END, service="data")
    got = {(r.period, *r.key.values(), r.currency): (r.amount, r.records, r.accounts)
           for r in usage.rows}
    assert got == await raw(pool, ["zone", "service"], service="data")
    one = await reports.build(pool, "revenue", by=["zone"], period="total",
                              start=dt.date(2026, 2, 1), end=dt.date(2026, 3, 1))
    assert {(r.key["zone"], r.currency): (r.amount, r.records, r.accounts) for r in one.rows} \
        == {k[1:]: v for k, v in (await raw(pool, ["zone"])).items() if k[0] == "2026-02-01"}


async def level(pool: asyncpg.Pool, table: str) -> dict[tuple[Any, ...], int]:
    """(day, zone, currency) → accounts, of a level's rows by zone."""
    rows = await pool.fetch(f"SELECT day, zone, rtrim(currency) AS currency, accounts"
                            f" FROM {table} WHERE grouping = 'zone'")
    return {(r["day"].isoformat(), r["zone"], r["currency"]): r["accounts"] for r in rows}


async def account_months(pool: asyncpg.Pool) -> dict[tuple[Any, ...], tuple[str, int, int]]:
    """(month, account, currency) → (money, records, 1), of the per-account monthly level."""
    rows = await pool.fetch("SELECT day, account_id, rtrim(currency) AS currency,"
                            " amount_micros, records FROM charge_account_months")
    return {(r["day"].isoformat(), r["account_id"], r["currency"]):
            (format_micros(r["amount_micros"]), r["records"], 1) for r in rows}


async def levels_count(pool: asyncpg.Pool) -> None:
    """Each level counts each zone's accounts of its days (months), as the charges do."""
    for table, period in (("charge_day_totals", "day"), ("charge_month_totals", "month")):
        assert await level(pool, table) == {
            k: v[2] for k, v in (await raw(pool, ["zone"], period=period)).items()}
    assert await account_months(pool) == await raw(pool, ["account"])


async def scenario(pool: asyncpg.Pool, catalog: list[int]) -> None:
    """Charges, reports, compaction, late charges and reversals, reports, compaction."""
    for i in range(120):
        await charge(pool, i, catalog, reverse=i % 9 == 4)
    await check(pool)  # deltas only
    assert await pool.fetchval("SELECT count(*) FROM charge_month_totals") == 0
    assert await pool.fetchval("SELECT count(*) FROM charge_day_totals") == 0
    assert await pool.fetchval("SELECT count(*) FROM charge_account_months") == 0

    assert await repo.compact(pool, START, END) > 0
    assert await pool.fetchval("SELECT count(*) FROM charge_rollups_monthly"
                               " WHERE NOT compacted") == 0
    await levels_count(pool)
    await check(pool)

    # Late: into months folded already, accounts already counted in their group and new
    # ones, a new zone, a reversal of money counted before.
    for i in range(120, 150):
        await charge(pool, i, catalog, reverse=i % 5 == 0)
    await charge(pool, 1, catalog, account="M8", day=dt.date(2026, 2, 14))
    await charge(pool, 1, catalog, account="M8", day=dt.date(2026, 1, 6))  # a new account
    # the account and group of a day folded already, its charge reversed
    await charge(pool, 2, catalog, account="M3", day=dt.date(2026, 1, 11), reverse=True)
    await check(pool)
    await repo.compact(pool, START, END)
    await levels_count(pool)
    await check(pool)


async def test_month_reports_equal_the_charges_before_and_after_compaction(
        pool: asyncpg.Pool, catalog: list[int]) -> None:
    await scenario(pool, catalog)


async def test_a_report_waits_for_a_compaction_to_commit(pool: asyncpg.Pool,
                                                         catalog: list[int]) -> None:
    # On Citus the level (coordinator) and the deltas (workers) commit apart: a monthly
    # report by an account-less dimension reads once a running compaction has committed.
    for i in range(150, 170):
        await charge(pool, i, catalog)
    want = await reports.build(pool, "revenue", by=["zone"], period="month", start=START,
                               end=END)
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        await conn.fetchval("SELECT compact_charge_rollups('2026-01-01', '2026-12-31')"
                            " + compact_charge_rollups_monthly('2026-01-01', '2026-12-31')")
        reading = asyncio.create_task(reports.build(
            pool, "revenue", by=["zone"], period="month", start=START, end=END))
        await asyncio.sleep(0.5)
        assert not reading.done()
        await tx.commit()
    assert (await asyncio.wait_for(reading, 10)).rows == want.rows
