"""Reference twin of ``native.tap3``: pyasn1 decoding + pure-Python normalisation.

``decode_events(data)`` returns the rows ``native._records.ROW_FIELDS`` describes, one per
call event, except the offset columns (``offset``, ``length``, ``error_offset`` are None):
pyasn1 does not report positions. Slow by design; for tests and the benchmark.
"""

from __future__ import annotations

import calendar
import datetime as dt
from typing import Any

from pyasn1.codec.ber import decoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import univ

from billing_oss.adapters.formats import ber_text
from billing_oss.adapters.formats.asn1_tap3 import DataInterChange
from billing_oss.native._records import (
    ERR_BAD_TIMESTAMP,
    ERR_NO_EVENT_TIME,
    ERR_OVERFLOW,
    ERR_TOO_LONG,
    ERR_UNKNOWN_UTC_CODE,
)

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
# The instants an RFC 3339 timestamp can name with a 4-digit year.
RFC3339_MIN, RFC3339_MAX = -62167219200, 253402300799
_DAYS_400_YEARS = 146097

_EVENT_TAGS = {"mobileOriginatedCall": 9, "mobileTerminatedCall": 10,
               "supplServiceEvent": 11, "gprsCall": 14}


def plain(v: Any) -> Any:
    """A pyasn1 value as dicts / lists / ints / bytes (absent components left out)."""
    if isinstance(v, univ.Choice):
        return {v.getName(): plain(v.getComponent())}
    if isinstance(v, univ.SequenceOf):
        return [plain(x) for x in v]
    if isinstance(v, univ.Sequence):
        return {k: plain(v[k]) for k in v if v[k].isValue}
    if isinstance(v, univ.Integer):
        return int(v)
    return bytes(v)


def bcd(octets: bytes) -> str:
    return "".join("0123456789*#abc"[n] for b in octets for n in (b >> 4, b & 0x0F) if n != 0x0F)


class MalformedTap3(ValueError):
    """The file cannot be decoded at all (the native walker's file-level ValueError)."""


def decode(data: bytes) -> dict[str, Any]:
    try:
        value, _ = decoder.decode(data, asn1Spec=DataInterChange())
    except (PyAsn1Error, IndexError, OverflowError) as exc:  # pyasn1 fails in all three
        raise MalformedTap3(f"not a decodable TAP3 file: {type(exc).__name__}: {exc}") from None
    return plain(value)  # type: ignore[no-any-return]


def decode_events(data: bytes) -> list[tuple[Any, ...]]:
    """Rows for every call event; raises ``MalformedTap3`` like the walker's ValueError."""
    top = decode(data)
    batch = top.get("transferBatch")
    if batch is None:
        return []
    offsets = {}
    for info in batch.get("networkInfo", {}).get("utcTimeOffsetInfo", []):
        offsets[info.get("utcTimeOffsetCode")] = _offset_minutes(info.get("utcTimeOffset"))
    return [_row(ev, offsets) for ev in batch.get("callEventDetails", [])]


def _offset_minutes(raw: bytes | None) -> int:
    text = raw.decode("latin-1") if raw is not None else ""
    if len(text) != 5 or text[0] not in "+-" or not _digits(text[1:]):
        raise MalformedTap3(f"bad UtcTimeOffset {text!r}")
    minutes = int(text[1:3]) * 60 + int(text[3:5])
    return -minutes if text[0] == "-" else minutes


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _printable(raw: bytes) -> str | None:
    """ASCII text as the native decoder accepts it (printable octets), else None."""
    return raw.decode("ascii") if all(0x20 <= b <= 0x7E for b in raw) else None


def _local_seconds(raw: bytes) -> int | None:
    """A LocalTimeStamp "CCYYMMDDhhmmss" as seconds on the local clock; None if invalid."""
    t = raw.decode("latin-1")
    if len(t) != 14 or not _digits(t):
        return None
    y, mo, d, h, mi, s = (int(t[0:4]), int(t[4:6]), int(t[6:8]), int(t[8:10]),
                          int(t[10:12]), int(t[12:14]))
    # Year 0000 is valid to the native decoder; ``datetime`` and ``calendar`` start at year 1,
    # and 400 years on the Gregorian calendar repeats.
    shift = 400 if y == 0 else 0
    try:
        dt.datetime(y + shift, mo, d, h, mi, s)
    except ValueError:
        return None
    return calendar.timegm((y + shift, mo, d, h, mi, s)) - (_DAYS_400_YEARS * 86400 if shift else 0)


