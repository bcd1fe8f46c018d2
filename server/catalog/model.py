"""The checked catalog: what raters are built from. Built only by ``server.catalog.validate``.

Money is an exact ``Fraction`` of the currency unit here; times are integer microseconds
since the Unix epoch (UTC) and band edges integer seconds of the local day.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from billing_oss.server.catalog.billing import BillingCatalog

# 1970-01-01 .. 2100-01-01 UTC: the window of event times the raters accept (the native
# kernel's time-zone tables cover it; anything outside is a BAD_FIELD for both raters).
EVENT_MIN_US = 0
EVENT_MAX_US = 4_102_444_800 * 1_000_000

WILDCARD = "*"
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
KINDS = ("voice", "sms", "data", "event")


@dataclass(frozen=True, slots=True)
class Step:
    start: int
    price: Fraction
    unit: int
    increment: int


@dataclass(frozen=True, slots=True)
class Rate:
    kind: str
    zone: str  # a zone name or "*"
    band: str  # a band name or "*"
    steps: tuple[Step, ...]
    # Each per-call pricing rule's checked value by its name (``server.catalog.rules``).
    rules: dict[str, Any]
    # Common denominator of every micro-unit quantity of this rate (<= 2**62): the
    # native kernel works on integers scaled by it.
    denominator: int
    path: str


@dataclass(frozen=True, slots=True)
class Band:
    """One ``time_bands`` entry that is not the default: days + [start, end) local seconds.

    ``start > end`` wraps midnight: [start, 24:00) and [00:00, end) of each listed day.
    """

    name: str
    days: frozenset[int]  # 0 = Monday
    start: int
    end: int

    def contains(self, weekday: int, second_of_day: Fraction | int) -> bool:
        if weekday not in self.days:
            return False
        if self.start < self.end:
            return self.start <= second_of_day < self.end
        return second_of_day >= self.start or second_of_day < self.end


@dataclass(frozen=True, slots=True)
class TariffVersion:
    tariff_id: str
    effective_from: str  # normalised RFC 3339 UTC, e.g. 2026-01-01T00:00:00Z
    effective_us: int
    timezone: str
    zones: dict[str, tuple[str, ...]]  # zone name -> prefixes, in file order
    prefix_zone: dict[str, str]  # every prefix -> its zone name
    bands: tuple[Band, ...]  # in file order; the first that contains the time wins
    default_band: str | None
    band_names: tuple[str, ...]  # every distinct band name, defaults included
    rates: tuple[Rate, ...]
    path: str

    @property
    def identity(self) -> str:
        """Stable name of this version: ``<tariff id>@<effective_from>``."""
        return f"{self.tariff_id}@{self.effective_from}"


@dataclass(frozen=True, slots=True)
class Tariff:
    id: str
    currency: str
    versions: tuple[TariffVersion, ...]  # ascending effective_from


@dataclass(frozen=True, slots=True)
class Plan:
    """One subscription: the account is on ``tariff_id`` for events in ``[from, to)``."""

    valid_from_us: int
    valid_to_us: int | None
    tariff_id: str


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    tariff_id: str | None  # None: on no tariff (records are NO_TARIFF)
    # Subscription history. Empty: always on ``tariff_id`` (a catalog file's account).
    plans: tuple[Plan, ...] = ()

    def tariff_at(self, event_us: int) -> str | None:
        """The tariff the account is on at the event time (None: no subscription then).

        A record is rated under the plan in force when it happened, so rerating a past
        period after a plan change still prices it on the plan of that time.
        """
        if not self.plans:
            return self.tariff_id
        for plan in self.plans:
            if plan.valid_from_us <= event_us and (
                plan.valid_to_us is None or event_us < plan.valid_to_us
            ):
                return plan.tariff_id
        return None


@dataclass(frozen=True, slots=True)
class Catalog:
    currency: str
    tariffs: dict[str, Tariff]
    identifiers: dict[str, Account] = field(default_factory=dict)
    billing: BillingCatalog = field(default_factory=BillingCatalog)  # what invoicing needs
