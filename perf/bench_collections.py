"""Collections benchmark: aging as of a date over 1 M invoices of 100 k accounts (with
their payments and allocations) beside a plain SELECT sum() of the same ledger; aging as of
today from the kept state (all accounts, one account, page 1 and page 50 of the accounts)
beside the same answers summed from the ledger, p50/p99 over --requests each, in the same
run; then a first dunning run over the 100 k accounts (every step due at once) and the
next daily run after it. Targets: aging ≤ 5 s, aging today ≤ 50 ms p99, dunning run ≤ 30 s.

    python perf/bench_collections.py [--quick] [--repeat N] [--requests N] [--no-dunning]
        [--database-url DSN] [--keep | --reuse NAME]

Without --database-url (or BILLING_OSS_TEST_DATABASE_URL) an embedded PostgreSQL is used.
Each query runs --repeat times (the same for both sides); the median is reported. The
dunning runs are rolled back after each repeat, so every repeat starts from the seed.
--keep leaves the seeded database (its name is printed); --reuse NAME runs on it again; both
need --database-url (the embedded server goes with the run).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import time
import uuid

import asyncpg
import embedded_pg  # perf/ is on sys.path: this script's folder
from seeded import percentile, post_finalised  # perf/ is on sys.path: this script's folder

from billing_oss.server.collections import aging, aging_kept_repo, dunning
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
    await aging_kept_repo.rebuild(conn)
    await conn.execute("ANALYZE")


async def timed(repeat: int, work: object) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        out = await work()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return statistics.median(times), out


async def sampled(requests: int, work: object) -> tuple[list[float], object]:
    """Milliseconds of ``requests`` calls after three to warm up, and the last answer."""
    times, out = [], None
    for i in range(requests + 3):
        started = time.perf_counter()
        out = await work()  # type: ignore[operator]
        if i >= 3:
            times.append((time.perf_counter() - started) * 1000)
    return times, out


# The kept state's per-account rows summed across accounts: the level without the account
# that compaction keeps, not built (what a reader would do without it).
PER_ACCOUNT_SUM = (
    "SELECT currency, CASE WHEN due_date IS NULL THEN -1 ELSE width_bucket($1 - due_date,"
    " $2::int[]) END AS bucket, sum(amount_micros)::bigint FROM aging_open"
    " WHERE from_on IS NULL OR from_on <= $1 GROUP BY 1, 2")


async def aging_today(pool: asyncpg.Pool, accounts: int, requests: int) -> None:
    """Aging as of today: ours from the kept state, the peer summed from the ledger (what
    the API read before), each asked ``requests`` times, p50/p99 in ms."""
    today = dt.datetime.now(dt.UTC).date()
    rows = await pool.fetchval("SELECT count(*) FROM aging_open")
    level = await pool.fetchval("SELECT count(*) FROM aging_totals")
    print(f"aging as of today ({today}): kept {rows:,} rows per account, {level:,} without"
          f" the account; {requests} calls each, one at a time")

    def account() -> str:
        return f"A{random.randint(1, accounts):06d}"

    async def ledger_page(after: tuple[str, str] | None) -> list[aging.AgingRow]:
        lines = await aging.from_ledger(pool, today, per_account=True)
        return [r for r in lines if after is None or (r.account_id or "", r.currency) > after
                ][:51]

    async def kept_page(after: tuple[str, str] | None) -> list[aging.AgingRow]:
        return await aging.kept_page(pool, today, after=after, limit=51)

    # Page 50's cursor (the last page's, if fewer): the pages before it walked on the kept
    # state, the same line of the ledger's whole list.
    lines = await aging.from_ledger(pool, today, per_account=True)
    depth = min(50, (len(lines) - 1) // 50 + 1)
    after: tuple[str, str] | None = None
    for _ in range(depth - 1):
        walked = await aging.kept_page(pool, today, after=after, limit=50)
        after = (str(walked[-1].account_id), walked[-1].currency)
    if depth > 1:
        line = lines[(depth - 1) * 50 - 1]
        assert after == (line.account_id, line.currency)
    deep = {"kept": after, "ledger": after}
    cases = [
        ("all accounts", lambda: aging.kept(pool, today),
         lambda: aging.from_ledger(pool, today)),
        ("one account", lambda: aging.kept(pool, today, account_id=account()),
         lambda: aging.from_ledger(pool, today, account_id=account())),
        ("page 1 of the accounts", lambda: kept_page(None), lambda: ledger_page(None)),
        (f"page {depth} of the accounts", lambda: kept_page(deep["kept"]),
         lambda: ledger_page(deep["ledger"])),
    ]
    print(f"{'aging today':<28}{'ours p50':>10}{'p99':>9}{'ledger p50':>12}{'p99':>9}"
          f"{'ratio p50':>11}")
    for name, ours, peer in cases:
        ours_ms, ours_out = await sampled(requests, ours)
        peer_ms, peer_out = await sampled(requests, peer)
        if name != "one account":  # the same answer (one account: a random one each call)
            assert ours_out == peer_out, name
        print(f"{name:<28}{statistics.median(ours_ms):>10.1f}{percentile(ours_ms, 0.99):>9.1f}"
              f"{statistics.median(peer_ms):>12.1f}{percentile(peer_ms, 0.99):>9.1f}"
              f"{statistics.median(peer_ms) / statistics.median(ours_ms):>10.0f}x")
    summed, _ = await sampled(requests, lambda: pool.fetch(PER_ACCOUNT_SUM, today,
                                                           [1, 31, 61, 91]))
    print(f"{'  (Σ per-account rows instead)':<28}{statistics.median(summed):>10.1f}"
          f"{percentile(summed, 0.99):>9.1f}")
    print("load average " + " ".join(f"{x:.1f}" for x in os.getloadavg()))


async def main(quick: bool, repeat: int, dsn: str, keep: bool, reuse: str | None,
               requests: int = 30, dunning_runs: bool = True) -> None:
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
        await aging_today(pool, accounts, requests)
        if not dunning_runs:
            await pool.close()
            return
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
    parser.add_argument("--requests", type=int, default=30, help="calls per aging-today query")
    parser.add_argument("--no-dunning", action="store_true", help="stop after the aging")
    embedded_pg.add_kept_options(parser)
    args = embedded_pg.parse_kept(parser)
    embedded_pg.run(lambda url: main(args.quick, args.repeat, url, args.keep, args.reuse,
                                     args.requests, not args.no_dunning),
                    args.database_url)


if __name__ == "__main__":
    cli()
