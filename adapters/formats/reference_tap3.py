"""Reference twin of ``native.tap3``: pyasn1 decoding + pure-Python normalisation.

``decode_events(data)`` returns the rows ``native._records.ROW_FIELDS`` describes, one per
call event, except the offset columns (``offset``, ``length``, ``error_offset`` are None):
pyasn1 does not report positions. Slow by design; for tests and the benchmark.
"""

from __future__ import annotations

import calendar
from typing import Any

from pyasn1.codec.ber import decoder
from pyasn1.type import univ

from billing_oss.adapters.formats import ber_text
from billing_oss.adapters.formats.asn1_tap3 import DataInterChange

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


def decode(data: bytes) -> dict[str, Any]:
    value, _ = decoder.decode(data, asn1Spec=DataInterChange())
    return plain(value)  # type: ignore[no-any-return]


def decode_events(data: bytes) -> list[tuple[Any, ...]]:
    top = decode(data)
    batch = top.get("transferBatch")
    if batch is None:
        return []
    offsets = {}
    for info in batch.get("networkInfo", {}).get("utcTimeOffsetInfo", []):
        text = info["utcTimeOffset"].decode()
        minutes = int(text[1:3]) * 60 + int(text[3:5])
        offsets[info["utcTimeOffsetCode"]] = -minutes if text[0] == "-" else minutes
    return [_row(ev, offsets) for ev in batch.get("callEventDetails", [])]


def _charges(info: dict[str, Any]) -> int:
    return sum(d.get("charge", 0) for d in info.get("chargeDetailList", [])
               if d.get("chargeType") == b"00" and "charge" in d)


def _row(event: dict[str, Any], offsets: dict[int, int]) -> tuple[Any, ...]:
    (name, ev), = event.items()
    rtype = _EVENT_TAGS[name]
    imsi = msisdn = calling = called = apn = service = ss_code = None
    duration = up = down = charging_id = cause = None
    charge = 0
    if name == "gprsCall":
        bci = ev.get("gprsBasicCallInformation", {})
        sub = bci.get("gprsChargeableSubscriber", {}).get("chargeableSubscriber", {})
        used = ev.get("gprsServiceUsed", {})
        if "dataVolumeIncoming" in used or "dataVolumeOutgoing" in used:
            up, down = used.get("dataVolumeOutgoing", 0), used.get("dataVolumeIncoming", 0)
        charge = sum(_charges(i) for i in used.get("chargeInformationList", []))
        apn_b = bci.get("gprsDestination", {}).get("accessPointNameNI")
        apn = apn_b.decode() if apn_b is not None else None
        charging_id = bci.get("chargingId")
        start = bci.get("callEventStartTimeStamp")
    elif name == "supplServiceEvent":
        sub = ev.get("chargeableSubscriber", {})
        used = ev.get("supplServiceUsed", {})
        ss_code = used["supplServiceCode"].decode() if "supplServiceCode" in used else None
        charge = _charges(used.get("chargeInformation", {}))
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
                charge += _charges(info)
        codes = [u["basicService"]["serviceCode"] for u in used_list
                 if "serviceCode" in u.get("basicService", {})]
        if codes:
            (kind, code), = codes[0].items()
            service = ("T" if kind == "teleServiceCode" else "B") + code.decode()
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
    if stamp is None or "localTimeStamp" not in stamp:
        err = 2
    elif stamp.get("utcTimeOffsetCode") not in offsets:
        err = 8
    else:
        t = stamp["localTimeStamp"].decode()
        local = calendar.timegm((int(t[0:4]), int(t[4:6]), int(t[6:8]),
                                 int(t[8:10]), int(t[10:12]), int(t[12:14])))
        event_time = ber_text.rfc3339(local - offsets[stamp["utcTimeOffsetCode"]] * 60)
    if err:
        return (rtype, None, None, err, None, None) + (None,) * 17
    return (rtype, None, None, 0, 0, None, event_time, None, duration, up, down, charge,
            charging_id, None, cause, imsi, msisdn, calling, called, None, ss_code, apn,
            service)
