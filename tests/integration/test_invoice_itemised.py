"""The invoice PDF lists each call and session it bills when the account's setting says so
(`itemised_invoice`, through PATCH /v1/accounts/{id} or `billing-oss account set`), read
back with pdftotext."""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import asyncpg
import pikepdf
import pytest

from billing_oss.core.money import format_printed
from billing_oss.server.billing import issuing
from billing_oss.server.billing.bill_runs import bill_run
from billing_oss.server.billing.render import content, itemised, page, typst_pdf
from billing_oss.server.store import api_keys
from tests.integration import billing_seed, einvoice
from tests.integration.api_harness import Api, live_api

UTC = dt.UTC
CALLS = [  # (when, kind, called, duration s, bytes, micros)
    (dt.datetime(2026, 1, 5, 8, 30, 5, tzinfo=UTC), "voice", "33142001001", 65, 0, 123_456),
    (dt.datetime(2026, 1, 9, 22, 59, 0, tzinfo=UTC), "voice", "33142001002", 3725, 0, 1_500_000),
    (dt.datetime(2026, 1, 12, 12, 0, 0, tzinfo=UTC), "data", None, 0, 2_500_000, 20_000),
]


class Seeded:
    def __init__(self, api: Api, invoice_id: int, customer: str) -> None:
        self.api, self.invoice_id, self.customer = api, invoice_id, customer

    async def pdf_text(self) -> str:
        headers = {"Authorization": f"Bearer {self.customer}"}
        async with self.api.http.get(f"{self.api.url}/v1/invoices/{self.invoice_id}.pdf",
                                     headers=headers) as r:
            assert r.status == 200
            return _text(await r.read())


def _text(pdf: bytes) -> str:
    out = subprocess.run(["pdftotext", "-layout", "-", "-"], input=pdf, check=True,
                         capture_output=True).stdout.decode()
    return " ".join(out.split())


@pytest.fixture(scope="module")
async def seeded(pool: asyncpg.Pool, database_url: str) -> AsyncIterator[Seeded]:
    async with pool.acquire() as conn:
        await billing_seed.base(conn)
        await billing_seed.account(conn, "ITEM1", timezone="Europe/Paris")
        for when, kind, called, duration, volume, micros in CALLS:
            await billing_seed.charge(conn, "ITEM1", when, micros, kind=kind,
                                      duration_s=duration, volume=volume)
            await conn.execute("UPDATE usage_records SET called = $2, msisdn = '33612000000'"
                               " WHERE account_id = 'ITEM1' AND event_time = $1", when, called)
    run = await bill_run(pool, "2026-01", billing_seed.SETTINGS, accounts=["ITEM1"],
                         finalize=True, force=True, actor="test")
    (invoice_id,) = run.invoice_ids
    customer = (await api_keys.create(pool, "customer", account_id="ITEM1")).token
    async with live_api(pool, database_url) as api:
        yield Seeded(api, invoice_id, customer)


async def test_the_setting_adds_the_itemised_list(seeded: Seeded) -> None:
    plain = await seeded.pdf_text()
    assert "Itemised calls and sessions" not in plain and "33142001001" not in plain

    status, account = await seeded.api.call("PATCH", "/v1/accounts/ITEM1", "operator",
                                            json={"itemised_invoice": True})
    assert status == 200 and account["itemised_invoice"] is True
    text = await seeded.pdf_text()
    assert "Itemised calls and sessions" in text
    assert "3 records; times in Europe/Paris." in text
    # Paris is UTC+1 in January; durations as m:ss and h:mm:ss, data in human units,
    # amounts exact (0.123456 keeps its digits).
    assert "2026-01-05 09:30:05 Call 33142001001 1:05 national 0.123456" in text
    assert "2026-01-09 23:59:00 Call 33142001002 1:02:05 national 1.50" in text
    assert "2026-01-12 13:00:00 Data 33612000000 2.50 MB national 0.02" in text
    assert text.index("33142001001") < text.index("33142001002")

    status, account = await seeded.api.call("PATCH", "/v1/accounts/ITEM1", "operator",
                                            json={"itemised_invoice": False})
    assert status == 200 and account["itemised_invoice"] is False
    assert "Itemised calls and sessions" not in await seeded.pdf_text()
    status, problem = await seeded.api.call("PATCH", "/v1/accounts/ITEM1", "operator",
                                            json={"itemised_invoice": "yes"})
    assert status == 422 and problem["errors"][0]["path"] == "$.itemised_invoice"


