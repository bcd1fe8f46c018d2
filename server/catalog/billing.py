"""What invoicing needs from the catalog: products, tax rates and discounts.

The same types describe a catalog file's ``products``, ``tax_rates`` and ``discounts``
sections and the admin API's bodies, so a file and a request are checked by one set of
rules; every failure is a ``CatalogError`` whose path names the field
(``products[0].usage_pricing[1].tiers[2].up_to``, ``$.rate``).

Money is a decimal string (never a number, so never a float) and becomes integer
micro-units; percentages and quantities stay exact ``Decimal``. Rules beyond the types:

- A product's ``recurring_fee`` is charged per billing cycle (prorated by day); its
  ``usage_pricing`` prices a cycle's total usage of one service, one component per service;
  graduated and volume tiers ascend and the last one is open-ended (no ``up_to``).
- A tax rate is valid on ``[valid_from, valid_to)``; periods of one jurisdiction and tax
  class never overlap. Category ``S`` (standard) has a rate above 0; ``Z``, ``E``, ``AE``,
  ``K``, ``G`` and ``O`` have rate 0 (EN 16931); reverse charge (``AE``) is also applied by
  the bill run itself to business buyers in another country.
- A discount is named by its ``code``. ``percentage`` takes ``percent``; ``fixed`` takes
  ``amount`` and a ``currency``; ``volume`` takes ``tiers`` (``from`` amounts ascending, in a
  ``currency``). ``scope`` ``line`` reduces the lines of ``service`` (all lines when absent);
  ``invoice`` is a document allowance and names no service. Valid on the cycles whose last
  day is in ``[valid_from, valid_to)``.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Sequence
from decimal import Decimal
from typing import Annotated, Literal

import msgspec

from billing_oss.core.errors import CatalogError
from billing_oss.core.money import parse_micros_int64
from billing_oss.core.rounding import MoneyError, minor_digits
from billing_oss.server.catalog.pricing import Product, Tier, UsageComponent, VolumeTier
from billing_oss.server.catalog.tax import TaxRate

_NO_NUL = "^[^\\x00]*$"
Code = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern="^[A-Za-z0-9._:@-]+$")]
Name = Annotated[str, msgspec.Meta(max_length=200, pattern=_NO_NUL)]
UnitName = Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern="^[^\\x00\\s]+$")]
Currency = Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$", examples=["EUR"])]
TaxClass = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern="^[A-Za-z0-9._-]+$",
                                       examples=["standard"])]
Jurisdiction = Annotated[str, msgspec.Meta(pattern="^[A-Z]{2}(-[A-Z0-9]{1,3})?$",
                                           examples=["FR"])]
# A non-negative amount of money, at most 6 decimals (micro-units).
Amount = Annotated[str, msgspec.Meta(pattern="^[0-9]{1,13}(\\.[0-9]{1,6})?$", examples=["9.99"])]
# A unit price: finer than a micro-unit is allowed (priced units are summed before rounding).
Price = Annotated[str, msgspec.Meta(pattern="^[0-9]{1,13}(\\.[0-9]{1,12})?$",
                                    examples=["0.05"])]
Percent = Annotated[str, msgspec.Meta(pattern="^[0-9]{1,3}(\\.[0-9]{1,4})?$", examples=["20"])]
Quantity = Annotated[str, msgspec.Meta(pattern="^[0-9]{1,15}(\\.[0-9]{1,6})?$", examples=["100"])]
UnitSize = Annotated[int, msgspec.Meta(ge=1, le=10**15)]
Service = Literal["voice", "sms", "data", "event"]
Category = Literal["S", "Z", "E", "AE", "K", "G", "O", "L", "M"]
ZERO_RATED = frozenset({"Z", "E", "AE", "K", "G", "O"})
MAX_COMPONENTS = 20
MAX_TIERS = 50


class _Strict(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True,
              omit_defaults=True):
    pass


class TierDef(_Strict, frozen=True, kw_only=True):
    price: Price
    up_to: Quantity | None = None  # units, inclusive; absent on the last, open-ended tier


class UsageComponentDef(_Strict, frozen=True, kw_only=True):
    service: Service
    model: Literal["per_unit", "graduated", "volume", "package"]
    unit: UnitName = "unit"
    unit_size: UnitSize = 1  # base quantity per priced unit: seconds, bytes, messages
    included: Quantity = "0"  # free units per cycle
    price: Price = "0"  # per_unit, package
    package_size: Quantity = "1"
    tiers: Annotated[list[TierDef], msgspec.Meta(max_length=MAX_TIERS)] = []


class ProductFields(_Strict, frozen=True, kw_only=True):
    name: Name = ""
    recurring_fee: Amount = "0"
    tax_class: TaxClass = "standard"
    usage_pricing: Annotated[list[UsageComponentDef],
                             msgspec.Meta(max_length=MAX_COMPONENTS)] = []


class ProductDef(ProductFields, frozen=True, kw_only=True):
    """A catalog file's product; ``currency`` defaults to the catalog's."""

    id: Code
    currency: Currency | None = None


class ProductIn(ProductFields, frozen=True, kw_only=True):
    """``PUT /v1/products/{product_id}``: the whole product (created or replaced)."""

    currency: Currency


class TaxRateDef(_Strict, frozen=True, kw_only=True):
    jurisdiction: Jurisdiction  # ISO 3166-1 country (or subdivision) of the buyer
    rate: Percent
    tax_class: TaxClass = "standard"
    category: Category = "S"  # UNCL 5305
    valid_from: dt.date
    valid_to: dt.date | None = None


class VolumeTierDef(_Strict, frozen=True, kw_only=True):
    from_: Amount = msgspec.field(name="from")
    percent: Percent


class DiscountDef(_Strict, frozen=True, kw_only=True):
    code: Code
    kind: Literal["percentage", "fixed", "volume"]
    scope: Literal["line", "invoice"] = "invoice"
    account_id: Code | None = None  # absent: every account
    service: Literal["voice", "sms", "data", "event", "subscription"] | None = None
    percent: Percent | None = None
    amount: Amount | None = None
    currency: Currency | None = None
    tiers: Annotated[list[VolumeTierDef], msgspec.Meta(max_length=MAX_TIERS)] = []
    description: Name = ""
    valid_from: dt.date | None = None
    valid_to: dt.date | None = None


class DiscountSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A checked discount, as stored (``discounts`` row without its id)."""

    code: str
    kind: str
    scope: str
    account_id: str | None = None
    service: str | None = None
    percent: Decimal | None = None
    amount_micros: int | None = None
    currency: str | None = None
    tiers: tuple[VolumeTier, ...] = ()
    description: str = ""
    valid_from: dt.date = dt.date.min
    valid_to: dt.date | None = None


