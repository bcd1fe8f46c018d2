"""The tariff's prices a usage line was rated at, as an invoice prints them beside the
quantity: "0.04/min", or "peak: 0.10 + 0.20/min, then 0.10/min from 1 min, min. 0.15".

A usage line sums the charges of one service and zone; each charge names the tariff version
and the time band that rated it. The rate of each (version, band) is found as the rater
finds it (reference.py: zone and band, then zone and any band, then any zone and band, then
any zone and any band), so the page states the very prices applied, never an average.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

# Names of a step's unit per service: a price per 60 s reads "/min".
_UNITS: Mapping[str, Mapping[int, str]] = {
    "voice": {1: "s", 60: "min", 3600: "h"},
    "data": {1: "byte", 1000: "kB", 1024: "KiB", 1_000_000: "MB", 1_048_576: "MiB",
             1_000_000_000: "GB", 1_073_741_824: "GiB"},
    "sms": {1: "message"},
    "event": {1: "event"},
}
_BASE = {"voice": "s", "data": "bytes", "sms": "messages", "event": "events"}
_PER = {"voice": "call", "data": "session", "sms": "message", "event": "event"}


def rate_for(definition: Mapping[str, Any], kind: str, zone: str,
             band: str) -> Mapping[str, Any] | None:
    """The rate the rater applies to ``kind`` in ``zone`` and ``band`` (precedence above)."""
    rates: list[Mapping[str, Any]] = definition.get("rates", [])
    for want_zone, want_band in ((zone, band), (zone, "*"), ("*", band), ("*", "*")):
        for rate in rates:
            if (rate.get("kind") == kind and rate.get("zone") == want_zone
                    and rate.get("band", "*") == want_band):
                return rate
    return None


def describe(kind: str, rate: Mapping[str, Any]) -> str:
    """One rate's prices: connect fee, the steps' prices per their unit, minimum, maximum."""
    steps = rate.get("steps", [])
    parts = []
    for i, step in enumerate(steps):
        price = f"{_number(step['price'])}/{_unit(kind, int(step['unit']))}"
        if i and int(step["from"]):
            price += f" from {_quantity(kind, int(step['from']))}"
        parts.append(price)
    text = ", then ".join(parts) or "0"
    fee = Decimal(str(rate.get("connect_fee") or 0))
    if fee:
        text = f"{_number(fee)} per {_PER.get(kind, 'record')} + {text}"
    extras = []
    if rate.get("minimum_charge") not in (None, "0"):
        extras.append(f"min. {_number(rate['minimum_charge'])}")
    if rate.get("maximum_charge") not in (None, "0"):
        extras.append(f"max. {_number(rate['maximum_charge'])}")
    return ", ".join([text, *extras])


def prices(definitions: Mapping[int, Mapping[str, Any]], kind: str, zone: str,
           rated: Iterable[tuple[int, str]]) -> list[str]:
    """The distinct prices of the (tariff version, band) pairs a line's charges were rated
    in; each named by its band when the line holds several."""
    found: dict[str, set[str]] = {}
    for version_id, band in sorted(set(rated)):
        definition = definitions.get(version_id)
        rate = rate_for(definition, kind, zone, band) if definition is not None else None
        if rate is not None:
            found.setdefault(describe(kind, rate), set()).add(band)
    if len(found) <= 1:
        return list(found)
    return [f"{'/'.join(sorted(b for b in bands if b)) or 'any time'}: {text}"
            for text, bands in found.items()]


def _unit(kind: str, size: int) -> str:
    named = _UNITS.get(kind, {}).get(size)
    return named or f"{size:,} {_BASE.get(kind, 'units')}"


def _quantity(kind: str, amount: int) -> str:
    for size, name in sorted(_UNITS.get(kind, {}).items(), reverse=True):
        if amount % size == 0:
            return f"{amount // size:,} {name}"
    return f"{amount:,} {_BASE.get(kind, 'units')}"


def _number(value: object) -> str:
    return f"{Decimal(str(value)):,f}"
