"""Compiles a checked catalog's tariffs into the flat tables of the native kernel.

Only tariffs: accounts are resolved apart (``server.rating.accounts``), so a new account
never recompiles. Everything the kernel needs is resolved here, once per set of tariffs:
versions in effective
order per tariff, zone names to ids (``native.rating.Lpm`` per version), the band of every
second of each local weekday as segments, time-zone offsets as transition tables, the rate
precedence (``server.rating.reference`` documents it) as a dense kind x zone x band table,
and every money quantity as an integer scaled by the rate's common denominator.
"""

from __future__ import annotations

import functools
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from zoneinfo import ZoneInfo

from billing_oss.core.money import INT64_MAX, MICROS_PER_UNIT
from billing_oss.native import rating as native_rating
from billing_oss.server.catalog.model import (
    EVENT_MAX_US,
    KINDS,
    WILDCARD,
    Rate,
    Tariff,
    TariffVersion,
)
from billing_oss.server.catalog.rules import RULES

_DAY = 86_400
_FIRST_SECOND = -2 * _DAY  # tables start a little before 1970 (offsets shift local days)
_LAST_SECOND = EVENT_MAX_US // 1_000_000 + 2 * _DAY


# A stored version's database id by (tariff id, effective_from in µs).
VersionIds = Mapping[tuple[str, int], int]


@dataclass(frozen=True, slots=True)
class CompiledTariffs:
    kernel: native_rating.Kernel
    tariff_index: dict[str, int]  # tariff id -> kernel tariff number
    versions: tuple[TariffVersion, ...]  # kernel version number -> version
    version_ids: tuple[int | None, ...]  # kernel version number -> stored id (None: a file's)
    zone_names: tuple[tuple[str, ...], ...]  # per version: zone id -> name
    band_names: tuple[tuple[str, ...], ...]  # per version: band id -> name
    currencies: tuple[str, ...]  # per tariff number
    lpms: tuple[native_rating.Lpm, ...]


def compile_tariffs(
    tariffs: Mapping[str, Tariff], version_ids: VersionIds | None = None
) -> CompiledTariffs:
    """The kernel for ``tariffs``; ``version_ids`` names stored versions (database ids)."""
    ids = version_ids or {}
    tables: dict[str, array[int]] = {
        name: array(code)
        for name, code in (
            ("tariff_versions", "i"),
            ("v_effective", "q"),
            ("v_tz", "i"),
            ("v_zones", "i"),
            ("v_bands", "i"),
            ("v_rate_base", "i"),
            ("v_day_base", "i"),
            ("rate_select", "i"),
            ("day_offsets", "i"),
            ("seg_start", "q"),
            ("seg_band", "i"),
            ("tz_offsets", "i"),
            ("tz_trans", "q"),
            ("tz_shift", "q"),
            ("r_denominator", "q"),
            ("r_step_offsets", "i"),
            ("s_from", "q"),
            ("s_next", "q"),
            ("s_increment", "q"),
        )
    }
    wide: dict[str, list[int]] = {"s_coef": []}
    rule_columns = _rule_columns()
    tz_numbers: dict[str, int] = {}
    versions: list[TariffVersion] = []
    zone_names: list[tuple[str, ...]] = []
    band_names: list[tuple[str, ...]] = []
    lpms: list[native_rating.Lpm] = []
    tables["tariff_versions"].append(0)
    tables["tz_offsets"].append(0)
    tables["r_step_offsets"].append(0)
    for tariff in tariffs.values():
        for version in tariff.versions:
            zones = tuple(version.zones)
            bands = version.band_names
            versions.append(version)
            zone_names.append(zones)
            band_names.append(bands)
            lpms.append(_lpm(version, zones))
            tables["v_effective"].append(version.effective_us)
            tables["v_tz"].append(_tz_number(version.timezone, tz_numbers, tables))
            tables["v_zones"].append(len(zones))
            tables["v_bands"].append(len(bands))
            _add_band_segments(version, bands, tables)
            _add_rates(version, zones, bands, tables, wide, rule_columns)
        tables["tariff_versions"].append(len(versions))
    compiled = native_rating.Kernel({**tables, **wide, **rule_columns}, lpms)
    return CompiledTariffs(
        kernel=compiled,
        tariff_index={tariff_id: n for n, tariff_id in enumerate(tariffs)},
        versions=tuple(versions),
        version_ids=tuple(ids.get((v.tariff_id, v.effective_us)) for v in versions),
        zone_names=tuple(zone_names),
        band_names=tuple(band_names),
        currencies=tuple(t.currency for t in tariffs.values()),
        lpms=tuple(lpms),
    )


def _rule_columns() -> dict[str, array[int] | list[int]]:
    """The pricing rules' per-rate columns, empty, typed as the kernel reads them (a list
    holds 128-bit values); a rule without its kernel lines is refused here."""
    declared = native_rating.RULE_COLUMNS
    filled = {column for rule in RULES for column in rule.columns}
    if filled != declared.keys():
        raise RuntimeError(
            "the pricing rules and the rating kernel disagree: the kernel reads no column "
            f"{sorted(filled - declared.keys())}, no rule fills {sorted(declared.keys() - filled)}"
            " (a rule's columns go in native/rating.pyx's RULE_COLUMNS and Kernel._amount)")
    return {name: [] if code == "wide" else array(code) for name, code in declared.items()}