def _charges(info: dict[str, Any]) -> list[int]:
    return [d["charge"] for d in info.get("chargeDetailList", [])
            if d.get("chargeType") == b"00" and "charge" in d]


def _total(charges: list[int]) -> int | None:
    """The charges summed in file order; None when a running sum leaves int64, as the
    native decoder's checked additions report it."""
    total = 0
    for charge in charges:
        total += charge
        if not INT64_MIN <= total <= INT64_MAX:
            return None
    return total


def _row(event: dict[str, Any], offsets: dict[int, int]) -> tuple[Any, ...]:
    (name, ev), = event.items()
    rtype = _EVENT_TAGS[name]
    imsi = msisdn = calling = called = apn = service = ss_code = None
    duration = up = down = charging_id = cause = None
    charges: list[int] = []
    bad_text = False  # text the native decoder refuses (not printable ASCII): R_TOO_LONG
    if name == "gprsCall":
        bci = ev.get("gprsBasicCallInformation", {})
        sub = bci.get("gprsChargeableSubscriber", {}).get("chargeableSubscriber", {})
        used = ev.get("gprsServiceUsed", {})
        if "dataVolumeIncoming" in used or "dataVolumeOutgoing" in used:
            up, down = used.get("dataVolumeOutgoing", 0), used.get("dataVolumeIncoming", 0)
        charges = [c for i in used.get("chargeInformationList", []) for c in _charges(i)]
        apn_b = bci.get("gprsDestination", {}).get("accessPointNameNI")
        apn = _printable(apn_b) if apn_b is not None else None
        bad_text = apn_b is not None and apn is None
        charging_id = bci.get("chargingId")
        start = bci.get("callEventStartTimeStamp")
    elif name == "supplServiceEvent":
        sub = ev.get("chargeableSubscriber", {})
        used = ev.get("supplServiceUsed", {})
        ss_code = _printable(used["supplServiceCode"]) if "supplServiceCode" in used else None
        bad_text = "supplServiceCode" in used and ss_code is None
        charges = _charges(used.get("chargeInformation", {}))
        start = None
        bci = {}
        fallback = used.get("chargingTimeStamp")
    else:
        bci = ev.get("basicCallInformation", {})
        sub = bci.get("chargeableSubscriber", {})
        if "destination" in bci and "calledNumber" in bci["destination"]:
            called = bcd(bci["destination"]["calledNumber"])
        if "callOriginator" in bci and "callingNumber" in bci["callOriginator"]:
            calling = bcd(bci["callOriginator"]["callingNumber"])
        used_list = ev.get("basicServiceUsedList", [])
        for used in used_list:
            for info in used.get("chargeInformationList", []):
                charges += _charges(info)
        codes = [u["basicService"]["serviceCode"] for u in used_list
                 if "serviceCode" in u.get("basicService", {})]
        if codes:
            (kind, code), = codes[0].items()
            text = _printable(code)
            bad_text = text is None
            service = ("T" if kind == "teleServiceCode" else "B") + (text or "")
        start = bci.get("callEventStartTimeStamp")
        fallback = next((u["chargingTimeStamp"] for u in used_list if "chargingTimeStamp" in u),
                        None)
    if name == "gprsCall":
        fallback = None
    duration = bci.get("totalCallEventDuration")
    cause = bci.get("causeForTerm")
    sim = sub.get("simChargeableSubscriber", {})
    imsi = bcd(sim["imsi"]) if "imsi" in sim else None
    msisdn = bcd(sim["msisdn"]) if "msisdn" in sim else None
    stamp = start if start is not None else fallback
    err, event_time = 0, None
    charge = _total(charges)
    if bad_text:
        err = ERR_TOO_LONG
    elif charge is None:
        err = ERR_OVERFLOW
    elif stamp is None or "localTimeStamp" not in stamp:
        err = ERR_NO_EVENT_TIME
    elif stamp.get("utcTimeOffsetCode") not in offsets:
        err = ERR_UNKNOWN_UTC_CODE
    elif (local := _local_seconds(stamp["localTimeStamp"])) is None:
        err = ERR_BAD_TIMESTAMP
    else:
        utc = local - offsets[stamp["utcTimeOffsetCode"]] * 60
        if RFC3339_MIN <= utc <= RFC3339_MAX:
            event_time = ber_text.rfc3339(utc)
        else:
            err = ERR_BAD_TIMESTAMP
    if err:
        return (rtype, None, None, err, None, None) + (None,) * 17
    return (rtype, None, None, 0, 0, None, event_time, None, duration, up, down, charge,
            charging_id, None, cause, imsi, msisdn, calling, called, None, ss_code, apn,
            service)
