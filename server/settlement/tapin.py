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
from billing_oss.server.settlement import outbound, repo, wholesale
from billing_oss.server.settlement.model import Partner, SettlementFile
from billing_oss.server.store.pool import Connection

FSN_REUSED, RECIPIENT_WRONG, AUDIT_MISMATCH, SYNTAX = 201, 31, 100, 10
PART_TAGS = {"batchControlInfo": 4, "auditControlInfo": 15}


class TapReceived(msgspec.Struct, frozen=True, kw_only=True):
    file: SettlementFile
    duplicate: bool = False
    accepted: int = 0
    severe: int = 0
    fatal: list[str] = []           # the reasons a whole file was rejected
    rap: str | None = None          # name of the RAP file that answers it


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
    rows: list[repo.NewEvent] = [
        (i, f"tap:{partner.tadig}", r.record_key, None, None, _utc(r.event_time),
         r.imsi or "", msgspec.json.encode(r).decode(),
         _raw(r.charge, places) * 10 ** (6 - places) if places <= 6 else 0,
         _raw(r.charge, places)) for i, r in enumerate(records)]
    await repo.insert_events(conn, partner.tadig, "in", saved.file_id, rows, "received")
    rap_name = None
    if problems:
        specs = [rapfmt.ReturnSpec(kind="severe", fsn=f"{fsn:05d}", error_codes=(SYNTAX,),
                                   event_ber=p.raw, charge=_event_charge(p.raw))
                 for p in problems]
        rap_name = (await _answer(conn, partner, kind, saved, specs, places, f.currency,
                                  now)).name
    await outbound._record(conn, actor, "settlement.tap.received", saved,
                           {"accepted": len(records), "severe": len(problems)})
    return TapReceived(file=saved, accepted=len(records), severe=len(problems), rap=rap_name)


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

