"""Journal entries from the receivables ledger (DESIGN.md §9), one per ledger entry, each
balanced (Σ debit = Σ credit), on the configured chart of accounts.

What each ledger entry books (A its amount, the customer's account the auxiliary of the
receivables account):

- invoice: debit receivables A; credit revenue (net), VAT collected (tax), and rounding
  what the payable amount differs from net + tax;
- credit note: the reverse of an invoice, by the note's own net and tax;
- payment: debit bank, credit receivables; refund and returned payment: the reverse;
- fee (dunning): debit receivables, credit fees;
- write-off: debit write-off (net of the VAT relief) and VAT collected (the relief, the
  invoice's tax-to-payable share rounded down to the minor unit, as ``write_offs`` notes
  it), credit receivables; a write-off reversal is the reverse.

The receivables account's balance over every exported entry is therefore the collections
ledger's balance, to the micro-unit.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec

from billing_oss.core.rounding import minor_step
from billing_oss.server.config import LedgerConfig

LABELS = {  # CompteLib, by the role an account plays
    "receivables": "Clients", "revenue": "Prestations de services",
    "vat_collected": "TVA collectée", "bank": "Banque",
    "write_off": "Pertes sur créances irrécouvrables",
    "fees": "Produits des activités annexes", "rounding": "Écarts d'arrondi",
}
JOURNALS = {"sales": "Ventes", "bank": "Banque", "misc": "Opérations diverses"}


class Line(msgspec.Struct, frozen=True, kw_only=True):
    account: str  # the chart's account number
    account_label: str
    debit_micros: int
    credit_micros: int
    aux: str | None = None  # the customer's account id, on the receivables account
    aux_label: str | None = None


class JournalEntry(msgspec.Struct, frozen=True, kw_only=True):
    number: int  # continuous over the export, in date order
    journal: str
    journal_label: str
    date: dt.date
    piece_ref: str
    piece_date: dt.date
    label: str
    account_id: str
    currency: str
    validated_on: dt.date
    kind: str  # the ledger entry's kind
    ledger_entry_id: int
    lines: tuple[Line, ...]

    @property
    def debit_micros(self) -> int:
        return sum(line.debit_micros for line in self.lines)

    @property
    def credit_micros(self) -> int:
        return sum(line.credit_micros for line in self.lines)


class Journal(msgspec.Struct, frozen=True, kw_only=True):
    start: dt.date
    end: dt.date
    currency: str
    entries: tuple[JournalEntry, ...]
    other_currencies: tuple[str, ...] = ()  # the period holds entries in these too

    @property
    def debit_micros(self) -> int:
        return sum(e.debit_micros for e in self.entries)

    @property
    def credit_micros(self) -> int:
        return sum(e.credit_micros for e in self.entries)


class Unbalanced(AssertionError):
    """A journal entry whose debits and credits differ: a bug, never exported."""


def build(rows: list[Any], chart: LedgerConfig, start: dt.date, end: dt.date,
          other_currencies: tuple[str, ...] = (), first: int = 1) -> Journal:
    """The journal of ``rows``, numbered from ``first`` (a page or a chunk of the period
    continues the numbering of the entries before it)."""
    entries = []
    for number, row in enumerate(rows, start=first):
        entry = _entry(number, row, chart)
        if entry.debit_micros != entry.credit_micros:
            raise Unbalanced(f"ledger entry {row['entry_id']} ({row['kind']}) books debit "
                             f"{entry.debit_micros} and credit {entry.credit_micros}")
        entries.append(entry)
    return Journal(start=start, end=end, currency=chart.currency, entries=tuple(entries),
                   other_currencies=other_currencies)


def _entry(number: int, row: Any, chart: LedgerConfig) -> JournalEntry:
    kind, amount = row["kind"], abs(int(row["amount_micros"]))
    currency = row["currency"].strip()
    book = _Book(chart, row["account_id"], row["account_name"])
    journal, piece_ref, piece_date = "sales", "", row["entry_date"]
    if kind == "invoice":
        book.receivable(amount, 0)
        book.document(row["invoice_net"], row["invoice_tax"], amount, sign=1)
        piece_ref, piece_date = row["invoice_number"], row["invoice_date"]
    elif kind == "credit_note":
        book.receivable(0, amount)
        book.document(row["note_net"], row["note_tax"], amount, sign=-1)
        piece_ref, piece_date = row["note_number"], row["note_date"]
    elif kind == "payment":
        journal = "bank"
        book.line("bank", amount, 0)
        book.receivable(0, amount)
        piece_ref, piece_date = _payment_ref(row), row["payment_date"]
    elif kind in ("refund", "reversal"):
        journal = "bank"
        book.receivable(amount, 0)
        book.line("bank", 0, amount)
        piece_ref = f"{_payment_ref(row)}-{'RF' if kind == 'refund' else 'RV'}{row['entry_id']}"
    elif kind == "fee":
        book.receivable(amount, 0)
        book.line("fees", 0, amount)
        piece_ref = f"FEE-{row['entry_id']}"
    elif kind in ("write_off", "write_off_reversal"):
        journal = "misc"
        relief = _vat_relief(amount, row, currency)
        off = kind == "write_off"
        book.line("write_off", *_side(amount - relief, debit=off))
        book.line("vat_collected", *_side(relief, debit=off))
        book.receivable(*_side(amount, debit=not off))
        piece_ref = f"{'WO' if off else 'WOR'}-{row['entry_id']}"
    else:
        raise ValueError(f"ledger entry {row['entry_id']}: unknown kind {kind!r}")
    code = {"sales": chart.sales_journal, "bank": chart.bank_journal,
            "misc": chart.misc_journal}[journal]
    return JournalEntry(
        number=number, journal=code, journal_label=JOURNALS[journal], date=row["entry_date"],
        piece_ref=piece_ref or f"LE-{row['entry_id']}", piece_date=piece_date or row["entry_date"],
        label=row["description"] or kind, account_id=row["account_id"], currency=currency,
        validated_on=max(row["booked_on"], row["entry_date"]), kind=kind,
        ledger_entry_id=row["entry_id"], lines=tuple(book.lines))


def _side(amount: int, *, debit: bool) -> tuple[int, int]:
    return (amount, 0) if debit else (0, amount)


def _payment_ref(row: Any) -> str:
    return f"PAY-{row['payment_id']}"


def _vat_relief(amount: int, row: Any, currency: str) -> int:
    """The VAT share of a written-off amount, as ``collections.write_offs`` computes it."""
    tax, payable = row["invoice_tax"], row["invoice_payable"]
    if not tax or not payable:
        return 0
    relief = amount * int(tax) // int(payable)
    return int(relief - relief % minor_step(currency))


class _Book:
    """The lines of one entry; zero lines are left out."""

    def __init__(self, chart: LedgerConfig, account_id: str, account_name: str | None) -> None:
        self.chart, self.account_id = chart, account_id
        self.account_name = account_name or account_id
        self.lines: list[Line] = []

    def line(self, role: str, debit: int, credit: int, *, aux: bool = False) -> None:
        if debit == 0 and credit == 0:
            return
        if debit < 0 or credit < 0:  # a negative amount books on the other side
            debit, credit = max(debit, 0) - min(credit, 0), max(credit, 0) - min(debit, 0)
        self.lines.append(Line(
            account=getattr(self.chart, role), account_label=LABELS[role], debit_micros=debit,
            credit_micros=credit, aux=self.account_id if aux else None,
            aux_label=self.account_name if aux else None))

    def receivable(self, debit: int, credit: int) -> None:
        self.line("receivables", debit, credit, aux=True)

    def document(self, net: int, tax: int, amount: int, *, sign: int) -> None:
        """An invoice's (sign 1: credits) or a credit note's (sign -1: debits) revenue, VAT
        and rounding; the rounding line takes what ``amount`` differs from net + tax."""
        net, tax = int(net or 0), int(tax or 0)
        rounding = amount - net - tax
        for role, value in (("revenue", net), ("vat_collected", tax), ("rounding", rounding)):
            self.line(role, *((0, value) if sign > 0 else (value, 0)))
