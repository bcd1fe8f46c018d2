"""The job tables' shared columns (``<name>_id``, ``state``, ``error``, ``finished_at``) and
the session locks that claim a job: what ``server.jobs`` runs every kind of job with."""

from __future__ import annotations

import contextlib
from collections.abc import Collection

import asyncpg

from billing_oss.server.store.pool import Connection


async def try_claim(conn: Connection, lock_space: int, job_id: int) -> bool:
    """Take the job's claim on ``conn`` (a session lock: it outlives any transaction)."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", lock_space,
                                    job_id % 2**31))


async def release(conn: Connection, lock_space: int, job_id: int) -> None:
    # A connection broken mid-step cannot run this; the pool then closes it, and the lock
    # goes with the session.
    with contextlib.suppress(asyncpg.InterfaceError, asyncpg.PostgresError, OSError):
        await conn.execute("SELECT pg_advisory_unlock($1, $2)", lock_space, job_id % 2**31)


async def state(conn: Connection, table: str, name: str, job_id: int) -> str | None:
    value: str | None = await conn.fetchval(
        f"SELECT state FROM {table} WHERE {name}_id = $1", job_id)
    return value


async def open_ids(conn: Connection, table: str, name: str, states: Collection[str]
                   ) -> list[int]:
    """The first 20 jobs in one of ``states``, oldest first."""
    rows = await conn.fetch(
        f"SELECT {name}_id AS id FROM {table} WHERE state = ANY($1)"
        f" ORDER BY {name}_id LIMIT 20", list(states))
    return [int(r["id"]) for r in rows]


async def mark_failed(pool: asyncpg.Pool, table: str, name: str, job_id: int,
                      error: str) -> None:
    await pool.execute(f"UPDATE {table} SET state = 'failed', error = $2,"
                       f" finished_at = now() WHERE {name}_id = $1", job_id, error)
