"""What ``serve`` does every ``retention.interval_s``: month partitions created ahead, and
usage older than ``pseudonymise_after_days`` pseudonymised.

Ticks are numbered from the epoch (``now // interval_s``). However many processes serve, one
tick's work is done once: a process takes the tick's session advisory lock without waiting
(another holding it is doing the work) and skips a tick already recorded as done. A process
that dies mid-tick releases the lock with its session; the tick is recorded only when done,
so another process does it again (every step is idempotent).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging

import asyncpg
import msgspec

from billing_oss.core.errors import BillingError
from billing_oss.server.config import RetentionConfig
from billing_oss.server.retention import months, pseudonyms, repo

log = logging.getLogger(__name__)
ACTOR = "server:retention"


class TickResult(msgspec.Struct, frozen=True, kw_only=True):
    tick: int
    done: bool  # False: another process holds it, or it was done already
    months_ensured: list[str] = []
    pseudonymised: int = 0


def months_ahead(now: dt.datetime, ahead: int) -> list[dt.date]:
    """The current UTC month and the ``ahead`` next ones."""
    first = months.first_of(now)
    return [months.add(first, n) for n in range(ahead + 1)]


async def tick(pool: asyncpg.Pool, config: RetentionConfig, now: dt.datetime,
               actor: str = ACTOR) -> TickResult:
    number = int(now.timestamp() // max(config.interval_s, 1.0))
    async with pool.acquire() as conn:
        if not await repo.try_tick_lock(conn):
            return TickResult(tick=number, done=False)
        try:
            if await repo.tick_done(conn, number):
                return TickResult(tick=number, done=False)
            await repo.put_policy(conn, config.pseudonymise_after_days,
                                  config.archive_after_months)
            ahead = months_ahead(now, config.partitions_ahead_months)
            await repo.ensure_partitions(conn, ahead)
            changed = await pseudonyms.run(pool, config.pseudonym_key,
                                           config.pseudonymise_after_days, now, actor)
            await repo.mark_tick(conn, number, now)
        finally:
            await repo.release_tick_lock(conn)
    return TickResult(tick=number, done=True, months_ensured=[months.label(m) for m in ahead],
                      pseudonymised=changed)


async def run_forever(pool: asyncpg.Pool, config: RetentionConfig, stop: asyncio.Event) -> None:
    """A tick at start (partitions exist before the first record of a new month), then one
    every ``interval_s`` until ``stop``. A failed tick is logged and tried again next time."""
    while not stop.is_set():
        try:
            done = await tick(pool, config, dt.datetime.now(dt.UTC))
            if done.done:
                log.info("retention tick", extra={"fields": {
                    "tick": done.tick, "months": done.months_ensured,
                    "pseudonymised": done.pseudonymised}})
        except (OSError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError,
                BillingError) as exc:
            log.warning("retention tick failed", extra={"fields": {"error": str(exc)}})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), config.interval_s)
