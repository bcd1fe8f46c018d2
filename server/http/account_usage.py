"""One account's usage, itemised per record with its charge, as JSON pages or CSV; the
current cycle to date with the charge so far; the balance. Customer keys read their own
account here (``server.http.scope``), operators and viewers any account's."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

import asyncpg
import msgspec
from aiohttp import web

from billing_oss.core.money import format_api
from billing_oss.server.billing import periods
from billing_oss.server.collections import balances
from billing_oss.server.http import streams
from billing_oss.server.http.keys import POOL
from billing_oss.server.http.pagination import Cursor, Limit, decode_cursor, page
from billing_oss.server.http.routing import Api, reply
from billing_oss.server.http.scope import own
from billing_oss.server.http.traffic import UsageKind
from billing_oss.server.http.types import Id, Identifier, IntId, Money, Timestamp, money
from billing_oss.server.http.validation import decode_path, decode_query
from billing_oss.server.store import account_usage_repo, accounts_repo
from billing_oss.server.store.account_usage_repo import ItemFilter, ItemRow

MINE = ("viewer", "customer")  # a customer key: its own account's only
CSV_CHUNK = 5000  # records per query while a CSV export streams


class AccountPath(msgspec.Struct, frozen=True):
    account_id: Id


class ItemQuery(msgspec.Struct, frozen=True, kw_only=True):
    from_: Timestamp | None = msgspec.field(name="from", default=None)
    to: Timestamp | None = None
    service: UsageKind | None = None
    number: Identifier | None = None  # the calling, called or subscriber number
    limit: Limit = 50
    cursor: Cursor | None = None


class UsageItem(msgspec.Struct, frozen=True, kw_only=True):
    usage_id: int
    event_time: Timestamp
    service: str
    calling: str | None
    called: str | None
    msisdn: str | None
    duration_s: int | None
    volume_up: int | None
    volume_down: int | None
    quantity: str | None
    unit: str | None
    zone: str | None
    band: str | None
    charge: Money | None  # None: not charged (yet)


class UsageItemPage(msgspec.Struct, frozen=True):
    items: list[UsageItem]
    next_cursor: str | None


class ServiceTotal(msgspec.Struct, frozen=True, kw_only=True):
    service: str
    records: int
    duration_s: int
    volume: int  # bytes up and down
    charged: Money | None  # None: records not charged (yet)


class CurrentCycle(msgspec.Struct, frozen=True, kw_only=True):
    """The cycle the account is in, its usage to date and what it was charged so far
    (usage charges only: recurring fees, discounts and tax come with the invoice)."""

    account_id: str
    period: str
    start: Timestamp
    end: Timestamp
    as_of: Timestamp
    records: int
    charged: list[Money]  # per currency
    services: list[ServiceTotal]


class OpenInvoiceView(msgspec.Struct, frozen=True, kw_only=True):
    invoice_id: int
    number: str
    issued_on: dt.date
    due_date: dt.date
    amount: Money
    open: Money


class BalanceView(msgspec.Struct, frozen=True, kw_only=True):
    """The ledger position: per currency what is owed (+) or held in credit (−)."""

    account_id: str
    balances: list[Money]
    open_invoices: list[OpenInvoiceView]


async def _account(request: web.Request) -> accounts_repo.Account:
    account_id = decode_path(request, AccountPath).account_id
    own(request, account_id, f"account {account_id}")
    return await accounts_repo.get(request.app[POOL], account_id)


def _item(r: ItemRow) -> UsageItem:
    return UsageItem(
        usage_id=r.usage_id, event_time=r.event_time, service=r.kind, calling=r.calling,
        called=r.called, msisdn=r.msisdn, duration_s=r.duration_s, volume_up=r.volume_up,
        volume_down=r.volume_down, quantity=r.quantity, unit=r.unit, zone=r.zone, band=r.band,
        charge=None if r.amount_micros is None or r.currency is None
        else money(r.amount_micros, r.currency))


async def list_account_usage(request: web.Request) -> web.StreamResponse:
    account = await _account(request)
    q = decode_query(request, ItemQuery)
    f = ItemFilter(account_id=account.account_id, start=q.from_, end=q.to, kind=q.service,
                   number=q.number)
    if "text/csv" in request.headers.get("Accept", ""):
        return await _csv(request, f)
    rows = await account_usage_repo.items(
        request.app[POOL], f, after=decode_cursor(q.cursor, tuple[Timestamp, IntId]),
        limit=q.limit + 1)
    items, next_cursor = page(rows, q.limit, lambda u: (u.event_time, u.usage_id))
    return reply(UsageItemPage([_item(r) for r in items], next_cursor))


async def export_account_usage(request: web.Request) -> web.StreamResponse:
    account = await _account(request)
    q = decode_query(request, ItemQuery)
    return await _csv(request, ItemFilter(account_id=account.account_id, start=q.from_,
                                          end=q.to, kind=q.service, number=q.number))


# A cell starting with one of these is a formula to a spreadsheet; a caller id is whatever
# the calling party sent, so an export opened in one could run a third party's formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?")


def cell(text: str | None) -> str:
    """``text`` as a CSV cell a spreadsheet shows as text: one that would start a formula
    gets a leading apostrophe (OWASP's advice on CSV injection); a plain signed number such
    as +33611111111 stays as it is."""
    if not text:
        return ""
    if text.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


CSV_COLUMNS = ("usage_id", "event_time", "service", "calling", "called", "msisdn",
               "duration_s", "volume_up", "volume_down", "quantity", "unit", "zone", "band",
               "amount", "currency")


async def _csv(request: web.Request, f: ItemFilter) -> web.StreamResponse:
    return await stream_csv(request, request.app[POOL], f)


async def stream_csv(request: web.Request, db: asyncpg.Pool, f: ItemFilter
                     ) -> web.StreamResponse:
    """Every record of ``f`` (not a page: the whole span), streamed in chunks: the API's
    export and the customer portal's."""
    response = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": f'attachment; filename="usage-{f.account_id}.csv"'})
    await streams.begin(request, response)  # a year of records may outlast a request's timeout
    buffer = io.StringIO()
    out = csv.writer(buffer, lineterminator="\n")
    out.writerow(CSV_COLUMNS)
    after: tuple[dt.datetime, int] | None = None
    while True:
        rows = await account_usage_repo.items(db, f, after=after, limit=CSV_CHUNK)
        for r in rows:
            out.writerow((
                r.usage_id, r.event_time.isoformat().replace("+00:00", "Z"), cell(r.kind),
                cell(r.calling), cell(r.called), cell(r.msisdn), r.duration_s, r.volume_up,
                r.volume_down, cell(r.quantity), cell(r.unit), cell(r.zone), cell(r.band),
                "" if r.amount_micros is None else format_api(r.amount_micros),
                r.currency or ""))
        await streams.send(request, response, buffer.getvalue().encode())
        buffer.seek(0)
        buffer.truncate()
        if len(rows) < CSV_CHUNK:
            break
        after = (rows[-1].event_time, rows[-1].usage_id)
    await response.write_eof()
    return response


def current_period(now: dt.datetime, billing_day: int, timezone: str) -> str:
    """The cycle (YYYY-MM) an account with this billing day is in at ``now``."""
    local = now.astimezone(periods.zone(timezone)).date()
    year, month = local.year, local.month
    if local.day < billing_day:
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return f"{year:04d}-{month:02d}"


async def get_current_cycle(request: web.Request) -> web.Response:
    account = await _account(request)
    pool = request.app[POOL]
    now = dt.datetime.now(dt.UTC)
    period = current_period(now, account.billing_day, account.timezone)
    cycle = periods.cycle(period, account.billing_day, account.timezone)
    invoiced_end = await account_usage_repo.last_invoiced_end(
        pool, account.account_id, period, cycle.start, cycle.end)
    if invoiced_end is not None:
        cycle = periods.after(cycle, invoiced_end, account.timezone)
    rows = await account_usage_repo.totals(pool, account.account_id, cycle.start, cycle.end)
    charged: dict[str, int] = {}
    for t in rows:
        if t.currency is not None:
            charged[t.currency] = charged.get(t.currency, 0) + t.amount_micros
    return reply(CurrentCycle(
        account_id=account.account_id, period=period, start=cycle.start, end=cycle.end,
        as_of=now, records=sum(t.records for t in rows),
        charged=[money(m, c) for c, m in sorted(charged.items())],
        services=[ServiceTotal(service=t.kind, records=t.records, duration_s=t.duration_s,
                               volume=t.volume,
                               charged=None if t.currency is None
                               else money(t.amount_micros, t.currency)) for t in rows]))


async def get_balance(request: web.Request) -> web.Response:
    account = await _account(request)
    found = await balances.position(request.app[POOL], account.account_id)
    return reply(BalanceView(
        account_id=found.account_id,
        balances=[money(m, c) for c, m in sorted(found.balances.items())],
        open_invoices=[OpenInvoiceView(
            invoice_id=i.invoice_id, number=i.number, issued_on=i.issued_on,
            due_date=i.due_date, amount=money(i.amount_micros, i.currency),
            open=money(i.open_micros, i.currency)) for i in found.open_invoices]))


def register(api: Api) -> None:
    tag = "accounts"
    base = "/v1/accounts/{account_id}"
    api.add("GET", base + "/usage", list_account_usage, tag=tag, params=AccountPath,
            query=ItemQuery, response=UsageItemPage, roles=MINE,
            summary="The account's usage, one row per record with its charge (filters: "
                    "period, service, number); Accept: text/csv exports the whole span")
    api.add("GET", base + "/usage.csv", export_account_usage, tag=tag, params=AccountPath,
            query=ItemQuery, response=bytes, content_type="text/csv", roles=MINE,
            summary="The same records as CSV, the whole span (amounts as decimal strings)")
    api.add("GET", base + "/current-cycle", get_current_cycle, tag=tag, params=AccountPath,
            response=CurrentCycle, roles=MINE,
            summary="The cycle the account is in: usage to date and the charge so far")
    api.add("GET", base + "/balance", get_balance, tag=tag, params=AccountPath,
            response=BalanceView, roles=MINE,
            summary="The ledger balance per currency and the invoices still open")
