"""The data the scale benchmarks run on, generated server-side (INSERT ... SELECT from
generate_series) in minutes at 10 M records, and the ``billing-oss serve`` they measure.

``seed`` writes ``usage`` voice records and one charge each, evenly over the last ``DAYS``
days and ``accounts`` accounts (each with a finalised invoice), with a thousandth as many
suspense records; the charges go through their triggers, so the analytics rollups hold them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import embedded_pg  # perf/ is on sys.path: the running script's folder
from served import free_port, wait_ready  # perf/ is on sys.path: the running script's folder

from billing_oss.server.analytics import compaction
from billing_oss.server.collections import postings
from billing_oss.server.store.dsn import with_database
from billing_oss.server.store.migrate import migrate
from billing_oss.server.store.pool import Connection

REPO = Path(__file__).resolve().parent.parent
DAYS = 60


async def seed(conn: Connection, usage: int, accounts: int) -> None:
    files = max(10, usage // 10_000)
    per_file = usage // files
    usage = files * per_file
    await conn.execute("SET synchronous_commit = off")
    for months_back in range(0, 4):
        await conn.execute(
            "SELECT ensure_month_partition('usage_records', (date_trunc('month', now())"
            " - make_interval(months => $1))::date)", months_back)
        await conn.execute(
            "SELECT ensure_month_partition('charges', (date_trunc('month', now())"
            " - make_interval(months => $1))::date)", months_back)
    await conn.execute(f"""
        INSERT INTO accounts (account_id, name, attrs)
            SELECT 'B' || lpad(a::text, 6, '0'), 'Customer ' || a, '{{"country": "FR"}}'
            FROM generate_series(1, {accounts}) a;
        INSERT INTO account_identifiers (identifier, account_id)
            SELECT '3361' || lpad(a::text, 7, '0'), 'B' || lpad(a::text, 6, '0')
            FROM generate_series(1, {accounts}) a;
        INSERT INTO source_files (source, name, format, sequence_no, sha256, state, count_in,
                                  count_charged, received_at, completed_at)
            SELECT 'msc1', 'MSC1_' || f, 'csv', f + (f / 997), 'sha' || f, 'done', {per_file},
                   {per_file}, now() - ({files} - f) * interval '{DAYS * 86400 // files} s',
                   now() - ({files} - f) * interval '{DAYS * 86400 // files} s'
            FROM generate_series(1, {files}) f;""")
    first_file = await conn.fetchval("SELECT min(source_file_id) FROM source_files")
    await conn.execute(f"""
        INSERT INTO usage_records (account_id, usage_id, event_time, source, record_key, kind,
                                   duration_s, calling, called, source_file_id, ingested_at)
            SELECT 'B' || lpad((g % {accounts} + 1)::text, 6, '0'), g,
                   now() - interval '{DAYS} days' + g * interval '{DAYS * 86400 / usage} s',
                   'msc1', 'k' || g, 'voice', 1 + g % 600,
                   '3361' || lpad((g % {accounts} + 1)::text, 7, '0'), '33612345678',
                   {first_file} + (g - 1) / {per_file}, now()
            FROM generate_series(1, {usage}) g""")
    await conn.execute("""
        INSERT INTO charges (account_id, charge_id, event_time, usage_id, kind, amount_micros,
                             currency, zone, band, created_at, source_file_id)
            SELECT account_id, usage_id, event_time, usage_id, 'charge', duration_s * 1000,
                   'EUR', 'national', 'offpeak', now(), source_file_id
            FROM usage_records""")
    # Their rollup deltas, as the server's writers append them (server/store/charge_writes.py;
    # compaction folds them): set-based here, a seed of millions of rows.
    for table, day in (("charge_rollups", "(event_time AT TIME ZONE 'UTC')::date"),
                       ("charge_rollups_monthly",
                        "date_trunc('month', event_time AT TIME ZONE 'UTC')::date")):
        await conn.execute(f"""
            INSERT INTO {table} (account_id, day, service, zone, currency, tariff_version_id,
                                 amount_micros, records, units)
                SELECT account_id, {day}, 'voice', 'national', 'EUR', NULL,
                       sum(duration_s * 1000), count(*), sum(duration_s)
                FROM usage_records GROUP BY 1, 2""")
    await conn.execute("""
        INSERT INTO charge_hour_totals (hour, currency, charges, reversals, charged_micros,
                                        reversed_micros)
            SELECT date_trunc('hour', event_time, 'UTC'), currency, count(*), 0,
                   sum(amount_micros), 0
            FROM charges GROUP BY 1, 2""")
    await conn.execute(f"""
        INSERT INTO suspense (source, record_key, reason, detail, record, raw)
            SELECT 'msc1', 's' || g, (ARRAY['UNKNOWN_ACCOUNT', 'NO_ZONE', 'NO_TARIFF'])[g % 3 + 1],
                   'no account has 3399' || g, jsonb_build_object('called', '3399' || g), 'raw'
            FROM generate_series(1, {max(100, usage // 1000)}) g""")
    await conn.execute("""
        INSERT INTO bill_runs (period, state, requested_by)
            VALUES (to_char(now() - interval '1 month', 'YYYY-MM'), 'done', 'bench');
        INSERT INTO invoices (account_id, bill_run_id, period, period_start, period_end,
            currency, status, series, number, number_text, issue_date, due_date,
            rounding_method, line_total_micros, allowance_micros, net_micros, tax_micros,
            total_micros, rounding_micros, payable_micros, seller, buyer, finalised_at)
        SELECT a.account_id, (SELECT max(bill_run_id) FROM bill_runs),
            to_char(now() - interval '1 month', 'YYYY-MM'),
            date_trunc('month', now() - interval '1 month'), date_trunc('month', now()), 'EUR',
            'finalised', 'INV', row_number() OVER (),
            'INV-' || lpad((row_number() OVER ())::text, 7, '0'), current_date,
            current_date + 30, 'half-up', 9990000, 0, 9990000, 1998000, 11988000, 0, 11988000,
            '{"name": "Bench Telecom", "country": "FR"}', '{"name": "Customer", "country": "FR"}',
            now()
        FROM accounts a;
        SET session_replication_role = replica;
        INSERT INTO invoice_lines (account_id, invoice_id, line_no, kind, service, description,
            quantity, unit, charges, gross_micros, net_micros, tax_category, tax_rate)
        SELECT account_id, invoice_id, 1, 'recurring', 'subscription', 'Mobile S', 1, 'month',
            0, 9990000, 9990000, 'S', 20 FROM invoices;
        INSERT INTO taxes (account_id, invoice_id, category, rate, taxable_micros, tax_micros)
        SELECT account_id, invoice_id, 'S', 20, net_micros, tax_micros FROM invoices;
        SET session_replication_role = origin;""")
    await post_finalised(conn)
    await conn.execute("VACUUM ANALYZE")


async def compact(pool: asyncpg.Pool) -> float:
    """Fold the seeded rollup deltas as ``serve``'s clock folds them; the seconds it took.
    A large fold renews both levels' statistics (``analytics.repo.analyze_rollups``): left
    stale, the planner counted the monthly level's seeded rows as deltas still, a generic
    plan then reading them all (20–50 ms instead of 1)."""
    began = time.perf_counter()
    await compaction.run_once(pool)
    return time.perf_counter() - began


async def post_finalised(conn: Connection) -> None:
    """Post the finalised invoices written straight into their table to the ledger, as the
    finaliser posts them."""
    await postings.post_invoices(conn, await conn.fetch(
        "SELECT account_id, invoice_id, number_text, currency, payable_micros, issue_date,"
        " due_date FROM invoices WHERE status = 'finalised' ORDER BY invoice_id"))


@asynccontextmanager
async def seeded_database(dsn: str, prefix: str, usage: int, accounts: int, *, keep: bool,
                          reuse: str | None) -> AsyncIterator[tuple[str, asyncpg.Pool, str]]:
    """(URL, pool, how it came to be) of a fresh database ``<prefix>_<hex>`` on the server at
    ``dsn``, migrated and seeded, dropped afterwards unless ``keep``; or of ``reuse``, a
    database kept by an earlier run, left as it is."""
    name = reuse or f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(dsn)
    try:
        if not reuse:
            await admin.execute(f'CREATE DATABASE "{name}"')
        url = with_database(dsn, name)
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2, command_timeout=7200)
        assert pool is not None
        try:
            started = time.perf_counter()
            await migrate(pool)
            if not reuse:
                async with pool.acquire() as conn:
                    await seed(conn, usage, accounts)
            yield url, pool, (f"reused from {name}" if reuse
                              else f"generated in {time.perf_counter() - started:.0f} s")
        finally:
            await pool.close()
    finally:
        if keep or reuse:
            print(f"database kept: {name}")
        else:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@asynccontextmanager
async def serving(url: str, env: dict[str, str] | None = None) -> AsyncIterator[str]:
    """The base URL of ``billing-oss serve`` on the database ``url`` (``env`` added to its
    environment), stopped afterwards."""
    port = free_port()
    server = start_server(url, port, env or {})
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_ready(base, within=60)
        yield base
    finally:
        server.terminate()
        server.wait(30)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, min(len(ordered) - 1, round(q * len(ordered)) - 1))]


