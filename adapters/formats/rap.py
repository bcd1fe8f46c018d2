"""GSMA TD.32 RAP 1.05 files: ReturnBatch and Acknowledgement, read and written through
pyasn1 (``asn1_rap``). RAP files are small (a header and the returned events), so the
pyasn1 codec is fast enough for them.

``decode_rap`` returns a ``RapFile``: the header fields as the file spells them (the
libxfsx vectors' XML values), and one ``Return`` per ReturnDetail (fatal: a whole TAP file,
with the part it names; severe: one call event, with the event decoded as the TAP decoder
normalises it; missing and stop returns with their sequence numbers). The audit control
(ReturnDetailsCount, TotalSevereReturnValue) is checked against the returns.
``encode_return_batch`` and ``encode_acknowledgement`` write them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import msgspec
from pyasn1.codec.ber import decoder, encoder
from pyasn1.error import PyAsn1Error

from billing_oss.adapters.formats import reference_tap3
from billing_oss.adapters.formats.asn1_rap import RapDataInterChange
from billing_oss.core.errors import DecodeError

RAP_SPECIFICATION, RAP_RELEASE = 1, 5
FATAL_PARTS = ("transferBatch", "notification", "batchControlInfo", "accountingInfo",
               "networkInfo", "auditControlInfo")
_PART_FIELDS = {"transferBatch": "transferBatchError", "notification": "notificationError",
                "batchControlInfo": "batchControlError",
                "accountingInfo": "accountingInfoError", "networkInfo": "networkInfoError",
                "auditControlInfo": "auditControlInfoError"}


class Return(msgspec.Struct, frozen=True, kw_only=True):
    kind: Literal["fatal", "severe", "missing", "stop"]
    fsn: str = ""                       # the TAP file returned (fatal, severe)
    error_codes: tuple[int, ...] = ()
    part: str | None = None             # fatal: which part of the file is in error
    imsi: str | None = None             # severe: the returned event, normalised
    event_time: str | None = None
    charge: int = 0                     # severe: the event's charge, TAP units
    start_missing: str | None = None
    end_missing: str | None = None
    last_fsn: str | None = None


class RapFile(msgspec.Struct, frozen=True, kw_only=True):
    kind: Literal["returnBatch", "acknowledgement"]
    sender: str
    recipient: str
    rap_fsn: str
    created: dict[str, str]
    available: dict[str, str]
    test: bool = False
    tap_decimal_places: int | None = None
    tap_currency: str | None = None
    returns: tuple[Return, ...] = ()
    total_severe_return: int | None = None
    return_count: int | None = None
    header: dict[str, Any] = {}


class ReturnSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One ReturnDetail to write: fatal (``part`` and the part's BER, if any) or severe
    (``event_ber``: the returned CallEventDetail as the TAP file held it)."""

    kind: Literal["fatal", "severe"]
    fsn: str
    error_codes: tuple[int, ...]
    part: str = "transferBatch"
    part_ber: bytes | None = None
    event_ber: bytes | None = None
    charge: int = 0


def _text(v: Any) -> str:
    return v.decode("ascii", "replace") if isinstance(v, bytes) else str(v)


def _plain_text(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_text(v) for v in value]
    return _text(value) if isinstance(value, bytes) else value


def _codes(errors: list[dict[str, Any]]) -> tuple[int, ...]:
    return tuple(int(e["errorCode"]) for e in errors if "errorCode" in e)


