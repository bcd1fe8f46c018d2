"""Reports by week, over ranges that are not whole periods, and with a service filter on a
report not grouped by service, by a dimension without the account: the whole periods read the
account-less levels (the week one of migration 1502; day and month of 1500) and the partial
ones at the ends the day level and the accounts' days (1540). Money, records and distinct
accounts equal the raw charges' to the micro-unit and to the account, before and after
compaction, with late charges into weeks folded already and reversals; and a report follows
its level (a wrong level makes it wrong), so the level is what answers."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import defaultdict
from typing import Any

import asyncpg
import pytest

from billing_oss.core.money import format_micros
from billing_oss.server.analytics import repo, report_spans, reports
from tests.integration.test_month_totals import charge, seed_catalog

D = dt.date
FIRST = D(2025, 1, 1)  # compaction's first day
# (period, start, end): weeks over a quarter starting on a Thursday (partial weeks at both
# ends), whole weeks, months from mid-month to mid-month, a total over one week and one day.
SPANS: list[tuple[str, dt.date, dt.date]] = [
    ("week", D(2026, 1, 1), D(2026, 4, 1)),
    ("week", D(2026, 1, 5), D(2026, 3, 30)),
    ("month", D(2026, 1, 15), D(2026, 3, 20)),
    ("total", D(2026, 1, 12), D(2026, 1, 19)),
    ("total", D(2026, 2, 14), D(2026, 2, 15)),
    ("total", D(2026, 1, 1), D(2026, 4, 1)),  # several whole months
    ("total", D(2025, 12, 1), D(2026, 3, 1)),  # across a year's end
    ("total", D(2026, 1, 15), D(2026, 3, 20)),  # a whole month and days at both ends
    ("total", D(2025, 12, 20), D(2026, 2, 10)),
    ("total", D(2026, 1, 10), D(2026, 2, 20)),  # no whole month: the days per account
    ("day", D(2026, 1, 10), D(2026, 2, 20)),
    # partial periods across a year's end: two years' bits of the accounts' days
    ("week", D(2025, 12, 24), D(2026, 1, 3)),
    ("month", D(2025, 12, 15), D(2026, 1, 20)),
    ("total", D(2025, 12, 20), D(2026, 1, 10)),
]
DIMS: list[list[str]] = [[], ["zone"], ["tariff"], ["tariff_version"], ["currency"],
                         ["zone", "service"], ["service"]]
SERVICES = (None, "voice", "data")


async def raw(pool: asyncpg.Pool, period: str, start: dt.date, end: dt.date, dims: list[str],
              service: str | None) -> dict[tuple[Any, ...], tuple[str, int, int]]:
    """(period, values…, currency) → (money, records, distinct accounts) of the charges of the
    days [start, end), their period's first day clipped to the range's as a report does."""
    rows = await pool.fetch(
        "SELECT c.account_id, (c.event_time AT TIME ZONE 'UTC')::date AS day,"
        " u.kind AS service, c.zone, c.tariff_version_id::text AS tariff_version,"
        " tv.tariff_id AS tariff, rtrim(c.currency) AS currency, c.kind, c.amount_micros"
        " FROM charges c LEFT JOIN usage_records u USING (account_id, event_time, usage_id)"
        " LEFT JOIN tariff_versions tv USING (tariff_version_id)")
    sums: dict[tuple[Any, ...], list[Any]] = defaultdict(lambda: [0, 0, set()])
    for r in rows:
        if not start <= r["day"] < end or (service is not None and r["service"] != service):
            continue
        when = (None if period == "total"
                else report_spans.period_start(period, r["day"]).isoformat())
        acc = sums[(when, *(r[d] for d in dims), r["currency"])]
        acc[0] += r["amount_micros"]
        acc[1] += -1 if r["kind"] == "reversal" else 1
        acc[2].add(r["account_id"])
    return {k: (format_micros(v[0]), v[1], len(v[2])) for k, v in sums.items()}


async def answer(pool: asyncpg.Pool, period: str, start: dt.date, end: dt.date,
                 dims: list[str], service: str | None) -> dict[tuple[Any, ...], Any]:
    report = await reports.build(pool, "revenue", by=dims, period=period, start=start,
                                 end=end, service=service)
    return {(r.period, *r.key.values(), r.currency): (r.amount, r.records, r.accounts)
            for r in report.rows}


async def check(pool: asyncpg.Pool) -> None:
    for period, start, end in SPANS:
        for dims in DIMS:
            for service in SERVICES:
                if service is not None and "service" in dims:
                    continue
                got = await answer(pool, period, start, end, dims, service)
                assert got == await raw(pool, period, start, end, dims, service), \
                    (period, start, end, dims, service)


async def week_level(pool: asyncpg.Pool) -> dict[tuple[Any, ...], int]:
    rows = await pool.fetch("SELECT day, zone, rtrim(currency) AS currency, accounts"
                            " FROM charge_week_totals WHERE grouping = 'zone'")
    return {(r["day"].isoformat(), r["zone"], r["currency"]): r["accounts"] for r in rows}


async def presence(pool: asyncpg.Pool) -> set[tuple[Any, ...]]:
    """(account, month, zone, currency) of the presence level's zone rows."""
    rows = await pool.fetch("SELECT account_id, year, zone, rtrim(currency) AS currency,"
                            " months FROM charge_account_presence WHERE grouping = 'zone'")
    return {(r["account_id"], D(r["year"], m, 1), r["zone"], r["currency"])
            for r in rows for m in range(1, 13) if r["months"] & 1 << (m - 1)}


