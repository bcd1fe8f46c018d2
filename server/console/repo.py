"""The console's own SQL: its sessions, and the few lists no domain repo serves yet."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Any

import asyncpg
import msgspec

from billing_oss.server.store.api_keys import ApiKey


class Session(msgspec.Struct, frozen=True, kw_only=True):
    key: ApiKey
    csrf_token: str
    expires_at: dt.datetime


def _digest(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode()).digest()


async def open_session(pool: asyncpg.Pool, key_id: str, minutes: int) -> tuple[str, str]:
    """A new session for ``key_id``: (the cookie's value, its CSRF token)."""
    session_id = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    await pool.execute(
        "INSERT INTO console_sessions (session_sha256, key_id, csrf_token, expires_at)"
        " VALUES ($1, $2, $3, now() + make_interval(mins => $4))",
        _digest(session_id), key_id, csrf, minutes)
    return session_id, csrf


async def session(pool: asyncpg.Pool, session_id: str) -> Session | None:
    """The live session behind a cookie: unexpired, its key not revoked."""
    row = await pool.fetchrow(
        "SELECT k.key_id, k.role, k.name, k.source, k.account_id, s.csrf_token, s.expires_at"
        " FROM console_sessions s JOIN api_keys k USING (key_id)"
        " WHERE s.session_sha256 = $1 AND s.expires_at > now() AND k.revoked_at IS NULL",
        _digest(session_id))
    if row is None:
        return None
    return Session(key=ApiKey(key_id=row["key_id"], role=row["role"], name=row["name"],
                              source=row["source"], account_id=row["account_id"]),
                   csrf_token=row["csrf_token"], expires_at=row["expires_at"])


async def close_session(pool: asyncpg.Pool, session_id: str) -> None:
    await pool.execute("DELETE FROM console_sessions WHERE session_sha256 = $1 OR expires_at"
                       " < now() - interval '1 day'", _digest(session_id))


async def intake(pool: asyncpg.Pool, since: dt.datetime, recent: dt.datetime) -> list[Any]:
    """Per source: files and records received since ``since`` and since ``recent``."""
    return await pool.fetch(
        "SELECT source, count(*) AS files, coalesce(sum(count_in), 0) AS records,"
        " count(*) FILTER (WHERE received_at >= $2) AS files_recent,"
        " coalesce(sum(count_in) FILTER (WHERE received_at >= $2), 0) AS records_recent,"
        " coalesce(sum(count_suspense), 0) AS suspense"
        " FROM source_files WHERE received_at >= $1 GROUP BY source ORDER BY source",
        since, recent)


async def open_suspense_by_reason(pool: asyncpg.Pool) -> list[Any]:
    return await pool.fetch(
        "SELECT reason, source, count(*) AS records, min(created_at) AS oldest"
        " FROM suspense WHERE state = 'open' GROUP BY reason, source ORDER BY reason, source")


async def suspense_page(pool: asyncpg.Pool, *, reason: str | None, source: str | None,
                        older_than: dt.datetime | None, after: int | None,
                        limit: int) -> list[Any]:
    return await pool.fetch(
        "SELECT suspense_id, source, record_key, nullif(account_id, '') AS account_id, reason,"
        " detail, created_at, record->>'called' AS called FROM suspense WHERE state = 'open'"
        " AND ($1::text IS NULL OR reason = $1) AND ($2::text IS NULL OR source = $2)"
        " AND ($3::timestamptz IS NULL OR created_at < $3)"
        " AND ($4::bigint IS NULL OR suspense_id > $4) ORDER BY suspense_id LIMIT $5",
        reason, source, older_than, after, limit + 1)


async def daily_usage(pool: asyncpg.Pool, account_id: str, start: dt.date) -> list[Any]:
    """Per day since ``start``: records charged and the amount, from the charge rollups."""
    return await pool.fetch(
        "SELECT day, sum(records)::bigint AS records, rtrim(currency) AS currency,"
        " sum(amount_micros)::bigint AS amount_micros FROM charge_rollups"
        " WHERE account_id = $1 AND day >= $2 GROUP BY day, currency ORDER BY day",
        account_id, start)


async def credit_notes(pool: asyncpg.Pool, account_id: str | None, after: int | None,
                       limit: int) -> list[Any]:
    return await pool.fetch(
        "SELECT credit_note_id, account_id, invoice_id, number_text, reason, issue_date,"
        " rtrim(currency) AS currency, total_micros FROM credit_notes"
        " WHERE ($1::text IS NULL OR account_id = $1)"
        " AND ($2::bigint IS NULL OR credit_note_id > $2) ORDER BY credit_note_id LIMIT $3",
        account_id, after, limit + 1)


async def invoices(pool: asyncpg.Pool, account_id: str | None, after: int | None,
                   limit: int) -> list[Any]:
    return await pool.fetch(
        "SELECT invoice_id, account_id, status, number_text, period, issue_date, due_date,"
        " rtrim(currency) AS currency, payable_micros FROM invoices"
        " WHERE ($1::text IS NULL OR account_id = $1)"
        " AND ($2::bigint IS NULL OR invoice_id < $2) ORDER BY invoice_id DESC LIMIT $3",
        account_id, after, limit + 1)


async def bill_runs(pool: asyncpg.Pool, before: int | None, limit: int) -> list[Any]:
    return await pool.fetch(
        "SELECT bill_run_id, period, dry_run, state, invoices, charges, started_at,"
        " finished_at, error FROM bill_runs WHERE ($1::bigint IS NULL OR bill_run_id < $1)"
        " ORDER BY bill_run_id DESC LIMIT $2", before, limit + 1)


async def rerate_jobs(pool: asyncpg.Pool, before: int | None, limit: int) -> list[Any]:
    return await pool.fetch(
        "SELECT rerate_job_id, account_id, period_start, period_end, state, requested_by,"
        " usage_total, usage_done, usage_changed, usage_failed FROM rerate_jobs"
        " WHERE ($1::bigint IS NULL OR rerate_job_id < $1)"
        " ORDER BY rerate_job_id DESC LIMIT $2", before, limit + 1)


async def simulations(pool: asyncpg.Pool, after: int | None, limit: int) -> list[Any]:
    return await pool.fetch(
        "SELECT simulation_id, state, requested_by, request->>'period_from' AS period_from,"
        " request->>'period_to' AS period_to, error, created_at, started_at, finished_at,"
        " progress->>'percent' AS percent"
        " FROM simulations WHERE ($1::bigint IS NULL OR simulation_id < $1)"
        " ORDER BY simulation_id DESC LIMIT $2", after, limit + 1)


async def dunning(pool: asyncpg.Pool, account_id: str) -> tuple[list[Any], Any]:
    """The account's latest dunning steps, and its active dunning suspension if any."""
    steps = await pool.fetch(
        "SELECT step_no, action, invoice_id, run_on, days_past_due, open_micros"
        " FROM dunning_events WHERE account_id = $1 ORDER BY created_at DESC LIMIT 10",
        account_id)
    suspended = await pool.fetchrow(
        "SELECT suspended_on FROM dunning_suspensions WHERE account_id = $1"
        " AND lifted_on IS NULL", account_id)
    return steps, suspended


async def file_alarms(pool: asyncpg.Pool, *, kind: str | None, limit: int) -> list[Any]:
    """The file ledger's alarms (gap, repeat, reused, incomplete), newest first."""
    return await pool.fetch(
        "SELECT alarm_id, source, kind, name, sequence_no, first_missing, last_missing,"
        " source_file_id, detail, raised_at FROM source_file_alarms"
        " WHERE ($1::text IS NULL OR kind = $1) ORDER BY raised_at DESC LIMIT $2", kind, limit)

