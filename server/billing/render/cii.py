"""Invoices and credit notes as EN 16931 e-invoices in UN/CEFACT Cross Industry Invoice
syntax (the Factur-X / ZUGFeRD "EN 16931" profile), built with lxml.

A line's net price is given for a basis quantity equal to its billed quantity, so price ×
quantity is the line amount exactly; negative lines bill a negative quantity at a positive
price (BR-27). A line's quantity is the one the PDF prints, in its UN/ECE Rec. 20 unit
(MIN minute, 4L megabyte, KWH, MON month, C62 one).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from decimal import Decimal

from lxml import etree

from billing_oss.core.money import format_minor
from billing_oss.core.rounding import plain, quantity_text
from billing_oss.server.billing.issuing import CreditNote, Invoice
from billing_oss.server.billing.model import Line
from billing_oss.server.billing.render.content import Rendition, of_credit_note, of_invoice
from billing_oss.server.billing.render.page import local_dates, measured

NS = {
    "rsm": "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100",
    "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100",
    "udt": "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100",
    "qdt": "urn:un:unece:uncefact:data:standard:QualifiedDataType:100",
}

EN16931 = "urn:cen.eu:en16931:2017"


@functools.cache
def _q(tag: str) -> str:
    prefix, name = tag.split(":")
    return f"{{{NS[prefix]}}}{name}"


# Characters XML 1.0 cannot carry (C0 controls but tab and newlines, U+FFFE, U+FFFF): an
# operator's free text may hold one; it prints as a space rather than failing the document.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def xml_text(text: str) -> str:
    # isprintable() is true of nearly every text and rules out all that _NOT_XML matches
    return text if text.isprintable() else _NOT_XML.sub(" ", text)


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> etree._Element:
    el = etree.SubElement(parent, _q(tag), {k: xml_text(v) for k, v in attrs.items()}
                          if attrs else None)
    if text is not None:
        el.text = xml_text(text)
    return el


def _date(parent: etree._Element, tag: str, day: dt.date) -> None:
    _sub(_sub(parent, tag), "udt:DateTimeString", day.strftime("%Y%m%d"), format="102")


def to_xml(invoice: Invoice) -> bytes:
    return rendition_xml(of_invoice(invoice))


def credit_note_xml(note: CreditNote, invoice: Invoice) -> bytes:
    return rendition_xml(of_credit_note(note, invoice))


def rendition_xml(doc: Rendition) -> bytes:
    c = doc.content
    cur = c.currency

    def amount(micros: int) -> str:
        return format_minor(micros, cur)

    root = etree.Element(_q("rsm:CrossIndustryInvoice"), nsmap=NS)
    ctx = _sub(root, "rsm:ExchangedDocumentContext")
    _sub(_sub(ctx, "ram:GuidelineSpecifiedDocumentContextParameter"), "ram:ID", EN16931)
    head = _sub(root, "rsm:ExchangedDocument")
    _sub(head, "ram:ID", doc.number)
    _sub(head, "ram:TypeCode", doc.type_code)
    _date(head, "ram:IssueDateTime", doc.issue_date or dt.date.today())
    for note in c.notes:
        _sub(_sub(head, "ram:IncludedNote"), "ram:Content", note)
    trade = _sub(root, "rsm:SupplyChainTradeTransaction")
    for ln in doc.printed_lines:
        _line(trade, ln, cur)
    agreement = _sub(trade, "ram:ApplicableHeaderTradeAgreement")
    _party(agreement, "ram:SellerTradeParty", c.seller)
    _party(agreement, "ram:BuyerTradeParty", c.buyer)
    _sub(trade, "ram:ApplicableHeaderTradeDelivery")
    settle = _sub(trade, "ram:ApplicableHeaderTradeSettlement")
    _sub(settle, "ram:InvoiceCurrencyCode", cur)
    if c.seller.get("iban") and not doc.is_credit_note:  # the seller pays a credit back
        means = _sub(settle, "ram:SpecifiedTradeSettlementPaymentMeans")
        _sub(means, "ram:TypeCode", "58")  # SEPA credit transfer
        _sub(_sub(means, "ram:PayeePartyCreditorFinancialAccount"), "ram:IBANID",
             str(c.seller["iban"]))
    for x in c.taxes:
        tax = _sub(settle, "ram:ApplicableTradeTax")
        _sub(tax, "ram:CalculatedAmount", amount(x.tax))
        _sub(tax, "ram:TypeCode", "VAT")
        if x.exemption_reason:
            _sub(tax, "ram:ExemptionReason", x.exemption_reason)
        _sub(tax, "ram:BasisAmount", amount(x.taxable))
        _sub(tax, "ram:CategoryCode", x.category)
        if x.category == "AE":
            _sub(tax, "ram:ExemptionReasonCode", "VATEX-EU-AE")
        _sub(tax, "ram:RateApplicablePercent", plain(x.rate))
    period = _sub(settle, "ram:BillingSpecifiedPeriod")
    first, last = local_dates(c)  # the cycle's days where the customer lives
    _date(period, "ram:StartDateTime", first)
    _date(period, "ram:EndDateTime", last)
    for a in c.allowances:  # a negative one (credit notes only) is a charge
        allowance = _sub(settle, "ram:SpecifiedTradeAllowanceCharge")
        _sub(_sub(allowance, "ram:ChargeIndicator"), "udt:Indicator",
             "true" if a.amount_micros < 0 else "false")
        _sub(allowance, "ram:ActualAmount", amount(abs(a.amount_micros)))
        _sub(allowance, "ram:Reason", a.reason)
        cat = _sub(allowance, "ram:CategoryTradeTax")
        _sub(cat, "ram:TypeCode", "VAT")
        _sub(cat, "ram:CategoryCode", a.tax_category)
        _sub(cat, "ram:RateApplicablePercent", plain(a.tax_rate))
    terms = _sub(settle, "ram:SpecifiedTradePaymentTerms")
    _sub(terms, "ram:Description", "Refunded or set off against open invoices"
         if doc.is_credit_note else "Bank transfer")
    if doc.due_date:
        _date(terms, "ram:DueDateDateTime", doc.due_date)
    t = c.totals
    sums = _sub(settle, "ram:SpecifiedTradeSettlementHeaderMonetarySummation")
    _sub(sums, "ram:LineTotalAmount", amount(t.line_total_micros))
    _sub(sums, "ram:AllowanceTotalAmount", amount(t.allowance_micros))
    _sub(sums, "ram:TaxBasisTotalAmount", amount(t.net_micros))
    _sub(sums, "ram:TaxTotalAmount", amount(t.tax_micros), currencyID=cur)
    if t.rounding_micros:
        _sub(sums, "ram:RoundingAmount", amount(t.rounding_micros))
    _sub(sums, "ram:GrandTotalAmount", amount(t.total_micros))
    _sub(sums, "ram:DuePayableAmount", amount(t.payable_micros))
    if doc.preceding_number:
        ref = _sub(settle, "ram:InvoiceReferencedDocument")
        _sub(ref, "ram:IssuerAssignedID", doc.preceding_number)
        if doc.preceding_date:
            _sub(_sub(ref, "ram:FormattedIssueDateTime"), "qdt:DateTimeString",
                 doc.preceding_date.strftime("%Y%m%d"), format="102")
    xml: bytes = etree.tostring(root, encoding="utf-8", xml_declaration=True)
    return xml


# UN/ECE Rec. 20 codes of the units the PDF prints a quantity in (render.page); C62 (one)
# for any other: messages, events, packages.
UNIT_CODES = {"min": "MIN", "MB": "4L", "GB": "E34", "kWh": "KWH", "month": "MON"}


def _line(trade: etree._Element, ln: Line, currency: str) -> None:
    item = _sub(trade, "ram:IncludedSupplyChainTradeLineItem")
    _sub(_sub(item, "ram:AssociatedDocumentLineDocument"), "ram:LineID", str(ln.line_no))
    _sub(_sub(item, "ram:SpecifiedTradeProduct"), "ram:Name", ln.description)
    quantity, unit = _quantity(ln)
    if ln.net_micros < 0:
        quantity = -quantity
    qty = quantity_text(quantity)
    agreement = _sub(item, "ram:SpecifiedLineTradeAgreement")
    price = _sub(agreement, "ram:NetPriceProductTradePrice")
    _sub(price, "ram:ChargeAmount", format_minor(abs(ln.net_micros), currency))
    _sub(price, "ram:BasisQuantity", qty.lstrip("-"), unitCode=unit)
    _sub(_sub(item, "ram:SpecifiedLineTradeDelivery"), "ram:BilledQuantity", qty, unitCode=unit)
    settle = _sub(item, "ram:SpecifiedLineTradeSettlement")
    tax = _sub(settle, "ram:ApplicableTradeTax")
    _sub(tax, "ram:TypeCode", "VAT")
    _sub(tax, "ram:CategoryCode", ln.tax_category)
    _sub(tax, "ram:RateApplicablePercent", plain(ln.tax_rate))
    _sub(_sub(settle, "ram:SpecifiedTradeSettlementLineMonetarySummation"),
         "ram:LineTotalAmount", format_minor(ln.net_micros, currency))


def _quantity(ln: Line) -> tuple[Decimal, str]:
    """The billed quantity in the unit the PDF prints it in (minutes, MB, kWh, months).
    The price is stated for a basis quantity equal to it, so price × quantity is the
    line's amount whatever the unit."""
    if ln.kind == "recurring":
        return abs(Decimal(ln.quantity)) or Decimal(1), "MON"
    if ln.kind == "usage":
        text, unit = (measured(ln.quantity, ln.unit) if ln.subscription_id is None
                      else (str(ln.quantity), ln.unit))
        quantity = abs(Decimal(text.replace(",", "")))
        if quantity:
            return quantity, UNIT_CODES.get(unit, "C62")
        if ln.charges:  # rated usage of no duration or volume: connect fees, minimums
            return Decimal(ln.charges), "C62"
    return Decimal(1), "C62"


def _party(parent: etree._Element, tag: str, p: dict[str, object]) -> None:
    party = _sub(parent, tag)
    _sub(party, "ram:Name", str(p.get("name") or p.get("account_id") or "-"))
    address = _sub(party, "ram:PostalTradeAddress")
    if p.get("postcode"):
        _sub(address, "ram:PostcodeCode", str(p["postcode"]))
    if p.get("address"):
        _sub(address, "ram:LineOne", str(p["address"]))
    if p.get("city"):
        _sub(address, "ram:CityName", str(p["city"]))
    _sub(address, "ram:CountryID", str(p.get("country") or "FR"))
    if p.get("vat_id"):
        _sub(_sub(party, "ram:SpecifiedTaxRegistration"), "ram:ID", str(p["vat_id"]),
             schemeID="VA")
