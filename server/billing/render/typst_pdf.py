"""Invoices and credit notes as PDF/A-3b documents (typst), each with its EN 16931 CII XML
attached as Factur-X (``factur-x.xml``, relationship Alternative) and the Factur-X XMP
metadata (server.billing.facturx).

The typst template is fixed; the document goes in as one JSON file with every amount
already formatted as a decimal string, so the PDF prints exactly the stored figures.
"""

from __future__ import annotations

import datetime as dt
from functools import partial
from typing import Any

import msgspec

from billing_oss.core.money import format_printed
from billing_oss.core.rounding import plain
from billing_oss.server.billing.issuing import CreditNote, Invoice
from billing_oss.server.billing.model import InvoiceDraft
from billing_oss.server.billing.render import (
    cii,
    columns,
    facturx,
    itemised,
    mono_pages,
    page,
    tables,
)
from billing_oss.server.billing.render.content import Rendition, of_credit_note, of_invoice
from billing_oss.server.render import typst_compiler

TEMPLATE = r"""
#let d = json("data.json")
#set document(title: d.title, author: d.seller.name)
#set page(paper: "a4", margin: (x: MARGIN_X_MMmm, y: 16mm),
  footer: text(8pt, fill: gray, d.title))
#set text(font: "FONT", size: SIZE_PTpt)
#let title(t) = block(above: 12pt, below: 6pt, text(11pt, weight: "bold", t))
#pdf.attach("factur-x.xml", read("factur-x.xml", encoding: none), relationship: "alternative",
  mime-type: "text/xml", description: d.attachment)
#let lines(..parts) = parts.pos().filter(p => p != "").join(linebreak())
#let rule(widths) = line(length: (widths.sum() + GAP_EM * (widths.len() - 1)) * 1em,
  stroke: 0.3pt + gray)
// A table (server.billing.render.tables): one paragraph, a line a row, each cell a box of its
// column's width (measured beforehand, server.billing.render.columns); the heading bold above
// a rule, a rule below. A cell [text, note] prints the note in small print under the text.
#let aligned = (l: left, r: right)
#let cell(c) = if type(c) == array [#c.at(0) \ #text(8pt, fill: luma(90), c.at(1))] else { c }
#let table(t) = {
  let aligns = t.aligns.clusters().map(a => aligned.at(a))
  let row(cells) = cells.enumerate().map(((i, c)) =>
    box(width: t.widths.at(i) * 1em, align(aligns.at(i), cell(c)))).join(h(GAP_EMem))
  set par(leading: 0.55em, spacing: 0.45em)
  block(above: 0pt, below: 0pt, {
    if t.head != none { par(row(t.head.map(strong))); rule(t.widths) }
    par(t.rows.map(row).join(linebreak()))
    rule(t.widths)
  })
}
// The seller beside the document's number, each on half the width: a stack of two boxes lays
// out as a grid of two 1fr columns did, with less work (no row sizing).
#stack(dir: ltr,
  box(width: 50%)[#text(13pt, weight: "bold", d.seller.name) \
   #lines(d.seller.address, (d.seller.postcode + " " + d.seller.city).trim(), d.seller.country,
     if d.seller.vat_id != "" { "VAT " + d.seller.vat_id } else { "" })],
  box(width: 50%, align(right)[#text(16pt, weight: "bold", d.kind) \ No. #d.number
   #for f in d.facts [\ #f.label: #f.value]]))
#v(8pt)
#block(stroke: 0.5pt + gray, inset: 8pt, width: 60%)[*Bill to* \
  #lines(d.buyer.name, "Account " + d.buyer.account_id, d.buyer.address,
    (d.buyer.postcode + " " + d.buyer.city).trim(), d.buyer.country,
    if d.buyer.vat_id != "" { "VAT " + d.buyer.vat_id } else { "" })]
#for group in d.groups [
  #title(group.title)
  #table(group.table)
]
#if d.allowances.rows.len() > 0 [
  #title[Invoice discounts]
  #table(d.allowances)
]
#title[VAT summary]
#table(d.taxes)
#v(6pt)
#align(right, table(d.totals))
#v(6pt)
#for n in d.notes [#emph(n) \ ]
*#d.terms_label:* #d.terms
#if d.usage.rows.len() > 0 [
  #pagebreak()
  #title(d.usage_title)
  #d.usage_text
  #v(4pt)
  #table(d.usage)
]
""".replace("MARGIN_X_MM", f"{columns.MARGIN_X_MM:g}").replace("FONT", columns.FONT).replace(
    "SIZE_PT", f"{columns.SIZE_PT:g}").replace("GAP_EM", f"{columns.GAP_EM:g}")
_SOURCE = TEMPLATE.encode()


def render(invoice: Invoice, items: itemised.Itemised | None = None) -> bytes:
    """The invoice's PDF; ``items``: the records it bills, listed after the usage summary
    (for an account whose setting asks for them), on pages of their own."""
    return render_rendition(of_invoice(invoice), items)


def render_credit_note(note: CreditNote, invoice: Invoice) -> bytes:
    return render_rendition(of_credit_note(note, invoice))


def render_rendition(doc: Rendition, items: itemised.Itemised | None = None) -> bytes:
    sheet = _sheet(doc, items)
    return _marked(typeset(doc, cii.rendition_xml(doc), appendix=sheet is None), sheet)


