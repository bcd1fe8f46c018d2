"""Inbound TAP files (we are the home network): validated, stored as partner charges, and
answered with a RAP file when they fail (GSMA TD.57 validation, TD.32 returns).

Fatal checks reject the whole file with a FatalReturn naming the part in error: a file
sequence number already received with other content (BatchControlInfo, error 201; the same
content again is a copy, ignored), a recipient that is not us (BatchControlInfo, 31),
CallEventDetailsCount or TotalCharge that disagree with the events (AuditControlInfo, 100),
a file that breaks part-way (TransferBatch, 10). A call event the decoder refuses (a bad
time, an unknown UTC offset code, a malformed element) is a severe error: the event goes back
in a SevereReturn (error 10, syntax) and the rest of the file is accepted. Accepted events are
stored as ``received`` settlement events (our cost: roaming usage of our own subscribers,
``record`` the normalised usage record, ``charge_micros`` in micro-units of the TAP currency).
The answering RAP is stored to be sent by ``settle send``.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import msgspec
from pyasn1.codec.ber import decoder, encoder
from pyasn1.error import PyAsn1Error

from billing_oss.adapters.formats import rap as rapfmt
from billing_oss.adapters.formats import reference_tap3
from billing_oss.adapters.formats.api import RecordProblem
from billing_oss.adapters.formats.asn1_tap3 import CallEventDetail, TransferBatch
from billing_oss.adapters.formats.tap3 import Tap3File
from billing_oss.core.errors import DecodeError, NotFound
from billing_oss.core.records import UsageRecord
from billing_oss.server.integrations.events import SettlementSequenceGap
from billing_oss.server.integrations.outbox import emit
from billing_oss.server.settlement import outbound, repo, roaming, wholesale
from billing_oss.server.settlement.model import Partner, SettlementFile
from billing_oss.server.store.pool import Connection

FSN_REUSED, RECIPIENT_WRONG, AUDIT_MISMATCH, SYNTAX = 201, 31, 100, 10
# TD.57 codes are per context (the same number means other things in other parts). Cited
# from a TD.57 validator (github.com/Olernov/TAP3.Loader, TAPValidator.h, CallValidator.h):
# AccountingInfo "LocalCurrency missing" 32; a call event older than the roaming agreement
# allows 261.
LOCAL_CURRENCY_MISSING, EVENT_TOO_OLD = 32, 261
# NOT confirmed against TD.57 (the table is not at hand): a TapCurrency other than the
# agreed one (AccountingInfo), a call event starting after the file's creation or transfer
# cut-off, and a mandatory item missing in a call event. The values follow the code
# families the cited validator uses (10 syntax, 20 range, 30s "missing", 100+ logical).
TAP_CURRENCY_NOT_AGREED, EVENT_AFTER_CUTOFF, ITEM_MISSING = 100, 100, 30
PART_TAGS = {"batchControlInfo": 4, "accountingInfo": 5, "auditControlInfo": 15}


class TapReceived(msgspec.Struct, frozen=True, kw_only=True):
    file: SettlementFile
    duplicate: bool = False
    accepted: int = 0
    severe: int = 0
    fatal: list[str] = []           # the reasons a whole file was rejected
    rap: str | None = None          # name of the RAP file that answers it
    billed: int = 0                 # events charged to our subscribers as roaming usage
    unbilled: int = 0               # events whose subscriber is unknown: in suspense


def looks_like_tap(data: bytes) -> bool:
    """A TransferBatch (APPLICATION 1) or Notification (APPLICATION 2), not a RAP."""
    return bool(data) and data[0] in (0x61, 0x62)


def _decode(data: bytes) -> tuple[Tap3File, list[UsageRecord], list[RecordProblem],
                                  DecodeError | None]:
    f = Tap3File(data, source="tap-in", options={"check_audit": False})
    records: list[UsageRecord] = []
    problems: list[RecordProblem] = []
    broken = None
    try:
        for batch in f.batches():
            records += batch.records
            problems += batch.problems
    except DecodeError as exc:
        broken = exc
    return f, records, problems, broken


async def receive_tap(conn: Connection, actor: str, name: str, data: bytes,
                      now: dt.datetime) -> TapReceived:
    """Validate and store one inbound TAP file; call in a transaction."""
    f, records, problems, broken = _decode(data)
    partner = await repo.get_partner(conn, f.sender)
    if partner is None:
        raise NotFound(f"{name}: Sender {f.sender!r} is no partner of ours "
                       "(BatchControlInfo.Sender)")
    kind = "test" if f.walker.batch_control.get("FileTypeIndicator") == "T" else "chargeable"
    fsn = f.info.sequence_number or 0
    sha = hashlib.sha256(data).hexdigest()
    places = f.decimal_places
    fatal: list[tuple[str, int, str]] = []     # (part, error code, reason)
    seen = await repo.find_file(conn, partner=partner.tadig, direction="in", file_type="tap",
                                fsn=fsn, kind=kind)
    if seen is not None and seen.sha256 == sha:
        return TapReceived(file=seen, duplicate=True)
    if seen is None:
        await _sequence_alarm(conn, partner, kind, fsn)
    if seen is not None:
        fatal.append(("batchControlInfo", FSN_REUSED,
                      f"FileSequenceNumber {fsn:05d} was already received in {seen.name} "
                      "with other content"))
    if f.recipient != partner.our_tadig:
        fatal.append(("batchControlInfo", RECIPIENT_WRONG,
                      f"Recipient {f.recipient!r} is not us ({partner.our_tadig})"))
    if broken is not None:
        fatal.append(("transferBatch", SYNTAX, broken.message))
    if f.walker.kind == "TransferBatch":
        fatal += _currency_errors(f, partner)
    count = len(records) + len(problems)
    total = sum(_raw(r.charge, places) for r in records) + _problem_charges(problems)
    declared_count = f.walker.audit.get("CallEventDetailsCount")
    declared_total = f.walker.audit.get("TotalCharge")
    if f.walker.kind == "TransferBatch":
        if declared_count != count:
            fatal.append(("auditControlInfo", AUDIT_MISMATCH,
                          f"CallEventDetailsCount is {declared_count} but the file holds "
                          f"{count} call events"))
        if declared_total != total:
            fatal.append(("auditControlInfo", AUDIT_MISMATCH,
                          f"TotalCharge is {declared_total} but the call events' charges sum "
                          f"to {total}"))
    file_type = "tap" if f.walker.kind == "TransferBatch" else "notification"
    saved = await repo.insert_file(
        conn, partner=partner.tadig, direction="in", file_type=file_type, kind=kind, name=name,
        fsn=fsn, rap_fsn=None, content=data, sha256=sha, event_count=count,
        total_charge=declared_total if isinstance(declared_total, int) else 0,
        decimal_places=places, tap_currency=f.currency, period=None,
        state="rejected" if fatal else "accepted",
        detail={"fatal": [r for _p, _c, r in fatal],
                "severe": [p.detail for p in problems]})
    if fatal:
        specs = [rapfmt.ReturnSpec(kind="fatal", fsn=f"{fsn:05d}", error_codes=(code,),
                                   part=part, part_ber=_part(data, f, part))
                 for part, code, _reason in fatal]
        rap = await _answer(conn, partner, kind, saved, specs, places, f.currency, now)
        await outbound._record(conn, actor, "settlement.tap.rejected", saved,
                               {"reasons": [r for _p, _c, r in fatal], "rap": rap.name})
        return TapReceived(file=saved, fatal=[r for _p, _c, r in fatal], rap=rap.name)
    returned = _event_errors(f, partner, data, records)
    records = [r for r in records if r.record_key not in returned]
    rows: list[repo.NewEvent] = [
        (i, f"tap:{partner.tadig}", r.record_key, None, None, _utc(r.event_time),
         r.imsi or "", msgspec.json.encode(r).decode(),
         _raw(r.charge, places) * 10 ** (6 - places) if places <= 6 else 0,
         _raw(r.charge, places)) for i, r in enumerate(records)]
    await repo.insert_events(conn, partner.tadig, "in", saved.file_id, rows, "received")
    billed = await roaming.bill_subscribers(conn, partner, name, f.currency, records)
    rap_name = None
    if problems or returned:
        specs = [rapfmt.ReturnSpec(kind="severe", fsn=f"{fsn:05d}", error_codes=(SYNTAX,),
                                   event_ber=p.raw, charge=_event_charge(p.raw))
                 for p in problems]
        specs += [rapfmt.ReturnSpec(kind="severe", fsn=f"{fsn:05d}", error_codes=(code,),
                                    event_ber=ber, charge=charge)
                  for code, _reason, ber, charge in returned.values()]
        await repo.set_file_state(conn, saved.file_id, saved.state, detail={
            "severe": [p.detail for p in problems]
            + [f"{key}: {reason}" for key, (_c, reason, _b, _ch) in returned.items()]})
        rap_name = (await _answer(conn, partner, kind, saved, specs, places, f.currency,
                                  now)).name
    await outbound._record(conn, actor, "settlement.tap.received", saved,
                           {"accepted": len(records), "severe": len(problems) + len(returned),
                            "billed": billed.charged, "suspense": billed.suspense})
    return TapReceived(file=saved, accepted=len(records), severe=len(problems) + len(returned),
                       rap=rap_name,
                       billed=billed.charged, unbilled=billed.suspense)


async def _sequence_alarm(conn: Connection, partner: Partner, kind: str, fsn: int) -> None:
    """A file beyond the next expected number is accepted (TD.57: a warning) with a
    ``settlement.sequence_gap`` event; the highest number seen is kept."""
    last = await repo.last_fsn(conn, partner.tadig, "in", f"tap-{kind}")
    expected = 1 if last >= repo.MAX_FSN else last + 1
    if fsn != expected and fsn > last:
        await emit(conn, SettlementSequenceGap(partner=partner.tadig, file_type=f"tap-{kind}",
                                               expected=expected, received=fsn),
                   stream=f"partner:{partner.tadig}")
    if fsn == expected or fsn > last:
        await repo.set_last_fsn(conn, partner.tadig, "in", f"tap-{kind}", fsn)


def _currency_errors(f: Tap3File, partner: Partner) -> list[tuple[str, int, str]]:
    """AccountingInfo against the roaming agreement (fatal: every charge is in it)."""
    errors = []
    if not f.walker.accounting.get("LocalCurrency"):
        errors.append(("accountingInfo", LOCAL_CURRENCY_MISSING,
                       "AccountingInfo.LocalCurrency is missing"))
    if f.currency != partner.tap_currency:  # an absent TapCurrency is SDR (TD.57)
        errors.append(("accountingInfo", TAP_CURRENCY_NOT_AGREED,
                       f"TapCurrency {f.currency} is not the agreed {partner.tap_currency}"))
    return errors


def _event_errors(f: Tap3File, partner: Partner, data: bytes, records: list[UsageRecord]
                  ) -> dict[str, tuple[int, str, bytes, int]]:
    """Severe errors of decoded call events: record key -> (error code, reason, the event's
    BER, its TAP charge). Dates against the file's creation and transfer cut-off, and the
    items TD.57 makes mandatory for the event type that the decoder leaves empty."""
    bci = f.walker.batch_control
    created = _stamp(bci.get("FileCreationTimeStamp"))
    stamps = [t for t in (created, _stamp(bci.get("TransferCutOffTimeStamp"))) if t]
    latest = min(stamps) if stamps else None
    earliest = created - dt.timedelta(days=partner.max_event_age_days) if created else None
    out: dict[str, tuple[int, str, bytes, int]] = {}
    for r in records:
        ber = _ber_at(data, int((r.attrs or {}).get("offset", -1)))
        start = _utc(r.event_time)
        found: tuple[int, str] | None = _missing(r, ber)
        if found is None and latest is not None and start > latest:
            found = (EVENT_AFTER_CUTOFF, f"CallEventStartTimeStamp {r.event_time} is after the "
                     f"file's creation/transfer cut-off {latest.isoformat()}")
        if found is None and earliest is not None and start < earliest:
            found = (EVENT_TOO_OLD, f"CallEventStartTimeStamp {r.event_time} is more than "
                     f"{partner.max_event_age_days} days before the file's creation")
        if found is not None:
            out[r.record_key] = (*found, ber, _raw(r.charge, f.decimal_places))
    return out


def _missing(r: UsageRecord, ber: bytes) -> tuple[int, str] | None:
    attrs = r.attrs or {}
    event = attrs.get("event_type", r.kind)
    if not r.imsi:
        return ITEM_MISSING, f"{event}: ChargeableSubscriber (IMSI) is missing"
    if r.kind == "voice" and r.duration_s is None:
        return ITEM_MISSING, f"{event}: TotalCallEventDuration is missing"
    if r.kind in ("voice", "sms") and not ("teleservice" in attrs or "bearer_service" in attrs):
        return ITEM_MISSING, f"{event}: BasicService is missing"
    if r.kind == "data" and r.volume_up is None and r.volume_down is None:
        return ITEM_MISSING, f"{event}: DataVolumeIncoming/Outgoing are missing"
    if r.kind == "data" and "charging_id" not in attrs:
        return ITEM_MISSING, f"{event}: ChargingId is missing"
    # The decoder reads an absent ChargeInformation as a zero charge: only zero-charge events
    # are decoded again to tell the two apart.
    if not _raw(r.charge, 6) and not _has_charge_information(ber):
        return ITEM_MISSING, f"{event}: ChargeInformation is missing"
    return None


def _has_charge_information(ber: bytes) -> bool:
    try:
        value, _ = decoder.decode(ber, asn1Spec=CallEventDetail())
    except (PyAsn1Error, ValueError, TypeError):
        return False
    return "chargeInformation" in value.prettyPrint()


def _ber_at(data: bytes, offset: int) -> bytes:
    """The whole BER element (tag, length, content) that starts at ``offset``."""
    if not 0 <= offset < len(data):
        return b""
    i = offset + 1
    if data[offset] & 0x1F == 0x1F:
        while i < len(data) and data[i] & 0x80:
            i += 1
        i += 1
    first = data[i]
    i += 1
    if first & 0x80:
        n = first & 0x7F
        length = int.from_bytes(data[i:i + n], "big")
        i += n
    else:
        length = first
    return data[offset:i + length]


def _stamp(value: object) -> dt.datetime | None:
    """A TAP DateTimeLong (LocalTimeStamp + UtcTimeOffset) in UTC; None if unreadable."""
    if not isinstance(value, dict):
        return None
    local, offset = str(value.get("LocalTimeStamp", "")), str(value.get("UtcTimeOffset", ""))
    try:
        moment = dt.datetime.strptime(local + offset, "%Y%m%d%H%M%S%z")
    except ValueError:
        return None
    return moment.astimezone(dt.UTC)


def _raw(charge: str | None, places: int) -> int:
    if not charge:
        return 0
    whole, _, frac = charge.partition(".")
    return int(whole + frac.ljust(places, "0")[:places]) if places else int(whole)


def _event_charge(raw: bytes) -> int:
    """A refused event's charge-type 00 total, where its bytes can be read (else 0)."""
    try:
        value, _ = decoder.decode(raw, asn1Spec=CallEventDetail())
        row = reference_tap3._row(reference_tap3.plain(value), rapfmt._ANY_OFFSET)
    except (PyAsn1Error, KeyError, ValueError, TypeError):
        return 0
    return int(row[11] or 0)


