"""The rollup levels control and rebuild on Citus: the per-account levels distributed by
account, the account-less ones on the coordinator (server/store/citus.py); the control
passes on what the writers and compaction kept, names a corrupted row of a distributed level
and of a coordinator one, and the rebuild (migration 1542) repairs both, leaving every level
as the writers and compaction had kept it."""

from __future__ import annotations

import datetime as dt

import asyncpg
import pytest

from billing_oss.server.analytics import compaction, rebuild
from billing_oss.server.assurance import engine
from billing_oss.server.assurance.model import Context, Settings
from tests.charge_seed import insert_charges
from tests.integration.api_harness import seed_usage

pytestmark = pytest.mark.citus
T0 = dt.datetime(2026, 3, 30, 5, 0, tzinfo=dt.UTC)
COLUMNS = ("account_id", "event_time", "usage_id", "kind", "amount_micros", "currency")
SNAPSHOT = {
    "charge_rollups": "SELECT account_id, day, service, currency, sum(amount_micros),"
                      " sum(records), sum(units) FROM charge_rollups GROUP BY 1, 2, 3, 4",
    "charge_hour_totals": "SELECT hour, currency, sum(charges), sum(charged_micros)"
                          " FROM charge_hour_totals GROUP BY 1, 2",
    "charge_day_totals": "SELECT * FROM charge_day_totals",
    "charge_month_totals": "SELECT * FROM charge_month_totals",
    "charge_account_days": "SELECT * FROM charge_account_days WHERE days <> 0::bit(366)",
}


async def status(pool: asyncpg.Pool) -> tuple[str, list[str]]:
    run = await engine.run(pool, Context(as_of=T0, settings=Settings(rollup_days=0)),
                           controls=["rollups.levels"], trigger="cli", actor="test")
    (result,) = run.results
    assert result.error is None, result.error
    return result.status, [e["object"].split(":")[0] for e in result.evidence]


async def snapshot(pool: asyncpg.Pool) -> dict[str, list[tuple[object, ...]]]:
    return {t: sorted((tuple(r) for r in await pool.fetch(sql)), key=repr)
            for t, sql in SNAPSHOT.items()}


async def test_the_levels_checked_and_rebuilt_on_citus(citus_pool: asyncpg.Pool) -> None:
    for table in ("charge_rollups", "charge_account_days"):
        assert await citus_pool.fetchval(
            "SELECT count(*) FROM pg_dist_partition WHERE logicalrelid = $1::regclass",
            table) == 1
    for i in range(24):
        account, moment = f"A{i % 4}", T0 + dt.timedelta(minutes=667 * i)
        usage_id = await seed_usage(citus_pool, account, moment.isoformat(),
                                    amount_micros=1_000_003 * (i + 1),
                                    currency=("EUR", "USD")[i % 5 == 0])
        if i % 3 == 1:
            await insert_charges(citus_pool, COLUMNS, [
                (account, moment, usage_id, "reversal", -1_000_003 * (i + 1), "EUR")])
        if i == 12:
            await compaction.run_once(citus_pool)
    assert await status(citus_pool) == ("pass", [])  # deltas not folded count
    await compaction.run_once(citus_pool)
    assert await status(citus_pool) == ("pass", [])
    kept = await snapshot(citus_pool)

    await citus_pool.execute("UPDATE charge_rollups SET units = units + 1"
                             " WHERE compacted AND account_id = 'A1' AND day = '2026-03-30'")
    assert await status(citus_pool) == ("fail", ["charge_rollups"])
    await citus_pool.execute("UPDATE charge_day_totals SET accounts = accounts + 1"
                             " WHERE day = '2026-04-02' AND grouping = ''")
    assert set((await status(citus_pool))[1]) == {"charge_rollups", "charge_day_totals"}

    written = await rebuild.rebuild(citus_pool, dt.date(2026, 3, 30), dt.date(2026, 4, 30),
                                    actor="test")
    assert set(written) == {"daily", "monthly", "hourly"}
    assert await status(citus_pool) == ("pass", [])
    assert await snapshot(citus_pool) == kept
