"""Outbound TAP files: the usage of a partner's subscribers visiting us, rated wholesale and
written as a TransferBatch (a Notification when the period had none), in one transaction.

``generate`` takes the open UNKNOWN_ACCOUNT suspense records whose IMSI is in the partner's
ranges (usage our own catalog cannot charge because the subscriber is the partner's) and the
events corrected after a severe return, rates them, allocates the next file sequence number
(per partner and kind, gapless, recycled after 99999), encodes the file with the native BER
encoder and stores it with its events; the suspense records are resolved by the file. The
file, its events, the sequence number, the audit entry and the outbox event commit together
or not at all. A stored file's content never changes: ``regenerate`` (after a fatal return)
writes a new file under the same sequence number, carrying the RAP file sequence number.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import msgspec

from billing_oss.adapters.formats.tap3_writer import (
    TapHeader,
    encode_notification,
    fsn_text,
    write_transfer_batch,
)
from billing_oss.core.errors import Conflict, NotFound
from billing_oss.core.ports import Charge
from billing_oss.core.records import UsageRecord
from billing_oss.server.integrations.events import SettlementFileChanged
from billing_oss.server.integrations.outbox import emit
from billing_oss.server.settlement import repo, wholesale
from billing_oss.server.settlement.model import Partner, SettlementFile
from billing_oss.server.store import audit
from billing_oss.server.store.pool import Connection

MAX_EVENTS = 1_000_000
CHUNK = 8192


class Generated(msgspec.Struct, frozen=True, kw_only=True):
    file: SettlementFile
    not_settled: int        # partner records left in suspense (the wholesale tariff failed)


def file_name(partner: Partner, fsn: int, kind: str) -> str:
    prefix = "TD" if kind == "test" else "CD"
    return f"{prefix}{partner.our_tadig}{partner.tadig}{fsn_text(fsn)}"


async def require_partner(conn: repo.Db, tadig: str) -> Partner:
    partner = await repo.get_partner(conn, tadig)
    if partner is None:
        raise NotFound(f"no partner {tadig!r}")
    return partner


async def exchange_rate(conn: Connection, partner: Partner, day: dt.date) -> Decimal:
    """Local currency units per TAP currency unit on ``day``."""
    if partner.tap_currency == partner.local_currency:
        return Decimal(1)
    rate = await repo.rate_on(conn, partner.rate_source, partner.tap_currency,
                              partner.local_currency, day)
    if rate is None:
        raise wholesale.MissingRate(
            f"partner {partner.tadig}: no exchange rate {partner.tap_currency}→"
            f"{partner.local_currency} from source {partner.rate_source!r} on or before "
            f"{day.isoformat()} (field exchange_rates.valid_from)", day=day.isoformat())
    return Decimal(rate)


def header(partner: Partner, fsn: int, kind: str, now: dt.datetime, rate: Decimal,
           rap_fsn: int | None = None) -> TapHeader:
    stamp = wholesale.local_stamp(now.strftime("%Y-%m-%dT%H:%M:%SZ"), partner.utc_offset)
    places, value = wholesale.tap_rate(rate)
    return TapHeader(
        sender=partner.our_tadig, recipient=partner.tadig, fsn=fsn, rap_fsn=rap_fsn,
        created=stamp, cutoff=stamp, available=stamp, utc_offset=partner.utc_offset,
        test=kind == "test", local_currency=partner.local_currency,
        tap_currency=partner.tap_currency, decimal_places=partner.tap_decimal_places,
        exchange_rates=((wholesale.EXCHANGE_RATE_CODE, places, value),),
        rec_entities=((wholesale.REC_ENTITY_CODE, 1, f"{partner.our_tadig}MSC01"),))


async def generate(conn: Connection, actor: str, tadig: str, start: dt.datetime,
                   end: dt.datetime, *, kind: str | None = None,
                   now: dt.datetime | None = None) -> Generated:
    """Write the partner's next file for the usage in ``[start, end)``; call in a
    transaction."""
    now = now or dt.datetime.now(dt.UTC)
    partner = await require_partner(conn, tadig)
    kind = kind or partner.file_kind
    fsn, cycle = await repo.next_fsn(conn, tadig, "out", kind)
    rate = await exchange_rate(conn, partner, end.date() if end <= now else now.date())
    rows = await repo.roaming_usage(conn, partner.imsi_prefixes, start, end, MAX_EVENTS)
    corrected = await repo.events_in_state(conn, tadig, "corrected", lock=True)
    records = [msgspec.json.decode(r.record, type=UsageRecord) for r in rows]
    charges, left = await _rate(conn, partner, records)
    h = header(partner, fsn, kind, now, rate)
    new: list[repo.NewEvent] = []
    events: list[tuple[Any, ...]] = []
    for row, record in zip(rows, records, strict=True):
        charge = charges.get(record.record_key)
        if charge is None:
            continue
        _add(new, events, partner, rate, record, row.record, charge.amount_micros,
             row.suspense_id, None)
    for ev in corrected:
        record = msgspec.json.decode(ev.record, type=UsageRecord)
        assert ev.corrected_micros is not None
        _add(new, events, partner, rate, record, ev.record, ev.corrected_micros, None,
             ev.event_id)
    saved = await _store(conn, partner, h, kind, events, (start, end), cycle=cycle, detail={
        "exchange_rate": str(rate), "resubmitted_events": len(corrected)})
    await repo.insert_events(conn, tadig, "out", saved.file_id, new, "sent")
    await repo.set_events_state(conn, [ev.event_id for ev in corrected], "resent")
    await repo.resolve_suspense(conn, [n[3] for n in new if n[3] is not None],
                                f"settlement: sent to {tadig} in {saved.name}")
    await _record(conn, actor, "settlement.file.generated", saved, None)
    return Generated(file=saved, not_settled=left)


def _add(new: list[repo.NewEvent], events: list[tuple[Any, ...]], partner: Partner,
         rate: Decimal, record: UsageRecord, record_json: str, micros: int,
         suspense_id: int | None, previous: int | None) -> None:
    tc = wholesale.tap_charge(micros, rate, partner.tap_decimal_places)
    new.append((len(events), record.source, record.record_key, suspense_id, previous,
                _utc(record.event_time), record.imsi or "", record_json, micros, tc))
    events.append(wholesale.tap_event(record, tc, partner.utc_offset))


async def _rate(conn: Connection, partner: Partner,
                records: list[UsageRecord]) -> tuple[dict[str, Charge], int]:
    """Charges by record key; the records that fail stay in suspense (counted)."""
    ok = [r for r in records if wholesale.settleable(r) is None]
    if not ok:
        return {}, len(records)
    tariff = await repo.tariff_versions(conn, partner.wholesale_tariff)
    if tariff is None:
        raise NotFound(f"partner {partner.tadig}: no tariff {partner.wholesale_tariff!r} "
                       "(field wholesale_tariff)")
    currency, versions = tariff
    if currency != partner.local_currency:
        raise Conflict(f"partner {partner.tadig}: wholesale tariff currency {currency} is not "
                       f"the local currency {partner.local_currency}")
    outcomes = wholesale.rate_records(partner, currency, versions, ok)
    charges = {r.record_key: o for r, o in zip(ok, outcomes, strict=True)
               if isinstance(o, Charge)}
    return charges, len(records) - len(charges)


async def _store(conn: Connection, partner: Partner, h: TapHeader, kind: str,
                 events: Sequence[tuple[Any, ...]], period: tuple[dt.datetime, dt.datetime],
                 *, cycle: int, supersedes: int | None = None,
                 detail: dict[str, Any] | None = None) -> SettlementFile:
    if events:
        out = io.BytesIO()
        totals = write_transfer_batch(
            out, h, (events[i:i + CHUNK] for i in range(0, len(events), CHUNK)))
        content, file_type = out.getvalue(), "tap"
        count, total = totals.count, totals.total_charge
    else:
        content, file_type, count, total = encode_notification(h), "notification", 0, 0
    return await repo.insert_file(
        conn, partner=partner.tadig, direction="out", file_type=file_type, kind=kind,
        name=file_name(partner, h.fsn, kind), fsn=h.fsn, rap_fsn=h.rap_fsn, content=content,
        sha256=hashlib.sha256(content).hexdigest(), event_count=count, total_charge=total,
        decimal_places=partner.tap_decimal_places, tap_currency=partner.tap_currency,
        period=period, state="generated", supersedes=supersedes, detail=detail, cycle=cycle)


async def regenerate(conn: Connection, actor: str, old: SettlementFile, rap_fsn: int,
                     now: dt.datetime | None = None) -> SettlementFile:
    """After a fatal return: the same events (re-rated at the file date's exchange rate)
    under the same sequence number, with the RAP file sequence number; the old file is
    superseded."""
    now = now or dt.datetime.now(dt.UTC)
    partner = await require_partner(conn, old.partner)
    rate = await exchange_rate(conn, partner, now.date())
    h = header(partner, old.fsn, old.kind, now, rate, rap_fsn=rap_fsn)
    rows = [ev for ev in await repo.events_of_file(conn, old.file_id) if ev.state == "sent"]
    new: list[repo.NewEvent] = []
    events: list[tuple[Any, ...]] = []
    for ev in rows:
        record = msgspec.json.decode(ev.record, type=UsageRecord)
        _add(new, events, partner, rate, record, ev.record, ev.charge_micros, None, ev.event_id)
    period = (old.period_from or now, old.period_to or now)
    saved = await _store(conn, partner, h, old.kind, events, period, cycle=old.cycle,
                         supersedes=old.file_id,
                         detail={"exchange_rate": str(rate), "rap_fsn": rap_fsn})
    await repo.insert_events(conn, old.partner, "out", saved.file_id, new, "sent")
    await repo.set_events_state(conn, [ev.event_id for ev in rows], "superseded")
    await repo.set_file_state(conn, old.file_id, "superseded", closed=True,
                              detail={"superseded_by": saved.file_id})
    await _record(conn, actor, "settlement.file.superseded", old,
                  {"state": "superseded", "superseded_by": saved.file_id})
    await _record(conn, actor, "settlement.file.resubmitted", saved, None)
    return saved


def _utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def summary(f: SettlementFile) -> dict[str, Any]:
    return {"file_id": f.file_id, "name": f.name, "fsn": f.fsn, "rap_fsn": f.rap_fsn,
            "type": f.file_type, "state": f.state, "events": f.event_count,
            "total_charge": f.total(), "currency": f.tap_currency, "sha256": f.sha256}


async def _record(conn: Connection, actor: str, action: str, f: SettlementFile,
                  extra: dict[str, Any] | None) -> None:
    after = summary(f) | (extra or {})
    await audit.record(conn, actor, action, f"settlement_file:{f.file_id}", None, after)
    await emit(conn, SettlementFileChanged(
        file_id=f.file_id, partner=f.partner, name=f.name, fsn=f.fsn, state=after["state"],
        action=action, events=f.event_count, total_charge=f.total(), currency=f.tap_currency),
        stream=f"partner:{f.partner}")
