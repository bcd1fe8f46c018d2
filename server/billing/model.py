"""What a bill run reads (account, usage groups, subscriptions, adjustments, discounts) and
what it computes (an invoice draft). Amounts are integer micro-units of ``currency``."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import msgspec

from billing_oss.server.catalog.pricing import Product, VolumeTier
from billing_oss.server.catalog.tax import CategoryTotal, Party, TaxRate


class Account(msgspec.Struct, frozen=True):
    account_id: str
    name: str
    currency: str
    timezone: str
    billing_day: int
    attrs: dict[str, Any] = {}

    @property
    def party(self) -> Party:
        return Party(country=str(self.attrs.get("country", "")),
                     vat_id=self.attrs.get("vat_id") or None)

    @property
    def tax_inclusive(self) -> bool:
        return bool(self.attrs.get("tax_inclusive", False))


class UsageGroup(msgspec.Struct, frozen=True):
    """Unbilled charges of one account, currency, service (usage kind) and zone."""

    currency: str
    service: str
    zone: str
    charges: int
    amount_micros: int
    quantity: Decimal  # seconds (voice), bytes (data), messages, event quantity
    unit: str = ""  # events: the unit their records name (kWh), when they all name one
    prices: tuple[str, ...] = ()  # the tariff's prices the charges were rated at


class Subscription(msgspec.Struct, frozen=True):
    subscription_id: int
    product: Product
    valid_from: dt.datetime
    valid_to: dt.datetime | None


class Adjustment(msgspec.Struct, frozen=True):
    adjustment_id: int
    amount_micros: int
    currency: str
    description: str
    tax_class: str = "standard"


class Discount(msgspec.Struct, frozen=True):
    discount_id: int
    kind: str  # percentage | fixed | volume
    scope: str  # line | invoice
    service: str | None = None
    percent: Decimal | None = None
    amount_micros: int | None = None
    currency: str | None = None
    tiers: tuple[VolumeTier, ...] = ()
    description: str = ""
    valid_from: dt.date = dt.date.min
    valid_to: dt.date | None = None


class Settings(msgspec.Struct, frozen=True):
    seller: dict[str, Any]
    rounding: str = "half-up"
    usage_tax_class: str = "standard"
    # Days after a cycle's end during which its draft is still recomputed; then the draft is
    # left as it is until finalised. None: drafts are recomputed whenever a run comes by.
    grace_days: int | None = None


class BillingInput(msgspec.Struct, frozen=True):
    account: Account
    currency: str
    usage: tuple[UsageGroup, ...]
    subscriptions: tuple[Subscription, ...]
    adjustments: tuple[Adjustment, ...]
    discounts: tuple[Discount, ...]
    tax_rates: tuple[TaxRate, ...]
    bill_recurring: bool = True  # False when this cycle's fees are already on a final invoice
    # service → base quantity of the cycle's usage already on its final invoices: periodic
    # pricing prices the cycle's total less what those invoices priced
    billed_quantity: dict[str, Decimal] = {}


class Line(msgspec.Struct, frozen=True):
    line_no: int
    kind: str  # usage | recurring | adjustment
    service: str
    description: str
    quantity: Decimal
    unit: str
    charges: int
    gross_micros: int  # exact sum before rounding, truncated toward zero only for display
    discount_micros: int
    net_micros: int
    tax_category: str
    tax_rate: Decimal
    inclusive_micros: int | None = None
    zone: str | None = None  # usage lines: which charges it links
    subscription_id: int | None = None
    adjustment_id: int | None = None
    detail: dict[str, Any] = {}


class Allowance(msgspec.Struct, frozen=True):
    seq: int
    discount_id: int | None
    reason: str
    amount_micros: int
    tax_category: str
    tax_rate: Decimal


class Totals(msgspec.Struct, frozen=True):
    line_total_micros: int
    allowance_micros: int
    net_micros: int
    tax_micros: int
    total_micros: int
    rounding_micros: int
    payable_micros: int


class InvoiceDraft(msgspec.Struct, frozen=True):
    account_id: str
    currency: str
    period: str
    period_start: dt.datetime
    period_end: dt.datetime
    tax_inclusive: bool
    reverse_charge: bool
    rounding_method: str
    lines: tuple[Line, ...]
    allowances: tuple[Allowance, ...]
    taxes: tuple[CategoryTotal, ...]
    totals: Totals
    seller: dict[str, Any]
    buyer: dict[str, Any]
    notes: tuple[str, ...] = ()
