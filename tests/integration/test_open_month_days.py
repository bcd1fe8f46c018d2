"""The open month is made of its UTC days and folded into one table once closed (migration
1550): records are neither lost nor doubled by a fold, writers never wait on one long enough
to deadlock, and every reader of partitions (pseudonymisation, the archive plan, the charge
span) sees the days."""

from __future__ import annotations

import asyncio
import calendar
import datetime as dt

import asyncpg
import pytest
from prometheus_client import REGISTRY

from billing_oss.server.config import RetentionConfig
from billing_oss.server.retention import archive, housekeeping, pseudonyms, repo
from billing_oss.server.store import usage_repo

KEY = "k" * 32


def unfolded(table: str) -> float:
    value = REGISTRY.get_sample_value("billing_partition_months_unfolded", {"table": table})
    assert value is not None
    return value


async def current_month(pool: asyncpg.Pool) -> dt.date:
    month: dt.date = await pool.fetchval(
        "SELECT date_trunc('month', now() AT TIME ZONE 'UTC')::date")
    return month


async def leaves(pool: asyncpg.Pool, parent: str) -> dict[str, str]:
    rows = await pool.fetch(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound FROM pg_inherits i"
        " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = $1::regclass",
        parent)
    return {r["relname"]: r["bound"] for r in rows}


def name(parent: str, month: dt.date) -> str:
    return f"{parent}_{month:%Y_%m}"


