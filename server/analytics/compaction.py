"""What ``serve`` runs every ``analytics.compact_interval_s``: the kept aging's deltas folded
(``collections.aging_kept_repo``), the journal's days' deltas folded
(``collections.journal_days_repo``), and the charge rollups' per-batch deltas folded into one
row per key and day (and month), and into the account-less level
that totals across accounts read (migration 1423), and the account-less hourly level's
deltas into one row per hour and currency (migration 1512); the days, weeks and months
folded are then counted into the levels reports read (distinct accounts per dimension, one
row per account and month: migrations 1500, 1502) and the months marked in each account's
(1503) — once per interval whatever the number of worker processes (``server.scheduled``).

Answers never wait for it: a reader adds the deltas not folded yet, so a run only makes the
next reads shorter. Days are all those with deltas, late ones included: a charge may arrive
for any day, and its day is folded at the next run. Nor does a run wait for a long reader: a
fold whose lock is held (an assurance control reading the levels) is left to the next run
(``compaction_lock.wait_at_most``), so readers never queue behind the fold's wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from billing_oss.server import scheduled
from billing_oss.server.analytics import repo
from billing_oss.server.collections import aging_kept_repo, journal_days_repo
from billing_oss.server.store import compaction_lock
from billing_oss.server.store.pool import Connection

log = logging.getLogger(__name__)
TASK = "rollup-compaction"  # its row in scheduled_ticks
EVERY_DAY = (dt.date(1, 1, 1), dt.date(9999, 12, 31))
RESTAT_AFTER = 10_000  # deltas folded in one run that call for fresh statistics


async def run_once(pool: asyncpg.Pool) -> None:
    """Fold every day's deltas; after a large fold, vacuum the deltas' partitions and renew
    the statistics (``repo.analyze_rollups``). A fold whose lock a reader holds is skipped."""
    fresh = await repo.fresh_rollups(pool)
    folded = await _unless_held(pool, "rollups", lambda c: repo.compact(c, *EVERY_DAY))
    if folded is not None and fresh >= RESTAT_AFTER:
        await repo.analyze_rollups(pool)
    log.info("rollups compacted", extra={"fields": {"deltas": fresh, "rows_folded": folded}})
    # The kept aging's deltas, on the same clock (collections.aging_kept_repo).
    aging_fresh = await aging_kept_repo.fresh(pool)
    aging_folded = await _unless_held(pool, "aging", aging_kept_repo.compact)
    if aging_folded is not None and aging_fresh >= RESTAT_AFTER:
        await aging_kept_repo.vacuum(pool)
    log.info("aging compacted", extra={"fields": {"deltas": aging_fresh,
                                                  "rows_folded": aging_folded}})
    # The journal's days (collections.journal_days_repo), on the same clock.
    journal_folded = await _unless_held(pool, "journal days", journal_days_repo.fold)
    if journal_folded is not None and journal_folded >= RESTAT_AFTER:
        await journal_days_repo.vacuum(pool)
    log.info("journal days folded", extra={"fields": {"deltas": journal_folded}})


async def _unless_held(pool: asyncpg.Pool, what: str,
                       fold: Callable[[Connection], Awaitable[int]]) -> int | None:
    """``fold`` in a transaction that waits at most ``compaction_lock.FOLD_LOCK_WAIT_MS``
    for a lock; None when a reader holds it (the fold is left to the next run)."""
    async with pool.acquire() as conn:
        try:
            async with conn.transaction():
                await compaction_lock.wait_at_most(conn)
                return await fold(conn)
        except asyncpg.LockNotAvailableError:
            log.info("fold left to the next run: a reader holds its lock",
                     extra={"fields": {"fold": what}})
            return None


async def run_forever(pool: asyncpg.Pool, interval_s: float, stop: asyncio.Event) -> None:
    """Until ``stop``: a run at the first start and then each ``interval_s``, by whichever
    process holds the task when it is due. A failed run is logged and tried again at the
    next interval."""
    while not stop.is_set():
        try:
            await scheduled.run_if_due(pool, TASK, interval_s, lambda: run_once(pool),
                                       first_due=True)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("rollup compaction failed", extra={"fields": {"error": str(exc)}})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), scheduled.look_every(interval_s))
