"""Totals across accounts on Citus: the account-less levels stay on the coordinator — the day
level filled by compaction from the distributed per-account rollups, the hour level by the
charges' writer beside the distributed charges — and the totals equal the charges' own sums
to the micro-unit before, between and after compactions."""

from __future__ import annotations

import datetime as dt

import asyncpg
import pytest

from billing_oss.server.analytics import compaction
from billing_oss.server.analytics import repo as analytics
from billing_oss.server.store import traffic_repo
from billing_oss.server.store.traffic_repo import Period
from billing_oss.server.store.usage_repo import ensure_partitions
from tests.charge_seed import insert_charges

pytestmark = pytest.mark.citus
T0 = dt.datetime(2026, 3, 30, 5, 0, tzinfo=dt.UTC)
COLUMNS = ("account_id", "event_time", "usage_id", "kind", "amount_micros", "currency")


async def charge(pool: asyncpg.Pool, i: int) -> None:
    """Charge ``i`` (a reversal of its own amount every third), 11 h 7 min apart."""
    account, moment = f"A{i % 5}", T0 + dt.timedelta(minutes=667 * i)
    amount = 1_000_003 * (i + 1) + 11
    rows = [(account, moment, i, "charge", amount, "USD" if i % 4 == 0 else "EUR")]
    if i % 3 == 1:
        rows.append((account, moment, i, "reversal", -amount, "EUR"))
    await insert_charges(pool, COLUMNS, rows)


async def raw(pool: asyncpg.Pool, period: Period) -> list[tuple[object, ...]]:
    w = period.where()
    rows = await pool.fetch(
        "SELECT rtrim(currency), count(*) FILTER (WHERE kind = 'charge'),"
        " count(*) FILTER (WHERE kind = 'reversal'),"
        " coalesce(sum(amount_micros) FILTER (WHERE kind = 'charge'), 0)::bigint,"
        " coalesce(sum(amount_micros) FILTER (WHERE kind = 'reversal'), 0)::bigint"
        " FROM charges" + w.sql() + " GROUP BY 1 ORDER BY 1", *w.args)
    return [tuple(r) for r in rows]


async def test_totals_across_accounts_from_the_coordinator_level(
        citus_pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    placed = await citus_pool.fetchval(
        "SELECT count(*) FROM pg_dist_partition WHERE logicalrelid = 'charge_totals'::regclass")
    assert placed == 0  # no account: a coordinator table
    assert await citus_pool.fetchval(
        "SELECT count(*) FROM pg_dist_partition"
        " WHERE logicalrelid = 'charge_hour_totals'::regclass") == 0
    async with citus_pool.acquire() as conn:
        await ensure_partitions(conn, [dt.date(2026, 3, 1), dt.date(2026, 4, 1),
                                       dt.date(2026, 5, 1)])
    await citus_pool.execute(
        "INSERT INTO accounts (account_id) SELECT 'A' || i FROM generate_series(0, 4) i")
    z = dt.UTC
    periods = [Period(), Period(start=dt.datetime(2026, 4, 1, tzinfo=z)),
               Period(start=dt.datetime(2026, 3, 31, 7, 5, tzinfo=z),
                      end=dt.datetime(2026, 4, 20, 13, 0, tzinfo=z)),
               Period(start=dt.datetime(2026, 4, 2, tzinfo=z),
                      end=dt.datetime(2026, 4, 9, tzinfo=z)),
               # partial days: their whole hours from the hour level
               Period(start=dt.datetime(2026, 3, 30, 12, 34, tzinfo=z),
                      end=dt.datetime(2026, 4, 18, 12, 34, tzinfo=z)),
               Period(start=dt.datetime(2026, 4, 3, 2, 10, tzinfo=z),
                      end=dt.datetime(2026, 4, 3, 23, 50, tzinfo=z)),
               Period(start=dt.datetime(2026, 3, 31, 6, tzinfo=z),
                      end=dt.datetime(2026, 4, 5, 17, tzinfo=z))]

    async def check() -> None:
        for period in periods:
            got = [(t.currency, t.charges, t.reversals, t.charged_micros, t.reversed_micros)
                   for t in await traffic_repo.totals(citus_pool, period)]
            assert got == await raw(citus_pool, period), period

    for i in range(60):
        await charge(citus_pool, i)
    await check()
    assert await analytics.compact(citus_pool, dt.date(2026, 1, 1), dt.date(2026, 12, 31)) > 0
    assert await citus_pool.fetchval("SELECT count(*) FROM charge_totals") > 0
    await check()
    for i in range(60, 90):  # later days, none folded yet
        await charge(citus_pool, i)
    await insert_charges(citus_pool, COLUMNS,  # late, into a day already folded
                         [("A3", T0 + dt.timedelta(hours=1), 1000, "charge", 4242, "EUR")])
    await check()
    monkeypatch.setattr(compaction, "RESTAT_AFTER", 1)  # the large fold's path, ANALYZE too
    await compaction.run_once(citus_pool)  # as serve's clock runs it
    await check()
    assert await citus_pool.fetchval(
        "SELECT count(*) FROM charge_rollups WHERE NOT compacted") == 0
    assert await citus_pool.fetchval(
        "SELECT count(*) FROM charge_hour_totals WHERE NOT compacted") == 0
    hours = await citus_pool.fetch(
        "SELECT hour, rtrim(currency), charges, reversals, charged_micros, reversed_micros"
        " FROM charge_hour_totals ORDER BY 1, 2")
    charges = await citus_pool.fetch(
        "SELECT date_trunc('hour', event_time, 'UTC'), rtrim(currency),"
        " count(*) FILTER (WHERE kind = 'charge'), count(*) FILTER (WHERE kind = 'reversal'),"
        " coalesce(sum(amount_micros) FILTER (WHERE kind = 'charge'), 0),"
        " coalesce(sum(amount_micros) FILTER (WHERE kind = 'reversal'), 0)"
        " FROM charges GROUP BY 1, 2 ORDER BY 1, 2")
    assert [tuple(r) for r in hours] == [tuple(r) for r in charges]
