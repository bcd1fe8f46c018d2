"""Taxes: the rate of a tax class in a jurisdiction on a date, reverse charge, and the
EN 16931 tax summary — tax per category computed on the category's net sum, rounded once.

Tax-inclusive prices: a category's gross sum G is split into a net N and tax T with
``T = round(N × rate)`` (the same rule as exclusive invoices, BR-CO-17) and ``N + T = G``;
where no such N exists (a one-minor-unit jump of the rounding), the nearest N is taken and
the difference goes to the invoice's rounding amount (BT-114) so the customer pays G.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from decimal import Decimal
from fractions import Fraction

import msgspec

from billing_oss.core.rounding import Method, MoneyError, minor_step, round_fraction

REVERSE_CHARGE = "AE"
REVERSE_CHARGE_NOTE = "Reverse charge: VAT to be accounted for by the recipient"


class TaxRate(msgspec.Struct, frozen=True):
    jurisdiction: str
    tax_class: str
    category: str
    rate: Decimal  # percent
    valid_from: dt.date
    valid_to: dt.date | None = None


class Party(msgspec.Struct, frozen=True):
    country: str
    vat_id: str | None = None


class Treatment(msgspec.Struct, frozen=True):
    jurisdiction: str
    reverse_charge: bool


def treatment(seller: Party, buyer: Party) -> Treatment:
    """A business buyer (VAT id) in another country accounts for the tax itself; otherwise
    the buyer's country's rates apply (telecom services are taxed where the customer is)."""
    if buyer.vat_id and buyer.country and buyer.country != seller.country:
        return Treatment(jurisdiction=buyer.country, reverse_charge=True)
    return Treatment(jurisdiction=buyer.country or seller.country, reverse_charge=False)


def rate_for(rates: Iterable[TaxRate], how: Treatment, tax_class: str,
             on: dt.date) -> tuple[str, Decimal]:
    """(UNCL 5305 category, percent) for a tax class on a date."""
    if how.reverse_charge:
        return REVERSE_CHARGE, Decimal(0)
    for r in rates:
        if (r.jurisdiction == how.jurisdiction and r.tax_class == tax_class
                and r.valid_from <= on and (r.valid_to is None or on < r.valid_to)):
            return r.category, r.rate
    raise MoneyError(
        f"no tax rate for class {tax_class!r} in {how.jurisdiction!r} on {on.isoformat()}",
        jurisdiction=how.jurisdiction, tax_class=tax_class,
    )


def tax_on(net_micros: int, rate: Decimal, currency: str, method: Method) -> int:
    return round_fraction(Fraction(net_micros) * Fraction(rate) / 100, minor_step(currency),
                          method)


class Split(msgspec.Struct, frozen=True):
    net: int
    tax: int
    rounding: int  # gross - (net + tax): what BT-114 carries


def split_inclusive(gross: int, rate: Decimal, currency: str, method: Method) -> Split:
    step = minor_step(currency)
    guess = round_fraction(Fraction(gross) / (1 + Fraction(rate) / 100), step, method)
    candidates = [guess + k * step for k in (0, -1, 1, -2, 2)]
    for net in candidates:
        tax = tax_on(net, rate, currency, method)
        if net + tax == gross:
            return Split(net, tax, 0)
    tax = tax_on(guess, rate, currency, method)
    return Split(guess, tax, gross - guess - tax)


class CategoryTotal(msgspec.Struct, frozen=True):
    category: str
    rate: Decimal
    taxable: int
    tax: int
    rounding: int = 0
    exemption_reason: str | None = None


def summarise(nets: Sequence[tuple[str, Decimal, int]],
              allowances: Sequence[tuple[str, Decimal, int]], currency: str,
              method: Method) -> list[CategoryTotal]:
    """Tax-exclusive summary: per (category, rate), taxable = lines − allowances."""
    taxable: dict[tuple[str, Decimal], int] = {}
    for category, rate, amount in nets:
        taxable[category, rate] = taxable.get((category, rate), 0) + amount
    for category, rate, amount in allowances:
        taxable[category, rate] = taxable.get((category, rate), 0) - amount
    return [
        CategoryTotal(category, rate, base, tax_on(base, rate, currency, method),
                      exemption_reason=REVERSE_CHARGE_NOTE if category == REVERSE_CHARGE else None)
        for (category, rate), base in sorted(taxable.items())
    ]
