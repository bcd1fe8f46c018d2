"""The account statement as a PDF (`GET /v1/statements.pdf`, `statement -o x.pdf`): a
PDF/A-3b document typeset by typst like the invoices, titled with the account and period,
and a 404 for an unknown account."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
from pathlib import Path

import asyncpg
import pikepdf

from billing_oss.server.collections import payments
from billing_oss.server.collections.model import NewPayment
from tests.integration import collections_seed as seed
from tests.integration.api_harness import Api, api  # noqa: F401
from tests.integration.test_api_collections import cli

D = dt.date(2026, 2, 1)


def pdf_facts(pdf: bytes) -> tuple[str, str, int]:
    """(title, PDF/A part, pages) of a PDF."""
    with pikepdf.open(io.BytesIO(pdf)) as doc:
        meta = doc.open_metadata()
        return str(doc.docinfo.get("/Title")), str(meta.get("pdfaid:part")), len(doc.pages)


async def test_statement_pdf_route_and_verb(api: Api, pool: asyncpg.Pool,  # noqa: F811
                                            database_url: str, tmp_path: Path) -> None:
    async with pool.acquire() as conn:
        await seed.account(conn, "SP1")
        await seed.invoice(conn, "SP1", 30_000_000, D)
    await payments.record(pool, "test", NewPayment(account_id="SP1", amount_micros=12_500_000,
                                                   received_on=D, method="transfer"))
    query = {"account_id": "SP1", "from": "2026-01-01", "to": "2026-03-31"}
    async with api.http.get(api.url + "/v1/statements.pdf", params=query,
                            headers=api.headers("viewer")) as r:
        assert r.status == 200 and r.content_type == "application/pdf"
        pdf = await r.read()
    assert pdf.startswith(b"%PDF")
    assert pdf_facts(pdf) == ("Statement of account SP1, 2026-01-01 to 2026-03-31", "3", 1)
    status, problem = await api.call("GET", "/v1/statements.pdf", "viewer",
                                     params={**query, "account_id": "NOPE"})
    assert status == 404, problem

    out = tmp_path / "st.pdf"
    run = await asyncio.to_thread(cli, ["statement", "--account", "SP1", "--from",
                                        "2026-01-01", "--to", "2026-03-31", "-o", str(out)],
                                  database_url)
    assert run.returncode == 0, run.stderr
    assert pdf_facts(out.read_bytes())[0] == "Statement of account SP1, 2026-01-01 to 2026-03-31"
