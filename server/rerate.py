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
import msgspec

from billing_oss.core.errors import NotFound
from billing_oss.core.ports import Charge, Rater
from billing_oss.core.records import UsageRecord
from billing_oss.server import jobs
from billing_oss.server.store import audit
from billing_oss.server.store.pool import Connection

CHUNK = 500
# Roaming usage of our subscribers is priced by the partner's charge plus the partner's
# markup (server/settlement/roaming.py), not by the catalog: a catalog rerate leaves it.
_CATALOG_PRICED = "source NOT LIKE 'roaming:%'"


class RaterSource(Protocol):
    async def current(self) -> Rater: ...


class AccountDifference(msgspec.Struct, frozen=True, kw_only=True):
    account_id: str
    currency: str
    usage_count: int
    usage_changed: int
    before_micros: int
    after_micros: int


class Job(msgspec.Struct, frozen=True, kw_only=True):
    rerate_job_id: int
    account_id: str | None
    period_start: dt.datetime
    period_end: dt.datetime
    state: str
    requested_by: str
    usage_total: int | None
    usage_done: int
    usage_changed: int
    usage_failed: int
    error: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    accounts: list[AccountDifference]


_JOB = ("SELECT rerate_job_id, account_id, period_start, period_end, state, requested_by,"
        " usage_total, usage_done, usage_changed, usage_failed, error, created_at, started_at,"
        " finished_at FROM rerate_jobs")


async def submit(pool: asyncpg.Pool, actor: str, account_id: str | None,
                 start: dt.datetime, end: dt.datetime) -> Job:
    async with pool.acquire() as conn, conn.transaction():
        if account_id is not None and not await conn.fetchval(
                "SELECT true FROM accounts WHERE account_id = $1", account_id):
            raise NotFound(f"no account {account_id}")
        job_id = await conn.fetchval(
            "INSERT INTO rerate_jobs (account_id, period_start, period_end, requested_by)"
            " VALUES ($1, $2, $3, $4) RETURNING rerate_job_id", account_id, start, end, actor)
        job = await get(conn, job_id)
        await audit.record(conn, actor, "rerate.submit", f"rerate_job:{job_id}", None, job)
        await conn.execute("SELECT pg_notify('billing_rerate', $1)", str(job_id))
    return job


async def get(conn: Connection | asyncpg.Pool, job_id: int) -> Job:
    row = await conn.fetchrow(_JOB + " WHERE rerate_job_id = $1", job_id)
    if row is None:
        raise NotFound(f"no rerate job {job_id}")
    accounts = await conn.fetch(
        "SELECT account_id, rtrim(currency) AS currency, usage_count, usage_changed,"
        " before_micros, after_micros FROM rerate_job_accounts WHERE rerate_job_id = $1"
        " ORDER BY account_id, currency", job_id)
    return Job(**dict(row), accounts=[
        AccountDifference(account_id=a["account_id"], currency=a["currency"],
                          usage_count=a["usage_count"], usage_changed=a["usage_changed"],
                          before_micros=int(a["before_micros"]),
                          after_micros=int(a["after_micros"])) for a in accounts])


async def find(pool: asyncpg.Pool, *, state: str | None, after: int | None,
               limit: int) -> list[Job]:
    rows = await pool.fetch(
        "SELECT rerate_job_id FROM rerate_jobs WHERE ($1::text IS NULL OR state = $1)"
        " AND ($2::bigint IS NULL OR rerate_job_id > $2) ORDER BY rerate_job_id LIMIT $3",
        state, after, limit + 1)
    return [await get(pool, r["rerate_job_id"]) for r in rows]


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
    job = await pool.fetchrow("SELECT * FROM rerate_jobs WHERE rerate_job_id = $1", job_id)
    assert job is not None
    scope = (job["account_id"], job["period_start"], job["period_end"])
    if job["usage_total"] is None:
        total = await pool.fetchval(
            "SELECT count(*) FROM usage_records WHERE ($1::text IS NULL OR account_id = $1)"
            " AND event_time >= $2 AND event_time < $3 AND " + _CATALOG_PRICED, *scope)
        await pool.execute(
            "UPDATE rerate_jobs SET state = 'running', usage_total = $2, started_at = now()"
            " WHERE rerate_job_id = $1", job_id, total)
    rater = await raters.current()
    resume = (job["resume_time"], job["resume_usage_id"])
    while not stop.is_set():  # stopped: resumed after the last chunk, by the next start
        async with pool.acquire() as conn, conn.transaction():
            rows = await _next_chunk(conn, scope, resume)
            if not rows:
                await conn.execute(
                    "UPDATE rerate_jobs SET state = 'done', finished_at = now()"
                    " WHERE rerate_job_id = $1", job_id)
                return
            await _rerate_chunk(conn, job_id, rows, rater)
            resume = (rows[-1]["event_time"], rows[-1]["usage_id"])
        await asyncio.sleep(0)  # let requests in between chunks


