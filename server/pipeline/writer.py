"""The write stage: dedupe, merge partials, and store a prepared batch in the open transaction.

Order inside the transaction: partial parts are stored (a complete group becomes one merged
entry, rated here), record keys are claimed (a key already taken is a duplicate), then usage,
charge and suspense rows go in by binary COPY. The rows are usually built before the
transaction (``server.pipeline.rows``, or ``server.pipeline.columnar`` for records carried as
columns); the writer then only drops those of records whose key was taken (a batch with
carried records first becomes entries: ``WriteBatch.expand``). Each entry ends with a
``status``; the batch gets its counts (over input items only) and charged totals per
currency.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

import msgspec

from billing_oss.core.errors import Reason
from billing_oss.core.metrics import PIPELINE_RECORDS, SUSPENSE_RECORDS
from billing_oss.core.ports import Charge, Failure, Rater
from billing_oss.server.pipeline import partials
from billing_oss.server.pipeline.batch import Entry, WriteBatch

__all__ = ["Rater", "charge_row", "rollup_of", "store_batch", "suspense_row", "usage_row"]
from billing_oss.core.records import UsageRecord
from billing_oss.server.pipeline.rows import (
    Rows,
    build_rows,
    charge_row,
    optional_columns,
    rollup_of,
    suspense_row,
    usage_row,
)
from billing_oss.server.pipeline.validate import validate
from billing_oss.server.store import charge_writes, suspense_repo, usage_repo
from billing_oss.server.store.pool import Connection

_STATUS_COUNT = {"charged": "charged", "suspense": "suspense", "duplicate": "duplicates",
                 "filtered": "filtered", "pending": "pending"}
_encode = msgspec.json.encode


def months(batch: WriteBatch) -> set[date]:
    """Months the batch's usage and charges land in (partitions must exist before the
    transaction): rated records and partial parts (a merged group takes a part's time).
    Records headed for suspense only are left out, so junk event times (any year the
    validator allows) create no partitions."""
    found: set[date] = set(batch.carried.months) if batch.carried is not None else set()
    last = None
    for entry in batch.entries:
        when = entry.event_time
        if when is None or isinstance(entry.outcome, Failure):
            continue
        if (when.year, when.month) != last:
            last = (when.year, when.month)
            found.add(date(when.year, when.month, 1))
    return found


async def store_batch(
    conn: Connection, batch: WriteBatch, *, source_file_id: int | None, rater: Rater,
    turn: Callable[[], Awaitable[None]] | None = None,
    claimed_keys: Callable[[], None] | None = None,
) -> None:
    """``turn`` is awaited before the first statement that takes a lock another batch may
    want (partial groups, record keys) and ``claimed_keys`` called once they are all taken:
    batches written concurrently take their keys one after another in file order, so the
    first copy of a record wins and two batches never wait on each other's locks."""
    batch.reset()
    if turn is not None:
        await turn()
    # After the turn: a batch waiting here on a fold holds nothing a batch before it needs.
    await usage_repo.hold_months(conn, months(batch))
    merged = await _merge_partials(conn, batch, source_file_id, rater)
    rows = batch.rows
    if rows is None or rows.source_file_id != source_file_id:
        batch.expand()
        ids = await usage_repo.next_usage_ids(conn, len(batch.entries))
        rows = batch.rows = build_rows(batch, ids, source_file_id)
    claimed = await usage_repo.claim_key_rows(conn, rows.keys,
                                              rows.payloads.get("usage_keys"))
    merged = await _claim(conn, merged) if merged else merged
    if claimed_keys is not None:
        claimed_keys()
    if claimed is not None:
        if batch.carried is not None:
            # Rare (a key of an earlier file): the object path sorts out who keeps what.
            batch.expand()
            assert batch.rows is not None
            rows = batch.rows
        rows = rows.kept(claimed)
    settle(batch, rows)
    payloads = rows.payloads
    await usage_repo.copy_rows(conn, "usage_records", rows.usage_columns, rows.usage,
                               payloads.get("usage_records"))
    await charge_writes.write(conn, rows.charges, rows.rollup, payload=payloads.get("charges"))
    await usage_repo.copy_rows(conn, "suspense", usage_repo.SUSPENSE_COLUMNS,
                               rows.suspense + rows.rejects)
    if merged:
        await _store_merged(conn, batch, merged, source_file_id)
    _count(batch)


def settle(batch: WriteBatch, rows: Rows) -> None:
    """Each entry's status and the batch's totals, once ``rows`` are what is stored."""
    for entry in rows.duplicates:
        entry.status = "duplicate"
    for entry in rows.claims:
        entry.status = "duplicate"
    claims = rows.claims
    for i in rows.charged:
        claims[i].status = "charged"
    for i in rows.failed:
        claims[i].status = "suspense"
    totals = batch.totals
    for currency, amount in rows.totals.items():
        totals[currency] = totals.get(currency, 0) + amount


async def _store_merged(
    conn: Connection, batch: WriteBatch, merged: list[Entry], source_file_id: int | None
) -> None:
    """Usage of the partial groups completed by this batch whose keys it claimed."""
    usage_rows: list[tuple[Any, ...]] = []
    charge_rows: list[tuple[Any, ...]] = []
    suspense_rows: list[tuple[Any, ...]] = []
    charged: list[Entry] = []
    optional = optional_columns(merged)
    totals = batch.totals
    for entry in merged:
        outcome = entry.outcome
        if isinstance(outcome, Charge):
            entry.status = "charged"
            charged.append(entry)
            usage_rows.append(usage_row(entry, outcome.account_id, optional, source_file_id))
            charge_rows.append(charge_row(entry, outcome, source_file_id))
            totals[outcome.currency] = totals.get(outcome.currency, 0) + outcome.amount_micros
        else:
            assert isinstance(outcome, Failure)
            entry.status = "suspense"
            suspense_rows.append(suspense_row(entry, outcome, source_file_id))
    columns = (*usage_repo.USAGE_FIXED, *optional, *usage_repo.USAGE_TAIL)
    await usage_repo.copy_rows(conn, "usage_records", columns, usage_rows)
    await charge_writes.write(conn, charge_rows, rollup_of(charged))
    await usage_repo.copy_rows(conn, "suspense", usage_repo.SUSPENSE_COLUMNS, suspense_rows)


async def _claim(conn: Connection, keyed: list[Entry]) -> list[Entry]:
    """Claim record keys; mark duplicates (in the batch or seen before); return the rest."""
    first: dict[tuple[str, str], Entry] = {}
    for entry in keyed:
        assert entry.record is not None
        key = (entry.source, entry.record.record_key)
        if key in first:
            entry.status = "duplicate"
        else:
            first[key] = entry
    if not first:
        return []
    entries = list(first.values())
    ids = await usage_repo.claim_keys(
        conn, [e.source for e in entries], [k for _, k in first],
        [e.outcome.account_id if e.outcome is not None else None for e in entries],
        [e.event_time for e in entries])
    claimed = []
    for key, entry in first.items():
        usage_id = ids.get(key)
        if usage_id is None:
            entry.status = "duplicate"
        else:
            entry.usage_id = usage_id
            claimed.append(entry)
    return claimed


async def _merge_partials(
    conn: Connection, batch: WriteBatch, source_file_id: int | None, rater: Rater
) -> list[Entry]:
    """Store partial parts; merge and rate each group completed by this batch."""
    parts = [e for e in batch.entries if e.outcome is None and e.record is not None]
    if not parts:
        return []
    rows = []
    for entry in parts:
        record = entry.record
        assert record is not None and record.partial_seq is not None
        rows.append(usage_repo.Part(entry.source, partials.group_key(record), record.partial_seq,
                                    partials.is_last(record), _encode(record)))
    new = await usage_repo.insert_parts(conn, rows, source_file_id, [e.position for e in parts])
    touched: dict[tuple[str, str], list[Entry]] = {}
    for entry, row in zip(parts, rows, strict=True):
        key = (row.source, row.group_key, row.partial_seq)
        if key in new:
            new.discard(key)  # a second copy in the same batch is a duplicate
            touched.setdefault((row.source, row.group_key), []).append(entry)
            entry.status = "pending"
        else:
            entry.status = "duplicate"
    if touched:
        await _late_parts(conn, touched, source_file_id)
    stored = await usage_repo.open_parts(conn, list(touched))
    complete = {group: found for group, found in stored.items()
                if partials.missing([(p.partial_seq, p.is_last) for p in found]) == []}
    if not complete:
        return []
    await usage_repo.close_groups(conn, list(complete), "merged")
    merged_entries = []
    for (source, group), found in complete.items():
        records = [msgspec.json.decode(p.record, type=UsageRecord) for p in found]
        merged = partials.merge(group, records)
        when, problem = validate(merged)
        entry = Entry(source, merged, when, problem, f"partial:{group}")
        merged_entries.append(entry)
        entry.parts = touched[(source, group)]
    to_rate = [e for e in merged_entries if e.outcome is None]
    if to_rate:
        outcomes = rater.rate([e.record for e in to_rate if e.record is not None])
        for entry, outcome in zip(to_rate, outcomes, strict=True):
            entry.outcome = outcome
    batch.merged = merged_entries
    return merged_entries


async def _late_parts(
    conn: Connection, touched: dict[tuple[str, str], list[Entry]], source_file_id: int | None
) -> None:
    """New parts of groups the sweeper expired (the groups are locked). While the expired
    group's suspense row is open, the group is reopened and that row resolved: the late part
    completes it (or it waits and expires again, missing fewer parts). Once the incomplete
    merge was retried or discarded, each late part goes to suspense on its own (PARTIAL_LATE),
    naming what became of the merge: a new group would expire again under the same merged
    key, and its retry be taken for a duplicate of the charged one."""
    expired = await usage_repo.expired_groups(conn, list(touched))
    if not expired:
        return
    keys = {group: (group[0], f"{group[1]}/merged") for group in expired}
    open_rows = await suspense_repo.lock_open_by_key(conn, list(keys.values()))
    reopen = [group for group in expired if keys[group] in open_rows]
    if reopen:
        await usage_repo.reopen_groups(conn, reopen)
    for group in reopen:
        seqs = sorted(e.record.partial_seq or 0 for e in touched[group] if e.record is not None)
        for suspense_id in open_rows[keys[group]]:
            await suspense_repo.resolve(conn, suspense_id,
                                        f"reopened: late part(s) {seqs} rejoined the group")
    closed = [group for group in expired if keys[group] not in open_rows]
    rows: list[tuple[Any, ...]] = []
    late: list[tuple[str, str, int]] = []
    for group in closed:
        fate = await suspense_repo.how_closed(conn, *keys[group])
        for entry in touched.pop(group):
            assert entry.record is not None and entry.record.partial_seq is not None
            seq = entry.record.partial_seq
            failure = Failure(Reason.PARTIAL_LATE,
                              f"charging id {group[1]}: part {seq} arrived after the incomplete "
                              f"group {keys[group][1]} was closed ({fate})")
            rows.append(suspense_row(entry, failure, source_file_id))
            late.append((group[0], group[1], seq))
            # The part's own answer (a delivery's per-record result) and the suspense metric.
            entry.status, entry.outcome = "suspense", failure
    if late:
        await usage_repo.expire_parts(conn, late)
        await usage_repo.copy_rows(conn, "suspense", usage_repo.SUSPENSE_COLUMNS, rows)


def observe(batch: WriteBatch) -> None:
    """Metrics for a committed batch."""
    for name, value in batch.counts.items():
        PIPELINE_RECORDS.labels("write", name).inc(value)
    if batch.counts.get("suspense"):
        for entry in batch.entries:
            if entry.status == "suspense" and isinstance(entry.outcome, Failure):
                SUSPENSE_RECORDS.labels(str(entry.outcome.reason)).inc()


def _count(batch: WriteBatch) -> None:
    for merged in batch.merged:
        for part in merged.parts or ():
            part.status = merged.status  # the parts follow the usage they make up
    counts = batch.counts
    counts["in"] = counts.get("in", 0) + batch.size
    if batch.carried is not None:  # claimed, all of them: else the batch was expanded
        counts["charged"] = counts.get("charged", 0) + batch.carried.count
    for entry in batch.entries:
        name = _STATUS_COUNT[entry.status or "suspense"]
        counts[name] = counts.get(name, 0) + 1


def expired_record(group: str, records: list[UsageRecord]) -> tuple[UsageRecord, Failure]:
    """What an incomplete group becomes after the timeout: its parts merged, in suspense."""
    merged = partials.merge(group, records)
    have = sorted(r.partial_seq or 0 for r in records)
    gaps = partials.missing([(r.partial_seq or 0, partials.is_last(r)) for r in records])
    what = (f"missing parts {gaps}" if gaps else "last part never arrived")
    return merged, Failure(Reason.PARTIAL_INCOMPLETE,
                           f"charging id {group}: {what} (have parts {have})")
