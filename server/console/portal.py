"""The customer's page: a ``customer`` key sees its one account — usage itemised per record
(by period, service and number, with a CSV export), the current cycle's usage and charge so
far, invoices and credit notes (PDF and e-invoice XML), balance and payments. Any other
account's document answers 403."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from billing_oss.core.errors import Forbidden, NotFound
from billing_oss.server.billing import issuing, periods
from billing_oss.server.billing.render import cii, typst_pdf
from billing_oss.server.collections import balances
from billing_oss.server.collections import repo as collections_repo
from billing_oss.server.console import repo
from billing_oss.server.console.web import needs, pool, render, session
from billing_oss.server.http import account_usage
from billing_oss.server.http import invoices as invoices_api
from billing_oss.server.http.pagination import decode_cursor, encode_cursor
from billing_oss.server.store import account_usage_repo, accounts_repo, traffic_repo
from billing_oss.server.store.account_usage_repo import ItemFilter
from billing_oss.server.store.traffic_repo import Period

PAGE = 50
KINDS = ("voice", "sms", "data", "event")


@needs("customer")
async def portal(request: web.Request) -> web.Response:
    db = pool(request)
    account = await accounts_repo.get(db, _account_id(request))
    filters = _filters(request, account.timezone)
    before = decode_cursor(request.query.get("cursor"), tuple[dt.datetime, int])
    usage = await account_usage_repo.items(
        db, ItemFilter(account_id=account.account_id, **filters["sql"]), after=before,
        limit=PAGE + 1, newest_first=True)
    cycle = _current_cycle(account.billing_day, account.timezone)
    so_far = await traffic_repo.totals(db, Period(account_id=account.account_id,
                                                  start=cycle.start, end=cycle.end))
    return render(request, "portal.html", {
        "timezone": account.timezone,  # the customer's times: the account's zone, not ours
        "account": account, "usage": usage[:PAGE], "filters": filters["form"],
        "kinds": KINDS, "cycle": cycle, "so_far": so_far,
        "next_cursor": encode_cursor((usage[PAGE - 1].event_time, usage[PAGE - 1].usage_id))
        if len(usage) > PAGE else None,
        "query": request.query_string,
        "invoices": [i for i in (await repo.invoices(db, account.account_id, None, 24))[:24]
                     if i["status"] == "finalised"],  # a draft is the operator's business
        "credit_notes": (await repo.credit_notes(db, account.account_id, None, 24))[:24],
        "position": await balances.position(db, account.account_id),
        "payments": (await collections_repo.payments(db, account.account_id, None, 24))[:24]})


@needs("customer")
async def usage_csv(request: web.Request) -> web.StreamResponse:
    """Every record the filters select, as the API exports them
    (``/v1/accounts/{id}/usage.csv``)."""
    db = pool(request)
    account = await accounts_repo.get(db, _account_id(request))
    return await account_usage.stream_csv(request, db, ItemFilter(
        account_id=account.account_id, **_filters(request, account.timezone)["sql"]))


@needs("customer")
async def invoice_document(request: web.Request) -> web.Response:
    invoice_id = int(request.match_info["invoice_id"])
    async with pool(request).acquire() as conn:
        with _unseen(f"invoice {invoice_id}"):
            document = await issuing.load(conn, invoice_id)
    _own(request, document.account_id, f"invoice {invoice_id}")
    if document.status != "finalised":  # as the API: a draft is not issued to the customer
        raise NotFound(f"no invoice {invoice_id}")
    if request.match_info["ext"] == "xml":
        return web.Response(body=cii.to_xml(document), content_type="application/xml")
    return _pdf(await invoices_api.invoice_pdf(pool(request), invoice_id),
                f"invoice-{invoice_id}.pdf")


@needs("customer")
async def credit_note_document(request: web.Request) -> web.Response:
    note_id = int(request.match_info["credit_note_id"])
    async with pool(request).acquire() as conn:
        with _unseen(f"credit note {note_id}"):
            note = await issuing.load_credit_note(conn, note_id)
        _own(request, note.account_id, f"credit note {note_id}")
        document = await issuing.load(conn, note.invoice_id)
    if request.match_info["ext"] == "xml":
        return web.Response(body=cii.credit_note_xml(note, document),
                            content_type="application/xml")
    pdf = await asyncio.to_thread(typst_pdf.render_credit_note, note, document)  # CPU-bound
    return _pdf(pdf, f"credit-note-{note_id}.pdf")


def _account_id(request: web.Request) -> str:
    account_id = session(request).key.account_id
    if account_id is None:  # the table's check forbids it; never show every account
        raise Forbidden("this key is bound to no account")
    return account_id


def _own(request: web.Request, account_id: str, what: str) -> None:
    if account_id != _account_id(request):
        raise Forbidden(f"{what} is not your account's")


@contextlib.contextmanager
def _unseen(what: str) -> Iterator[None]:
    """A document id that does not exist is refused as another account's is: the customer
    cannot tell which ids exist (``server.http.scope.unseen``)."""
    try:
        yield
    except NotFound:
        raise Forbidden(f"{what} is not your account's") from None


def _pdf(body: bytes, name: str) -> web.Response:
    return web.Response(body=body, content_type="application/pdf",
                        headers={"Content-Disposition": f'inline; filename="{name}"'})


def _filters(request: web.Request, timezone: str) -> dict[str, Any]:
    """The usage filters from the query: dates are the account's local days."""
    q = request.query
    kind = q.get("service") if q.get("service") in KINDS else None
    number = q.get("number", "").strip()[:32] or None
    zone = ZoneInfo(timezone)
    start, end = _day(q.get("from"), zone), _day(q.get("to"), zone)
    return {"sql": {"kind": kind, "number": number, "start": start,
                    "end": end + dt.timedelta(days=1) if end else None},
            "form": {"service": kind or "", "number": number or "",
                     "from": q.get("from", "") if start else "",
                     "to": q.get("to", "") if end else ""}}


def _day(text: str | None, zone: ZoneInfo) -> dt.datetime | None:
    try:
        day = dt.date.fromisoformat(text or "")
    except ValueError:
        return None
    return dt.datetime.combine(day, dt.time(), zone)


def _current_cycle(billing_day: int, timezone: str) -> periods.Cycle:
    today = dt.datetime.now(ZoneInfo(timezone)).date()
    first = today.replace(day=1)
    if today.day < billing_day:
        first = (first - dt.timedelta(days=1)).replace(day=1)
    return periods.cycle(first.strftime("%Y-%m"), billing_day, timezone)


def register(app: web.Application) -> None:
    app.router.add_get("/portal", portal)
    app.router.add_get("/portal/usage.csv", usage_csv)
    app.router.add_get(r"/portal/invoices/{invoice_id:\d{1,18}}.{ext:pdf|xml}",
                       invoice_document)
    app.router.add_get(r"/portal/credit-notes/{credit_note_id:\d{1,18}}.{ext:pdf|xml}",
                       credit_note_document)
