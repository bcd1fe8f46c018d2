"""The MRR report's steps (migration 1501) follow the subscriptions: after inserts, updates
(ended, product changed) and deletes, MRR per product and the account movements equal their
definition computed from the subscriptions themselves (every month joined with every
subscription), over a range inside the history and over all of it."""

from __future__ import annotations

import datetime as dt
import random

import asyncpg

from billing_oss.server.analytics import repo

# The definition: each month joined with every subscription active at its open or close.
_MONTHS = ("WITH months AS (SELECT m.month, m.month::timestamp AT TIME ZONE 'UTC' AS open,"
           " (m.month + interval '1 month') AT TIME ZONE 'UTC' AS close"
           " FROM unnest($1::date[]) AS m(month))")
DEFINED_MRR = (
    f"{_MONTHS} SELECT m.month, s.product, rtrim(p.currency) AS currency,"
    " sum(p.recurring_fee_micros)::bigint AS mrr_micros, count(*) AS subscriptions,"
    " count(DISTINCT s.account_id COLLATE \"C\") AS accounts"
    " FROM months m JOIN subscriptions s ON s.valid_from < m.close"
    " AND (s.valid_to IS NULL OR s.valid_to >= m.close)"
    " JOIN products p ON p.product_id = s.product"
    " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3")
DEFINED_MOVEMENTS = (
    f"{_MONTHS}, flags AS (SELECT m.month, s.account_id COLLATE \"C\" AS account_id,"
    " bool_or(s.valid_from < m.open) AS at_open,"
    " bool_or(s.valid_to IS NULL OR s.valid_to >= m.close) AS at_close,"
    " bool_or(s.valid_to IS NULL OR s.valid_to > m.open) AS during"
    " FROM months m JOIN subscriptions s ON s.valid_from < m.close"
    " AND (s.valid_to IS NULL OR s.valid_to >= m.open) GROUP BY 1, 2)"
    " SELECT f.month, rtrim(a.currency) AS currency,"
    " count(*) FILTER (WHERE f.at_open) AS opening,"
    " count(*) FILTER (WHERE f.at_close) AS closing,"
    " count(*) FILTER (WHERE f.at_close AND NOT f.at_open) AS new,"
    " count(*) FILTER (WHERE f.at_open AND NOT f.at_close) AS churned,"
    " count(*) FILTER (WHERE f.during) AS subscribed"
    " FROM flags f JOIN accounts a ON a.account_id = f.account_id"
    " GROUP BY 1, 2 ORDER BY 1, 2")
RANGES = [(dt.date(2025, 3, 1), dt.date(2026, 3, 1)), (dt.date(2024, 12, 1), dt.date(2027, 2, 1))]


def moment(rng: random.Random) -> dt.datetime:
    """A time in 2025–2026, a third of them exactly on a month boundary."""
    day = dt.date(2025, 1, 1) + dt.timedelta(days=rng.randrange(720))
    if rng.random() < 0.33:
        return dt.datetime(day.year, day.month, 1, tzinfo=dt.UTC)
    return dt.datetime.combine(day, dt.time(rng.randrange(24), rng.randrange(60)), dt.UTC)


async def check(pool: asyncpg.Pool) -> None:
    for start, end in RANGES:
        months = repo._months(start, end)
        assert [tuple(r) for r in await repo.mrr(pool, start, end)] == \
            [tuple(r) for r in await pool.fetch(DEFINED_MRR, months)], (start, end)
        assert [tuple(r) for r in await repo.account_movements(pool, start, end)] == \
            [tuple(r) for r in await pool.fetch(DEFINED_MOVEMENTS, months)], (start, end)


async def scenario(pool: asyncpg.Pool) -> None:
    """Subscriptions inserted, updated and deleted, checked after each kind of change."""
    rng = random.Random(19)
    await pool.execute("INSERT INTO tariffs (tariff_id, currency) VALUES ('st', 'EUR')")
    await pool.execute(
        "INSERT INTO products (product_id, name, currency, recurring_fee_micros) VALUES"
        " ('s1', 'S1', 'EUR', 1000001), ('s2', 'S2', 'EUR', 2500003),"
        " ('s3', 'S3', 'USD', 999999)")
    await pool.execute("INSERT INTO accounts (account_id, currency) SELECT 'S' || i,"
                       " CASE WHEN i % 5 = 0 THEN 'USD' ELSE 'EUR' END"
                       " FROM generate_series(1, 40) i")
    rows = []
    for _ in range(150):
        begin = moment(rng)
        until = None if rng.random() < 0.3 else begin + (moment(rng) - moment(rng)) % \
            dt.timedelta(days=300) + dt.timedelta(minutes=1)
        rows.append((f"S{rng.randrange(1, 41)}", rng.choice(["s1", "s2", "s3", "gone"]),
                     begin, until))
    await pool.executemany(  # one statement per row, then many accounts in one
        "INSERT INTO subscriptions (account_id, tariff_id, product, valid_from, valid_to)"
        " VALUES ($1, 'st', $2, $3, $4)", rows[:50])
    await pool.execute(
        "INSERT INTO subscriptions (account_id, tariff_id, product, valid_from, valid_to)"
        " SELECT r.a, 'st', r.p, r.f, r.t FROM unnest($1::text[], $2::text[],"
        " $3::timestamptz[], $4::timestamptz[]) AS r(a, p, f, t)",
        *map(list, zip(*rows[50:], strict=True)))
    await check(pool)

    # ended now, moved to another product, ended at a month boundary, deleted
    await pool.execute("UPDATE subscriptions SET valid_to = valid_from + interval '40 days'"
                       " WHERE valid_to IS NULL AND subscription_id % 3 = 0")
    await pool.execute("UPDATE subscriptions SET product = 's2' WHERE product = 's1'"
                       " AND subscription_id % 2 = 0")
    await pool.execute("UPDATE subscriptions SET valid_to = date_trunc('month', valid_from)"
                       " + interval '2 months' WHERE subscription_id % 7 = 1")
    await pool.execute("DELETE FROM subscriptions WHERE subscription_id % 5 = 2")
    await check(pool)
    # a fee and a currency changed: the report reads them as they are now
    await pool.execute("UPDATE products SET recurring_fee_micros = 7 WHERE product_id = 's1'")
    await pool.execute("UPDATE accounts SET currency = 'USD' WHERE account_id = 'S1'")
    await check(pool)


async def test_steps_follow_inserts_updates_and_deletes(pool: asyncpg.Pool) -> None:
    await scenario(pool)
