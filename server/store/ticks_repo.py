"""Rows of ``scheduled_ticks``: when a clock task last ran, and its claim among processes."""

from __future__ import annotations

from billing_oss.server.store.pool import Connection

_LOCK_SPACE = 0x5449434B  # "TICK": advisory lock namespace of clock task claims


async def try_claim(conn: Connection, task: str) -> bool:
    """The task's session lock on ``conn``: one process at a time looks and runs."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1, hashtext($2))",
                                    _LOCK_SPACE, task))


async def release(conn: Connection, task: str) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1, hashtext($2))", _LOCK_SPACE, task)


async def is_due(conn: Connection, task: str, interval_s: float) -> bool:
    """Whether ``interval_s`` passed since the task last ran; a task never seen starts its
    clock now (its first run is an interval after the first start)."""
    due = await conn.fetchval(
        "WITH seen AS (INSERT INTO scheduled_ticks (task, last_at) VALUES ($1, now())"
        " ON CONFLICT (task) DO NOTHING RETURNING false)"
        " SELECT coalesce((SELECT false FROM seen),"
        "  (SELECT last_at <= now() - make_interval(secs => $2) FROM scheduled_ticks"
        "   WHERE task = $1))", task, interval_s)
    return bool(due)


async def ran(conn: Connection, task: str) -> None:
    await conn.execute("UPDATE scheduled_ticks SET last_at = now() WHERE task = $1", task)
