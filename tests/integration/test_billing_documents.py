"""Finalisation (gapless numbers under concurrency and crashes) and credit notes."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal

import asyncpg
import pytest

from billing_oss.core.errors import Conflict, InvalidRequest
from billing_oss.server.billing import inputs_repo, issuing
from billing_oss.server.billing.bill_runs import bill_run
from billing_oss.server.billing.drafting import compute_batch
from billing_oss.server.billing.drafts_repo import drop_emptied_drafts, store_drafts
from billing_oss.server.billing.issuing import CreditRequest
from tests.conftest import wait_until
from tests.integration import billing_seed as seed

UTC = dt.UTC
TODAY = dt.date(2026, 2, 2)


async def drafts(pool: asyncpg.Pool, prefix: str, n: int) -> list[int]:
    async with pool.acquire() as conn:
        await seed.base(conn)
        for i in range(n):
            await seed.account(conn, f"{prefix}{i}")
            await seed.charge(conn, f"{prefix}{i}", dt.datetime(2026, 1, 7, tzinfo=UTC),
                              (i + 1) * 1_000_000)
    run = await bill_run(pool, "2026-01", seed.SETTINGS,
                         accounts=[f"{prefix}{i}" for i in range(n)], actor="test")
    return run.invoice_ids


async def numbers(pool: asyncpg.Pool, series: str) -> list[int]:
    rows = await pool.fetch("SELECT number FROM invoices WHERE series = $1 ORDER BY number", series)
    return [r["number"] for r in rows]


async def test_crash_while_finalising_leaves_no_gap(pool: asyncpg.Pool) -> None:
    ids = await drafts(pool, "CR", 3)
    holder = await pool.acquire()
    victim = await pool.acquire()
    try:
        await issuing.finalise(holder, ids[:1], "CRASH", TODAY, 30, actor="test")  # number 1
        tx = holder.transaction()
        await tx.start()
        await holder.execute("UPDATE document_series SET next_number = next_number "
                             "WHERE series = 'CRASH'")
        pid = victim.get_server_pid()
        task = asyncio.create_task(issuing.finalise(victim, ids[1:2], "CRASH", TODAY, 30,
                                                      actor="test"))

        async def waiting() -> bool:
            return bool(await pool.fetchval(
                "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid))

        await wait_until(waiting, within=10)  # inside the transaction, invoice row locked
        assert await pool.fetchval("SELECT pg_terminate_backend($1)", pid)
        with pytest.raises((asyncpg.PostgresError, ConnectionError, asyncpg.InterfaceError)):
            await task
        await tx.rollback()
    finally:
        await pool.release(holder)
        await pool.release(victim)
    row = await pool.fetchrow("SELECT status, number FROM invoices WHERE invoice_id = $1", ids[1])
    assert row["status"] == "draft" and row["number"] is None
    async with pool.acquire() as conn:
        await issuing.finalise(conn, ids[1:], "CRASH", TODAY, 30, actor="test")
    assert await numbers(pool, "CRASH") == [1, 2, 3]


async def test_concurrent_finalisers_with_crashes_number_without_gaps(pool: asyncpg.Pool) -> None:
    ids = await drafts(pool, "CC", 24)

    async def finalise_one(invoice_id: int, crash: bool) -> None:
        async with pool.acquire() as conn:
            if not crash:
                await issuing.finalise(conn, [invoice_id], "CONC", TODAY, 30, actor="test")
                return
            try:
                async with conn.transaction():
                    await issuing.take_numbers(conn, "CONC", 1)
                    await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
            except (asyncpg.PostgresError, ConnectionError, asyncpg.InterfaceError):
                pass  # the session died mid-transaction: its number must come back

    await asyncio.gather(*(finalise_one(i, n % 4 == 0) for n, i in enumerate(ids)))
    done = await numbers(pool, "CONC")
    assert done == list(range(1, len(done) + 1)) and len(done) == 18
    async with pool.acquire() as conn:
        await issuing.finalise(conn, ids, "CONC", TODAY, 30, actor="test")  # the crashed ones now
    assert await numbers(pool, "CONC") == list(range(1, 25))


async def test_credit_notes_never_exceed_the_invoice(pool: asyncpg.Pool) -> None:
    ids = await drafts(pool, "CN", 1)  # one line of 1.00 net, VAT 0.20
    async with pool.acquire() as conn:
        with pytest.raises(Conflict):  # a draft is recomputed, not credited
            await issuing.issue_credit_note(conn, ids[0], "x", None, "CN", TODAY, actor="test")
        await issuing.finalise(conn, ids, "CNI", TODAY, 30, actor="test")
        part = await issuing.issue_credit_note(
            conn, ids[0], "goodwill", [CreditRequest(line_no=1, amount=Decimal("0.40"))],
            "CN", TODAY, actor="test")
        assert (part.net_micros, part.tax_micros) == (400_000, 80_000)
        with pytest.raises(InvalidRequest):
            await issuing.issue_credit_note(
                conn, ids[0], "too much", [CreditRequest(line_no=1, amount=Decimal("0.61"))],
                "CN", TODAY, actor="test")
        rest = await issuing.issue_credit_note(conn, ids[0], "cancel", None, "CN", TODAY,
                                                 actor="test")
        assert (rest.net_micros, rest.tax_micros) == (600_000, 120_000)
        with pytest.raises(InvalidRequest):
            await issuing.issue_credit_note(conn, ids[0], "again", None, "CN", TODAY,
                                              actor="test")
        inv = await issuing.load(conn, ids[0])
    assert inv.credited_micros == inv.content.totals.total_micros
    assert [part.number_text, rest.number_text] == ["CN-000001", "CN-000002"]


async def credit(pool: asyncpg.Pool, invoice_id: int,
                 requests: list[CreditRequest] | None = None) -> issuing.CreditNote:
    async with pool.acquire() as conn:
        return await issuing.issue_credit_note(conn, invoice_id, "x", requests, "CN", TODAY,
                                                 actor="test")


async def test_a_full_credit_refunds_what_a_tax_inclusive_invoice_made_payable(
        pool: asyncpg.Pool) -> None:
    # 10.05 tax included has no net N with N + round(N × 20 %) = 10.05: net 8.38, VAT 1.68,
    # rounding −0.01 (BT-114), payable 10.05; the credit note takes the rounding along
    invoice_id = await seed.finalised_invoice(pool, "RND-FULL", fee=10_050_000,
                                              tax_inclusive=True)
    async with pool.acquire() as conn:
        totals = (await issuing.load(conn, invoice_id)).content.totals
    assert (totals.total_micros, totals.rounding_micros, totals.payable_micros) == (
        10_060_000, -10_000, 10_050_000)
    note = await credit(pool, invoice_id)
    assert (note.net_micros, note.tax_micros, note.total_micros) == (8_380_000, 1_680_000,
                                                                     10_060_000)
    assert (note.rounding_micros, note.payable_micros) == (-10_000, 10_050_000)
    async with pool.acquire() as conn:
        assert (await issuing.load_credit_note(conn, note.credit_note_id)) == note
        assert (await issuing.load(conn, invoice_id)).credited_micros == 10_050_000


@pytest.mark.parametrize("first", [Decimal("5.00"), None])
async def test_credit_notes_of_a_tax_inclusive_invoice_add_up_to_what_was_payable(
        pool: asyncpg.Pool, first: Decimal | None) -> None:
    # 5.00 net (VAT 1.00) then the rest: 3.38 + 0.68 − 0.01; or the whole line at once as a
    # partial credit, which completes the credit and so carries the rounding
    invoice_id = await seed.finalised_invoice(pool, f"RND-{first}", fee=10_050_000,
                                              tax_inclusive=True)
    part = await credit(pool, invoice_id, [CreditRequest(line_no=1, amount=first)])
    notes = [part] if first is None else [part, await credit(pool, invoice_id)]
    assert sum(n.payable_micros for n in notes) == 10_050_000
    if first is not None:
        assert (part.total_micros, part.rounding_micros) == (6_000_000, 0)
        assert (notes[1].net_micros, notes[1].tax_micros, notes[1].rounding_micros) == (
            3_380_000, 680_000, -10_000)
    with pytest.raises(InvalidRequest):
        await credit(pool, invoice_id)


def tax_of(note: issuing.CreditNote) -> list[tuple[int, int]]:
    return [(t["taxable"], t["tax"]) for t in note.taxes]


async def test_partial_credits_tax_what_they_credit_so_far(pool: asyncpg.Pool) -> None:
    # two lines of 0.03 at 20 %: taxable 0.06, VAT 0.012 → 0.01. Each note's tax is the tax
    # on everything credited so far less the tax already credited: 0.01, then 0.00
    invoice_id = await seed.finalised_invoice(pool, "PCT-3", charges=[("a", 30_000),
                                                                      ("b", 30_000)])
    first = await credit(pool, invoice_id, [CreditRequest(line_no=1)])
    second = await credit(pool, invoice_id, [CreditRequest(line_no=2)])
    assert (tax_of(first), tax_of(second)) == ([(30_000, 10_000)], [(30_000, 0)])
    with pytest.raises(InvalidRequest):  # nothing left, tax included
        await credit(pool, invoice_id)


async def test_partial_credits_add_up_to_the_invoice_tax(pool: asyncpg.Pool) -> None:
    # three notes of 0.02 (0.004 VAT each, 0.00 alone): the second brings the credits to
    # 0.04, whose tax is 0.01; the invoice's 0.01 is credited with its lines, never later
    # on a note without a taxable amount
    invoice_id = await seed.finalised_invoice(pool, "PCT-2", charges=[("a", 30_000),
                                                                      ("b", 30_000)])
    cent, two = Decimal("0.01"), Decimal("0.02")
    notes = [await credit(pool, invoice_id, req) for req in (
        [CreditRequest(1, two)], [CreditRequest(1, cent), CreditRequest(2, cent)],
        [CreditRequest(2, two)])]
    assert [tax_of(n) for n in notes] == [[(20_000, 0)], [(20_000, 10_000)], [(20_000, 0)]]
    with pytest.raises(InvalidRequest):
        await credit(pool, invoice_id)
    async with pool.acquire() as conn:
        invoice = await issuing.load(conn, invoice_id)
    assert invoice.credited_micros == invoice.content.totals.payable_micros == 70_000


async def test_concurrent_full_credits_issue_only_one(pool: asyncpg.Pool) -> None:
    ids = await drafts(pool, "CF", 1)
    async with pool.acquire() as conn:
        await issuing.finalise(conn, ids, "CFI", TODAY, 30, actor="test")

    async def credit() -> bool:
        async with pool.acquire() as conn:
            try:
                await issuing.issue_credit_note(conn, ids[0], "cancel", None, "CF", TODAY,
                                                  actor="test")
                return True
            except InvalidRequest:
                return False

    assert sorted(await asyncio.gather(*(credit() for _ in range(5)))) == [False] * 4 + [True]



async def test_a_draft_finalised_during_a_recomputation_keeps_its_lines(
    pool: asyncpg.Pool,
) -> None:
    """A finaliser arriving while a bill-run batch recomputes the draft waits for it, then
    numbers the recomputed draft: the invoice stays whole and nothing is billed twice."""
    (invoice_id,) = await drafts(pool, "RACE", 1)
    rates = await inputs_repo.tax_rates(pool)
    run_id = await pool.fetchval("SELECT bill_run_id FROM invoices WHERE invoice_id = $1",
                                 invoice_id)
    async with pool.acquire() as batch_conn:
        async with batch_conn.transaction():  # the steps of one bill-run batch
            batch, computed = await compute_batch(batch_conn, ["RACE0"], "2026-01",
                                                  seed.SETTINGS, rates, None)
            finalising = asyncio.create_task(_finalise_alone(pool, invoice_id))
            await asyncio.sleep(0.3)
            assert not finalising.done()  # waits for the batch's lock on the draft
            await drop_emptied_drafts(batch_conn, list(batch.accounts), "2026-01", computed)
            await store_drafts(batch_conn, computed, run_id)
    assert await finalising == [invoice_id]
    counts = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM invoice_lines WHERE invoice_id = $1) AS lines, "
        "(SELECT count(*) FROM taxes WHERE invoice_id = $1) AS taxes, "
        "(SELECT count(*) FROM invoice_line_charges WHERE invoice_id = $1) AS links, "
        "(SELECT count(*) FROM invoices WHERE account_id = 'RACE0') AS invoices", invoice_id)
    assert dict(counts) == {"lines": 1, "taxes": 1, "links": 1, "invoices": 1}


async def _finalise_alone(pool: asyncpg.Pool, invoice_id: int) -> list[int]:
    async with pool.acquire() as conn:
        return await issuing.finalise(conn, [invoice_id], "RACE", TODAY, 30, actor="test")