def add_months(month: dt.date, n: int) -> dt.date:
    index = month.year * 12 + month.month - 1 + n
    return dt.date(index // 12, index % 12 + 1, 1)


async def test_the_open_month_is_made_of_its_utc_days(pool: asyncpg.Pool) -> None:
    month = await current_month(pool)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL timezone = 'Pacific/Auckland'")
        for when in (month, add_months(month, -1), add_months(month, 3)):
            await conn.execute("SELECT ensure_month_partition('usage_records', $1)", when)
        await conn.execute("SELECT ensure_month_partition('usage_records', $1)",
                           month + dt.timedelta(days=5))  # the same month: nothing new
    parts = await leaves(pool, "usage_records")
    days = sorted(p for p in parts if p.startswith(name("usage_records", month) + "_"))
    assert len(days) == calendar.monthrange(month.year, month.month)[1]
    assert name("usage_records", month) not in parts
    assert parts[days[0]] == (f"FOR VALUES FROM ('{month} 00:00:00+00') "
                              f"TO ('{month + dt.timedelta(days=1)} 00:00:00+00')")
    # Closed and far months are one table each.
    assert name("usage_records", add_months(month, -1)) in parts
    assert name("usage_records", add_months(month, 3)) in parts


async def test_an_empty_table_of_the_open_month_becomes_its_days(pool: asyncpg.Pool) -> None:
    """A month table made ahead (before migration 1550, or by a clock further back) is split
    once the month opens if it is empty, and left alone if it holds records."""
    month = await current_month(pool)
    await pool.execute(
        "CREATE TABLE t_empty (account_id text, event_time timestamptz, PRIMARY KEY"
        " (account_id, event_time)) PARTITION BY RANGE (event_time);"
        "CREATE TABLE t_held (LIKE t_empty INCLUDING ALL) PARTITION BY RANGE (event_time)")
    for parent in ("t_empty", "t_held"):
        await pool.execute(
            f"CREATE TABLE {name(parent, month)} PARTITION OF {parent} FOR VALUES FROM"
            f" ('{month} 00:00+00') TO ('{add_months(month, 1)} 00:00+00')")
    await pool.execute("INSERT INTO t_held VALUES ('A', $1)",
                       dt.datetime.combine(month, dt.time(3), dt.UTC))
    assert await repo.split_month(pool, "t_empty", month)
    assert not await repo.split_month(pool, "t_held", month)
    assert not await repo.split_month(pool, "t_empty", month)  # days already
    assert not await repo.split_month(pool, "t_empty", add_months(month, 3))  # not open
    assert len(await leaves(pool, "t_empty")) == calendar.monthrange(month.year, month.month)[1]
    assert list(await leaves(pool, "t_held")) == [name("t_held", month)]


async def test_days_are_pseudonymised_and_planned(pool: asyncpg.Pool) -> None:
    month = await current_month(pool)
    first = dt.datetime.combine(month, dt.time(1), dt.UTC)
    await pool.execute(
        "INSERT INTO usage_records (account_id, usage_id, event_time, source, record_key,"
        " kind, calling) SELECT 'A', n, $1::timestamptz + n * interval '1 hour', 's',"
        " n::text, 'voice', '4930' || n FROM generate_series(1, 30) n", first)
    later = first + dt.timedelta(days=45)
    changed = await pseudonyms.run(pool, KEY, 1, later, "test")
    assert changed == 30
    assert await pool.fetchval("SELECT count(*) FROM usage_records WHERE calling LIKE '4930%'"
                               ) == 0
    plans = {p.month: p for p in await archive.plan(pool, later, 1)}
    assert plans[f"{month:%Y-%m}"].action == "keep"
    assert set(plans[f"{month:%Y-%m}"].rows) == {"usage_records"}
    # ten months on, a month still in days is held, not archived from under its days
    plans = {p.month: p for p in await archive.plan(pool, later + dt.timedelta(days=300), 1)}
    assert plans[f"{month:%Y-%m}"].action == "hold"


async def test_a_closed_month_is_folded_into_one_table(pool: asyncpg.Pool) -> None:
    """Housekeeping a day after the month ends folds its days: the same records, the
    parent's indexes on the month table, and new records of the month land in it."""
    month = await current_month(pool)
    await pool.execute("SELECT ensure_month_partition('charges', $1)", month)
    first = dt.datetime.combine(month, dt.time(2), dt.UTC)
    await pool.execute(
        "INSERT INTO charges (account_id, charge_id, event_time, usage_id, kind, amount_micros,"
        " currency) SELECT 'A', n, $1::timestamptz + n * interval '1 hour', n, 'charge',"
        " 1000 * n, 'EUR' FROM generate_series(1, 30) n", first)
    before = {t: await pool.fetch(f"SELECT * FROM {t} ORDER BY account_id, event_time")
              for t in ("usage_records", "charges")}
    next_month = dt.datetime.combine(add_months(month, 1), dt.time(), dt.UTC)
    cfg = RetentionConfig(interval_s=86_400, partitions_ahead_months=0)

    done = await housekeeping.housekeep(pool, cfg, next_month + dt.timedelta(hours=23))
    assert done.months_folded == []  # closed less than a day ago
    async with pool.acquire() as late:
        # a late record written outside the pipeline, its transaction open: the usage
        # fold gives way (and is counted), the charges' goes through
        open_write = late.transaction()
        await open_write.start()
        await late.execute(
            "INSERT INTO usage_records (account_id, usage_id, event_time, source, record_key,"
            " kind) VALUES ('L', 999, $1, 's', 'late', 'voice')", first)
        done = await housekeeping.housekeep(pool, cfg, next_month + dt.timedelta(days=1))
        assert done.months_folded == [f"{month:%Y-%m}"]
        assert unfolded("usage_records") == 1 and unfolded("charges") == 0
        await open_write.rollback()
    done = await housekeeping.housekeep(pool, cfg, next_month + dt.timedelta(days=1))
    assert done.months_folded == [f"{month:%Y-%m}"]
    assert unfolded("usage_records") == 0

    for table, rows in before.items():
        assert list(await leaves(pool, table)).count(name(table, month)) == 1
        assert not [p for p in await leaves(pool, table) if p.startswith(name(table, month) + "_")]
        assert await pool.fetch(f"SELECT * FROM {table} ORDER BY account_id, event_time") == rows
        # every index of the parent has its partition on the month table, the key a constraint
        missing = await pool.fetchval(
            "SELECT count(*) FROM pg_index x WHERE x.indrelid = $1::regclass AND NOT EXISTS ("
            " SELECT FROM pg_inherits i JOIN pg_index y ON y.indexrelid = i.inhrelid"
            " WHERE i.inhparent = x.indexrelid AND y.indrelid = $2::regclass)",
            table, name(table, month))
        assert missing == 0
        assert await pool.fetchval("SELECT count(*) FROM pg_constraint WHERE conrelid ="
                                   " $1::regclass AND contype = 'p'", name(table, month)) == 1
    assert await pool.fetchval("SELECT since FROM charges_live_span()") <= month
    await pool.execute("SELECT ensure_month_partition('charges', $1)", month)
    await pool.execute("INSERT INTO charges (account_id, charge_id, event_time, kind,"
                       " amount_micros, currency) VALUES ('B', 99, $1, 'charge', 1, 'EUR')",
                       first)
    assert await pool.fetchval(f"SELECT count(*) FROM {name('charges', month)}") == 31
    done = await housekeeping.housekeep(pool, cfg, next_month + dt.timedelta(days=2))
    assert done.months_folded == []


async def test_a_fold_gives_way_to_writers_and_loses_nothing(pool: asyncpg.Pool) -> None:
    """Two writers insert into the month being folded and into the next one: each fold tried
    meanwhile gives way (a late record's writer waits on no fold), and once the month's
    records stop, while the next month's go on, the fold goes through. No writer fails;
    every row is there once."""
    month = dt.date(2026, 4, 1)  # any month made of days
    await pool.execute(
        "CREATE TABLE t_busy (account_id text, event_time timestamptz, n int, PRIMARY KEY"
        " (account_id, event_time, n)) PARTITION BY RANGE (event_time);"
        "CREATE INDEX ON t_busy (n);"
        "SELECT make_day_partitions('t_busy', '2026-04-01');"
        "CREATE TABLE t_busy_2026_05 PARTITION OF t_busy FOR VALUES FROM"
        " ('2026-05-01 00:00+00') TO ('2026-06-01 00:00+00')")
    await pool.execute(
        "INSERT INTO t_busy SELECT 'A', $1::timestamptz + (n % 720) * interval '1 hour', n"
        " FROM generate_series(1, 100000) n", dt.datetime(2026, 4, 1, tzinfo=dt.UTC))
    stop, april_done = asyncio.Event(), asyncio.Event()
    written = [0]

    async def writer(lane: int) -> None:
        n = 1_000_000 * (lane + 1)
        async with pool.acquire() as conn:
            while not stop.is_set():
                # April, May, April: a day's lock asked for while the parent is held
                days = (40, 45) if april_done.is_set() else (3, 40, 17)
                async with conn.transaction():
                    for day in days:
                        n += 1
                        await conn.execute(
                            "INSERT INTO t_busy VALUES ('W', $1, $2)",
                            dt.datetime(2026, 4, 1, tzinfo=dt.UTC) + dt.timedelta(days=day), n)
                written[0] += len(days)
                await asyncio.sleep(0.005)

    writers = [asyncio.create_task(writer(lane)) for lane in range(2)]
    deferred = 0
    try:
        await asyncio.sleep(0.2)
        while True:
            try:
                moved = await repo.fold_month(pool, "t_busy", month)
                break
            except asyncpg.LockNotAvailableError:
                deferred += 1
                if deferred == 3:
                    april_done.set()
                assert deferred < 50
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        await asyncio.gather(*writers)  # a writer's failure fails the test here
    assert deferred >= 3 and moved is not None and moved >= 100_000
    assert sorted(await leaves(pool, "t_busy")) == ["t_busy_2026_04", "t_busy_2026_05"]
    assert await pool.fetchval("SELECT count(*) FROM t_busy") == 100_000 + written[0]
    assert await pool.fetchval("SELECT count(DISTINCT n) FROM t_busy") == 100_000 + written[0]
    assert await repo.fold_month(pool, "t_busy", month) is None


async def test_batches_of_the_month_wait_for_its_fold(pool: asyncpg.Pool) -> None:
    """Writers that hold the month first, as the pipeline's batches do (``hold_months``),
    wait for a fold instead of making it give way: it goes through at the first try while
    they write into the month without pause, and no row is lost or doubled."""
    await pool.execute(
        "CREATE TABLE t_held_busy (account_id text, event_time timestamptz, n int, PRIMARY KEY"
        " (account_id, event_time, n)) PARTITION BY RANGE (event_time);"
        "SELECT make_day_partitions('t_held_busy', '2026-06-01');"
        "SELECT make_day_partitions('t_held_busy', '2026-07-01')")
    await pool.execute(
        "INSERT INTO t_held_busy SELECT 'A', '2026-06-01Z'::timestamptz"
        " + (n % 720) * interval '1 hour', n FROM generate_series(1, 100000) n")
    stop = asyncio.Event()
    written = [0]
    june, july = dt.datetime(2026, 6, 3, tzinfo=dt.UTC), dt.datetime(2026, 7, 9, tzinfo=dt.UTC)

    async def writer(lane: int) -> None:
        n = 1_000_000 * (lane + 1)
        async with pool.acquire() as conn:
            while not stop.is_set():
                async with conn.transaction():
                    await usage_repo.hold_months(conn, [june.date(), july.date()])
                    for when in (june, july, june):
                        n += 1
                        await conn.execute("INSERT INTO t_held_busy VALUES ('W', $1, $2)",
                                           when, n)
                written[0] += 3
                await asyncio.sleep(0.002)

    writers = [asyncio.create_task(writer(lane)) for lane in range(2)]
    try:
        await asyncio.sleep(0.2)
        moved = await repo.fold_month(pool, "t_held_busy", dt.date(2026, 6, 1))
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        await asyncio.gather(*writers)
    assert moved is not None and moved >= 100_000
    assert "t_held_busy_2026_06" in await leaves(pool, "t_held_busy")
    assert await pool.fetchval("SELECT count(*) FROM t_held_busy_2026_06") > moved  # after
    assert await pool.fetchval("SELECT count(*) FROM t_held_busy") == 100_000 + written[0]
    assert await pool.fetchval("SELECT count(DISTINCT n) FROM t_held_busy") == \
        100_000 + written[0]


async def test_a_fold_gives_way_to_a_batch_that_holds_the_parent(pool: asyncpg.Pool) -> None:
    """A delivery writes a month, then a second one being folded: it waits on the fold while
    holding the parent the fold must lock at its end. The fold gives way (no deadlock, the
    batch never fails) and the batch commits both records."""
    await pool.execute(
        "CREATE TABLE t_two (account_id text, event_time timestamptz, n int, PRIMARY KEY"
        " (account_id, event_time, n)) PARTITION BY RANGE (event_time);"
        "SELECT make_day_partitions('t_two', '2026-08-01');"
        "CREATE TABLE t_two_2026_09 PARTITION OF t_two FOR VALUES FROM"
        " ('2026-09-01 00:00+00') TO ('2026-10-01 00:00+00');"
        "INSERT INTO t_two SELECT 'A', '2026-08-01Z'::timestamptz"
        " + (n % 720) * interval '1 hour', n FROM generate_series(1, 300000) n")
    august, september = dt.date(2026, 8, 1), dt.date(2026, 9, 1)
    folding = asyncio.create_task(repo.fold_month(pool, "t_two", august))
    async with pool.acquire() as conn:
        for _ in range(400):  # until the fold holds August's writes
            if await conn.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                                   " AND mode = 'ExclusiveLock' AND granted") >= 2:
                break
            await asyncio.sleep(0.005)
        async with conn.transaction():
            await usage_repo.hold_months(conn, [september])
            await conn.execute("INSERT INTO t_two VALUES ('W', '2026-09-02Z', 1)")
            await usage_repo.hold_months(conn, [august])  # waits for the fold to give way
            await conn.execute("INSERT INTO t_two VALUES ('W', '2026-08-02Z', 2)")
    with pytest.raises(asyncpg.LockNotAvailableError, match="waits on the fold"):
        await folding  # seen before it asks for the parent: not a lock timeout
    assert await pool.fetchval("SELECT count(*) FROM t_two WHERE account_id = 'W'") == 2
    assert await repo.fold_month(pool, "t_two", august) == 300_001
