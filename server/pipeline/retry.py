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

from billing_oss.core.db_failures import TRANSIENT, discard
from billing_oss.core.metrics import PIPELINE_WRITE_RETRIES

T = TypeVar("T")
log = logging.getLogger(__name__)

MAX_BACKOFF_S = 5.0  # the pause between attempts doubles up to this
RETRY_MESSAGE = "database write failed; retrying"


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
            log.warning(RETRY_MESSAGE, extra={"fields": {
                "what": what, "attempt": number, "error": f"{type(exc).__name__}: {exc}"}})
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)
    raise AssertionError("unreachable")


__all__ = ["MAX_BACKOFF_S", "RETRY_MESSAGE", "TRANSIENT", "discard", "with_retries"]
