"""The invoice as its customer reads it: the demo catalog's consumer, business and IoT
accounts, and a consumer whose prices include VAT, billed for March 2026 under the demo
configuration's seller, rendered, rasterised (pdftoppm) and read back (pdftotext): both
parties' addresses, quantities in their units with a unit price (or the tariff's), discounts
as rows that the totals agree with, no zero-value noise, the appendix in human units, the
period with its last day."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
from pathlib import Path

import asyncpg
import msgspec
import pytest

from billing_oss.core.records import UsageRecord
from billing_oss.server import config
from billing_oss.server.billing import issuing
from billing_oss.server.billing.bill_runs import bill_run
from billing_oss.server.billing.model import Settings
from billing_oss.server.billing.render import cii, typst_pdf
from billing_oss.server.composition import (
    decoders,
    rater_factory,
    read_catalog_file,
    validate_catalog,
)
from billing_oss.server.pipeline.pipeline import Pipeline
from billing_oss.server.store import catalog_repo
from tests.conftest import REPO
from tests.integration import billing_seed
from tests.integration.einvoice import assert_valid_cii, pdf_text

DAY = "2026-03-02T10:00:00Z"  # a Monday: 11:00 in Paris, the retail tariff's peak


def usage() -> list[UsageRecord]:
    def rec(key: str, kind: str, **fields: object) -> UsageRecord:
        return UsageRecord(record_key=key, source="demo", kind=kind, event_time=DAY,  # type: ignore[arg-type]
                           **fields)  # type: ignore[arg-type]

    return [
        rec("a1-call", "voice", calling="33611111111", called="33612345678", duration_s=95),
        rec("b1-call", "voice", calling="33140000000", called="4930123456", duration_s=600),
        rec("iot-data", "data", imsi="882360000000001", volume_up=300_000_000,
            volume_down=1_500_000_000),  # 1.80 GB
        rec("iot-readings", "event", msisdn="882360000000001", quantity="25000"),
    ]


@pytest.fixture(scope="module")
async def pages(pool: asyncpg.Pool, tmp_path_factory: pytest.TempPathFactory,
                ) -> dict[str, tuple[str, bytes, issuing.Invoice]]:
    """Account → (the PDF's text, its XML, the stored invoice); each page rasterised."""
    catalog = read_catalog_file(REPO / "config/demo-catalog.json")
    await catalog_repo.load_catalog(pool, catalog, billing=validate_catalog(catalog).billing)
    demo = config.load(env={})  # no file, no database URL: the demo configuration
    tmp = tmp_path_factory.mktemp("pages")
    path = tmp / "usage.jsonl"
    path.write_bytes(b"".join(msgspec.json.encode(r) + b"\n" for r in usage()))
    pipeline = Pipeline(pool, demo.pipeline, rater_factory=rater_factory(), decoders=decoders())
    assert (await pipeline.ingest_file(path, source="demo", format="jsonl")).counts.charged == 4
    async with pool.acquire() as conn:  # a consumer whose prices include VAT
        await billing_seed.account(conn, "C1", tax_inclusive=True, address="4 place du Marché",
                                   postcode="33000", city="Bordeaux")
        await billing_seed.subscribe(conn, "C1", "mobile-s",
                                     dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    settings = Settings(seller=demo.billing.seller(), rounding=demo.billing.rounding)
    run = await bill_run(pool, "2026-03", settings, accounts=["A1", "B1", "C1", "IOT1"],
                         finalize=True, force=True, actor="test")
    async with pool.acquire() as conn:
        invoices = [await issuing.load(conn, i) for i in run.invoice_ids]
    return {invoice.account_id: read(invoice, tmp) for invoice in invoices}


def read(invoice: issuing.Invoice, tmp: Path) -> tuple[str, bytes, issuing.Invoice]:
    """The invoice rendered, each page rasterised (pdftoppm), its text read back."""
    pdf = tmp / f"{invoice.account_id}.pdf"
    pdf.write_bytes(typst_pdf.render(invoice))
    subprocess.run(["pdftoppm", "-png", "-r", "80", str(pdf), str(tmp / invoice.account_id)],
                   check=True)
    pngs = sorted(tmp.glob(f"{invoice.account_id}-*.png"))
    assert pngs and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    return pdf_text(pdf), cii.to_xml(invoice), invoice


def test_both_parties_print_in_full(pages: dict[str, tuple[str, bytes, issuing.Invoice]]) -> None:
    for account, address in (("A1", "Alice Martin Account A1 12 rue des Lilas 69003 Lyon FR"),
                             ("B1", "Account B1 Hafenweg 20 20457 Hamburg DE VAT DE123456789"),
                             ("IOT1", "3 quai des Usines 44000 Nantes FR VAT FR40123456824")):
        text = pages[account][0]
        assert address in text, account
        for seller in ("Demo Telecom SAS", "10 avenue de l'Exemple", "75011 Paris",
                       "VAT FR44732829320"):
            assert seller in text
        assert "bank transfer to FR7630006000011234567890189" in text
        assert "Period: 1 March – 31 March 2026" in text


def test_quantities_print_in_their_unit_with_the_price_that_made_the_amount(
        pages: dict[str, tuple[str, bytes, issuing.Invoice]]) -> None:
    a1, b1, iot = (pages[a][0] for a in ("A1", "B1", "IOT1"))
    # 95 s at peak on the retail tariff: its prices beside the minutes rated
    assert "1.58 min S 20 % 0.36" in a1
    assert "Tariff: 0.10 per call + 0.20/min, then 0.10/min from 1 min, min. 0.15" in a1
    # 10 min at 0.04/min is 0.40: the business tariff's price times the quantity
    assert "Voice — eu 10.00 min 0.10/min AE 0 % 1.00" in b1
    assert "Mobile S 1 month 9.99 S 20 % 9.99" in a1
    # 1,800 MB, 50 included: 1,000 MB at 0.02 and 750 MB at 0.01; 24,000 readings beyond the
    # included 1,000 start 3 packages of 10,000 at 1.00
    assert "1,800 MB used, 50 included: 1,000 MB at 0.02, 750 MB at 0.01" in iot
    assert "IoT Connect: data (graduated) 1,750 MB S 20 % 27.50" in iot
    assert "3 packages (10,000 messages) 1.00 S 20 % 3.00" in iot
    for text in (a1, b1, iot):
        assert not re.search(r"\d\.\d{5,}", text), "an average price with a long tail"


def test_discounts_are_rows_the_totals_agree_with(
        pages: dict[str, tuple[str, bytes, issuing.Invoice]]) -> None:
    a1, b1 = pages["A1"][0], pages["B1"][0]
    welcome = "Discount: Welcome offer: 10 % off the monthly plan S 20 %"
    assert f"{welcome} -1.00" in a1 and "Discounts -1.00 EUR" in a1
    assert "(discount" not in a1
    assert "Business Pro 1 month 29.00 AE 0 % 29.00" in b1
    assert "Discounts -2.90 EUR" in b1
    # charges less discounts is the net the VAT summary taxes
    assert "Charges 10.35 EUR Discounts -1.00 EUR Total net 9.35 EUR" in a1
    # prices including VAT: the rows print gross, and so do the sums they make
    c1 = pages["C1"][0]
    assert "Mobile S 1 month 9.99 S 20 % 9.99" in c1 and f"{welcome} -1.00" in c1
    assert ("Charges (VAT incl.) 9.99 EUR Discounts (VAT incl.) -1.00 EUR "
            "Lines (VAT incl.) 8.99 EUR Total net 7.49 EUR VAT 1.50 EUR Total 8.99 EUR") in c1
    assert "Customer C1 Account C1 4 place du Marché 33000 Bordeaux FR" in c1


def test_zero_value_lines_are_left_out_and_their_usage_is_in_the_appendix(
        pages: dict[str, tuple[str, bytes, issuing.Invoice]]) -> None:
    text, xml, invoice = pages["IOT1"]
    rated = [ln for ln in invoice.content.lines if ln.kind == "usage" and ln.charges]
    assert rated and all(ln.net_micros == 0 for ln in rated)  # the IoT tariff counts, at 0
    assert " 0.00 S 20 % 0.00" not in text
    root = assert_valid_cii(xml)
    printed = root.findall(".//{*}IncludedSupplyChainTradeLineItem")
    assert len(printed) == len(invoice.content.lines) - len(rated)
    data_line = next(ln.line_no for ln in invoice.content.lines
                     if ln.service == "data" and ln.subscription_id is not None)
    assert f"{data_line} Data 1 1.80 GB 0.00" in text
    assert "Event 1 25,000 events 0.00" in text
    assert "bytes" not in text


def test_the_e_invoice_states_each_quantity_in_the_unit_the_page_prints(
        pages: dict[str, tuple[str, bytes, issuing.Invoice]]) -> None:
    def quantities(account: str) -> list[tuple[str, str | None, str | None]]:
        root = assert_valid_cii(pages[account][1])
        return [(q.text or "", q.get("unitCode"), item.findtext(".//{*}LineTotalAmount"))
                for item in root.iterfind(".//{*}IncludedSupplyChainTradeLineItem")
                for q in item.iterfind(".//{*}BilledQuantity")]

    assert quantities("A1") == [("1.58", "MIN", "0.36"), ("1", "MON", "8.99")]
    assert quantities("IOT1") == [("1750", "4L", "27.50"), ("24000", "C62", "3.00"),
                                  ("1", "MON", "4.05")]


def test_the_e_invoices_stay_valid_with_the_local_period(
        pages: dict[str, tuple[str, bytes, issuing.Invoice]]) -> None:
    for _, xml, _ in pages.values():
        root = assert_valid_cii(xml)
        dates = [e.text for e in root.iterfind(
            ".//{*}BillingSpecifiedPeriod/*/{*}DateTimeString")]
        assert dates == ["20260301", "20260331"]
