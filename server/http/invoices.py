"""`/v1/invoices`: invoices as JSON, as PDF/A-3 (Factur-X) and as EN 16931 XML; finalisation.
Bill runs: server.http.bill_runs; credit notes: server.http.credit_notes."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Literal

import asyncpg
import msgspec
from aiohttp import web

from billing_oss.core.errors import NotFound
from billing_oss.core.money import format_minor
from billing_oss.server.billing import documents_repo, issuing, views
from billing_oss.server.billing.render import cii, itemised, typst_pdf
from billing_oss.server.http.auth import actor
from billing_oss.server.http.keys import CONFIG, POOL
from billing_oss.server.http.pagination import Cursor, Limit, decode_cursor, page
from billing_oss.server.http.routing import Api, reply
from billing_oss.server.http.scope import customer_account, narrowed, own, unseen
from billing_oss.server.http.types import Id, IntId, Period
from billing_oss.server.http.validation import decode_path, decode_query

OPERATE = ("operator",)
READ = ("viewer", "customer")  # a customer key: its own account's only

Status = Literal["draft", "finalised"]


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


async def list_invoices(request: web.Request) -> web.Response:
    q = decode_query(request, InvoiceQuery)
    after = decode_cursor(q.cursor, tuple[IntId])
    account_id = narrowed(request, q.account_id)
    # A customer sees what was issued to it: a draft changes until it is finalised.
    status: str | None = q.status
    if customer_account(request) is not None:
        status = "finalised" if q.status in (None, "finalised") else "none"  # none: no drafts
    rows = await documents_repo.invoice_page(
        request.app[POOL], account_id=account_id, status=status, period=q.period,
        after=after[0] if after else None, limit=q.limit + 1)
    items, next_cursor = page(rows, q.limit, lambda r: (r["invoice_id"],))
    return reply(InvoicePage(items=[InvoiceSummary(
        invoice_id=r["invoice_id"], account_id=r["account_id"], status=r["status"],
        number=r["number_text"], period=r["period"], currency=r["currency"].strip(),
        payable=format_minor(r["payable_micros"], r["currency"].strip())) for r in items],
        next_cursor=next_cursor))


async def get_invoice(request: web.Request) -> web.Response:
    invoice_id = decode_path(request, InvoicePath).invoice_id
    async with request.app[POOL].acquire() as conn:
        with unseen(request, f"invoice {invoice_id}"):
            invoice = await issuing.load(conn, invoice_id)
    readable(request, invoice)
    return reply(views.invoice_view(invoice))


async def get_invoice_pdf(request: web.Request) -> web.Response:
    invoice_id = decode_path(request, InvoicePath).invoice_id
    pdf = await invoice_pdf(request.app[POOL], invoice_id,
                            lambda invoice: readable(request, invoice),
                            lambda: unseen(request, f"invoice {invoice_id}"))
    return web.Response(body=pdf, content_type="application/pdf")


async def invoice_pdf(pool: asyncpg.Pool, invoice_id: int,
                      check: Callable[[issuing.Invoice], None] = lambda invoice: None,
                      hiding: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
                      ) -> bytes:
    """The invoice as PDF/A-3 (REST and SOAP alike); ``check`` sees the invoice first,
    ``hiding`` wraps its load (``scope.unseen``: a customer key's 403 for a missing id)."""
    async with pool.acquire() as conn:
        with hiding():
            invoice = await issuing.load(conn, invoice_id)
        check(invoice)
        items = await itemised.load(conn, invoice.account_id, invoice_id)
    return await asyncio.to_thread(typst_pdf.render, invoice, items)  # CPU-bound: off the loop


async def get_invoice_xml(request: web.Request) -> web.Response:
    invoice_id = decode_path(request, InvoicePath).invoice_id
    async with request.app[POOL].acquire() as conn:
        with unseen(request, f"invoice {invoice_id}"):
            invoice = await issuing.load(conn, invoice_id)
    readable(request, invoice)
    return web.Response(body=cii.to_xml(invoice), content_type="application/xml")


def readable(request: web.Request, invoice: issuing.Invoice) -> None:
    """Refuse another account's invoice to a customer key (403), and a draft (404: it is
    not issued to the customer until finalised)."""
    own(request, invoice.account_id, f"invoice {invoice.invoice_id}")
    if customer_account(request) is not None and invoice.status != "finalised":
        raise NotFound(f"no invoice {invoice.invoice_id}")


async def finalize_invoice(request: web.Request) -> web.Response:
    invoice_id = decode_path(request, InvoicePath).invoice_id
    config = request.app[CONFIG]
    async with request.app[POOL].acquire() as conn:
        await issuing.finalise(conn, [invoice_id], config.billing.invoice_series,
                                 dt.date.today(), config.billing.payment_terms_days,
                                 actor=actor(request))
        return reply(views.invoice_view(await issuing.load(conn, invoice_id)))


def register(api: Api) -> None:
    tag = "invoicing"
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