def _lpm(version: TariffVersion, zones: Sequence[str]) -> native_rating.Lpm:
    prefixes: list[str] = []
    ids = array("i")
    for number, name in enumerate(zones):
        listed = version.zones[name]
        prefixes.extend(listed)
        ids.extend(array("i", [number]) * len(listed))
    return native_rating.Lpm(prefixes, ids)


def _tz_number(name: str, numbers: dict[str, int], tables: dict[str, array[int]]) -> int:
    if name not in numbers:
        numbers[name] = len(numbers)
        transitions, shifts = tz_transitions(name)
        tables["tz_trans"].extend(transitions)
        tables["tz_shift"].extend(shifts)
        tables["tz_offsets"].append(len(tables["tz_trans"]))
    return numbers[name]


@functools.lru_cache(maxsize=64)
def tz_transitions(name: str) -> tuple[array[int], array[int]]:
    """(UTC instants in µs from which each offset applies, offsets in µs); first at -inf.

    Sampled daily over 1970..2100 and refined to the second by bisection: offsets that
    change twice within one day would be missed; no IANA zone does that in this window.
    """
    zone = ZoneInfo(name)

    def offset(second: int) -> int:
        shift = datetime.fromtimestamp(second, UTC).astimezone(zone).utcoffset()
        assert shift is not None
        return int(shift.total_seconds())

    transitions, shifts = array("q", [-(2**63)]), array("q", [offset(_FIRST_SECOND) * 1_000_000])
    current = offset(_FIRST_SECOND)
    second = _FIRST_SECOND
    while second < _LAST_SECOND:
        following = second + _DAY
        value = offset(following)
        if value != current:
            low, high = second, following  # offset(low) == current != offset(high)
            while high - low > 1:
                middle = (low + high) // 2
                if offset(middle) == current:
                    low = middle
                else:
                    high = middle
            transitions.append(high * 1_000_000)
            shifts.append(value * 1_000_000)
            current = value
        second = following
    return transitions, shifts


def _add_band_segments(
    version: TariffVersion, names: Sequence[str], tables: dict[str, array[int]]
) -> None:
    tables["v_day_base"].append(len(tables["day_offsets"]))
    default = names.index(version.default_band) if version.default_band is not None else -1
    for weekday in range(7):
        tables["day_offsets"].append(len(tables["seg_start"]))
        edges = {0}
        for band in version.bands:
            if weekday in band.days:
                edges.update((band.start, band.end % _DAY))
        previous = None
        for edge in sorted(edges):
            band_id = next(
                (names.index(b.name) for b in version.bands if b.contains(weekday, edge)),
                default,
            )
            if band_id != previous:
                tables["seg_start"].append(edge * 1_000_000)
                tables["seg_band"].append(band_id)
                previous = band_id
    tables["day_offsets"].append(len(tables["seg_start"]))


def _add_rates(
    version: TariffVersion,
    zones: Sequence[str],
    bands: Sequence[str],
    tables: dict[str, array[int]],
    wide: dict[str, list[int]],
    rule_columns: dict[str, array[int] | list[int]],
) -> None:
    first = len(tables["r_denominator"])
    by_key = {(r.kind, r.zone, r.band): first + n for n, r in enumerate(version.rates)}
    for rate in version.rates:
        _add_rate(rate, tables, wide, rule_columns)
    tables["v_rate_base"].append(len(tables["rate_select"]))
    zone_slots: list[str | None] = [*zones, None]  # last slot: the record has no called
    band_slots: list[str | None] = [*bands, None]  # last slot: no band applies
    for kind in KINDS:
        for zone in zone_slots:
            for band in band_slots:
                tables["rate_select"].append(_select(by_key, kind, zone, band))


def _select(
    by_key: dict[tuple[str, str, str], int], kind: str, zone: str | None, band: str | None
) -> int:
    for wanted_zone in ([zone] if zone is not None else []) + [WILDCARD]:
        for wanted_band in ([band] if band is not None else []) + [WILDCARD]:
            found = by_key.get((kind, wanted_zone, wanted_band))
            if found is not None:
                return found
    return -1


def _add_rate(
    rate: Rate,
    tables: dict[str, array[int]],
    wide: dict[str, list[int]],
    rule_columns: dict[str, array[int] | list[int]],
) -> None:
    scale = MICROS_PER_UNIT * rate.denominator

    def scaled(value: Fraction) -> int:
        exact = value * scale
        assert exact.denominator == 1, "the common denominator must clear every quantity"
        return int(exact.numerator)

    tables["r_denominator"].append(rate.denominator)
    for rule in RULES:
        values = rule.compile(rate.rules[rule.name], scaled)
        for column, value in zip(rule.columns, values, strict=True):
            rule_columns[column].append(value)
    for n, step in enumerate(rate.steps):
        following = rate.steps[n + 1].start if n + 1 < len(rate.steps) else INT64_MAX
        tables["s_from"].append(step.start)
        tables["s_next"].append(following)
        tables["s_increment"].append(step.increment)
        wide["s_coef"].append(scaled(step.price / step.unit))
    tables["r_step_offsets"].append(len(tables["s_from"]))