def _problem_charges(problems: list[RecordProblem]) -> int:
    """Refused events count in the audit totals too (TD.57)."""
    return sum(_event_charge(p.raw) for p in problems)


def _part(data: bytes, f: Tap3File, part: str) -> bytes | None:
    """The BER of a header part, for the FatalReturn that names it."""
    if part not in PART_TAGS:
        return None
    try:
        value, _ = decoder.decode(data, asn1Spec=TransferBatch.clone())
        return bytes(encoder.encode(value[part], omitEmptyOptionals=True))
    except (PyAsn1Error, KeyError, ValueError, TypeError):
        return None  # a part that cannot be read is named without its body


async def _answer(conn: Connection, partner: Partner, kind: str, answered: SettlementFile,
                  specs: list[rapfmt.ReturnSpec], places: int, currency: str,
                  now: dt.datetime) -> SettlementFile:
    rap_fsn, cycle = await repo.next_fsn(conn, partner.tadig, "out", f"rap-{kind}")
    stamp = wholesale.local_stamp(now.strftime("%Y-%m-%dT%H:%M:%SZ"), partner.utc_offset)
    content = rapfmt.encode_return_batch(
        sender=partner.our_tadig, recipient=partner.tadig, rap_fsn=rap_fsn, created=stamp,
        available=stamp, utc_offset=partner.utc_offset, returns=specs,
        tap_decimal_places=places, tap_currency=currency, test=kind == "test")
    severe = sum(s.charge for s in specs if s.kind == "severe")
    prefix = "RT" if kind == "test" else "RC"
    saved = await repo.insert_file(
        conn, partner=partner.tadig, direction="out", file_type="rap", kind=kind,
        name=f"{prefix}{partner.our_tadig}{partner.tadig}{rap_fsn:05d}", fsn=rap_fsn,
        rap_fsn=None, content=content, sha256=hashlib.sha256(content).hexdigest(),
        event_count=sum(1 for s in specs if s.kind == "severe"), total_charge=severe,
        decimal_places=places, tap_currency=currency, period=None, state="generated",
        answers=answered.file_id, cycle=cycle, detail={"returns": len(specs)})
    await outbound._record(conn, "settlement", "settlement.rap.generated", saved, None)
    return saved


def _utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))

