"""Invoicing endpoints: bill runs (or their preview), invoices as JSON, PDF and EN 16931
XML, finalisation, credit notes."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal
from typing import TypeVar

import msgspec
from aiohttp import web

from server.billing import cii, documents, render_pdf, views
from server.billing.documents import CreditRequest, Invalid
from server.billing.model import Settings
from server.billing.rounding import format_amount
from server.billing.runs import bill_run
from server.config import Config
from server.http.keys import CONFIG, POOL
from server.http.routing import Api

OPERATE = ("operator",)
READ = ("viewer",)


class BillRunRequest(msgspec.Struct, forbid_unknown_fields=True):
    period: str  # YYYY-MM
    accounts: list[str] | None = None
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


class InvoiceQuery(msgspec.Struct):
    account_id: str | None = None
    status: str | None = None
    period: str | None = None
    cursor: int | None = None
    limit: int = 100


class InvoiceSummary(msgspec.Struct):
    invoice_id: int
    account_id: str
    status: str
    number: str | None
    period: str
    currency: str
    payable: str


class InvoicePage(msgspec.Struct):
    items: list[InvoiceSummary]
    next_cursor: int | None


class CreditLineRequest(msgspec.Struct, forbid_unknown_fields=True):
    line_no: int
    amount: Decimal | None = None


class CreditNoteRequest(msgspec.Struct, forbid_unknown_fields=True):
    invoice_id: int
    reason: str
    lines: list[CreditLineRequest] | None = None  # None: credit everything left


def settings(config: Config) -> Settings:
    return Settings(seller=config.billing.seller(), rounding=config.billing.rounding,
                    grace_days=config.billing.grace_days)


T = TypeVar("T")


async def _body(request: web.Request, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(await request.read(), type=kind)
    except msgspec.ValidationError as exc:
        raise Invalid(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise Invalid(f"malformed JSON: {exc}") from None


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(data), status=status,
                        content_type="application/json")


def _invoice_id(request: web.Request) -> int:
    return int(request.match_info["invoice_id"])


async def create_bill_run(request: web.Request) -> web.Response:
    body = await _body(request, BillRunRequest)
    config = request.app[CONFIG]
    pool = request.app[POOL]
    now = dt.datetime.now(dt.UTC)
    run = await bill_run(pool, body.period, settings(config), accounts=body.accounts,
                         dry_run=body.dry_run, batch_size=config.billing.batch_size, now=now)
    finalized: list[int] = []
    due = documents.Due([], [], None)
    if body.finalize and not body.dry_run:
        async with pool.acquire() as conn:
            due = await documents.drafts_due(conn, body.period, body.accounts,
                                             config.billing.grace_days, now, force=body.force)
            if due.due:
                finalized = await documents.finalise(
                    conn, due.due, config.billing.invoice_series, now.date(),
                    config.billing.payment_terms_days)
    return _json(BillRunResponse(
        bill_run_id=run.bill_run_id, period=run.period, dry_run=run.dry_run,
        accounts=run.accounts, invoices=run.invoices, charges=run.charges, seconds=run.seconds,
        invoice_ids=run.invoice_ids, finalized=finalized, frozen=run.frozen,
        in_grace=due.waiting,
        previews=[views.draft_view(d) for d in run.previews]), status=201)


async def list_invoices(request: web.Request) -> web.Response:
    try:
        q = msgspec.convert(dict(request.query), InvoiceQuery, strict=False)
    except msgspec.ValidationError as exc:
        raise Invalid(str(exc)) from None
    limit = max(1, min(q.limit, 1000))
    rows = await request.app[POOL].fetch(
        "SELECT invoice_id, account_id, status, number_text, period, currency, payable_micros "
        "FROM invoices WHERE ($1::text IS NULL OR account_id = $1) "
        "AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR period = $3) "
        "AND ($4::bigint IS NULL OR invoice_id > $4) ORDER BY invoice_id LIMIT $5",
        q.account_id, q.status, q.period, q.cursor, limit + 1)
    items = [InvoiceSummary(
        invoice_id=r["invoice_id"], account_id=r["account_id"], status=r["status"],
        number=r["number_text"], period=r["period"], currency=r["currency"].strip(),
        payable=format_amount(r["payable_micros"], r["currency"].strip())) for r in rows[:limit]]
    next_cursor = items[-1].invoice_id if len(rows) > limit else None
    return _json(InvoicePage(items=items, next_cursor=next_cursor))


async def get_invoice(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        return _json(views.invoice_view(await documents.load(conn, _invoice_id(request))))


async def get_invoice_pdf(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        invoice = await documents.load(conn, _invoice_id(request))
    pdf = await asyncio.to_thread(render_pdf.render, invoice)  # CPU-bound: off the loop
    return web.Response(body=pdf, content_type="application/pdf")


async def get_invoice_xml(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        invoice = await documents.load(conn, _invoice_id(request))
    return web.Response(body=cii.to_xml(invoice), content_type="application/xml")


async def finalize_invoice(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    async with request.app[POOL].acquire() as conn:
        await documents.finalise(conn, [_invoice_id(request)], config.billing.invoice_series,
                                 dt.date.today(), config.billing.payment_terms_days)
        return _json(views.invoice_view(await documents.load(conn, _invoice_id(request))))


async def create_credit_note(request: web.Request) -> web.Response:
    body = await _body(request, CreditNoteRequest)
    config = request.app[CONFIG]
    lines = None if body.lines is None else [CreditRequest(ln.line_no, ln.amount)
                                             for ln in body.lines]
    async with request.app[POOL].acquire() as conn:
        note = await documents.issue_credit_note(conn, body.invoice_id, body.reason, lines,
                                                 config.billing.credit_note_series,
                                                 dt.date.today())
    return _json(views.credit_note_view(note), status=201)


def register(api: Api) -> None:
    tag = "invoicing"
    api.add("POST", "/v1/bill-runs", create_bill_run, tag=tag, request=BillRunRequest,
            response=BillRunResponse, status=201, roles=OPERATE,
            summary="Bill a cycle: drafts per account and currency (dry_run: preview only)")
    api.add("GET", "/v1/invoices", list_invoices, tag=tag, query=InvoiceQuery,
            response=InvoicePage, roles=READ, summary="List invoices (cursor pagination)")
    api.add("GET", r"/v1/invoices/{invoice_id:\d+}", get_invoice, tag=tag,
            response=views.InvoiceView, roles=READ, errors=(404,), summary="One invoice")
    api.add("GET", r"/v1/invoices/{invoice_id:\d+}.pdf", get_invoice_pdf, tag=tag,
            response=bytes, content_type="application/pdf", roles=READ, errors=(404,),
            summary="The invoice as PDF/A-3 with its Factur-X XML attached")
    api.add("GET", r"/v1/invoices/{invoice_id:\d+}.xml", get_invoice_xml, tag=tag,
            response=bytes, content_type="application/xml", roles=READ, errors=(404,),
            summary="The invoice as EN 16931 e-invoice (UN/CEFACT CII, Factur-X EN 16931)")
    api.add("POST", r"/v1/invoices/{invoice_id:\d+}/finalize", finalize_invoice, tag=tag,
            response=views.InvoiceView, roles=OPERATE, errors=(404,),
            summary="Number (gapless) and freeze a draft")
    api.add("POST", "/v1/credit-notes", create_credit_note, tag=tag,
            request=CreditNoteRequest, response=views.CreditNoteView, status=201,
            roles=OPERATE, errors=(404, 409),
            summary="Credit a finalised invoice in full or in part (never beyond its total)")
