"""Collections benchmark: aging as of a date over 1 M invoices of 100 k accounts (with
their payments and allocations) beside a plain SELECT sum() of the same ledger, then a
first dunning run over the 100 k accounts (every step due at once) and the next daily run
after it. Targets: aging ≤ 5 s, dunning run ≤ 30 s.

    python perf/bench_collections.py [--quick] [--repeat N] [--database-url DSN]
        [--keep | --reuse NAME]

Without --database-url (or BILLING_OSS_TEST_DATABASE_URL) an embedded PostgreSQL is used.
Each query runs --repeat times (the same for both sides); the median is reported. The
dunning runs are rolled back after each repeat, so every repeat starts from the seed.
--keep leaves the seeded database (its name is printed); --reuse NAME runs on it again.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time
import uuid

import asyncpg
import embedded_pg  # perf/ is on sys.path: this script's folder
from seeded import post_finalised  # perf/ is on sys.path: this script's folder

from billing_oss.server.collections import aging, aging_kept, dunning
from billing_oss.server.store.dsn import with_database
from billing_oss.server.store.migrate import migrate

ISSUED = dt.date(2026, 1, 1)
DUE = dt.date(2026, 1, 15)


async def seed(conn: asyncpg.Connection, accounts: int, invoices: int) -> None:
    """``invoices`` finalised invoices over ``accounts``; nine in ten paid in full by a
    payment allocated to it, the tenth open and overdue."""
    await conn.execute(f"""
        INSERT INTO accounts (account_id) SELECT 'A' || lpad(g::text, 6, '0')
        FROM generate_series(1, {accounts}) g;
        INSERT INTO invoices (account_id, period, period_start, period_end, currency,
            rounding_method, line_total_micros, allowance_micros, net_micros, tax_micros,
            total_micros, rounding_micros, payable_micros, seller, buyer, status, series,
            number, number_text, issue_date, due_date)
        SELECT 'A' || lpad((g % {accounts} + 1)::text, 6, '0'), 'p' || g, now(), now(), 'EUR',
            'half-up', m, 0, m, 0, m, 0, m, '{{}}', '{{}}', 'finalised', 'B', g,
            'B-' || lpad(g::text, 7, '0'), '{ISSUED}'::date - (g % 90), '{DUE}'::date - (g % 90)
        FROM generate_series(1, {invoices}) g, LATERAL (SELECT (1000 + g % 9000) * 10000 AS m) x;
        """)
    await post_finalised(conn)
    await conn.execute("""
        INSERT INTO payments (account_id, amount_micros, currency, received_on, method,
            external_id)
        SELECT account_id, amount_micros, 'EUR', due_date, 'transfer', entry_id::text
        FROM ledger_entries WHERE kind = 'invoice' AND invoice_id % 10 <> 0;
        INSERT INTO ledger_entries (account_id, kind, currency, amount_micros, entry_date,
            payment_id)
        SELECT account_id, 'payment', 'EUR', -amount_micros, received_on, payment_id
        FROM payments;
        INSERT INTO payment_allocations (account_id, payment_id, entry_id, amount_micros,
            allocated_on)
        SELECT p.account_id, p.payment_id, p.external_id::bigint, p.amount_micros, p.received_on
        FROM payments p;""")
    # Written by plain SQL above: the kept aging is formed from the ledger, as the
    # migration forms it for an existing ledger.
    await aging_kept.rebuild(conn)
    await conn.execute("ANALYZE")


async def timed(repeat: int, work: object) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        out = await work()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return statistics.median(times), out


async def main(quick: bool, repeat: int, dsn: str, keep: bool, reuse: str | None) -> None:
    accounts, invoices = (2_000, 20_000) if quick else (100_000, 1_000_000)
    name = reuse or f"bench_collections_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(dsn)
    if reuse is None:
        await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        pool = await asyncpg.create_pool(with_database(dsn, name), min_size=1, max_size=4)
        assert pool is not None
        await migrate(pool)
        started = time.perf_counter()
        async with pool.acquire() as conn:
            if reuse is None:
                await seed(conn, accounts, invoices)
            else:
                accounts = await conn.fetchval("SELECT count(*) FROM accounts")
            rows = await conn.fetchval("SELECT count(*) FROM ledger_entries")
        print(f"{'seeded' if reuse is None else 'reused'} {name}: {accounts:,} accounts "
              f"({rows:,} ledger entries) in {time.perf_counter() - started:.1f} s")
        as_of = dt.date(2026, 2, 1)
        ours, result = await timed(repeat, lambda: aging.aging(pool, as_of))
        peer, total = await timed(repeat, lambda: pool.fetchval(
            "SELECT sum(amount_micros) FROM ledger_entries WHERE entry_date <= $1", as_of))
        (row,) = result  # type: ignore[misc]
        assert row.total_micros == total, (row, total)
        print(f"{'aging as of a date (buckets)':<36}{ours:>8.2f} s  (target ≤ 5 s, median "
              f"of {repeat})")
        print(f"{'SELECT sum() of the same ledger':<36}{peer:>8.2f} s")
        print(f"{'ratio aging / SELECT sum()':<36}{ours / peer:>8.1f} x   totals equal: "
              f"{row.total_micros == total}")
        async with pool.acquire() as conn:
            peer_d, _ = await timed(repeat, lambda: conn.fetchval(
                "SELECT count(*) FROM ledger_entries e WHERE e.kind = 'invoice'"
                " AND e.due_date < $1 AND e.amount_micros > coalesce((SELECT sum(a.amount_micros)"
                " FROM payment_allocations a WHERE a.account_id = e.account_id"
                " AND a.entry_id = e.entry_id), 0)", as_of))
            # The next day on which steps fall due (the open invoices' due dates are ten
            # days apart), run daily up to it after the first run: a day's steps.
            day = await conn.fetchval(
                "SELECT $1::date + min(d) FROM (SELECT $1::date - due_date AS days FROM"
                " ledger_entries e WHERE kind = 'invoice' AND NOT EXISTS (SELECT 1 FROM"
                " payment_allocations a WHERE a.account_id = e.account_id"
                " AND a.entry_id = e.entry_id) GROUP BY due_date) x,"
                " (VALUES (3), (10), (20), (60)) AS s(step), LATERAL (SELECT s.step - x.days"
                " AS d) y WHERE y.d > 0", as_of)
            firsts, dailies = [], []
            for _ in range(repeat):
                undo = conn.transaction()
                await undo.start()
                try:
                    started = time.perf_counter()
                    run = await dunning.run(conn, "bench", as_of)
                    firsts.append(time.perf_counter() - started)
                    on = as_of
                    while on < day:  # the quiet days between, then the day timed
                        on += dt.timedelta(days=1)
                        started = time.perf_counter()
                        daily = await dunning.run(conn, "bench", on)
                    dailies.append(time.perf_counter() - started)
                finally:
                    await undo.rollback()
        ours_d, ours_daily = statistics.median(firsts), statistics.median(dailies)
        print(f"{'first dunning run, ' + format(accounts, ',') + ' accounts':<36}"
              f"{ours_d:>8.2f} s  (target ≤ 30 s; {run.steps:,} steps: {run.by_action}, "
              f"{len(run.suspended):,} suspended; median of {repeat}: "
              f"{', '.join(f'{t:.1f}' for t in firsts)})")
        print(f"{'daily dunning run, as of ' + str(day):<36}{ours_daily:>8.2f} s  "
              f"({daily.steps:,} steps: {daily.by_action}; {len(daily.resumed):,} resumed)")
        print(f"{'SELECT of the overdue invoices':<36}{peer_d:>8.2f} s")
        print(f"{'ratio first run / SELECT':<36}{ours_d / peer_d:>8.1f} x")
        print(f"{'ratio daily run / SELECT':<36}{ours_daily / peer_d:>8.1f} x")
        await pool.close()
    finally:
        if keep or reuse:
            print(f"kept database {name} (--reuse {name})")
        else:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 k invoices, 2 k accounts")
    parser.add_argument("--repeat", type=int, default=3)
    kept = parser.add_mutually_exclusive_group()
    kept.add_argument("--keep", action="store_true", help="leave the seeded database")
    kept.add_argument("--reuse", metavar="NAME", help="a database --keep left: no seeding")
    embedded_pg.add_database_url(parser)
    args = parser.parse_args()
    embedded_pg.run(lambda url: main(args.quick, args.repeat, url, args.keep, args.reuse),
                    args.database_url)


if __name__ == "__main__":
    cli()