class BillingCatalog(msgspec.Struct, frozen=True):
    """A catalog's billing sections, checked; paths index the file's lists."""

    products: tuple[Product, ...] = ()
    tax_rates: tuple[TaxRate, ...] = ()
    discounts: tuple[DiscountSpec, ...] = ()


def check_sections(products: Sequence[ProductDef], tax_rates: Sequence[TaxRateDef],
                   discounts: Sequence[DiscountDef], currency: str,
                   prefix: str = "") -> BillingCatalog:
    """Check a catalog's three billing sections; ids and codes are unique, tax periods of
    one jurisdiction and class do not overlap."""
    checked_products: list[Product] = []
    seen: dict[str, int] = {}
    for i, p in enumerate(products):
        path = f"{prefix}products[{i}]"
        if p.id in seen:
            raise CatalogError(f"{path}.id", f"product {p.id} is defined twice")
        seen[p.id] = i
        checked_products.append(check_product(p, p.id, p.currency or currency, path))
    rates = [check_tax_rate(r, f"{prefix}tax_rates[{i}]") for i, r in enumerate(tax_rates)]
    check_tax_periods(rates, [f"{prefix}tax_rates[{i}]" for i in range(len(rates))])
    codes: set[str] = set()
    checked_discounts = []
    for i, d in enumerate(discounts):
        path = f"{prefix}discounts[{i}]"
        if d.code in codes:
            raise CatalogError(f"{path}.code", f"discount {d.code} is defined twice")
        codes.add(d.code)
        checked_discounts.append(check_discount(d, path, currency))
    return BillingCatalog(tuple(checked_products), tuple(rates), tuple(checked_discounts))


