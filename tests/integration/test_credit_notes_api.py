"""Credit notes as documents: JSON, EN 16931 CII XML (type 381, naming the invoice, positive
amounts; XSD and Schematron valid), PDF/A-3 + Factur-X whose printed totals are the stored
ones; partial and full credits (a full credit takes the invoice's discounts along); the
listing; the `billing-oss credit-note` verb."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.conftest import REPO
from tests.integration import billing_seed as seed
from tests.integration.api_harness import Api, live_api
from tests.integration.einvoice import NS, assert_facturx_pdf, assert_valid_cii, pdf_text, text

UTC = dt.UTC
SELLER = {f"billing.seller_{k}": v for k, v in seed.SELLER.items()}


@pytest.fixture(scope="module")
async def api(pool: asyncpg.Pool, database_url: str) -> AsyncIterator[Api]:
    async with pool.acquire() as conn:
        await seed.base(conn)
        await seed.product(conn, "pro", 29_990_000)
        await seed.account(conn, "CN-FR", address="2 rue Neuve", city="Lyon", postcode="69001")
        await seed.account(conn, "CN-DE", vat_id="DE999999999", country="DE")
        await seed.account(conn, "CN-INC", tax_inclusive=True)
        # 10.05 tax included: net 8.38 + VAT 1.68 = 10.06, rounding −0.01 (BT-114)
        await seed.product(conn, "odd", 10_050_000)
        await seed.account(conn, "CN-RND", tax_inclusive=True)
        await seed.subscribe(conn, "CN-RND", "odd", dt.datetime(2026, 1, 1, tzinfo=UTC))
        await conn.execute(
            "INSERT INTO discounts (code, account_id, kind, scope, percent, description) "
            "VALUES ('CN-LOYALTY', 'CN-FR', 'percentage', 'invoice', 10, 'Loyalty 10 %')")
        for acc in ("CN-FR", "CN-DE", "CN-INC"):
            await seed.subscribe(conn, acc, "pro", dt.datetime(2026, 1, 1, tzinfo=UTC))
            for i in range(5):
                await seed.charge(conn, acc, dt.datetime(2026, 1, 12, 9, i, tzinfo=UTC),
                                  412_345, duration_s=61)
            await seed.charge(conn, acc, dt.datetime(2026, 1, 13, tzinfo=UTC), 1_234_567,
                              kind="data", zone="", volume=5_000_000)
    async with live_api(pool, database_url, overrides=SELLER) as server:
        yield server


@pytest.fixture(scope="module")
async def invoices(api: Api) -> dict[str, dict[str, Any]]:
    """The cycle billed and finalised; the invoices by account."""
    status, run = await api.call("POST", "/v1/bill-runs", "operator", json={
        "period": "2026-01", "accounts": ["CN-DE", "CN-FR", "CN-INC", "CN-RND"], "finalize": True,
        "force": True})
    assert status == 202, run
    status, run = await api.call("GET", f"/v1/bill-runs/{run['bill_run_id']}",
                                 params={"wait": "20"})
    assert run["state"] == "done" and len(run["finalized"]) == 4, run
    out = {}
    for invoice_id in run["finalized"]:
        invoice = (await api.call("GET", f"/v1/invoices/{invoice_id}"))[1]
        out[invoice["account_id"]] = invoice
    return out


async def document(api: Api, path: str) -> bytes:
    async with api.http.get(api.url + path, headers=api.headers("viewer")) as r:
        assert r.status == 200, await r.text()
        return await r.read()


def micros(amount: str) -> int:
    return int(Decimal(amount) * 1_000_000)


async def check_documents(api: Api, note: dict[str, Any], invoice: dict[str, Any],
                          tmp_path: Path) -> Any:
    """The note's XML is a valid EN 16931 credit note naming the invoice, with positive
    amounts equal to the stored ones; its PDF prints them and carries that XML."""
    xml = await document(api, f"/v1/credit-notes/{note['credit_note_id']}.xml")
    root = assert_valid_cii(xml)
    assert text(root, "rsm:ExchangedDocument/ram:TypeCode") == "381"
    assert text(root, "rsm:ExchangedDocument/ram:ID") == note["number"]
    ref = ".//ram:ApplicableHeaderTradeSettlement/ram:InvoiceReferencedDocument"
    assert text(root, f"{ref}/ram:IssuerAssignedID") == invoice["number"]
    assert text(root, f"{ref}/ram:FormattedIssueDateTime/qdt:DateTimeString") == \
        invoice["issue_date"].replace("-", "")
    sums = ".//ram:SpecifiedTradeSettlementHeaderMonetarySummation"
    assert text(root, f"{sums}/ram:TaxBasisTotalAmount") == note["net"]
    assert text(root, f"{sums}/ram:TaxTotalAmount") == note["tax"]
    assert text(root, f"{sums}/ram:GrandTotalAmount") == note["total"]
    assert text(root, f"{sums}/ram:DuePayableAmount") == note["payable"]
    rounding = root.find(f"{sums}/ram:RoundingAmount", NS)
    assert (rounding.text if rounding is not None else "0.00") == note["rounding"]
    for amount in root.iterfind(f"{sums}/*", NS):  # the sign is in the type code; a
        if amount is not rounding:  # rounding amount only corrects the total
            assert Decimal(amount.text) >= 0, amount.tag
    lines = root.findall(".//ram:IncludedSupplyChainTradeLineItem", NS)
    assert [text(ln, ".//ram:LineTotalAmount") for ln in lines] == [
        ln["net"] for ln in note["lines"]]
    pdf = tmp_path / f"{note['number']}.pdf"
    pdf.write_bytes(await document(api, f"/v1/credit-notes/{note['credit_note_id']}.pdf"))
    printed = pdf_text(pdf)
    cur = note["currency"]
    assert "CREDIT NOTE" in printed and f"No. {note['number']}" in printed
    assert f"Credits invoice: {invoice['number']} of {invoice['issue_date']}" in printed
    credited = sum((Decimal(ln["net"]) for ln in note["lines"]), Decimal(0))
    assert f"Credited {credited:,f} {cur}" in printed  # the credited lines' sum
    assert f"Total net {note['net']} {cur}" in printed
    assert f"VAT {note['tax']} {cur}" in printed
    assert f"Amount credited {note['payable']} {cur}" in printed
    for ln in note["lines"]:
        assert f"(invoice line {ln['line_no']})" in printed
    assert_facturx_pdf(pdf, xml, tmp_path)
    return root


async def test_partial_then_full_credit_of_a_discounted_invoice(
        api: Api, invoices: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    invoice = invoices["CN-FR"]
    assert invoice["allowances"], invoice  # the 10 % invoice discount: a document allowance
    lines = {ln["line_no"]: ln for ln in invoice["lines"]}
    assert len(lines) >= 2
    status, part = await api.call("POST", "/v1/credit-notes", "operator", json={
        "invoice_id": invoice["invoice_id"], "reason": "Outage on 12 January",
        "lines": [{"line_no": 1, "amount": "0.50"}, {"line_no": 2}]})
    assert status == 201, part
    assert part["invoice_number"] == invoice["number"]
    assert [(ln["line_no"], ln["net"]) for ln in part["lines"]] == [
        (1, "0.50"), (2, lines[2]["net"])]
    assert micros(part["net"]) == micros("0.50") + micros(lines[2]["net"])
    assert (await api.call("GET", f"/v1/credit-notes/{part['credit_note_id']}", "viewer"))[1] \
        == part
    await check_documents(api, part, invoice, tmp_path)

    status, rest = await api.call("POST", "/v1/credit-notes", "operator", json={
        "invoice_id": invoice["invoice_id"], "reason": "Contract cancelled"})
    assert status == 201, rest
    root = await check_documents(api, rest, invoice, tmp_path)
    # The rest of the lines, less the invoice's discount: carried as a document allowance.
    sums = ".//ram:SpecifiedTradeSettlementHeaderMonetarySummation"
    line_total = micros(text(root, f"{sums}/ram:LineTotalAmount"))
    allowance = micros(text(root, f"{sums}/ram:AllowanceTotalAmount"))
    assert allowance == micros(invoice["totals"]["allowances"]) > 0
    assert line_total - allowance == micros(rest["net"])
    assert micros(part["total"]) + micros(rest["total"]) == micros(invoice["totals"]["total"])
    status, after = await api.call("GET", f"/v1/invoices/{invoice['invoice_id']}")
    assert after["credited"] == invoice["totals"]["total"]


@pytest.mark.parametrize("account", ["CN-DE", "CN-INC", "CN-RND"])
async def test_full_credit_of_reverse_charge_and_tax_inclusive_invoices(
        api: Api, invoices: dict[str, dict[str, Any]], account: str, tmp_path: Path) -> None:
    invoice = invoices[account]
    status, note = await api.call("POST", "/v1/credit-notes", "operator", json={
        "invoice_id": invoice["invoice_id"], "reason": "Cancelled"})
    assert status == 201, note
    assert note["total"] == invoice["totals"]["total"]
    # the invoice's rounding amount goes along: the note refunds what was payable
    assert (note["rounding"], note["payable"]) == (invoice["totals"]["rounding"],
                                                   invoice["totals"]["payable"])
    if account == "CN-RND":
        assert (note["total"], note["rounding"], note["payable"]) == ("10.06", "-0.01", "10.05")
        listed = (await api.call("GET", "/v1/credit-notes", "viewer",
                                 params={"invoice_id": str(invoice["invoice_id"])}))[1]
        assert [(n["total"], n["payable"]) for n in listed["items"]] == [("10.06", "10.05")]
    root = await check_documents(api, note, invoice, tmp_path)
    if invoice["reverse_charge"]:  # the credit note keeps the invoice's exemption reason
        assert text(root, ".//ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax"
                          "/ram:ExemptionReason") == invoice["taxes"][0]["exemption_reason"]


async def test_amounts_finer_than_the_currency_are_refused(
        api: Api, invoices: dict[str, dict[str, Any]]) -> None:
    invoice = invoices["CN-DE"]
    status, problem = await api.call("POST", "/v1/credit-notes", "operator", json={
        "invoice_id": invoice["invoice_id"], "reason": "x",
        "lines": [{"line_no": 1, "amount": "0.001"}]})
    assert status == 422, problem
    assert problem["errors"][0]["path"] == "$.lines[0].amount"
    assert "more decimals than EUR" in problem["errors"][0]["message"]


async def test_listing_and_missing_credit_notes(
        api: Api, invoices: dict[str, dict[str, Any]]) -> None:
    every = [n for page in await api.pages("/v1/credit-notes", {"limit": 1}) for n in page]
    assert len(every) >= 2
    assert [n["credit_note_id"] for n in every] == sorted(n["credit_note_id"] for n in every)
    fr = invoices["CN-FR"]
    status, mine = await api.call("GET", "/v1/credit-notes", "viewer",
                                  params={"invoice_id": str(fr["invoice_id"])})
    assert status == 200 and mine["items"]
    assert {n["invoice_number"] for n in mine["items"]} == {fr["number"]}
    assert {n["account_id"] for n in mine["items"]} == {"CN-FR"}
    status, by_account = await api.call("GET", "/v1/credit-notes", "viewer",
                                        params={"account_id": "CN-FR"})
    assert by_account["items"] == mine["items"]
    for suffix in ("", ".pdf", ".xml"):
        status, problem = await api.call("GET", f"/v1/credit-notes/999999{suffix}", "viewer")
        assert status == 404 and problem["code"] == "NOT_FOUND"


def cli(database_url: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "billing_oss", "credit-note", *args,
                           "--database-url", database_url], capture_output=True, cwd=REPO,
                          timeout=120)


async def test_credit_note_verb(api: Api, database_url: str, tmp_path: Path) -> None:
    every = [n for page in await api.pages("/v1/credit-notes", {"limit": 50}) for n in page]
    note_id = every[0]["credit_note_id"]
    out = tmp_path / "note.xml"
    done = await asyncio.to_thread(cli, database_url, "xml", str(note_id), "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == await document(api, f"/v1/credit-notes/{note_id}.xml")
    shown = await asyncio.to_thread(cli, database_url, "show", str(note_id))
    assert json.loads(shown.stdout) == (await api.call(
        "GET", f"/v1/credit-notes/{note_id}", "viewer"))[1]
    pdf = await asyncio.to_thread(cli, database_url, "pdf", str(note_id))
    assert pdf.returncode == 0 and pdf.stdout.startswith(b"%PDF-")
    missing = await asyncio.to_thread(cli, database_url, "show", "999999")
    assert missing.returncode == 1 and b"no credit note 999999" in missing.stderr
