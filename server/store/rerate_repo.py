"""Rerate jobs (``rerate_jobs``, ``rerate_job_accounts``) and the charges a rerun writes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import asyncpg
import msgspec

from billing_oss.core.errors import NotFound
from billing_oss.server.store import audit
from billing_oss.server.store.pool import Connection

# Roaming usage of our subscribers is priced by the partner's charge plus the partner's
# markup (server/settlement/roaming.py), not by the catalog: a catalog rerate leaves it.
CATALOG_PRICED = "source NOT LIKE 'roaming:%'"


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


async def job_row(pool: asyncpg.Pool, job_id: int) -> asyncpg.Record:
    job = await pool.fetchrow("SELECT * FROM rerate_jobs WHERE rerate_job_id = $1", job_id)
    assert job is not None
    return job


async def start(pool: asyncpg.Pool, job_id: int, scope: tuple[Any, ...]) -> None:
    """Count the usage in the job's scope and mark it running."""
    total = await pool.fetchval(
        "SELECT count(*) FROM usage_records WHERE ($1::text IS NULL OR account_id = $1)"
        " AND event_time >= $2 AND event_time < $3 AND " + CATALOG_PRICED, *scope)
    await pool.execute(
        "UPDATE rerate_jobs SET state = 'running', usage_total = $2, started_at = now()"
        " WHERE rerate_job_id = $1", job_id, total)


async def finish(conn: Connection, job_id: int) -> None:
    await conn.execute(
        "UPDATE rerate_jobs SET state = 'done', finished_at = now() WHERE rerate_job_id = $1",
        job_id)


async def next_chunk(conn: Connection, scope: tuple[Any, ...], resume: tuple[Any, Any],
                     limit: int) -> list[asyncpg.Record]:
    """The next ``limit`` usage records of the job's scope after ``resume``, in order."""
    return await conn.fetch(
        "SELECT account_id, usage_id, event_time, source, record_key, kind, duration_s,"
        " volume_up, volume_down, quantity::text AS quantity, unit, calling, called, imsi,"
        " msisdn, charge::text AS charge, partial_seq, attrs::text AS attrs"
        " FROM usage_records WHERE ($1::text IS NULL OR account_id = $1)"
        " AND event_time >= $2 AND event_time < $3 AND " + CATALOG_PRICED +
        " AND ($4::timestamptz IS NULL OR (event_time, usage_id) > ($4, $5::bigint))"
        " ORDER BY event_time, usage_id LIMIT $6", *scope, *resume, limit)


async def lock_accounts(conn: Connection, space: int, accounts: Sequence[str]) -> None:
    """Transaction locks on the accounts (in the order given: sorted, so no deadlock)."""
    for account in accounts:
        await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", space, account)


async def active_charges(conn: Connection, rows: Sequence[asyncpg.Record]) -> dict[
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


# The columns of the corrections a rerun writes (``charge_writes.write``; ids by default).
CHARGE_COLUMNS = ("account_id", "event_time", "usage_id", "kind", "amount_micros", "currency",
                  "tariff_version_id", "zone", "band", "reverses_charge_id", "rerate_job_id")


async def add_difference(conn: Connection, job_id: int, account: str, currency: str,
                         count: int, changed: int, before: int, after: int) -> None:
    await conn.execute(
        "INSERT INTO rerate_job_accounts AS a (rerate_job_id, account_id, currency,"
        " usage_count, usage_changed, before_micros, after_micros)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (rerate_job_id, account_id,"
        " currency) DO UPDATE SET usage_count = a.usage_count + EXCLUDED.usage_count,"
        " usage_changed = a.usage_changed + EXCLUDED.usage_changed,"
        " before_micros = a.before_micros + EXCLUDED.before_micros,"
        " after_micros = a.after_micros + EXCLUDED.after_micros",
        job_id, account, currency, count, changed, before, after)


async def advance(conn: Connection, job_id: int, done: int, changed: int, failed: int,
                  resume_time: dt.datetime, resume_usage_id: int) -> None:
    await conn.execute(
        "UPDATE rerate_jobs SET usage_done = usage_done + $2, usage_changed = usage_changed + $3,"
        " usage_failed = usage_failed + $4, resume_time = $5, resume_usage_id = $6"
        " WHERE rerate_job_id = $1",
        job_id, done, changed, failed, resume_time, resume_usage_id)
