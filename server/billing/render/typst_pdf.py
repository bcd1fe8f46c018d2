"""Invoices and credit notes as PDF/A-3b documents (typst), each with its EN 16931 CII XML
attached as Factur-X (``factur-x.xml``, relationship Alternative) and the Factur-X XMP
metadata (server.billing.facturx).

The typst template is fixed; the document goes in as one JSON input with every amount
already formatted as a decimal string, so the PDF prints exactly the stored figures.
"""

from __future__ import annotations

import threading
from typing import Any

import msgspec
import typst

from billing_oss.server.billing.issuing import CreditNote, Invoice
from billing_oss.server.billing.render import cii, facturx
from billing_oss.server.billing.render.content import Rendition, of_credit_note, of_invoice
from billing_oss.server.billing.rounding import format_amount, plain, quantity_text

_local = threading.local()

TEMPLATE = r"""
#let d = json(bytes(sys.inputs.data))
#set document(title: d.title, author: d.seller.name)
#set page(paper: "a4", margin: (x: 18mm, y: 16mm),
  footer: text(8pt, fill: gray, d.title))
#set text(font: "Libertinus Serif", size: 9.5pt)
#set grid(stroke: 0.3pt + gray, inset: 4pt)
#let title(t) = block(above: 12pt, below: 6pt, text(11pt, weight: "bold", t))
#pdf.attach("factur-x.xml", bytes(sys.inputs.xml), relationship: "alternative",
  mime-type: "text/xml", description: d.attachment)
#grid(columns: (1fr, 1fr), stroke: none, inset: 0pt,
  [#text(13pt, weight: "bold", d.seller.name) \
   #d.seller.address \ #d.seller.postcode #d.seller.city \ #d.seller.country \
   VAT #d.seller.vat_id],
  align(right)[#text(16pt, weight: "bold", d.kind) \ No. #d.number
   #for f in d.facts [\ #f.label: #f.value]])
#v(8pt)
#block(stroke: 0.5pt + gray, inset: 8pt, width: 60%)[*Bill to* \ #d.buyer.name \
  Account #d.buyer.account_id \ #d.buyer.address \ #d.buyer.country
  #if d.buyer.vat_id != "" [\ VAT #d.buyer.vat_id]]
#for group in d.groups [
  #title(group.title)
  #grid(columns: (auto, 1fr, auto, auto, auto, auto),
    align: (left, left, right, right, right, right),
    [*No.*], [*Description*], [*Quantity*], [*Unit price*], [*VAT*], [*Amount #d.currency*],
    ..group.lines.map(l => (l.no, l.description, l.quantity, l.unit_price, l.vat, l.amount))
      .flatten())
]
#if d.allowances.len() > 0 [
  #title[Invoice discounts]
  #grid(columns: (1fr, auto, auto), align: (left, right, right),
    ..d.allowances.map(a => (a.reason, a.vat, "-" + a.amount)).flatten())
]
#title[VAT summary]
#grid(columns: (auto, auto, 1fr, 1fr), align: right,
  [*Category*], [*Rate*], [*Taxable #d.currency*], [*VAT #d.currency*],
  ..d.taxes.map(t => (t.category, t.rate + " %", t.taxable, t.tax)).flatten())
#align(right, grid(columns: (auto, auto), stroke: none, align: right,
  ..d.totals.map(t => (t.label, t.value)).flatten()))
#for n in d.notes [#emph(n) \ ]
*#d.terms_label:* #d.terms
#if d.usage.len() > 0 [
  #pagebreak()
  #title[Appendix: usage breakdown]
  Every usage line above is the sum of the rated records listed here by service and zone;
  each record is kept with its charge and can be requested by its line number.
  #v(4pt)
  #grid(columns: (auto, auto, auto, auto, auto), align: (left, left, right, right, right),
    [*Line*], [*Service / zone*], [*Records*], [*Usage*], [*Amount #d.currency*],
    ..d.usage.map(u => (u.no, u.what, u.records, u.usage, u.amount)).flatten())
]
"""

UNIT_NAMES = {"s": "s", "byte": "bytes", "message": "msg", "unit": "units", "month": "month"}


def _compiler() -> Any:
    compiler = getattr(_local, "compiler", None)
    if compiler is None:
        compiler = _local.compiler = typst.Compiler()
    return compiler


def render(invoice: Invoice) -> bytes:
    return render_rendition(of_invoice(invoice))


def render_credit_note(note: CreditNote, invoice: Invoice) -> bytes:
    return render_rendition(of_credit_note(note, invoice))


