"""Rerating: rate a period's usage again under the current catalog, by correction rows only.

For each usage record of the job's period (and account, if given) the job rates the stored
record with the current rater and compares it with the usage's active charge (the latest
``charge`` row no reversal points at). When amount, currency or tariff version differ it
writes a ``reversal`` of the active charge and a new ``charge``, both carrying the job id.
Nothing is updated or deleted, and invoices are never touched: corrections of usage already
on a finalised invoice land on the next invoice through the invoicing module's links.

Work commits in chunks; each chunk's transaction also advances the job's resume key and
per-account differences, so progress is visible while it runs and a restart resumes after
the last committed usage (claims, resumption and shutdown: ``server.jobs``). Accounts in a
chunk are locked (advisory, per account) so two jobs covering the same usage cannot both
reverse the same charge.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

import asyncpg

from billing_oss.core.ports import Charge, Rater
from billing_oss.core.records import UsageRecord
from billing_oss.server import jobs
from billing_oss.server.store import charge_writes, rerate_repo
from billing_oss.server.store.pool import Connection
from billing_oss.server.store.rerate_repo import AccountDifference, Job, find, get, submit

CHUNK = 500

__all__ = ["CHUNK", "AccountDifference", "Job", "RerateJobs", "find", "get", "run_next",
           "running_worker", "submit"]


class RaterSource(Protocol):
    async def current(self) -> Rater: ...


class RerateJobs:
    """Rerate jobs for ``server.jobs``: claimed, run and resumed like every job table."""

    table = "rerate_jobs"
    name = "rerate_job"
    lock_space = 0x52455241  # "RERA": advisory lock namespace of rerate job claims

    def __init__(self, pool: asyncpg.Pool, raters: RaterSource) -> None:
        self._pool, self._raters = pool, raters

    async def run(self, holder: Connection, job_id: int, stop: asyncio.Event) -> None:
        await _run(self._pool, self._raters, job_id, stop)

    async def fail(self, pool: asyncpg.Pool, job_id: int, error: str) -> None:
        await jobs.mark_failed(pool, self, job_id, error)


async def run_next(pool: asyncpg.Pool, raters: RaterSource) -> int | None:
    """Claim one queued (or interrupted) job and run it to the end; its id, or None."""
    return await jobs.run_next(pool, RerateJobs(pool, raters))


_ACCOUNT_LOCKS = 0x52455242  # advisory lock namespace of the accounts a chunk rerates


async def _run(pool: asyncpg.Pool, raters: RaterSource, job_id: int,
               stop: asyncio.Event) -> None:
    job = await rerate_repo.job_row(pool, job_id)
    scope = (job["account_id"], job["period_start"], job["period_end"])
    if job["usage_total"] is None:
        await rerate_repo.start(pool, job_id, scope)
    rater = await raters.current()
    resume = (job["resume_time"], job["resume_usage_id"])
    while not stop.is_set():  # stopped: resumed after the last chunk, by the next start
        async with pool.acquire() as conn, conn.transaction():
            rows = await rerate_repo.next_chunk(conn, scope, resume, CHUNK)
            if not rows:
                await rerate_repo.finish(conn, job_id)
                return
            await _rerate_chunk(conn, job_id, rows, rater)
            resume = (rows[-1]["event_time"], rows[-1]["usage_id"])
        await asyncio.sleep(0)  # let requests in between chunks


async def _rerate_chunk(conn: Connection, job_id: int, rows: Sequence[asyncpg.Record],
                        rater: Rater) -> None:
    accounts = sorted({r["account_id"] for r in rows})
    await rerate_repo.lock_accounts(conn, _ACCOUNT_LOCKS, accounts)
    active = await rerate_repo.active_charges(conn, rows)
    outcomes = rater.rate([_record(r) for r in rows])
    new_rows: list[tuple[Any, ...]] = []
    facts: list[charge_writes.Fact] = []
    diffs: dict[tuple[str, str], list[int]] = {}
    changed = failed = 0
    for row, outcome in zip(rows, outcomes, strict=True):
        old = active.get((row["account_id"], row["event_time"], row["usage_id"]))
        if not isinstance(outcome, Charge):
            failed += 1
            continue
        currency = outcome.currency
        before = old["amount_micros"] if old is not None else 0
        diff = diffs.setdefault((row["account_id"], currency), [0, 0, 0, 0])
        diff[0] += 1
        diff[2] += before
        if old is not None and (old["amount_micros"], old["currency"].strip(),
                                old["tariff_version_id"]) == (
                outcome.amount_micros, currency, outcome.tariff_version_id):
            diff[3] += before
            continue
        changed += 1
        diff[1] += 1
        diff[3] += outcome.amount_micros
        account, when, kind = row["account_id"], row["event_time"], row["kind"]
        units = charge_writes.rollup_units(kind, row["duration_s"], row["volume_up"],
                                           row["volume_down"], row["quantity"])
        if old is not None:
            new_rows.append((account, when, row["usage_id"], "reversal",
                             -old["amount_micros"], old["currency"], old["tariff_version_id"],
                             old["zone"], old["band"], old["charge_id"], job_id))
            facts.append(charge_writes.Fact(
                account, when, kind, old["zone"], old["currency"], old["tariff_version_id"],
                True, -old["amount_micros"], units))
        new_rows.append((account, when, row["usage_id"], "charge",
                         outcome.amount_micros, currency, outcome.tariff_version_id,
                         outcome.zone, outcome.band, None, job_id))
        facts.append(charge_writes.Fact(account, when, kind, outcome.zone, currency,
                                        outcome.tariff_version_id, False,
                                        outcome.amount_micros, units))
    await charge_writes.write(conn, new_rows, charge_writes.roll_up(facts),
                              columns=rerate_repo.CHARGE_COLUMNS)
    for (account, currency), (count, n_changed, before, after) in diffs.items():
        await rerate_repo.add_difference(conn, job_id, account, currency, count, n_changed,
                                         before, after)
    last = rows[-1]
    await rerate_repo.advance(conn, job_id, len(rows), changed, failed, last["event_time"],
                              last["usage_id"])


def _record(row: asyncpg.Record) -> UsageRecord:
    values = {k: row[k] for k in _RECORD_FIELDS if row[k] is not None}
    values["event_time"] = row["event_time"].astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    values["attrs"] = json.loads(row["attrs"])
    return UsageRecord(**values)


_RECORD_FIELDS = ("record_key", "source", "kind", "duration_s", "volume_up", "volume_down",
                  "quantity", "unit", "calling", "called", "imsi", "msisdn", "charge",
                  "partial_seq")


@contextlib.asynccontextmanager
async def running_worker(pool: asyncpg.Pool, raters: RaterSource) -> AsyncIterator[jobs.Worker]:
    async with jobs.running_worker(pool, RerateJobs(pool, raters)) as worker:
        yield worker
