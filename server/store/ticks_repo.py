"""Rows of ``scheduled_ticks``: when a clock task last ran, and its claim among processes."""

from __future__ import annotations

import datetime as dt

from billing_oss.server.store.pool import Connection

_LOCK_SPACE = 0x5449434B  # "TICK": advisory lock namespace of clock task claims


async def try_claim(conn: Connection, task: str) -> bool:
    """The task's session lock on ``conn``: one process at a time looks and runs."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1, hashtext($2))",
                                    _LOCK_SPACE, task))


async def release(conn: Connection, task: str) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1, hashtext($2))", _LOCK_SPACE, task)


async def is_due(conn: Connection, task: str, interval_s: float,
                 now: dt.datetime | None = None, first_due: bool = False) -> bool:
    """Whether ``interval_s`` passed since the task last ran, by ``now`` (a test clock; else
    the database's). A task never seen starts its clock now (its first run is an interval
    after the first start), unless ``first_due``: then it runs at once."""
    due = await conn.fetchval(
        "WITH clock AS (SELECT coalesce($3::timestamptz, now()) AS now),"
        " seen AS (INSERT INTO scheduled_ticks (task, last_at)"
        "  SELECT $1, CASE WHEN $4 THEN '-infinity' ELSE now END FROM clock"
        "  ON CONFLICT (task) DO NOTHING RETURNING $4::boolean AS due)"
        " SELECT coalesce((SELECT due FROM seen),"
        "  (SELECT last_at <= clock.now - make_interval(secs => $2) FROM scheduled_ticks, clock"
        "   WHERE task = $1))", task, interval_s, now, first_due)
    return bool(due)


async def ran(conn: Connection, task: str, now: dt.datetime | None = None) -> None:
    await conn.execute("UPDATE scheduled_ticks SET last_at = coalesce($2::timestamptz, now())"
                       " WHERE task = $1", task, now)
