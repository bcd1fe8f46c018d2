"""Invoicing endpoints: bill runs (or their preview), invoices as JSON, PDF and EN 16931
XML, finalisation, credit notes."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal
from typing import Annotated, Literal

import msgspec
from aiohttp import web

from server.billing import cii, documents, render_pdf, views
from server.billing.documents import CreditRequest
from server.billing.model import Settings
from server.billing.rounding import format_amount
from server.billing.runs import bill_run
from server.config import Config
from server.errors import InvalidRequest
from server.http.auth import actor
from server.http.keys import CONFIG, POOL
from server.http.pagination import Cursor, Limit, decode_cursor, page
from server.http.routing import Api, reply
from server.http.types import Id, IntId, Reason
from server.http.validation import decode_body, decode_path, decode_query

OPERATE = ("operator",)
READ = ("viewer",)

# Cycles of years 2000–2999: wide enough for any real cycle, narrow enough that a cycle's
# end (a month later, in any timezone) is always a representable instant.
Period = Annotated[str, msgspec.Meta(pattern="^2[0-9]{3}-(0[1-9]|1[0-2])$", examples=["2026-01"])]
Status = Literal["draft", "finalised"]
LineNo = Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]
# A net amount to credit in the invoice's currency: positive, at most 6 decimals.
CreditAmount = Annotated[str, msgspec.Meta(pattern="^[0-9]{1,12}(\\.[0-9]{1,6})?$",
                                           examples=["12.50"])]


class BillRunRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``accounts`` absent: every account not closed."""

    period: Period
    accounts: Annotated[list[Id], msgspec.Meta(min_length=1, max_length=10_000)] | None = None
    dry_run: bool = False
    finalize: bool = False  # the period's drafts whose grace period is over
    force: bool = False  # with finalize: drafts still in their grace period too


class BillRunResponse(msgspec.Struct):
    bill_run_id: int | None
    period: str
    dry_run: bool
    accounts: int
    invoices: int
    charges: int
    seconds: float
    invoice_ids: list[int]
    finalized: list[int]
    frozen: int  # accounts whose draft was past its grace period: left unchanged
    in_grace: list[int]  # drafts not finalised: still in their grace period
    previews: list[views.InvoiceView]


class InvoiceQuery(msgspec.Struct, frozen=True, kw_only=True):
    account_id: Id | None = None
    status: Status | None = None
    period: Period | None = None
    limit: Limit = 50
    cursor: Cursor | None = None


class InvoicePath(msgspec.Struct, frozen=True):
    invoice_id: IntId


class InvoiceSummary(msgspec.Struct):
    invoice_id: int
    account_id: str
    status: str
    number: str | None
    period: str
    currency: str
    payable: str  # to the currency's minor unit, as printed on the invoice


class InvoicePage(msgspec.Struct):
    items: list[InvoiceSummary]
    next_cursor: str | None


class CreditLineRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    line_no: LineNo
    amount: CreditAmount | None = None  # None: what is left of the line


class CreditNoteRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    invoice_id: IntId
    reason: Reason
    # None: credit everything left
    lines: Annotated[list[CreditLineRequest], msgspec.Meta(min_length=1,
                                                           max_length=1000)] | None = None


def settings(config: Config) -> Settings:
    return Settings(seller=config.billing.seller(), rounding=config.billing.rounding,
                    grace_days=config.billing.grace_days)


async def create_bill_run(request: web.Request) -> web.Response:
    body = await decode_body(request, BillRunRequest)
    if body.force and not body.finalize:
        raise InvalidRequest("invalid body: $.force: only goes with finalize", errors=[
            {"location": "body", "path": "$.force", "message": "only goes with finalize"}])
    config = request.app[CONFIG]
    pool = request.app[POOL]
    now = dt.datetime.now(dt.UTC)
    who = actor(request)
    run = await bill_run(pool, body.period, settings(config), accounts=body.accounts,
                         dry_run=body.dry_run, batch_size=config.billing.batch_size, now=now,
                         actor=who)
    finalized: list[int] = []
    due = documents.Due([], [], None)
    if body.finalize and not body.dry_run:
        async with pool.acquire() as conn:
            due = await documents.drafts_due(conn, body.period, body.accounts,
                                             config.billing.grace_days, now, force=body.force)
            if due.due:
                finalized = await documents.finalise(
                    conn, due.due, config.billing.invoice_series, now.date(),
                    config.billing.payment_terms_days, actor=who)
    return reply(BillRunResponse(
        bill_run_id=run.bill_run_id, period=run.period, dry_run=run.dry_run,
        accounts=run.accounts, invoices=run.invoices, charges=run.charges, seconds=run.seconds,
        invoice_ids=run.invoice_ids, finalized=finalized, frozen=run.frozen,
        in_grace=due.waiting,
        previews=[views.draft_view(d) for d in run.previews]), status=201)