def check_product(p: ProductFields, product_id: str, currency: str, path: str) -> Product:
    _currency(currency, f"{path}.currency")
    fee = _micros(p.recurring_fee, f"{path}.recurring_fee")
    services: set[str] = set()
    for i, c in enumerate(p.usage_pricing):
        where = f"{path}.usage_pricing[{i}]"
        if c.service in services:
            raise CatalogError(f"{where}.service", f"a second component for {c.service}")
        services.add(c.service)
        _check_component(c, where)
    return Product(
        product_id=product_id, name=p.name or product_id, currency=currency,
        recurring_fee_micros=fee, tax_class=p.tax_class,
        usage_pricing=tuple(_component(c) for c in p.usage_pricing),
    )


def _component(c: UsageComponentDef) -> UsageComponent:
    return UsageComponent(
        service=c.service, model=c.model, unit=c.unit, unit_size=c.unit_size,
        included=Decimal(c.included), price=Decimal(c.price),
        package_size=Decimal(c.package_size),
        tiers=tuple(Tier(up_to=None if t.up_to is None else Decimal(t.up_to),
                         price=Decimal(t.price)) for t in c.tiers),
    )


def _check_component(c: UsageComponentDef, path: str) -> None:
    if Decimal(c.package_size) <= 0:
        raise CatalogError(f"{path}.package_size", "must be above 0")
    tiered = c.model in ("graduated", "volume")
    if not tiered:
        if c.tiers:
            raise CatalogError(f"{path}.tiers", f"a {c.model} component takes a price, no tiers")
        return
    if not c.tiers:
        raise CatalogError(f"{path}.tiers", f"a {c.model} component needs tiers")
    previous: Decimal | None = None
    for i, tier in enumerate(c.tiers):
        last = i == len(c.tiers) - 1
        if tier.up_to is None and not last:
            raise CatalogError(f"{path}.tiers[{i}].up_to", "only the last tier is open-ended")
        if tier.up_to is not None and last:
            raise CatalogError(f"{path}.tiers[{i}].up_to",
                               "the last tier is open-ended: leave up_to out")
        if tier.up_to is not None:
            bound = Decimal(tier.up_to)
            if previous is not None and bound <= previous:
                raise CatalogError(f"{path}.tiers[{i}].up_to",
                                   f"must be above the previous tier's ({previous})")
            previous = bound


def check_tax_rate(r: TaxRateDef, path: str) -> TaxRate:
    rate = Decimal(r.rate)
    if rate > 100:
        raise CatalogError(f"{path}.rate", "a percentage is at most 100")
    if r.category in ZERO_RATED and rate != 0:
        raise CatalogError(f"{path}.rate", f"category {r.category} has rate 0")
    if r.category == "S" and rate == 0:
        raise CatalogError(f"{path}.rate", "the standard category (S) has a rate above 0; "
                           "use Z, E or O for no tax")
    _period(r.valid_from, r.valid_to, path)
    return TaxRate(jurisdiction=r.jurisdiction, tax_class=r.tax_class, category=r.category,
                   rate=rate, valid_from=r.valid_from, valid_to=r.valid_to)


def check_tax_periods(rates: Sequence[TaxRate], paths: Sequence[str]) -> None:
    """Periods of one jurisdiction and tax class do not overlap (nor share a start)."""
    found = first_overlap(rates)
    if found is not None:
        a, b = found
        raise CatalogError(f"{paths[b]}.valid_from", f"overlaps {describe(rates[a])} ({paths[a]})")


