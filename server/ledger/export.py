"""The journal of a period, and its three written forms: CSV, JSON and the French FEC.

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
from typing import Any

import msgspec

from billing_oss.core.errors import InvalidRequest
from billing_oss.core.money import format_minor
from billing_oss.server.collections.repo import Db
from billing_oss.server.config import LedgerConfig
from billing_oss.server.ledger import repo
from billing_oss.server.ledger.journal import Journal, JournalEntry, build

FORMATS = ("csv", "json", "fec")
FEC_COLUMNS = ("JournalCode", "JournalLib", "EcritureNum", "EcritureDate", "CompteNum",
               "CompteLib", "CompAuxNum", "CompAuxLib", "PieceRef", "PieceDate",
               "EcritureLib", "Debit", "Credit", "EcritureLet", "DateLet", "ValidDate",
               "Montantdevise", "Idevise")
FEC_ENCODING = "iso-8859-15"
CSV_COLUMNS = ("entry", "journal", "date", "piece_ref", "piece_date", "account",
               "account_label", "aux", "aux_label", "label", "debit", "credit", "currency",
               "ledger_entry_id", "kind")


async def journal(db: Db, chart: LedgerConfig, start: dt.date, end: dt.date) -> Journal:
    """The period's journal in the books' currency (``chart.currency``)."""
    if end < start:
        raise InvalidRequest(f"the period ends ({end}) before it starts ({start})")
    rows = await repo.entries(db, start, end, chart.currency)
    others = await repo.other_currencies(db, start, end, chart.currency)
    return build(rows, chart, start, end, tuple(others))


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
        "entries": [{
            "number": e.number, "journal": e.journal, "journal_label": e.journal_label,
            "date": e.date.isoformat(), "piece_ref": e.piece_ref,
            "piece_date": e.piece_date.isoformat(), "label": e.label,
            "account_id": e.account_id, "kind": e.kind, "ledger_entry_id": e.ledger_entry_id,
            "validated_on": e.validated_on.isoformat(),
            "lines": [{"account": ln.account, "account_label": ln.account_label,
                       "aux": ln.aux, "aux_label": ln.aux_label,
                       "debit": amount(ln.debit_micros, c),
                       "credit": amount(ln.credit_micros, c)} for ln in e.lines],
        } for e in j.entries],
    }


def to_csv(j: Journal) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for e in j.entries:
        for ln in e.lines:
            writer.writerow((e.number, e.journal, e.date.isoformat(), e.piece_ref,
                             e.piece_date.isoformat(), ln.account, ln.account_label,
                             ln.aux or "", ln.aux_label or "", e.label,
                             amount(ln.debit_micros, j.currency),
                             amount(ln.credit_micros, j.currency), j.currency,
                             e.ledger_entry_id, e.kind))
    return out.getvalue()


def to_fec(j: Journal, separator: str = "|") -> bytes:
    if separator not in ("|", "\t"):
        raise InvalidRequest("the FEC separates fields by '|' or a tab")
    lines = [separator.join(FEC_COLUMNS)]
    for e in j.entries:
        lines.extend(separator.join(_fec_field(v, separator) for v in _fec_row(e, ln, j))
                     for ln in e.lines)
    return ("\r\n".join(lines) + "\r\n").encode(FEC_ENCODING, errors="replace")


def fec_name(siren: str, end: dt.date) -> str:
    """``<SIREN>FEC<YYYYMMDD>.txt``; the SIREN is 9 digits."""
    if not re.fullmatch(r"\d{9}", siren):
        raise InvalidRequest(f"the FEC needs the company's SIREN (9 digits), set as"
                             f" ledger.siren; got {siren!r}")
    return f"{siren}FEC{end:%Y%m%d}.txt"


def _fec_row(e: JournalEntry, ln: Any, j: Journal) -> tuple[str, ...]:
    return (e.journal, e.journal_label, str(e.number), f"{e.date:%Y%m%d}", ln.account,
            ln.account_label, ln.aux or "", ln.aux_label or "", e.piece_ref,
            f"{e.piece_date:%Y%m%d}", e.label, amount(ln.debit_micros, j.currency, ","),
            amount(ln.credit_micros, j.currency, ","), "", "", f"{e.validated_on:%Y%m%d}",
            "", "")


def _fec_field(value: str, separator: str) -> str:
    """A field never holds the separator nor a line break."""
    return value.replace(separator, " ").replace("\r", " ").replace("\n", " ")