def render_rendition(doc: Rendition) -> bytes:
    xml = cii.rendition_xml(doc)
    return facturx.mark_pdf(typeset(doc, xml))


def typeset(doc: Rendition, xml: bytes) -> bytes:
    """The PDF/A-3b typst writes, ``xml`` attached, before the Factur-X XMP is added."""
    data = msgspec.json.encode(document_data(doc)).decode()
    pdf: bytes = _compiler().compile(TEMPLATE.encode(),
                                     sys_inputs={"data": data, "xml": xml.decode()},
                                     pdf_standards="a-3b", pdf_tags=False)
    return pdf


GROUPS = {"usage": "Usage", "recurring": "Subscriptions", "adjustment": "Adjustments",
          "credit": "Credited invoice lines"}


def document_data(doc: Rendition) -> dict[str, Any]:
    c = doc.content
    cur = c.currency

    def amount(micros: int) -> str:
        return format_amount(micros, cur)

    groups: dict[str, list[dict[str, str]]] = {}
    usage = []
    for ln in c.lines:
        shown = ln.inclusive_micros if c.tax_inclusive and ln.inclusive_micros is not None \
            else ln.net_micros
        qty = ln.charges if ln.kind == "usage" and ln.charges else ln.quantity
        groups.setdefault(GROUPS[ln.kind], []).append({
            "no": str(ln.line_no), "description": ln.description
            + (f" (discount {amount(ln.discount_micros)})" if ln.discount_micros else ""),
            "quantity": quantity_text(qty), "unit_price": cii.unit_price(shown, qty, cur),
            "vat": f"{ln.tax_category} {plain(ln.tax_rate)} %", "amount": amount(shown),
        })
        if ln.kind == "usage" and ln.charges:
            usage.append({"no": str(ln.line_no), "what": ln.description,
                          "records": str(ln.charges),
                          "usage": f"{quantity_text(ln.quantity)} "
                                   f"{UNIT_NAMES.get(ln.unit, ln.unit)}",
                          "amount": amount(ln.net_micros)})
    t = c.totals
    totals = [("Lines net", t.line_total_micros), ("Discounts", -t.allowance_micros),
              ("Total net", t.net_micros), ("VAT", t.tax_micros), ("Total", t.total_micros)]
    if t.rounding_micros:
        totals.append(("Rounding", t.rounding_micros))
    totals.append(("Amount credited" if doc.is_credit_note else "Amount due", t.payable_micros))
    buyer = {k: str(v) for k, v in c.buyer.items()}
    facts = [("Issue date", str(doc.issue_date or "-"))]
    if doc.is_credit_note:
        facts.append(("Credits invoice", f"{doc.preceding_number} of {doc.preceding_date}"))
        terms = (f"refunded or set off against open invoices of account "
                 f"{c.buyer.get('account_id', c.account_id)}, quoting {doc.number}.")
    else:
        facts.append(("Due date", str(doc.due_date or "-")))
        terms = (f"due {doc.due_date or 'on finalisation'}, by bank transfer to "
                 f"{c.seller.get('iban') or 'the account on file'}, quoting "
                 f"{doc.number if doc.issue_date else 'the invoice number'}.")
    facts.append(("Period", f"{c.period_start.date()} – {c.period_end.date()} (UTC)"))
    return {
        "title": doc.title, "kind": doc.heading, "number": doc.number,
        "facts": [{"label": label, "value": value} for label, value in facts],
        "attachment": f"Factur-X EN 16931 {doc.heading.lower()}",
        "currency": cur,
        "seller": {**dict.fromkeys(("name", "address", "postcode", "city", "country", "vat_id"),
                                   ""), **{k: str(v) for k, v in c.seller.items()}},
        "buyer": {"name": "", "address": "", "country": "", "vat_id": "", **buyer},
        "groups": [{"title": k, "lines": v} for k, v in groups.items()],
        "allowances": [{"reason": a.reason, "vat": f"{a.tax_category} {plain(a.tax_rate)} %",
                        "amount": amount(a.amount_micros)} for a in c.allowances],
        "taxes": [{"category": x.category, "rate": plain(x.rate),
                   "taxable": amount(x.taxable), "tax": amount(x.tax)} for x in c.taxes],
        "totals": [{"label": label, "value": f"{amount(v)} {cur}"} for label, v in totals],
        "notes": list(c.notes) + (["Prices include VAT."] if c.tax_inclusive else []),
        "terms_label": "Settlement" if doc.is_credit_note else "Payment terms",
        "terms": terms,
        "usage": usage,
    }
