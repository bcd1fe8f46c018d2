"""TAP 3.12 writers: ``tap3_file`` through pyasn1 (exact; what the tests and the
settlement module use) and ``fast_tap3_file`` (pre-encoded events repeated, for large
benchmark files).

Event dicts: ``type`` (``moc``, ``mtc``, ``gprs``, ``sse``), ``imsi``, ``msisdn``,
``called`` (moc), ``calling`` (mtc), ``start`` (``"CCYYMMDDhhmmss"`` local), ``utc_code``,
``duration``, ``teleservice`` (e.g. ``"11"``, ``"22"`` = SMS MO), ``charges``
(``[(charge_type, amount), ...]``), ``up`` / ``down`` / ``apn`` / ``charging_id`` (gprs),
``ss_code`` (sse). The audit totals default to the true count and charge-type 00 sum.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pyasn1.codec.ber import encoder

from billing_oss.adapters.formats import ber_text
from billing_oss.adapters.formats.asn1_tap3 import CallEventDetail, DataInterChange

_TYPES = {"moc": "mobileOriginatedCall", "mtc": "mobileTerminatedCall",
          "gprs": "gprsCall", "sse": "supplServiceEvent"}


def bcd(digits: str) -> bytes:
    nibs = ["0123456789*#abc".index(c) for c in digits]
    if len(nibs) % 2:
        nibs.append(0x0F)
    return bytes((nibs[i] << 4) | nibs[i + 1] for i in range(0, len(nibs), 2))


def _charge_info(info: Any, charges: Sequence[tuple[str, int]], item: str) -> None:
    info["chargedItem"] = item.encode()
    details = info["chargeDetailList"]
    for i, (ctype, amount) in enumerate(charges):
        d = details.getComponentByPosition(i)
        d["chargeType"] = ctype.encode()
        d["charge"] = amount


def _subscriber(sub: Any, ev: Mapping[str, Any]) -> None:
    sim = sub["simChargeableSubscriber"]
    sim["imsi"] = bcd(ev["imsi"])
    if ev.get("msisdn"):
        sim["msisdn"] = bcd(ev["msisdn"])


def _stamp(ts: Any, ev: Mapping[str, Any]) -> None:
    ts["localTimeStamp"] = ev["start"].encode()
    ts["utcTimeOffsetCode"] = ev.get("utc_code", 1)


def _event(slot: Any, ev: Mapping[str, Any]) -> None:
    body = slot[_TYPES[ev["type"]]]
    charges = ev.get("charges", [("00", 0)])
    if ev["type"] in ("moc", "mtc"):
        bci = body["basicCallInformation"]
        _subscriber(bci["chargeableSubscriber"], ev)
        if ev["type"] == "moc" and ev.get("called"):
            bci["destination"]["calledNumber"] = bcd(ev["called"])
        if ev["type"] == "mtc" and ev.get("calling"):
            bci["callOriginator"]["callingNumber"] = bcd(ev["calling"])
        _stamp(bci["callEventStartTimeStamp"], ev)
        bci["totalCallEventDuration"] = ev.get("duration", 0)
        used = body["basicServiceUsedList"].getComponentByPosition(0)
        code = ev.get("teleservice", "11").encode()
        used["basicService"]["serviceCode"]["teleServiceCode"] = code
        _charge_info(used["chargeInformationList"].getComponentByPosition(0), charges, "D")
    elif ev["type"] == "gprs":
        bci = body["gprsBasicCallInformation"]
        _subscriber(bci["gprsChargeableSubscriber"]["chargeableSubscriber"], ev)
        bci["gprsDestination"]["accessPointNameNI"] = ev.get("apn", "internet").encode()
        _stamp(bci["callEventStartTimeStamp"], ev)
        bci["totalCallEventDuration"] = ev.get("duration", 0)
        bci["chargingId"] = ev.get("charging_id", 0)
        used = body["gprsServiceUsed"]
        used["dataVolumeIncoming"] = ev.get("down", 0)
        used["dataVolumeOutgoing"] = ev.get("up", 0)
        _charge_info(used["chargeInformationList"].getComponentByPosition(0), charges, "X")
    else:
        _subscriber(body["chargeableSubscriber"], ev)
        used = body["supplServiceUsed"]
        used["supplServiceCode"] = ev.get("ss_code", "2B").encode()
        used["supplServiceActionCode"] = 0
        _stamp(used["chargingTimeStamp"], ev)
        _charge_info(used["chargeInformation"], charges, "E")


def encode_event(ev: Mapping[str, Any]) -> bytes:
    slot = CallEventDetail()
    _event(slot, ev)
    return bytes(encoder.encode(slot))


def total_charge(events: Sequence[Mapping[str, Any]]) -> int:
    return sum(a for ev in events for t, a in ev.get("charges", []) if t == "00")


def tap3_file(
    events: Sequence[Mapping[str, Any]], *, sender: str = "AAAAA", recipient: str = "BBBBB",
    sequence: int = 1, decimal_places: int = 3, utc_offsets: Mapping[int, str] | None = None,
    tap_currency: str | None = None, audit_count: int | None = None,
    audit_total: int | None = None,
) -> bytes:
    return bytes(encoder.encode(_batch(
        events, sender=sender, recipient=recipient, sequence=sequence,
        decimal_places=decimal_places, utc_offsets=utc_offsets, tap_currency=tap_currency,
        audit_count=audit_count, audit_total=audit_total)))


def _batch(
    events: Sequence[Mapping[str, Any]], *, sender: str, recipient: str, sequence: int,
    decimal_places: int, utc_offsets: Mapping[int, str] | None, tap_currency: str | None,
    audit_count: int | None, audit_total: int | None,
) -> DataInterChange:
    top = DataInterChange()
    tb = top["transferBatch"]
    bci = tb["batchControlInfo"]
    bci["sender"], bci["recipient"] = sender.encode(), recipient.encode()
    bci["fileSequenceNumber"] = f"{sequence:05d}".encode()
    stamp = bci["fileCreationTimeStamp"]
    stamp["localTimeStamp"], stamp["utcTimeOffset"] = b"20260115102030", b"+0100"
    bci["specificationVersionNumber"], bci["releaseVersionNumber"] = 3, 12
    acc = tb["accountingInfo"]
    acc["localCurrency"] = b"EUR"
    if tap_currency:
        acc["tapCurrency"] = tap_currency.encode()
    acc["tapDecimalPlaces"] = decimal_places
    offsets = tb["networkInfo"]["utcTimeOffsetInfo"]
    for i, (code, text) in enumerate(sorted((utc_offsets or {1: "+0100"}).items())):
        info = offsets.getComponentByPosition(i)
        info["utcTimeOffsetCode"], info["utcTimeOffset"] = code, text.encode()
    lst = tb["callEventDetails"]
    for i, ev in enumerate(events):
        _event(lst.getComponentByPosition(i), ev)
    audit = tb["auditControlInfo"]
    audit["totalCharge"] = total_charge(events) if audit_total is None else audit_total
    audit["totalTaxValue"], audit["totalDiscountValue"] = 0, 0
    audit["callEventDetailsCount"] = len(events) if audit_count is None else audit_count
    return top


def _app_tlv(n: int, body: bytes) -> bytes:
    if n < 31:
        head = bytes([0x60 | n])
    else:
        out = [n & 0x7F]
        n >>= 7
        while n:
            out.append(0x80 | (n & 0x7F))
            n >>= 7
        head = bytes([0x7F, *reversed(out)])
    length = len(body)
    if length < 0x80:
        return head + bytes([length]) + body
    lb = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return head + bytes([0x80 | len(lb)]) + lb + body


def sample_events(n: int, seed: int = 1) -> list[dict[str, Any]]:
    import random

    rng = random.Random(seed)
    kinds = ("moc", "mtc", "gprs", "sse", "moc", "gprs")
    out = []
    for i in range(n):
        t = 1768472430 + i * 7
        start = ber_text.rfc3339(t).replace("-", "").replace(":", "").replace("T", "")[:14]
        ev: dict[str, Any] = {
            "type": kinds[i % len(kinds)], "imsi": f"20801{i:010d}",
            "msisdn": f"336{rng.randrange(10**8):08d}", "start": start, "utc_code": 1,
            "duration": rng.randrange(1, 3600), "charges": [("00", rng.randrange(10**6)),
                                                          ("01", rng.randrange(1000))],
        }
        ev["called" if ev["type"] == "moc" else "calling"] = f"49{rng.randrange(10**9):09d}"
        if ev["type"] == "gprs":
            ev.update(up=rng.randrange(10**8), down=rng.randrange(10**9), charging_id=i)
        out.append(ev)
    return out


def fast_tap3_file(n: int, *, distinct: int = 256, seed: int = 1) -> bytes:
    """A TransferBatch of ``n`` events cycling through ``distinct`` pre-encoded ones."""
    events = sample_events(min(n, distinct), seed)
    encoded = [encode_event(ev) for ev in events]
    charges = [total_charge([ev]) for ev in events]
    body = b"".join(encoded[i % len(encoded)] for i in range(n))
    total = sum(charges[i % len(charges)] for i in range(n))
    top = _batch([], sender="AAAAA", recipient="BBBBB", sequence=1, decimal_places=3,
                 utc_offsets=None, tap_currency=None, audit_count=n, audit_total=total)
    tb = top["transferBatch"]
    parts = [bytes(encoder.encode(tb[name]))
             for name in ("batchControlInfo", "accountingInfo", "networkInfo")]
    parts.append(_app_tlv(3, body))
    parts.append(bytes(encoder.encode(tb["auditControlInfo"])))
    return _app_tlv(1, b"".join(parts))