def first_overlap(rates: Sequence[TaxRate]) -> tuple[int, int] | None:
    """Indices of two overlapping periods of one jurisdiction and class (the earlier start
    first), if any: sorted by start, some neighbours overlap whenever any two do."""
    order = sorted(range(len(rates)), key=lambda i: (
        rates[i].jurisdiction, rates[i].tax_class, rates[i].valid_from))
    for a, b in itertools.pairwise(order):
        x, y = rates[a], rates[b]
        if (x.jurisdiction, x.tax_class) == (y.jurisdiction, y.tax_class) and overlaps(x, y):
            return a, b
    return None


def overlaps(a: TaxRate, b: TaxRate) -> bool:
    return ((a.valid_to is None or b.valid_from < a.valid_to)
            and (b.valid_to is None or a.valid_from < b.valid_to))


def describe(r: TaxRate) -> str:
    end = r.valid_to.isoformat() if r.valid_to else "open-ended"
    return f"{r.jurisdiction}/{r.tax_class} {r.rate}% from {r.valid_from.isoformat()} to {end}"


def check_discount(d: DiscountDef, path: str, default_currency: str | None) -> DiscountSpec:
    needs = {"percentage": "percent", "fixed": "amount", "volume": "tiers"}[d.kind]
    given = {"percent": d.percent is not None, "amount": d.amount is not None,
             "tiers": bool(d.tiers)}
    if not given[needs]:
        raise CatalogError(f"{path}.{needs}", f"a {d.kind} discount needs {needs}")
    for other, present in given.items():
        if present and other != needs:
            raise CatalogError(f"{path}.{other}", f"a {d.kind} discount takes no {other}")
    if d.scope == "invoice" and d.service is not None:
        raise CatalogError(f"{path}.service", "an invoice discount applies to the whole "
                           "invoice: service goes with scope line")
    currency = d.currency
    if d.kind != "percentage":
        currency = currency or default_currency
        if currency is None:
            raise CatalogError(f"{path}.currency", f"a {d.kind} discount needs its currency")
    if currency is not None:
        _currency(currency, f"{path}.currency")
    percent = None if d.percent is None else _share(d.percent, f"{path}.percent")
    amount = None if d.amount is None else _micros(d.amount, f"{path}.amount")
    if amount == 0:
        raise CatalogError(f"{path}.amount", "must be above 0")
    tiers: list[VolumeTier] = []
    for i, t in enumerate(d.tiers):
        start = _micros(t.from_, f"{path}.tiers[{i}].from")
        if tiers and start <= tiers[-1].from_micros:
            raise CatalogError(f"{path}.tiers[{i}].from", "tiers ascend: must be above the "
                               "previous tier's from")
        tiers.append(VolumeTier(start, _share(t.percent, f"{path}.tiers[{i}].percent")))
    valid_from = d.valid_from or dt.date.min
    _period(valid_from, d.valid_to, path)
    return DiscountSpec(
        code=d.code, kind=d.kind, scope=d.scope, account_id=d.account_id, service=d.service,
        percent=percent, amount_micros=amount, currency=currency, tiers=tuple(tiers),
        description=d.description, valid_from=valid_from, valid_to=d.valid_to,
    )


def _share(text: str, path: str) -> Decimal:
    value = Decimal(text)
    if not 0 < value <= 100:
        raise CatalogError(path, "a discount percentage is above 0 and at most 100")
    return value


def _micros(text: str, path: str) -> int:
    try:
        return parse_micros_int64(text)
    except ValueError as exc:
        raise CatalogError(path, str(exc)) from None


def _currency(code: str, path: str) -> None:
    try:
        minor_digits(code)
    except MoneyError as exc:
        raise CatalogError(path, exc.message) from None


def _period(start: dt.date, end: dt.date | None, path: str) -> None:
    if end is not None and end <= start:
        raise CatalogError(f"{path}.valid_to", "must be after valid_from")
