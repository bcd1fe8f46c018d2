"""The journal of a period, and its three written forms: CSV, JSON and the French FEC.

The JSON journal of the API is served a page at a time by cursor (``page``), its period
totals apart (``totals``); the CSV and FEC are written a chunk of entries at a time
(``chunks``), read by the same cursor inside one snapshot, so that a period of any size
streams in bounded memory, byte for byte what ``to_csv`` and ``to_fec`` write for the whole
period at once.

The FEC (Fichier des Écritures Comptables, article A47 A-1 of the Livre des procédures
fiscales) is a flat file: a first line naming the 18 fields, then one line per journal line,
fields separated by ``|`` (or a tab), dates ``YYYYMMDD``, amounts with a comma as the
decimal mark and no thousands separator, ISO 8859-15 text; its name is
``<SIREN>FEC<YYYYMMDD>`` (the closing date of the period).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec

from billing_oss.core.errors import InvalidRequest
from billing_oss.core.money import format_minor
from billing_oss.server.collections import journal_days_repo
from billing_oss.server.collections.repo import Db
from billing_oss.server.config import LedgerConfig
from billing_oss.server.ledger import repo
from billing_oss.server.ledger.journal import Journal, JournalEntry, Line, build

FORMATS = ("csv", "json", "fec")
FEC_COLUMNS = ("JournalCode", "JournalLib", "EcritureNum", "EcritureDate", "CompteNum",
               "CompteLib", "CompAuxNum", "CompAuxLib", "PieceRef", "PieceDate",
               "EcritureLib", "Debit", "Credit", "EcritureLet", "DateLet", "ValidDate",
               "Montantdevise", "Idevise")
FEC_ENCODING = "iso-8859-15"
CSV_COLUMNS = ("entry", "journal", "date", "piece_ref", "piece_date", "account",
               "account_label", "aux", "aux_label", "label", "debit", "credit", "currency",
               "ledger_entry_id", "kind")
CHUNK = 2000  # entries per query while a CSV or FEC export streams


class Totals(msgspec.Struct, frozen=True, kw_only=True):
    """What the period's journal books in all: its entries, debit and credit."""

    entries: int
    debit_micros: int
    credit_micros: int
    other_currencies: tuple[str, ...]


async def journal(db: Db, chart: LedgerConfig, start: dt.date, end: dt.date) -> Journal:
    """The period's journal in the books' currency (``chart.currency``)."""
    check_period(start, end)
    rows = await repo.entries(db, start, end, chart.currency)
    others = await repo.other_currencies(db, start, end, chart.currency)
    return build(rows, chart, start, end, tuple(others))


def check_period(start: dt.date, end: dt.date) -> None:
    """A 422 for a period that ends before it starts."""
    if end < start:
        raise InvalidRequest(f"the period ends ({end}) before it starts ({start})")


async def page(db: Db, chart: LedgerConfig, start: dt.date, end: dt.date,
               after: tuple[dt.date, int, int] | None, limit: int) -> Journal:
    """Up to ``limit`` entries of the period's journal after ``after`` (the date, ledger
    entry id and number of the last entry served): numbered on from it, as the whole
    period's journal numbers them."""
    check_period(start, end)
    rows = await repo.entries_after(db, start, end, chart.currency,
                                    None if after is None else after[:2], limit)
    others = await repo.other_currencies(db, start, end, chart.currency)
    return build(rows, chart, start, end, tuple(others),
                 first=1 if after is None else after[2] + 1)


async def chunks(db: Db, chart: LedgerConfig, start: dt.date, end: dt.date,
                 size: int = CHUNK) -> AsyncIterator[Journal]:
    """The period's journal ``size`` entries at a time, numbered on across chunks. Read on
    one connection in one snapshot (repeatable read), the chunks are the whole period's
    journal as one query at that instant would read it."""
    check_period(start, end)
    after: tuple[dt.date, int] | None = None
    number = 1
    while True:
        rows = await repo.entries_after(db, start, end, chart.currency, after, size)
        if rows:
            yield build(rows, chart, start, end, first=number)
        if len(rows) < size:
            return
        number += len(rows)
        after = (rows[-1]["entry_date"], rows[-1]["entry_id"])


