"""The catalog as written (DESIGN.md §5): the one set of msgspec types that both
``billing-oss catalog load FILE`` and ``POST /v1/tariffs`` decode into.

These mirror the JSON/TOML text one to one and refuse unknown keys; ``server.catalog.validate``
holds every rule beyond the shape and turns them into the checked model
(``server.catalog.model``). The ``msgspec.Meta`` limits here bound what a request can make the
server hold and document the shape (OpenAPI); a value's own rules (ranges, formats) are
``validate``'s alone, so both paths give the same message for the same mistake.
Money stays a decimal string here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

import msgspec

from billing_oss.server.catalog.billing import DiscountDef, ProductDef, TaxRateDef
from billing_oss.server.catalog.rules import rate_fields
from billing_oss.server.catalog.wire import DecimalText, Strict

Kind = Literal["voice", "sms", "data", "event"]

MAX_PREFIX_DIGITS = 18  # what the rating kernel's prefix keys hold
DEFAULT_CURRENCY = "EUR"

# 1..MAX_PREFIX_DIGITS digits: checked by ``validate``, whose error names the zone by name.
Prefix = Annotated[str, msgspec.Meta(examples=["336"])]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern="^[A-Za-z0-9._:@-]+$")]
Currency = Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$", examples=["EUR"])]
Text = Annotated[str, msgspec.Meta(max_length=200, pattern="^[^\\x00]*$")]


class StepDef(Strict):
    from_: int = msgspec.field(name="from")
    price: DecimalText
    unit: int
    increment: int


class RateKey(Strict):
    kind: Kind
    zone: Name
    band: Name
    steps: Annotated[list[StepDef], msgspec.Meta(min_length=1, max_length=50)]


# A rate is its key and steps, then the fields of its per-call pricing rules
# (``server.catalog.rules``), which each rule declares in its own module. They are copied
# into one struct: msgspec structs that each have fields cannot be mixed as bases.
if TYPE_CHECKING:
    class RateDef(RateKey):
        pass
else:
    RateDef = msgspec.defstruct("RateDef", rate_fields(), bases=(RateKey,), module=__name__)


class BandDef(Strict):
    """A time band entry; ``from > to`` wraps midnight (an overnight band, 20:00 → 08:00)."""

    name: Name
    default: bool = False
    days: Annotated[list[str], msgspec.Meta(max_length=7)] | None = None
    from_: Annotated[str, msgspec.Meta(max_length=8, examples=["20:00"])] | None = (
        msgspec.field(name="from", default=None))
    to: Annotated[str, msgspec.Meta(max_length=8, examples=["08:00"])] | None = None


class VersionDef(Strict):
    effective_from: Annotated[str, msgspec.Meta(max_length=64,
                                                examples=["2026-01-01T00:00:00Z"])]
    timezone: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    rates: Annotated[list[RateDef], msgspec.Meta(max_length=10_000)]
    zones: Annotated[dict[Name, Annotated[list[Prefix], msgspec.Meta(max_length=1_000_000)]],
                     msgspec.Meta(max_length=10_000)] = msgspec.field(default_factory=dict)
    time_bands: Annotated[list[BandDef], msgspec.Meta(max_length=100)] = (
        msgspec.field(default_factory=list))


class TariffDef(Strict):
    id: Id
    versions: Annotated[list[VersionDef], msgspec.Meta(max_length=1000)] = (
        msgspec.field(default_factory=list))
    currency: Currency | None = None
    description: Text = ""


class AccountDef(Strict):
    id: Id
    identifiers: Annotated[list[Annotated[str, msgspec.Meta(min_length=1, max_length=32)]],
                           msgspec.Meta(max_length=100)] = msgspec.field(default_factory=list)
    tariff: Id | None = None  # none: the account exists but is on no plan (NO_TARIFF)
    name: Text | None = None
    currency: Currency | None = None
    product: Id | None = None  # the product of the account's first subscription
    attrs: dict[str, str] = msgspec.field(default_factory=dict)  # country, vat_id, address...


class BillingSections(Strict):
    products: list[ProductDef] = msgspec.field(default_factory=list)
    tax_rates: list[TaxRateDef] = msgspec.field(default_factory=list)
    discounts: list[DiscountDef] = msgspec.field(default_factory=list)


class CatalogFile(Strict):
    currency: Currency = DEFAULT_CURRENCY
    tariffs: Annotated[list[TariffDef], msgspec.Meta(max_length=1000)] = (
        msgspec.field(default_factory=list))
    accounts: Annotated[list[AccountDef], msgspec.Meta(max_length=100_000)] = (
        msgspec.field(default_factory=list))
    products: Annotated[list[ProductDef], msgspec.Meta(max_length=10_000)] = (
        msgspec.field(default_factory=list))
    tax_rates: Annotated[list[TaxRateDef], msgspec.Meta(max_length=10_000)] = (
        msgspec.field(default_factory=list))
    discounts: Annotated[list[DiscountDef], msgspec.Meta(max_length=10_000)] = (
        msgspec.field(default_factory=list))
