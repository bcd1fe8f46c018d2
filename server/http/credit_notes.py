"""`/v1/credit-notes`: credit a finalised invoice in full or in part; credit notes as JSON,
as PDF/A-3 with their Factur-X XML, and as EN 16931 XML (type 381, naming the invoice)."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal
from typing import Annotated

import msgspec
from aiohttp import web

from billing_oss.core.money import format_minor
from billing_oss.server.billing import documents_repo, issuing, views
from billing_oss.server.billing.issuing import CreditNote, CreditRequest, Invoice
from billing_oss.server.billing.render import cii, typst_pdf
from billing_oss.server.http.auth import actor
from billing_oss.server.http.keys import CONFIG, POOL
from billing_oss.server.http.pagination import Cursor, Limit, decode_cursor, page
from billing_oss.server.http.routing import Api, reply
from billing_oss.server.http.scope import narrowed, own, unseen
from billing_oss.server.http.types import Id, IntId, Reason
from billing_oss.server.http.validation import decode_body, decode_path, decode_query

READ = ("viewer", "customer")  # a customer key: its own account's only
LineNo = Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]
# A net amount to credit in the invoice's currency: positive, at most 6 decimals (and no
# more than the currency's minor unit has: checked against the invoice).
CreditAmount = Annotated[str, msgspec.Meta(pattern="^[0-9]{1,12}(\\.[0-9]{1,6})?$",
                                           examples=["12.50"])]


class CreditLineRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    line_no: LineNo
    amount: CreditAmount | None = None  # None: what is left of the line


class CreditNoteRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    invoice_id: IntId
    reason: Reason
    # None: credit everything left
    lines: Annotated[list[CreditLineRequest], msgspec.Meta(min_length=1,
                                                           max_length=1000)] | None = None


class CreditNoteQuery(msgspec.Struct, frozen=True, kw_only=True):
    account_id: Id | None = None
    invoice_id: IntId | None = None
    limit: Limit = 50
    cursor: Cursor | None = None


class CreditNotePath(msgspec.Struct, frozen=True):
    credit_note_id: IntId


class CreditNoteSummary(msgspec.Struct):
    credit_note_id: int
    account_id: str
    invoice_id: int
    invoice_number: str
    number: str
    issue_date: dt.date
    currency: str
    total: str  # net + tax credited, to the currency's minor unit
    payable: str  # what it refunds: total + its share of the invoice's rounding amount


class CreditNotePage(msgspec.Struct):
    items: list[CreditNoteSummary]
    next_cursor: str | None


async def create_credit_note(request: web.Request) -> web.Response:
    body = await decode_body(request, CreditNoteRequest)
    config = request.app[CONFIG]
    lines = None if body.lines is None else [
        CreditRequest(ln.line_no, None if ln.amount is None else Decimal(ln.amount))
        for ln in body.lines]
    async with request.app[POOL].acquire() as conn:
        note = await issuing.issue_credit_note(conn, body.invoice_id, body.reason.strip(),
                                                 lines, config.billing.credit_note_series,
                                                 dt.date.today(), actor=actor(request))
    return reply(views.credit_note_view(note), status=201,
                 headers={"Location": f"/v1/credit-notes/{note.credit_note_id}"})


async def list_credit_notes(request: web.Request) -> web.Response:
    q = decode_query(request, CreditNoteQuery)
    after = decode_cursor(q.cursor, tuple[IntId])
    rows = await documents_repo.credit_note_page(
        request.app[POOL], account_id=narrowed(request, q.account_id), invoice_id=q.invoice_id,
        after=after[0] if after else None, limit=q.limit + 1)
    items, next_cursor = page(rows, q.limit, lambda r: (r["credit_note_id"],))
    return reply(CreditNotePage(items=[CreditNoteSummary(
        credit_note_id=r["credit_note_id"], account_id=r["account_id"],
        invoice_id=r["invoice_id"], invoice_number=r["invoice_number"],
        number=r["number_text"], issue_date=r["issue_date"], currency=r["currency"].strip(),
        total=format_minor(r["total_micros"], r["currency"].strip()),
        payable=format_minor(r["total_micros"] + r["rounding_micros"], r["currency"].strip()))
        for r in items],
        next_cursor=next_cursor))


async def _load(request: web.Request) -> tuple[CreditNote, Invoice]:
    credit_note_id = decode_path(request, CreditNotePath).credit_note_id
    async with request.app[POOL].acquire() as conn:
        with unseen(request, f"credit note {credit_note_id}"):
            note = await issuing.load_credit_note(conn, credit_note_id)
        own(request, note.account_id, f"credit note {credit_note_id}")
        return note, await issuing.load(conn, note.invoice_id)


async def get_credit_note(request: web.Request) -> web.Response:
    credit_note_id = decode_path(request, CreditNotePath).credit_note_id
    async with request.app[POOL].acquire() as conn:
        with unseen(request, f"credit note {credit_note_id}"):
            note = await issuing.load_credit_note(conn, credit_note_id)
    own(request, note.account_id, f"credit note {credit_note_id}")
    return reply(views.credit_note_view(note))


async def get_credit_note_pdf(request: web.Request) -> web.Response:
    note, invoice = await _load(request)
    pdf = await asyncio.to_thread(typst_pdf.render_credit_note, note, invoice)  # CPU-bound
    return web.Response(body=pdf, content_type="application/pdf")


async def get_credit_note_xml(request: web.Request) -> web.Response:
    note, invoice = await _load(request)
    return web.Response(body=cii.credit_note_xml(note, invoice), content_type="application/xml")


def register(api: Api) -> None:
    tag = "invoicing"
    api.add("POST", "/v1/credit-notes", create_credit_note, tag=tag,
            request=CreditNoteRequest, response=views.CreditNoteView, status=201,
            roles=("operator",), errors=(404, 409),
            summary="Credit a finalised invoice in full or in part (never beyond its total)")
    api.add("GET", "/v1/credit-notes", list_credit_notes, tag=tag, query=CreditNoteQuery,
            response=CreditNotePage, roles=READ,
            summary="List credit notes (cursor pagination)")
    path = r"/v1/credit-notes/{credit_note_id:\d+}"
    api.add("GET", path, get_credit_note, tag=tag, params=CreditNotePath,
            response=views.CreditNoteView, roles=READ, summary="One credit note")
    api.add("GET", path + ".pdf", get_credit_note_pdf, tag=tag, params=CreditNotePath,
            response=bytes, content_type="application/pdf", roles=READ,
            summary="The credit note as PDF/A-3 with its Factur-X XML attached")
    api.add("GET", path + ".xml", get_credit_note_xml, tag=tag, params=CreditNotePath,
            response=bytes, content_type="application/xml", roles=READ,
            summary="The credit note as EN 16931 e-invoice (CII type 381, naming the invoice)")
