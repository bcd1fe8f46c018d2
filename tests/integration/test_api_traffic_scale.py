"""Lists across accounts page by keyset on an index, exactly, while rows arrive; charge
totals answered from the rollups equal the sums of the charges to the micro-unit."""

from __future__ import annotations

import datetime as dt
import json
import random
from typing import Any

import asyncpg

from billing_oss.server.store import traffic_repo
from billing_oss.server.store.traffic_repo import Period
from tests.charge_seed import insert_charges
from tests.integration.api_harness import Api, api, seed_usage  # noqa: F401

T0 = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)


def stamp(moment: dt.datetime) -> str:
    """RFC 3339 in UTC, to the microsecond when it has one."""
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


async def test_pages_across_accounts_are_exact_while_rows_arrive(
        api: Api, pool: asyncpg.Pool) -> None:  # noqa: F811
    # Ten records share each of four timestamps: the order among them is the id's.
    await pool.execute("INSERT INTO accounts (account_id) SELECT 'KS-' || a"
                       " FROM generate_series(1, 5) a")
    for i in range(40):
        await seed_usage(pool, f"KS-{i % 5 + 1}", stamp(T0 + dt.timedelta(minutes=i % 4)),
                         amount_micros=1000 + i)
    before = {r["usage_id"] for r in await pool.fetch("SELECT usage_id FROM usage_records")}
    for path, id_name in (("/v1/usage", "usage_id"), ("/v1/charges", "charge_id")):
        seen: list[tuple[str, int]] = []
        cursor, arrived = None, 0
        while True:
            params: dict[str, Any] = {"limit": 7, **({"cursor": cursor} if cursor else {})}
            status, body = await api.call("GET", path, "viewer", params=params)
            assert status == 200, body
            seen += [(item["event_time"], item[id_name]) for item in body["items"]]
            # Between pages: a row at a time already passed, and one at the same time as
            # the last row served (a larger id, so after it in the order).
            arrived += 1
            await seed_usage(pool, "KS-1", stamp(T0 - dt.timedelta(hours=arrived)),
                             amount_micros=1)
            await seed_usage(pool, "KS-2", seen[-1][0], amount_micros=1)
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert seen == sorted(seen), "pages out of order"
        assert len(seen) == len(set(seen)), "a row served twice"
        if path == "/v1/usage":
            assert before <= {usage_id for _, usage_id in seen}, "a row missed"
        else:
            usage_ids = {r["charge_id"]: r["usage_id"] for r in await pool.fetch(
                "SELECT charge_id, usage_id FROM charges")}
            assert before <= {usage_ids[charge_id] for _, charge_id in seen}, "a row missed"
        # Nothing before the first row served came back later.
        assert all(t >= seen[0][0] for t, _ in seen)


async def test_pages_across_accounts_read_an_index_in_order(pool: asyncpg.Pool) -> None:
    # The page query over every account, at depth (after a cursor): no sort of the period,
    # whatever the planner would pick for a table this small (sequential scans off).
    for table in ("usage_records", "charges"):
        await pool.execute("SELECT ensure_month_partition($1::regclass, $2)", table, T0.date())
    after = (T0, 12)
    for sql, args in (
        traffic_repo.usage_query(Period(), kind=None, source=None, after=after, limit=50),
        traffic_repo.charges_query(Period(), kind=None, rerate_job_id=None, after=after,
                                   limit=50),
        traffic_repo.charges_query(Period(), kind=None, rerate_job_id=3, after=None,
                                   limit=50),
        traffic_repo.charges_query(Period(), kind="reversal", rerate_job_id=None, after=after,
                                   limit=50),
    ):
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off")
            plan = json.loads(await conn.fetchval("EXPLAIN (FORMAT JSON) " + sql, *args))

        def nodes(node: dict[str, Any]) -> list[str]:
            return [node["Node Type"]] + [n for c in node.get("Plans", []) for n in nodes(c)]

        found = nodes(plan[0]["Plan"])
        assert "Sort" not in found and "Seq Scan" not in found, (sql, found)


async def raw_totals(pool: asyncpg.Pool, period: Period) -> list[tuple[Any, ...]]:
    """The sums straight from the charges, as the endpoint computed them before rollups."""
    w = period.where()
    rows = await pool.fetch(
        "SELECT rtrim(currency) AS currency, count(*) FILTER (WHERE kind = 'charge') AS c,"
        " count(*) FILTER (WHERE kind = 'reversal') AS r,"
        " coalesce(sum(amount_micros::numeric) FILTER (WHERE kind = 'charge'), 0) AS cm,"
        " coalesce(sum(amount_micros::numeric) FILTER (WHERE kind = 'reversal'), 0) AS rm"
        " FROM charges" + w.sql() + " GROUP BY currency ORDER BY currency", *w.args)
    return [(r["currency"], r["c"], r["r"], int(r["cm"]), int(r["rm"])) for r in rows]


