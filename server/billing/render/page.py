"""How a billing document reads on the page: each line in its unit with a unit price that
times the quantity gives the amount (or, for usage rated record by record, the tariff's
prices beside the quantity rated), discounts as rows of their own with their amounts, the
period as the customer reads it, usage in human units with thousands separators.

Display only: every amount printed is a stored one, a discounted line's stored gross rounded
as its net was, or a difference of those, so the page adds up (charges − discounts = net)
and no amount derives from a printed quantity or price.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from billing_oss.core.money import format_printed
from billing_oss.core.rounding import Method, quantity_text, round_minor
from billing_oss.server.billing.model import InvoiceDraft, Line


class Row(msgspec.Struct, kw_only=True):
    """One row of a line table: an invoice line, or the discount of the line above it."""

    no: str
    description: str
    note: str = ""  # small print under the description: prices by tier, by tariff rate
    quantity: str = ""
    unit: str = ""
    unit_price: str = ""
    vat: str = ""
    amount: str


class Reading(msgspec.Struct, kw_only=True):
    rows: dict[str, list[Row]]  # by group title, in line order
    charges_micros: int  # what the rows charge before discounts
    line_discounts_micros: int  # the discount rows' sum (positive)


GROUPS = {"usage": "Usage", "recurring": "Subscriptions", "adjustment": "Adjustments",
          "credit": "Credited invoice lines"}

# Printed unit of a line's stored unit: voice is billed in minutes, data in megabytes.
SECONDS_PER_MINUTE = Decimal(60)
BYTES_PER_MB = Decimal(1_000_000)


def read_lines(c: InvoiceDraft) -> Reading:
    cur = c.currency
    method = cast(Method, c.rounding_method)
    rows: dict[str, list[Row]] = {}
    charges = discounts = 0
    for ln in c.lines:
        shown = ln.inclusive_micros if c.tax_inclusive and ln.inclusive_micros is not None \
            else ln.net_micros
        vat = f"{ln.tax_category} {_plain(ln.tax_rate)} %"
        group = rows.setdefault(GROUPS.get(ln.kind, ln.kind.title()), [])
        if ln.discount_micros:
            before = round_minor(Fraction(ln.gross_micros), cur, method)
            off = before - shown
        else:
            before, off = shown, 0
        quantity, unit, price, note = _priced(ln, before, cur)
        group.append(Row(no=str(ln.line_no), description=ln.description, note=note,
                         quantity=quantity, unit=unit, unit_price=price, vat=vat,
                         amount=format_printed(before, cur)))
        if off:
            reasons = [str(d.get("reason") or "Discount")
                       for d in ln.detail.get("discounts", [])] or ["Discount"]
            group.append(Row(no="", description=f"Discount: {'; '.join(reasons)}", vat=vat,
                             amount=format_printed(-off, cur)))
        charges += before
        discounts += off
    return Reading(rows=rows, charges_micros=charges, line_discounts_micros=discounts)


def _priced(ln: Line, before: int, cur: str) -> tuple[str, str, str, str]:
    """(quantity, unit, unit price, note) of a line: quantity × unit price = amount."""
    if ln.kind == "recurring":
        days, month = ln.detail.get("days"), ln.detail.get("cycle_days")
        fee = ln.detail.get("fee_micros")
        if isinstance(days, int) and isinstance(month, int) and isinstance(fee, int):
            shown = "1" if days == month else f"{days}/{month}"
            return shown, "month", format_printed(fee, cur), ""
        return quantity_text(ln.quantity), "month", "", ""
    if ln.kind == "usage" and ln.subscription_id is not None:
        return _component(ln, before, cur)
    if ln.kind == "usage":
        quantity, unit = measured(ln.quantity, ln.unit)
        prices = [str(p) for p in ln.detail.get("tariff_prices", [])]
        if len(prices) == 1 and _ONE_PRICE.fullmatch(prices[0]):
            return quantity, unit, prices[0], ""  # 0.04/min: times the quantity, the amount
        return quantity, unit, "", f"Tariff: {'; '.join(prices)}" if prices else ""
    return "1", "", format_printed(before, cur), ""


_ONE_PRICE = re.compile(r"[\d,.]+/\w+")


def _component(ln: Line, before: int, cur: str) -> tuple[str, str, str, str]:
    """A product's periodic price of the cycle's usage: one quantity × price row, or the
    quantity in the note slice by slice (a graduated price: each tier its own price)."""
    slices = ln.detail.get("slices") or []
    included = Decimal(str(ln.detail.get("included", "0")))
    used = Decimal(str(ln.detail.get("total_units", ln.quantity)))
    note = f"{grouped(used)} {ln.unit} used"
    if included:
        note += f", {grouped(included)} included"
    if len(slices) == 1:
        s = slices[0]
        return grouped(Decimal(s["quantity"])), s["unit"], _price(s["price"]), note
    parts = [f"{grouped(Decimal(s['quantity']))} {s['unit']} at {_price(s['price'])}"
             for s in slices]
    if parts:
        note += ": " + ", ".join(parts)
    return grouped(ln.quantity), ln.unit, "", note


def measured(quantity: Decimal, unit: str) -> tuple[str, str]:
    """A rated quantity in the unit a customer reads it: minutes, MB, messages, events."""
    if unit == "s":
        return grouped(_two(quantity / SECONDS_PER_MINUTE), keep=True), "min"
    if unit == "byte":
        return grouped(_two(quantity / BYTES_PER_MB), keep=True), "MB"
    if unit == "message":
        return grouped(quantity), "messages"
    if unit == "unit":
        return grouped(quantity), "events"
    return grouped(quantity), unit


def human(quantity: Decimal, unit: str) -> str:
    """A usage total in human units: 1.80 GB, 2 h 05 min 10 s, 25,000 events."""
    if unit == "byte":
        value, name = quantity, "bytes"
        for step in ("kB", "MB", "GB", "TB"):
            if abs(value) < 1000:
                break
            value, name = value / 1000, step
        return f"{grouped(_two(value) if name != 'bytes' else value, keep=True)} {name}"
    if unit == "s":
        seconds = int(quantity)
        h, rest = divmod(abs(seconds), 3600)
        m, s = divmod(rest, 60)
        sign = "-" if seconds < 0 else ""
        return (f"{sign}{h:,} h {m:02d} min {s:02d} s" if h else f"{sign}{m} min {s:02d} s")
    text, name = measured(quantity, unit)
    return f"{text} {name}"


def period_text(c: InvoiceDraft) -> str:
    """The cycle as its customer reads it, last day included: 1 March – 31 March 2026."""
    tz = _zone(str(c.buyer.get("timezone") or "UTC"))
    first = c.period_start.astimezone(tz).date()
    last = (c.period_end.astimezone(tz) - dt.timedelta(days=1)).date()
    if first.year != last.year:
        return f"{_day(first)} {first.year} – {_day(last)} {last.year}"
    return f"{_day(first)} – {_day(last)} {last.year}"


def local_dates(c: InvoiceDraft) -> tuple[dt.date, dt.date]:
    """First and last day of the cycle in the account's timezone (the e-invoice's BG-14)."""
    tz = _zone(str(c.buyer.get("timezone") or "UTC"))
    return (c.period_start.astimezone(tz).date(),
            (c.period_end.astimezone(tz) - dt.timedelta(days=1)).date())


def grouped(value: Decimal, *, keep: bool = False) -> str:
    """Thousands separators; ``keep`` the digits given, else at most four decimals."""
    shown = value if keep else Decimal(quantity_text(value))
    return f"{shown:,f}"


USAGE_TITLE = "Appendix: usage breakdown"
# Its apostrophes are typographic, as typst's markup made them when the template held it.
USAGE_TEXT = ("The rated records by service and zone, with the invoice line that bills them and "
              "what they were rated at (a product’s price of the cycle’s usage bills rated usage "
              "on its own line); each record is kept with its charge and can be requested by its "
              "line number.")


def usage_rows(c: InvoiceDraft, shown_lines: set[int]) -> list[dict[str, str]]:
    """The appendix: one row per rated usage line, billed on that line, or on the line of
    the product that prices the service when the rated line (at 0.00) is not printed."""
    priced_on = {ln.service: ln.line_no for ln in c.lines
                 if ln.kind == "usage" and ln.subscription_id is not None}
    out = []
    for ln in c.lines:
        if ln.kind != "usage" or not ln.charges or ln.subscription_id is not None:
            continue
        billed = ln.line_no if ln.line_no in shown_lines else priced_on.get(ln.service)
        out.append({"no": str(billed or "-"), "what": ln.description,
                    "records": f"{ln.charges:,}", "usage": human(ln.quantity, ln.unit),
                    "amount": format_printed(ln.net_micros, c.currency)})
    return out


def _price(text: str) -> str:
    """A tariff or product price as the catalog states it (0.02, 1.00), grouped."""
    return f"{Decimal(text):,f}"


def _two(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), ROUND_HALF_UP)


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f")


# The invoice's language, whatever the server's locale (strftime's %B follows LC_TIME).
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")


def _day(day: dt.date) -> str:
    return f"{day.day} {MONTHS[day.month - 1]}"


def _zone(name: str) -> dt.tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return dt.UTC

