"""Bill-run benchmark: 1 M charges for 10 k accounts, invoices computed and stored, against
the time PostgreSQL takes to just SELECT those charges; then PDF invoices per second on one
core, and on every core at once (a thread a core, wall clock). Target: bill run ≤ 30 s,
≥ 100 PDF/s; the same again for the same invoices carrying their itemised list of records
(an account's ``itemised_invoice`` setting).

    python perf/bench_billrun.py [--quick] [--runs R] [--database-url DSN]

The charges are seeded once into a template database; each of the ``--runs`` runs (default
3) copies it (``CREATE DATABASE ... TEMPLATE``) and times, on the copy, the SELECT and then
the bill run. The PDF figures render the same invoices ``--runs`` times on each side (plain,
itemised, typst alone, and the phases ours adds to typst's: the CII XML, the XMP marks,
the marks with the list's pages), the sides taking turns within each run, and print the load
average. On every core: the itemised invoices and typst alone, each on the same threads
(``server.render.threads``), wall clock, taking turns, beside the itemised ones on one thread
(wall clock too, so the three share a measure and the machine's load at the time); the load
average is printed before and after those turns. Every figure is the median of its runs.
Without --database-url (or BILLING_OSS_TEST_DATABASE_URL) an embedded PostgreSQL is used.
"""

from __future__ import annotations

import argparse
import datetime
import io
import os
import statistics
import time
import uuid
from collections.abc import Callable

import asyncpg
import embedded_pg  # perf/ is on sys.path: this script's folder
import pikepdf

from billing_oss.server.billing import issuing
from billing_oss.server.billing.bill_runs import bill_run
from billing_oss.server.billing.model import Settings
from billing_oss.server.billing.render import cii, content, itemised, typst_pdf
from billing_oss.server.render import threads
from billing_oss.server.store.dsn import with_database
from billing_oss.server.store.migrate import migrate

SETTINGS = Settings(seller={"name": "Bench Telecom", "country": "FR", "vat_id": "FR1",
                            "iban": "FR7630006000011234567890189"})


async def seed(pool: asyncpg.Pool, accounts: int, charges: int) -> None:
    async with pool.acquire() as conn:
        await conn.execute("""
            INSERT INTO tax_rates VALUES ('FR', 'standard', 'S', 20, '2000-01-01', NULL);
            INSERT INTO tariffs (tariff_id, currency) VALUES ('retail', 'EUR');
            INSERT INTO tariff_versions (tariff_id, effective_from, definition, sha256)
            VALUES ('retail', '2026-01-01', '{"rates": [
                {"kind": "voice", "zone": "national", "band": "*", "connect_fee": "0.05",
                 "steps": [{"from": 0, "price": "0.02", "unit": 60, "increment": 1}]},
                {"kind": "voice", "zone": "mobile", "band": "peak", "connect_fee": "0",
                 "steps": [{"from": 0, "price": "0.08", "unit": 60, "increment": 60}]},
                {"kind": "voice", "zone": "mobile", "band": "*", "connect_fee": "0",
                 "steps": [{"from": 0, "price": "0.04", "unit": 60, "increment": 60}]},
                {"kind": "data", "zone": "*", "band": "*", "connect_fee": "0",
                 "steps": [{"from": 0, "price": "0.005", "unit": 1048576, "increment": 1024}]}
                ]}', 'bench');
            INSERT INTO products VALUES ('plan', 'Plan M', 'EUR', 19990000, 'standard', '[]');
            SELECT ensure_month_partition('charges', '2026-01-01');
            SELECT ensure_month_partition('usage_records', '2026-01-01');""")
        await conn.execute("""
            INSERT INTO accounts (account_id, name, attrs)
            SELECT 'A' || lpad(i::text, 6, '0'), 'Customer ' || i, '{"country": "FR"}'
            FROM generate_series(1, $1) i;
            INSERT INTO subscriptions (account_id, tariff_id, product, valid_from)
            SELECT account_id, 'retail', 'plan', '2025-12-01' FROM accounts""".replace(
            "$1", str(accounts)))
        await conn.execute(f"""
            INSERT INTO usage_records (account_id, usage_id, event_time, source, record_key,
                kind, duration_s, volume_down)
            SELECT 'A' || lpad((i % {accounts} + 1)::text, 6, '0'), i,
                   '2026-01-01'::timestamptz + (i % 2592000) * interval '1 second', 'bench',
                   i::text, CASE WHEN i % 3 = 0 THEN 'data' ELSE 'voice' END,
                   CASE WHEN i % 3 = 0 THEN NULL ELSE 30 + i % 600 END,
                   CASE WHEN i % 3 = 0 THEN i % 10000000 END
            FROM generate_series(1, {charges}) i;
            INSERT INTO charges (account_id, charge_id, event_time, usage_id, kind,
                amount_micros, currency, zone, tariff_version_id, band)
            SELECT account_id, usage_id, event_time, usage_id, 'charge',
                   1000 + (usage_id * 7919) % 500000, 'EUR',
                   CASE WHEN kind = 'data' THEN '' WHEN usage_id % 2 = 0 THEN 'national'
                        ELSE 'mobile' END,
                   (SELECT tariff_version_id FROM tariff_versions),
                   CASE WHEN usage_id % 5 < 3 THEN 'peak' ELSE 'offpeak' END
            FROM usage_records;
            ANALYZE""")