async def test_totals_from_rollups_equal_the_charges(
        api: Api, pool: asyncpg.Pool) -> None:  # noqa: F811
    await pool.execute("INSERT INTO accounts (account_id) VALUES ('TT-1'), ('TT-2')")
    # Charges every 7 h 13 min over three months (two accounts, two currencies), a third of
    # them reversed: whole days, months and the parts of days at either end all count.
    start = dt.datetime(2025, 11, 3, 1, 0, tzinfo=dt.UTC)
    for i in range(300):
        moment = start + dt.timedelta(minutes=433 * i)
        account, currency = ("TT-1", "EUR") if i % 3 else ("TT-2", "USD" if i % 2 else "EUR")
        usage_id = await seed_usage(pool, account, stamp(moment),
                                    amount_micros=1_000_001 * (i + 1) + 7, currency=currency)
        if i % 3 == 1:
            await reverse(pool, usage_id)
    z = dt.UTC
    periods = [
        Period(), Period(account_id="TT-1"), Period(account_id="TT-2"),
        Period(start=dt.datetime(2025, 12, 1, tzinfo=z)),
        Period(end=dt.datetime(2025, 12, 1, tzinfo=z)),
        Period(start=dt.datetime(2025, 11, 5, 13, 7, tzinfo=z),
               end=dt.datetime(2026, 1, 20, 22, 59, 59, tzinfo=z)),
        Period(account_id="TT-1", start=dt.datetime(2025, 11, 30, 23, 0, tzinfo=z),
               end=dt.datetime(2026, 1, 1, 0, 30, tzinfo=z)),
        Period(start=dt.datetime(2025, 12, 24, 6, tzinfo=z),
               end=dt.datetime(2025, 12, 24, 18, tzinfo=z)),
        Period(start=dt.datetime(2025, 12, 3, tzinfo=z), end=dt.datetime(2025, 12, 9, tzinfo=z)),
        Period(start=dt.datetime(2025, 12, 1, tzinfo=z), end=dt.datetime(2026, 2, 1, tzinfo=z)),
        # across accounts, the whole hours of partial days from the hourly level: 12:34 to
        # 12:34, within a day, on whole hours, within an hour, across a month's end
        Period(start=dt.datetime(2025, 11, 20, 12, 34, tzinfo=z),
               end=dt.datetime(2026, 1, 9, 12, 34, tzinfo=z)),
        Period(start=dt.datetime(2025, 12, 2, 1, 17, tzinfo=z),
               end=dt.datetime(2025, 12, 2, 22, 3, tzinfo=z)),
        Period(start=dt.datetime(2025, 12, 1, 7, tzinfo=z),
               end=dt.datetime(2025, 12, 30, 19, tzinfo=z)),
        Period(start=dt.datetime(2025, 12, 2, 3, 1, tzinfo=z),
               end=dt.datetime(2025, 12, 2, 3, 59, tzinfo=z)),
        Period(start=dt.datetime(2025, 11, 30, 20, 30, tzinfo=z),
               end=dt.datetime(2025, 12, 1, 5, 30, tzinfo=z)),
        Period(start=dt.datetime(2026, 1, 13, 23, 30, tzinfo=z)),
        Period(end=dt.datetime(2025, 11, 6, 0, 1, tzinfo=z)),
    ]
    # and random periods to the minute (a few to the microsecond), most across accounts
    rng = random.Random(24)
    span = int((dt.datetime(2026, 2, 2, tzinfo=z) - start).total_seconds())
    for i in range(30):
        a, b = sorted(start + dt.timedelta(seconds=rng.randrange(span) // 60 * 60)
                      for _ in range(2))
        if i % 5 == 0:
            a += dt.timedelta(microseconds=rng.randrange(1, 60_000_000))
        periods.append(Period(account_id="TT-1" if i % 6 == 0 else None, start=a,
                              end=b + dt.timedelta(minutes=rng.choice((1, 59, 61)))))

    async def check() -> None:
        for period in periods:
            params = {k: v for k, v in (
                ("account_id", period.account_id),
                ("from", period.start and stamp(period.start)),
                ("to", period.end and stamp(period.end))) if v is not None}
            status, body = await api.call("GET", "/v1/charges/totals", "viewer", params=params)
            assert status == 200, body
            got = [(t["currency"], t["charges"], t["reversals"],
                    int(t["charged"]["amount"].replace(".", "")),
                    int(t["reversed"]["amount"].replace(".", "")))
                   for t in body["items"]]
            assert got == await raw_totals(pool, period), period

    await check()
    assert (await raw_totals(pool, Period()))[0][2] > 0  # reversals are in
    assert await pool.fetchval("SELECT count(*) FROM charge_totals") == 0  # nothing folded
    assert await pool.fetchval("SELECT count(*) FROM charge_hour_totals WHERE compacted") == 0
    assert await hours_are_the_charges(pool)
    # Compaction of December only: across accounts, its days come from the account-less
    # level, the other days from the deltas still per account.
    await pool.execute("SELECT compact_charge_rollups('2025-12-01', '2025-12-31')")
    assert await pool.fetchval("SELECT count(*) FROM charge_totals") > 0
    await check()
    # The hourly level folded: one row per hour and currency, no delta left.
    assert await pool.fetchval("SELECT compact_charge_hour_totals()") > 0
    assert await pool.fetchval("SELECT count(*) FROM charge_hour_totals WHERE NOT compacted") == 0
    await check()
    # Charges and reversals arriving late for days and hours already folded, then
    # everything folded.
    await more_charges(pool, dt.datetime(2025, 12, 2, 3, 4, tzinfo=z))
    await check()
    await pool.execute("SELECT compact_charge_rollups('2025-01-01', '2027-01-01'),"
                       " compact_charge_rollups_monthly('2025-01-01', '2027-01-01'),"
                       " compact_charge_hour_totals()")
    await check()
    assert await folded_level_is_the_compacted_rows(pool)
    assert await hours_are_the_charges(pool)
    await more_charges(pool, dt.datetime(2026, 1, 13, 23, 59, tzinfo=z))
    await more_charges(pool, dt.datetime(2025, 12, 2, 3, 59, 59, 999_999, tzinfo=z))
    await check()
    # Compaction folds the deltas again and keeps every sum.
    await pool.execute("SELECT compact_charge_rollups('2025-01-01', '2027-01-01'),"
                       " compact_charge_rollups_monthly('2025-01-01', '2027-01-01'),"
                       " compact_charge_hour_totals()")
    await check()
    assert await folded_level_is_the_compacted_rows(pool)
    assert await hours_are_the_charges(pool)
    assert await pool.fetchval(
        "SELECT count(*) = count(DISTINCT (hour, currency)) FROM charge_hour_totals")
    # A month archived (its partition gone) is no longer in the charges: nor in the totals,
    # though the rollups keep it.
    await pool.execute("ALTER TABLE charges DETACH PARTITION charges_2025_11;"
                       " DROP TABLE charges_2025_11")
    await check()


async def more_charges(pool: asyncpg.Pool, moment: dt.datetime) -> None:
    """Two charges at ``moment`` (two accounts) and a reversal of one, as rerating writes."""
    first = await seed_usage(pool, "TT-1", stamp(moment), amount_micros=7_654_321)
    await seed_usage(pool, "TT-2", stamp(moment), amount_micros=1_000_003, currency="USD")
    await reverse(pool, first)


async def reverse(pool: asyncpg.Pool, usage_id: int) -> None:
    """A reversal of the usage's charge, as rerating writes it."""
    rows = await pool.fetch(
        "SELECT account_id, event_time, usage_id, 'reversal', -amount_micros, currency,"
        " charge_id FROM charges WHERE usage_id = $1", usage_id)
    await insert_charges(pool, ("account_id", "event_time", "usage_id", "kind",
                                "amount_micros", "currency", "reverses_charge_id"),
                         [tuple(r) for r in rows])


async def hours_are_the_charges(pool: asyncpg.Pool) -> bool:
    """The hourly level holds, per UTC hour and currency, the charges' counts and sums."""
    level = await pool.fetch(
        "SELECT hour, rtrim(currency), sum(charges), sum(reversals), sum(charged_micros),"
        " sum(reversed_micros) FROM charge_hour_totals GROUP BY 1, 2 ORDER BY 1, 2")
    charges = await pool.fetch(
        "SELECT date_trunc('hour', event_time, 'UTC'), rtrim(currency),"
        " count(*) FILTER (WHERE kind = 'charge'), count(*) FILTER (WHERE kind = 'reversal'),"
        " coalesce(sum(amount_micros) FILTER (WHERE kind = 'charge'), 0),"
        " coalesce(sum(amount_micros) FILTER (WHERE kind = 'reversal'), 0)"
        " FROM charges GROUP BY 1, 2 ORDER BY 1, 2")
    return bool(level) and [tuple(r) for r in level] == [tuple(r) for r in charges]


async def folded_level_is_the_compacted_rows(pool: asyncpg.Pool) -> bool:
    """The account-less level holds, per day and key, the sums of the compacted rows."""
    sums = ("SELECT day, service, zone, rtrim(currency), tariff_version_id,"
            " sum(amount_micros)::bigint, sum(records)::bigint, sum(units),"
            " sum(reversals)::bigint, sum(reversed_micros)::bigint FROM {}"
            " GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5")
    level = await pool.fetch(sums.format("charge_totals"))
    rows = await pool.fetch(sums.format("charge_rollups WHERE compacted"))
    one_per_key = await pool.fetchval(
        "SELECT count(*) = count(DISTINCT (day, service, zone, currency, tariff_version_id))"
        " FROM charge_totals")
    return bool(level) and [tuple(r) for r in level] == [tuple(r) for r in rows] and one_per_key