async def raw_presence(pool: asyncpg.Pool) -> set[tuple[Any, ...]]:
    rows = await pool.fetch(
        "SELECT DISTINCT account_id, date_trunc('month', event_time AT TIME ZONE 'UTC')::date"
        " AS month, zone, rtrim(currency) AS currency FROM charges")
    return {(r["account_id"], r["month"], r["zone"], r["currency"]) for r in rows}


async def account_days(pool: asyncpg.Pool) -> set[tuple[Any, ...]]:
    """(account, day, service, zone, currency) of the accounts' days' service,zone rows."""
    rows = await pool.fetch("SELECT account_id, year, service, zone, rtrim(currency) AS currency,"
                            " days::text AS days FROM charge_account_days"
                            " WHERE grouping = 'service,zone'")
    return {(r["account_id"], D(r["year"], 1, 1) + dt.timedelta(days=i), r["service"],
             r["zone"], r["currency"])
            for r in rows for i, bit in enumerate(r["days"]) if bit == "1"}


async def raw_account_days(pool: asyncpg.Pool) -> set[tuple[Any, ...]]:
    rows = await pool.fetch(
        "SELECT DISTINCT c.account_id, (c.event_time AT TIME ZONE 'UTC')::date AS day,"
        " u.kind AS service, c.zone, rtrim(c.currency) AS currency FROM charges c"
        " LEFT JOIN usage_records u USING (account_id, event_time, usage_id)")
    return {(r["account_id"], r["day"], r["service"], r["zone"], r["currency"]) for r in rows}


async def scenario(pool: asyncpg.Pool, catalog: list[int]) -> None:
    """Charges, reports, compaction, late charges and reversals, reports, compaction."""
    await charge(pool, 7, catalog, account="M2", day=D(2025, 12, 30))
    for i in range(120):
        await charge(pool, i, catalog, reverse=i % 9 == 4)
    await check(pool)  # deltas only
    assert await pool.fetchval("SELECT count(*) FROM charge_week_totals") == 0
    assert await pool.fetchval("SELECT count(*) FROM charge_account_presence") == 0
    assert await pool.fetchval("SELECT count(*) FROM charge_account_days") == 0

    assert await repo.compact(pool, FIRST, D(2026, 12, 31)) > 0
    everything = (FIRST, D(2027, 1, 1))
    assert await week_level(pool) == {  # every compacted week counted, as the charges
        k: v[2] for k, v in (await raw(pool, "week", *everything, ["zone"], None)).items()}
    await check(pool)

    # Late: into weeks folded already (an account counted there, a new one, a reversal of
    # money counted before), into a partial week at the range's end.
    for i in range(120, 150):
        await charge(pool, i, catalog, reverse=i % 5 == 0)
    await charge(pool, 1, catalog, account="M8", day=D(2026, 2, 14))
    await charge(pool, 2, catalog, account="M3", day=D(2026, 1, 13), reverse=True)
    await charge(pool, 3, catalog, account="M4", day=D(2026, 3, 31))
    # a year before: an account and group of 2026 seen in 2025 too, and one new
    await charge(pool, 5, catalog, account="M6", day=D(2025, 12, 28))
    await charge(pool, 6, catalog, account="M8", day=D(2025, 12, 2), reverse=True)
    await check(pool)
    await repo.compact(pool, FIRST, D(2026, 12, 31))
    # marked from the deltas each fold consumed: every compacted row's month and day
    assert await presence(pool) == await raw_presence(pool)
    assert await account_days(pool) == await raw_account_days(pool)
    assert await week_level(pool) == {  # the late charges' weeks counted anew
        k: v[2] for k, v in (await raw(pool, "week", *everything, ["zone"], None)).items()}
    await check(pool)