async def seeded_template(admin: asyncpg.Connection, dsn: str, name: str, accounts: int,
                          charges: int) -> None:
    await admin.execute(f'CREATE DATABASE "{name}"')
    pool = await asyncpg.create_pool(with_database(dsn, name), min_size=1, max_size=4)
    assert pool is not None
    await migrate(pool)
    t = time.perf_counter()
    await seed(pool, accounts, charges)
    print(f"seeded {charges:,} charges for {accounts:,} accounts in "
          f"{time.perf_counter() - t:.1f} s")
    await pool.close()  # a template must have no connections


async def select_then_bill(pool: asyncpg.Pool, charges: int, accounts: int) -> tuple[
        float, float, list[int]]:
    """(SELECT seconds, bill-run seconds, invoice ids) on a fresh copy of the seeded data."""
    t = time.perf_counter()
    rows = await pool.fetch("SELECT account_id, charge_id, amount_micros, currency, zone "
                            "FROM charges WHERE event_time < '2026-02-01'")
    select_s = time.perf_counter() - t
    assert len(rows) == charges
    del rows
    run = await bill_run(pool, "2026-01", SETTINGS, actor="bench")
    assert run.charges == charges and run.invoices == accounts
    linked = await pool.fetchval("SELECT count(*) FROM invoice_line_charges")
    assert linked == charges
    return select_s, run.seconds, list(run.invoice_ids)


def medians(runs: int, works: dict[str, Callable[[], object]],
            clock: Callable[[], float] = time.process_time) -> dict[str, float]:
    """Median seconds of ``clock`` over ``runs`` calls of each work, the works taking turns
    within each run so the machine's load weighs on each alike. The default, this process's
    CPU seconds, is what one core spent whatever else the machine runs, for works on one
    thread; works on several threads spend CPU on several cores at once, so their rate is a
    rate of the wall clock (``time.perf_counter``)."""
    times: dict[str, list[float]] = {name: [] for name in works}
    for _ in range(runs):
        for name, work in works.items():
            started = clock()
            work()
            times[name].append(clock() - started)
    return {name: statistics.median(spent) for name, spent in times.items()}


def load_average() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