def finish(doc: Rendition, pdf: bytes, items: itemised.Itemised | None = None) -> bytes:
    """typst's ``pdf`` of ``doc`` (typeset without its usage appendix when ``items`` lists
    records) with the Factur-X XMP and the itemised list's pages (padded lines, which typst
    took longer to lay out than the invoice itself) after its own, in one incremental
    update."""
    return _marked(pdf, _sheet(doc, items))


def _sheet(doc: Rendition, items: itemised.Itemised | None) -> mono_pages.Sheet | None:
    """The list's pages, the usage appendix their first lines: typst's layout of the
    appendix's table was a seventh of an itemised invoice's compile."""
    if items is None or not items.rows:
        return None
    c = doc.content
    usage = page.usage_rows(c, {ln.line_no for ln in doc.printed_lines})
    return itemised.sheet(items, c.currency, str(c.buyer.get("timezone") or "UTC"), doc.title,
                          itemised.appendix(usage, c.currency))


def _marked(pdf: bytes, sheet: mono_pages.Sheet | None) -> bytes:
    return facturx.mark_pdf(pdf, None if sheet is None else partial(mono_pages.append, sheet=sheet))


def typeset(doc: Rendition, xml: bytes, *, appendix: bool = True) -> bytes:
    """The PDF/A-3b typst writes, ``xml`` attached, before the Factur-X XMP is added;
    ``appendix``: with the usage appendix (an itemised invoice's is on its list pages)."""
    files = {"main.typ": _SOURCE, "factur-x.xml": xml,
             "data.json": msgspec.json.encode(document_data(doc, appendix=appendix))}
    return typst_compiler.pdf(files, standard="a-3b", tags=False, timestamp=_created(doc))


def _created(doc: Rendition) -> dt.datetime:
    """The PDF's creation date: the document's issue date (a draft: today), so the same
    document renders to the same bytes whenever and through whichever surface it is asked."""
    day = doc.issue_date or dt.datetime.now(dt.UTC).date()
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def document_data(doc: Rendition, *, appendix: bool = True) -> dict[str, Any]:
    c = doc.content
    cur = c.currency

    def amount(micros: int) -> str:
        return format_printed(micros, cur)

    shown = msgspec.structs.replace(c, lines=doc.printed_lines)
    reading = page.read_lines(shown)
    usage = page.usage_rows(c, {ln.line_no for ln in shown.lines}) if appendix else []
    t = c.totals
    totals = _totals(c, reading, "Credited" if doc.is_credit_note else "Charges")
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
    facts.append(("Period", page.period_text(c)))
    lines = tables.tables(tables.LINES, [[_line_cells(r) for r in group]
                                         for group in reading.rows.values()], cur)
    return {
        "title": doc.title, "kind": doc.heading, "number": doc.number,
        "facts": [{"label": label, "value": value} for label, value in facts],
        "attachment": f"Factur-X EN 16931 {doc.heading.lower()}",
        "currency": cur,
        "seller": {**dict.fromkeys(("name", "address", "postcode", "city", "country", "vat_id"),
                                   ""), **{k: str(v) for k, v in c.seller.items()}},
        "buyer": {**dict.fromkeys(("name", "account_id", "address", "postcode", "city",
                                   "country", "vat_id"), ""), **buyer},
        "groups": [{"title": title, "table": table}
                   for title, table in zip(reading.rows, lines, strict=True)],
        "allowances": tables.table(tables.ALLOWANCES, [
            [a.reason, f"{a.tax_category} {plain(a.tax_rate)} %", "-" + amount(a.amount_micros)]
            for a in c.allowances], cur),
        "taxes": tables.table(tables.TAXES, [
            [x.category, plain(x.rate) + " %", amount(x.taxable), amount(x.tax)]
            for x in c.taxes], cur),
        "totals": tables.table(tables.TOTALS, [[label, f"{amount(v)} {cur}"]
                                               for label, v in totals], cur),
        "notes": list(c.notes) + (["Prices include VAT."] if c.tax_inclusive else []),
        "terms_label": "Settlement" if doc.is_credit_note else "Payment terms",
        "terms": terms,
        "usage_title": page.USAGE_TITLE, "usage_text": page.USAGE_TEXT,
        "usage": tables.table(tables.USAGE, [[u["no"], u["what"], u["records"], u["usage"],
                                              u["amount"]] for u in usage], cur),
    }


def _line_cells(r: page.Row) -> list[tables.Cell]:
    return [r.no, [r.description, r.note] if r.note else r.description, r.quantity, r.unit,
            r.unit_price, r.vat, r.amount]


def _totals(c: InvoiceDraft, reading: page.Reading, first: str) -> list[tuple[str, int]]:
    """The totals block, each figure the sum of rows printed above it: charges less the
    discount rows is the lines' sum; less the invoice discounts, the net."""
    t = c.totals
    incl = " (VAT incl.)" if c.tax_inclusive else ""
    rows = [(f"{first}{incl}", reading.charges_micros)]
    if c.tax_inclusive:  # the lines print gross, the invoice discounts and the net don't
        if reading.line_discounts_micros:
            rows += [(f"Discounts{incl}", -reading.line_discounts_micros),
                     (f"Lines{incl}", reading.charges_micros - reading.line_discounts_micros)]
        if t.allowance_micros:
            rows.append(("Invoice discounts (net)", -t.allowance_micros))
    elif reading.line_discounts_micros or t.allowance_micros:
        rows.append(("Discounts", -(reading.line_discounts_micros + t.allowance_micros)))
    rows += [("Total net", t.net_micros), ("VAT", t.tax_micros), ("Total", t.total_micros)]
    return rows