async def test_a_long_list_is_cut_and_says_where_the_rest_is(
        seeded: Seeded, monkeypatch: pytest.MonkeyPatch) -> None:
    await seeded.api.call("PATCH", "/v1/accounts/ITEM1", "operator",
                          json={"itemised_invoice": True})
    monkeypatch.setattr(itemised, "MAX_ROWS", 2)
    text = await seeded.pdf_text()
    assert "The first 2 of 3 records" in text
    assert "33142001002" in text and "2026-01-12 13:00:00" not in text
    await seeded.api.call("PATCH", "/v1/accounts/ITEM1", "operator",
                          json={"itemised_invoice": False})


async def test_account_verb_sets_it_and_invoice_pdf_prints_it(
        seeded: Seeded, database_url: str, tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "billing_oss"]
    db = ["--database-url", database_url]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *args, *db], capture_output=True, text=True, timeout=120,
                              env=dict(os.environ))

    shown = run("account", "show", "ITEM1")
    assert shown.returncode == 0, shown.stderr
    assert "itemised invoice off" in shown.stdout
    changed = run("account", "set", "ITEM1", "--itemised-invoice", "on", "--json")
    assert changed.returncode == 0, changed.stderr
    assert '"itemised_invoice":true' in changed.stdout
    out = tmp_path / "invoice.pdf"
    printed = run("invoice", "pdf", str(seeded.invoice_id), "--output", str(out))
    assert printed.returncode == 0, printed.stderr
    assert "Itemised calls and sessions" in _text(out.read_bytes())
    missing = run("account", "set", "NOPE", "--itemised-invoice", "on")
    assert missing.returncode == 1 and "no account NOPE" in missing.stderr
    assert run("account", "set", "ITEM1", "--itemised-invoice", "off").returncode == 0


async def test_an_itemised_pdf_stays_pdf_a_3_and_factur_x(seeded: Seeded,
                                                          tmp_path: Path) -> None:
    """The list's monospaced font is embedded like the others (PDF/A); the XMP marks and
    the attached XML are those of any invoice."""
    status, _ = await seeded.api.call("PATCH", "/v1/accounts/ITEM1", "operator",
                                      json={"itemised_invoice": True})
    assert status == 200
    documents = {}
    for ext in ("pdf", "xml"):
        async with seeded.api.http.get(
                f"{seeded.api.url}/v1/invoices/{seeded.invoice_id}.{ext}",
                headers={"Authorization": f"Bearer {seeded.customer}"}) as r:
            assert r.status == 200
            documents[ext] = await r.read()
    pdf = tmp_path / "itemised.pdf"
    pdf.write_bytes(documents["pdf"])
    assert "Itemised calls and sessions" in _text(documents["pdf"])
    einvoice.assert_facturx_pdf(pdf, documents["xml"], tmp_path)
    fonts = _fonts(pdf)
    assert any("DejaVuSansMono" in f for f in fonts)
    assert all(f.split()[-5] == "yes" for f in fonts), fonts  # the "emb" column


def _fonts(pdf: Path) -> list[str]:
    """pdffonts' rows, one a font."""
    return subprocess.run(["pdffonts", str(pdf)], check=True, capture_output=True,
                          text=True).stdout.splitlines()[2:]


ODD_NUMBER = '(0)\\1 <script>alert("x")</script>'  # PDF string and HTML specials
RECORD = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (Call|Data) (.+) "
                    r"(\d[\d:.,]*(?: [kMGT]?B| bytes)?) national (\d[\d,]*\.\d+)$")


