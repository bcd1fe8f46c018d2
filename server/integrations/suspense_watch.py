"""Tell when a source's open suspense goes over ``pipeline.suspense_alarm_records``.

A periodic check inside ``serve`` (every ``pipeline.suspense_check_s``) counts open suspense
per source; a source going over is marked in ``suspense_thresholds`` and its
``suspense.threshold_crossed`` event commits with that mark, once per crossing (the mark
clears when the count is back under). Counting in the ingest transactions instead would
serialise every batch of a source on one counter row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from billing_oss.server.integrations import outbox
from billing_oss.server.integrations.events import SuspenseThresholdCrossed
from billing_oss.server.store import suspense_repo

log = logging.getLogger(__name__)


async def check(pool: asyncpg.Pool, threshold: int) -> list[str]:
    """One check; the sources that crossed now."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await suspense_repo.open_against_threshold(conn, threshold)
        crossed = []
        for r in rows:
            n, over = r["n"] or 0, (r["n"] or 0) > threshold
            if over == r["was_over"]:
                continue
            await suspense_repo.mark_threshold(conn, r["source"], over, n, threshold)
            if over:
                crossed.append(r["source"])
                await outbox.emit(conn, SuspenseThresholdCrossed(
                    source=r["source"], open_records=n, threshold=threshold),
                    stream=f"source:{r['source']}")
    for source in crossed:
        log.warning("open suspense over its threshold", extra={"fields": {
            "source": source, "threshold": threshold}})
    return crossed


async def watch(pool: asyncpg.Pool, threshold: int, every_s: float,
                stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await check(pool, threshold)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("suspense check failed; next time", extra={"fields": {
                "error": str(exc)}})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
