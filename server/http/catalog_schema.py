"""The catalog's shape (DESIGN.md §5) as msgspec types, for uploads through the API.

Decoding gives the JSON path of a type error (``$.rates[0].steps[1].price``); ``check_version``
adds the cross-field rules decoding cannot express, with the same kind of path. Money and
prices are decimal strings, never floats.
"""

from __future__ import annotations

import zoneinfo
from decimal import Decimal
from typing import Annotated, Literal

import msgspec

from billing_oss.core.errors import CatalogError, InvalidRequest
from billing_oss.server.catalog import BillingCatalog, version_from_definition
from billing_oss.server.catalog.billing import DiscountDef, ProductDef, TaxRateDef, check_sections
from billing_oss.server.http.types import Attrs, Currency, Id, Identifier, Text, Timestamp

DecimalText = Annotated[
    str, msgspec.Meta(pattern="^-?[0-9]{1,12}(\\.[0-9]{1,9})?$", examples=["0.10"])
]
Prefix = Annotated[str, msgspec.Meta(min_length=1, max_length=24, pattern="^[0-9]+$")]
ClockTime = Annotated[str, msgspec.Meta(pattern="^([01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$")]
ZoneName = Annotated[str, msgspec.Meta(min_length=1, max_length=64,
                                       pattern="^[A-Za-z0-9._-]+$|^\\*$")]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
Kind = Literal["voice", "sms", "data", "event"]
TimeZone = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern="^[A-Za-z0-9_+/-]+$")]


class Step(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    from_: Annotated[int, msgspec.Meta(ge=0, le=10**15)] = msgspec.field(name="from")
    price: DecimalText
    unit: Annotated[int, msgspec.Meta(ge=1, le=10**15)]
    increment: Annotated[int, msgspec.Meta(ge=1, le=10**15)]


class Rounding(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    decimals: Annotated[int, msgspec.Meta(ge=0, le=6)]
    method: Literal["half-up", "half-even", "up", "down"]


class Rate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True,
             omit_defaults=True):
    kind: Kind
    zone: ZoneName
    band: ZoneName
    connect_fee: DecimalText = "0"
    steps: Annotated[list[Step], msgspec.Meta(min_length=1, max_length=50)]
    minimum_charge: DecimalText | None = None
    maximum_charge: DecimalText | None = None
    rounding: Rounding | None = None


class TimeBand(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True,
             omit_defaults=True):
    name: ZoneName
    days: Annotated[list[Day], msgspec.Meta(max_length=7)] = []
    from_: ClockTime | None = msgspec.field(name="from", default=None)
    to: ClockTime | None = None
    default: bool = False


class TariffVersionIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True,
             omit_defaults=True):
    effective_from: Timestamp
    timezone: TimeZone
    zones: Annotated[dict[ZoneName, Annotated[list[Prefix], msgspec.Meta(max_length=100_000)]],
                     msgspec.Meta(max_length=10_000)] = {}
    time_bands: Annotated[list[TimeBand], msgspec.Meta(max_length=100)] = []
    rates: Annotated[list[Rate], msgspec.Meta(max_length=10_000)]


class TariffIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True,
             omit_defaults=True):
    id: Id
    currency: Currency | None = None
    description: Text = ""
    versions: Annotated[list[TariffVersionIn], msgspec.Meta(max_length=1000)] = []


class CatalogAccount(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True,
             omit_defaults=True):
    id: Id
    name: Text = ""
    currency: Currency | None = None
    identifiers: Annotated[list[Identifier], msgspec.Meta(max_length=100)] = []
    tariff: Id | None = None
    product: Id | None = None  # the product of the first subscription (needs the tariff)
    attrs: Attrs = {}


class CatalogIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True,
             omit_defaults=True):
    currency: Currency = "EUR"
    tariffs: Annotated[list[TariffIn], msgspec.Meta(max_length=1000)] = []
    accounts: Annotated[list[CatalogAccount], msgspec.Meta(max_length=100_000)] = []
    products: Annotated[list[ProductDef], msgspec.Meta(max_length=10_000)] = []
    tax_rates: Annotated[list[TaxRateDef], msgspec.Meta(max_length=10_000)] = []
    discounts: Annotated[list[DiscountDef], msgspec.Meta(max_length=10_000)] = []


