"""Second chances: retrying suspense records after the catalog was fixed, and expiring
partial-record groups that never completed.

A retried record is validated and rated again with the current catalog. Charged, it gets the
usage id its record key reserved when it was suspended, so a record can never be charged twice
(by a retry and by a redelivery). Still failing, its row stays open with the new reason.
"""

from __future__ import annotations

import asyncpg
import msgspec

from billing_oss.core.metrics import SUSPENSE_RECORDS, SUSPENSE_RESOLVED
from billing_oss.core.money import format_outcome
from billing_oss.core.ports import Charge, Failure
from billing_oss.core.records import UsageRecord
from billing_oss.server.pipeline import writer
from billing_oss.server.pipeline.batch import Entry
from billing_oss.server.pipeline.raters import RaterCache
from billing_oss.server.pipeline.validate import validate
from billing_oss.server.store import charge_writes, suspense_repo, usage_repo
from billing_oss.server.store.pool import Connection


class RetryResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    suspense_id: int
    record_key: str | None
    status: str  # charged | suspense | duplicate
    reason: str | None = None
    detail: str | None = None
    amount: str | None = None
    currency: str | None = None


class RetryReport(msgspec.Struct, kw_only=True):
    retried: int
    charged: int
    still_open: int
    duplicates: int
    results: list[RetryResult]


async def retry(
    pool: asyncpg.Pool, raters: RaterCache, *, ids: list[int] | None = None,
    reason: str | None = None, limit: int = 1000,
) -> RetryReport:
    """Re-process open suspense rows (optionally only ``ids`` / one ``reason``)."""
    rater = await raters.current()
    results: list[RetryResult] = []
    async with pool.acquire() as conn, conn.transaction():
        rows = await suspense_repo.claim_for_retry(conn, ids=ids, reason=reason, limit=limit)
        for row in rows:
            results.append(await _retry_one(conn, row, rater))
    charged = sum(r.status == "charged" for r in results)
    SUSPENSE_RESOLVED.inc(charged)
    return RetryReport(retried=len(results), charged=charged,
                       duplicates=sum(r.status == "duplicate" for r in results),
                       still_open=sum(r.status == "suspense" for r in results), results=results)


async def _retry_one(
    conn: Connection, row: suspense_repo.SuspenseRow, rater: writer.Rater
) -> RetryResult:
    assert row.record is not None
    record = msgspec.json.decode(row.record, type=UsageRecord)
    when, problem = validate(record)
    outcome: Charge | Failure = problem if problem is not None else rater.rate([record])[0]
    if isinstance(outcome, Failure):
        await suspense_repo.still_failing(conn, row.suspense_id, str(outcome.reason),
                                          outcome.detail)
        return RetryResult(suspense_id=row.suspense_id, record_key=record.record_key,
                           status="suspense", reason=str(outcome.reason), detail=outcome.detail)
    assert when is not None
    await usage_repo.ensure_partitions(conn, [when.date().replace(day=1)])
    usage_id = await suspense_repo.reclaim_key(conn, record.source, record.record_key,
                                               outcome.account_id, when)
    if usage_id is None:
        await suspense_repo.resolve(conn, row.suspense_id, "duplicate of a charged usage")
        return RetryResult(suspense_id=row.suspense_id, record_key=record.record_key,
                           status="duplicate")
    entry = Entry(record.source, record, when, outcome, row.source_position or "",
                  usage_id=usage_id)
    columns = (*usage_repo.USAGE_FIXED, *usage_repo.USAGE_OPTIONAL, *usage_repo.USAGE_TAIL)
    await usage_repo.copy_rows(conn, "usage_records", columns, [
        writer.usage_row(entry, outcome.account_id, usage_repo.USAGE_OPTIONAL,
                         row.source_file_id)])
    await charge_writes.write(conn, [writer.charge_row(entry, outcome, row.source_file_id)],
                              writer.rollup_of([entry]))
    await suspense_repo.resolve(conn, row.suspense_id, f"charged as usage {usage_id}")
    return RetryResult(suspense_id=row.suspense_id, record_key=record.record_key,
                       status="charged", amount=format_outcome(outcome.amount_micros),
                       currency=outcome.currency)


async def expire_partials(pool: asyncpg.Pool, older_than_s: float) -> int:
    """Groups with no new part for ``older_than_s``: to suspense (PARTIAL_INCOMPLETE).

    Groups are locked as a batch storing parts locks them, then checked again: one a batch
    completed (merged and charged) or extended meanwhile stays out of suspense.
    """
    expired, after = 0, ("", "")
    async with pool.acquire() as conn:
        while True:  # a chunk of groups per transaction: a backlog must not exhaust locks
            async with conn.transaction():
                candidates = await usage_repo.stale_groups(conn, older_than_s, after=after)
                if not candidates:
                    return expired
                expired += await _expire_chunk(conn, candidates, older_than_s, after)
            after = candidates[-1]


async def _expire_chunk(conn: Connection, candidates: list[tuple[str, str]],
                        older_than_s: float, after: tuple[str, str]) -> int:
    """Expire the candidates still stale once locked; the suspense rows written."""
    await usage_repo.lock_groups(conn, candidates)
    locked = set(candidates)
    groups = [g for g in await usage_repo.stale_groups(conn, older_than_s, after=after)
              if g in locked]
    found = await usage_repo.open_parts(conn, groups)
    closed = await usage_repo.close_groups(conn, groups, "expired") if groups else set()
    rows = []
    for (source, group), parts in found.items():
        if (source, group) not in closed:
            continue
        records = [msgspec.json.decode(p.record, type=UsageRecord) for p in parts]
        merged, failure = writer.expired_record(group, records)
        entry = Entry(source, merged, None, failure, f"partial:{group}")
        rows.append(writer.suspense_row(entry, failure, None))
        SUSPENSE_RECORDS.labels(str(failure.reason)).inc()
    await usage_repo.copy_rows(conn, "suspense", usage_repo.SUSPENSE_COLUMNS, rows)
    return len(rows)
