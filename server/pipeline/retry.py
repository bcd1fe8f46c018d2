"""Which database failures a batch is retried after, and the retry loop itself.

A batch transaction that failed because the connection dropped (server restart, network,
``pg_terminate_backend``) or lost a serialisation race is simply run again on a fresh
connection: nothing of it was committed — or, if the COMMIT reached the server but its answer
did not come back, the stored position tells (the caller's ``already_done`` check).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from billing_oss.server.metrics import PIPELINE_WRITE_RETRIES

T = TypeVar("T")
log = logging.getLogger(__name__)

TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,
    ConnectionError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, terminated backend
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
)


async def with_retries(
    attempt: Callable[[], Awaitable[T]], *, attempts: int, backoff_s: float, what: str
) -> T:
    """Run ``attempt`` until it succeeds or a non-transient error / the last attempt fails."""
    delay = backoff_s
    for number in range(1, attempts + 1):
        try:
            return await attempt()
        except TRANSIENT as exc:
            if number == attempts:
                raise
            PIPELINE_WRITE_RETRIES.inc()
            log.warning("database write failed; retrying", extra={"fields": {
                "what": what, "attempt": number, "error": f"{type(exc).__name__}: {exc}"}})
            await asyncio.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")
