"""Clock work (controls, checkpoints, retention's housekeeping) run once per interval across
the server's processes.

Every process looks every few seconds; the one that takes the task's claim (a session
advisory lock) runs it when its interval has passed since the last run, then records the
run. A process that dies mid-run loses the claim with its session and records nothing, so
the next process to look runs the task again: a tick is never skipped, and never run twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Awaitable, Callable

import asyncpg

from billing_oss.core.db_failures import TRANSIENT
from billing_oss.server.store import ticks_repo

LOOK_EVERY_S = 10.0  # how often a process looks whether a task is due (at most)


async def run_if_due(pool: asyncpg.Pool, task: str, interval_s: float,
                     action: Callable[[], Awaitable[None]], *, now: dt.datetime | None = None,
                     first_due: bool = False) -> bool:
    """Run ``action`` if this process holds the task and it is due; whether it ran. A run
    that raises counts as run (it is retried at the next interval, as a failure should be);
    one cancelled by shutdown does not. ``now`` is a test clock (else the database's);
    ``first_due`` runs a task never run before at once rather than an interval later."""
    async with pool.acquire() as conn:
        if not await ticks_repo.try_claim(conn, task):
            return False
        try:
            if not await ticks_repo.is_due(conn, task, interval_s, now, first_due):
                return False
            try:
                await action()
            except asyncio.CancelledError:
                raise
            except Exception:
                # The action's failure is what the caller logs; the claim's own connection
                # may have died with it, and then the run stays unrecorded (run again).
                with contextlib.suppress(*TRANSIENT, asyncpg.PostgresError):
                    await ticks_repo.ran(conn, task, now)
                raise
            await ticks_repo.ran(conn, task, now)
            return True
        finally:
            with contextlib.suppress(*TRANSIENT, asyncpg.PostgresError):
                await ticks_repo.release(conn, task)


def look_every(interval_s: float) -> float:
    return min(interval_s, LOOK_EVERY_S)