async def totals(db: Db, chart: LedgerConfig, start: dt.date, end: dt.date) -> Totals:
    """The period's entries, debit and credit, from the days the ledger's writers keep
    (``journal_days_repo``): a row per day of the period, whatever its entries. The days
    hold each entry as the builder books it (migration 1543), so the totals are the
    exports' to the micro-unit; ``totals_built`` sums the builder's own."""
    check_period(start, end)
    per_currency = await journal_days_repo.totals(db, start, end)
    books = per_currency.pop(chart.currency, journal_days_repo.DayTotals(0, 0, 0))
    return Totals(entries=books.entries, debit_micros=books.debit_micros,
                  credit_micros=books.credit_micros,
                  other_currencies=tuple(c for c, t in per_currency.items() if t.entries))


async def totals_built(db: Db, chart: LedgerConfig, start: dt.date, end: dt.date) -> Totals:
    """The period's entries, debit and credit, summed over ``chunks``: each entry booked
    by the builder, O(entries) (the benchmark's and the tests' reference)."""
    check_period(start, end)
    others = tuple(await repo.other_currencies(db, start, end, chart.currency))
    return await _summed(db, chart, start, end, others, CHUNK)


async def write(db: Db, chart: LedgerConfig, start: dt.date, end: dt.date, form: str,
                sink: Callable[[bytes], object], separator: str = "|",
                size: int = CHUNK) -> Totals:
    """The period's journal in ``form`` (csv, json, fec) handed to ``sink`` a chunk of
    ``size`` entries at a time: the bytes ``to_csv``, ``to_json`` (and a newline) and
    ``to_fec`` write for the whole period, in bounded memory. ``db`` holds one snapshot
    (repeatable read). The JSON names the period's debit and credit before its entries, so
    it is built twice over the snapshot: the sums first, then the entries."""
    check_period(start, end)
    others = tuple(await repo.other_currencies(db, start, end, chart.currency))
    if form == "json":
        sums = await _summed(db, chart, start, end, others, size)
        head = json_document(Journal(start=start, end=end, currency=chart.currency,
                                     entries=(), other_currencies=others))
        head.update(debit=amount(sums.debit_micros, chart.currency),
                    credit=amount(sums.credit_micros, chart.currency))
        sink(msgspec.json.encode(head)[:-len(b"[]}")] + b"[")
        first = True
        async for j in chunks(db, chart, start, end, size):
            body = b",".join(msgspec.json.encode(entry_document(e, j.currency))
                             for e in j.entries)
            sink(body if first else b"," + body)
            first = False
        sink(b"]}\n")
        return sums
    if form == "fec":
        sink(fec_head(separator))
        return await _summed(db, chart, start, end, others, size,
                             lambda j: sink(fec_body(j, separator)))
    if form == "csv":
        sink(csv_head().encode())
        return await _summed(db, chart, start, end, others, size,
                             lambda j: sink(csv_body(j).encode()))
    raise InvalidRequest(f"unknown format {form!r}; one of {', '.join(FORMATS)}")


async def _summed(db: Db, chart: LedgerConfig, start: dt.date, end: dt.date,
                  others: tuple[str, ...], size: int,
                  each: Callable[[Journal], object] = lambda j: None) -> Totals:
    """The chunks' entries, debit and credit summed, ``each`` chunk handed on as it comes."""
    entries = debit = credit = 0
    async for j in chunks(db, chart, start, end, size):
        each(j)
        entries, debit, credit = (entries + len(j.entries), debit + j.debit_micros,
                                  credit + j.credit_micros)
    return Totals(entries=entries, debit_micros=debit, credit_micros=credit,
                  other_currencies=others)


def amount(micros: int, currency: str, mark: str = ".") -> str:
    """The currency's minor digits (``money.format_minor``), ``mark`` as the decimal mark."""
    return format_minor(micros, currency).replace(".", mark)


def to_json(j: Journal) -> bytes:
    return msgspec.json.encode(json_document(j))


def json_document(j: Journal) -> dict[str, Any]:
    c = j.currency
    return {
        "from": j.start.isoformat(), "to": j.end.isoformat(), "currency": c,
        "other_currencies": list(j.other_currencies),
        "debit": amount(j.debit_micros, c), "credit": amount(j.credit_micros, c),
        "entries": [entry_document(e, c) for e in j.entries],
    }


def page_document(j: Journal, next_cursor: str | None) -> bytes:
    """A page of the API's JSON journal: the period, its entries on the page, the cursor
    of the next page (None on the last); the period's totals are ``totals``'."""
    return msgspec.json.encode({
        "from": j.start.isoformat(), "to": j.end.isoformat(), "currency": j.currency,
        "other_currencies": list(j.other_currencies),
        "entries": [entry_document(e, j.currency) for e in j.entries],
        "next_cursor": next_cursor})