def decode_rap(data: bytes) -> RapFile:
    """A RAP file's content, or ``DecodeError`` naming what is wrong."""
    try:
        value, rest = decoder.decode(data, asn1Spec=RapDataInterChange())
    except (PyAsn1Error, ValueError, TypeError) as exc:
        raise DecodeError(f"bad RAP file: {exc}", offset=0) from None
    if rest:
        raise DecodeError(f"bad RAP file: {len(rest)} octets after the end of the file",
                          offset=len(data) - len(rest))
    top = reference_tap3.plain(value)
    if "acknowledgement" in top:
        ack = _plain_text(top["acknowledgement"])
        return RapFile(kind="acknowledgement", sender=ack.get("sender", ""),
                       recipient=ack.get("recipient", ""),
                       rap_fsn=ack.get("rapFileSequenceNumber", ""),
                       created=ack.get("ackFileCreationTimeStamp", {}),
                       available=ack.get("ackFileAvailableTimeStamp", {}),
                       test=ack.get("fileTypeIndicator") == "T", header=ack)
    batch = top["returnBatch"]
    head = _plain_text(batch.get("rapBatchControlInfoRap", {}))
    for field in ("sender", "recipient", "rapFileSequenceNumber"):
        if field not in head:
            raise DecodeError(f"bad RAP file: RapBatchControlInfo has no {field}", offset=0)
    returns = tuple(_return(i, d) for i, d in enumerate(batch.get("returnDetails", [])))
    audit = batch.get("rapAuditControlInfo", {})
    rap = RapFile(
        kind="returnBatch", sender=head["sender"], recipient=head["recipient"],
        rap_fsn=head["rapFileSequenceNumber"],
        created=head.get("rapFileCreationTimeStamp", {}),
        available=head.get("rapFileAvailableTimeStamp", {}),
        test=head.get("fileTypeIndicator") == "T",
        tap_decimal_places=head.get("tapDecimalPlaces"), tap_currency=head.get("tapCurrency"),
        returns=returns, total_severe_return=audit.get("totalSevereReturnValue"),
        return_count=audit.get("returnDetailsCount"), header=head)
    _check_audit(rap)
    return rap


def _return(index: int, detail: dict[str, Any]) -> Return:
    (name, body), = detail.items()
    if name == "fatalReturn":
        part = "transferBatch"
        codes: tuple[int, ...] = ()
        for candidate, field in _PART_FIELDS.items():
            # (pyasn1 shows absent all-optional parts as empty: the one in error has codes)
            if body.get(field, {}).get("errorDetail"):
                part, codes = candidate, _codes(body[field]["errorDetail"])
                break
        return Return(kind="fatal", fsn=_text(body.get("fileSequenceNumber", b"")),
                      error_codes=codes, part=part)
    if name == "severeReturn":
        event = body.get("callEventDetail")
        if event is None:
            raise DecodeError(f"bad RAP file: SevereReturn {index} has no CallEventDetail")
        try:
            row = reference_tap3._row(event, _ANY_OFFSET)
        except (KeyError, ValueError) as exc:
            raise DecodeError(f"bad RAP file: SevereReturn {index}: the returned event "
                              f"cannot be read ({exc})") from None
        start = _event_start(event)
        return Return(kind="severe", fsn=_text(body.get("fileSequenceNumber", b"")),
                      error_codes=_codes(body.get("errorDetail", [])), imsi=row[15],
                      event_time=start, charge=int(row[11] or 0))
    if name == "missingReturn":
        return Return(kind="missing", start_missing=_text(body.get("startMissingSeqNumber")),
                      end_missing=(_text(body["endMissingSeqNumber"])
                                   if "endMissingSeqNumber" in body else None))
    return Return(kind="stop", last_fsn=_text(body.get("lastSeqNumber", b"")))


class _AnyOffset(dict[int, int]):
    """A returned event travels without its file's NetworkInfo: its times are read as
    written (offset 0); ``event_start`` keeps the local time for matching."""

    def __contains__(self, key: object) -> bool:
        return True

    def __missing__(self, key: int) -> int:
        return 0


_ANY_OFFSET = _AnyOffset()


def _event_start(event: dict[str, Any]) -> str | None:
    """The returned event's local start time (CCYYMMDDhhmmss), as the TAP file wrote it."""
    (_name, ev), = event.items()
    for info in ("basicCallInformation", "gprsBasicCallInformation"):
        stamp = ev.get(info, {}).get("callEventStartTimeStamp", {})
        if "localTimeStamp" in stamp:
            return _text(stamp["localTimeStamp"])
    return None


