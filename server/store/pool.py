"""The asyncpg pool, opened with a clear one-line error when PostgreSQL is out of reach."""

from __future__ import annotations

import asyncio
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from billing_oss.core.errors import StartupError
from billing_oss.server.store.dsn import redacted

# What `pool.acquire()` and `asyncpg.connect()` hand out; repositories accept either.
Connection: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"


async def open_pool(dsn: str, *, min_size: int = 2, max_size: int = 10,
                    timeout_s: float = 10.0) -> asyncpg.Pool:
    try:
        pool = await asyncio.wait_for(
            # Sessions in UTC: SQL that reads a timestamptz's date (partitions, periods)
            # must not depend on the database's or the role's TimeZone default.
            asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size,
                                server_settings={"timezone": "UTC"}), timeout_s
        )
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        reason = str(exc) or type(exc).__name__
        raise StartupError(f"cannot connect to PostgreSQL at {redacted(dsn)}: {reason}") from None
    assert pool is not None
    return pool


async def ping(pool: asyncpg.Pool, timeout_s: float) -> None:
    """A round trip to the database; raises what reaching it raised."""
    await pool.fetchval("SELECT 1", timeout=timeout_s)
