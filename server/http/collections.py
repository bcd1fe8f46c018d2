"""Collections resources: `/v1/payments` (record, list, allocate, refund, reverse),
`/v1/aging` and `/v1/statements` (rules in ``server.collections``). Amounts are decimal
strings to the currency's minor unit; viewers read, operators act."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
from typing import Annotated, Literal

import asyncpg
import msgspec
from aiohttp import web

from billing_oss.core.errors import DecodeError, InvalidRequest, NotFound, UnsupportedMediaType
from billing_oss.core.money import format_minor, parse_micros
from billing_oss.server.collections import (
    aging,
    bank_import,
    dunning,
    payments,
    repo,
    statement_pdf,
    write_offs,
)
from billing_oss.server.collections.bank_import import ImportResult
from billing_oss.server.collections.model import (
    DEFAULT_BUCKETS,
    AgingRow,
    Entry,
    NewPayment,
    Payment,
    Target,
    bucket_labels,
)
from billing_oss.server.http.auth import actor
from billing_oss.server.http.keys import CONFIG, POOL
from billing_oss.server.http.pagination import Cursor, Limit, decode_cursor, page
from billing_oss.server.http.routing import Api, reply
from billing_oss.server.http.scope import narrowed, own, unseen
from billing_oss.server.http.types import Currency, Id, IntId, Reason, Text
from billing_oss.server.http.validation import decode_body, decode_path, decode_query

READ = ("viewer",)
# What a customer key may read too, of its own account only.
MINE = ("viewer", "customer")
OPERATE = ("operator",)

Amount = Annotated[str, msgspec.Meta(pattern="^[0-9]{1,12}(\\.[0-9]{1,6})?$",
                                     examples=["120.50"])]
Method = Annotated[str, msgspec.Meta(min_length=1, max_length=32,
                                     pattern="^[a-z0-9_-]+$", examples=["transfer"])]
Buckets = Annotated[str, msgspec.Meta(pattern="^[0-9]{1,4}(,[0-9]{1,4}){0,9}$",
                                      examples=["0,30,60,90"])]


class TargetIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    invoice_id: IntId
    amount: Amount | None = None  # absent: what the invoice still owes


class PaymentIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    account_id: Id
    amount: Amount
    received_on: dt.date
    method: Method = "transfer"
    currency: Currency | None = None  # absent: the account's; else it must be the account's
    reference: Text | None = None
    external_id: Id | None = None  # your id for it: the same one again records nothing new
    allocate: Literal["auto", "none"] = "auto"  # without allocations: oldest first, or not
    allocations: list[TargetIn] = []


class AllocateIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    allocations: list[TargetIn] = []  # empty: oldest first


class RefundIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    amount: Amount
    date: dt.date
    reason: Reason


class ReversalIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    date: dt.date
    reason: Reason  # the bank's return code (AC04, AM04, MD06...) or why


class AllocationView(msgspec.Struct, frozen=True, kw_only=True):
    entry_id: int
    kind: str
    invoice_id: int | None
    amount: str


class PaymentView(msgspec.Struct, frozen=True, kw_only=True):
    payment_id: int
    account_id: str
    amount: str
    currency: str
    received_on: dt.date
    method: str
    reference: str | None
    source: str
    external_id: str | None
    allocated: str
    refunded: str
    reversed: str
    unapplied: str
    allocations: list[AllocationView]
    created_at: dt.datetime


class PaymentPage(msgspec.Struct, frozen=True):
    items: list[PaymentView]
    next_cursor: str | None


class PaymentQuery(msgspec.Struct, frozen=True, kw_only=True):
    account_id: Id | None = None
    limit: Limit = 50
    cursor: Cursor | None = None


class PaymentPath(msgspec.Struct, frozen=True):
    payment_id: IntId


class AgingQuery(msgspec.Struct, frozen=True, kw_only=True):
    as_of: dt.date | None = None  # absent: today (UTC)
    account_id: Id | None = None
    buckets: Buckets | None = None  # upper bounds in days past due, default 0,30,60,90
    limit: Limit = 50
    cursor: Cursor | None = None


class AgingLine(msgspec.Struct, frozen=True, kw_only=True):
    account_id: str | None
    currency: str
    buckets: dict[str, str]  # label -> amount open
    credit: str  # unapplied payment money, ≤ 0
    total: str  # Σ buckets + credit = the ledger balance as of the date


class AgingView(msgspec.Struct, frozen=True, kw_only=True):
    as_of: dt.date
    buckets: list[str]
    totals: list[AgingLine]  # per currency, every account
    items: list[AgingLine]  # per account and currency, a page
    next_cursor: str | None


class StatementQuery(msgspec.Struct, frozen=True, kw_only=True):
    account_id: Id
    start: dt.date = msgspec.field(name="from")
    end: dt.date = msgspec.field(name="to")


class EntryView(msgspec.Struct, frozen=True, kw_only=True):
    entry_id: int
    date: dt.date
    kind: str
    description: str
    currency: str
    amount: str
    balance: str
    due_date: dt.date | None
    invoice_id: int | None
    payment_id: int | None
    reason: str | None


class StatementView(msgspec.Struct, frozen=True, kw_only=True):
    account_id: str
    start: dt.date = msgspec.field(name="from")
    end: dt.date = msgspec.field(name="to")
    opening: dict[str, str]  # currency -> balance before `from`
    closing: dict[str, str]  # currency -> balance at the end of `to`
    entries: list[EntryView]


async def list_payments(request: web.Request) -> web.Response:
    q = decode_query(request, PaymentQuery)
    after = decode_cursor(q.cursor, tuple[IntId])
    rows = await repo.payments(request.app[POOL], narrowed(request, q.account_id),
                               after[0] if after else None, q.limit)
    items, next_cursor = page(rows, q.limit, lambda p: (p.payment_id,))
    return reply(PaymentPage([payment_view(p) for p in items], next_cursor))


async def get_payment(request: web.Request) -> web.Response:
    path = decode_path(request, PaymentPath)
    with unseen(request, f"payment {path.payment_id}"):
        found = await payments.get(request.app[POOL], path.payment_id)
    own(request, found.account_id, f"payment {path.payment_id}")
    return reply(payment_view(found))


async def record_payment(request: web.Request) -> web.Response:
    body = await decode_body(request, PaymentIn)
    stored, created = await record(request.app[POOL], actor(request), body)
    return reply(payment_view(stored), status=201 if created else 200)


async def record(pool: asyncpg.Pool, who: str, body: PaymentIn) -> tuple[Payment, bool]:
    """Record (and allocate) a payment, REST and SOAP alike: (payment, created)."""
    return await payments.record(pool, who, NewPayment(
        account_id=body.account_id, amount_micros=parse_micros(body.amount),
        received_on=body.received_on, method=body.method, currency=body.currency,
        reference=body.reference, external_id=body.external_id, allocate=body.allocate,
        targets=targets(body.allocations)))


async def allocate_payment(request: web.Request) -> web.Response:
    path = decode_path(request, PaymentPath)
    body = await decode_body(request, AllocateIn)
    stored = await payments.allocate(request.app[POOL], actor(request), path.payment_id,
                                     targets(body.allocations))
    return reply(payment_view(stored))


async def refund_payment(request: web.Request) -> web.Response:
    path = decode_path(request, PaymentPath)
    body = await decode_body(request, RefundIn)
    stored = await payments.refund(request.app[POOL], actor(request), path.payment_id,
                                   parse_micros(body.amount), body.date, body.reason)
    return reply(payment_view(stored), status=201)


async def reverse_payment(request: web.Request) -> web.Response:
    path = decode_path(request, PaymentPath)
    body = await decode_body(request, ReversalIn)
    stored = await payments.reverse(request.app[POOL], actor(request), path.payment_id,
                                    body.date, body.reason)
    return reply(payment_view(stored), status=201)


async def get_aging(request: web.Request) -> web.Response:
    q = decode_query(request, AgingQuery)
    after = decode_cursor(q.cursor, tuple[Id, Currency])
    as_of = q.as_of or dt.datetime.now(dt.UTC).date()
    bounds = parse_buckets(q.buckets) if q.buckets else DEFAULT_BUCKETS
    aging.check_bounds(bounds)
    labels = bucket_labels(bounds)
    pool = request.app[POOL]
    totals = await aging.aging(pool, as_of, bounds=bounds, account_id=q.account_id)
    rows = await aging.lines_after(pool, as_of, bounds=bounds, account_id=q.account_id,
                                   after=after, limit=q.limit + 1)
    items, next_cursor = page(rows, q.limit, lambda r: (r.account_id, r.currency))
    return reply(AgingView(as_of=as_of, buckets=labels,
                           totals=[aging_line(r, labels) for r in totals],
                           items=[aging_line(r, labels) for r in items],
                           next_cursor=next_cursor))


async def _statement(request: web.Request
                     ) -> tuple[StatementQuery, dict[str, int], list[Entry]]:
    """The query, opening balances and entries one statement (JSON or PDF) shows."""
    q = decode_query(request, StatementQuery)
    if q.end < q.start:
        raise InvalidRequest("invalid query: to: before from", errors=[
            {"location": "query", "path": "to", "message": "before from"}])
    own(request, q.account_id, f"account {q.account_id}")
    pool = request.app[POOL]
    if await repo.account(pool, q.account_id) is None:
        raise NotFound(f"no account {q.account_id}")
    opening, entries = await repo.statement(pool, q.account_id, q.start, q.end)
    return q, opening, entries


async def get_statement(request: web.Request) -> web.Response:
    q, opening, entries = await _statement(request)
    closing = dict(opening)
    for e in entries:
        closing[e.currency] = e.balance_micros
    return reply(StatementView(
        account_id=q.account_id, start=q.start, end=q.end,
        opening={c: format_minor(m, c) for c, m in sorted(opening.items())},
        closing={c: format_minor(m, c) for c, m in sorted(closing.items())},
        entries=[EntryView(entry_id=e.entry_id, date=e.entry_date, kind=e.kind,
                           description=e.description, currency=e.currency,
                           amount=format_minor(e.amount_micros, e.currency),
                           balance=format_minor(e.balance_micros, e.currency),
                           due_date=e.due_date, invoice_id=e.invoice_id,
                           payment_id=e.payment_id, reason=e.reason) for e in entries]))


async def get_statement_pdf(request: web.Request) -> web.Response:
    q, opening, entries = await _statement(request)
    pdf = await asyncio.to_thread(statement_pdf.render, request.app[CONFIG].billing.seller_name,
                                  q.account_id, q.start, q.end, opening, entries)  # CPU-bound
    return web.Response(body=pdf, content_type="application/pdf")


class BankFileQuery(msgspec.Struct, frozen=True, kw_only=True):
    name: Text = "upload.xml"  # the file's name, kept with each entry


class BankEntryQuery(msgspec.Struct, frozen=True, kw_only=True):
    status: Literal["imported", "returned", "unmatched", "rejected", "ignored"] | None = None
    limit: Limit = 50
    cursor: Cursor | None = None


class BankEntryView(msgspec.Struct, frozen=True, kw_only=True):
    statement_account: str
    entry_key: str
    file_name: str
    entry_no: int
    status: str
    reason: str | None
    credit: bool
    amount: str
    currency: str
    booked_on: dt.date | None
    account_id: str | None
    payment_id: int | None
    invoice_id: int | None
    remittance: str


class BankEntryPage(msgspec.Struct, frozen=True):
    items: list[BankEntryView]
    next_cursor: str | None


async def import_bank_file(request: web.Request) -> web.Response:
    q = decode_query(request, BankFileQuery)
    if request.content_type not in ("application/xml", "text/xml"):
        raise UnsupportedMediaType("send the camt.053 / camt.054 file as application/xml "
                                   f"(got {request.content_type or 'nothing'})")
    body = await request.read()
    try:
        result = await bank_import.import_file(request.app[POOL], actor(request),
                                               io.BytesIO(body), q.name)
    except DecodeError as exc:
        raise InvalidRequest(f"{q.name}: {exc.message}", errors=[
            {"location": "body", "path": "$", "message": exc.message}]) from None
    return reply(result)


async def list_bank_entries(request: web.Request) -> web.Response:
    q = decode_query(request, BankEntryQuery)
    after = decode_cursor(q.cursor, tuple[str, str])
    rows = await repo.bank_entries(request.app[POOL], q.status, after, q.limit)
    items, next_cursor = page(rows, q.limit, lambda r: (r["statement_account"],
                                                        r["entry_key"]))
    return reply(BankEntryPage([BankEntryView(
        **{k: r[k] for k in ("statement_account", "entry_key", "file_name", "entry_no",
                             "status", "reason", "credit", "booked_on", "account_id",
                             "payment_id", "invoice_id", "remittance")},
        amount=format_minor(r["amount_micros"], r["currency"].strip())
        if r["currency"].strip() != "XXX" else "0", currency=r["currency"].strip())
        for r in items], next_cursor))


ClassName = Annotated[str, msgspec.Meta(min_length=1, max_length=64,
                                        pattern="^[A-Za-z0-9._-]+$", examples=["default"])]


class LadderPath(msgspec.Struct, frozen=True):
    klass: ClassName = msgspec.field(name="class")


class LadderIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    steps: Annotated[list[dunning.Step], msgspec.Meta(max_length=20)]


class LadderView(msgspec.Struct, frozen=True, kw_only=True):
    klass: str = msgspec.field(name="class")
    steps: list[dunning.Step]


class LadderList(msgspec.Struct, frozen=True):
    items: list[LadderView]


class RunIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    as_of: dt.date | None = None  # absent: today (UTC)
    dry_run: bool = False
    account_id: Id | None = None


class DisputeIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    invoice_id: IntId
    reason: Reason
    opened_on: dt.date | None = None


class DisputeView(msgspec.Struct, frozen=True, kw_only=True):
    dispute_id: int
    invoice_id: int


class DisputePath(msgspec.Struct, frozen=True):
    dispute_id: IntId


async def list_ladders(request: web.Request) -> web.Response:
    found = await dunning.ladders(request.app[POOL])
    return reply(LadderList([LadderView(klass=k, steps=v) for k, v in found.items()]))


async def put_ladder(request: web.Request) -> web.Response:
    path = decode_path(request, LadderPath)
    body = await decode_body(request, LadderIn)
    async with request.app[POOL].acquire() as conn:
        await dunning.put_ladder(conn, actor(request), path.klass, body.steps)
    return reply(LadderView(klass=path.klass, steps=body.steps))


async def run_dunning(request: web.Request) -> web.Response:
    body = await decode_body(request, RunIn)
    async with request.app[POOL].acquire() as conn:
        result = await dunning.run(conn, actor(request), body.as_of or
                                   dt.datetime.now(dt.UTC).date(), dry_run=body.dry_run,
                                   account_id=body.account_id)
    return reply(result)


async def open_dispute(request: web.Request) -> web.Response:
    body = await decode_body(request, DisputeIn)
    async with request.app[POOL].acquire() as conn:
        dispute_id = await dunning.open_dispute(
            conn, actor(request), body.invoice_id, body.reason,
            body.opened_on or dt.datetime.now(dt.UTC).date())
    return reply(DisputeView(dispute_id=dispute_id, invoice_id=body.invoice_id), status=201)


async def close_dispute(request: web.Request) -> web.Response:
    path = decode_path(request, DisputePath)
    async with request.app[POOL].acquire() as conn:
        await dunning.close_dispute(conn, actor(request), path.dispute_id,
                                    dt.datetime.now(dt.UTC).date())
    return web.Response(status=204)


class WriteOffIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    invoice_id: IntId
    reason: Reason
    date: dt.date | None = None  # absent: today (UTC)


class WriteOffView(msgspec.Struct, frozen=True, kw_only=True):
    entry_id: int
    invoice_id: int


async def write_off(request: web.Request) -> web.Response:
    body = await decode_body(request, WriteOffIn)
    entry_id = await write_offs.write_off(request.app[POOL], actor(request), body.invoice_id,
                                          body.date or dt.datetime.now(dt.UTC).date(),
                                          body.reason)
    return reply(WriteOffView(entry_id=entry_id, invoice_id=body.invoice_id), status=201)


def targets(given: list[TargetIn]) -> tuple[Target, ...]:
    return tuple(Target(t.invoice_id, None if t.amount is None else parse_micros(t.amount))
                 for t in given)


def parse_buckets(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(","))


def payment_view(p: Payment) -> PaymentView:
    c = p.currency
    return PaymentView(
        payment_id=p.payment_id, account_id=p.account_id, amount=format_minor(
            p.amount_micros, c), currency=c, received_on=p.received_on, method=p.method,
        reference=p.reference, source=p.source, external_id=p.external_id,
        allocated=format_minor(p.allocated_micros, c),
        refunded=format_minor(p.refunded_micros, c),
        reversed=format_minor(p.reversed_micros, c),
        unapplied=format_minor(p.unapplied_micros, c),
        allocations=[AllocationView(entry_id=a.entry_id, kind=a.kind, invoice_id=a.invoice_id,
                                    amount=format_minor(a.amount_micros, c))
                     for a in p.allocations],
        created_at=p.created_at)


def aging_line(r: AgingRow, labels: list[str]) -> AgingLine:
    c = r.currency
    return AgingLine(account_id=r.account_id, currency=c,
                     buckets={label: format_minor(m, c)
                              for label, m in zip(labels, r.buckets, strict=True)},
                     credit=format_minor(r.credit_micros, c),
                     total=format_minor(r.total_micros, c))


def register(api: Api) -> None:
    tag = "collections"
    api.add("GET", "/v1/payments", list_payments, summary="List payments, oldest first",
            tag=tag, query=PaymentQuery, response=PaymentPage, roles=MINE)
    api.add("POST", "/v1/payments", record_payment,
            summary="Record a payment and allocate it (named invoices, else oldest first); "
            "the same external_id again: 200", tag=tag, request=PaymentIn,
            response=PaymentView, status=201, also=(200,), roles=OPERATE, errors=(404, 409))
    api.add("GET", "/v1/payments/{payment_id}", get_payment, summary="One payment",
            tag=tag, params=PaymentPath, response=PaymentView, roles=MINE)
    api.add("POST", "/v1/payments/{payment_id}/allocations", allocate_payment,
            summary="Allocate what a payment has left (named invoices, else oldest first)",
            tag=tag, params=PaymentPath, request=AllocateIn, response=PaymentView,
            roles=OPERATE)
    api.add("POST", "/v1/payments/{payment_id}/refunds", refund_payment,
            summary="Refund (part of) a payment: unapplied money first, then its newest "
            "allocations", tag=tag, params=PaymentPath, request=RefundIn,
            response=PaymentView, status=201, roles=OPERATE)
    api.add("POST", "/v1/payments/{payment_id}/reversal", reverse_payment,
            summary="Reverse a bounced or returned payment: its invoices are open again",
            tag=tag, params=PaymentPath, request=ReversalIn, response=PaymentView,
            status=201, roles=OPERATE, errors=(409,))
    api.add("POST", "/v1/bank-files", import_bank_file,
            summary="Import a camt.053 / camt.054 bank file (application/xml): credits become "
            "payments of the invoices their remittance names; a pain.002 status report's "
            "rejected direct debits are reversed; the same file again changes nothing",
            tag=tag, query=BankFileQuery, response=ImportResult, roles=OPERATE,
            errors=(415, 422))
    api.add("GET", "/v1/bank-entries", list_bank_entries,
            summary="Bank transactions imported and what became of them (unmatched ones "
            "wait for the operator, with the reason)", tag=tag, query=BankEntryQuery,
            response=BankEntryPage, roles=READ)
    api.add("GET", "/v1/dunning/ladders", list_ladders,
            summary="Dunning ladders per account class", tag=tag, response=LadderList,
            roles=READ)
    api.add("PUT", "/v1/dunning/ladders/{class}", put_ladder,
            summary="Set an account class's dunning ladder (accounts name their class in "
            "attrs.dunning_class)", tag=tag, params=LadderPath, request=LadderIn,
            response=LadderView, roles=("admin",))
    api.add("POST", "/v1/dunning/runs", run_dunning,
            summary="Take every dunning step due as of a date (dry_run: only count them)",
            tag=tag, request=RunIn, response=dunning.RunResult, roles=OPERATE)
    api.add("POST", "/v1/disputes", open_dispute,
            summary="Dispute an invoice: dunning pauses for it (only)", tag=tag,
            request=DisputeIn, response=DisputeView, status=201, roles=OPERATE,
            errors=(404, 409))
    api.add("POST", "/v1/disputes/{dispute_id}/close", close_dispute,
            summary="Close a dispute: dunning resumes for its invoice", tag=tag,
            params=DisputePath, status=204, roles=OPERATE, errors=(404,))
    api.add("POST", "/v1/write-offs", write_off,
            summary="Write off what an invoice still owes (reversed by a late payment named "
            "against it)", tag=tag, request=WriteOffIn, response=WriteOffView, status=201,
            roles=OPERATE, errors=(404, 409))
    api.add("GET", "/v1/aging", get_aging,
            summary="Receivables by days past due as of a date, per currency and account",
            tag=tag, query=AgingQuery, response=AgingView, roles=READ)
    api.add("GET", "/v1/statements", get_statement,
            summary="An account's ledger entries of a period with the running balance",
            tag=tag, query=StatementQuery, response=StatementView, roles=MINE, errors=(404,))
    api.add("GET", "/v1/statements.pdf", get_statement_pdf,
            summary="The same statement as a PDF (PDF/A-3b, typeset like the invoices)",
            tag=tag, query=StatementQuery, response=bytes, content_type="application/pdf",
            roles=MINE, errors=(404,))