def _check_audit(rap: RapFile) -> None:
    if rap.return_count is not None and rap.return_count != len(rap.returns):
        raise DecodeError(f"RAP audit mismatch: ReturnDetailsCount is {rap.return_count} but "
                          f"the file holds {len(rap.returns)} returns")
    severe = sum(r.charge for r in rap.returns if r.kind == "severe")
    if rap.total_severe_return is not None and rap.total_severe_return != severe:
        raise DecodeError(f"RAP audit mismatch: TotalSevereReturnValue is "
                          f"{rap.total_severe_return} but the severe returns sum to {severe}")


def encode_return_batch(
    *, sender: str, recipient: str, rap_fsn: int, created: str, available: str,
    utc_offset: str, returns: Sequence[ReturnSpec], tap_decimal_places: int,
    tap_currency: str, test: bool = False,
) -> bytes:
    top = RapDataInterChange()
    batch = top["returnBatch"]
    head = batch["rapBatchControlInfoRap"]
    head["sender"], head["recipient"] = sender.encode(), recipient.encode()
    head["rapFileSequenceNumber"] = f"{rap_fsn:05d}".encode()
    for field, local in (("rapFileCreationTimeStamp", created),
                         ("rapFileAvailableTimeStamp", available)):
        head[field]["localTimeStamp"] = local.encode()
        head[field]["utcTimeOffset"] = utc_offset.encode()
    head["specificationVersionNumber"], head["releaseVersionNumber"] = 3, 12
    head["rapSpecificationVersionNumber"] = RAP_SPECIFICATION
    head["rapReleaseVersionNumber"] = RAP_RELEASE
    if test:
        head["fileTypeIndicator"] = b"T"
    head["tapDecimalPlaces"], head["tapCurrency"] = tap_decimal_places, tap_currency.encode()
    details = batch["returnDetails"]
    for i, spec in enumerate(returns):
        _fill_return(details.getComponentByPosition(i), spec)
    audit = batch["rapAuditControlInfo"]
    audit["totalSevereReturnValue"] = sum(s.charge for s in returns if s.kind == "severe")
    audit["returnDetailsCount"] = len(returns)
    return bytes(encoder.encode(top, omitEmptyOptionals=True))


def _fill_errors(errors: Any, codes: Sequence[int]) -> None:
    for i, code in enumerate(codes):
        errors.getComponentByPosition(i)["errorCode"] = code


def _fill_return(slot: Any, spec: ReturnSpec) -> None:
    if spec.kind == "severe":
        body = slot["severeReturn"]
        body["fileSequenceNumber"] = spec.fsn.encode()
        if spec.event_ber is None:
            raise ValueError("a severe return carries the returned event")
        event, _ = decoder.decode(spec.event_ber, asn1Spec=body["callEventDetail"])
        body["callEventDetail"] = event
        _fill_errors(body["errorDetail"], spec.error_codes)
        return
    body = slot["fatalReturn"]
    body["fileSequenceNumber"] = spec.fsn.encode()
    error = body[_PART_FIELDS[spec.part]]
    if spec.part != "transferBatch" and spec.part_ber is not None:
        value, _ = decoder.decode(spec.part_ber, asn1Spec=error[spec.part])
        error[spec.part] = value
    _fill_errors(error["errorDetail"], spec.error_codes)


def encode_acknowledgement(*, sender: str, recipient: str, rap_fsn: str, created: str,
                           available: str, utc_offset: str) -> bytes:
    top = RapDataInterChange()
    ack = top["acknowledgement"]
    ack["sender"], ack["recipient"] = sender.encode(), recipient.encode()
    ack["rapFileSequenceNumber"] = rap_fsn.encode()
    for field, local in (("ackFileCreationTimeStamp", created),
                         ("ackFileAvailableTimeStamp", available)):
        ack[field]["localTimeStamp"] = local.encode()
        ack[field]["utcTimeOffset"] = utc_offset.encode()
    return bytes(encoder.encode(top, omitEmptyOptionals=True))
