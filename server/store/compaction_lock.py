"""Reads of the account-less rollup levels (charge_totals, charge_month_totals) beside the
per-account deltas not folded yet: taken while no compaction commits.

On Citus a compaction commits on the coordinator (the account-less levels) and on the
workers (the per-account rows) one after the other: a read in between would count the deltas
it moves twice or not at all. Compactions take this lock exclusive (migration 1423) and hold
it until every node has committed; readers share it, and read after taking it, with a
snapshot that follows every commit.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import asyncpg

from billing_oss.server.store.pool import Connection

Db: TypeAlias = "Connection | asyncpg.Pool"
LOCK = "SELECT pg_advisory_xact_lock_shared(hashtext('compact_charge_rollups'))"


async def fetch_between_compactions(db: Db, sql: str, args: list[Any], *,
                                   lock: str = LOCK) -> list[asyncpg.Record]:
    """``sql`` read after the compaction ``lock`` is taken shared: in a read-only
    transaction of its own, or in the caller's (which then holds the lock until it ends).
    The kept aging's compaction has a lock of its own (collections.aging_kept_repo)."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            return await fetch_between_compactions(conn, sql, args, lock=lock)
    if db.is_in_transaction():
        await db.execute(lock)
        return await db.fetch(sql, *args)
    async with db.transaction(readonly=True):
        await db.execute(lock)
        rows: list[asyncpg.Record] = await db.fetch(sql, *args)
        return rows


# How long a fold waits for its lock exclusive before it gives the run up: a reader may hold
# the lock shared for as long as its query runs (the assurance controls that read the levels:
# seconds, minutes for a deep check), and PostgreSQL queues every later shared request behind
# a waiting exclusive one, so a fold that waited would stall every read of the totals across
# accounts until the control ended. The fold is tried again at the next run.
FOLD_LOCK_WAIT_MS = 100


async def wait_at_most(conn: Connection, ms: int = FOLD_LOCK_WAIT_MS) -> None:
    """In the caller's transaction: any lock wait longer than ``ms`` fails (55P03)."""
    await conn.execute(f"SET LOCAL lock_timeout = {int(ms)}")
