"""Stored invoices: read them back, finalise them (gapless numbers), credit them.

Numbers come from ``document_series`` by an UPDATE inside the finalising transaction: the
row lock queues concurrent finalisers, and a rollback or a crash before COMMIT returns the
number — so a series has no gap and no duplicate. The database refuses any later change to
a finalised invoice (a row trigger, migration 0300); corrections are credit notes. Both
write their ledger entries here, in the same transaction (``server.collections.postings``).
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from decimal import Decimal
from typing import Any, cast

import msgspec

from billing_oss.core.errors import Conflict, InvalidRequest, NotFound
from billing_oss.core.money import format_micros, format_minor, micros_of_decimal
from billing_oss.core.rounding import (
    Method,
    minor_digits,
    minor_step,
)
from billing_oss.server.billing import documents_repo
from billing_oss.server.billing.documents_repo import take_numbers
from billing_oss.server.billing.model import Allowance, InvoiceDraft, Line, Totals
from billing_oss.server.catalog.tax import CategoryTotal, tax_on
from billing_oss.server.collections import postings
from billing_oss.server.integrations import events, outbox
from billing_oss.server.store import audit
from billing_oss.server.store.pool import Connection


class Invoice(msgspec.Struct, frozen=True):
    invoice_id: int
    account_id: str
    status: str
    number_text: str | None
    issue_date: dt.date | None
    due_date: dt.date | None
    content: InvoiceDraft
    credited_micros: int = 0


class CreditRequest(msgspec.Struct, frozen=True):
    line_no: int
    amount: Decimal | None = None  # net amount to credit; None: what is left of the line


class CreditNote(msgspec.Struct, frozen=True):
    credit_note_id: int
    account_id: str
    invoice_id: int
    invoice_number: str
    number_text: str
    reason: str
    issue_date: dt.date
    currency: str
    net_micros: int
    tax_micros: int
    total_micros: int
    lines: list[dict[str, Any]]
    taxes: list[dict[str, Any]]
    rounding_micros: int = 0  # its share of the invoice's rounding amount (BT-114)

    @property
    def payable_micros(self) -> int:
        """What the note refunds."""
        return self.total_micros + self.rounding_micros


def number_text(series: str, number: int) -> str:
    return f"{series}-{number:06d}"


async def finalise(conn: Connection, invoice_ids: list[int], series: str, today: dt.date,
                   payment_terms_days: int, *, actor: str) -> list[int]:
    """Finalise drafts in one transaction, numbered in invoice-id order; already finalised
    ones are left as they are (finalising is idempotent). Returns the ids finalised now.
    Each one finalised gets its audit entry (``invoice:<id>``) in the same transaction."""
    async with conn.transaction():
        rows = await documents_repo.lock_invoices(conn, invoice_ids)
        missing = set(invoice_ids) - {r["invoice_id"] for r in rows}
        if missing:
            raise NotFound(f"no invoice {min(missing)}", invoice_id=min(missing))
        drafts = [r for r in rows if r["status"] == "draft"]
        if not drafts:
            return []
        first = await take_numbers(conn, series, len(drafts))
        numbers = list(range(first, first + len(drafts)))
        due = today + dt.timedelta(days=payment_terms_days)
        done = await documents_repo.mark_finalised(
            conn, series, today, due, [r["account_id"] for r in drafts],
            [r["invoice_id"] for r in drafts], numbers, [number_text(series, n) for n in numbers])
        await postings.post_invoices(conn, done)
        await outbox.emit_many(conn, [(events.InvoiceFinalised(
            invoice_id=r["invoice_id"], number=r["number_text"], issue_date=today.isoformat(),
            due_date=due.isoformat(), currency=r["currency"],
            total=format_minor(r["payable_micros"], r["currency"])), r["account_id"])
            for r in sorted(done, key=lambda r: r["invoice_id"])])
        # Last in the transaction: the audit head stays locked only until the commit.
        await audit.record_many(conn, actor, "invoice.finalise", [
            (f"invoice:{r['invoice_id']}", {"status": "draft"},
             {"status": "finalised", "account_id": r["account_id"],
              "number": number_text(series, n), "issue_date": today.isoformat(),
              "due_date": due.isoformat()})
            for r, n in zip(drafts, numbers, strict=True)])
    return [r["invoice_id"] for r in drafts]


class Due(msgspec.Struct, frozen=True):
    due: list[int]  # drafts whose grace period is over (or all of them, when forced)
    waiting: list[int]  # drafts still in their grace period
    waiting_until: dt.datetime | None  # when the last of them may be finalised


async def drafts_due(conn: Connection, period: str, accounts: list[str] | None,
                     grace_days: int, now: dt.datetime, *, force: bool = False) -> Due:
    """Drafts of a period ready to be finalised: their cycle ended ``grace_days`` ago."""
    rows = await documents_repo.drafts_of_period(conn, period, accounts)
    grace = dt.timedelta(days=grace_days)
    waiting = [r for r in rows if not force and r["period_end"] + grace > now]
    return Due(due=[r["invoice_id"] for r in rows if force or r["period_end"] + grace <= now],
               waiting=[r["invoice_id"] for r in waiting],
               waiting_until=max((r["period_end"] + grace for r in waiting), default=None))


async def load(conn: Connection, invoice_id: int) -> Invoice:
    stored = await documents_repo.invoice_rows(conn, invoice_id)
    if stored is None:
        raise NotFound(f"no invoice {invoice_id}", invoice_id=invoice_id)
    head, lines, allowances, taxes, credited = stored
    content = InvoiceDraft(
        account_id=head["account_id"], currency=head["currency"].strip(), period=head["period"],
        period_start=head["period_start"], period_end=head["period_end"],
        tax_inclusive=head["tax_inclusive"], reverse_charge=head["reverse_charge"],
        rounding_method=head["rounding_method"],
        lines=tuple(_line(r) for r in lines),
        allowances=tuple(Allowance(r["seq"], r["discount_id"], r["reason"], r["amount_micros"],
                                   r["tax_category"], r["tax_rate"]) for r in allowances),
        taxes=tuple(CategoryTotal(r["category"], r["rate"], r["taxable_micros"], r["tax_micros"],
                                  exemption_reason=r["exemption_reason"]) for r in taxes),
        totals=Totals(head["line_total_micros"], head["allowance_micros"], head["net_micros"],
                      head["tax_micros"], head["total_micros"], head["rounding_micros"],
                      head["payable_micros"]),
        seller=json.loads(head["seller"]), buyer=json.loads(head["buyer"]),
        notes=tuple(n for n in head["notes"].split("\n") if n),
    )
    return Invoice(invoice_id=invoice_id, account_id=head["account_id"], status=head["status"],
                   number_text=head["number_text"], issue_date=head["issue_date"],
                   due_date=head["due_date"], content=content, credited_micros=int(credited))


def _line(r: Any) -> Line:
    detail = json.loads(r["detail"])
    return Line(
        line_no=r["line_no"], kind=r["kind"], service=r["service"],
        description=r["description"], quantity=r["quantity"], unit=r["unit"],
        charges=r["charges"], gross_micros=r["gross_micros"],
        discount_micros=r["discount_micros"], net_micros=r["net_micros"],
        tax_category=r["tax_category"], tax_rate=r["tax_rate"],
        inclusive_micros=r["inclusive_micros"], zone=detail.get("zone"),
        subscription_id=r["subscription_id"], adjustment_id=r["adjustment_id"], detail=detail,
    )


async def issue_credit_note(conn: Connection, invoice_id: int, reason: str,
                            requests: list[CreditRequest] | None, series: str,
                            today: dt.date, *, actor: str) -> CreditNote:
    """Credit a finalised invoice in full (``requests`` None) or some lines in part. The sum
    of an invoice's credit notes never exceeds it: per line, per tax category and in total,
    checked under the invoice's row lock; what the notes refund together never exceeds what
    was payable. The note's audit entry commits with it."""
    async with conn.transaction():
        locked = await documents_repo.lock_invoice(conn, invoice_id)
        if locked is None:
            raise NotFound(f"no invoice {invoice_id}", invoice_id=invoice_id)
        if locked["status"] != "finalised":
            raise Conflict(f"invoice {invoice_id} is a draft: recompute it instead of crediting")
        invoice = await load(conn, invoice_id)
        before = await documents_repo.credits_of(conn, invoice.account_id, invoice_id)
        lines, taxes = _credit(invoice, before, requests)
        net = sum(t["taxable"] for t in taxes)
        tax = sum(t["tax"] for t in taxes)
        if net + tax <= 0:
            raise _invalid("$.invoice_id", f"nothing left to credit on invoice {invoice_id}")
        rounding = _rounding(invoice, before, taxes)
        if invoice.credited_micros + net + tax + rounding > invoice.content.totals.payable_micros:
            raise _invalid("$.lines", f"credit notes would exceed what invoice {invoice_id} "
                           "made payable")
        number = await take_numbers(conn, series, 1)
        text = number_text(series, number)
        credit_id = await documents_repo.insert_credit_note(
            conn, invoice.account_id, invoice_id, series, number, text, reason, today,
            invoice.content.currency, net, tax, net + tax, json.dumps(lines), json.dumps(taxes),
            rounding)
        await postings.post_credit_note(
            conn, account_id=invoice.account_id, invoice_id=invoice_id,
            credit_note_id=credit_id, number_text=text, currency=invoice.content.currency,
            payable_micros=net + tax + rounding, issue_date=today)
        note = CreditNote(credit_note_id=credit_id, account_id=invoice.account_id,
                          invoice_id=invoice_id, invoice_number=str(invoice.number_text),
                          number_text=text, reason=reason,
                          issue_date=today, currency=invoice.content.currency, net_micros=net,
                          tax_micros=tax, total_micros=net + tax, lines=lines, taxes=taxes,
                          rounding_micros=rounding)
        await outbox.emit(conn, events.CreditNoteIssued(
            credit_note_id=credit_id, number=text, invoice_id=invoice_id,
            invoice_number=note.invoice_number, issue_date=today.isoformat(),
            currency=note.currency, total=format_minor(net + tax, note.currency),
            reason=reason), account_id=invoice.account_id)
        await audit.record(conn, actor, "credit_note.issue", f"credit_note:{credit_id}", None,
                           note)
    return note