async def main(quick: bool, dsn: str, runs: int) -> None:
    accounts, charges = (200, 20_000) if quick else (10_000, 1_000_000)
    admin = await asyncpg.connect(dsn)
    name = f"bench_billrun_{uuid.uuid4().hex[:8]}"
    copies = [f"{name}_r{i}" for i in range(runs)]
    selects: list[float] = []
    bills: list[float] = []
    try:
        await seeded_template(admin, dsn, name, accounts, charges)
        for copy in copies:
            await admin.execute(f'CREATE DATABASE "{copy}" TEMPLATE "{name}"')
            pool = await asyncpg.create_pool(with_database(dsn, copy), min_size=1, max_size=4)
            assert pool is not None
            select_s, bill_s, invoice_ids = await select_then_bill(pool, charges, accounts)
            selects.append(select_s)
            bills.append(bill_s)
            if copy != copies[-1]:
                await pool.close()
                await admin.execute(f'DROP DATABASE "{copy}" WITH (FORCE)')
        bill_s, select_s = statistics.median(bills), statistics.median(selects)
        print(f"median of {runs} runs, each on a fresh copy of the seeded database")
        print(f"{'bill run (computed + stored)':<34}{bill_s:>8.2f} s  "
              f"({charges / bill_s:,.0f} charges/s, {accounts:,} invoices; runs "
              f"{min(bills):.2f}–{max(bills):.2f} s)")
        print(f"{'SELECT of the same charges':<34}{select_s:>8.2f} s  "
              f"({charges / select_s:,.0f} charges/s; runs {min(selects):.2f}–"
              f"{max(selects):.2f} s)")
        print(f"{'ratio bill run / SELECT':<34}{bill_s / select_s:>8.1f} x   "
              f"target ≤ 30 s: {'ok' if bill_s <= 30 else 'MISSED'}")
        n = 50 if quick else 300
        async with pool.acquire() as conn:
            await issuing.finalise(conn, invoice_ids[:n], "BENCH", datetime.date(2026, 2, 1),
                                   30, actor="bench")
            invoices = [await issuing.load(conn, i) for i in invoice_ids[:n]]
            t = time.perf_counter()
            lists = [await itemised.load_items(conn, inv.account_id, inv.invoice_id)
                     for inv in invoices]
            list_ms = (time.perf_counter() - t) * 1000 / n
        await pool.close()
        # The peer: typst's typesetting of the same documents (with the document data and
        # its JSON, which ``typeset`` builds), the CII XML built beforehand, no XMP step.
        prepared = [(content.of_invoice(inv), cii.to_xml(inv)) for inv in invoices]
        typst_pdf.render(invoices[0], lists[0])  # fonts loaded once, like a running server
        typeset = [(doc, typst_pdf.typeset(doc, xml)) for doc, xml in prepared]
        # An itemised invoice's typst part: its usage appendix is on the list pages.
        bare = [(doc, typst_pdf.typeset(doc, xml, appendix=False)) for doc, xml in prepared]
        sizes = [len(typst_pdf.render(inv)) for inv in invoices]
        listed_sizes = [len(typst_pdf.render(inv, it))
                        for inv, it in zip(invoices, lists, strict=True)]
        wall = time.perf_counter()
        cpu = medians(runs, {
            "plain": lambda: [typst_pdf.render(inv) for inv in invoices],
            "itemised": lambda: [typst_pdf.render(inv, it)
                                 for inv, it in zip(invoices, lists, strict=True)],
            "typst": lambda: [typst_pdf.typeset(doc, xml) for doc, xml in prepared],
            "typst_bare": lambda: [typst_pdf.typeset(doc, xml, appendix=False)
                                   for doc, xml in prepared],
            # The phases ours adds to typst's, each over the same documents.
            "xml": lambda: [cii.rendition_xml(doc) for doc, _ in prepared],
            "marks": lambda: [typst_pdf.finish(doc, pdf) for doc, pdf in typeset],
            "list": lambda: [typst_pdf.finish(doc, pdf, it)
                             for (doc, pdf), it in zip(bare, lists, strict=True)]})
        wall = (time.perf_counter() - wall) / runs
        load = load_average()
        ours, listed_rate, peer = (n / cpu[k] for k in ("plain", "itemised", "typst"))
        print(f"PDFs: median of {runs} runs, the sides taking turns in each; {load}")
        print(f"{'PDF/A-3 + Factur-X, one core':<34}{ours:>8.1f} /s  "
              f"({n} invoices, {sum(sizes) // n:,} bytes each; wall clock {wall:.2f} s a run "
              f"of all sides)"
              f"   target ≥ 100/s: {'ok' if ours >= 100 else 'MISSED'}")
        listed = sum(len(it.rows) for it in lists) // n
        pages = sum(len(pikepdf.open(io.BytesIO(typst_pdf.render(inv, it))).pages)
                    for inv, it in zip(invoices[:5], lists, strict=False)) / 5
        print(f"{'the same, itemised, one core':<34}{listed_rate:>8.1f} /s  "
              f"({listed} records listed each, {sum(listed_sizes) // n:,} bytes, "
              f"{pages:.1f} pages, its records read in {list_ms:.1f} ms; "
              f"{listed_rate / ours:.2f}x of plain)   "
              f"target ≥ 100/s: {'ok' if listed_rate >= 100 else 'MISSED'}")
        print(f"{'typst typesetting alone, one core':<34}{peer:>8.1f} /s  "
              f"(plain ours: {ours / peer:.2f}x of it, itemised ours: {listed_rate / peer:.2f}x; "
              f"the rest is CII XML, XMP and the list's pages)")
        print(f"{'per PDF, one core':<34}typst {1000 * cpu['typst'] / n:.2f} ms (without the "
              f"usage appendix {1000 * cpu['typst_bare'] / n:.2f} ms), CII XML "
              f"{1000 * cpu['xml'] / n:.2f} ms, XMP marks {1000 * cpu['marks'] / n:.2f} ms, "
              f"XMP marks and list pages {1000 * cpu['list'] / n:.2f} ms")
        cores = threads.workers()
        pairs = list(zip(invoices, lists, strict=True))

        def listed_pdf(pair: tuple[issuing.Invoice, itemised.Itemised]) -> bytes:
            return typst_pdf.render(*pair)

        def typeset_alone(prepared_doc: tuple[content.Rendition, bytes]) -> bytes:
            return typst_pdf.typeset(*prepared_doc)

        threads.render_all(listed_pdf, pairs * cores, threads=cores)  # each thread's fonts
        before = load_average()
        clock = medians(runs, {
            "itemised": lambda: threads.render_all(listed_pdf, pairs, threads=cores),
            "typst": lambda: threads.render_all(typeset_alone, prepared, threads=cores),
            "itemised_one": lambda: [listed_pdf(pair) for pair in pairs]},
            clock=time.perf_counter)
        par, par_peer, one = (n / clock[k] for k in ("itemised", "typst", "itemised_one"))
        print(f"On {cores} threads (a core each), wall clock, median of {runs} runs taking turns; "
              f"{before} before, {load_average()} after")
        print(f"{f'itemised, {cores} threads':<34}{par:>8.1f} /s  ({par / one:.2f}x of one "
              f"thread, {one:.1f}/s by the same clock)   "
              f"target ≥ 100/s: {'ok' if par >= 100 else 'MISSED'}")
        print(f"{f'typst typesetting alone, {cores} threads':<34}{par_peer:>8.1f} /s  "
              f"(itemised ours: {par / par_peer:.2f}x of it)")
    finally:
        for db in (*copies, name):
            await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await admin.close()


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 k charges, 200 accounts")
    parser.add_argument("--runs", type=int, default=3, help="runs of each side (median)")
    embedded_pg.add_database_url(parser)
    args = parser.parse_args()
    embedded_pg.run(lambda url: main(args.quick, url, args.runs), args.database_url)


if __name__ == "__main__":
    cli()
