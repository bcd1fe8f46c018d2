"""JSON shapes of invoices and credit notes: amounts as decimal strings, never floats."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec

from billing_oss.core.money import format_minor
from billing_oss.server.billing.issuing import CreditNote, Invoice
from billing_oss.server.billing.model import InvoiceDraft


class LineView(msgspec.Struct):
    line_no: int
    kind: str
    service: str
    description: str
    quantity: str
    unit: str
    charges: int
    gross: str
    discount: str
    net: str
    tax_category: str
    tax_rate: str
    inclusive: str | None = None
    detail: dict[str, Any] = {}


class TaxView(msgspec.Struct):
    category: str
    rate: str
    taxable: str
    tax: str
    exemption_reason: str | None = None


class AllowanceView(msgspec.Struct):
    reason: str
    amount: str
    tax_category: str
    tax_rate: str


class TotalsView(msgspec.Struct):
    line_total: str
    allowances: str
    net: str
    tax: str
    total: str
    rounding: str
    payable: str


class InvoiceView(msgspec.Struct):
    invoice_id: int | None
    account_id: str
    status: str
    number: str | None
    period: str
    period_start: dt.datetime
    period_end: dt.datetime
    currency: str
    issue_date: dt.date | None
    due_date: dt.date | None
    tax_inclusive: bool
    reverse_charge: bool
    rounding_method: str
    totals: TotalsView
    lines: list[LineView]
    allowances: list[AllowanceView]
    taxes: list[TaxView]
    seller: dict[str, Any]
    buyer: dict[str, Any]
    notes: list[str]
    credited: str = "0"


class CreditNoteView(msgspec.Struct):
    credit_note_id: int
    invoice_id: int
    account_id: str
    number: str
    invoice_number: str  # the invoice credited
    reason: str
    issue_date: dt.date
    currency: str
    net: str
    tax: str
    total: str
    rounding: str  # its share of the invoice's rounding amount (BT-114)
    payable: str  # what it refunds: total + rounding
    lines: list[dict[str, Any]]
    taxes: list[dict[str, Any]]


def invoice_view(invoice: Invoice) -> InvoiceView:
    view = draft_view(invoice.content)
    view.invoice_id = invoice.invoice_id
    view.status = invoice.status
    view.number = invoice.number_text
    view.issue_date = invoice.issue_date
    view.due_date = invoice.due_date
    view.credited = format_minor(invoice.credited_micros, invoice.content.currency)
    return view


def draft_view(d: InvoiceDraft) -> InvoiceView:
    cur = d.currency

    def amount(micros: int) -> str:
        return format_minor(micros, cur)

    t = d.totals
    return InvoiceView(
        invoice_id=None, account_id=d.account_id, status="preview", number=None,
        period=d.period, period_start=d.period_start, period_end=d.period_end, currency=cur,
        issue_date=None, due_date=None, tax_inclusive=d.tax_inclusive,
        reverse_charge=d.reverse_charge, rounding_method=d.rounding_method,
        totals=TotalsView(amount(t.line_total_micros), amount(t.allowance_micros),
                          amount(t.net_micros), amount(t.tax_micros), amount(t.total_micros),
                          amount(t.rounding_micros), amount(t.payable_micros)),
        lines=[LineView(
            line_no=ln.line_no, kind=ln.kind, service=ln.service, description=ln.description,
            quantity=str(ln.quantity), unit=ln.unit, charges=ln.charges,
            gross=str(format_minor(ln.gross_micros, cur)),
            discount=format_minor(ln.discount_micros, cur), net=amount(ln.net_micros),
            tax_category=ln.tax_category, tax_rate=str(ln.tax_rate),
            inclusive=None if ln.inclusive_micros is None else amount(ln.inclusive_micros),
            detail=ln.detail) for ln in d.lines],
        allowances=[AllowanceView(a.reason, amount(a.amount_micros), a.tax_category,
                                  str(a.tax_rate)) for a in d.allowances],
        taxes=[TaxView(t.category, str(t.rate), amount(t.taxable), amount(t.tax),
                       t.exemption_reason) for t in d.taxes],
        seller=d.seller, buyer=d.buyer, notes=list(d.notes),
    )


def credit_note_view(c: CreditNote) -> CreditNoteView:
    def amount(micros: int) -> str:
        return format_minor(micros, c.currency)

    return CreditNoteView(
        credit_note_id=c.credit_note_id, invoice_id=c.invoice_id, account_id=c.account_id,
        number=c.number_text, invoice_number=c.invoice_number, reason=c.reason,
        issue_date=c.issue_date, currency=c.currency,
        net=amount(c.net_micros), tax=amount(c.tax_micros), total=amount(c.total_micros),
        rounding=amount(c.rounding_micros), payable=amount(c.payable_micros),
        lines=[{**ln, "net": amount(ln["net_micros"])} for ln in c.lines],
        taxes=[{**t, "taxable": amount(t["taxable"]), "tax": amount(t["tax"])} for t in c.taxes],
    )