async def list_invoices(request: web.Request) -> web.Response:
    q = decode_query(request, InvoiceQuery)
    after = decode_cursor(q.cursor, tuple[IntId])
    rows = await request.app[POOL].fetch(
        "SELECT invoice_id, account_id, status, number_text, period, currency, payable_micros "
        "FROM invoices WHERE ($1::text IS NULL OR account_id = $1) "
        "AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR period = $3) "
        "AND ($4::bigint IS NULL OR invoice_id > $4) ORDER BY invoice_id LIMIT $5",
        q.account_id, q.status, q.period, after[0] if after else None, q.limit + 1)
    items, next_cursor = page(rows, q.limit, lambda r: (r["invoice_id"],))
    return reply(InvoicePage(items=[InvoiceSummary(
        invoice_id=r["invoice_id"], account_id=r["account_id"], status=r["status"],
        number=r["number_text"], period=r["period"], currency=r["currency"].strip(),
        payable=format_amount(r["payable_micros"], r["currency"].strip())) for r in items],
        next_cursor=next_cursor))


async def get_invoice(request: web.Request) -> web.Response:
    invoice_id = decode_path(request, InvoicePath).invoice_id
    async with request.app[POOL].acquire() as conn:
        return reply(views.invoice_view(await documents.load(conn, invoice_id)))


async def get_invoice_pdf(request: web.Request) -> web.Response:
    invoice_id = decode_path(request, InvoicePath).invoice_id
    async with request.app[POOL].acquire() as conn:
        invoice = await documents.load(conn, invoice_id)
    pdf = await asyncio.to_thread(render_pdf.render, invoice)  # CPU-bound: off the loop
    return web.Response(body=pdf, content_type="application/pdf")


async def get_invoice_xml(request: web.Request) -> web.Response:
    invoice_id = decode_path(request, InvoicePath).invoice_id
    async with request.app[POOL].acquire() as conn:
        invoice = await documents.load(conn, invoice_id)
    return web.Response(body=cii.to_xml(invoice), content_type="application/xml")


async def finalize_invoice(request: web.Request) -> web.Response:
    invoice_id = decode_path(request, InvoicePath).invoice_id
    config = request.app[CONFIG]
    async with request.app[POOL].acquire() as conn:
        await documents.finalise(conn, [invoice_id], config.billing.invoice_series,
                                 dt.date.today(), config.billing.payment_terms_days,
                                 actor=actor(request))
        return reply(views.invoice_view(await documents.load(conn, invoice_id)))


async def create_credit_note(request: web.Request) -> web.Response:
    body = await decode_body(request, CreditNoteRequest)
    config = request.app[CONFIG]
    lines = None if body.lines is None else [
        CreditRequest(ln.line_no, None if ln.amount is None else Decimal(ln.amount))
        for ln in body.lines]
    async with request.app[POOL].acquire() as conn:
        note = await documents.issue_credit_note(conn, body.invoice_id, body.reason.strip(),
                                                 lines, config.billing.credit_note_series,
                                                 dt.date.today(), actor=actor(request))
    return reply(views.credit_note_view(note), status=201)


def register(api: Api) -> None:
    tag = "invoicing"
    api.add("POST", "/v1/bill-runs", create_bill_run, tag=tag, request=BillRunRequest,
            response=BillRunResponse, status=201, roles=OPERATE,
            summary="Bill a cycle: drafts per account and currency (dry_run: preview only)")
    api.add("GET", "/v1/invoices", list_invoices, tag=tag, query=InvoiceQuery,
            response=InvoicePage, roles=READ, summary="List invoices (cursor pagination)")
    api.add("GET", r"/v1/invoices/{invoice_id:\d+}", get_invoice, tag=tag, params=InvoicePath,
            response=views.InvoiceView, roles=READ, summary="One invoice")
    api.add("GET", r"/v1/invoices/{invoice_id:\d+}.pdf", get_invoice_pdf, tag=tag,
            params=InvoicePath, response=bytes, content_type="application/pdf", roles=READ,
            summary="The invoice as PDF/A-3 with its Factur-X XML attached")
    api.add("GET", r"/v1/invoices/{invoice_id:\d+}.xml", get_invoice_xml, tag=tag,
            params=InvoicePath, response=bytes, content_type="application/xml", roles=READ,
            summary="The invoice as EN 16931 e-invoice (UN/CEFACT CII, Factur-X EN 16931)")
    api.add("POST", r"/v1/invoices/{invoice_id:\d+}/finalize", finalize_invoice, tag=tag,
            params=InvoicePath, response=views.InvoiceView, roles=OPERATE,
            summary="Number (gapless) and freeze a draft; a finalised invoice is returned as is")
    api.add("POST", "/v1/credit-notes", create_credit_note, tag=tag,
            request=CreditNoteRequest, response=views.CreditNoteView, status=201,
            roles=OPERATE, errors=(404, 409),
            summary="Credit a finalised invoice in full or in part (never beyond its total)")