async def _next_chunk(conn: Connection, scope: tuple[Any, ...],
                      resume: tuple[Any, Any]) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT account_id, usage_id, event_time, source, record_key, kind, duration_s,"
        " volume_up, volume_down, quantity::text AS quantity, unit, calling, called, imsi,"
        " msisdn, charge::text AS charge, partial_seq, attrs::text AS attrs"
        " FROM usage_records WHERE ($1::text IS NULL OR account_id = $1)"
        " AND event_time >= $2 AND event_time < $3 AND " + _CATALOG_PRICED +
        " AND ($4::timestamptz IS NULL OR (event_time, usage_id) > ($4, $5::bigint))"
        " ORDER BY event_time, usage_id LIMIT $6", *scope, *resume, CHUNK)


async def _rerate_chunk(conn: Connection, job_id: int, rows: Sequence[asyncpg.Record],
                        rater: Rater) -> None:
    accounts = sorted({r["account_id"] for r in rows})
    for account in accounts:
        await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _ACCOUNT_LOCKS,
                           account)
    active = await _active_charges(conn, rows)
    outcomes = rater.rate([_record(r) for r in rows])
    new_rows: list[tuple[Any, ...]] = []
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
        if old is not None:
            new_rows.append((row["account_id"], row["event_time"], row["usage_id"], "reversal",
                             -old["amount_micros"], old["currency"], old["tariff_version_id"],
                             old["zone"], old["band"], old["charge_id"], job_id))
        new_rows.append((row["account_id"], row["event_time"], row["usage_id"], "charge",
                         outcome.amount_micros, currency, outcome.tariff_version_id,
                         outcome.zone, outcome.band, None, job_id))
    await _insert_charges(conn, new_rows)
    for (account, currency), (count, n_changed, before, after) in diffs.items():
        await conn.execute(
            "INSERT INTO rerate_job_accounts AS a (rerate_job_id, account_id, currency,"
            " usage_count, usage_changed, before_micros, after_micros)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (rerate_job_id, account_id,"
            " currency) DO UPDATE SET usage_count = a.usage_count + EXCLUDED.usage_count,"
            " usage_changed = a.usage_changed + EXCLUDED.usage_changed,"
            " before_micros = a.before_micros + EXCLUDED.before_micros,"
            " after_micros = a.after_micros + EXCLUDED.after_micros",
            job_id, account, currency, count, n_changed, before, after)
    last = rows[-1]
    await conn.execute(
        "UPDATE rerate_jobs SET usage_done = usage_done + $2, usage_changed = usage_changed + $3,"
        " usage_failed = usage_failed + $4, resume_time = $5, resume_usage_id = $6"
        " WHERE rerate_job_id = $1",
        job_id, len(rows), changed, failed, last["event_time"], last["usage_id"])


async def _active_charges(conn: Connection, rows: Sequence[asyncpg.Record]) -> dict[
        tuple[str, Any, int], asyncpg.Record]:
    """The latest unreversed ``charge`` row of each usage in ``rows``, by the usage's
    primary key (account, event time, usage id): a usage id alone may not be unique."""
    found = await conn.fetch(
        "SELECT DISTINCT ON (c.account_id, c.event_time, c.usage_id) c.account_id,"
        " c.event_time, c.usage_id, c.charge_id,"
        " c.amount_micros, c.currency, c.tariff_version_id, c.zone, c.band"
        " FROM charges c WHERE (c.account_id, c.event_time, c.usage_id) IN"
        " (SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::bigint[]))"
        " AND c.kind = 'charge'"
        " AND NOT EXISTS (SELECT 1 FROM charges r WHERE r.account_id = c.account_id"
        "   AND r.event_time = c.event_time AND r.reverses_charge_id = c.charge_id)"
        " ORDER BY c.account_id, c.event_time, c.usage_id, c.charge_id DESC",
        [r["account_id"] for r in rows], [r["event_time"] for r in rows],
        [r["usage_id"] for r in rows])
    return {(r["account_id"], r["event_time"], r["usage_id"]): r for r in found}


async def _insert_charges(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
    if not rows:
        return
    await conn.executemany(
        "INSERT INTO charges (account_id, charge_id, event_time, usage_id, kind, amount_micros,"
        " currency, tariff_version_id, zone, band, reverses_charge_id, rerate_job_id)"
        " VALUES ($1, nextval('charge_id_seq'), $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        rows)


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
