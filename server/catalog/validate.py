"""Checks a parsed catalog and builds the model; every problem is a ``CatalogError`` whose
``path`` names the offending field (``tariffs[0].versions[1].rates[3].steps[1].increment``).

Rules beyond DESIGN.md §5's text, chosen here and relied on by both raters:

- Money (a step's ``price``, the amounts of the per-call pricing rules) is a
  non-negative decimal string; prices may have more than 6 decimals (they are exact
  rationals until the final rounding), but each rate's quantities must share a common
  denominator <= 2**62 in micro-units, and the rules' amounts must fit int64 micro-units.
- Steps: ``steps[0].from`` is 0 (no gap before the first step), each ``from`` is strictly
  greater than the previous (no overlap); ``unit`` and ``increment`` are >= 1.
- A prefix is 1..18 ASCII digits and appears once per version, across all zones.
- Time bands: ``from``/``to`` are ``HH:MM`` or ``HH:MM:SS`` (``to`` may be ``24:00``);
  ``from > to`` wraps midnight on each listed day; ``days`` defaults to every day; at most
  one entry is ``default``; entries may share a name (the band is their union); the first
  matching entry in file order wins.
- Rates: ``zone``/``band`` name a defined zone/band or ``"*"``; a kind × zone × band is
  given once. Each per-call pricing rule checks its own fields (``server.catalog.rules``),
  in the rules' order, after the steps.
- ``effective_from`` is RFC 3339 with an offset, unique within its tariff. A tariff may have
  no version yet (versions are published later; its records are ``NO_TARIFF`` until then).
- An account's ``tariff`` is optional (no tariff: its records are ``NO_TARIFF``); a
  ``product`` needs a tariff.
- ``currency`` defaults to EUR.
- The billing sections (``products``, ``tax_rates``, ``discounts``) follow
  ``server.catalog.billing``; an account's ``product`` names one of the file's products.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from fractions import Fraction
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from billing_oss.core.errors import CatalogError
from billing_oss.core.money import MICROS_PER_UNIT
from billing_oss.server.catalog.billing import check_sections
from billing_oss.server.catalog.model import (
    DAY_NAMES,
    WILDCARD,
    Account,
    Band,
    Catalog,
    Plan,
    Rate,
    Step,
    Tariff,
    TariffVersion,
)
from billing_oss.server.catalog.rules import RULES
from billing_oss.server.catalog.rules.base import MAX_DENOMINATOR
from billing_oss.server.catalog.rules.base import money as _money
from billing_oss.server.catalog.schema import (
    MAX_PREFIX_DIGITS,
    BandDef,
    CatalogFile,
    RateDef,
    StepDef,
    TariffDef,
    VersionDef,
)

MAX_STEP_FIELD = 2**62
_TIME_RE = re.compile(r"^(\d\d):(\d\d)(?::(\d\d))?$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def validate_catalog(catalog: CatalogFile) -> Catalog:
    tariffs = validate_tariffs(catalog.tariffs, catalog.currency)
    declared = {t.id for t in catalog.tariffs}
    billing = check_sections(catalog.products, catalog.tax_rates, catalog.discounts,
                             catalog.currency)
    products = {p.product_id for p in billing.products}
    identifiers: dict[str, Account] = {}
    seen_accounts: set[str] = set()
    for a_index, account in enumerate(catalog.accounts):
        path = f"accounts[{a_index}]"
        if account.id in seen_accounts:
            raise CatalogError(f"{path}.id", f"account {account.id} is defined twice")
        seen_accounts.add(account.id)
        if account.tariff is not None and account.tariff not in declared:
            raise CatalogError(f"{path}.tariff", f"tariff {account.tariff!r} is not defined")
        if account.product is not None and account.product not in products:
            raise CatalogError(f"{path}.product", f"product {account.product!r} is not defined")
        if account.product is not None and account.tariff is None:
            raise CatalogError(f"{path}.product", "a subscription needs a tariff too")
        # On a tariff with no version yet: nothing to rate by, as with no tariff at all.
        owner = Account(account.id, account.tariff if account.tariff in tariffs else None)
        for i_index, identifier in enumerate(account.identifiers):
            previous = identifiers.get(identifier)
            if previous is not None:
                raise CatalogError(
                    f"{path}.identifiers[{i_index}]",
                    f"identifier {identifier} already belongs to account {previous.id}",
                )
            identifiers[identifier] = owner
    return Catalog(catalog.currency, tariffs, identifiers, billing)


def build_catalog(
    currency: str,
    tariffs: Sequence[TariffDef],
    identifiers: Mapping[str, tuple[str, str]],
    plans: Mapping[str, Sequence[Plan]] | None = None,
) -> Catalog:
    """A catalog from stored tariff definitions and an identifier -> (account, tariff) map;
    ``plans`` (account -> subscription history) makes the tariff depend on the event time."""
    checked = validate_tariffs(tariffs, currency)
    plans = plans or {}
    for account_id, history in plans.items():
        for plan in history:
            if plan.tariff_id not in checked:
                raise CatalogError(f"accounts[{account_id}].subscriptions",
                                   f"tariff {plan.tariff_id!r} is not defined")
    accounts: dict[str, Account] = {}
    for identifier, (account_id, tariff_id) in identifiers.items():
        if tariff_id not in checked:
            raise CatalogError(
                f"accounts[{account_id}].tariff", f"tariff {tariff_id!r} is not defined"
            )
        accounts[identifier] = Account(account_id, tariff_id, tuple(plans.get(account_id, ())))
    return Catalog(currency, checked, accounts)


def validate_tariffs(tariffs: Sequence[TariffDef], currency: str) -> dict[str, Tariff]:
    """The tariffs that can rate (those with a version), checked."""
    checked: dict[str, Tariff] = {}
    seen: set[str] = set()
    for t_index, tariff in enumerate(tariffs):
        path = f"tariffs[{t_index}]"
        if tariff.id in seen:
            raise CatalogError(f"{path}.id", f"tariff {tariff.id} is defined twice")
        seen.add(tariff.id)
        if tariff.versions:
            checked[tariff.id] = validate_tariff(tariff, path, currency)
    return checked


def validate_tariff(tariff: TariffDef, path: str, currency: str) -> Tariff:
    versions: dict[int, TariffVersion] = {}
    for v_index, version in enumerate(tariff.versions):
        checked = validate_version(tariff.id, version, f"{path}.versions[{v_index}]")
        if checked.effective_us in versions:
            raise CatalogError(
                f"{path}.versions[{v_index}].effective_from",
                f"another version of tariff {tariff.id} is effective {checked.effective_from}",
            )
        versions[checked.effective_us] = checked
    ordered = tuple(versions[key] for key in sorted(versions))
    return Tariff(tariff.id, tariff.currency or currency, ordered)


def validate_version(tariff_id: str, version: VersionDef, path: str) -> TariffVersion:
    effective_us, effective_text = _instant(version.effective_from, f"{path}.effective_from")
    try:
        ZoneInfo(version.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise CatalogError(
            f"{path}.timezone", f"unknown IANA time zone {version.timezone!r}"
        ) from None
    zones, prefix_zone = _zones(version.zones, f"{path}.zones")
    bands, default_band, band_names = _bands(version.time_bands, f"{path}.time_bands")
    rates = _rates(version.rates, f"{path}.rates", set(zones), set(band_names))
    return TariffVersion(
        tariff_id=tariff_id,
        effective_from=effective_text,
        effective_us=effective_us,
        timezone=version.timezone,
        zones=zones,
        prefix_zone=prefix_zone,
        bands=bands,
        default_band=default_band,
        band_names=band_names,
        rates=rates,
        path=path,
    )


def _instant(text: str, path: str) -> tuple[int, str]:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise CatalogError(path, f"not an RFC 3339 time: {text!r}") from None
    if moment.tzinfo is None:
        raise CatalogError(path, f"{text!r} needs a UTC offset (e.g. Z)")
    delta = moment - _EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    utc = moment.astimezone(UTC)
    stamp = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        stamp += f".{utc.microsecond:06d}".rstrip("0")
    return micros, stamp + "Z"


def _zones(
    zones: Mapping[str, list[str]], path: str
) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    prefix_zone: dict[str, str] = {}
    for name, prefixes in zones.items():
        if name == WILDCARD or not name:
            raise CatalogError(f"{path}.{name}", f"{name!r} cannot name a zone")
        for p_index, prefix in enumerate(prefixes):
            if not (prefix.isascii() and prefix.isdigit() and len(prefix) <= MAX_PREFIX_DIGITS):
                raise CatalogError(
                    f"{path}.{name}[{p_index}]",
                    f"a prefix is 1 to {MAX_PREFIX_DIGITS} digits, not {prefix!r}",
                )
            owner = prefix_zone.setdefault(prefix, name)
            if owner != name:
                raise CatalogError(
                    f"{path}.{name}[{p_index}]",
                    f"prefix {prefix} is listed twice (already in zone {owner})",
                )
    if len(prefix_zone) != sum(len(p) for p in zones.values()):
        _raise_repeat_in_zone(zones, path)
    return {name: tuple(prefixes) for name, prefixes in zones.items()}, prefix_zone


def _raise_repeat_in_zone(zones: Mapping[str, list[str]], path: str) -> None:
    for name, prefixes in zones.items():
        seen: set[str] = set()
        for p_index, prefix in enumerate(prefixes):
            if prefix in seen:
                raise CatalogError(
                    f"{path}.{name}[{p_index}]",
                    f"prefix {prefix} is listed twice (already in zone {name})",
                )
            seen.add(prefix)


def _bands(
    entries: Sequence[BandDef], path: str
) -> tuple[tuple[Band, ...], str | None, tuple[str, ...]]:
    bands: list[Band] = []
    default: str | None = None
    names: dict[str, None] = {}
    for b_index, entry in enumerate(entries):
        here = f"{path}[{b_index}]"
        if not entry.name or entry.name == WILDCARD:
            raise CatalogError(f"{here}.name", f"{entry.name!r} cannot name a band")
        names[entry.name] = None
        if entry.default:
            if default is not None:
                raise CatalogError(f"{here}.default", f"band {default} is already the default")
            for key, value in (("days", entry.days), ("from", entry.from_), ("to", entry.to)):
                if value is not None:
                    raise CatalogError(f"{here}.{key}", "the default band takes no days or times")
            default = entry.name
            continue
        bands.append(_band(entry, here))
    return tuple(bands), default, tuple(names)


def _band(entry: BandDef, path: str) -> Band:
    if entry.from_ is None or entry.to is None:
        missing = "from" if entry.from_ is None else "to"
        raise CatalogError(f"{path}.{missing}", "required unless the band is the default")
    start = _time_of_day(entry.from_, f"{path}.from", allow_end=False)
    end = _time_of_day(entry.to, f"{path}.to", allow_end=True)
    if start == end:
        raise CatalogError(f"{path}.to", "from and to are equal: the band would be empty")
    days: set[int] = set()
    for d_index, day in enumerate(entry.days if entry.days is not None else DAY_NAMES):
        if day not in DAY_NAMES:
            raise CatalogError(f"{path}.days[{d_index}]", f"{day!r} is not one of {DAY_NAMES}")
        days.add(DAY_NAMES.index(day))
    return Band(entry.name, frozenset(days), start, end)


def _time_of_day(text: str, path: str, *, allow_end: bool) -> int:
    match = _TIME_RE.match(text)
    if match is None:
        raise CatalogError(path, f"expected HH:MM or HH:MM:SS, not {text!r}")
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    value = hours * 3600 + minutes * 60 + seconds
    if minutes > 59 or seconds > 59 or value > 86_400 or (value == 86_400 and not allow_end):
        raise CatalogError(path, f"{text!r} is not a time of day")
    return value


def _rates(
    entries: Sequence[RateDef], path: str, zones: set[str], bands: set[str]
) -> tuple[Rate, ...]:
    rates: list[Rate] = []
    seen: dict[tuple[str, str, str], int] = {}
    for r_index, entry in enumerate(entries):
        here = f"{path}[{r_index}]"
        if entry.zone != WILDCARD and entry.zone not in zones:
            raise CatalogError(f"{here}.zone", f"zone {entry.zone!r} is not defined")
        if entry.band != WILDCARD and entry.band not in bands:
            raise CatalogError(f"{here}.band", f"band {entry.band!r} is not defined")
        key = (entry.kind, entry.zone, entry.band)
        if key in seen:
            raise CatalogError(here, f"same kind, zone and band as {path}[{seen[key]}]")
        seen[key] = r_index
        rates.append(_rate(entry, here))
    return tuple(rates)


def _rate(entry: RateDef, path: str) -> Rate:
    steps = tuple(
        _step(step, f"{path}.steps[{s_index}]") for s_index, step in enumerate(entry.steps)
    )
    if not steps:
        raise CatalogError(f"{path}.steps", "a rate needs at least one step")
    if steps[0].start != 0:
        raise CatalogError(f"{path}.steps[0].from", "the first step must start at 0 (gap)")
    for s_index in range(1, len(steps)):
        if steps[s_index].start <= steps[s_index - 1].start:
            raise CatalogError(
                f"{path}.steps[{s_index}].from",
                f"must be greater than the previous step's from ({steps[s_index - 1].start}):"
                " steps overlap",
            )
    values = {rule.name: rule.check(rule.read(entry), path) for rule in RULES}
    amounts = [amount for rule in RULES for amount in rule.money(values[rule.name])]
    return Rate(
        kind=entry.kind,
        zone=entry.zone,
        band=entry.band,
        steps=steps,
        rules=values,
        denominator=_common_denominator(steps, amounts, path),
        path=path,
    )


def _step(step: StepDef, path: str) -> Step:
    for key, value, low in (
        ("from", step.from_, 0),
        ("unit", step.unit, 1),
        ("increment", step.increment, 1),
    ):
        if not low <= value <= MAX_STEP_FIELD:
            raise CatalogError(f"{path}.{key}", f"must be between {low} and 2**62, not {value}")
    return Step(
        step.from_, _money(step.price, f"{path}.price", fee=False), step.unit, step.increment
    )


def _common_denominator(steps: Sequence[Step], amounts: Sequence[Fraction], path: str) -> int:
    denominator = 1
    quantities = [step.price * MICROS_PER_UNIT / step.unit for step in steps]
    quantities += [amount * MICROS_PER_UNIT for amount in amounts]
    for quantity in quantities:
        denominator = math.lcm(denominator, quantity.denominator)
        if denominator > MAX_DENOMINATOR:
            raise CatalogError(
                f"{path}.steps",
                "units and price decimals too fine to rate exactly "
                "(common denominator of micro-unit prices exceeds 2**62)",
            )
    return denominator