Main = Callable[[float, int, str, bool, str | None], Coroutine[Any, Any, int]]


def cli(description: str, requests: int, per: str, main: Main) -> None:
    """The scale benchmarks' command line: ``--scale``, ``--requests``, ``--keep``,
    ``--reuse`` and the database, then ``main(scale, requests, dsn, keep, reuse)``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--scale", type=float, default=0.01,
                        help="1 = 10 M usage records and charges, 100 k accounts")
    parser.add_argument("--requests", type=int, default=requests,
                        help=f"per {per}, after 3 warm-ups")
    embedded_pg.add_kept_options(parser)
    args = embedded_pg.parse_kept(parser)
    sys.exit(embedded_pg.run(
        lambda url: main(args.scale, args.requests, url, args.keep, args.reuse),
        args.database_url))


def start_server(url: str, port: int, extra: dict[str, str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "BILLING_OSS_CATALOG_LOAD_DEMO": "false",
           "BILLING_OSS_LOG_LEVEL": "warning", "BILLING_OSS_ASSURANCE_INTERVAL_S": "0",
           "BILLING_OSS_WEBHOOKS_ENABLED": "false", **extra}
    return subprocess.Popen(
        [sys.executable, "-m", "billing_oss", "serve", "--database-url", url,
         "--port", str(port)], cwd=REPO, env=env, stdout=subprocess.DEVNULL)
