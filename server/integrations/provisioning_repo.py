"""SQL of the provisioning publisher: outbox events it has not delivered, and its cursors."""

from __future__ import annotations

import asyncpg

from billing_oss.server.integrations.repo import StoredEvent
from billing_oss.server.store.pool import Connection

LOCK_KEY = "provisioning-publisher"


TYPES = ("account.suspend", "account.resume", "account.terminate")  # as the index names them


async def pending(db: Connection | asyncpg.Pool, limit: int) -> list[StoredEvent]:
    """Provisioning events past their stream's cursor, each stream's in ``seq`` order.

    A stream's events become visible in ``seq`` order (emitting locks the stream's head row
    to commit), so none can appear later below one read now."""
    rows = await db.fetch(
        "SELECT e.stream, e.seq, e.event_id, e.type, e.version, e.account_id,"
        " e.payload::text AS payload, e.occurred_at"
        " FROM outbox_events e LEFT JOIN provisioning_cursors c ON c.stream = e.stream"
        " WHERE e.type IN ('account.suspend', 'account.resume', 'account.terminate')"
        " AND e.account_id <> ''"
        " AND e.seq > coalesce(c.seq, 0)"
        " ORDER BY e.stream, e.seq LIMIT $1", limit)
    return [StoredEvent(**dict(r)) for r in rows]


async def advance(db: Connection | asyncpg.Pool, done: dict[str, int]) -> None:
    """Move each stream's cursor to its delivered ``seq`` (never backwards)."""
    if not done:
        return
    streams = sorted(done)
    await db.execute(
        "INSERT INTO provisioning_cursors AS c (stream, seq) SELECT * FROM"
        " unnest($1::text[], $2::bigint[]) ON CONFLICT (stream) DO UPDATE"
        " SET seq = greatest(c.seq, excluded.seq), updated_at = now()",
        streams, [done[s] for s in streams])


async def try_lead(conn: Connection) -> bool:
    """One publisher at a time among the server's processes: a session advisory lock, held
    as long as ``conn`` is."""
    got: bool = await conn.fetchval("SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
                                    LOCK_KEY)
    return got


async def unlead(conn: Connection) -> None:
    await conn.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", LOCK_KEY)


async def account_exists(db: Connection | asyncpg.Pool, account_id: str) -> bool:
    return bool(await db.fetchval("SELECT 1 FROM accounts WHERE account_id = $1", account_id))
