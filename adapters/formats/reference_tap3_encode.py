"""Reference twin of ``native.tap3enc`` + ``tap3_writer``: the same TAP 3.12 files written
through pyasn1 (``asn1_tap3``). Slow by design; the tests compare its bytes with the native
writer's on generated batches, and the benchmark sets its speed beside ours.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pyasn1.codec.ber import encoder as ber
from pyasn1.type import univ

from billing_oss.adapters.formats.asn1_tap3 import CallEventDetail, DataInterChange
from billing_oss.adapters.formats.tap3_writer import (
    RELEASE_VERSION,
    SPECIFICATION_VERSION,
    UTC_CODE,
    Event,
    TapHeader,
    TapTotals,
    fsn_text,
)


class _FewestOctets(ber.IntegerEncoder):  # type: ignore[misc]  # pyasn1 is untyped
    """pyasn1 writes -2**(8k-1) (e.g. -128) in one octet more than X.690 8.3.2 allows."""

    def encodeValue(self, value: Any, asn1Spec: Any, encodeFun: Any,
                    **options: Any) -> tuple[Any, bool, bool]:
        n = int(value)
        if n == 0:
            return (0,), False, False
        return n.to_bytes((n + (n < 0)).bit_length() // 8 + 1, "big", signed=True), False, True


encoder = ber.Encoder(ber.TAG_MAP | {univ.Integer.tagSet: _FewestOctets()},
                      ber.TYPE_MAP | {univ.Integer.typeId: _FewestOctets()})

_NAMES = {9: "mobileOriginatedCall", 10: "mobileTerminatedCall", 14: "gprsCall"}


def bcd(digits: str) -> bytes:
    if not 1 <= len(digits) <= 40 or not digits.isascii() or not digits.isdigit():
        raise ValueError("a number of 1 to 40 digits")
    nibs = [ord(c) - 48 for c in digits] + ([0x0F] if len(digits) % 2 else [])
    return bytes((nibs[i] << 4) | nibs[i + 1] for i in range(0, len(nibs), 2))


def _subscriber(sub: Any, ev: Event) -> None:
    sim = sub["simChargeableSubscriber"]
    if not 5 <= len(ev[1]) <= 15:
        raise ValueError("an IMSI has 5 to 15 digits")
    sim["imsi"] = bcd(ev[1])
    if ev[2] is not None:
        if len(ev[2]) > 15:
            raise ValueError("an MSISDN has 1 to 15 digits")
        sim["msisdn"] = bcd(ev[2])


def _start(ts: Any, ev: Event) -> None:
    if len(ev[4]) != 14:
        raise ValueError("a start time is CCYYMMDDhhmmss")
    ts["localTimeStamp"] = ev[4].encode()
    ts["utcTimeOffsetCode"] = ev[5]


def _charge(lst: Any, item: str, ev: Event) -> None:
    info = lst.getComponentByPosition(0)
    info["chargedItem"] = item.encode()
    if ev[13] is not None:
        info["exchangeRateCode"] = ev[13]
    detail = info["chargeDetailList"].getComponentByPosition(0)
    detail["chargeType"] = b"00"
    detail["charge"] = ev[12]


def _call(body: Any, ev: Event) -> None:
    bci = body["basicCallInformation"]
    _subscriber(bci["chargeableSubscriber"], ev)
    if ev[3] is not None:
        if ev[0] == 9:
            bci["destination"]["calledNumber"] = bcd(ev[3])
        else:
            bci["callOriginator"]["callingNumber"] = bcd(ev[3])
    _start(bci["callEventStartTimeStamp"], ev)
    if ev[6] is not None:
        bci["totalCallEventDuration"] = ev[6]
    if ev[14] is not None:
        body["locationInformation"]["networkLocation"]["recEntityCode"] = ev[14]
    used = body["basicServiceUsedList"].getComponentByPosition(0)
    used["basicService"]["serviceCode"]["teleServiceCode"] = ev[7].encode()
    sms = len(ev[7]) == 2 and ev[7][0] == "2"
    _charge(used["chargeInformationList"], "E" if sms else "D", ev)


def _gprs(body: Any, ev: Event) -> None:
    bci = body["gprsBasicCallInformation"]
    _subscriber(bci["gprsChargeableSubscriber"]["chargeableSubscriber"], ev)
    if ev[10] is not None:
        bci["gprsDestination"]["accessPointNameNI"] = ev[10].encode()
    _start(bci["callEventStartTimeStamp"], ev)
    if ev[6] is not None:
        bci["totalCallEventDuration"] = ev[6]
    if ev[11] is not None:
        bci["chargingId"] = ev[11]
    if ev[14] is not None:
        ents = body["gprsLocationInformation"]["gprsNetworkLocation"]["recEntity"]
        ents.setComponentByPosition(0, ev[14])
    used = body["gprsServiceUsed"]
    used["dataVolumeIncoming"] = ev[8] if ev[8] is not None else 0
    used["dataVolumeOutgoing"] = ev[9] if ev[9] is not None else 0
    _charge(used["chargeInformationList"], "X", ev)


def fill_event(slot: Any, ev: Event) -> None:
    if ev[0] not in _NAMES:
        raise ValueError(f"event kind {ev[0]} cannot be encoded")
    body = slot[_NAMES[ev[0]]]
    if ev[0] == 14:
        _gprs(body, ev)
    else:
        _call(body, ev)


def encode_events(events: Sequence[Event]) -> bytes:
    out = []
    for ev in events:
        slot = CallEventDetail()
        fill_event(slot, ev)
        out.append(bytes(encoder(slot, omitEmptyOptionals=True)))
    return b"".join(out)


def _time_long(ts: Any, local: str, offset: str) -> None:
    ts["localTimeStamp"] = local.encode()
    ts["utcTimeOffset"] = offset.encode()


def _batch_control(bci: Any, h: TapHeader) -> None:
    bci["sender"], bci["recipient"] = h.sender.encode(), h.recipient.encode()
    bci["fileSequenceNumber"] = fsn_text(h.fsn).encode()
    _time_long(bci["fileCreationTimeStamp"], h.created, h.utc_offset)
    _time_long(bci["transferCutOffTimeStamp"], h.cutoff, h.utc_offset)
    _time_long(bci["fileAvailableTimeStamp"], h.available, h.utc_offset)
    bci["specificationVersionNumber"] = SPECIFICATION_VERSION
    bci["releaseVersionNumber"] = RELEASE_VERSION
    if h.test:
        bci["fileTypeIndicator"] = b"T"
    if h.rap_fsn is not None:
        bci["rapFileSequenceNumber"] = fsn_text(h.rap_fsn).encode()


def encode_transfer_batch(h: TapHeader, events: Sequence[Event]) -> tuple[bytes, TapTotals]:
    totals = TapTotals()
    totals.add(events)
    if not -(2**63) <= totals.total_charge < 2**63:
        raise ValueError(f"TotalCharge {totals.total_charge} does not fit in 64 bits: "
                         "split the period into smaller files")
    top = DataInterChange()
    tb = top["transferBatch"]
    _batch_control(tb["batchControlInfo"], h)
    acc = tb["accountingInfo"]
    acc["localCurrency"], acc["tapCurrency"] = h.local_currency.encode(), h.tap_currency.encode()
    for i, (code, places, rate) in enumerate(h.exchange_rates):
        conv = acc["currencyConversionInfo"].getComponentByPosition(i)
        conv["exchangeRateCode"], conv["numberOfDecimalPlaces"] = code, places
        conv["exchangeRate"] = rate
    acc["tapDecimalPlaces"] = h.decimal_places
    net = tb["networkInfo"]
    utc = net["utcTimeOffsetInfo"].getComponentByPosition(0)
    utc["utcTimeOffsetCode"], utc["utcTimeOffset"] = UTC_CODE, h.utc_offset.encode()
    for i, (code, kind, ident) in enumerate(h.rec_entities):
        ent = net["recEntityInfo"].getComponentByPosition(i)
        ent["recEntityCode"], ent["recEntityType"] = code, kind
        ent["recEntityId"] = ident.encode()
    details = tb["callEventDetails"]
    for i, ev in enumerate(events):
        fill_event(details.getComponentByPosition(i), ev)
    if not events:
        details.clear()
    aud = tb["auditControlInfo"]
    if totals.earliest is not None and totals.latest is not None:
        _time_long(aud["earliestCallTimeStamp"], totals.earliest, h.utc_offset)
        _time_long(aud["latestCallTimeStamp"], totals.latest, h.utc_offset)
    aud["totalCharge"], aud["totalTaxValue"], aud["totalDiscountValue"] = totals.total_charge, 0, 0
    aud["callEventDetailsCount"] = totals.count
    content = bytes(encoder(top, omitEmptyOptionals=True))
    totals.size = len(content)
    return content, totals


def encode_notification(h: TapHeader) -> bytes:
    top = DataInterChange()
    n = top["notification"]
    n["sender"], n["recipient"] = h.sender.encode(), h.recipient.encode()
    n["fileSequenceNumber"] = fsn_text(h.fsn).encode()
    if h.rap_fsn is not None:
        n["rapFileSequenceNumber"] = fsn_text(h.rap_fsn).encode()
    _time_long(n["fileCreationTimeStamp"], h.created, h.utc_offset)
    _time_long(n["fileAvailableTimeStamp"], h.available, h.utc_offset)
    _time_long(n["transferCutOffTimeStamp"], h.cutoff, h.utc_offset)
    n["specificationVersionNumber"] = SPECIFICATION_VERSION
    n["releaseVersionNumber"] = RELEASE_VERSION
    if h.test:
        n["fileTypeIndicator"] = b"T"
    return bytes(encoder(top, omitEmptyOptionals=True))
