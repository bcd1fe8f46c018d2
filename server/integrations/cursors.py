"""Read the outbox as one named consumer: stream by stream, in seq order, each event once.

A consumer (webhooks, MQTT provisioning commands, ...) keeps a cursor per stream in
``outbox_cursors``. ``OutboxFollower.run`` wakes when a commit notifies ``outbox_events``
(and every ``rescan_s`` in case a notification was lost), reads what lies past the cursors
and hands it to ``handle(conn, events)`` inside the transaction that moves the cursors: what
``handle`` writes commits with the cursor, or neither does. Something done outside the
database (an MQTT publish) happens before the cursor moves: at least once, never lost.

A stream's events commit in seq order (outbox_heads' row lock), so reading ``seq > cursor``
never skips one still committing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from billing_oss.server.integrations import repo
from billing_oss.server.integrations.repo import StoredEvent
from billing_oss.server.store.pool import Connection

log = logging.getLogger(__name__)

CHANNEL = repo.CHANNEL
Handler = Callable[[Connection, list[StoredEvent]], Awaitable[None]]


class OutboxFollower:
    """Follows the outbox for ``consumer``, ``batch`` events per transaction at most."""

    def __init__(self, pool: asyncpg.Pool, consumer: str, handle: Handler, *,
                 committed: Callable[[], None] | None = None, rescan_s: float = 10.0,
                 batch: int = 2000, per_stream: int = 100) -> None:
        self.pool = pool
        self.consumer = consumer
        self.handle = handle
        self.committed = committed  # called after each commit of handled events
        self.rescan_s = rescan_s
        self.batch = batch
        self.per_stream = per_stream
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._rescan = True

    def _notified(self, _conn: object, _pid: int, _channel: str, stream: object) -> None:
        self._dirty.add(str(stream))
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._follow(stop)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("outbox follower lost the database; retrying", extra={"fields": {
                    "consumer": self.consumer, "error": str(exc)}})
            except Exception:  # the handler's defect: the same events are tried again
                log.exception("outbox follower failed; retrying", extra={"fields": {
                    "consumer": self.consumer}})
            self._rescan = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    async def _follow(self, stop: asyncio.Event) -> None:
        async with self.pool.acquire() as listener:
            await listener.add_listener(CHANNEL, self._notified)
            try:
                self._rescan = True  # notifications before LISTEN are not seen
                loop = asyncio.get_running_loop()
                next_scan = loop.time()
                while not stop.is_set():
                    if self._rescan or loop.time() >= next_scan:
                        self._rescan = False
                        next_scan = loop.time() + self.rescan_s
                        async with self.pool.acquire() as conn:
                            self._dirty.update(await repo.streams_behind(conn, self.consumer,
                                                                    self.batch))
                    if self._dirty:
                        await self._drain()
                        continue
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(),
                                               max(0.0, next_scan - loop.time()))
            finally:
                with contextlib.suppress(Exception):
                    await listener.remove_listener(CHANNEL, self._notified)

    async def _drain(self) -> None:
        """Hand the dirty streams' events over, a batch per transaction; a stream that may
        have more waiting stays dirty for the next round."""
        streams = list(self._dirty)[: self.batch]
        self._dirty.difference_update(streams)
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                events = await repo.read(conn, self.consumer, streams, self.per_stream, self.batch)
                if not events:
                    return
                await self.handle(conn, events)
                await repo.advance(conn, self.consumer, events)
        except BaseException:
            self._dirty.update(streams)
            raise
        if self.committed is not None:
            self.committed()
        if len(events) >= self.batch:
            self._dirty.update(streams)  # the total cut some streams short
            return
        counts: dict[str, int] = {}
        for e in events:
            counts[e.stream] = counts.get(e.stream, 0) + 1
        self._dirty.update(s for s, n in counts.items() if n >= self.per_stream)
        if len(streams) >= self.batch:
            self._rescan = True  # a scan's limit may have left streams out