async def load_credit_note(conn: Connection, credit_note_id: int) -> CreditNote:
    row = await documents_repo.credit_note_row(conn, credit_note_id)
    if row is None:
        raise NotFound(f"no credit note {credit_note_id}", credit_note_id=credit_note_id)
    return CreditNote(
        credit_note_id=credit_note_id, account_id=row["account_id"],
        invoice_id=row["invoice_id"], invoice_number=row["invoice_number"],
        number_text=row["number_text"], reason=row["reason"], issue_date=row["issue_date"],
        currency=row["currency"].strip(), net_micros=row["net_micros"],
        tax_micros=row["tax_micros"], total_micros=row["total_micros"],
        lines=json.loads(row["lines"]), taxes=json.loads(row["taxes"]),
        rounding_micros=row["rounding_micros"])


def _credit(invoice: Invoice, before: list[Any], requests: list[CreditRequest] | None,
            ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    content = invoice.content
    credited_line: dict[int, int] = defaultdict(int)
    credited_cat: dict[tuple[str, str], tuple[int, int]] = defaultdict(lambda: (0, 0))
    for row in before:
        for ln in json.loads(row["lines"]):
            credited_line[ln["line_no"]] += ln["net_micros"]
        for t in json.loads(row["taxes"]):
            n, x = credited_cat[t["category"], t["rate"]]
            credited_cat[t["category"], t["rate"]] = (n + t["taxable"], x + t["tax"])
    by_no = {ln.line_no: ln for ln in content.lines}
    left = {c: (t.taxable - credited_cat[c][0], t.tax - credited_cat[c][1])
            for t in content.taxes for c in [(t.category, str(t.rate))]}
    if requests is None:  # full: what is left, category by category, tax included exactly
        lines = [_credit_line(ln, ln.net_micros - credited_line[ln.line_no])
                 for ln in content.lines if ln.net_micros != credited_line[ln.line_no]]
        taxes = [{"category": c[0], "rate": c[1], "taxable": n, "tax": x}
                 for c, (n, x) in sorted(left.items()) if n or x]
        return lines, taxes
    lines = []
    sums: dict[tuple[str, str], int] = defaultdict(int)
    for i, req in enumerate(requests):
        ln = by_no.get(req.line_no)
        if ln is None:
            raise _invalid(f"$.lines[{i}].line_no",
                           f"invoice {invoice.invoice_id} has no line {req.line_no}")
        remaining = ln.net_micros - credited_line[ln.line_no]
        amount = remaining if req.amount is None else micros_of_decimal(req.amount)
        if amount % minor_step(content.currency):  # EN 16931: amounts in the minor unit
            raise _invalid(f"$.lines[{i}].amount",
                           f"line {req.line_no}: {format_micros(amount)} has more decimals "
                           f"than {content.currency} has ({minor_digits(content.currency)})")
        if amount <= 0 or amount > remaining:
            raise _invalid(f"$.lines[{i}].amount",
                           f"line {req.line_no}: can credit more than 0 and at most "
                           f"{format_minor(remaining, content.currency)} (asked "
                           f"{format_micros(amount)})")
        credited_line[ln.line_no] += amount
        lines.append(_credit_line(ln, amount))
        sums[ln.tax_category, str(ln.tax_rate)] += amount
    taxes = []
    for c, net in sorted(sums.items()):
        n_left, x_left = left[c]
        if net > n_left:
            raise _invalid("$.lines", f"tax category {c[0]} {c[1]}%: credits would exceed "
                           "its taxable amount")
        # the tax on all the category's credits so far less the tax already credited: each
        # note's tax follows its taxable amount, and the notes add up to the invoice's tax
        n_before, x_before = credited_cat[c]
        cumulative = tax_on(n_before + net, Decimal(c[1]), content.currency,
                            cast(Method, content.rounding_method))
        tax = max(0, min(x_left, cumulative - x_before))
        taxes.append({"category": c[0], "rate": c[1], "taxable": net, "tax": tax})
    return lines, taxes


def _rounding(invoice: Invoice, before: list[Any], taxes: list[dict[str, Any]]) -> int:
    """The note's share of the invoice's rounding amount (BT-114): what is left of it when
    the note completes the credit, so the notes refund exactly what was payable; before
    that, as much of a negative one as keeps the notes within what was payable."""
    totals = invoice.content.totals
    left = totals.rounding_micros - sum(int(r["rounding_micros"]) for r in before)
    credited: dict[tuple[str, str], tuple[int, int]] = defaultdict(lambda: (0, 0))
    for t in [*(t for r in before for t in json.loads(r["taxes"])), *taxes]:
        n, x = credited[t["category"], t["rate"]]
        credited[t["category"], t["rate"]] = (n + t["taxable"], x + t["tax"])
    if all(credited[t.category, str(t.rate)] == (t.taxable, t.tax)
           for t in invoice.content.taxes):
        return left
    over = invoice.credited_micros + sum(t["taxable"] + t["tax"] for t in taxes) \
        - totals.payable_micros
    return max(left, -over) if left < 0 and over > 0 else 0


def _invalid(path: str, message: str) -> InvalidRequest:
    """A credit request the invoice cannot honour, naming the request field at fault."""
    return InvalidRequest(message, errors=[{"location": "body", "path": path,
                                            "message": message}])


def _credit_line(ln: Line, amount: int) -> dict[str, Any]:
    return {"line_no": ln.line_no, "description": ln.description, "net_micros": amount,
            "tax_category": ln.tax_category, "tax_rate": str(ln.tax_rate)}
