"""SQL of the provisioning publisher: its leadership lock and the accounts it names (the
events and cursors are the outbox follower's, ``integrations.repo``)."""

from __future__ import annotations

import asyncpg

from billing_oss.server.store.pool import Connection

LOCK_KEY = "provisioning-publisher"


TYPES = ("account.suspend", "account.resume", "account.terminate")  # the events it publishes


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
