"""The invoicing HTTP API end to end: bill run, finalise, credit note, JSON, PDF, XML; the
PDF is PDF/A-3 + Factur-X (XMP, attachment equal to the XML resource, EN 16931 valid)."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.integration import billing_seed as seed
from tests.integration.api_harness import live_api
from tests.integration.einvoice import assert_facturx_pdf, assert_valid_cii, pdf_text, text

UTC = dt.UTC
# EN 16931 needs the seller's VAT id (BR-CO-26, BR-AE-02): the configuration gives it.
SELLER = {f"billing.seller_{k}": v for k, v in seed.SELLER.items()}


@pytest.fixture(scope="module")
async def api(pool: asyncpg.Pool, database_url: str,
              ) -> AsyncIterator[tuple[str, dict[str, str], dict[str, str]]]:
    async with pool.acquire() as conn:
        await seed.base(conn)
        await seed.product(conn, "pro", 29_990_000)
        await seed.account(conn, "W1", address="5 Main St", vat_id="DE999999999",
                           country="DE")
        # a control character in operator-entered text: XML 1.0 cannot carry it
        await seed.account(conn, "W2", tax_inclusive=True, address="2 Side\x0bStreet")
        for acc in ("W1", "W2"):
            await seed.subscribe(conn, acc, "pro", dt.datetime(2026, 1, 10, tzinfo=UTC))
            for i in range(7):
                await seed.charge(conn, acc, dt.datetime(2026, 1, 12, 9, i, tzinfo=UTC),
                                  333_333, duration_s=61)
            await seed.charge(conn, acc, dt.datetime(2026, 1, 13, tzinfo=UTC), 1_234_567,
                              kind="data", zone="", volume=5_000_000)
    async with live_api(pool, database_url, overrides=SELLER) as server:
        yield server.url, server.headers("operator"), server.headers("viewer")


def check_pdf(pdf: Path, inv: dict[str, Any], xml: bytes, tmp_path: Path) -> None:
    """The printed totals are the stored ones; the page rasterises; Factur-X: the XMP marks
    and the attached XML, the XML resource's bytes."""
    printed = pdf_text(pdf)
    cur = inv["currency"]
    assert f"Amount due {inv['totals']['payable']} {cur}" in printed
    assert f"VAT {inv['totals']['tax']} {cur}" in printed
    assert inv["number"] in printed and "usage breakdown" in printed
    # the fee prorated for 22 of January's 31 days: that share of a month at the monthly fee
    assert "Plan pro (22/31 days) 22/31 month 29.99 " in printed
    assert not re.search(r"\d\.\d{7,}", printed), "a quantity printed with a long tail"
    assert b">0.7097</ram:BilledQuantity>" in xml
    subprocess.run(["pdftoppm", "-png", "-r", "50", "-f", "1", "-l", "1", str(pdf),
                    str(tmp_path / "page")], check=True)
    png = next(tmp_path.glob("page*.png"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    png.unlink()
    assert_facturx_pdf(pdf, xml, tmp_path)


async def test_bill_run_finalise_render_and_credit(
    api: tuple[str, dict[str, str], dict[str, str]], tmp_path: Path,
) -> None:
    base, operator, viewer = api
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/v1/bill-runs", json={"period": "2026-01"},
                             headers=viewer) as r:
            assert r.status == 403
        async with http.post(f"{base}/v1/bill-runs", headers=operator,
                             json={"period": "2026-01", "dry_run": True}) as r:
            assert r.status == 201, await r.text()
            preview = await r.json()
        assert preview["dry_run"] and len(preview["previews"]) == 2
        async with http.post(f"{base}/v1/bill-runs", headers=operator,
                             json={"period": "2026-01"}) as r:
            assert r.status == 202, await r.text()
            location = r.headers["Location"]
        async with http.get(f"{base}{location}?wait=20", headers=viewer) as r:
            run = await r.json()
        assert run["state"] == "done" and run["invoices"] == 2 and run["charges"] == 16
        ids = run["invoice_ids"]
        async with http.get(f"{base}/v1/invoices?limit=1", headers=viewer) as r:
            page = await r.json()
        assert [i["invoice_id"] for i in page["items"]] == ids[:1] and page["next_cursor"]
        async with http.get(f"{base}/v1/invoices", headers=viewer,
                            params={"limit": "1", "cursor": page["next_cursor"]}) as r:
            page = await r.json()
        assert [i["invoice_id"] for i in page["items"]] == ids[1:2]
        invoices = {}
        for invoice_id in ids:
            async with http.post(f"{base}/v1/invoices/{invoice_id}/finalize",
                                 headers=operator) as r:
                assert r.status == 200, await r.text()
                inv = await r.json()
            invoices[inv["account_id"]] = inv
            assert re.fullmatch(r"INV-\d{6}", inv["number"])
            # the preview matched what was stored
            same = [p for p in preview["previews"] if p["account_id"] == inv["account_id"]]
            assert same[0]["totals"] == inv["totals"]
        w1, w2 = invoices["W1"], invoices["W2"]
        assert w1["reverse_charge"] and w1["totals"]["tax"] == "0.00"
        assert w2["tax_inclusive"] and w2["taxes"][0]["rate"] == "20.0000"
        gross = sum(int(ln["inclusive"].replace(".", "")) for ln in w2["lines"])
        assert int(w2["totals"]["payable"].replace(".", "")) == gross

        for inv in invoices.values():
            async with http.get(f"{base}/v1/invoices/{inv['invoice_id']}.xml",
                                headers=viewer) as r:
                xml = await r.read()
            root = assert_valid_cii(xml)
            if inv["account_id"] == "W2":
                assert b"<ram:LineOne>2 Side Street</ram:LineOne>" in xml
            assert text(root, ".//ram:DuePayableAmount") == inv["totals"]["payable"]
            assert text(root, "rsm:ExchangedDocument/ram:TypeCode") == "380"
            async with http.get(f"{base}/v1/invoices/{inv['invoice_id']}.pdf",
                                headers=viewer) as r:
                pdf = tmp_path / f"{inv['invoice_id']}.pdf"
                pdf.write_bytes(await r.read())
            check_pdf(pdf, inv, xml, tmp_path)

        async with http.post(f"{base}/v1/credit-notes", headers=operator, json={
                "invoice_id": w1["invoice_id"], "reason": "goodwill",
                "lines": [{"line_no": 1, "amount": "0.50"}]}) as r:
            assert r.status == 201, await r.text()
            note = await r.json()
        assert note["total"] == "0.50" and note["number"] == "CN-000001"
        async with http.post(f"{base}/v1/credit-notes", headers=operator, json={
                "invoice_id": w1["invoice_id"], "reason": "too much",
                "lines": [{"line_no": 1, "amount": "1000.00"}]}) as r:
            assert r.status == 422
            assert (await r.json())["code"] == "VALIDATION"
        async with http.get(f"{base}/v1/invoices/999999", headers=viewer) as r:
            assert r.status == 404