def entry_document(e: JournalEntry, currency: str) -> dict[str, Any]:
    return {
        "number": e.number, "journal": e.journal, "journal_label": e.journal_label,
        "date": e.date.isoformat(), "piece_ref": e.piece_ref,
        "piece_date": e.piece_date.isoformat(), "label": e.label,
        "account_id": e.account_id, "kind": e.kind, "ledger_entry_id": e.ledger_entry_id,
        "validated_on": e.validated_on.isoformat(),
        "lines": [{"account": ln.account, "account_label": ln.account_label,
                   "aux": ln.aux, "aux_label": ln.aux_label,
                   "debit": amount(ln.debit_micros, currency),
                   "credit": amount(ln.credit_micros, currency)} for ln in e.lines],
    }


def to_csv(j: Journal) -> str:
    """The whole period's CSV at once (the CLI's); the API streams ``csv_head`` and
    ``csv_body`` chunks, the same bytes."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for e in j.entries:
        writer.writerows(_csv_row(e, ln, j.currency) for ln in e.lines)
    return out.getvalue()


def csv_head() -> str:
    return ",".join(CSV_COLUMNS) + "\n"  # the names need no quoting


def csv_body(j: Journal) -> str:
    """The rows of ``j``'s lines, without the header: a chunk of a streamed export."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for e in j.entries:
        writer.writerows(_csv_row(e, ln, j.currency) for ln in e.lines)
    return out.getvalue()


def _csv_row(e: JournalEntry, ln: Line, currency: str) -> tuple[object, ...]:
    return (e.number, e.journal, e.date.isoformat(), e.piece_ref, e.piece_date.isoformat(),
            ln.account, ln.account_label, ln.aux or "", ln.aux_label or "", e.label,
            amount(ln.debit_micros, currency), amount(ln.credit_micros, currency), currency,
            e.ledger_entry_id, e.kind)


def to_fec(j: Journal, separator: str = "|") -> bytes:
    """The whole period's FEC at once (the CLI's); the API streams ``fec_head`` and
    ``fec_body`` chunks, the same bytes."""
    if separator not in ("|", "\t"):
        raise InvalidRequest("the FEC separates fields by '|' or a tab")
    lines = [separator.join(FEC_COLUMNS)]
    for e in j.entries:
        lines.extend(separator.join(_fec_field(v, separator) for v in _fec_row(e, ln, j))
                     for ln in e.lines)
    return ("\r\n".join(lines) + "\r\n").encode(FEC_ENCODING, errors="replace")


def fec_head(separator: str = "|") -> bytes:
    if separator not in ("|", "\t"):
        raise InvalidRequest("the FEC separates fields by '|' or a tab")
    return (separator.join(FEC_COLUMNS) + "\r\n").encode(FEC_ENCODING)


def fec_body(j: Journal, separator: str = "|") -> bytes:
    """The lines of ``j``, each ended by CRLF, without the header: a chunk of a streamed
    export (ISO 8859-15 encodes a character at a time, so chunks concatenate exactly)."""
    return "".join(separator.join(_fec_field(v, separator) for v in _fec_row(e, ln, j))
                   + "\r\n" for e in j.entries for ln in e.lines
                   ).encode(FEC_ENCODING, errors="replace")


def fec_name(siren: str, end: dt.date) -> str:
    """``<SIREN>FEC<YYYYMMDD>.txt``; the SIREN is 9 digits."""
    if not re.fullmatch(r"\d{9}", siren):
        raise InvalidRequest(f"the FEC needs the company's SIREN (9 digits), set as"
                             f" ledger.siren; got {siren!r}")
    return f"{siren}FEC{end:%Y%m%d}.txt"


def _fec_row(e: JournalEntry, ln: Line, j: Journal) -> tuple[str, ...]:
    return (e.journal, e.journal_label, str(e.number), f"{e.date:%Y%m%d}", ln.account,
            ln.account_label, ln.aux or "", ln.aux_label or "", e.piece_ref,
            f"{e.piece_date:%Y%m%d}", e.label, amount(ln.debit_micros, j.currency, ","),
            amount(ln.credit_micros, j.currency, ","), "", "", f"{e.validated_on:%Y%m%d}",
            "", "")


def _fec_field(value: str, separator: str) -> str:
    """A field never holds the separator nor a line break."""
    return value.replace(separator, " ").replace("\r", " ").replace("\n", " ")

