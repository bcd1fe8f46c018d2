"""Hypothesis strategies for rating tests: generated catalogs (as dicts) and records.

Values are biased towards the places where raters go wrong: band edges, DST change days,
version changes, odd increments, step boundaries, prefixes nested inside each other,
prices with six decimals and amounts that overflow int64 micro-units.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from billing_oss.core.records import UsageRecord

TIMEZONES = (
    "UTC",
    "Europe/Paris",
    "America/New_York",
    "Australia/Lord_Howe",  # 30-minute DST shift
    "Asia/Kolkata",
    "America/Sao_Paulo",
    "Pacific/Chatham",
)
# Days with DST changes somewhere in TIMEZONES, plus ordinary days.
SPECIAL_DAYS = (
    datetime(2026, 3, 29, tzinfo=UTC),
    datetime(2026, 10, 25, tzinfo=UTC),
    datetime(2026, 3, 8, tzinfo=UTC),
    datetime(2026, 11, 1, tzinfo=UTC),
    datetime(2026, 4, 5, tzinfo=UTC),
    datetime(2026, 9, 27, tzinfo=UTC),
    datetime(2018, 11, 4, tzinfo=UTC),
    datetime(2026, 1, 15, tzinfo=UTC),
)
VERSION_TIMES = (
    datetime(2025, 1, 1, tzinfo=UTC),
    datetime(2026, 1, 1, tzinfo=UTC),
    datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
    datetime(2026, 6, 1, 12, 30, 15, tzinfo=UTC),
)
DIGITS = "0123"  # a small alphabet so generated prefixes nest and numbers match them
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
KINDS = ("voice", "sms", "data", "event")


def rfc3339(moment: datetime) -> str:
    text = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}"
    return text + "Z"


@st.composite
def decimals(draw: st.DrawFn, max_units: int = 10) -> str:
    places = draw(st.integers(0, 6))
    whole = draw(st.integers(0, max_units))
    if places == 0:
        return str(whole)
    frac = draw(st.integers(0, 10**places - 1))
    return f"{whole}.{frac:0{places}d}"


@st.composite
def time_of_day(draw: st.DrawFn, *, end: bool = False) -> str:
    hours = draw(st.integers(0, 24 if end else 23))
    if hours == 24:
        return "24:00"
    minutes = draw(st.sampled_from((0, 30, 59, draw(st.integers(0, 59)))))
    if draw(st.booleans()):
        return f"{hours:02d}:{minutes:02d}:{draw(st.integers(0, 59)):02d}"
    return f"{hours:02d}:{minutes:02d}"


def _seconds(text: str) -> int:
    parts = [int(part) for part in text.split(":")] + [0]
    return parts[0] * 3600 + parts[1] * 60 + parts[2]


@st.composite
def bands(draw: st.DrawFn) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for n in range(draw(st.integers(0, 3))):
        start, end = draw(time_of_day()), draw(time_of_day(end=True))
        if _seconds(start) == _seconds(end):
            continue
        entry: dict[str, Any] = {"name": f"b{n % 2}" if n < 3 else "x", "from": start, "to": end}
        if draw(st.booleans()):
            entry["days"] = draw(
                st.lists(st.sampled_from(DAYS), min_size=1, max_size=7, unique=True)
            )
        entries.append(entry)
    if draw(st.booleans()):
        entries.insert(draw(st.integers(0, len(entries))), {"name": "default", "default": True})
    return entries


@st.composite
def steps(draw: st.DrawFn) -> list[dict[str, Any]]:
    starts = [0, *sorted(draw(st.sets(st.integers(1, 10**7), max_size=2)))]
    return [
        {
            "from": start,
            "price": draw(st.one_of(decimals(), decimals(max_units=10**6))),
            "unit": draw(
                st.sampled_from((1, 60, 1000, 1024, 1048576, draw(st.integers(1, 10**6))))
            ),
            "increment": draw(st.sampled_from((1, 7, 60, 1024, draw(st.integers(1, 10**4))))),
        }
        for start in starts
    ]


@st.composite
def rates(draw: st.DrawFn, zones: list[str], band_names: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str, str]] = set()
    for _ in range(draw(st.integers(1, 12))):
        key = (
            draw(st.sampled_from(KINDS)),
            draw(st.sampled_from([*zones, "*"])),
            draw(st.sampled_from([*band_names, "*"])),
        )
        if key in seen:
            continue
        seen.add(key)
        rate: dict[str, Any] = {
            "kind": key[0],
            "zone": key[1],
            "band": key[2],
            "connect_fee": draw(decimals(max_units=2)),
            "steps": draw(steps()),
        }
        if draw(st.booleans()):
            rate["minimum_charge"] = draw(decimals(max_units=3))
        if draw(st.booleans()):
            rate["maximum_charge"] = draw(st.one_of(decimals(max_units=50), st.just(None)))
        if draw(st.booleans()):
            rate["rounding"] = {
                "decimals": draw(st.integers(0, 6)),
                "method": draw(st.sampled_from(("half-up", "half-even", "up", "down"))),
            }
        out.append(rate)
    return out


@st.composite
def versions(draw: st.DrawFn) -> dict[str, Any]:
    prefixes = draw(
        st.lists(st.text(DIGITS, min_size=1, max_size=5), min_size=1, max_size=12, unique=True)
    )
    zone_count = draw(st.integers(1, 3))
    zones: dict[str, list[str]] = {f"z{n}": [] for n in range(zone_count)}
    for prefix in prefixes:
        zones[f"z{draw(st.integers(0, zone_count - 1))}"].append(prefix)
    band_entries = draw(bands())
    band_names = sorted({entry["name"] for entry in band_entries})
    return {
        "timezone": draw(st.sampled_from(TIMEZONES)),
        "zones": zones,
        "time_bands": band_entries,
        "rates": draw(rates(list(zones), band_names)),
    }


@st.composite
def catalogs(draw: st.DrawFn) -> dict[str, Any]:
    tariffs = []
    for t in range(draw(st.integers(1, 2))):
        times = draw(st.lists(st.sampled_from(VERSION_TIMES), min_size=1, max_size=3, unique=True))
        tariff_versions = []
        for moment in times:
            version = draw(versions())
            tariff_versions.append({"effective_from": rfc3339(moment), **version})
        tariffs.append({"id": f"t{t}", "versions": tariff_versions})
    accounts = [
        {"id": f"A{t}", "identifiers": [f"1{t}00", f"2{t}00"], "tariff": f"t{t}"}
        for t in range(len(tariffs))
    ]
    return {"currency": "EUR", "tariffs": tariffs, "accounts": accounts}


@st.composite
def event_times(draw: st.DrawFn) -> str:
    base = draw(st.sampled_from(SPECIAL_DAYS + VERSION_TIMES))
    if draw(st.booleans()):
        offset = timedelta(seconds=draw(st.integers(-3 * 86400, 3 * 86400)))
    else:
        offset = timedelta(
            hours=draw(st.integers(-30, 30)), minutes=draw(st.sampled_from((0, 30, 59)))
        )
        offset += timedelta(seconds=draw(st.sampled_from((-1, 0, 1, 59))))
    if draw(st.integers(0, 9)) == 0:
        offset += timedelta(microseconds=draw(st.integers(0, 999_999)))
    if draw(st.integers(0, 19)) == 0:
        return draw(
            st.sampled_from(
                (
                    "2026-13-01T00:00:00Z",
                    "yesterday",
                    "2026-01-01T00:00:00",
                    "1969-12-31T23:59:59Z",
                    "2026-01-01T02:00:00+02:00",
                )
            )
        )
    return rfc3339(base + offset)


@st.composite
def called_numbers(draw: st.DrawFn, prefixes: list[str]) -> str | None:
    if prefixes and draw(st.integers(0, 3)):
        return draw(st.sampled_from(prefixes)) + draw(st.text(DIGITS, max_size=10))
    return draw(
        st.one_of(
            st.none(),
            st.just(""),
            st.text(DIGITS, min_size=1, max_size=12),
            st.just("+3312"),
            st.text("0123x", max_size=6),
        )
    )


@st.composite
def records(draw: st.DrawFn, index: int = 0, prefixes: tuple[str, ...] = ()) -> UsageRecord:
    kind = draw(st.sampled_from(KINDS))
    identifier = draw(
        st.sampled_from(("1000", "1000", "1000", "2000", "1100", "2100", "999", None))
    )
    called = draw(called_numbers(list(prefixes)))
    fields: dict[str, Any] = {
        "record_key": f"r{index}",
        "source": "test",
        "kind": kind,
        "event_time": draw(event_times()),
        "called": called,
    }
    if kind in ("voice", "sms"):
        fields["calling"] = identifier
    else:
        fields[draw(st.sampled_from(("msisdn", "imsi", "msisdn", "imsi", "calling")))] = identifier
    if kind == "voice" and draw(st.integers(0, 19)):
        fields["duration_s"] = draw(
            st.one_of(st.integers(0, 10**7), st.sampled_from((0, 1, 59, 60, 61)))
        )
    if kind == "data":
        if draw(st.integers(0, 19)):
            fields["volume_up"] = draw(st.integers(0, 10**13))
        if draw(st.booleans()):
            fields["volume_down"] = draw(st.integers(0, 10**13))
    return UsageRecord(**fields)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[dict[str, Any], list[UsageRecord]]:
    """A catalog and a batch of records whose numbers mostly fall under its prefixes."""
    catalog = draw(catalogs())
    prefixes = tuple(
        prefix
        for tariff in catalog["tariffs"]
        for version in tariff["versions"]
        for zone in version["zones"].values()
        for prefix in zone
    )
    size = draw(st.integers(1, 30))
    return catalog, [draw(records(index=n, prefixes=prefixes)) for n in range(size)]
