"""The reference rater: DESIGN.md §5 in plain Python with exact ``Fraction`` arithmetic.

This is the executable specification the native kernel is tested against; it favours
reading top-down over speed. Choices the design leaves open (shared with the kernel):

- Zone: the longest prefix of ``called`` among all the version's prefixes. A record with
  ``called`` that no prefix matches is ``NO_ZONE``. A record without ``called`` (data,
  usually) has no zone: only rates with zone ``"*"`` apply; if none does, ``NO_ZONE``.
- Band: local time = event start in the version's time zone (converted from UTC, so DST
  gaps and overlaps are unambiguous); the first ``time_bands`` entry, in file order, whose
  days and [from, to) contain it; else the default band; else no band (only ``"*"`` band
  rates apply).
- Rate precedence for kind K, zone Z, band B: (Z, B), then (Z, "*"), then ("*", B), then
  ("*", "*"); a more specific zone beats a more specific band. None -> ``NO_RATE``.
- ``u == 0`` -> amount 0 (no per-call pricing rule applies), once a rate is found.
- OVERFLOW: the final amount does not fit a signed 64-bit count of micro-units.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

from billing_oss.core.errors import Reason
from billing_oss.core.money import INT64_MAX, fraction_to_micros
from billing_oss.core.ports import Charge, Failure
from billing_oss.core.records import UsageRecord
from billing_oss.server.catalog.model import WILDCARD, Catalog, Rate, TariffVersion
from billing_oss.server.catalog.rules import RULES
from billing_oss.server.rating.accounts import Accounts
from billing_oss.server.rating.compile import VersionIds
from billing_oss.server.rating.failures import failure
from billing_oss.server.rating.fields import BadField, event_micros, usage_of

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ReferenceRater:
    """Same constructor and outcomes as ``NativeRater``; nothing is compiled."""

    def __init__(self, catalog: Catalog, *, accounts: Accounts | None = None,
                 version_ids: VersionIds | None = None) -> None:
        self.catalog = catalog
        self.accounts = accounts if accounts is not None else Accounts(catalog.identifiers)
        self.version_ids = version_ids or {}

    def rate(self, records: Sequence[UsageRecord]) -> list[Charge | Failure]:
        return [self.rate_one(record) for record in records]

    def rate_one(self, record: UsageRecord) -> Charge | Failure:
        try:
            event_us = event_micros(record.event_time)
            usage = usage_of(record)
        except BadField as exc:
            return failure(Reason.BAD_FIELD, record, detail=str(exc))

        account = self.accounts.find(record)
        if account is None:
            return failure(Reason.UNKNOWN_ACCOUNT, record)
        tariff_id = account.tariff_at(event_us)
        tariff = self.catalog.tariffs.get(tariff_id) if tariff_id is not None else None
        version = version_at(tariff.versions, event_us) if tariff is not None else None
        if tariff is None or version is None:
            return failure(Reason.NO_TARIFF, record, account.id)

        called = record.called or None
        zone = longest_prefix_zone(version, called) if called else None
        if called and zone is None:
            return failure(Reason.NO_ZONE, record, account.id)
        band = band_at(version, event_us)
        rate = find_rate(version, record.kind, zone, band)
        if rate is None:
            reason = Reason.NO_ZONE if called is None else Reason.NO_RATE
            return failure(reason, record, account.id)

        micros = amount_micros(rate, usage)
        if micros > INT64_MAX:
            return failure(Reason.OVERFLOW, record, account.id)
        stored = self.version_ids.get((tariff.id, version.effective_us))
        return Charge(account.id, stored, zone, band, micros, tariff.currency, version.identity)


def version_at(versions: Sequence[TariffVersion], event_us: int) -> TariffVersion | None:
    """The latest version with effective_from <= event time."""
    effective = [v for v in versions if v.effective_us <= event_us]
    return max(effective, key=lambda v: v.effective_us) if effective else None


def longest_prefix_zone(version: TariffVersion, called: str) -> str | None:
    for length in range(len(called), 0, -1):
        zone = version.prefix_zone.get(called[:length])
        if zone is not None:
            return zone
    return None


def band_at(version: TariffVersion, event_us: int) -> str | None:
    local = (_EPOCH + timedelta(microseconds=event_us)).astimezone(ZoneInfo(version.timezone))
    second_of_day = Fraction(local.hour * 3600 + local.minute * 60 + local.second) + Fraction(
        local.microsecond, 1_000_000
    )
    for band in version.bands:
        if band.contains(local.weekday(), second_of_day):
            return band.name
    return version.default_band


def find_rate(version: TariffVersion, kind: str, zone: str | None, band: str | None) -> Rate | None:
    zones = ([zone] if zone is not None else []) + [WILDCARD]
    bands = ([band] if band is not None else []) + [WILDCARD]
    for wanted_zone in zones:
        for wanted_band in bands:
            for rate in version.rates:
                if (rate.kind, rate.zone, rate.band) == (kind, wanted_zone, wanted_band):
                    return rate
    return None


def amount_micros(rate: Rate, usage: int) -> int:
    """DESIGN.md §5 steps 3-5: the steps' exact total, then each per-call pricing rule in
    its order, then micro-units."""
    if usage == 0:
        return 0
    total = sum((step_cost(rate, i, usage) for i in range(len(rate.steps))), Fraction(0))
    for rule in RULES:
        total = rule.apply(rate.rules[rule.name], total, usage)
    return fraction_to_micros(total)


def step_cost(rate: Rate, index: int, usage: int) -> Fraction:
    step = rate.steps[index]
    following = rate.steps[index + 1].start if index + 1 < len(rate.steps) else None
    upper = usage if following is None else min(usage, following)
    portion = max(0, upper - step.start)
    billed = math.ceil(Fraction(portion, step.increment)) * step.increment
    return billed * step.price / step.unit

