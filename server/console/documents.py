"""Invoices and credit notes: lists paged by cursor, a document's lines and totals, and its
PDF inline (rendered by the same function as the API's)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from billing_oss.server.billing import issuing
from billing_oss.server.billing.render import typst_pdf
from billing_oss.server.console import repo
from billing_oss.server.console.web import pool, render
from billing_oss.server.http import invoices as invoices_api
from billing_oss.server.http.pagination import decode_cursor, encode_cursor

PAGE = 50


async def list_invoices(request: web.Request) -> web.Response:
    account = request.query.get("account_id", "").strip()[:200] or None
    after = decode_cursor(request.query.get("cursor"), tuple[int])
    rows = await repo.invoices(pool(request), account, after[0] if after else None, PAGE)
    notes_after = decode_cursor(request.query.get("notes_cursor"), tuple[int])
    notes = await repo.credit_notes(pool(request), account,
                                    notes_after[0] if notes_after else None, PAGE)
    return render(request, "invoices.html", {
        "rows": rows[:PAGE], "account_id": account or "",
        "next_cursor": encode_cursor((rows[PAGE - 1]["invoice_id"],))
        if len(rows) > PAGE else None,
        "notes": notes[:PAGE],
        "notes_next": encode_cursor((notes[PAGE - 1]["credit_note_id"],))
        if len(notes) > PAGE else None})


async def invoice(request: web.Request) -> web.Response:
    invoice_id = _id(request, "invoice_id")
    async with pool(request).acquire() as conn:
        document = await issuing.load(conn, invoice_id)
    return render(request, "invoice.html", {"invoice": document, "c": document.content})


async def invoice_pdf(request: web.Request) -> web.Response:
    invoice_id = _id(request, "invoice_id")
    pdf = await invoices_api.invoice_pdf(pool(request), invoice_id)
    return _pdf(pdf, f"invoice-{invoice_id}.pdf")


async def credit_note(request: web.Request) -> web.Response:
    note_id = _id(request, "credit_note_id")
    async with pool(request).acquire() as conn:
        note = await issuing.load_credit_note(conn, note_id)
    return render(request, "credit_note.html", {"note": note})


async def credit_note_pdf(request: web.Request) -> web.Response:
    note_id = _id(request, "credit_note_id")
    async with pool(request).acquire() as conn:
        note = await issuing.load_credit_note(conn, note_id)
        document = await issuing.load(conn, note.invoice_id)
    pdf = await asyncio.to_thread(typst_pdf.render_credit_note, note, document)  # CPU-bound
    return _pdf(pdf, f"credit-note-{note_id}.pdf")


def _pdf(body: bytes, name: str) -> web.Response:
    return web.Response(body=body, content_type="application/pdf",
                        headers={"Content-Disposition": f'inline; filename="{name}"'})


def _id(request: web.Request, name: str) -> int:
    return int(request.match_info[name])


def register(app: web.Application) -> None:
    app.router.add_get("/invoices", list_invoices)
    app.router.add_get(r"/invoices/{invoice_id:\d{1,18}}", invoice)
    app.router.add_get(r"/invoices/{invoice_id:\d{1,18}}.pdf", invoice_pdf)
    app.router.add_get(r"/credit-notes/{credit_note_id:\d{1,18}}", credit_note)
    app.router.add_get(r"/credit-notes/{credit_note_id:\d{1,18}}.pdf", credit_note_pdf)