def check_catalog(catalog: CatalogIn) -> BillingCatalog:
    """Every rule a catalog file is held to, with ``$.``-paths; the checked billing
    sections."""
    tariff_ids = set()
    for t, tariff in enumerate(catalog.tariffs):
        if tariff.id in tariff_ids:
            _fail(f"$.tariffs[{t}].id", f"tariff {tariff.id} appears twice")
        tariff_ids.add(tariff.id)
        seen = set()
        for v, version in enumerate(tariff.versions):
            if version.effective_from in seen:
                _fail(f"$.tariffs[{t}].versions[{v}].effective_from", "appears twice")
            seen.add(version.effective_from)
            check_version(version, f"$.tariffs[{t}].versions[{v}]", tariff.id)
    products = {p.id for p in catalog.products}
    for a, account in enumerate(catalog.accounts):
        if account.tariff is not None and account.tariff not in tariff_ids:
            _fail(f"$.accounts[{a}].tariff", f"no tariff {account.tariff} in this catalog")
        if account.product is not None and account.product not in products:
            _fail(f"$.accounts[{a}].product", f"no product {account.product} in this catalog")
        if account.product is not None and account.tariff is None:
            _fail(f"$.accounts[{a}].product", "a subscription needs a tariff too")
    try:
        return check_sections(catalog.products, catalog.tax_rates, catalog.discounts,
                              catalog.currency, prefix="$.")
    except CatalogError as exc:
        raise invalid(exc) from None


def check_version(version: TariffVersionIn, at: str = "$", tariff_id: str = "") -> None:
    """Cross-field rules: zones and bands referenced exist, steps start at 0 and ascend;
    then the rating engine's own checks (``server.catalog``), so that nothing is published
    that the raters would refuse to build."""
    _check_zone(version.timezone, f"{at}.timezone")
    bands = {b.name for b in version.time_bands}
    defaults = [i for i, b in enumerate(version.time_bands) if b.default]
    if len(defaults) > 1:
        _fail(f"{at}.time_bands[{defaults[1]}].default", "only one band can be the default")
    for b, band in enumerate(version.time_bands):
        if not band.default and (band.from_ is None or band.to is None or not band.days):
            _fail(f"{at}.time_bands[{b}]", "a band that is not the default needs days, from, to")
        if band.from_ is not None and band.to is not None and band.from_ >= band.to:
            _fail(f"{at}.time_bands[{b}].to", "must be after from")
    keys = set()
    for r, rate in enumerate(version.rates):
        where = f"{at}.rates[{r}]"
        if rate.zone != "*" and rate.zone not in version.zones:
            _fail(f"{where}.zone", f"no zone {rate.zone} in this version")
        if rate.band != "*" and rate.band not in bands:
            _fail(f"{where}.band", f"no time band {rate.band} in this version")
        if (rate.kind, rate.zone, rate.band) in keys:
            _fail(where, f"a second rate for {rate.kind}/{rate.zone}/{rate.band}")
        keys.add((rate.kind, rate.zone, rate.band))
        if rate.steps[0].from_ != 0:
            _fail(f"{where}.steps[0].from", "the first step starts at 0")
        for s in range(1, len(rate.steps)):
            if rate.steps[s].from_ <= rate.steps[s - 1].from_:
                _fail(f"{where}.steps[{s}].from", "steps must start in ascending order")
        if (rate.minimum_charge is not None and rate.maximum_charge is not None
                and _dec(rate.minimum_charge) > _dec(rate.maximum_charge)):
            _fail(f"{where}.maximum_charge", "is below minimum_charge")
    try:
        version_from_definition(tariff_id or "tariff", msgspec.to_builtins(version), at)
    except CatalogError as exc:
        path = exc.path if exc.path.startswith("$") else f"$.{exc.path}"
        _fail(path, exc.message.removeprefix(f"{exc.path}: "))


def _check_zone(name: str, path: str) -> None:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        _fail(path, f"unknown time zone {name!r}")


def _dec(text: str) -> Decimal:
    return Decimal(text)


def invalid(exc: CatalogError) -> InvalidRequest:
    """A catalog rule's failure as a 422 naming the body's field."""
    return InvalidRequest(f"invalid body: {exc.message}", errors=[
        {"location": "body", "path": exc.path,
         "message": exc.message.removeprefix(f"{exc.path}: ")}])


def _fail(path: str, message: str) -> None:
    raise InvalidRequest(f"invalid catalog: {path}: {message}",
                         errors=[{"location": "body", "path": path, "message": message}])
