"""Revenue-assurance benchmark, two parts, each beside its peer in the same run:

1. every control over ``10 M × scale`` usage records and charges and ``100 k × scale``
   finalised invoices (target at scale 1: ≤ 60 s), beside ``count(*)`` scans of the same
   tables; the rollup levels control's time in that run (a window holding two days of the
   data, as its default two days do in a live run) and alone over every day
   (``rollup_days = 0``: January's month and weeks), on the levels the rebuild builds from
   the charges;
2. audit-log writes with 8 concurrent writers: transactions per second with an audit entry
   each, beside the same transactions without one (and beside the former design, every
   writer locking the one head row, for reference).

    python perf/bench_assurance.py [--scale 0.1] [--repeat 3] [--seconds 5] [--keep | --reuse DB]
                                   [--database-url DSN]

Without --database-url (or BILLING_OSS_TEST_DATABASE_URL) an embedded PostgreSQL is used.
Data are generated server-side (INSERT ... SELECT from generate_series, no round trips);
charges are priced by the real rater so the re-rating control finds them right. Each side
runs --repeat times; the median is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import embedded_pg  # perf/ is on sys.path: this script's folder
from seeded import post_finalised  # perf/ is on sys.path: this script's folder

from billing_oss.core.ports import Charge
from billing_oss.core.records import UsageRecord
from billing_oss.server.assurance import engine
from billing_oss.server.assurance.controls.rating import current_rater
from billing_oss.server.assurance.model import Context, Settings
from billing_oss.server.composition import read_catalog_file
from billing_oss.server.store import audit, catalog_repo
from billing_oss.server.store.dsn import with_database
from billing_oss.server.store.migrate import migrate

REPO = Path(__file__).resolve().parent.parent
MAX_DURATION = 600
CALLED = "33612345678"  # national for the retail tariff
WRITERS = 8


async def prices(conn: asyncpg.Connection) -> list[int]:
    """Micro-units of a night call of 1..MAX_DURATION seconds on the retail tariff."""
    rater = await current_rater(conn)
    records = [UsageRecord(record_key=str(d), source="bench", kind="voice",
                           event_time="2026-01-06T23:30:00Z", duration_s=d,
                           calling="33611111111", called=CALLED)
               for d in range(1, MAX_DURATION + 1)]
    out = []
    for outcome in rater.rate(records):
        assert isinstance(outcome, Charge), outcome
        out.append(outcome.amount_micros)
    return out


async def seed(conn: asyncpg.Connection, usage: int, invoices: int) -> None:
    async with conn.transaction():
        await catalog_repo.load_into(conn, read_catalog_file(REPO / "config/demo-catalog.json"))
    amounts = await prices(conn)
    version = await conn.fetchval("SELECT tariff_version_id FROM tariff_versions"
                                  " WHERE tariff_id = 'retail' ORDER BY effective_from LIMIT 1")
    files = max(10, usage // 10_000)
    per_file = usage // files
    await conn.execute("SET synchronous_commit = off")
    await conn.execute(f"""
        SELECT ensure_month_partition('usage_records', '2026-01-01');
        SELECT ensure_month_partition('charges', '2026-01-01');
        INSERT INTO accounts (account_id, attrs)
            SELECT 'B' || lpad(a::text, 6, '0'), '{{"country": "FR"}}'
            FROM generate_series(1, {invoices}) a;
        INSERT INTO account_identifiers (identifier, account_id)
            SELECT '3361' || lpad(a::text, 7, '0'), 'B' || lpad(a::text, 6, '0')
            FROM generate_series(1, {invoices}) a;
        INSERT INTO subscriptions (account_id, tariff_id, product, valid_from)
            SELECT 'B' || lpad(a::text, 6, '0'), 'retail', 'mobile-s', '2026-01-01'
            FROM generate_series(1, {invoices}) a;
        INSERT INTO source_files (source, name, format, sequence_no, sha256, state, count_in,
                                  count_charged, received_at, completed_at)
            SELECT 'msc1', 'MSC1_' || f, 'csv', f, 'sha' || f, 'done', {per_file}, {per_file},
                   '2026-02-03'::timestamptz - ({files} - f + 1) * interval '1 second', now()
            FROM generate_series(1, {files}) f;""")
    first_file = await conn.fetchval("SELECT min(source_file_id) FROM source_files")
    await conn.execute(f"""
        INSERT INTO usage_records (account_id, usage_id, event_time, source, record_key, kind,
                                   duration_s, calling, called, source_file_id, ingested_at)
            SELECT 'B' || lpad((g % {invoices} + 1)::text, 6, '0'), g,
                   '2026-01-05 23:00:00+00'::timestamptz
                       + (g / {invoices} % 25) * interval '1 day'
                       + (g / {invoices} / 25 % 3) * interval '1 hour'
                       + (g % 7) * interval '1 minute',
                   'msc1', 'k' || g, 'voice', 1 + g % {MAX_DURATION},
                   '3361' || lpad((g % {invoices} + 1)::text, 7, '0'), '{CALLED}',
                   {first_file} + (g - 1) / {per_file}, '2026-02-01'
            FROM generate_series(1, {files * per_file}) g""")
    await conn.execute(f"""
        INSERT INTO charges (account_id, charge_id, event_time, usage_id, kind, amount_micros,
                             currency, tariff_version_id, zone, band, created_at, source_file_id)
            SELECT account_id, usage_id, event_time, usage_id, 'charge',
                   ($1::bigint[])[duration_s], 'EUR', {version}, 'national', 'offpeak',
                   '2026-02-01', source_file_id
            FROM usage_records""", amounts)
    await conn.execute("""
        UPDATE source_files f SET totals = jsonb_build_object('EUR', t.micros::text)
        FROM (SELECT u.source_file_id, sum(c.amount_micros) AS micros FROM usage_records u
              JOIN charges c USING (account_id, event_time, usage_id) GROUP BY 1) t
        WHERE t.source_file_id = f.source_file_id""")
    # The rollup levels the charges' writers and compaction would have kept, built by the
    # rebuild from the charges (migration 1542): what the rollup levels control compares.
    await conn.execute("SELECT * FROM rebuild_charge_levels('2026-01-01', '2026-01-31')")
    await _invoices(conn)
    await conn.execute("VACUUM ANALYZE")


async def _invoices(conn: asyncpg.Connection) -> None:
    """One finalised January invoice per bench account: its plan and its usage, each charge
    linked to the usage line, 20 % VAT."""
    await conn.execute("""
        CREATE TEMP TABLE bench_usage AS
            SELECT account_id, count(*) AS n, sum(amount_micros) AS micros FROM charges
            GROUP BY account_id;
        INSERT INTO bill_runs (period, state, requested_by) VALUES ('2026-01', 'done', 'bench');
        INSERT INTO invoices (account_id, bill_run_id, period, period_start, period_end,
            currency, status, series, number, number_text, issue_date, due_date,
            rounding_method, line_total_micros, allowance_micros, net_micros, tax_micros,
            total_micros, rounding_micros, payable_micros, seller, buyer, finalised_at)
        SELECT b.account_id, (SELECT max(bill_run_id) FROM bill_runs), '2026-01',
            '2026-01-01', '2026-02-01', 'EUR', 'finalised', 'INV', row_number() OVER (),
            'INV-' || lpad((row_number() OVER ())::text, 7, '0'), '2026-02-01', '2026-03-03',
            'half-up', n.net, 0, n.net, n.net / 5, n.net + n.net / 5, 0, n.net + n.net / 5,
            '{}', '{}', '2026-02-02'
        FROM bench_usage b,
             LATERAL (SELECT 9990000 + round(b.micros, -4)::bigint AS net) n;
        -- Lines, taxes and links would go in while the invoices are drafts; for the bulk load
        -- the finalised invoices' own guard is set aside.
        SET session_replication_role = replica;
        INSERT INTO invoice_lines (account_id, invoice_id, line_no, kind, service, description,
            quantity, unit, charges, gross_micros, net_micros, tax_category, tax_rate,
            subscription_id)
        SELECT i.account_id, i.invoice_id, 1, 'recurring', 'subscription', 'Mobile S', 1,
            'month', 0, 9990000, 9990000, 'S', 20, s.subscription_id
        FROM invoices i JOIN subscriptions s USING (account_id)
        WHERE i.account_id LIKE 'B%';
        INSERT INTO invoice_lines (account_id, invoice_id, line_no, kind, service, description,
            quantity, unit, charges, gross_micros, net_micros, tax_category, tax_rate)
        SELECT i.account_id, i.invoice_id, 2, 'usage', 'voice', 'Calls', b.n, 'call', b.n,
            round(b.micros, -4), round(b.micros, -4), 'S', 20
        FROM invoices i JOIN bench_usage b USING (account_id);
        INSERT INTO taxes (account_id, invoice_id, category, rate, taxable_micros, tax_micros)
        SELECT account_id, invoice_id, 'S', 20, net_micros, tax_micros FROM invoices;
        INSERT INTO invoice_line_charges (account_id, charge_id, invoice_id, line_no)
        SELECT c.account_id, c.charge_id, i.invoice_id, 2 FROM charges c
        JOIN invoices i USING (account_id);
        SET session_replication_role = origin;""")
    await post_finalised(conn)


async def median(repeat: int, work: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        out = await work()
        times.append(time.perf_counter() - started)
    return statistics.median(times), out


async def controls_part(pool: asyncpg.Pool, repeat: int) -> None:
    # The generated files cycle through January's days, not in period order: a 31-day
    # lateness threshold keeps them from counting as late files (the query does the same work).
    # rollup_days: the last five days up to 3 February hold two days of the data (30 and
    # 31 January), as the default two days hold yesterday's and today's charges in a live run.
    ctx = Context(as_of=dt.datetime(2026, 2, 3, tzinfo=dt.UTC),
                  settings=Settings(late_after_h=31 * 24, rollup_days=5))
    # (the data are of January, their files received up to the last second before as_of)
    ours, run = await median(repeat, lambda: engine.run(pool, ctx, trigger="cli",
                                                         actor="bench"))

    async def counts() -> None:
        for table in ("usage_records", "charges", "invoices"):
            await pool.fetchval(f"SELECT count(*) FROM {table}")

    peer, _ = await median(repeat, counts)
    print(f"{'all ' + str(run.controls) + ' controls':<40}{ours:>8.2f} s  (median of {repeat};"
          f" {run.failed} failed)")
    for r in sorted(run.results, key=lambda r: -r.duration_ms)[:8]:
        print(f"    {r.control:<36}{r.duration_ms / 1000:>8.2f} s  {r.status}")
    levels = next(r for r in run.results if r.control == "rollups.levels")
    print(f"{'  rollups.levels, in the run (2 days)':<40}{levels.duration_ms / 1000:>8.2f} s  "
          f"{levels.status}, load average {os.getloadavg()[0]:.1f}")
    every_day = Context(as_of=ctx.as_of, settings=Settings(late_after_h=31 * 24, rollup_days=0))
    whole, alone = await median(repeat, lambda: engine.run(
        pool, every_day, controls=["rollups.levels"], trigger="cli", actor="bench"))
    print(f"{'  rollups.levels alone, every day':<40}{whole:>8.2f} s  "
          f"{alone.results[0].status}, load average {os.getloadavg()[0]:.1f}")
    print(f"{'count(*) of usage, charges, invoices':<40}{peer:>8.2f} s")
    print(f"{'ratio controls / count(*)':<40}{ours / peer:>8.1f} x")


async def writes_part(pool: asyncpg.Pool, seconds: float, repeat: int) -> None:
    await pool.execute("CREATE TABLE IF NOT EXISTS bench_changes"
                       " (id bigint GENERATED ALWAYS AS IDENTITY, payload text)")

    async def plain(conn: asyncpg.Connection, i: int) -> None:
        await conn.execute("INSERT INTO bench_changes (payload) VALUES ($1)", f"change {i}")

    async def audited(conn: asyncpg.Connection, i: int) -> None:
        await plain(conn, i)
        await audit.record(conn, "bench", "bench.change", f"bench:{i}", None, {"n": i})

    async def head_locked(conn: asyncpg.Connection, i: int) -> None:
        """The former design: every writer locks the one head row until it commits."""
        await plain(conn, i)
        await conn.execute("SELECT seq FROM audit_head FOR UPDATE")
        await audit.record(conn, "bench", "bench.change", f"bench:{i}", None, {"n": i})
        await conn.execute("UPDATE audit_head SET hash = hash")

    async def throughput(step: Callable[[asyncpg.Connection, int], Awaitable[None]]) -> float:
        deadline = time.perf_counter() + seconds
        done = [0] * WRITERS

        async def writer(w: int) -> None:
            async with pool.acquire() as conn:
                while time.perf_counter() < deadline:
                    async with conn.transaction():
                        await step(conn, w * 10_000_000 + done[w])
                    done[w] += 1

        await asyncio.gather(*(writer(w) for w in range(WRITERS)))
        return sum(done) / seconds

    rates: dict[str, list[float]] = {"none": [], "audited": [], "head": []}
    for _ in range(repeat):  # interleaved, so drift on a shared machine hits each side alike
        rates["none"].append(await throughput(plain))
        rates["audited"].append(await throughput(audited))
        rates["head"].append(await throughput(head_locked))
    chained, _ = await median(1, lambda: audit.chain_pending(pool))
    result = await audit.verify(pool)
    none, ours, head = (statistics.median(rates[k]) for k in ("none", "audited", "head"))
    print(f"{WRITERS} writers, one change per transaction ({seconds:.0f} s each, median of"
          f" {repeat}):")
    print(f"{'  with an audit entry':<40}{ours:>8.0f} tx/s")
    print(f"{'  without audit':<40}{none:>8.0f} tx/s")
    print(f"{'  ratio audited / without':<40}{ours / none:>8.2f}")
    print(f"{'  former design (head row locked)':<40}{head:>8.0f} tx/s  ({head / none:.2f} of"
          f" without)")
    print(f"  chaining what was left pending took {chained:.2f} s; chain verified:"
          f" {result.ok} ({result.rows:,} rows)")


async def main(scale: float, repeat: int, seconds: float, dsn: str, skip_controls: bool,
               keep: bool, reuse: str | None) -> None:
    usage, invoices = int(10_000_000 * scale), max(100, int(100_000 * scale))
    name = reuse or f"bench_assurance_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(dsn)
    if not reuse:
        await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        pool = await asyncpg.create_pool(with_database(dsn, name), min_size=WRITERS,
                                         max_size=WRITERS + 2, command_timeout=3600)
        assert pool is not None
        await migrate(pool)
        if not skip_controls:
            started = time.perf_counter()
            async with pool.acquire() as conn:
                if not reuse:
                    await seed(conn, usage, invoices)
                sizes = {t: await conn.fetchval(f"SELECT count(*) FROM {t}")
                         for t in ("usage_records", "charges", "invoices")}
            how = (f"reused from {reuse}" if reuse
                   else f"generated in {time.perf_counter() - started:.0f} s")
            print(f"{sizes['usage_records']:,} usage records, {sizes['charges']:,} charges,"
                  f" {sizes['invoices']:,} invoices, {how}")
            await controls_part(pool, repeat)
        await writes_part(pool, seconds, repeat)
        await pool.close()
    finally:
        if keep or reuse:
            print(f"database kept: {name}")
        else:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.1,
                        help="1 = 10 M usage records and charges, 100 k invoices")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5, help="per write measurement")
    parser.add_argument("--writes-only", action="store_true", help="skip the controls part")
    embedded_pg.add_kept_options(parser)
    args = embedded_pg.parse_kept(parser)
    run = (args.scale, args.repeat, args.seconds)
    embedded_pg.run(lambda url: main(*run, url, args.writes_only, args.keep, args.reuse),
                    args.database_url)


if __name__ == "__main__":
    cli()
