"""The ``bill_runs`` table: a run's request, its progress (resumable per account) and end."""

from __future__ import annotations

import datetime as dt

import asyncpg

from billing_oss.server.store.pool import Connection

_RUN = ("SELECT bill_run_id, period, accounts, finalize, force, state, requested_by,"
        " accounts_total, accounts_done, invoices, charges, frozen, invoice_ids, finalized,"
        " in_grace, in_grace_until, error, created_at, started_at, finished_at FROM bill_runs")


async def insert(conn: Connection, period: str, accounts: list[str] | None, finalize: bool,
                 force: bool, actor: str) -> int:
    run_id: int = await conn.fetchval(
        "INSERT INTO bill_runs (period, accounts, finalize, force, requested_by) "
        "VALUES ($1, $2, $3, $4, $5) RETURNING bill_run_id",
        period, accounts, finalize, force, actor)
    return run_id


async def row(conn: Connection | asyncpg.Pool, run_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(_RUN + " WHERE bill_run_id = $1", run_id)


async def rows(pool: asyncpg.Pool, *, state: str | None, period: str | None,
               after: int | None, limit: int) -> list[asyncpg.Record]:
    return list(await pool.fetch(
        _RUN + " WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR period = $2)"
        " AND ($3::bigint IS NULL OR bill_run_id > $3) ORDER BY bill_run_id LIMIT $4",
        state, period, after, limit))


async def mark_failed(conn: Connection, run_id: int, error: str) -> asyncpg.Record:
    """Mark the run failed; who asked for it and its counts so far."""
    run: asyncpg.Record | None = await conn.fetchrow(
        "UPDATE bill_runs SET state = 'failed', error = $2, finished_at = now() "
        "WHERE bill_run_id = $1 RETURNING requested_by, accounts_done, invoices, "
        "charges, frozen", run_id, error)
    assert run is not None
    return run


async def resume_account(conn: Connection, run_id: int) -> str | None:
    """The last account of the last stored batch (a resumed run continues after it)."""
    resume: str | None = await conn.fetchval(
        "SELECT resume_account FROM bill_runs WHERE bill_run_id = $1", run_id)
    return resume


async def mark_running(conn: Connection, run_id: int, accounts_total: int) -> None:
    await conn.execute(
        "UPDATE bill_runs SET state = 'running', started_at = coalesce(started_at, now()), "
        "accounts_total = $2 WHERE bill_run_id = $1", run_id, accounts_total)


async def add_batch(conn: Connection, run_id: int, *, accounts: int, invoices: int,
                    charges: int, frozen: int, invoice_ids: list[int],
                    last_account: str) -> None:
    await conn.execute(
        "UPDATE bill_runs SET accounts_done = accounts_done + $2, invoices = invoices + $3,"
        " charges = charges + $4, frozen = frozen + $5, invoice_ids = invoice_ids || $6,"
        " resume_account = $7 WHERE bill_run_id = $1",
        run_id, accounts, invoices, charges, frozen, invoice_ids, last_account)


async def mark_done(conn: Connection, run_id: int, finalized: list[int], in_grace: list[int],
                    in_grace_until: dt.datetime | None) -> asyncpg.Record:
    """Mark the run done; its counts."""
    done: asyncpg.Record | None = await conn.fetchrow(
        "UPDATE bill_runs SET state = 'done', finished_at = now(), finalized = $2, "
        "in_grace = $3, in_grace_until = $4 WHERE bill_run_id = $1 "
        "RETURNING accounts_done, invoices, charges, frozen",
        run_id, finalized, in_grace, in_grace_until)
    assert done is not None
    return done
