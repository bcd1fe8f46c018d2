"""The journal's days kept at posting (migration 1543, ``collections.journal_days_repo``) on
the ledger export's quarter (every kind of entry: invoices with negative and positive
rounding, credit notes, payments, a refund, a returned payment, a dunning fee, a write-off,
its reinstatement by a payment and, by ``collections_release_excess``, by a credit note; an
entry in another currency): per currency and day they are the export's builder's, and the
totals read from them equal the builder's over every period, before and after a fold;
the migration forms them for a ledger an earlier release wrote; the ``ledger.journal_days``
control passes on them and names the first day a changed level differs, which `billing-oss
ledger rebuild` repairs; two postings of the
same day do not wait on each other; and ``billing-oss ledger export`` streams the bytes the
whole-period builders write."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import msgspec
import pytest

from billing_oss.server.assurance.controls.journal_days import JOURNAL_DAYS
from billing_oss.server.assurance.model import Context, Settings
from billing_oss.server.collections import journal_days_repo, payments, postings, repo
from billing_oss.server.config import LedgerConfig
from billing_oss.server.ledger import export
from billing_oss.server.store import migrate as migrate_module
from billing_oss.server.store.dsn import with_database
from tests.integration import collections_seed as seed
from tests.integration.journal_days_check import assert_kept_days_are_the_builders
from tests.integration.test_ledger_export import (
    END,
    FEB,
    JAN,
    MAR,
    SIREN,
    cli,
    credit_note,
    ledger_cli,
    pay,
    seed_ledger,
)
from tests.migrations_before import migrate_before

PERIODS = [(JAN, END), (FEB, MAR - dt.timedelta(days=1)), (dt.date(2026, 2, 12),) * 2,
           (dt.date(2026, 3, 10), END), (dt.date(2025, 1, 1), dt.date(2025, 12, 31)),
           (JAN, dt.date(2026, 12, 31))]
CHARTS = [LedgerConfig(), LedgerConfig(currency="USD")]


async def seed_quarter(pool: asyncpg.Pool) -> None:
    """The export's quarter, then a credit note over the written-off invoice: more than is
    open on it, so ``collections_release_excess`` reverses part of the write-off."""
    await seed_ledger(pool)
    invoice_id = await pool.fetchval(
        "SELECT invoice_id FROM ledger_entries WHERE kind = 'write_off' AND account_id = 'C3'")
    async with pool.acquire() as conn, conn.transaction():
        await credit_note(conn, "C3", invoice_id, 20_000_000, 4_000_000, dt.date(2026, 3, 25))
    reversals = await pool.fetch(
        "SELECT description FROM ledger_entries WHERE kind = 'write_off_reversal'")
    assert {r[0] for r in reversals} >= {"Write-off replaced by a credit note"}


async def post_in_batches(pool: asyncpg.Pool) -> None:
    """Documents of several accounts posted together, as a bill run's batch and a bank
    file's payments are (their days are written under no account): two invoices with
    rounding, two payments."""
    day = dt.date(2026, 3, 5)
    async with pool.acquire() as conn, conn.transaction():
        finalised = []
        for account, net, tax, rounding in (("C1", 9_990_000, 1_998_000, 2_000),
                                            ("C2", 5_000_000, 1_000_000, -3_000)):
            number = await conn.fetchval("SELECT count(*) + 1 FROM invoices")
            finalised += await conn.fetch(
                "INSERT INTO invoices (account_id, period, period_start, period_end, currency,"
                " rounding_method, line_total_micros, allowance_micros, net_micros, tax_micros,"
                " total_micros, rounding_micros, payable_micros, seller, buyer, status, series,"
                " number, number_text, issue_date, due_date) VALUES ($1, 'p', now(), now(),"
                " 'EUR', 'half-up', $2, 0, $2, $3, $2::bigint + $3::bigint, $4,"
                " $2::bigint + $3::bigint + $4::bigint, '{}', '{}', 'finalised', 'B', $5,"
                " 'B-' || $5::bigint, $6, $6) RETURNING account_id, invoice_id, number_text,"
                " currency, payable_micros, issue_date, due_date",
                account, net, tax, rounding, number, day)
        await postings.post_invoices(conn, finalised)
        ids = await repo.payment_ids(conn, 2)
        await repo.insert_payments(conn, ids, [
            ("C1", 1_000_000, "EUR", day, "transfer", None, "batch", f"b{ids[0]}"),
            ("C3", 2_000_000, "EUR", day, "transfer", None, "batch", f"b{ids[1]}")], [], {})
    assert await pool.fetchval("SELECT count(*) FROM ledger_journal_deltas"
                               " WHERE account_id = ''") >= 2


async def assert_totals_are_the_builders(pool: asyncpg.Pool) -> None:
    for chart in CHARTS:
        for start, end in PERIODS:
            async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
                built = await export.totals_built(conn, chart, start, end)
            assert await export.totals(pool, chart, start, end) == built, (chart, start, end)


@pytest.fixture(scope="module")
async def seeded(pool: asyncpg.Pool) -> asyncpg.Pool:
    await seed_quarter(pool)
    return pool


async def test_the_days_are_the_builders_before_and_after_a_fold(seeded: asyncpg.Pool) -> None:
    kinds = {r[0] for r in await seeded.fetch("SELECT DISTINCT kind FROM ledger_entries")}
    assert kinds == {"invoice", "credit_note", "payment", "refund", "reversal", "fee",
                     "write_off", "write_off_reversal"}
    await assert_kept_days_are_the_builders(seeded)
    await assert_totals_are_the_builders(seeded)
    whole = await export.totals(seeded, LedgerConfig(), JAN, END)
    assert whole.entries > 10 and whole.debit_micros == whole.credit_micros > 0
    assert whole.other_currencies == ("USD",)

    assert await journal_days_repo.fold(seeded) > 0
    assert await journal_days_repo.fresh(seeded) == 0
    await assert_kept_days_are_the_builders(seeded)
    await assert_totals_are_the_builders(seeded)
    # postings after the fold: the days and the new deltas together
    await payments.record(seeded, "test", pay("C1", 3 * 1_000_000, dt.date(2026, 3, 2)))
    assert await journal_days_repo.fresh(seeded) == 1
    await post_in_batches(seeded)
    await assert_kept_days_are_the_builders(seeded)
    await assert_totals_are_the_builders(seeded)


async def test_the_control_passes_and_names_the_first_differing_day(
        seeded: asyncpg.Pool) -> None:
    control = JOURNAL_DAYS
    ctx = Context(as_of=dt.datetime.now(dt.UTC), settings=Settings())
    async with seeded.acquire() as conn:
        outcome = await control.evaluate(conn, ctx)
        assert outcome.offending == 0 and outcome.checked, outcome
        # a level changed by hand (or a writer that skipped it) on two days
        await conn.execute(
            "INSERT INTO ledger_journal_deltas VALUES ('X', 'EUR', '2026-02-20', 0, 7, 7),"
            " ('X', 'EUR', '2026-02-03', 1, 0, 0), ('X', 'USD', '2026-01-07', 0, 0, -5)")
        try:
            outcome = await control.evaluate(conn, ctx)
        finally:
            await conn.execute("DELETE FROM ledger_journal_deltas WHERE account_id = 'X'")
        assert outcome.offending == 2, outcome
        assert outcome.at_stake_micros == {"EUR": 7, "USD": 5}
        eur = next(o for o in outcome.evidence if o.object == "journal_days:EUR")
        assert eur.detail.startswith("first differing day 2026-02-03: kept ")
        assert eur.detail.endswith("; 2 day(s) differ (repair: billing-oss ledger rebuild"
                                  " --kept journal)"), eur.detail
        assert (await control.evaluate(conn, ctx)).offending == 0


async def test_two_postings_of_a_day_do_not_wait_on_each_other(seeded: asyncpg.Pool) -> None:
    """Deltas are appended: a posting whose transaction is still open holds no row another
    posting of the same day needs."""
    day = dt.date(2026, 3, 30)
    async with seeded.acquire() as a, seeded.acquire() as b:
        for account in ("W1", "W2"):
            await seed.account(a, account)
        async with a.transaction():
            await seed.invoice(a, "W1", 12_340_000, day)
            async with b.transaction():
                await b.execute("SET LOCAL lock_timeout = '2s'")
                await seed.invoice(b, "W2", 56_780_000, day)
    await assert_kept_days_are_the_builders(seeded)


@pytest.fixture
async def before_1543(pg_admin_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    name = f"t_journal_days_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg_admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    pool = await asyncpg.create_pool(with_database(pg_admin_dsn, name), min_size=1, max_size=4)
    assert pool is not None
    await migrate_before(pool, "1543")
    try:
        yield pool
    finally:
        await pool.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_the_migration_forms_the_days_of_an_existing_ledger(
        before_1543: asyncpg.Pool) -> None:
    """The ledger written as an earlier release wrote it: the same rows, no days. Today's
    writers append to ``ledger_journal_deltas`` from ``ledger_journal_moves``; stand-ins
    that take and keep nothing let them run on the earlier schema (its PL/pgSQL writer
    appends nothing), and go before the migration."""
    pool = before_1543
    await pool.execute(
        "CREATE TABLE ledger_journal_deltas (account_id text, currency char(3),"
        " entry_date date, entries bigint, debit_micros bigint, credit_micros bigint);"
        " CREATE VIEW ledger_journal_moves AS SELECT account_id, entry_id, kind, payment_id,"
        " currency, entry_date, 0::bigint AS debit_micros, 0::bigint AS credit_micros"
        " FROM ledger_entries")
    await seed_quarter(pool)
    await pool.execute("DROP VIEW ledger_journal_moves; DROP TABLE ledger_journal_deltas")

    applied = await migrate_module.migrate(pool)
    assert applied[0] == "1543_ledger_journal_days"
    assert await pool.fetchval("SELECT count(*) FROM ledger_journal_days") > 10
    await assert_kept_days_are_the_builders(pool)
    await assert_totals_are_the_builders(pool)


@pytest.mark.parametrize("size", [1, 4, export.CHUNK])
async def test_the_streamed_forms_are_the_whole_period_builders_bytes(
        seeded: asyncpg.Pool, size: int) -> None:
    chart = LedgerConfig(siren=SIREN)
    whole = await export.journal(seeded, chart, JAN, END)
    expected = {"csv": export.to_csv(whole).encode(), "json": export.to_json(whole) + b"\n",
                "fec": export.to_fec(whole)}
    for form, body in expected.items():
        parts: list[bytes] = []
        async with seeded.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            totals = await export.write(conn, chart, JAN, END, form, parts.append, size=size)
        assert b"".join(parts) == body, form
        assert len(parts) >= -(-len(whole.entries) // size), form  # a chunk at a time
        assert (totals.entries, totals.debit_micros, totals.credit_micros) == (
            len(whole.entries), whole.debit_micros, whole.credit_micros)
    assert msgspec.json.decode(expected["json"])["entries"]


async def test_the_cli_streams_the_same_bytes(seeded: asyncpg.Pool, database_url: str,
                                              tmp_path: Path) -> None:
    chart = LedgerConfig(siren=SIREN)
    whole = await export.journal(seeded, chart, JAN, END)
    span = ("--from", str(JAN), "--to", str(END))
    for form, body in (("csv", export.to_csv(whole).encode()),
                       ("json", export.to_json(whole) + b"\n"),
                       ("fec", export.to_fec(whole, "\t"))):
        extra = ("--siren", SIREN, "--separator", "tab") if form == "fec" else ()
        status, out, err = await cli(database_url, *span, "--format", form, *extra)
        assert status == 0 and out == body, (form, err)
        status, out, err = await cli(database_url, *span, "--format", form, *extra,
                                     "-o", str(tmp_path))
        assert status == 0, err
        written = Path(out.decode().strip())
        assert written.parent == tmp_path, form
        assert await asyncio.to_thread(written.read_bytes) == body, form
        assert f"{len(whole.entries)} entries" in err
    assert not await asyncio.to_thread(lambda: list(tmp_path.glob("*.part")))
    status, _, err = await cli(database_url, *span, "-o", str(tmp_path / "no" / "such.csv"))
    assert status == 2 and "No such file or directory" in err


AGING_CELLS = ("SELECT account_id, currency, due_date, sum(amount_micros)::bigint FROM {}"
               " GROUP BY 1, 2, 3 HAVING sum(amount_micros) <> 0 ORDER BY 1, 2, 3")


async def test_ledger_rebuild_repairs_what_the_control_finds(seeded: asyncpg.Pool,
                                                             database_url: str) -> None:
    """`billing-oss ledger rebuild` forms the journal's days and the kept aging anew from the
    ledger: a level changed by hand fails ``ledger.journal_days`` until the verb runs, the
    aging's cells are the ledger's moves again, and each part is audited."""
    ctx = Context(as_of=dt.datetime.now(dt.UTC), settings=Settings())
    async with seeded.acquire() as conn:
        await conn.execute(
            "INSERT INTO ledger_journal_deltas VALUES ('X', 'EUR', '2026-02-20', 0, 7, 7)")
        await conn.execute("INSERT INTO aging_open (account_id, currency, due_date, from_on,"
                           " amount_micros) VALUES ('C1', 'EUR', '2026-02-20', NULL, 9)")
        before = await conn.fetchval("SELECT coalesce(max(seq), 0) FROM audit_log")
        outcome = await JOURNAL_DAYS.evaluate(conn, ctx)
        assert outcome.offending == 1, outcome
        assert outcome.evidence[0].detail.endswith("(repair: billing-oss ledger rebuild"
                                                   " --kept journal)")
        assert (await conn.fetch(AGING_CELLS.format("aging_open"))
                != await conn.fetch(AGING_CELLS.format("aging_moves")))

    status, out, err = await ledger_cli(database_url, "rebuild")
    assert status == 0, err
    assert out.decode().startswith("journal: ") and " rows, aging: " in out.decode()

    async with seeded.acquire() as conn:
        assert (await JOURNAL_DAYS.evaluate(conn, ctx)).offending == 0
        assert (await conn.fetch(AGING_CELLS.format("aging_open"))
                == await conn.fetch(AGING_CELLS.format("aging_moves")))
        audited = await conn.fetch("SELECT actor, entity, after FROM audit_log"
                                   " WHERE action = 'ledger.rebuild' AND seq > $1 ORDER BY seq",
                                   before)
    assert [r["entity"] for r in audited] == ["kept:journal", "kept:aging"]
    assert all(r["actor"].startswith("cli:") for r in audited), audited
    await assert_kept_days_are_the_builders(seeded)
    await assert_totals_are_the_builders(seeded)

    status, _, err = await ledger_cli(database_url, "rebuild", "--kept", "ledger")
    assert status == 2 and "invalid choice" in err
