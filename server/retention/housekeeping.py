"""What ``serve`` does every ``retention.interval_s``: month partitions created ahead, the
open month made of days and a closed month's days folded into one table (migration 1550),
usage older than ``pseudonymise_after_days`` pseudonymised, and the months ``archive.plan``
lets go after ``archive_after_months`` archived.

It is one clock task of ``server.scheduled`` (``TASK``): however many processes serve, one
of them runs it per interval, and a process that dies mid-run leaves it unrecorded, so the
next one to look runs it again (every step is idempotent). Unlike other clock work it runs at
the first start too: partitions exist before the first record of a new month.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from pathlib import Path

import asyncpg
import msgspec

from billing_oss.core.errors import BillingError
from billing_oss.core.metrics import MONTHS_UNFOLDED
from billing_oss.server import scheduled
from billing_oss.server.config import RetentionConfig
from billing_oss.server.retention import archive, months, pseudonyms, repo

log = logging.getLogger(__name__)
ACTOR = "server:retention"
TASK = "retention"  # its row in scheduled_ticks
# A month of days is folded this long after it ends: late records of its last hours land
# first, and a fold rarely makes a writer wait.
FOLD_AFTER = dt.timedelta(days=1)


class Housekeeping(msgspec.Struct, frozen=True, kw_only=True):
    at: dt.datetime
    months_ensured: list[str] = []
    months_split: list[str] = []  # open months whose empty tables became days
    months_folded: list[str] = []  # closed months whose days became one table
    pseudonymised: int = 0
    archived: list[str] = []  # months archived by this run


def months_ahead(now: dt.datetime, ahead: int) -> list[dt.date]:
    """The current UTC month and the ``ahead`` next ones."""
    first = months.first_of(now)
    return [months.add(first, n) for n in range(ahead + 1)]


async def housekeep(pool: asyncpg.Pool, config: RetentionConfig, now: dt.datetime,
                    actor: str = ACTOR) -> Housekeeping:
    """One run, whoever else runs: callers go through ``run_if_due``."""
    await repo.put_policy(pool, config.pseudonymise_after_days, config.archive_after_months)
    ahead = months_ahead(now, config.partitions_ahead_months)
    await repo.ensure_partitions(pool, ahead)
    split = await split_open_months(pool, ahead)
    folded = await fold_closed_months(pool, now)
    changed = await pseudonyms.run(pool, config.pseudonym_key, config.pseudonymise_after_days,
                                   now, actor)
    made: list[archive.Archive] = []
    if config.archive_after_months > 0:
        made = await archive.run(pool, Path(config.archive_dir), now,
                                 config.archive_after_months, actor)
    return Housekeeping(at=now, months_ensured=[months.label(m) for m in ahead],
                        months_split=split, months_folded=folded, pseudonymised=changed,
                        archived=[a.month for a in made])


async def split_open_months(pool: asyncpg.Pool, ahead: list[dt.date]) -> list[str]:
    """The open months (migration 1550) whose empty tables, made ahead, become days."""
    split = set()
    for month in ahead:
        for parent in repo.MONTHLY:
            try:
                if await repo.split_month(pool, parent, month):
                    split.add(months.label(month))
            except asyncpg.LockNotAvailableError as exc:  # the parent busy for 1 s
                log.info("month split deferred", extra={"fields": {
                    "table": parent, "month": months.label(month), "why": str(exc)}})
    return sorted(split)


async def fold_closed_months(pool: asyncpg.Pool, now: dt.datetime) -> list[str]:
    """Months of days closed ``FOLD_AFTER`` ago folded into one table each. One a writer
    would have waited on is left for the next run."""
    closed = sorted({(parent, day.replace(day=1))
                     for parent, _, day in await repo.day_partitions(pool)
                     if months.start(months.add(day.replace(day=1), 1)) + FOLD_AFTER <= now})
    folded = set()
    left = dict.fromkeys(repo.MONTHLY, 0)
    for parent, month in closed:
        try:
            moved = await repo.fold_month(pool, parent, month)
        except asyncpg.LockNotAvailableError as exc:
            left[parent] += 1
            log.info("month fold deferred", extra={"fields": {
                "table": parent, "month": months.label(month), "why": str(exc)}})
            continue
        if moved is not None:
            folded.add(months.label(month))
            log.info("month folded", extra={"fields": {
                "table": parent, "month": months.label(month), "records": moved}})
    for parent, n in left.items():
        MONTHS_UNFOLDED.labels(parent).set(n)
    return sorted(folded)


async def run_if_due(pool: asyncpg.Pool, config: RetentionConfig, now: dt.datetime,
                     actor: str = ACTOR, interval_s: float | None = None) -> Housekeeping | None:
    """A run if this process holds the task and ``interval_s`` (``config.interval_s``)
    passed since the last one, by the clock ``now``; None when not."""
    done: list[Housekeeping] = []

    async def action() -> None:
        done.append(await housekeep(pool, config, now, actor))

    every = config.interval_s if interval_s is None else interval_s
    await scheduled.run_if_due(pool, TASK, every, action, now=now, first_due=True)
    return done[0] if done else None


async def run_forever(pool: asyncpg.Pool, config: RetentionConfig, stop: asyncio.Event) -> None:
    """A run at the first start, then one every ``interval_s`` until ``stop``. A failed run is
    logged and tried again at the next interval."""
    while not stop.is_set():
        try:
            done = await run_if_due(pool, config, dt.datetime.now(dt.UTC))
            if done is not None:
                log.info("retention housekeeping", extra={"fields": {
                    "at": done.at.isoformat(), "months": done.months_ensured,
                    "pseudonymised": done.pseudonymised, "archived": done.archived}})
        except (OSError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError,
                BillingError) as exc:
            log.warning("retention housekeeping failed", extra={"fields": {"error": str(exc)}})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), scheduled.look_every(config.interval_s))
