"""The catalog file as written (DESIGN.md §5): msgspec types that refuse unknown keys.

These mirror the JSON/TOML text one to one; ``server.catalog.validate`` turns them into the
checked model (``server.catalog.model``). Money stays a decimal string here.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from billing_oss.server.catalog.billing import DiscountDef, ProductDef, TaxRateDef

Kind = Literal["voice", "sms", "data", "event"]
RoundingMethod = Literal["half-up", "half-even", "up", "down"]


class _Strict(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class StepDef(_Strict):
    from_: int = msgspec.field(name="from")
    price: str
    unit: int
    increment: int


class RoundingDef(_Strict):
    decimals: int
    method: RoundingMethod


class RateDef(_Strict):
    kind: Kind
    zone: str
    band: str
    steps: list[StepDef]
    connect_fee: str = "0"
    minimum_charge: str | None = None
    maximum_charge: str | None = None
    rounding: RoundingDef | None = None


class BandDef(_Strict):
    name: str
    default: bool = False
    days: list[str] | None = None
    from_: str | None = msgspec.field(name="from", default=None)
    to: str | None = None


class VersionDef(_Strict):
    effective_from: str
    timezone: str
    rates: list[RateDef]
    zones: dict[str, list[str]] = msgspec.field(default_factory=dict)
    time_bands: list[BandDef] = msgspec.field(default_factory=list)


class TariffDef(_Strict):
    id: str
    versions: list[VersionDef]
    currency: str | None = None
    description: str = ""


class AccountDef(_Strict):
    id: str
    identifiers: list[str]
    tariff: str
    name: str | None = None
    currency: str | None = None
    product: str | None = None  # the product of the account's first subscription
    attrs: dict[str, str] = msgspec.field(default_factory=dict)  # country, vat_id, address...


class BillingSections(_Strict):
    products: list[ProductDef] = msgspec.field(default_factory=list)
    tax_rates: list[TaxRateDef] = msgspec.field(default_factory=list)
    discounts: list[DiscountDef] = msgspec.field(default_factory=list)


class CatalogFile(_Strict):
    currency: str
    tariffs: list[TariffDef]
    accounts: list[AccountDef] = msgspec.field(default_factory=list)
    products: list[ProductDef] = msgspec.field(default_factory=list)
    tax_rates: list[TaxRateDef] = msgspec.field(default_factory=list)
    discounts: list[DiscountDef] = msgspec.field(default_factory=list)
