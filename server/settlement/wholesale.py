"""Wholesale rating of visiting subscribers' usage and its conversion to TAP call events.

The partner's wholesale tariff is a tariff of the catalog, rated by the same native kernel
as retail: the records are rated against a catalog holding that tariff alone, with every
identifier of the batch naming one account (the partner). Charges are micro-units of the
tariff's currency (the TAP *local* currency); each event's TAP charge is that amount in the
TAP currency at the file's exchange rate, rounded half-up to the partner's TAP decimal places
(the one rounding of settlement: the audit totals are sums of rounded event charges).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction
from typing import Any

from billing_oss.core.errors import ConfigError, Conflict
from billing_oss.core.ports import Charge, Failure
from billing_oss.core.records import UsageRecord
from billing_oss.server.catalog.loader import catalog_from_definitions
from billing_oss.server.rating import make_rater
from billing_oss.server.settlement.model import Partner

MOC, MTC, GPRS = 9, 10, 14
EXCHANGE_RATE_CODE = 1
REC_ENTITY_CODE = 1


class MissingRate(Conflict):
    """No exchange rate for a file's date: nothing is written until one is declared."""


def rate_records(partner: Partner, currency: str, versions: list[dict[str, Any]],
                 records: Sequence[UsageRecord]) -> list[Charge | Failure]:
    """Rate ``records`` on the partner's wholesale tariff (stored versions, oldest first);
    one outcome per record, in order."""
    if not versions:
        raise ConfigError(f"partner {partner.tadig}: wholesale tariff "
                          f"{partner.wholesale_tariff!r} has no version")
    account = (f"partner:{partner.tadig}", partner.wholesale_tariff)
    identifiers = {value: account for r in records
                   for value in (r.calling, r.msisdn, r.imsi) if value}
    catalog = catalog_from_definitions(
        currency, [{"id": partner.wholesale_tariff, "versions": versions}], identifiers)
    return list(make_rater(catalog).rate(list(records)))


def tap_rate(rate: Decimal) -> tuple[int, int]:
    """An exchange rate as TD.57 writes it: (number of decimal places, integer rate)."""
    sign, _digits, exponent = rate.normalize().as_tuple()
    assert isinstance(exponent, int) and not sign
    places = max(0, -exponent)
    return places, int(rate.scaleb(places))


def tap_charge(micros: int, rate: Decimal, places: int) -> int:
    """``micros`` of local currency in TAP currency units at ``places`` decimals, half-up."""
    value = Fraction(micros, 1_000_000) / Fraction(rate) * 10**places
    return _half_up(value)


def _half_up(value: Fraction) -> int:
    n, d = value.numerator, value.denominator
    q, r = divmod(abs(n), d)
    if 2 * r >= d:
        q += 1
    return q if n >= 0 else -q


def local_stamp(event_time: str, utc_offset: str) -> str:
    """An RFC 3339 UTC time as TAP's LocalTimeStamp on a clock at ``utc_offset``."""
    moment = dt.datetime.fromisoformat(event_time.replace("Z", "+00:00"))
    minutes = int(utc_offset[1:3]) * 60 + int(utc_offset[3:5])
    shift = dt.timedelta(minutes=-minutes if utc_offset[0] == "-" else minutes)
    return (moment.astimezone(dt.UTC) + shift).strftime("%Y%m%d%H%M%S")


def direction_of(record: UsageRecord) -> int:
    if record.kind == "data":
        return GPRS
    attrs = record.attrs or {}
    mt = (attrs.get("event_type") == "MobileTerminatedCall"
          or str(attrs.get("direction", "")).lower() in ("mt", "terminating", "incoming"))
    return MTC if mt else MOC


def settleable(record: UsageRecord) -> str | None:
    """Why a record cannot go into a TAP file (None: it can)."""
    if record.kind not in ("voice", "sms", "data"):
        return f"kind {record.kind!r} has no TAP call event here"
    if not record.imsi or not record.imsi.isdigit():
        return "no IMSI"
    return None


def tap_event(record: UsageRecord, charge: int, utc_offset: str) -> tuple[Any, ...]:
    """The ``native.tap3enc.EVENT_FIELDS`` tuple of a rated record."""
    kind = direction_of(record)
    attrs = record.attrs or {}
    start = local_stamp(record.event_time, utc_offset)
    if kind == GPRS:
        return (GPRS, record.imsi, record.msisdn, None, start, 1, record.duration_s or
                attrs.get("duration_s"), None, record.volume_down or 0, record.volume_up or 0,
                attrs.get("apn"), attrs.get("charging_id"), charge, EXCHANGE_RATE_CODE,
                REC_ENTITY_CODE)
    if kind == MOC:
        msisdn, other = record.msisdn or record.calling, record.called
        service = "22" if record.kind == "sms" else "11"
    else:
        msisdn, other = record.msisdn or record.called, record.calling
        service = "21" if record.kind == "sms" else "11"
    duration = record.duration_s if record.kind == "voice" else 0
    return (kind, record.imsi, _digits(msisdn), _digits(other), start, 1, duration, service,
            None, None, None, None, charge, EXCHANGE_RATE_CODE, REC_ENTITY_CODE)


def _digits(value: str | None) -> str | None:
    return value if value and value.isdigit() and len(value) <= 40 else None
