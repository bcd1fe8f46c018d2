"""`/v1/ledger/journal`: the general-ledger journal of a period (``server.ledger``)
as JSON pages by cursor, its totals (``/totals``), or the whole period streamed as CSV
(``.csv``) or the French FEC (``.fec``, named ``<SIREN>FEC<YYYYMMDD>.txt``). Dates are days,
both included."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Literal

import msgspec
from aiohttp import web

from billing_oss.server.http import streams
from billing_oss.server.http.keys import CONFIG, POOL
from billing_oss.server.http.pagination import Cursor, Limit, decode_cursor, page
from billing_oss.server.http.routing import Api, reply
from billing_oss.server.http.validation import decode_query
from billing_oss.server.ledger import export
from billing_oss.server.ledger.journal import Journal


class JournalQuery(msgspec.Struct, frozen=True, kw_only=True):
    from_: dt.date = msgspec.field(name="from")
    to: dt.date


class JournalPageQuery(JournalQuery, frozen=True, kw_only=True):
    limit: Limit = 50
    cursor: Cursor | None = None


class FecQuery(JournalQuery, frozen=True, kw_only=True):
    separator: Literal["pipe", "tab"] = "pipe"


class JournalLine(msgspec.Struct, frozen=True, kw_only=True):
    account: str
    account_label: str
    aux: str | None
    aux_label: str | None
    debit: str
    credit: str


class JournalEntryView(msgspec.Struct, frozen=True, kw_only=True):
    number: int
    journal: str
    journal_label: str
    date: str
    piece_ref: str
    piece_date: str
    label: str
    account_id: str
    kind: str
    ledger_entry_id: int
    validated_on: str
    lines: list[JournalLine]


class JournalPage(msgspec.Struct, frozen=True, kw_only=True):
    """A page of the period's journal, entries numbered as in the whole period's; each entry
    is balanced. ``other_currencies``: the period also holds ledger entries in these,
    outside the books' currency. The period's debit and credit: ``/totals``."""

    from_: str = msgspec.field(name="from")
    to: str
    currency: str
    other_currencies: list[str]
    entries: list[JournalEntryView]
    next_cursor: str | None


class JournalTotals(msgspec.Struct, frozen=True, kw_only=True):
    """The whole period's journal: its entries, and its debit = its credit."""

    from_: str = msgspec.field(name="from")
    to: str
    currency: str
    other_currencies: list[str]
    entries: int
    debit: str
    credit: str


async def get_ledger_journal(request: web.Request) -> web.Response:
    q = decode_query(request, JournalPageQuery)
    # The cursor carries the last entry's number, so that a page numbers its entries on
    # from it without counting the period's entries before it.
    after = decode_cursor(q.cursor, tuple[dt.date, int, int])
    j = await export.page(request.app[POOL], request.app[CONFIG].ledger, q.from_, q.to,
                          after, q.limit + 1)
    entries, next_cursor = page(j.entries, q.limit,
                                lambda e: (e.date, e.ledger_entry_id, e.number))
    return web.Response(
        body=export.page_document(msgspec.structs.replace(j, entries=tuple(entries)),
                                  next_cursor), content_type="application/json")


async def get_ledger_journal_totals(request: web.Request) -> web.Response:
    q = decode_query(request, JournalQuery)
    chart = request.app[CONFIG].ledger
    t = await export.totals(request.app[POOL], chart, q.from_, q.to)
    return reply(JournalTotals(
        from_=q.from_.isoformat(), to=q.to.isoformat(), currency=chart.currency,
        other_currencies=list(t.other_currencies), entries=t.entries,
        debit=export.amount(t.debit_micros, chart.currency),
        credit=export.amount(t.credit_micros, chart.currency)))


async def get_ledger_journal_csv(request: web.Request) -> web.StreamResponse:
    q = decode_query(request, JournalQuery)
    return await _stream(request, q, f"journal-{q.from_}-{q.to}.csv", "text/csv", None,
                         export.csv_head().encode(), lambda j: export.csv_body(j).encode())


async def get_ledger_journal_fec(request: web.Request) -> web.StreamResponse:
    q = decode_query(request, FecQuery)
    name = export.fec_name(request.app[CONFIG].ledger.siren, q.to)
    separator = "|" if q.separator == "pipe" else "\t"
    return await _stream(request, q, name, "text/plain", export.FEC_ENCODING,
                         export.fec_head(separator), lambda j: export.fec_body(j, separator))


async def _stream(request: web.Request, q: JournalQuery, name: str, content_type: str,
                  charset: str | None, head: bytes, body: Callable[[Journal], bytes]
                  ) -> web.StreamResponse:
    """The whole period, ``export.CHUNK`` entries a query, each chunk sent as it is written.

    One snapshot (repeatable read) for the whole export: a document for the books is the
    ledger at one instant, numbered without gap even while entries are posted. An entry the
    builder refuses (``Unbalanced``) after the first bytes went out drops the connection
    (``streams``), so the client sees a broken transfer, never a short file."""
    export.check_period(q.from_, q.to)  # before the status line goes out
    chart = request.app[CONFIG].ledger
    response = web.StreamResponse(headers={
        "Content-Disposition": f'attachment; filename="{name}"'})
    response.content_type = content_type
    if charset:
        response.charset = charset
    async with request.app[POOL].acquire() as conn, conn.transaction(
            isolation="repeatable_read", readonly=True):
        await streams.begin(request, response)  # runs to its end, however long the period
        await streams.send(request, response, head)
        async for j in export.chunks(conn, chart, q.from_, q.to):
            await streams.send(request, response, body(j))
    await response.write_eof()
    return response


def register(api: Api) -> None:
    tag = "ledger"
    api.add("GET", "/v1/ledger/journal", get_ledger_journal, tag=tag,
            summary="Journal entries of a period from the receivables ledger, balanced, on "
            "the configured chart of accounts, a page at a time by cursor",
            query=JournalPageQuery, response=JournalPage, roles=("viewer",), errors=(422,))
    api.add("GET", "/v1/ledger/journal/totals", get_ledger_journal_totals, tag=tag,
            summary="The period's journal in all: entries, debit and credit (read from the "
            "days kept at posting: a row per day of the period)", query=JournalQuery,
            response=JournalTotals, roles=("viewer",), errors=(422,))
    api.add("GET", "/v1/ledger/journal.csv", get_ledger_journal_csv, tag=tag,
            summary="The journal of a period as CSV, one row per journal line, streamed",
            query=JournalQuery, response=bytes, content_type="text/csv", roles=("viewer",),
            errors=(422,))
    api.add("GET", "/v1/ledger/journal.fec", get_ledger_journal_fec, tag=tag,
            summary="The journal of a period as the French FEC (article A47 A-1 LPF); 422 "
            "while ledger.siren is not set; streamed", query=FecQuery, response=bytes,
            content_type="text/plain", roles=("viewer",), errors=(422,))