async def test_a_long_list_holds_every_billed_record_on_numbered_pages(
        pool: asyncpg.Pool, tmp_path: Path) -> None:
    """230 records over several pages: each page after the invoice's is headed by the
    invoice number and "page x/y" of the whole document; the usage appendix, a typst page
    of the plain invoice, opens the list's first page instead, its words and rows before
    the list's title; the records listed are those the invoice's usage lines bill, and the
    total line is their count and sum; a called number holding PDF string delimiters and
    markup prints as recorded."""
    start = dt.datetime(2026, 1, 2, tzinfo=UTC)
    async with pool.acquire() as conn:
        await billing_seed.account(conn, "ITEM2", timezone="UTC")
        for i in range(230):
            when = start + dt.timedelta(minutes=97 * i)
            await billing_seed.charge(conn, "ITEM2", when, 1_000 + 7_919 * i,
                                      kind="data" if i % 4 == 0 else "voice",
                                      duration_s=30 + i, volume=1_000 * i)
            await conn.execute("UPDATE usage_records SET called = $2, msisdn = '33612000000'"
                               " WHERE account_id = 'ITEM2' AND event_time = $1", when,
                               ODD_NUMBER if i == 7 else f"3314200{i:04d}")
        await conn.execute("UPDATE accounts SET itemised_invoice = true"
                           " WHERE account_id = 'ITEM2'")
    run = await bill_run(pool, "2026-01", billing_seed.SETTINGS, accounts=["ITEM2"],
                         finalize=True, force=True, actor="test")
    (invoice_id,) = run.invoice_ids
    async with pool.acquire() as conn:
        invoice = await issuing.load(conn, invoice_id)
        items = await itemised.load(conn, "ITEM2", invoice_id)
    pdf = tmp_path / "long.pdf"
    pdf.write_bytes(typst_pdf.render(invoice, items))
    plain = tmp_path / "plain.pdf"
    plain.write_bytes(typst_pdf.render(invoice))
    invoice_pages = _page_count(plain.read_bytes()) - 1  # less the appendix, its last page
    assert _page_text(plain, invoice_pages + 1).startswith(page.USAGE_TITLE)

    pages = _page_count(pdf.read_bytes())
    assert pages >= invoice_pages + 3
    for number in range(1, pages + 1):
        text = _page_text(pdf, number)
        listed = number > invoice_pages
        assert (f"{invoice.number_text} · itemised calls and sessions" in text) is listed
        assert (re.search(rf"page {number}/{pages}\s*$", text.splitlines()[0]) is not None) \
            is listed, (number, text[:200])

    assert all("usage breakdown" not in _page_text(pdf, p) for p in range(1, invoice_pages + 1))
    opening = [" ".join(line.split()) for line in
               _page_text(pdf, invoice_pages + 1).splitlines()]
    title = opening.index(page.USAGE_TITLE)
    listed = opening.index(itemised.TITLE)
    assert 0 < title < listed
    assert page.USAGE_TEXT in " ".join(opening[title + 1:listed])
    printed = {ln.line_no for ln in content.of_invoice(invoice).printed_lines}
    usage_rows = page.usage_rows(invoice.content, printed)
    assert len(usage_rows) == 2  # voice and data, national
    expected = ["Line Service / zone Records Usage Rated EUR",
                *(" ".join((u["no"], u["what"], u["records"], u["usage"], u["amount"]))
                  for u in usage_rows)]
    start = opening.index(expected[0])
    assert title < start and opening[start:start + 3] == expected

    lines = [" ".join(line.split()) for p in range(invoice_pages + 1, pages + 1)
             for line in _page_text(pdf, p).splitlines()]
    records = [m for m in map(RECORD.match, lines) if m]
    usage = [ln for ln in invoice.content.lines if ln.kind == "usage"]
    assert len(records) == sum(ln.charges for ln in usage) == 230
    assert [m[1] for m in records] == sorted(m[1] for m in records)
    assert sum(Decimal(m[5].replace(",", "")) for m in records) * 1_000_000 \
        == sum(ln.gross_micros for ln in usage)
    total = format_printed(sum(ln.gross_micros for ln in usage), "EUR")
    assert f"Total, 230 records {total}" in lines
    assert sum(1 for m in records if m[3] == ODD_NUMBER) == 1


def _page_count(pdf: bytes) -> int:
    with pikepdf.open(io.BytesIO(pdf)) as doc:
        return len(doc.pages)


def _page_text(pdf: Path, page: int) -> str:
    return subprocess.run(["pdftotext", "-layout", "-f", str(page), "-l", str(page), str(pdf),
                           "-"], check=True, capture_output=True, text=True).stdout.strip()