@pytest.fixture(scope="module")
async def catalog(pool: asyncpg.Pool) -> list[int]:
    return await seed_catalog(pool)


async def test_weeks_partial_periods_and_service_filters_equal_the_charges(
        pool: asyncpg.Pool, catalog: list[int]) -> None:
    await scenario(pool, catalog)


async def test_the_levels_answer(pool: asyncpg.Pool, catalog: list[int]) -> None:
    # A report over whole weeks, one over a week in total, one by zone for one service and
    # one over a quarter in total move with their level's rows (the last with its accounts'
    # months): they are read from it, not from the per-account rollups.
    for i in range(60):
        await charge(pool, i, catalog)
    await repo.compact(pool, FIRST, D(2026, 12, 31))
    asked = [("week", D(2026, 1, 5), D(2026, 3, 30), ["zone"], None),
             ("total", D(2026, 1, 12), D(2026, 1, 19), ["zone"], None),
             ("month", D(2026, 1, 15), D(2026, 3, 20), ["zone"], "data"),
             ("total", D(2026, 1, 1), D(2026, 4, 1), ["zone"], None),
             ("week", D(2026, 1, 1), D(2026, 1, 5), ["zone"], None)]  # a partial week
    before = [await answer(pool, *a) for a in asked]
    for table, grouping in (("charge_week_totals", "zone"),
                            ("charge_month_totals", "service,zone")):
        await pool.execute(f"UPDATE {table} SET accounts = accounts + 1,"
                           " amount_micros = amount_micros + 1 WHERE grouping = $1", grouping)
    # an account's months by zone moved out of the year's twelve bits, and its days by
    # service and zone cleared: it is forgotten
    await pool.execute("UPDATE charge_account_presence SET months = months << 12"
                       " WHERE grouping = 'zone' AND account_id = 'M1'")
    await pool.execute("ALTER TABLE charge_account_days ADD COLUMN kept bit(366)")
    await pool.execute("UPDATE charge_account_days SET kept = days, days = 0::bit(366)"
                       " WHERE grouping IN ('zone', 'service,zone') AND account_id = 'M1'")
    after = [await answer(pool, *a) for a in asked]
    await pool.execute("UPDATE charge_account_presence SET months = months >> 12"
                       " WHERE grouping = 'zone' AND account_id = 'M1'")
    await pool.execute("UPDATE charge_account_days SET days = kept WHERE kept IS NOT NULL")
    await pool.execute("ALTER TABLE charge_account_days DROP COLUMN kept")
    for table, grouping in (("charge_week_totals", "zone"),
                            ("charge_month_totals", "service,zone")):
        await pool.execute(f"UPDATE {table} SET accounts = accounts - 1,"
                           " amount_micros = amount_micros - 1 WHERE grouping = $1", grouping)
    for was, now, (period, *_rest) in zip(before, after, asked, strict=True):
        assert now.keys() == was.keys() and now != was, period
        moved = {k[0] for k in now if now[k] != was[k]}
        if period == "month":  # the month inside (its level), an end (M1's days)
            assert {"2026-02-01", "2026-03-01"} <= moved
    # the partial week: its one period moved with M1's days
    assert {k[0] for k in after[-1] if after[-1][k] != before[-1][k]} == {"2025-12-29"}


