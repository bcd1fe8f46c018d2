"""What the two renditions of a billing document — the PDF and the EN 16931 CII XML — are
made from: a header (type, number, dates, the invoice a credit note credits) and a content
in the invoice's shape, built from a stored invoice or from a credit note and its invoice.

A credit note is an EN 16931 credit note (UNTDID 1001 type 381): its amounts are positive,
the sign is in the type, and it names the invoice it corrects (BG-3, BT-25/BT-26). Its
lines are the credited invoice lines at their credited net amounts; where a full credit
takes the invoice's document-level discounts along, the difference between a category's
credited lines and its credited taxable amount is carried as a document-level allowance,
so lines − allowances = taxable amount, category by category, as on the invoice.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal
from typing import Final

import msgspec

from billing_oss.server.billing.issuing import CreditNote, Invoice
from billing_oss.server.billing.model import Allowance, InvoiceDraft, Line, Totals
from billing_oss.server.catalog.tax import CategoryTotal

INVOICE: Final = "380"  # UNTDID 1001 commercial invoice
CREDIT_NOTE: Final = "381"  # UNTDID 1001 credit note


class Rendition(msgspec.Struct, frozen=True, kw_only=True):
    type_code: str
    heading: str  # what the document calls itself: INVOICE, DRAFT INVOICE, CREDIT NOTE
    number: str
    issue_date: dt.date | None
    due_date: dt.date | None
    content: InvoiceDraft
    preceding_number: str | None = None  # credit notes: the invoice credited (BT-25)
    preceding_date: dt.date | None = None  # and its issue date (BT-26)
    # Lines left out of both renditions: zero-value usage lines that tell the customer
    # nothing (see ``noise``). The appendix still lists their usage.
    omitted: tuple[int, ...] = ()

    @property
    def printed_lines(self) -> tuple[Line, ...]:
        return tuple(ln for ln in self.content.lines if ln.line_no not in self.omitted)

    @property
    def title(self) -> str:
        return f"{self.heading.title()} {self.number}"

    @property
    def is_credit_note(self) -> bool:
        return self.type_code == CREDIT_NOTE


def of_invoice(invoice: Invoice) -> Rendition:
    final = invoice.status == "finalised"
    return Rendition(type_code=INVOICE, heading="INVOICE" if final else "DRAFT INVOICE",
                     number=invoice.number_text or f"DRAFT-{invoice.invoice_id}",
                     issue_date=invoice.issue_date, due_date=invoice.due_date,
                     content=invoice.content, omitted=noise(invoice.content.lines))


def noise(lines: tuple[Line, ...]) -> tuple[int, ...]:
    """Numbers of the zero-value usage lines: a product's price of a service not used in
    the cycle, and usage rated at 0.00 whose service a product prices on another line (the
    IoT plan's data). None when nothing else would be left: an invoice has a line (BR-16)."""
    priced = {ln.service for ln in lines if ln.kind == "usage" and ln.subscription_id is not None}
    out = []
    for ln in lines:
        if ln.kind != "usage" or ln.net_micros or ln.gross_micros or ln.discount_micros:
            continue
        if ln.subscription_id is not None:
            unused = Decimal(str(ln.detail.get("total_units", "0"))) == 0
        else:
            unused = ln.charges == 0 or ln.service in priced
        if unused:
            out.append(ln.line_no)
    return tuple(out) if len(out) < len(lines) else ()


def of_credit_note(note: CreditNote, invoice: Invoice) -> Rendition:
    inv = invoice.content
    lines = tuple(Line(
        line_no=seq, kind="credit", service="credit",
        description=f"{ln['description']} (invoice line {ln['line_no']})",
        quantity=Decimal(1), unit="unit", charges=0, gross_micros=ln["net_micros"],
        discount_micros=0, net_micros=ln["net_micros"], tax_category=ln["tax_category"],
        tax_rate=Decimal(ln["tax_rate"])) for seq, ln in enumerate(note.lines, 1))
    by_category: dict[tuple[str, Decimal], int] = defaultdict(int)
    for ln in lines:
        by_category[ln.tax_category, ln.tax_rate] += ln.net_micros
    reasons = {(t.category, t.rate): t.exemption_reason for t in inv.taxes}
    taxes = tuple(CategoryTotal(t["category"], Decimal(t["rate"]), t["taxable"], t["tax"],
                                exemption_reason=reasons.get((t["category"], Decimal(t["rate"]))))
                  for t in note.taxes)
    allowances = tuple(
        Allowance(seq=i, discount_id=None, reason=f"Discounts of invoice {invoice.number_text}",
                  amount_micros=by_category[t.category, t.rate] - t.taxable,
                  tax_category=t.category, tax_rate=t.rate)
        for i, t in enumerate((t for t in taxes
                               if by_category[t.category, t.rate] != t.taxable), 1))
    line_total = sum(ln.net_micros for ln in lines)
    content = msgspec.structs.replace(
        inv, tax_inclusive=False, lines=lines, allowances=allowances, taxes=taxes,
        totals=Totals(line_total_micros=line_total,
                      allowance_micros=sum(a.amount_micros for a in allowances),
                      net_micros=note.net_micros, tax_micros=note.tax_micros,
                      total_micros=note.total_micros, rounding_micros=note.rounding_micros,
                      payable_micros=note.payable_micros),
        notes=(f"Credits invoice {invoice.number_text}: {note.reason}", *inv.notes))
    return Rendition(type_code=CREDIT_NOTE, heading="CREDIT NOTE", number=note.number_text,
                     issue_date=note.issue_date, due_date=None, content=content,
                     preceding_number=invoice.number_text,
                     preceding_date=invoice.issue_date)
