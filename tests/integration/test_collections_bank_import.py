"""camt.053 / camt.054 imports against a real database: credits matched by RF reference or
invoice number become allocated payments, returns reverse the payment they undo, the rest
is kept with a reason per entry, and the same file twice changes nothing."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import time
from typing import Any

import asyncpg
import pytest

from billing_oss.core.errors import DecodeError
from billing_oss.server.collections import (
    bank_import,
    creditor_reference,
    payments,
    postings,
    repo,
)
from billing_oss.server.collections.model import NewPayment
from tests.generators.camt_files import Entry, document
from tests.integration import collections_seed as seed
from tests.integration.api_harness import Api, api  # noqa: F401
from tests.integration.test_api_collections import cli

D = dt.date(2026, 2, 1)


async def snapshot(pool: asyncpg.Pool) -> tuple[object, ...]:
    return tuple([await pool.fetchval(f"SELECT count(*) FROM {t}") for t in (
        "payments", "ledger_entries", "payment_allocations", "bank_entries", "outbox_events",
        "audit_log")])


async def test_credits_returns_and_reasons_then_a_replay_changes_nothing(
        pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await seed.account(conn, "B1")
        await seed.account(conn, "B2", currency="CHF")
        i1 = await seed.invoice(conn, "B1", 40_000_000, D)
        i2 = await seed.invoice(conn, "B1", 25_000_000, D)
        i3 = await seed.invoice(conn, "B2", 10_000_000, D, currency="CHF")
        n1, n2, n3 = [await conn.fetchval("SELECT number_text FROM invoices"
                                          " WHERE invoice_id = $1", i) for i in (i1, i2, i3)]
    debit, _ = await payments.record(pool, "test", NewPayment(
        account_id="B1", amount_micros=25_000_000, received_on=D, method="sepa_dd",
        reference="DD-E2E-7"))
    assert debit.allocations[0].invoice_id == i1
    doc = document([
        Entry(ref="E1", amount="15.00", rf=creditor_reference.for_invoice(n1)),
        Entry(ref="E2", amount="30.00", text=f"Invoice {n2} thank you"),  # 5.00 left over
        Entry(ref="E3", amount="9.00", rf=creditor_reference.for_invoice("ZZ-999999")),
        Entry(ref="E4", amount="9.00", text="no idea"),
        Entry(ref="E5", amount="10.00", currency="EUR", text=f"pays {n3}"),  # CHF account
        Entry(ref="E6", amount="7.00", credit=False, text="bank fees"),
        Entry(ref="E7", amount="25.00", credit=False, end_to_end="DD-E2E-7",
              return_reason="AM04"),
        Entry(ref="E8", amount="1x"),
        Entry(ref=None, amount="2.00", text=n1),
    ])
    result = await bank_import.import_file(pool, "test", io.BytesIO(doc), "stmt.xml")
    assert (result.transactions, result.imported, result.returned, result.unmatched,
            result.rejected, result.ignored, result.duplicates) == (9, 2, 1, 2, 3, 1, 0)
    reasons = {p.key: (p.status, p.reason) for p in result.problems}
    assert reasons["E3"][0] == "unmatched" and "names no invoice" in reasons["E3"][1]
    assert reasons["E4"][1] == "RmtInf: no RF creditor reference or invoice number found"
    assert reasons["E5"][0] == "rejected" and reasons["E5"][1].startswith("Amt/@Ccy: EUR")
    assert reasons["E8"][1].startswith("Amt: not a decimal amount")
    assert reasons[None][1].startswith("no AcctSvcrRef")
    assert result.amount_imported == {"EUR": "45"}

    reversed_ = await payments.get(pool, debit.payment_id)
    assert reversed_.reversed_micros == 25_000_000 and reversed_.allocations == ()
    open_now = await pool.fetch(
        "SELECT e.invoice_id, collections_item_open(e.account_id, e.entry_id) AS open"
        " FROM ledger_entries e WHERE e.account_id = 'B1' AND e.kind = 'invoice'"
        " ORDER BY e.invoice_id")
    # i1: 40 − 15 (E1) = 25, and the returned direct debit re-opened what it paid; the
    # 5.00 E2 paid over i2 is unapplied credit, consumed by what the return re-opened.
    assert [(r["invoice_id"], r["open"]) for r in open_now] == [(i1, 20_000_000), (i2, 0)]
    reasons_stored = await pool.fetch("SELECT entry_key, status, payment_id IS NOT NULL AS"
                                      " paid FROM bank_entries ORDER BY entry_key")
    assert [(r["entry_key"], r["status"], r["paid"]) for r in reasons_stored] == [
        ("E1", "imported", True), ("E2", "imported", True), ("E3", "unmatched", False),
        ("E4", "unmatched", False), ("E5", "rejected", False), ("E6", "ignored", False),
        ("E7", "returned", True), ("E8", "rejected", False)]

    # Bulk events are numbered like single ones: every stream 1..n without gaps, its head n.
    streams = await pool.fetch(
        "SELECT e.stream, array_agg(e.seq ORDER BY e.seq) AS seqs, h.seq AS head"
        " FROM outbox_events e JOIN outbox_heads h USING (stream) GROUP BY e.stream, h.seq")
    for s in streams:
        assert s["seqs"] == list(range(1, s["head"] + 1)), dict(s)
    b1 = await pool.fetch("SELECT type FROM outbox_events WHERE stream = 'acct:B1' ORDER BY seq")
    assert [t["type"] for t in b1] == ["payment.received"] * 3 + ["payment.reversed"]

    before = await snapshot(pool)
    again = await bank_import.import_file(pool, "test", io.BytesIO(doc), "stmt.xml")
    assert (again.duplicates, again.imported, again.unmatched) == (8, 0, 0)
    assert await snapshot(pool) == before
    # The copied payments and allocations, and the returns, kept the aging as the ledger has it.
    await seed.assert_kept_aging_is_the_ledgers(pool)


async def test_bad_files_over_http_and_cli(api: Api, pool: asyncpg.Pool,  # noqa: F811
                                           database_url: str, tmp_path: object) -> None:
    for body in (b"not xml at all", b"<Document><Other/></Document>"):
        status, problem = await api.call("POST", "/v1/bank-files", "operator", data=body,
                                         content_type="application/xml",
                                         params={"name": "bad.xml"})
        assert status == 422 and problem["detail"].startswith("bad.xml: not"), problem
    status, _ = await api.call("POST", "/v1/bank-files", "viewer", data=b"<x/>",
                               content_type="application/xml")
    assert status == 403
    async with pool.acquire() as conn:
        await seed.account(conn, "B3")
        i = await seed.invoice(conn, "B3", 8_000_000, D)
        number = await conn.fetchval("SELECT number_text FROM invoices WHERE invoice_id = $1",
                                     i)
    doc = document([Entry(ref="H1", amount="8", text=f"invoice {number}"),
                    Entry(ref="H2", amount="1", text="who knows")], "camt.054",
                   iban="DE89370400440532013000")
    status, result = await api.call("POST", "/v1/bank-files", "operator", data=doc,
                                    content_type="application/xml", params={"name": "n.xml"})
    assert status == 200 and (result["imported"], result["unmatched"]) == (1, 1), result
    pages = await api.pages("/v1/bank-entries", {"status": "unmatched", "limit": 1})
    keys = [e["entry_key"] for p in pages for e in p]
    assert "H2" in keys and "H1" not in keys
    path = tmp_path / "again.xml"  # type: ignore[operator]
    path.write_bytes(doc)
    run = await asyncio.to_thread(cli, ["payment", "import", str(path)], database_url)
    assert run.returncode == 0 and "2 duplicates" in run.stdout, (run.stdout, run.stderr)
    path.write_text("garbage")
    run = await asyncio.to_thread(cli, ["payment", "import", str(path)], database_url)
    assert run.returncode == 1 and "not XML" in run.stderr and "Traceback" not in run.stderr


async def test_a_batch_finds_its_invoices_by_index_probes_not_by_reading_every_one(
        pool: asyncpg.Pool) -> None:
    """A batch of 2,000 RF bodies over 20,000 invoices, before any statistics exist (the
    import runs right after billing): no invoice or ledger entry is read by a scan, so a
    batch costs what it names, not what the ledger holds."""
    async with pool.acquire() as conn:
        await conn.execute("INSERT INTO accounts (account_id) SELECT 'P' || g FROM"
                           " generate_series(1, 200) g")
        await postings.post_invoices(conn, await conn.fetch(
            "INSERT INTO invoices (account_id, period, period_start, period_end, currency,"
            " rounding_method, line_total_micros, allowance_micros, net_micros, tax_micros,"
            " total_micros, rounding_micros, payable_micros, seller, buyer, status, series,"
            " number, number_text, issue_date, due_date)"
            " SELECT 'P' || (g % 200 + 1), 'q' || g, now(), now(), 'EUR', 'half-up', 1000000,"
            " 0, 1000000, 0, 1000000, 0, 1000000, '{}', '{}', 'finalised', 'P', g,"
            " 'P-' || lpad(g::text, 6, '0'), '2026-01-01', '2026-01-15'"
            " FROM generate_series(1, 20000) g"
            " RETURNING account_id, invoice_id, number_text, currency, payable_micros,"
            " issue_date, due_date"))
        bodies = [f"P{g:06d}" for g in range(1, 2001)]
        plan = json.loads(await conn.fetchval(
            "EXPLAIN (FORMAT JSON) " + repo.INVOICES_BY_REFERENCE, [], bodies))
        found = await repo.invoices_by_reference(conn, [], bodies)
    assert len(found) == 2000 and all(r["entry_id"] is not None for r in found)
    scanned = {n.get("Relation Name") for n in _nodes(plan[0]["Plan"])
               if n["Node Type"] == "Seq Scan"}
    assert not scanned & {"invoices", "ledger_entries"}, scanned


def _nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(n for child in node.get("Plans", []) for n in _nodes(child))]


@pytest.mark.slow
async def test_a_statement_of_100000_entries_imports_in_20_seconds(pool: asyncpg.Pool) -> None:
    n = 100_000
    async with pool.acquire() as conn:
        await conn.execute("INSERT INTO accounts (account_id) SELECT 'S' || g FROM"
                           " generate_series(1, 1000) g")
        for k in range(n // 1000):  # 100 invoices per account
            for a in range(1, 1001, 250):
                await postings.post_invoices(conn, await conn.fetch(
                    "INSERT INTO invoices (account_id, period, period_start, period_end,"
                    " currency, rounding_method, line_total_micros, allowance_micros,"
                    " net_micros, tax_micros, total_micros, rounding_micros, payable_micros,"
                    " seller, buyer, status, series, number, number_text, issue_date, due_date)"
                    " SELECT 'S' || g, 'p' || $1::int, now(), now(), 'EUR', 'half-up', 10000000, 0,"
                    " 10000000, 0, 10000000, 0, 10000000, '{}', '{}', 'finalised', 'S',"
                    " $1::int * 1000 + g, 'S-' || lpad(($1::int * 1000 + g)::text, 6, '0'),"
                    " '2026-01-01', '2026-01-15' FROM generate_series($2::int, $2 + 249) g"
                    " RETURNING account_id, invoice_id, number_text, currency, payable_micros,"
                    " issue_date, due_date", k, a))
    doc = document(Entry(ref=f"R{i}", amount="10.00",
                         rf=creditor_reference.for_invoice(f"S-{i + 1:06d}"))
                   for i in range(n))
    started = time.perf_counter()
    result = await bank_import.import_file(pool, "test", io.BytesIO(doc), "big.xml")
    elapsed = time.perf_counter() - started
    print(f"camt.053 of {n} entries imported in {elapsed:.1f} s")
    assert result.imported == n, result.problems[:3]
    assert elapsed <= 20, elapsed
    again = await bank_import.import_file(pool, "test", io.BytesIO(doc), "big.xml")
    assert again.duplicates == n and again.imported == 0


async def test_not_camt_is_a_decode_error(pool: asyncpg.Pool) -> None:
    with pytest.raises(DecodeError):
        await bank_import.import_file(pool, "test", io.BytesIO(b"<a/>"), "a.xml")


async def test_a_credit_after_a_return_in_an_earlier_batch_is_dated_from_the_release(
        pool: asyncpg.Pool) -> None:
    """The invoices a batch names are looked up while the batch before it is written; the
    day an invoice owes from again (a return released what paid it) is read under the
    account's lock, so a credit booked before the return is allocated from the return on."""
    async with pool.acquire() as conn:
        await seed.account(conn, "B4")
        i = await seed.invoice(conn, "B4", 10_000_000, D)
        number = await conn.fetchval("SELECT number_text FROM invoices WHERE invoice_id = $1",
                                     i)
    await payments.record(pool, "test", NewPayment(
        account_id="B4", amount_micros=10_000_000, received_on=D, method="sepa_dd",
        reference="DD-E2E-B4"))
    doc = document([
        Entry(ref="R1", amount="10.00", credit=False, end_to_end="DD-E2E-B4",
              return_reason="MD06", booked="2026-02-20"),
        Entry(ref="R2", amount="4.00", text=f"invoice {number}", booked="2026-02-05"),
    ], iban="DE89370400440532013004")
    result = await bank_import.import_file(pool, "test", io.BytesIO(doc), "late.xml",
                                           batch_size=1)
    assert (result.returned, result.imported) == (1, 1), result.problems
    rows = await pool.fetch(
        "SELECT amount_micros, allocated_on FROM payment_allocations WHERE account_id = 'B4'"
        " ORDER BY allocation_id")
    assert [(r["amount_micros"], str(r["allocated_on"])) for r in rows] == [
        (10_000_000, "2026-02-01"), (-10_000_000, "2026-02-20"), (4_000_000, "2026-02-20")]
    await seed.assert_kept_aging_is_the_ledgers(pool, account_id="B4")


async def test_a_file_broken_after_its_first_batch_keeps_that_batch_and_names_the_entry(
        pool: asyncpg.Pool) -> None:
    """Batches are read ahead of the one being written: a file that breaks in its second
    batch raises after the first batch is stored whole, and nothing of the second is."""
    doc = document([Entry(ref=f"K{i}", amount="1.00", text="nothing") for i in range(5)],
                   iban="DE89370400440532013005")
    broken = doc[:doc.index(b"K3</AcctSvcrRef>") + 2]
    with pytest.raises(DecodeError, match="broken XML after entry 3"):
        await bank_import.import_file(pool, "test", io.BytesIO(broken), "cut.xml",
                                      batch_size=2)
    keys = await pool.fetch("SELECT entry_key FROM bank_entries"
                            " WHERE statement_account = 'DE89370400440532013005'"
                            " ORDER BY entry_key")
    assert [k["entry_key"] for k in keys] == ["K0", "K1"]
