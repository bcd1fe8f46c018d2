"""`/v1/ledger/journal`: the general-ledger journal of a period (``server.ledger``)
as JSON, CSV (``.csv``) or the French FEC (``.fec``, named ``<SIREN>FEC<YYYYMMDD>.txt``).
Dates are days, both included."""

from __future__ import annotations

import datetime as dt
from typing import Literal

import msgspec
from aiohttp import web

from billing_oss.server.http.keys import CONFIG, POOL
from billing_oss.server.http.routing import Api
from billing_oss.server.http.validation import decode_query
from billing_oss.server.ledger import export


class JournalQuery(msgspec.Struct, frozen=True, kw_only=True):
    from_: dt.date = msgspec.field(name="from")
    to: dt.date


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


class JournalView(msgspec.Struct, frozen=True, kw_only=True):
    """Balanced: ``debit`` = ``credit``, and so is each entry. ``other_currencies``: the
    period also holds ledger entries in these, outside the books' currency."""

    from_: str = msgspec.field(name="from")
    to: str
    currency: str
    other_currencies: list[str]
    debit: str
    credit: str
    entries: list[JournalEntryView]


async def get_ledger_journal(request: web.Request) -> web.Response:
    q = decode_query(request, JournalQuery)
    j = await export.journal(request.app[POOL], request.app[CONFIG].ledger, q.from_, q.to)
    return web.Response(body=export.to_json(j), content_type="application/json")


async def get_ledger_journal_csv(request: web.Request) -> web.Response:
    q = decode_query(request, JournalQuery)
    j = await export.journal(request.app[POOL], request.app[CONFIG].ledger, q.from_, q.to)
    return web.Response(body=export.to_csv(j).encode(), content_type="text/csv", headers={
        "Content-Disposition": f'attachment; filename="journal-{q.from_}-{q.to}.csv"'})


async def get_ledger_journal_fec(request: web.Request) -> web.Response:
    q = decode_query(request, FecQuery)
    chart = request.app[CONFIG].ledger
    name = export.fec_name(chart.siren, q.to)
    j = await export.journal(request.app[POOL], chart, q.from_, q.to)
    body = export.to_fec(j, "|" if q.separator == "pipe" else "\t")
    return web.Response(body=body, content_type="text/plain", charset=export.FEC_ENCODING,
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})


def register(api: Api) -> None:
    tag = "ledger"
    api.add("GET", "/v1/ledger/journal", get_ledger_journal, tag=tag,
            summary="Journal entries of a period from the receivables ledger, balanced, on "
            "the configured chart of accounts", query=JournalQuery, response=JournalView,
            roles=("viewer",), errors=(422,))
    api.add("GET", "/v1/ledger/journal.csv", get_ledger_journal_csv, tag=tag,
            summary="The journal of a period as CSV, one row per journal line",
            query=JournalQuery, response=bytes, content_type="text/csv", roles=("viewer",),
            errors=(422,))
    api.add("GET", "/v1/ledger/journal.fec", get_ledger_journal_fec, tag=tag,
            summary="The journal of a period as the French FEC (article A47 A-1 LPF); 422 "
            "while ledger.siren is not set", query=FecQuery, response=bytes,
            content_type="text/plain", roles=("viewer",), errors=(422,))
