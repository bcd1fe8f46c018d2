"""Inbound settlement files from partners: RAP ReturnBatches and Acknowledgements (TD.32).

``receive`` decodes a file, then applies it in one transaction: a fatal return rejects a
whole TAP file we sent (it is regenerated under the same sequence number with the RAP file
sequence number, ready to send again); a severe return rejects one call event, which goes to
the settlement suspense (``settlement_events.state = 'returned'``, with its error code) until
``correct`` rerates it and a later file carries it; an Acknowledgement closes the lifecycle of
the RAP file of ours it names. Each processed ReturnBatch gets an Acknowledgement of ours,
stored to be sent. A file that cannot be applied (undecodable, an unknown TAP file or event,
a repeated RAP sequence number) changes nothing but is kept in the ledger as ``rejected``
with the reason, and the error names the field or the return at fault.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import msgspec

from billing_oss.adapters.formats.rap import RapFile, Return, decode_rap, encode_acknowledgement
from billing_oss.core.errors import BillingError, Conflict, DecodeError, InvalidRequest, NotFound
from billing_oss.core.records import UsageRecord
from billing_oss.server.integrations.events import SettlementSequenceGap
from billing_oss.server.integrations.outbox import emit
from billing_oss.server.settlement import outbound, repo, tapin, wholesale
from billing_oss.server.settlement.model import Partner, SettlementFile
from billing_oss.server.store import audit
from billing_oss.server.store.pool import Connection


class Received(msgspec.Struct, frozen=True, kw_only=True):
    file: SettlementFile
    duplicate: bool = False
    fatal: list[str] = []          # names of regenerated files
    severe: int = 0
    acknowledged: list[str] = []


async def receive(pool: Any, actor: str, name: str, data: bytes,
                  now: dt.datetime | None = None) -> Received | tapin.TapReceived:
    """Apply one inbound file (RAP, or a partner's TAP); on failure keep it as ``rejected``
    and raise."""
    if tapin.looks_like_tap(data):
        async with pool.acquire() as conn, conn.transaction():
            return await tapin.receive_tap(conn, actor, name, data,
                                           now or dt.datetime.now(dt.UTC))
    try:
        rap = decode_rap(data)
    except DecodeError as exc:
        await _keep_rejected(pool, actor, None, name, data, exc.message)
        raise
    try:
        async with pool.acquire() as conn, conn.transaction():
            return await _apply(conn, actor, name, data, rap, now or dt.datetime.now(dt.UTC))
    except BillingError as exc:
        await _keep_rejected(pool, actor, rap, name, data, exc.message)
        raise


async def _apply(conn: Connection, actor: str, name: str, data: bytes, rap: RapFile,
                 now: dt.datetime) -> Received:
    partner = await repo.get_partner(conn, rap.sender)
    if partner is None:
        raise NotFound(f"{name}: Sender {rap.sender!r} is no partner of ours")
    if rap.recipient != partner.our_tadig:
        raise InvalidRequest(f"{name}: Recipient {rap.recipient!r} is not us "
                             f"({partner.our_tadig})")
    sha = hashlib.sha256(data).hexdigest()
    seen = await repo.find_by_sha(conn, partner.tadig, "in", sha)
    if seen is not None and seen.state != "rejected":
        return Received(file=seen, duplicate=True)
    if not rap.rap_fsn.isdigit():
        raise InvalidRequest(f"{name}: RapFileSequenceNumber {rap.rap_fsn!r} is not a number")
    rap_fsn = int(rap.rap_fsn)
    if rap.kind == "acknowledgement":
        return await _acknowledge(conn, actor, partner, name, data, sha, rap, rap_fsn)
    await _check_sequence(conn, partner, "rap", rap_fsn, name)
    kind = "test" if rap.test else "chargeable"
    places = rap.tap_decimal_places if rap.tap_decimal_places is not None else \
        partner.tap_decimal_places
    severe = [r for r in rap.returns if r.kind == "severe"]
    saved = await repo.insert_file(
        conn, partner=partner.tadig, direction="in", file_type="rap", kind=kind, name=name,
        fsn=rap_fsn, rap_fsn=None, content=data, sha256=sha, event_count=len(severe),
        total_charge=rap.total_severe_return or 0, decimal_places=places,
        tap_currency=rap.tap_currency or partner.tap_currency, period=None, state="accepted",
        detail={"returns": [msgspec.to_builtins(r) for r in rap.returns]})
    fatal_names = []
    for index, ret in enumerate(rap.returns):
        if ret.kind == "fatal":
            fatal_names.append(await _fatal(conn, actor, partner, kind, ret, index, rap_fsn,
                                            saved, now))
        elif ret.kind == "severe":
            await _severe(conn, partner, kind, ret, index, saved)
    await _audit(conn, actor, "settlement.rap.received", saved,
                 {"fatal": fatal_names, "severe": len(severe)})
    ack = encode_acknowledgement(
        sender=partner.our_tadig, recipient=partner.tadig, rap_fsn=rap.rap_fsn,
        created=_stamp(now, partner), available=_stamp(now, partner),
        utc_offset=partner.utc_offset)
    await repo.insert_file(
        conn, partner=partner.tadig, direction="out", file_type="ack", kind=kind,
        name=f"AK{partner.our_tadig}{partner.tadig}{rap_fsn:05d}", fsn=rap_fsn, rap_fsn=None,
        content=ack, sha256=hashlib.sha256(ack).hexdigest(), event_count=0, total_charge=0,
        decimal_places=places, tap_currency=partner.tap_currency, period=None,
        state="generated", answers=saved.file_id)
    return Received(file=saved, fatal=fatal_names, severe=len(severe))


def _stamp(now: dt.datetime, partner: Partner) -> str:
    return wholesale.local_stamp(now.strftime("%Y-%m-%dT%H:%M:%SZ"), partner.utc_offset)


async def _check_sequence(conn: Connection, partner: Partner, file_type: str, fsn: int,
                          name: str) -> None:
    """Repeats are refused; gaps are accepted with an alarm (the missing files may follow)."""
    last = await repo.last_fsn(conn, partner.tadig, "in", file_type)
    repeated = await repo.find_file(conn, partner=partner.tadig, direction="in",
                                    file_type=file_type, fsn=fsn)
    if repeated is not None and repeated.state != "rejected":
        raise Conflict(f"{name}: sequence number {fsn:05d} was already received in "
                       f"{repeated.name} (a repeat)", fsn=fsn)
    expected = 1 if last >= repo.MAX_FSN else last + 1
    if fsn != expected:
        await emit(conn, SettlementSequenceGap(partner=partner.tadig, file_type=file_type,
                                               expected=expected, received=fsn),
                   stream=f"partner:{partner.tadig}")
    if fsn == expected or fsn > last:
        await repo.set_last_fsn(conn, partner.tadig, "in", file_type, fsn)


async def _returned_file(conn: Connection, partner: Partner, kind: str, ret: Return,
                         index: int) -> SettlementFile:
    if not ret.fsn.isdigit():
        raise InvalidRequest(f"ReturnDetail {index}: FileSequenceNumber {ret.fsn!r} is not a "
                             "number")
    found = await repo.find_file(conn, partner=partner.tadig, direction="out", file_type="tap",
                                 fsn=int(ret.fsn), kind=kind, lock=True)
    if found is None or found.state == "generated":
        raise NotFound(f"ReturnDetail {index}: FileSequenceNumber {ret.fsn} names no TAP file "
                       f"we sent to {partner.tadig}")
    return found


async def _fatal(conn: Connection, actor: str, partner: Partner, kind: str, ret: Return,
                 index: int, rap_fsn: int, rap: SettlementFile, now: dt.datetime) -> str:
    old = await _returned_file(conn, partner, kind, ret, index)
    await repo.set_file_state(conn, old.file_id, "returned", detail={
        "fatal": {"rap_file_id": rap.file_id, "part": ret.part,
                  "error_codes": list(ret.error_codes)}})
    new = await outbound.regenerate(conn, actor, old, rap_fsn, now)
    return new.name


async def _severe(conn: Connection, partner: Partner, kind: str, ret: Return, index: int,
                  rap: SettlementFile) -> None:
    tap = await _returned_file(conn, partner, kind, ret, index)
    events = await repo.events_of_file(conn, tap.file_id)
    for ev in events:
        record = msgspec.json.decode(ev.record, type=UsageRecord)
        start = wholesale.local_stamp(record.event_time, partner.utc_offset)
        if (ev.imsi == ret.imsi and start == ret.event_time and ev.tap_charge == ret.charge
                and ev.state == "sent"):
            await repo.return_event(conn, ev.event_id, ret.error_codes[0] if ret.error_codes
                                    else 0, rap.file_id)
            return
    raise NotFound(f"ReturnDetail {index}: the returned event (IMSI {ret.imsi}, start "
                   f"{ret.event_time}, charge {ret.charge}) is not in {tap.name}")


async def _acknowledge(conn: Connection, actor: str, partner: Partner, name: str, data: bytes,
                       sha: str, rap: RapFile, rap_fsn: int) -> Received:
    ours = await repo.find_file(conn, partner=partner.tadig, direction="out", file_type="rap",
                                fsn=rap_fsn, lock=True)
    if ours is None:
        raise NotFound(f"{name}: RapFileSequenceNumber {rap.rap_fsn} names no RAP file we "
                       f"sent to {partner.tadig}")
    saved = await repo.insert_file(
        conn, partner=partner.tadig, direction="in", file_type="ack", kind=ours.kind,
        name=name, fsn=rap_fsn, rap_fsn=None, content=data, sha256=sha, event_count=0,
        total_charge=0, decimal_places=ours.decimal_places, tap_currency=ours.tap_currency,
        period=None, state="accepted", answers=ours.file_id)
    await repo.set_file_state(conn, ours.file_id, "acknowledged", closed=True)
    await _audit(conn, actor, "settlement.file.acknowledged", ours, {"state": "acknowledged"})
    return Received(file=saved, acknowledged=[ours.name])


async def _keep_rejected(pool: Any, actor: str, rap: RapFile | None, name: str, data: bytes,
                         reason: str) -> None:
    """Keep a file that could not be applied, when we know whose it is."""
    if rap is None:
        return
    async with pool.acquire() as conn, conn.transaction():
        partner = await repo.get_partner(conn, rap.sender)
        if partner is None:
            return
        sha = hashlib.sha256(data).hexdigest()
        if await repo.find_by_sha(conn, partner.tadig, "in", sha) is not None:
            return
        fsn = int(rap.rap_fsn) if rap.rap_fsn.isdigit() else 0
        kept = await repo.insert_file(
            conn, partner=partner.tadig, direction="in",
            file_type="ack" if rap.kind == "acknowledgement" else "rap",
            kind="test" if rap.test else "chargeable", name=name, fsn=fsn,
            rap_fsn=None, content=data,
            sha256=sha, event_count=0, total_charge=0, decimal_places=0,
            tap_currency=partner.tap_currency, period=None, state="rejected",
            detail={"reason": reason})
        await _audit(conn, actor, "settlement.file.rejected", kept, {"reason": reason})


async def correct(conn: Connection, actor: str, tadig: str) -> int:
    """Rerate the partner's returned events on its current wholesale tariff: they wait,
    corrected, for the next file. Returns how many were corrected."""
    partner = await outbound.require_partner(conn, tadig)
    returned = await repo.events_in_state(conn, tadig, "returned", lock=True)
    if not returned:
        return 0
    records = [msgspec.json.decode(ev.record, type=UsageRecord) for ev in returned]
    charges, _left = await outbound._rate(conn, partner, records)
    done = 0
    for ev, record in zip(returned, records, strict=True):
        charge = charges.get(record.record_key)
        if charge is None:
            continue
        await repo.correct_event(conn, ev.event_id, charge.amount_micros)
        await audit.record(conn, actor, "settlement.event.corrected",
                           f"settlement_event:{ev.event_id}",
                           {"charge_micros": ev.charge_micros, "error_code": ev.error_code},
                           {"charge_micros": charge.amount_micros})
        done += 1
    return done


async def _audit(conn: Connection, actor: str, action: str, f: SettlementFile,
                 extra: dict[str, Any]) -> None:
    await outbound._record(conn, actor, action, f, extra)