async def test_charges_committed_while_compactions_run_are_counted_once(
        pool: asyncpg.Pool, catalog: list[int]) -> None:
    # Each fold counts and marks the deltas it deletes, in that one statement: a charge
    # committed while a compaction runs is folded and counted by this run or the next,
    # never by neither or both.
    async def write() -> None:
        for i in range(200, 280):
            await charge(pool, i, catalog, reverse=i % 7 == 0)

    async def fold() -> None:
        for _ in range(20):
            await repo.compact(pool, FIRST, D(2026, 12, 31))

    await asyncio.gather(write(), fold())
    await repo.compact(pool, FIRST, D(2026, 12, 31))
    assert await account_days(pool) == await raw_account_days(pool)
    assert await presence(pool) == await raw_presence(pool)
    everything = (FIRST, D(2027, 1, 1))
    assert await week_level(pool) == {
        k: v[2] for k, v in (await raw(pool, "week", *everything, ["zone"], None)).items()}
    await check(pool)


@pytest.mark.parametrize(("period", "start", "end", "want"), [
    ("week", D(2026, 1, 1), D(2026, 4, 1),
     [(D(2026, 1, 1), D(2026, 1, 5), None), (D(2026, 1, 5), D(2026, 3, 30), "week"),
      (D(2026, 3, 30), D(2026, 4, 1), None)]),
    ("week", D(2026, 1, 5), D(2026, 1, 12), [(D(2026, 1, 5), D(2026, 1, 12), "week")]),
    ("week", D(2026, 1, 6), D(2026, 1, 13), [(D(2026, 1, 6), D(2026, 1, 13), None)]),
    ("month", D(2026, 1, 15), D(2026, 3, 20),
     [(D(2026, 1, 15), D(2026, 2, 1), None), (D(2026, 2, 1), D(2026, 3, 1), "month"),
      (D(2026, 3, 1), D(2026, 3, 20), None)]),
    ("month", D(2025, 12, 1), D(2026, 2, 1), [(D(2025, 12, 1), D(2026, 2, 1), "month")]),
    ("day", D(2026, 1, 15), D(2026, 3, 20), [(D(2026, 1, 15), D(2026, 3, 20), "day")]),
])
def test_a_range_splits_into_whole_and_partial_periods(
        period: str, start: dt.date, end: dt.date,
        want: list[tuple[dt.date, dt.date, str | None]]) -> None:
    pieces = report_spans.split(period, start, end)
    assert pieces is not None
    assert [(p.start, p.end, p.level) for p in pieces] == want


def test_a_total_is_one_period_of_a_level_or_none() -> None:
    assert report_spans.split("total", D(2026, 2, 1), D(2026, 3, 1)) == [
        report_spans.Piece(D(2026, 2, 1), D(2026, 3, 1), "month", total=True)]
    assert report_spans.split("total", D(2026, 1, 12), D(2026, 1, 19)) == [
        report_spans.Piece(D(2026, 1, 12), D(2026, 1, 19), "week", total=True)]
    assert report_spans.split("total", D(2026, 1, 13), D(2026, 1, 14)) == [
        report_spans.Piece(D(2026, 1, 13), D(2026, 1, 14), "day", total=True)]
    assert report_spans.split("total", D(2026, 1, 1), D(2026, 3, 1)) is None


def test_partial_periods_are_cut_at_their_period_starts() -> None:
    assert [(p.start, p.end) for p in report_spans.periods(
        "week", D(2025, 12, 24), D(2026, 1, 3))] == [
        (D(2025, 12, 24), D(2025, 12, 29)), (D(2025, 12, 29), D(2026, 1, 3))]
    assert [(p.start, p.end) for p in report_spans.periods(
        "month", D(2026, 1, 15), D(2026, 3, 2))] == [
        (D(2026, 1, 15), D(2026, 2, 1)), (D(2026, 2, 1), D(2026, 3, 1)),
        (D(2026, 3, 1), D(2026, 3, 2))]
    assert [(p.start, p.end) for p in report_spans.periods(
        "month", D(2026, 1, 15), D(2026, 1, 20))] == [(D(2026, 1, 15), D(2026, 1, 20))]
