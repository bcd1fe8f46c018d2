"""Which database failures mean "the connection is gone, run it again on a fresh one", and
how such a connection is handed back. Shared by the pipeline's retry loop and the sources,
which keep running through a database restart."""

from __future__ import annotations

import contextlib
from typing import Any

import asyncpg

TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,
    ConnectionError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, terminated backend
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    # a connection whose protocol state a dropped socket left confused ("cannot switch to
    # state ..."): it is discarded like a lost one, and the work runs again on a fresh one
    asyncpg.exceptions.InternalClientError,
)


async def discard(pool: asyncpg.Pool, conn: Any) -> None:
    """Close a connection whose state is unknown (its transaction, if any, rolls back) and
    hand it back to the pool, which opens a fresh one in its place. Whatever the connection
    already went through (terminated by the server, released, half-closed), this neither
    raises nor leaves it checked out."""
    with contextlib.suppress(asyncpg.InterfaceError, asyncpg.InternalClientError):
        conn.terminate()
    with contextlib.suppress(asyncpg.InterfaceError, asyncpg.InternalClientError, OSError):
        await pool.release(conn)
